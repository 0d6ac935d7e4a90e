// The lock table's snapshot written in slices (LockTable.beginSnapshot) while entries go
// on applying: checked against a naive twin, the whole toSnapshot() taken at the moment
// the writer began. Random seeded workloads interleave applies with slices of random
// weight; every finished snapshot must restore to a table equal to the twin (as sets of
// sessions and locks: a lock removed while the writer ran comes last), and a table of
// many held locks (40,000 in CI; LOCKS_SNAPSHOT_TEST_HELD=200000 for the size)
// must come out in many slices each bounded by lockSnapshotSliceWeightMax, not in one piece. Also: LockTable.stats() agrees with counting listLocks(), group 0's chunked
// layout round-trips through the lock service, and version 3 (one JSON document) still restores.

import t from 'tap';
import { lockSnapshotSliceWeightMax } from '../../../core/constants.js';
import { clientId, logIndex, term } from '../../../core/ids.js';
import type { SessionId } from '../../../core/ids.js';
import type { LockCommand, LockMode } from '../../../core/locks/commands.js';
import type { LockTableSnapshot, LockTableSnapshotSlice } from '../../../core/locks/table.js';
import { LockTable } from '../../../core/locks/table.js';
import { Xoshiro128 } from '../../../core/prng.js';
import { EntryType } from '../../../core/raft/types.js';
import type { Entry } from '../../../core/raft/types.js';
import { EntryKind, frameEntry, Group0StateMachine } from '../../../server/raft/group0.js';
import { decodeLockTableChunks, encodeLockCommand, LockService } from '../../../server/services/locks/service.js';
import { Driver } from './driver.js';

/** Sessions and locks in a canonical order (by id, by name): what must be equal after a restore. */
function canonical(s: LockTableSnapshot): string {
  return JSON.stringify({
    ...s,
    sessions: [...s.sessions].sort((a, b) => a.session - b.session),
    locks: [...s.locks].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
  });
}

function weightOf(slice: LockTableSnapshotSlice): number {
  let w = 0;
  for (const s of slice.sessions) w += 1 + s.holds.length + s.waits.length + s.lanes.length;
  for (const l of slice.locks) w += 1 + l.holders.length + l.waiters.length;
  return w;
}

/** One random command on `d`'s table: every kind that changes a session or a lock. */
function randomStep(d: Driver, rng: Xoshiro128, sessions: SessionId[]): void {
  const locks = ['A', 'B', 'C', 'D', 'E', 'F'];
  const pick = <T>(xs: readonly T[]): T => xs[rng.int(0, xs.length - 1)] as T;
  const live = sessions.filter((s) => d.table.hasSession(s));
  if (live.length < 3 || rng.int(0, 20 - 1) === 0) {
    sessions.push(d.open(`c${sessions.length}`, 5_000, rng.int(0, 2 - 1) === 0 ? 0 : 300));
    return;
  }
  const s = pick(live);
  const lock = pick(locks);
  d.nowMs += 50;
  switch (rng.int(0, 10 - 1)) {
    case 0: case 1: case 2: {
      const mode: LockMode = rng.int(0, 3 - 1) === 0 ? 'shared' : 'exclusive';
      d.acquire(s, lock, mode, rng.int(0, 4 - 1) !== 0);
      break;
    }
    case 3: case 4: d.release(s, lock); break;
    case 5: d.send({ kind: 'downgrade', session: s, lock }); break;
    case 6: {
      const requestId = d.table.sessionInfo(s)?.waits.find((w) => w.lock === lock)?.requestId ?? 'none';
      d.applyRaw({ kind: 'cancelWait', session: s, lock, requestId, reason: 'timeout', nowMs: d.nowMs });
      break;
    }
    case 7: d.send({ kind: 'keepAlive', session: s }); break;
    case 8: {
      const renewed = d.table.sessionInfo(s)?.renewedIndex ?? logIndex(0);
      if (rng.int(0, 2 - 1) === 0) d.applyRaw({ kind: 'expireSessions', nowMs: d.nowMs, sessions: [{ session: s, renewedIndex: renewed }] });
      else d.send({ kind: 'closeSession', session: s });
      break;
    }
    default:
      if (rng.int(0, 2 - 1) === 0) d.send({ kind: 'forceRelease', lock }, 'admin');
      else d.applyRaw({ kind: 'wakeDelayed', lock, nowMs: d.nowMs });
  }
}

t.test('a snapshot written in slices while entries apply restores to the table as it was when it began', async (t) => {
  let snapshots = 0;
  let slicesTotal = 0;
  for (let seed = 1; seed <= 20; seed++) {
    const rng = new Xoshiro128(seed);
    const d = new Driver();
    const sessions: SessionId[] = [];
    for (let i = 0; i < 50; i++) randomStep(d, rng, sessions);
    for (let round = 0; round < 10; round++) {
      const twin = d.table.toSnapshot();
      const writer = d.table.beginSnapshot();
      t.equal(writer.header.lastAppliedIndex, twin.lastAppliedIndex);
      const slices: LockTableSnapshotSlice[] = [];
      for (;;) {
        for (let i = rng.int(0, 4 - 1); i > 0; i--) randomStep(d, rng, sessions);
        const weightMax = 1 + rng.int(0, 3 - 1);
        const slice = writer.nextSlice(weightMax);
        if (slice === null) break;
        slices.push(slice);
      }
      t.equal(d.table.snapshotWriting, false, 'the writer let go of the table when done');
      const restored = LockTable.fromSlices(writer.header, slices);
      const got = restored.toSnapshot();
      if (canonical(got) !== canonical(twin)) {
        t.fail(`seed ${seed} round ${round}: restored table differs from the twin`, { got: canonical(got), want: canonical(twin) });
        return;
      }
      snapshots++;
      slicesTotal += slices.length;
    }
    // The live table itself is unchanged by having been written.
    t.equal(JSON.stringify(LockTable.fromSnapshot(JSON.parse(JSON.stringify(d.table.toSnapshot())) as LockTableSnapshot).toSnapshot()),
      JSON.stringify(d.table.toSnapshot()), `seed ${seed}: the live table round-trips`);
  }
  t.equal(snapshots, 200);
  t.ok(slicesTotal > snapshots * 3, `slices written across turns (${slicesTotal})`);
});

t.test('an aborted writer stops the copies and a new one can start', async (t) => {
  const d = new Driver();
  const a = d.open('a');
  d.acquire(a, 'X', 'exclusive');
  const first = d.table.beginSnapshot();
  t.equal(d.table.snapshotWriting, true);
  first.abort();
  t.equal(d.table.snapshotWriting, false);
  t.equal(first.nextSlice(), null, 'an aborted writer writes nothing more');
  const second = d.table.beginSnapshot();
  d.release(a, 'X');
  const slices: LockTableSnapshotSlice[] = [];
  for (let s = second.nextSlice(); s !== null; s = second.nextSlice()) slices.push(s);
  t.same(LockTable.fromSlices(second.header, slices).lockInfo('X')?.holders.map((h) => h.session), [a], 'the hold as of the second writer');
});

const heldForTest = Number(process.env['LOCKS_SNAPSHOT_TEST_HELD'] ?? 40_000);

t.test(`${heldForTest} held locks are written in bounded slices and restore to an equal table`, async (t) => {
  const d = new Driver();
  const sessions: SessionId[] = [];
  for (let i = 0; i < 64; i++) sessions.push(d.open(`c${i}`));
  const held = heldForTest;
  for (let i = 0; i < held; i++) d.acquire(sessions[i % 64] as SessionId, `held-${i}`, 'exclusive', false);
  t.equal(d.table.stats().heldExclusive, held);
  const twin = d.table.toSnapshot();
  const writer = d.table.beginSnapshot();
  const slices: LockTableSnapshotSlice[] = [];
  let heaviest = 0;
  let lockHeaviest = 0;
  let step = 0;
  for (let slice = writer.nextSlice(); slice !== null; slice = writer.nextSlice()) {
    slices.push(slice);
    heaviest = Math.max(heaviest, weightOf(slice));
    if (slice.sessions.length === 0) lockHeaviest = Math.max(lockHeaviest, weightOf(slice));
    // Keep the table moving: releases and new acquires between slices.
    const s = sessions[step % 64] as SessionId;
    d.release(s, `held-${step}`);
    d.acquire(s, `new-${step}`, 'exclusive', false);
    step++;
  }
  t.ok(slices.length >= held / lockSnapshotSliceWeightMax, `${slices.length} slices`);
  // A slice stops once it reaches the bound; the record that reached it may pass it by its own weight.
  t.ok(lockHeaviest <= lockSnapshotSliceWeightMax + 2, `a slice of locks weighs at most the bound (heaviest ${lockHeaviest})`);
  t.ok(heaviest <= lockSnapshotSliceWeightMax + 1 + held / 64 + 2, `a slice weighs at most the bound plus one session (heaviest ${heaviest})`);
  const restored = LockTable.fromSlices(writer.header, slices);
  t.equal(canonical(restored.toSnapshot()), canonical(twin), 'restores to the table as it was when the writer began');
  t.equal(restored.stats().heldExclusive, held);
});

t.test('stats() counts what listLocks() and listSessions() show', async (t) => {
  for (let seed = 1; seed <= 5; seed++) {
    const rng = new Xoshiro128(seed);
    let d = new Driver();
    const sessions: SessionId[] = [];
    for (let i = 0; i < 400; i++) {
      randomStep(d, rng, sessions);
      if (i % 97 === 0) {
        const restored = LockTable.fromSnapshot(JSON.parse(JSON.stringify(d.table.toSnapshot())) as LockTableSnapshot);
        d = Object.assign(d, { table: restored });
      }
      const locks = d.table.listLocks();
      const want = {
        heldExclusive: locks.filter((l) => l.holders.some((h) => h.mode === 'exclusive')).length,
        heldShared: locks.filter((l) => l.holders.length > 0 && l.holders.every((h) => h.mode === 'shared')).length,
        waiters: locks.reduce((n, l) => n + l.waiters.length, 0),
        sessions: d.table.listSessions().length,
        locks: locks.length,
      };
      if (JSON.stringify(d.table.stats()) !== JSON.stringify(want)) {
        t.same(d.table.stats(), want, `seed ${seed} step ${i}`);
        return;
      }
    }
  }
  t.pass('stats agree on every step');
});

function entry(index: number, cmd: LockCommand): Entry {
  return { index: logIndex(index), term: term(1), type: EntryType.Normal, data: frameEntry(EntryKind.Lock, encodeLockCommand(cmd)) };
}

t.test('group 0: the chunked layout round-trips through the lock service, and a version 3 snapshot still restores', async (t) => {
  const group0 = (): { sm: Group0StateMachine; locks: LockService } => {
    const sm = new Group0StateMachine();
    const locks = new LockService();
    sm.register(EntryKind.Lock, 'locks', locks);
    return { sm, locks };
  };
  const { sm, locks } = group0();
  let index = 0;
  const c = clientId('g0');
  sm.apply(entry(++index, { kind: 'openSession', ttlMs: 5_000, lockDelayMs: 0, clientId: c, seq: 1, nowMs: 1 }));
  const session = index as unknown as SessionId;
  for (let i = 0; i < 5_000; i++) {
    sm.apply(entry(++index, { kind: 'acquire', session, lock: `k${i}`, mode: 'exclusive', wait: false, requestId: `r${i}`,
      clientId: c, seq: i + 2, nowMs: 1 }));
  }
  const twin = locks.snapshot();
  const oldLayout = sm.snapshot();
  t.equal(oldLayout[0], '{'.charCodeAt(0), 'snapshot() still writes the one-document layout');
  const job = sm.beginSnapshot();
  let steps = 0;
  let data: Uint8Array | null = null;
  let seq = 5_002;
  while ((data = job.step()) === null) {
    steps++;
    sm.apply(entry(++index, { kind: 'release', session, lock: `k${steps}`, clientId: c, seq: seq++, nowMs: 1 }));
  }
  t.ok(steps > 1, `written in ${steps} steps`);
  t.equal(data[0], 1, 'chunked layout');

  const fresh = group0();
  fresh.sm.restore(data);
  t.equal(canonical(fresh.locks.snapshot()), canonical(twin), 'chunked snapshot restores the table as of its index');

  // Version 3: what nodes wrote before, one JSON document whose lock part is a LockTableSnapshot.
  const v3 = JSON.parse(new TextDecoder().decode(oldLayout)) as { locks: LockTableSnapshot };
  t.equal(v3.locks.version, 3);
  const older = group0();
  older.sm.restore(oldLayout);
  t.equal(JSON.stringify(older.locks.snapshot()), JSON.stringify(twin), 'a version 3 snapshot restores (upgrade path)');
  t.equal(JSON.stringify(decodeLockTableChunks([new TextEncoder().encode(JSON.stringify(v3.locks))]).toSnapshot()), JSON.stringify(twin),
    'a lock part written whole (one JSON chunk) restores too');
});
