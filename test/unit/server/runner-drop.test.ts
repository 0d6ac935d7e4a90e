// GroupHost.drop (issue 9: groups at run time): a dropped group's waiters fail with
// UNAVAILABLE, its storage gets a tombstone (so a restart forgets it and compaction
// reclaims it), and its id cannot be ensured again. An in-process host (runner-env.ts).

import t from 'tap';
import { groupId } from '../../../core/ids.js';
import { DsyncError, ErrorCode } from '../../../protocol/errors.js';
import { InstantStorage, nullMachine, testHost } from './runner-env.js';

t.test('drop fails waiters, writes a tombstone once, and the id is never ensured again', async (t) => {
  const storage = new InstantStorage();
  const h = testHost({ storage });
  const g5 = groupId(5);
  const g = h.host.ensure(g5, nullMachine, { voters: [h.host.nodeId], learners: [] });
  for (let i = 0; i < 1_000 && !(g.isLeader && g.applied > 0); i++) h.scheduler.tick();
  t.ok(g.isLeader, 'the group leads');
  const pending = g.propose(new Uint8Array([1]));
  h.host.drop(g5);
  const err = await pending.then(() => null, (e: unknown) => e);
  t.ok(err instanceof DsyncError && err.code === ErrorCode.UNAVAILABLE, `the waiting proposal failed: ${String(err)}`);
  t.same(storage.droppedGroups, [g5], 'one tombstone for the group');
  t.equal(h.host.leaderOf(g5), '', 'no longer hosted');
  t.throws(() => h.host.ensure(g5, nullMachine, { voters: [h.host.nodeId], learners: [] }), /never reused/);
  t.throws(() => h.host.drop(g5), /twice/);
  t.throws(() => h.host.drop(groupId(0)), /never dropped/);
  h.host.drop(groupId(9));
  t.same(storage.droppedGroups, [g5], 'a group never hosted and not in the WAL needs no tombstone');
  await h.host.stop();
});
