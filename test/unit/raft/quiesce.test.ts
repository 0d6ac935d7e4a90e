// Quiescence in the core (Raft.maybeQuiesce / wake): when a leader may quiesce, what a
// follower does with the quiesce notice, that ticks do nothing while quiesced, what wakes
// a replica, and that a woken follower campaigns on the silence it was told about.

import t from 'tap';
import { quiesceContext } from '../../../core/raft/raft.js';
import { MessageType, Role } from '../../../core/raft/types.js';
import { A, B, C, Net, electionTicks, msg, text } from './helpers.js';

/** A 3-replica group with A leading and everything committed and applied everywhere. */
function settled(): Net {
  const net = new Net([A, B, C], { preVote: true, checkQuorum: true });
  net.elect(A);
  net.node(A).propose(text('x'));
  net.settle();
  // A heartbeat round: followers learn the commit index from the leader.
  net.tickAll(1);
  return net;
}

t.test('a leader quiesces only when every follower has its whole log; followers quiesce on the notice without answering', (t) => {
  const net = settled();
  const a = net.node(A);
  net.cut.add(`${A}>${C}`);
  a.propose(text('y'));
  net.settle();
  t.notOk(a.maybeQuiesce(), 'C lacks the last entry: no quiescence');
  t.notOk(a.quiesced);
  net.heal();
  net.tickAll(1);
  net.settle();
  const before = net.delivered;
  t.ok(a.maybeQuiesce(), 'everyone caught up: the leader quiesces');
  net.settle();
  const notices = net.log.slice(before);
  t.same(notices.map((m) => [m.type, m.to]), [[MessageType.Heartbeat, B], [MessageType.Heartbeat, C]], 'one notice per follower, nothing answered');
  t.ok(notices.every((m) => m.context.length === quiesceContext.length && m.commit === a.status().lastIndex));
  t.ok(net.node(B).quiesced && net.node(C).quiesced, 'both followers quiesced');
  t.equal(net.node(C).status().commit, a.status().lastIndex, 'the notice carries the commit index');
  const delivered = net.delivered;
  net.tickAll(10 * electionTicks);
  t.equal(net.delivered, delivered, 'quiesced for ten election timeouts: no message at all');
  t.equal(a.status().role, Role.Leader);
  t.end();
});

t.test('a follower behind the notice answers it as a heartbeat, which wakes the leader', (t) => {
  const net = settled();
  const a = net.node(A);
  t.ok(a.maybeQuiesce());
  const rd = a.ready();
  a.advance();
  const toB = rd.messages.find((m) => m.to === B);
  if (toB === undefined) throw new Error('no notice to B');
  // B sees a notice whose commit is beyond its log: it must not quiesce.
  const b = net.node(B);
  b.step(msg(MessageType.Heartbeat, A, B, toB.term, { commit: b.status().lastIndex - 1, context: quiesceContext }));
  t.notOk(b.quiesced, 'a follower whose log does not end at the notice stays awake');
  const answers = b.ready().messages;
  b.advance();
  t.same(answers.map((m) => m.type), [MessageType.HeartbeatResp]);
  a.step(answers[0]!);
  t.notOk(a.quiesced, 'the answer wakes the leader');
  t.end();
});

t.test('ticks do nothing while quiesced; proposals, reads and messages wake', (t) => {
  const net = settled();
  const a = net.node(A);
  t.ok(a.maybeQuiesce());
  net.settle();
  for (let i = 0; i < 3 * electionTicks; i++) a.tick();
  t.notOk(a.hasReady(), 'a quiesced leader neither heartbeats nor checks quorum');
  t.equal(a.status().role, Role.Leader);
  a.propose(text('z'));
  t.notOk(a.quiesced, 'a proposal wakes the leader');
  net.settle();
  t.notOk(net.node(B).quiesced, 'the append wakes the followers');
  net.tickAll(1);
  t.ok(a.maybeQuiesce());
  net.settle();
  a.readIndex(text('r'));
  t.notOk(a.quiesced, 'a read wakes the leader (a ReadIndex round, never a lease)');
  net.settle();
  t.ok(a.maybeQuiesce(), 'quiescent again after the read was answered');
  net.settle();
  net.node(C).step(msg(MessageType.PreVote, B, C, a.status().term + 1, { index: 100, logTerm: a.status().term }));
  t.notOk(net.node(C).quiesced, 'any message wakes a follower');
  t.end();
});

t.test('a quiesced follower told its leader is silent campaigns within the usual timeout, and the other grants', (t) => {
  const net = settled();
  const a = net.node(A);
  t.ok(a.maybeQuiesce());
  net.settle();
  net.isolate(A);
  const b = net.node(B);
  const c = net.node(C);
  // Node liveness says A was last heard an election timeout ago.
  b.wake(electionTicks);
  c.wake(electionTicks);
  let ticks = 0;
  for (; ticks < 2 * electionTicks && b.status().role !== Role.Leader && c.status().role !== Role.Leader; ticks++) {
    b.tick();
    c.tick();
    net.settle();
  }
  const leader = b.status().role === Role.Leader ? B : c.status().role === Role.Leader ? C : null;
  t.not(leader, null, `a new leader within the randomized timeout (${ticks} ticks after waking)`);
  t.ok(ticks <= electionTicks, 'the silence before waking counted toward the election timeout');
  t.end();
});

t.test('woken without silence, a follower still treats its leader as live (pre-votes are ignored)', (t) => {
  const net = settled();
  const a = net.node(A);
  t.ok(a.maybeQuiesce());
  net.settle();
  const c = net.node(C);
  c.wake(0);
  c.step(msg(MessageType.PreVote, B, C, a.status().term + 1, { index: 100, logTerm: a.status().term }));
  t.same(c.ready().messages, [], 'no answer: C heard its leader within an election timeout');
  c.advance();
  t.end();
});

t.test('a late answer to a plain heartbeat does not wake a quiesced leader; an answer to the notice does', (t) => {
  const net = settled();
  const a = net.node(A);
  t.ok(a.maybeQuiesce());
  net.settle();
  const term = a.status().term;
  a.step(msg(MessageType.HeartbeatResp, B, A, term));
  t.ok(a.quiesced, 'a plain heartbeat response leaves it quiesced');
  t.notOk(a.hasReady(), 'and sends nothing');
  a.step(msg(MessageType.HeartbeatResp, B, A, term, { context: quiesceContext }));
  t.notOk(a.quiesced, 'a follower answering the notice (it could not quiesce) wakes it');
  t.end();
});
