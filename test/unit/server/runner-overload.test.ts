// Checks that overload in a Raft group is an answer, not a crash (issue 7, item 11):
// a single-voter group 0 on an in-process GroupHost (runner-env.ts) whose storage
// reports the WAL queue full must refuse proposals with UNAVAILABLE and a retry hint
// without calling the fatal hook, and take them again once there is room; and a
// group holding proposalsPendingMax uncommitted proposals refuses the next one the
// same way. Counts and codes only, no timing.

import t from 'tap';
import { proposalsPendingMax } from '../../../core/constants.js';
import { DsyncError, ErrorCode } from '../../../protocol/errors.js';
import { InstantStorage, soloLeader, testHost } from './runner-env.js';

/** The error a proposal was refused with; throws when it was taken instead (still pending a turn later, or resolved). */
async function refusal(p: Promise<unknown>): Promise<DsyncError> {
  const pending = Symbol('pending');
  let outcome: unknown;
  try {
    outcome = await Promise.race([p, new Promise((r) => setImmediate(() => r(pending)))]);
  } catch (err) {
    if (err instanceof DsyncError) return err;
    throw err;
  }
  throw new Error(outcome === pending ? 'the proposal was accepted (waiting to commit)' : 'the proposal was accepted');
}

t.test('a full WAL queue refuses proposals with UNAVAILABLE + retry hint; the node keeps running', async (t) => {
  const storage = new InstantStorage();
  const h = testHost({ storage });
  const g = soloLeader(h);
  const appendsBefore = storage.appends;
  storage.roomBytes = 0;
  const err = await refusal(g.propose(new Uint8Array([1, 2, 3])));
  t.equal(err.code, ErrorCode.UNAVAILABLE, 'refused as UNAVAILABLE');
  t.ok(err.retryAfterMs > 0, `with a retry hint (${err.retryAfterMs} ms)`);
  h.scheduler.tick();
  t.equal(storage.appends, appendsBefore, 'nothing refused reached the WAL');
  t.same(h.fatals, [], 'the fatal hook was not called');

  storage.roomBytes = Number.MAX_SAFE_INTEGER;
  const accepted = g.propose(new Uint8Array([4]));
  for (let i = 0; i < 100; i++) h.scheduler.tick();
  await accepted;
  t.pass('with room again, a proposal commits');
  await h.host.stop();
});

t.test('room is reserved per accepted proposal until its Ready is appended', async (t) => {
  const storage = new InstantStorage();
  const h = testHost({ storage });
  const g = soloLeader(h);
  const data = new Uint8Array(1000);
  storage.roomBytes = 2500; // two proposals of ~1 KB fit, a third does not until they are written
  const first = [g.propose(data), g.propose(data)];
  const third = await refusal(g.propose(data));
  t.equal(third.code, ErrorCode.UNAVAILABLE, 'the third proposal in the same turn is refused');
  for (let i = 0; i < 100; i++) h.scheduler.tick();
  await Promise.all(first);
  const again = g.propose(data);
  for (let i = 0; i < 100; i++) h.scheduler.tick();
  await again;
  t.pass('once appended, their room is free again');
  t.same(h.fatals, [], 'no fatal');
  await h.host.stop();
});

t.test(`a group with ${proposalsPendingMax} proposals waiting refuses the next with UNAVAILABLE + retry hint`, async (t) => {
  const h = testHost();
  const g = soloLeader(h);
  const waiting: Promise<unknown>[] = [];
  // No scheduler turn runs in this loop, so none of them can commit.
  for (let i = 0; i < proposalsPendingMax; i++) waiting.push(g.propose(new Uint8Array([i & 0xff])).catch(() => undefined));
  const err = await refusal(g.propose(new Uint8Array([0])));
  t.equal(err.code, ErrorCode.UNAVAILABLE, 'refused as UNAVAILABLE');
  t.ok(err.retryAfterMs > 0, 'with a retry hint');
  t.same(h.fatals, [], 'no fatal');
  await h.host.stop();
  await Promise.all(waiting);
});
