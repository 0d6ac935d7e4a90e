// Recovery keeps each group's commit inside its recovered log: WALs written so that
// the last hard state's commit is past the last entry (what a cut between a hard state
// and its entries left before entries went first), or behind a snapshot saved just
// before a crash, reopen with commit clamped, and a Raft replica restarts from them.

import t from 'tap';
import { logIndex, term } from '../../../core/ids.js';
import type { Snapshot } from '../../../core/raft/types.js';
import { recoverDir } from '../../../server/storage/recovery.js';
import { toPersistedState, Wal } from '../../../server/storage/wal.js';
import { bootstrapConf, entries, g0, g1, hs, restartRaft, tempDir } from './helpers.js';

function snap(index: number): Snapshot {
  return { meta: { index: logIndex(index), term: term(1), conf: bootstrapConf }, data: new TextEncoder().encode(`s${index}`) };
}

t.test('a commit past the last entry is clamped to the last entry', async (t) => {
  const dir = tempDir(t);
  const { wal } = await Wal.open(dir);
  wal.append(g0, hs(1, 3, 'n2'), entries(0, 1, 1, 5));
  // The records a cut leaves of an old-order batch: its hard state, not its entries 6..20.
  wal.append(g0, hs(2, 20, 'n3'), []);
  await wal.whenDurable(wal.append(g1, hs(1, 2), entries(1, 1, 1, 2)));
  await wal.close();

  const rec = recoverDir(dir);
  t.same(rec.commitsClamped, [{ group: g0, fromIndex: 20, toIndex: 5 }], 'the clamp is reported');
  const { wal: w2, recovered } = await Wal.open(dir);
  t.teardown(() => w2.close());
  t.same(recovered.get(g0)?.hardState, hs(2, 5, 'n3'), 'commit clamped to 5; term and vote kept');
  t.same(recovered.get(g1)?.hardState, hs(1, 2), 'a group with a sound commit is untouched');
  t.equal(w2.metrics().recoveryCommitsClamped, 1, 'counted in the metrics');
  const raft = restartRaft(recovered.get(g0));
  t.equal(raft.status().commit, 5, 'Raft restarts at the clamped commit');
  // The clamped hard state is what the WAL re-writes when compaction moves it on.
  await w2.whenDurable(w2.append(g0, null, entries(0, 2, 6, 6)));
});

t.test('with a snapshot and no entries after it, commit is clamped into the snapshot index', async (t) => {
  for (const [commit, why] of [
    [4, 'a commit behind an installed snapshot is raised to it'],
    [30, 'a commit past an empty log is lowered to the snapshot'],
  ] as const) {
    const dir = tempDir(t);
    const { wal } = await Wal.open(dir);
    await wal.whenDurable(wal.append(g0, hs(1, 2), entries(0, 1, 1, 3)));
    // A snapshot from the leader replaces the log; the hard state after it is stale or
    // names entries that were lost.
    await wal.saveSnapshot(g0, snap(8), { replacesLog: true });
    await wal.whenDurable(wal.append(g0, hs(1, commit), []));
    await wal.close();
    const { wal: w2, recovered } = await Wal.open(dir);
    t.teardown(() => w2.close());
    const r = recovered.get(g0);
    t.equal(r?.entries.length, 0, 'no entries after the snapshot');
    t.equal(r?.hardState?.commit, 8, why);
    t.equal(restartRaft(r).status().commit, 8, 'Raft restarts at the snapshot index');
  }
});

t.test('a snapshot without any hard state restarts at the snapshot index', async (t) => {
  const dir = tempDir(t);
  const { wal } = await Wal.open(dir);
  // A new member's first Ready: the leader's snapshot, renamed into place before the crash.
  await wal.saveSnapshot(g0, snap(8), { replacesLog: true });
  await wal.close();
  const { wal: w2, recovered } = await Wal.open(dir);
  t.teardown(() => w2.close());
  const r = recovered.get(g0);
  t.equal(r?.hardState, null, 'no hard state on disk');
  t.same(toPersistedState(r, bootstrapConf).hardState, { term: 0, vote: '', commit: 8 }, 'zero term, commit at the snapshot');
  t.equal(restartRaft(r).status().commit, 8, 'Raft restarts');
  t.same(toPersistedState(undefined, bootstrapConf).hardState, hs(0, 0), 'a group never seen starts from zero');
});
