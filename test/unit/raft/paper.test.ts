// One test per clause of the Raft paper (in the style of etcd-raft's
// raft_paper_test.go): each drives replicas directly with step()/tick() and
// checks their ready() output, so a broken rule shows up as a wrong message,
// term, vote, log or commit index.

import t from 'tap';
import { Raft } from '../../../core/raft/raft.js';
import { MessageType, Role } from '../../../core/raft/types.js';
import { A, B, C, D, E, config, drain, electionTicks, emptyState, ent, heartbeatTicks, msg, sent, withLog } from './helpers.js';

/** Ticks a follower until it starts an election; returns the ticks it took. */
function ticksUntilCampaign(r: Raft): number {
  for (let i = 1; i <= 4 * electionTicks; i++) {
    r.tick();
    if (r.status().role !== Role.Follower) return i;
  }
  return -1;
}

/** A 3-node leader in term 1 with its no-op replicated and committed everywhere. */
function leaderOf3(): Raft {
  const a = new Raft(config(A), emptyState([A, B, C]));
  ticksUntilCampaign(a);
  drain(a);
  a.step(msg(MessageType.VoteResp, B, A, 1));
  t.equal(a.status().role, Role.Leader);
  drain(a);
  a.step(msg(MessageType.AppResp, B, A, 1, { index: 1 }));
  a.step(msg(MessageType.AppResp, C, A, 1, { index: 1 }));
  drain(a);
  t.equal(a.status().commit, 1);
  return a;
}

t.test('§5.1 a follower adopts a higher term from any message and learns the leader from an append', (t) => {
  const r = new Raft(config(A), emptyState([A, B, C]));
  r.step(msg(MessageType.App, B, A, 2));
  const s = r.status();
  t.equal(s.term, 2);
  t.equal(s.role, Role.Follower);
  t.equal(s.leader, B);
  const rd = drain(r);
  t.same(rd.hardState, { term: 2, vote: '', commit: 0 }, 'new term is persisted');
  t.end();
});

t.test('§5.1 candidate and leader step down on a higher term', (t) => {
  const cand = new Raft(config(A), emptyState([A, B, C]));
  ticksUntilCampaign(cand);
  t.equal(cand.status().role, Role.Candidate);
  cand.step(msg(MessageType.Heartbeat, B, A, 5));
  t.equal(cand.status().role, Role.Follower);
  t.equal(cand.status().term, 5);
  t.equal(cand.status().leader, B);

  const lead = leaderOf3();
  lead.step(msg(MessageType.Vote, C, A, 9, { index: 10, logTerm: 8 }));
  t.equal(lead.status().role, Role.Follower, 'leader steps down on a higher-term vote request');
  t.equal(lead.status().term, 9);
  t.end();
});

t.test('§5.1 stale-term messages are ignored', (t) => {
  const r = withLog(A, [A, B, C], [1, 2], { term: 3 });
  r.step(msg(MessageType.App, B, A, 2, { index: 2, logTerm: 2, entries: [ent(3, 2)] }));
  t.equal(r.status().lastIndex, 2, 'no append from a stale leader');
  t.equal(r.status().leader, '');
  t.end();
});

t.test('§5.1 a stale candidate is told the current term (a lower-term Vote gets a rejecting VoteResp)', (t) => {
  const r = withLog(A, [A, B, C], [1, 2], { term: 5 });
  drain(r);
  r.step(msg(MessageType.Vote, D, A, 3, { index: 2, logTerm: 2 }));
  const answers = sent(r, MessageType.VoteResp);
  t.equal(answers.length, 1, 'the stale candidate gets an answer');
  t.equal(answers[0]?.term, 5, 'carrying our term, so it can catch up');
  t.equal(answers[0]?.reject, true, 'and refusing the vote');
  t.equal(r.status().term, 5, 'our term is unchanged');
  t.end();
});

t.test('§5.2 election timeouts are randomized within [electionTicks, 2*electionTicks)', (t) => {
  const seen = new Set<number>();
  for (let seed = 0; seed < 200; seed++) {
    const r = new Raft(config(A, {}, seed), emptyState([A, B, C]));
    const n = ticksUntilCampaign(r);
    t.ok(n >= electionTicks && n < 2 * electionTicks, `timeout ${n} in range`);
    seen.add(n);
  }
  t.ok(seen.size >= electionTicks / 2, `timeouts vary (${seen.size} distinct values)`);
  t.end();
});

t.test('§5.2 a follower that times out becomes candidate, votes for itself and requests votes', (t) => {
  const r = withLog(A, [A, B, C], [1, 1, 2], { term: 2 });
  ticksUntilCampaign(r);
  const s = r.status();
  t.equal(s.role, Role.Candidate);
  t.equal(s.term, 3);
  const rd = drain(r);
  t.same(rd.hardState, { term: 3, vote: A, commit: 0 }, 'term and self-vote persisted before the requests go out');
  const votes = rd.messages.filter((m) => m.type === MessageType.Vote);
  t.same(votes.map((m) => m.to), [B, C]);
  for (const m of votes) {
    t.equal(m.term, 3);
    t.equal(m.index, 3, 'last log index');
    t.equal(m.logTerm, 2, 'last log term');
  }
  t.end();
});

t.test('§5.2 a candidate wins with a majority, loses with a majority of rejections, waits otherwise', (t) => {
  const five = [A, B, C, D, E];
  const win = new Raft(config(A), emptyState(five));
  ticksUntilCampaign(win);
  win.step(msg(MessageType.VoteResp, B, A, 1));
  t.equal(win.status().role, Role.Candidate, '2 of 5 is not enough');
  win.step(msg(MessageType.VoteResp, B, A, 1));
  t.equal(win.status().role, Role.Candidate, 'a duplicate vote is not counted twice');
  win.step(msg(MessageType.VoteResp, C, A, 1));
  t.equal(win.status().role, Role.Leader, '3 of 5 wins');

  const lose = new Raft(config(A), emptyState(five));
  ticksUntilCampaign(lose);
  lose.step(msg(MessageType.VoteResp, B, A, 1, { reject: true }));
  lose.step(msg(MessageType.VoteResp, C, A, 1, { reject: true }));
  t.equal(lose.status().role, Role.Candidate);
  lose.step(msg(MessageType.VoteResp, D, A, 1, { reject: true }));
  t.equal(lose.status().role, Role.Follower, '3 rejections of 5 lose');
  t.equal(lose.status().term, 1, 'losing keeps the term');
  t.end();
});

t.test('§5.2 a candidate times out and starts a new election in a higher term', (t) => {
  const r = new Raft(config(A), emptyState([A, B, C]));
  ticksUntilCampaign(r);
  t.equal(r.status().term, 1);
  for (let i = 0; i < 2 * electionTicks; i++) r.tick();
  t.ok(r.status().term >= 2, 'split vote resolved by a new term');
  t.equal(r.status().role, Role.Candidate);
  t.end();
});

t.test('§5.2/§5.4.1 vote granting: one vote per term, only for an up-to-date log', (t) => {
  const r = withLog(A, [A, B, C], [1, 2, 2], { term: 2 });
  drain(r);
  // Stale log: last term 1 < our 2.
  r.step(msg(MessageType.Vote, B, A, 3, { index: 10, logTerm: 1 }));
  let [resp] = sent(r, MessageType.VoteResp);
  t.equal(resp?.reject, true, 'lower last term rejected even with a longer log');
  // Same last term, shorter log.
  r.step(msg(MessageType.Vote, B, A, 3, { index: 2, logTerm: 2 }));
  [resp] = sent(r, MessageType.VoteResp);
  t.equal(resp?.reject, true, 'same last term but shorter log rejected');
  // Same last term, same length: grant.
  r.step(msg(MessageType.Vote, B, A, 3, { index: 3, logTerm: 2 }));
  let rd = drain(r);
  t.equal(rd.messages[0]?.reject, false, 'up-to-date log granted');
  t.same(rd.hardState, { term: 3, vote: B, commit: 0 }, 'the vote is persisted with the response');
  // Another candidate in the same term: rejected.
  r.step(msg(MessageType.Vote, C, A, 3, { index: 9, logTerm: 9 }));
  [resp] = sent(r, MessageType.VoteResp);
  t.equal(resp?.reject, true, 'second candidate in the same term rejected');
  // The same candidate asking again (retransmission): granted again.
  r.step(msg(MessageType.Vote, B, A, 3, { index: 3, logTerm: 2 }));
  rd = drain(r);
  t.equal(rd.messages[0]?.reject, false, 'repeat request from the voted candidate granted');
  t.end();
});

t.test('§5.2 a leader sends heartbeats every heartbeatTicks carrying min(match, commit)', (t) => {
  const a = leaderOf3();
  for (let i = 0; i < heartbeatTicks; i++) a.tick();
  const hbs = sent(a, MessageType.Heartbeat);
  t.same(hbs.map((m) => m.to), [B, C]);
  for (const m of hbs) t.equal(m.commit, 1);
  t.end();
});

t.test('§5.3 a leader replicates a proposal to all followers with prev index/term and its commit', (t) => {
  const a = leaderOf3();
  const out = a.propose(new Uint8Array([7]));
  t.ok(out.ok);
  const apps = sent(a, MessageType.App);
  t.same(apps.map((m) => m.to), [B, C]);
  for (const m of apps) {
    t.equal(m.index, 1, 'prev index');
    t.equal(m.logTerm, 1, 'prev term');
    t.equal(m.commit, 1);
    t.same(m.entries.map((e) => [e.index, e.term]), [[2, 1]]);
  }
  t.end();
});

t.test('§5.3 a follower rejects an append whose prev entry does not match', (t) => {
  const r = withLog(A, [A, B, C], [1, 1, 2], { term: 3 });
  r.step(msg(MessageType.App, B, A, 3, { index: 3, logTerm: 3, entries: [ent(4, 3)] }));
  const [resp] = sent(r, MessageType.AppResp);
  t.equal(resp?.reject, true);
  t.equal(resp?.rejectHint, 3, 'hint: largest index whose term (2) <= the prev term asked for (3)');
  t.equal(resp?.rejectHintTerm, 2);
  t.equal(r.status().lastIndex, 3);
  t.end();
});

t.test('§5.3 a follower deletes a conflicting suffix and appends the leader entries', (t) => {
  const r = withLog(A, [A, B, C], [1, 1, 2, 2, 2], { term: 2, commit: 1 });
  drain(r);
  r.step(msg(MessageType.App, B, A, 3, { index: 2, logTerm: 1, entries: [ent(3, 3), ent(4, 3)], commit: 3 }));
  const rd = drain(r);
  t.same(rd.entries.map((e) => [e.index, e.term]), [[3, 3], [4, 3]], 'Ready overwrites from the conflict on');
  t.equal(r.status().lastIndex, 4, 'the old index 5 is gone');
  t.equal(r.status().commit, 3, 'commit = min(leader commit, last new)');
  t.same(rd.committedEntries.map((e) => e.index), [2], 'only committed entries durable here are handed out to apply');
  const resp = rd.messages.find((m) => m.type === MessageType.AppResp);
  t.equal(resp?.reject, false);
  t.equal(resp?.index, 4);
  t.same(drain(r).committedEntries.map((e) => e.index), [3], 'entry 3 once its Ready was persisted');
  t.end();
});

t.test('§5.3 an append with entries the follower already has truncates nothing', (t) => {
  const r = withLog(A, [A, B, C], [1, 1, 1, 1], { term: 1 });
  drain(r);
  r.step(msg(MessageType.App, B, A, 1, { index: 0, logTerm: 0, entries: [ent(1, 1), ent(2, 1)], commit: 2 }));
  const rd = drain(r);
  t.equal(rd.entries.length, 0, 'nothing new to persist');
  t.equal(r.status().lastIndex, 4, 'a reordered short append must not truncate the tail');
  t.equal(r.status().commit, 2);
  t.end();
});

t.test('§5.3 the leader commits once a majority persisted, and followers learn commit from the next append', (t) => {
  const a = leaderOf3();
  a.propose(new Uint8Array([1]));
  drain(a);
  a.step(msg(MessageType.AppResp, B, A, 1, { index: 2 }));
  t.equal(a.status().commit, 2);
  const first = drain(a);
  t.same(first.committedEntries.map((e) => e.index), [2], 'the leader applies the entry first');
  t.equal(first.messages.filter((m) => m.type === MessageType.App).length, 0, 'the commit alone waits one Ready');
  t.ok(a.hasReady(), 'and asks for that Ready');
  const apps = sent(a, MessageType.App);
  t.ok(apps.length === 2 && apps.every((m) => m.commit === 2 && m.entries.length === 0), 'commit propagated');

  const f = withLog(B, [A, B, C], [1, 1], { term: 1 });
  f.step(msg(MessageType.App, A, B, 1, { index: 2, logTerm: 1, commit: 2 }));
  t.equal(f.status().commit, 2);
  t.end();
});

t.test('a proposal made on applying committed entries carries their commit: no empty append to each follower', (t) => {
  const a = leaderOf3();
  a.propose(new Uint8Array([1]));
  drain(a);
  a.step(msg(MessageType.AppResp, B, A, 1, { index: 2 }));
  const applying = drain(a);
  t.same(applying.committedEntries.map((e) => e.index), [2]);
  a.propose(new Uint8Array([2])); // what a queue leader does when its entry is answered
  const apps = [...applying.messages, ...drain(a).messages].filter((m) => m.type === MessageType.App);
  t.equal(apps.length, 2, 'one append per follower');
  t.ok(apps.every((m) => m.commit === 2 && m.entries.length === 1 && m.entries[0]?.index === 3), 'the new entry with the commit');
  t.end();
});

t.test('a commit-only broadcast is held for one Ready at most', (t) => {
  const a = leaderOf3();
  a.propose(new Uint8Array([1]));
  drain(a);
  a.propose(new Uint8Array([2]));
  drain(a);
  a.step(msg(MessageType.AppResp, B, A, 1, { index: 2 }));
  const held = drain(a);
  t.same(held.committedEntries.map((e) => e.index), [2]);
  t.equal(held.messages.length, 0, 'held while the leader applies entry 2');
  a.step(msg(MessageType.AppResp, B, A, 1, { index: 3 }));
  const rd = drain(a);
  t.same(rd.committedEntries.map((e) => e.index), [3], 'entry 3 applied in the next Ready');
  const apps = rd.messages.filter((m) => m.type === MessageType.App);
  t.ok(apps.length === 2 && apps.every((m) => m.commit === 3), 'the held broadcast is not held again');
  t.end();
});

t.test('§5.4.2 a leader commits only entries of its own term by counting replicas', (t) => {
  // A has two term-1 entries nobody committed; it becomes leader of term 2.
  const a = withLog(A, [A, B, C], [1, 1], { term: 1 });
  ticksUntilCampaign(a);
  drain(a);
  a.step(msg(MessageType.VoteResp, B, A, 2));
  t.equal(a.status().role, Role.Leader);
  const rd = drain(a);
  t.same(rd.entries.map((e) => [e.index, e.term, e.data.length]), [[3, 2, 0]], 'the no-op of the new term');
  a.step(msg(MessageType.AppResp, B, A, 2, { index: 2 }));
  t.equal(a.status().commit, 0, 'old-term entries on a majority are not committed by counting');
  a.step(msg(MessageType.AppResp, B, A, 2, { index: 3 }));
  t.equal(a.status().commit, 3, 'committing the no-op commits everything before it');
  t.end();
});

t.test('durability: the leader does not count its own log toward commit before advance()', (t) => {
  const a = leaderOf3();
  a.propose(new Uint8Array([1]));
  const rd = a.ready();
  t.equal(rd.entries.length, 1, 'the new entry is handed out to persist');
  // B acks before the leader's Ready was advanced: 1 of 3 persisted.
  a.step(msg(MessageType.AppResp, B, A, 1, { index: 2 }));
  t.equal(a.status().commit, 1, 'a follower ack alone is not a majority');
  a.advance();
  t.equal(a.status().commit, 2, 'after advance() the leader counts itself');

  const solo = new Raft(config(A), emptyState([A]));
  ticksUntilCampaign(solo);
  t.equal(solo.status().role, Role.Leader, 'a single voter wins at once');
  t.equal(solo.status().commit, 0, 'no-op not committed before it is persisted');
  const r1 = solo.ready();
  t.equal(r1.committedEntries.length, 0);
  solo.advance();
  t.equal(solo.status().commit, 1, 'single node commits on advance()');
  const r2 = drain(solo);
  t.same(r2.committedEntries.map((e) => e.index), [1]);
  t.end();
});

t.test('§6 pre-vote: a partitioned node does not bump its term, and a live cluster is not disrupted', (t) => {
  const r = withLog(A, [A, B, C], [1], { term: 1 }, { preVote: true });
  ticksUntilCampaign(r);
  t.equal(r.status().role, Role.PreCandidate);
  t.equal(r.status().term, 1, 'pre-candidate keeps its term');
  const rd = drain(r);
  t.equal(rd.hardState, null, 'nothing to persist for a pre-vote');
  const pre = rd.messages.filter((m) => m.type === MessageType.PreVote);
  t.equal(pre.length, 2);
  t.ok(pre.every((m) => m.term === 2), 'pre-vote asks for the next term');
  for (let i = 0; i < 10 * electionTicks; i++) r.tick();
  t.equal(r.status().term, 1, 'still term 1 after many timeouts without answers');

  // A voter grants a pre-vote without changing its own term or vote.
  const v = withLog(B, [A, B, C], [1], { term: 1, vote: C });
  drain(v);
  v.step(msg(MessageType.PreVote, A, B, 2, { index: 1, logTerm: 1 }));
  const vrd = drain(v);
  t.equal(vrd.messages[0]?.type, MessageType.PreVoteResp);
  t.equal(vrd.messages[0]?.reject, false);
  t.equal(vrd.messages[0]?.term, 2, 'granted in the requested term');
  t.equal(vrd.hardState, null, 'voter term and vote unchanged');

  // Pre-vote won: the real election follows in term 2.
  r.step(msg(MessageType.PreVoteResp, B, A, 2));
  t.equal(r.status().role, Role.Candidate);
  t.equal(r.status().term, 2);
  t.end();
});

t.test('§6 check-quorum: a leader that hears from no majority within an election timeout steps down', (t) => {
  const a = new Raft(config(A, { checkQuorum: true }), emptyState([A, B, C]));
  ticksUntilCampaign(a);
  a.step(msg(MessageType.VoteResp, B, A, 1));
  t.equal(a.status().role, Role.Leader);
  // B keeps answering heartbeats: stays leader across several timeouts.
  for (let i = 0; i < 3 * electionTicks; i++) {
    a.tick();
    a.step(msg(MessageType.HeartbeatResp, B, A, 1));
  }
  t.equal(a.status().role, Role.Leader, 'one live follower + self is a majority');
  for (let i = 0; i < 2 * electionTicks; i++) a.tick();
  t.equal(a.status().role, Role.Follower, 'silent followers: step down');
  t.equal(a.status().term, 1);
  t.end();
});

t.test('§6 leader stickiness: with check-quorum a follower with a live leader ignores vote requests', (t) => {
  const f = withLog(B, [A, B, C], [1], { term: 1 }, { checkQuorum: true });
  f.step(msg(MessageType.Heartbeat, A, B, 1));
  drain(f);
  f.step(msg(MessageType.Vote, C, B, 2, { index: 5, logTerm: 1 }));
  t.equal(f.status().term, 1, 'term not bumped by a disruptive candidate');
  t.equal(sent(f).length, 0, 'no answer at all');
  for (let i = 0; i < electionTicks; i++) f.tick();
  // The lease expired (no heartbeats): now it votes... unless it campaigned itself; use a fresh follower.
  const g = withLog(B, [A, B, C], [1], { term: 1 }, { checkQuorum: true });
  g.step(msg(MessageType.Heartbeat, A, B, 1));
  drain(g);
  for (let i = 0; i < electionTicks - 1; i++) g.tick();
  g.step(msg(MessageType.Heartbeat, A, B, 1));
  g.step(msg(MessageType.Vote, C, B, 2, { index: 5, logTerm: 1 }));
  t.equal(g.status().term, 1, 'heartbeats renew the lease');
  t.end();
});

t.test('§6 a stale leader learns the new term from a follower answering its append (pre-vote/check-quorum)', (t) => {
  const f = withLog(B, [A, B, C], [1], { term: 5 }, { preVote: true });
  f.step(msg(MessageType.App, A, B, 3, { index: 1, logTerm: 1 }));
  const [resp] = sent(f, MessageType.AppResp);
  t.equal(resp?.term, 5);
  t.equal(resp?.to, A);
  t.end();
});

t.test('fast backtracking: 100 conflicting follower entries resolved in a handful of round trips', (t) => {
  const oldTerms = [1, ...Array.from({ length: 100 }, () => 2)];
  const newTerms = [1, ...Array.from({ length: 100 }, () => 3)];
  const a = withLog(A, [A, B, C], newTerms, { term: 3 });
  const b = withLog(B, [A, B, C], oldTerms, { term: 3 });
  ticksUntilCampaign(a);
  drain(a);
  a.step(msg(MessageType.VoteResp, C, A, 4));
  t.equal(a.status().role, Role.Leader);
  drain(b);
  let appsToB = 0;
  for (let round = 0; round < 20; round++) {
    const toB = drain(a).messages.filter((m) => m.to === B);
    if (toB.length === 0) break;
    for (const m of toB) {
      if (m.type === MessageType.App) appsToB++;
      b.step(m);
    }
    for (const m of drain(b).messages) a.step(m);
  }
  t.equal(b.status().lastIndex, 102, 'follower caught up (100 entries + no-op)');
  t.same(b.status().term, 4);
  t.ok(appsToB <= 5, `few appends needed (${appsToB}); one per index would be 100`);

  // Lagging (not conflicting) follower: the hint is its last index.
  const c = withLog(C, [A, B, C], [1], { term: 4 });
  const probe = msg(MessageType.App, A, C, 4, { index: 101, logTerm: 3 });
  c.step(probe);
  const [rej] = sent(c, MessageType.AppResp);
  t.equal(rej?.reject, true);
  t.equal(rej?.rejectHint, 1, 'hint = follower last index');
  t.end();
});

t.test('replication: batching and the inflight window bound what is sent without acks', (t) => {
  const a = new Raft(config(A, { maxEntriesPerMsg: 3, maxInflightMsgs: 2 }), emptyState([A, B, C]));
  ticksUntilCampaign(a);
  a.step(msg(MessageType.VoteResp, B, A, 1));
  drain(a);
  a.step(msg(MessageType.AppResp, B, A, 1, { index: 1 }));
  drain(a);
  for (let i = 0; i < 20; i++) a.propose(new Uint8Array([i]));
  const toB = sent(a, MessageType.App).filter((m) => m.to === B);
  t.equal(toB.length, 2, 'pipelined up to maxInflightMsgs');
  t.ok(toB.every((m) => m.entries.length <= 3), 'batched up to maxEntriesPerMsg');
  t.same(toB.map((m) => m.index), [1, 4], 'second batch follows the first optimistically');
  a.step(msg(MessageType.AppResp, B, A, 1, { index: 4 }));
  const more = sent(a, MessageType.App).filter((m) => m.to === B);
  t.equal(more.length, 1, 'one ack frees one slot');
  t.equal(more[0]?.index, 7);
  t.end();
});
