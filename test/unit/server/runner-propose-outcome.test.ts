// Checks GroupRunner.proposeFor, propose() without a promise (the journal's appends use it):
// on a single-voter group 0 (runner-env.ts), each outcome is told exactly once: applied with
// the state machine's answer inside the ready pass that applies the entry (no microtask
// later), a refusal (not the leader, stopped) before proposeFor returns, and proposals still
// waiting fail when the runner stops. Counts and order only, no timing.

import t from 'tap';
import { groupId, nodeId } from '../../../core/ids.js';
import type { Entry } from '../../../core/raft/types.js';
import { type DsyncError, ErrorCode } from '../../../protocol/errors.js';
import type { ProposalOutcome, StateMachine } from '../../../server/raft/runner.js';
import { soloLeader, testHost } from './runner-env.js';

/** Records every call, so a second telling of one outcome shows. */
class Recorder implements ProposalOutcome {
  readonly told: string[] = [];
  applied(result: unknown): void {
    this.told.push(`applied ${String(result)}`);
  }

  failed(err: DsyncError): void {
    this.told.push(`failed ${err.code}`);
  }
}

/** Answers each entry with its first byte times ten. */
const tenfold: StateMachine = {
  apply: (entry: Entry) => (entry.data[0] ?? 0) * 10,
  snapshot: () => new Uint8Array(0),
  restore: () => {},
};

t.test('an accepted proposal is told once, with the answer, in the pass that applies it', async (t) => {
  const h = testHost();
  const g = soloLeader(h);
  // soloLeader runs group 0 on a machine that answers nothing; a second group answers tenfold.
  const g1 = h.host.ensure(groupId(1), tenfold, { voters: [h.host.nodeId], learners: [] });
  for (let i = 0; i < 1_000 && !(g1.isLeader && g1.applied > 0); i++) h.scheduler.tick();
  t.ok(g1.isLeader, 'group 1 elected its only voter');
  const outcomes = [new Recorder(), new Recorder(), new Recorder()];
  outcomes.forEach((o, i) => g1.proposeFor(new Uint8Array([i + 1]), o));
  t.same(outcomes.map((o) => o.told), [[], [], []], 'nothing told before the ready pass');
  h.scheduler.drain();
  t.same(outcomes.map((o) => o.told), [['applied 10'], ['applied 20'], ['applied 30']], 'each told once, with its answer, before any microtask ran');
  await Promise.resolve();
  h.scheduler.tick();
  t.same(outcomes.map((o) => o.told.length), [1, 1, 1], 'and never again');
  t.ok(g.isLeader, 'group 0 untouched');
  await h.host.stop();
});

t.test('a refusal is told before proposeFor returns; waiting proposals fail once when the runner stops', async (t) => {
  const h = testHost();
  const follower = h.host.ensure(groupId(0), { apply: () => undefined, snapshot: () => new Uint8Array(0), restore: () => {} },
    { voters: [h.host.nodeId, nodeId('n2'), nodeId('n3')], learners: [] });
  const notLeader = new Recorder();
  follower.proposeFor(new Uint8Array([1]), notLeader);
  t.same(notLeader.told, [`failed ${ErrorCode.NOT_LEADER}`], 'not the leader: told at once');

  const h2 = testHost();
  const g = soloLeader(h2);
  const waiting = new Recorder();
  g.proposeFor(new Uint8Array([2]), waiting);
  t.same(waiting.told, [], 'accepted: nothing told yet');
  g.stop();
  t.same(waiting.told, [`failed ${ErrorCode.UNAVAILABLE}`], 'the runner stopped: the waiting proposal failed once');
  const afterStop = new Recorder();
  g.proposeFor(new Uint8Array([3]), afterStop);
  t.same(afterStop.told, [`failed ${ErrorCode.UNAVAILABLE}`], 'stopped: refused at once');
  h2.scheduler.drain();
  t.same(waiting.told.length + afterStop.told.length, 2, 'nothing told twice');
  await h.host.stop();
  await h2.host.stop();
});
