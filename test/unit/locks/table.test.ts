// Checks the lock table's promises one scenario at a time: compatibility matrix,
// FIFO, shared batching, writer non-starvation, reentrancy, downgrade, upgrade,
// expiry/close, cancelWait, tryLock, idempotent retries, deadlock detection (and its
// absence), lock-delay, snapshots, fencing tokens, and where dedup entries live
// (per session, so no crowd of other clients can make a retry apply twice). Each test drives a LockTable
// through the Driver (increasing indices, clientId+seq per session) and asserts on
// results, events and the read API.

import assert from 'node:assert/strict';
import t from 'tap';
import { dedupClientsWithoutSessionMax, dedupLanesPerSessionMax } from '../../../core/constants.js';
import { clientId, logIndex, sessionId } from '../../../core/ids.js';
import type { SessionId } from '../../../core/ids.js';
import type { ApplyOutcome, LockEvent, LockMode } from '../../../core/locks/commands.js';
import type { LockTableSnapshot } from '../../../core/locks/table.js';
import { LockTable } from '../../../core/locks/table.js';
import { Driver } from './driver.js';

const kinds = (o: ApplyOutcome): string[] => o.events.map((e) => `${e.kind}:${e.session}`);
const granted = (o: ApplyOutcome): SessionId[] =>
  o.events.filter((e): e is Extract<LockEvent, { kind: 'granted' }> => e.kind === 'granted').map((e) => e.session);

t.test('compatibility matrix: only shared+shared coexist', async (t) => {
  const modes: LockMode[] = ['shared', 'exclusive'];
  for (const first of modes) {
    for (const second of modes) {
      const d = new Driver();
      const a = d.open();
      const b = d.open();
      t.equal(d.acquire(a, 'L', first).result.kind, 'granted');
      const r = d.acquire(b, 'L', second, false).result;
      const expected = first === 'shared' && second === 'shared' ? 'granted' : 'error';
      t.equal(r.kind, expected, `${first} then ${second}`);
      if (r.kind === 'error') t.equal(r.code, 'WOULD_BLOCK');
    }
  }
});

t.test('FIFO: exclusive waiters are granted in arrival order, one per release', async (t) => {
  const d = new Driver();
  const [a, b, c, e] = [d.open(), d.open(), d.open(), d.open()];
  d.acquire(a, 'L', 'exclusive');
  t.equal(d.acquire(b, 'L', 'exclusive').result.kind, 'queued');
  t.equal(d.acquire(c, 'L', 'exclusive').result.kind, 'queued');
  t.equal(d.acquire(e, 'L', 'exclusive').result.kind, 'queued');
  t.same(granted(d.release(a, 'L')), [b]);
  t.same(granted(d.release(b, 'L')), [c]);
  t.same(granted(d.release(c, 'L')), [e]);
  t.same(d.waiters('L'), []);
  t.same(d.holders('L'), [`${e}:exclusive:1`]);
});

t.test('a run of shared waiters at the head is granted together, stopping at an exclusive', async (t) => {
  const d = new Driver();
  const [a, b, c, x, e] = [d.open(), d.open(), d.open(), d.open(), d.open()];
  d.acquire(a, 'L', 'exclusive');
  d.acquire(b, 'L', 'shared');
  d.acquire(c, 'L', 'shared');
  d.acquire(x, 'L', 'exclusive');
  d.acquire(e, 'L', 'shared');
  const out = d.release(a, 'L');
  t.same(granted(out), [b, c], 'only the shared run before the exclusive waiter');
  const tokens = out.events.map((ev) => (ev.kind === 'granted' ? ev.token : -1));
  t.same(tokens, [out.events.length > 0 ? d.index : 0, d.index], 'woken waiters get the index of the waking entry');
  t.same(d.waiters('L'), [`${x}:exclusive`, `${e}:shared`]);
  t.same(granted(d.release(b, 'L')), [], 'one shared holder left: nothing woken');
  t.same(granted(d.release(c, 'L')), [x]);
  t.same(granted(d.release(x, 'L')), [e]);
});

t.test('writer non-starvation: a waiting exclusive blocks later shared requests while held shared', async (t) => {
  const d = new Driver();
  const [a, x, b] = [d.open(), d.open(), d.open()];
  d.acquire(a, 'L', 'shared');
  t.equal(d.acquire(x, 'L', 'exclusive').result.kind, 'queued');
  const r = d.acquire(b, 'L', 'shared', false).result;
  t.equal(r.kind === 'error' && r.code, 'WOULD_BLOCK', 'tryLock shared fails behind a waiting writer');
  t.equal(d.acquire(b, 'L', 'shared').result.kind, 'queued');
  t.same(granted(d.release(a, 'L')), [x]);
});

t.test('reentrancy: count goes up with the same token; release counts down', async (t) => {
  const d = new Driver();
  const a = d.open();
  const first = d.acquire(a, 'L', 'exclusive').result;
  t.equal(first.kind, 'granted');
  if (first.kind !== 'granted') return;
  const again = d.acquire(a, 'L', 'exclusive').result;
  t.match(again, { kind: 'granted', token: first.token, count: 2, mode: 'exclusive' });
  t.match(d.acquire(a, 'L', 'shared').result, { kind: 'granted', token: first.token, count: 3, mode: 'exclusive' });
  t.match(d.release(a, 'L').result, { kind: 'released', count: 2 });
  t.match(d.release(a, 'L').result, { kind: 'released', count: 1 });
  t.match(d.release(a, 'L').result, { kind: 'released', count: 0 });
  t.equal(d.table.lockInfo('L'), null, 'lock gone when free');
  t.match(d.release(a, 'L').result, { kind: 'error', code: 'NOT_FOUND' });
});

t.test('reentrant shared is granted even behind a waiting writer (else self-deadlock)', async (t) => {
  const d = new Driver();
  const [a, x] = [d.open(), d.open()];
  d.acquire(a, 'L', 'shared');
  d.acquire(x, 'L', 'exclusive');
  t.match(d.acquire(a, 'L', 'shared').result, { kind: 'granted', count: 2 });
});

t.test('downgrade exclusive -> shared wakes the shared run, keeps the token', async (t) => {
  const d = new Driver();
  const [a, b, c, x] = [d.open(), d.open(), d.open(), d.open()];
  const g = d.acquire(a, 'L', 'exclusive').result;
  d.acquire(b, 'L', 'shared');
  d.acquire(c, 'L', 'shared');
  d.acquire(x, 'L', 'exclusive');
  const out = d.send({ kind: 'downgrade', session: a, lock: 'L' });
  t.match(out.result, { kind: 'downgraded', token: g.kind === 'granted' ? g.token : -1 });
  t.same(granted(out), [b, c]);
  t.same(d.holders('L'), [`${a}:shared:1`, `${b}:shared:1`, `${c}:shared:1`]);
  t.match(d.send({ kind: 'downgrade', session: a, lock: 'L' }).result, { kind: 'error', code: 'BAD_REQUEST' });
  t.match(d.send({ kind: 'downgrade', session: x, lock: 'L' }).result, { kind: 'error', code: 'NOT_FOUND' });
});

t.test('upgrade shared -> exclusive waits for the other holders, jumps ordinary waiters, new token', async (t) => {
  const d = new Driver();
  const [a, b, x] = [d.open(), d.open(), d.open()];
  const g = d.acquire(a, 'L', 'shared').result;
  d.acquire(b, 'L', 'shared');
  t.equal(d.acquire(x, 'L', 'exclusive').result.kind, 'queued');
  t.equal(d.acquire(a, 'L', 'exclusive').result.kind, 'queued', 'upgrade waits for b');
  t.same(d.waiters('L'), [`${a}:exclusive`, `${x}:exclusive`], 'upgrade queued ahead of x');
  const out = d.release(b, 'L');
  t.same(granted(out), [a]);
  const ev = out.events[0];
  t.ok(ev?.kind === 'granted' && g.kind === 'granted' && ev.token > g.token && ev.count === 2, 'new token, count 2');
  t.same(d.holders('L'), [`${a}:exclusive:2`]);
  // Sole shared holder upgrades at once.
  const d2 = new Driver();
  const s = d2.open();
  d2.acquire(s, 'M', 'shared');
  t.match(d2.acquire(s, 'M', 'exclusive').result, { kind: 'granted', mode: 'exclusive', count: 2 });
});

t.test('two upgraders on one lock: the second is the deadlock victim', async (t) => {
  const d = new Driver();
  const [a, b] = [d.open(), d.open()];
  d.acquire(a, 'L', 'shared');
  d.acquire(b, 'L', 'shared');
  t.equal(d.acquire(a, 'L', 'exclusive').result.kind, 'queued');
  t.match(d.acquire(b, 'L', 'exclusive').result, { kind: 'error', code: 'DEADLOCK' });
  t.same(d.waiters('L'), [`${a}:exclusive`], 'victim not enqueued');
  t.same(granted(d.release(b, 'L')), [a]);
});

t.test('expiry releases holds and fails waits at once, with events; a renewal in between wins', async (t) => {
  const d = new Driver();
  const [a, b, c] = [d.open(), d.open(), d.open()];
  d.acquire(a, 'L', 'exclusive');
  d.acquire(a, 'M', 'exclusive');
  d.acquire(b, 'M', 'exclusive');
  d.acquire(c, 'L', 'shared');
  d.acquire(b, 'L', 'shared');
  d.acquire(a, 'N', 'exclusive');
  d.acquire(c, 'N', 'shared');
  // b waits on L and M; expire b and a together.
  const out = d.expire(a, b);
  t.match(out.result, { kind: 'expired', sessions: [a, b] });
  t.same(kinds(out), [`revoked:${a}`, `revoked:${a}`, `revoked:${a}`, `failed:${b}`, `failed:${b}`, `granted:${c}`, `granted:${c}`],
    'the expired holder is told of each hold (to push LockLost), then waits fail, then grants');
  t.ok(out.events.every((e) => e.kind !== 'revoked' || e.reason === 'expired'));
  t.ok(out.events.every((e) => e.kind !== 'failed' || e.code === 'SESSION_EXPIRED'));
  t.same(out.endedSessions, [a, b]);
  t.same(d.holders('L'), [`${c}:shared:1`]);
  t.equal(d.table.lockInfo('M'), null);
  t.same(d.holders('N'), [`${c}:shared:1`]);
  t.match(d.acquire(a, 'Z', 'shared').result, { kind: 'error', code: 'SESSION_EXPIRED' });
  // A keepAlive applied after the leader decided: the expiry is skipped.
  const stale = d.table.sessionInfo(c)?.renewedIndex ?? logIndex(0);
  d.send({ kind: 'keepAlive', session: c });
  const skip = d.applyRaw({ kind: 'expireSessions', sessions: [{ session: c, renewedIndex: stale }], nowMs: d.nowMs });
  t.match(skip.result, { kind: 'expired', sessions: [] });
  t.ok(d.table.sessionInfo(c), 'c still open');
  t.same(d.table.listSessions().map((s) => s.session), [c]);
});

t.test('closeSession releases without lock-delay; unknown session answers SESSION_EXPIRED', async (t) => {
  const d = new Driver();
  const a = d.open('ca', 10_000, 5_000);
  const b = d.open();
  d.acquire(a, 'L', 'exclusive');
  d.acquire(b, 'L', 'exclusive');
  const out = d.send({ kind: 'closeSession', session: a });
  t.same(granted(out), [b]);
  t.same(out.delayedLocks, []);
  t.match(d.send({ kind: 'keepAlive', session: a }, 'other').result, { kind: 'error', code: 'SESSION_EXPIRED' });
});

t.test('cancelWait fails the waiter, changes nothing once granted (answers the grant), and can unblock others', async (t) => {
  const d = new Driver();
  const [a, x, b] = [d.open(), d.open(), d.open()];
  d.acquire(a, 'L', 'shared');
  d.acquire(x, 'L', 'exclusive', true, 'rx');
  d.acquire(b, 'L', 'shared', true, 'rb');
  const out = d.applyRaw({ kind: 'cancelWait', session: x, lock: 'L', requestId: 'rx', reason: 'timeout', nowMs: d.nowMs });
  t.match(out.result, { kind: 'ok' });
  t.match(out.events, [
    { kind: 'failed', session: x, code: 'TIMEOUT', requestId: 'rx' },
    { kind: 'granted', session: b, requestId: 'rb' },
  ]);
  const again = d.send({ kind: 'cancelWait', session: b, lock: 'L', requestId: 'rb', reason: 'cancelled' });
  t.match(again.result, { kind: 'granted', lock: 'L', mode: 'shared', count: 1 }, 'already granted: the cancel answers the grant');
  t.same(again.events, []);
  t.same(d.holders('L'), [`${a}:shared:1`, `${b}:shared:1`]);
  d.acquire(x, 'L', 'exclusive', true, 'rx2');
  const c2 = d.send({ kind: 'cancelWait', session: x, lock: 'L', requestId: 'rx2', reason: 'cancelled' });
  t.match(c2.events, [{ kind: 'failed', code: 'CANCELLED' }]);
});

t.test('tryLock answers WOULD_BLOCK and changes nothing', async (t) => {
  const d = new Driver();
  const [a, b] = [d.open(), d.open()];
  d.acquire(a, 'L', 'exclusive');
  const before = JSON.stringify(d.table.lockInfo('L'));
  t.match(d.acquire(b, 'L', 'exclusive', false).result, { kind: 'error', code: 'WOULD_BLOCK' });
  t.equal(JSON.stringify(d.table.lockInfo('L')), before);
  t.match(d.acquire(b, 'Free', 'exclusive', false).result, { kind: 'granted' });
});

t.test('idempotent retry: same clientId+seq twice -> one effect, same result', async (t) => {
  const d = new Driver();
  const a = d.open('ca');
  const cmd = { kind: 'acquire', session: a, lock: 'L', mode: 'shared', wait: true, requestId: 'q', clientId: clientId('ca'), seq: 100, nowMs: 1 } as const;
  const one = d.applyRaw(cmd);
  const two = d.applyRaw(cmd);
  t.same(two.result, one.result);
  t.equal(two.duplicate, true);
  t.equal(one.duplicate, false);
  t.same(d.holders('L'), [`${a}:shared:1`], 'count 1, not 2');
  t.match(d.applyRaw({ ...cmd, seq: 99 }).result, { kind: 'error', code: 'STALE_REQUEST' });
  t.same(d.holders('L'), [`${a}:shared:1`]);
  // A queued acquire's cached result becomes its final outcome.
  const b = d.open('cb');
  d.acquire(b, 'X', 'exclusive');
  const q = { kind: 'acquire', session: a, lock: 'X', mode: 'exclusive', wait: true, requestId: 'w', clientId: clientId('ca'), seq: 101, nowMs: 1 } as const;
  t.match(d.applyRaw(q).result, { kind: 'queued' });
  t.match(d.applyRaw(q).result, { kind: 'queued' });
  d.release(b, 'X');
  t.match(d.applyRaw(q).result, { kind: 'granted', lock: 'X' }, 'retry after the grant learns the grant');
  t.same(d.holders('X'), [`${a}:exclusive:1`]);
  // openSession retried: one session.
  const open = { kind: 'openSession', ttlMs: 5_000, lockDelayMs: 0, clientId: clientId('cz'), seq: 1, nowMs: 1 } as const;
  const s1 = d.applyRaw(open).result;
  const s2 = d.applyRaw(open).result;
  t.same(s2, s1);
  t.equal(d.table.listSessions().length, 3);
});

t.test('deadlock: cycle of 2, requester is the victim and is not enqueued', async (t) => {
  const d = new Driver();
  const [a, b] = [d.open(), d.open()];
  d.acquire(a, 'A', 'exclusive');
  d.acquire(b, 'B', 'exclusive');
  t.equal(d.acquire(a, 'B', 'exclusive').result.kind, 'queued');
  t.match(d.acquire(b, 'A', 'exclusive').result, { kind: 'error', code: 'DEADLOCK' });
  t.same(d.waiters('A'), []);
  t.same(d.table.sessionInfo(b)?.waits, []);
  t.same(granted(d.release(b, 'B')), [a], 'the survivor proceeds');
});

t.test('deadlock: cycle of 3 through shared and exclusive modes', async (t) => {
  const d = new Driver();
  const [a, b, c] = [d.open(), d.open(), d.open()];
  d.acquire(a, 'A', 'shared');
  d.acquire(b, 'B', 'exclusive');
  d.acquire(c, 'C', 'exclusive');
  t.equal(d.acquire(a, 'B', 'shared').result.kind, 'queued');
  t.equal(d.acquire(b, 'C', 'shared').result.kind, 'queued');
  t.match(d.acquire(c, 'A', 'exclusive').result, { kind: 'error', code: 'DEADLOCK' });
  t.equal(d.acquire(c, 'A', 'shared').result.kind, 'granted', 'shared on A is compatible: no cycle');
});

t.test('deadlock through FIFO order: waiting behind a writer counts as waiting for it', async (t) => {
  const d = new Driver();
  const [h, x, z] = [d.open(), d.open(), d.open()];
  d.acquire(h, 'L', 'shared');
  d.acquire(z, 'M', 'exclusive');
  t.equal(d.acquire(x, 'L', 'exclusive').result.kind, 'queued'); // x -> h
  t.equal(d.acquire(z, 'L', 'shared').result.kind, 'queued'); // z -> x (FIFO)
  t.match(d.acquire(x, 'M', 'exclusive').result, { kind: 'error', code: 'DEADLOCK' }); // x -> z closes it
});

t.test('no deadlock reported without a cycle (chains, diamonds, shared holders)', async (t) => {
  const d = new Driver();
  const [a, b, c, e] = [d.open(), d.open(), d.open(), d.open()];
  d.acquire(a, 'A', 'exclusive');
  d.acquire(b, 'B', 'shared');
  d.acquire(c, 'B', 'shared');
  t.equal(d.acquire(b, 'A', 'exclusive').result.kind, 'queued'); // b -> a
  t.equal(d.acquire(c, 'A', 'shared').result.kind, 'queued'); // c -> b (behind writer), a
  t.equal(d.acquire(e, 'B', 'exclusive').result.kind, 'queued'); // e -> b, c
  t.equal(d.acquire(e, 'A', 'exclusive').result.kind, 'queued'); // e -> a, b, c
  const f = d.open();
  d.acquire(f, 'F', 'exclusive');
  t.equal(d.acquire(a, 'F', 'exclusive').result.kind, 'queued'); // a -> f: still a DAG
});

t.test('lock-delay: after EXPIRY nobody gets the lock until wakeDelayed', async (t) => {
  const d = new Driver();
  const a = d.open('ca', 10_000, 3_000);
  const b = d.open();
  d.acquire(a, 'L', 'exclusive');
  d.acquire(b, 'L', 'exclusive');
  d.nowMs = 2_000_000;
  const out = d.expire(a);
  t.same(granted(out), [], 'waiter not granted during the delay');
  t.same(out.delayedLocks, [{ lock: 'L', untilMs: 2_003_000, lockDelayMs: 3_000 }]);
  t.same(d.table.delayedLocks(), [{ lock: 'L', untilMs: 2_003_000, lockDelayMs: 3_000 }]);
  const c = d.open();
  t.match(d.acquire(c, 'L', 'shared', false).result, { kind: 'error', code: 'WOULD_BLOCK' });
  const wake = d.applyRaw({ kind: 'wakeDelayed', lock: 'L', nowMs: 2_003_000 });
  t.same(granted(wake), [b]);
  t.same(d.table.delayedLocks(), []);
  t.match(d.applyRaw({ kind: 'wakeDelayed', lock: 'L', nowMs: 2_003_001 }).result, { kind: 'error', code: 'NOT_FOUND' });
  // A delayed lock with no waiters survives until woken, then disappears.
  const e = d.open('ce', 10_000, 1_000);
  d.acquire(e, 'Q', 'shared');
  d.expire(e);
  t.ok(d.table.lockInfo('Q')?.delay, 'kept for its delay');
  d.applyRaw({ kind: 'wakeDelayed', lock: 'Q', nowMs: d.nowMs + 1_000 });
  t.equal(d.table.lockInfo('Q'), null);
});

t.test('fencing tokens: index of the granting entry, strictly increasing per lock', async (t) => {
  const d = new Driver();
  const ss = [d.open(), d.open(), d.open(), d.open()];
  const tokens: number[] = [];
  for (const s of ss) {
    const r = d.acquire(s, 'L', 'exclusive').result;
    if (r.kind === 'granted') tokens.push(r.token);
  }
  for (let i = 0; i < ss.length - 1; i++) {
    const out = d.release(ss[i] as SessionId, 'L');
    for (const e of out.events) if (e.kind === 'granted') tokens.push(e.token);
    t.equal(tokens[tokens.length - 1], d.index, 'token = index of the waking entry');
  }
  t.equal(tokens.length, 4);
  for (let i = 1; i < tokens.length; i++) t.ok((tokens[i] as number) > (tokens[i - 1] as number), 'strictly increasing');
  t.equal(d.table.lockInfo('L')?.lastToken, tokens[3]);
});

t.test('bounds and validation answer errors, never crash', async (t) => {
  const d = new Driver();
  const a = d.open();
  t.match(d.acquire(a, '', 'shared').result, { kind: 'error', code: 'BAD_REQUEST' });
  t.match(d.acquire(a, 'x'.repeat(513), 'shared').result, { kind: 'error', code: 'BAD_REQUEST' });
  t.match(d.acquire(a, 'é'.repeat(257), 'shared').result, { kind: 'error', code: 'BAD_REQUEST' }, '514 bytes');
  t.match(d.acquire(a, 'é'.repeat(256), 'shared').result, { kind: 'granted' }, '512 bytes');
  t.match(d.send({ kind: 'openSession', ttlMs: 1, lockDelayMs: 0 }, 'z').result, { kind: 'error', code: 'BAD_REQUEST' });
  t.match(d.acquire(sessionId(999_999), 'L', 'shared').result, { kind: 'error', code: 'SESSION_EXPIRED' });
  const b = d.open();
  d.acquire(b, 'L', 'exclusive');
  d.acquire(a, 'L', 'shared', true, 'one');
  t.match(d.acquire(a, 'L', 'exclusive', true, 'two').result, { kind: 'error', code: 'BAD_REQUEST' }, 'already waiting');
});

t.test('snapshot round trip gives an identical table that behaves the same', async (t) => {
  const d = new Driver();
  const [a, b, c] = [d.open(), d.open('cb', 10_000, 2_000), d.open()];
  d.acquire(a, 'L', 'shared');
  d.acquire(b, 'L', 'shared');
  d.acquire(c, 'L', 'exclusive');
  d.acquire(a, 'L', 'shared');
  d.acquire(b, 'M', 'exclusive');
  d.expire(b);
  const snap = d.table.toSnapshot();
  const json = JSON.stringify(snap);
  const copy = LockTable.fromSnapshot(JSON.parse(json));
  t.equal(JSON.stringify(copy.toSnapshot()), json, 'identical snapshot after the round trip');
  const next = { kind: 'release', session: a, lock: 'L', clientId: clientId('c1'), seq: 50, nowMs: 5 } as const;
  const o1 = d.table.apply(next, logIndex(d.index + 1));
  const o2 = copy.apply(next, logIndex(d.index + 1));
  t.same(o2, o1, 'same outcome from both');
  t.equal(JSON.stringify(copy.toSnapshot()), JSON.stringify(d.table.toSnapshot()));
});

// Issue 7 item 4: a client's lanes are client ids that never open a session; their
// dedup entries must not share a global LRU with every other client, or a retried
// request whose answer was lost is applied a second time.
t.test('dedup lives with the session: retries stay exactly-once however many other clients act', async (t) => {
  const others = dedupClientsWithoutSessionMax + 1;
  /** Makes `others` requests from as many distinct lane ids, spread over sessions within the per-session lane bound. */
  const crowd = (d: Driver, kind: 'keepAlive' | 'forceRelease'): void => {
    let session: SessionId | null = null;
    for (let i = 0; i < others; i++) {
      if (kind === 'forceRelease') {
        d.applyRaw({ kind, lock: `free${i}`, clientId: clientId(`admin-lane-${i}`), seq: 1, nowMs: d.nowMs });
        continue;
      }
      if (session === null || i % 512 === 0) session = d.open(`crowd-opener-${i}`);
      const out = d.applyRaw({ kind, session, clientId: clientId(`crowd-lane-${i}`), seq: 1, nowMs: d.nowMs });
      assert.equal(out.result.kind, 'ok');
    }
  };
  const cases: { name: string; run: (d: Driver) => void }[] = [
    {
      name: 'acquire on a lane that did not open the session, retried after 1,025 other lanes',
      run: (d) => {
        const s = d.open('opener');
        const acquire = { kind: 'acquire', session: s, lock: 'L', mode: 'exclusive', wait: true, requestId: 'q1',
          clientId: clientId('opener/1'), seq: 7, nowMs: d.nowMs } as const;
        const first = d.applyRaw(acquire);
        t.match(first.result, { kind: 'granted', count: 1 });
        crowd(d, 'keepAlive');
        const retry = d.applyRaw(acquire);
        t.same(retry.result, first.result, 'the retry answers the original grant');
        t.equal(retry.duplicate, true);
        t.same(d.holders('L'), [`${s}:exclusive:1`], 'hold count stays 1');
      },
    },
    {
      name: 'queued acquire retried after 1,025 other lanes learns its grant, applied once',
      run: (d) => {
        const [a, b] = [d.open('a'), d.open('b')];
        d.acquire(a, 'L', 'exclusive');
        const acquire = { kind: 'acquire', session: b, lock: 'L', mode: 'shared', wait: true, requestId: 'w',
          clientId: clientId('b/3'), seq: 2, nowMs: d.nowMs } as const;
        t.match(d.applyRaw(acquire).result, { kind: 'queued' });
        d.release(a, 'L');
        crowd(d, 'keepAlive');
        t.match(d.applyRaw(acquire).result, { kind: 'granted', lock: 'L', count: 1 });
        t.same(d.holders('L'), [`${b}:shared:1`]);
      },
    },
    {
      name: 'forceRelease retried after its entry was evicted answers STALE_REQUEST, not a second release',
      run: (d) => {
        const [a, b] = [d.open('a'), d.open('b')];
        d.acquire(a, 'L', 'exclusive');
        d.acquire(b, 'L', 'exclusive');
        const force = { kind: 'forceRelease', lock: 'L', clientId: clientId('admin/0'), seq: 4, nowMs: d.nowMs } as const;
        t.same(d.applyRaw(force).result, { kind: 'ok' });
        t.same(d.holders('L'), [`${b}:exclusive:1`], 'the waiter got the lock');
        crowd(d, 'forceRelease');
        t.match(d.applyRaw(force).result, { kind: 'error', code: 'STALE_REQUEST', message: /evicted; retry with a new client id/ });
        t.same(d.holders('L'), [`${b}:exclusive:1`], 'the new holder keeps the lock');
        t.same(d.applyRaw({ ...force, seq: 5 }).result, { kind: 'ok' }, 'a newer seq on that lane is a new request');
        t.same(d.holders('L'), []);
      },
    },
    {
      name: 'openSession retried after 1,025 other lanes answers the same session',
      run: (d) => {
        const open = { kind: 'openSession', ttlMs: 5_000, lockDelayMs: 0, clientId: clientId('z/0'), seq: 9, nowMs: d.nowMs } as const;
        const first = d.applyRaw(open);
        crowd(d, 'keepAlive');
        const before = d.table.listSessions().length;
        t.same(d.applyRaw(open).result, first.result);
        t.equal(d.table.listSessions().length, before, 'no second session');
      },
    },
    {
      name: 'release retried after its session closed answers SESSION_EXPIRED and changes nothing',
      run: (d) => {
        const [a, b] = [d.open('a'), d.open('b')];
        d.acquire(a, 'L', 'exclusive');
        const release = { kind: 'release', session: a, lock: 'L', clientId: clientId('a/1'), seq: 3, nowMs: d.nowMs } as const;
        t.match(d.applyRaw(release).result, { kind: 'released', count: 0 });
        d.acquire(b, 'L', 'exclusive');
        d.send({ kind: 'closeSession', session: a });
        t.match(d.applyRaw(release).result, { kind: 'error', code: 'SESSION_EXPIRED' });
        t.same(d.holders('L'), [`${b}:exclusive:1`]);
      },
    },
  ];
  for (const c of cases) {
    await t.test(c.name, async () => {
      const d = new Driver();
      c.run(d);
      const snap = JSON.stringify(d.table.toSnapshot());
      t.equal(JSON.stringify(LockTable.fromSnapshot(JSON.parse(snap) as LockTableSnapshot).toSnapshot()), snap, 'snapshot round trip');
    });
  }
});

t.test('one session accepts requests from at most dedupLanesPerSessionMax client ids', async (t) => {
  const d = new Driver();
  const s = d.open('opener');
  // The opener's lane is the first entry.
  for (let i = 1; i < dedupLanesPerSessionMax; i++) {
    t.equal(d.applyRaw({ kind: 'keepAlive', session: s, clientId: clientId(`lane-${i}`), seq: 1, nowMs: d.nowMs }).result.kind, 'ok');
  }
  t.match(d.applyRaw({ kind: 'keepAlive', session: s, clientId: clientId('one-too-many'), seq: 1, nowMs: d.nowMs }).result,
    { kind: 'error', code: 'BAD_REQUEST' });
  t.equal(d.applyRaw({ kind: 'keepAlive', session: s, clientId: clientId('lane-1'), seq: 2, nowMs: d.nowMs }).result.kind, 'ok',
    'known lanes keep working');
});

// Item 1: a retried waiting acquire (same client id and seq) must learn what became of
// its wait on every path, or a retry that parks on "queued" would wait for an event that
// already happened. Checked through a snapshot round trip too (a new leader may start
// from one).
t.test('a retried waiting acquire answers its current outcome: queued, granted, timed out, cancelled', async (t) => {
  for (const ending of ['granted', 'timeout', 'cancelled', 'still waiting'] as const) {
    const d = new Driver();
    const a = d.open('ca');
    const b = d.open('cb');
    d.acquire(a, 'X', 'exclusive');
    const wait = { kind: 'acquire', session: b, lock: 'X', mode: 'exclusive', wait: true, requestId: 'w', clientId: clientId('cb'), seq: 10,
      nowMs: 1, waitMs: 500 } as const;
    t.match(d.applyRaw(wait).result, { kind: 'queued' }, `${ending}: queued first`);
    switch (ending) {
      case 'granted': d.release(a, 'X'); break;
      case 'timeout': d.applyRaw({ kind: 'cancelWait', session: b, lock: 'X', requestId: 'w', reason: 'timeout', nowMs: 2 }); break;
      case 'cancelled': d.applyRaw({ kind: 'cancelWait', session: b, lock: 'X', requestId: 'w', reason: 'cancelled', nowMs: 2,
        clientId: clientId('cb-other-lane'), seq: 1 }); break;
      case 'still waiting': break;
    }
    const restored = LockTable.fromSnapshot(JSON.parse(JSON.stringify(d.table.toSnapshot())) as LockTableSnapshot);
    for (const [where, table] of [['live', d.table], ['restored', restored]] as const) {
      const retry = table.apply(wait, logIndex(d.index + 1));
      t.equal(retry.duplicate, true, `${ending} (${where}): a duplicate`);
      t.same(retry.events, [], `${ending} (${where}): changes nothing`);
      const token = d.table.lockInfo('X')?.holders[0]?.token;
      switch (ending) {
        case 'granted': t.same(retry.result, { kind: 'granted', lock: 'X', token, mode: 'exclusive', count: 1 }, `${ending} (${where})`); break;
        case 'timeout': t.match(retry.result, { kind: 'error', code: 'TIMEOUT' }, `${ending} (${where})`); break;
        case 'cancelled': t.match(retry.result, { kind: 'error', code: 'CANCELLED' }, `${ending} (${where})`); break;
        case 'still waiting': t.same(retry.result, { kind: 'queued', lock: 'X', requestId: 'w' }, `${ending} (${where})`); break;
      }
    }
  }
});

// Item 2: a client that gave up on a waiting acquire cancels it; if the grant applied
// first (the client never heard it), NOT_FOUND would leave the hold in place with nobody
// to release it. The cancel answers 'granted' with the hold instead, and changes nothing.
t.test('a cancel of a request that was already granted answers granted with the hold; other cancels answer NOT_FOUND', async (t) => {
  const d = new Driver();
  const a = d.open();
  const b = d.open();
  d.acquire(a, 'X', 'exclusive');
  t.equal(d.acquire(b, 'X', 'exclusive', true, 'late').result.kind, 'queued');
  const grant = d.release(a, 'X');
  t.same(granted(grant), [b], 'the wait is granted');
  const token = d.table.lockInfo('X')?.holders[0]?.token;
  t.same(d.table.lockInfo('X')?.holders, [{ session: b, mode: 'exclusive', count: 1, token, requestId: 'late' }], 'the hold names its request');
  const before = JSON.stringify(d.table.toSnapshot().locks);
  const cancel = d.send({ kind: 'cancelWait', session: b, lock: 'X', requestId: 'late', reason: 'cancelled' });
  t.same(cancel.result, { kind: 'granted', lock: 'X', token, mode: 'exclusive', count: 1 }, 'the cancel answers the grant');
  t.same(cancel.events, []);
  t.equal(JSON.stringify(d.table.toSnapshot().locks), before, 'and changes nothing');
  // The leader's own timeout for it, if it raced the grant, changes nothing either.
  t.match(d.applyRaw({ kind: 'cancelWait', session: b, lock: 'X', requestId: 'late', reason: 'timeout', nowMs: 1 }).result, { kind: 'granted' });
  t.match(d.send({ kind: 'cancelWait', session: b, lock: 'X', requestId: 'never', reason: 'cancelled' }).result,
    { kind: 'error', code: 'NOT_FOUND' }, 'a request that never applied: NOT_FOUND');
  t.match(d.send({ kind: 'cancelWait', session: a, lock: 'X', requestId: 'late', reason: 'cancelled' }).result,
    { kind: 'error', code: 'NOT_FOUND' }, 'another session\'s request: NOT_FOUND');
  // Reentrant acquire: the hold's latest grant is the new request.
  t.match(d.acquire(b, 'X', 'exclusive', true, 'again').result, { kind: 'granted', count: 2 });
  t.match(d.send({ kind: 'cancelWait', session: b, lock: 'X', requestId: 'again', reason: 'cancelled' }).result,
    { kind: 'granted', count: 2 });
  d.release(b, 'X');
  d.release(b, 'X');
  t.match(d.send({ kind: 'cancelWait', session: b, lock: 'X', requestId: 'again', reason: 'cancelled' }).result,
    { kind: 'error', code: 'NOT_FOUND' }, 'released: NOT_FOUND');
  // A version 2 snapshot (no requestId on holds) still restores.
  d.acquire(a, 'Y', 'shared', true, 'y1');
  const v3 = d.table.toSnapshot();
  const v2 = { ...v3, version: 2, locks: v3.locks.map((l) => ({ ...l, holders: l.holders.map(({ requestId: _r, ...h }) => h) })) };
  const old = LockTable.fromSnapshot(v2 as unknown as LockTableSnapshot);
  t.equal(old.lockInfo('Y')?.holders[0]?.requestId, '', 'a hold restored from version 2 names no request');
  t.match(old.apply({ kind: 'cancelWait', session: a, lock: 'Y', requestId: 'y1', reason: 'timeout', nowMs: 1 }, logIndex(d.index + 1)).result,
    { kind: 'error', code: 'NOT_FOUND' });
});
