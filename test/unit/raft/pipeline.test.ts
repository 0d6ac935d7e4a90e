// Pipelined Readys (the contract at the top of core/raft/raft.ts): ready() again before
// earlier Readys are persisted hands out only what is new; persisted(n) reports them in
// order; a leader counts its own log only up to what is persisted; committed entries are
// handed out only once durable here; a truncation while a Ready is in flight neither marks
// the overwritten entries stable nor hands out the kept ones twice.

import t from 'tap';
import { Raft } from '../../../core/raft/raft.js';
import { MessageType, Role } from '../../../core/raft/types.js';
import { A, B, C, config, drain, emptyState, ent, msg, withLog } from './helpers.js';

function leaderOf3(): Raft {
  const a = new Raft(config(A), emptyState([A, B, C]));
  while (a.status().role !== Role.Candidate) a.tick();
  drain(a);
  a.step(msg(MessageType.VoteResp, B, A, 1));
  drain(a);
  a.step(msg(MessageType.AppResp, B, A, 1, { index: 1 }));
  drain(a);
  t.equal(a.status().commit, 1, 'the no-op of term 1 committed');
  return a;
}

t.test('a leader hands out each entry once while earlier Readys are in flight, and counts itself only up to what is persisted', (t) => {
  const a = leaderOf3();
  a.propose(new Uint8Array([1]));
  const rd1 = a.ready();
  a.propose(new Uint8Array([2]));
  const rd2 = a.ready();
  t.same(rd1.entries.map((e) => e.index), [2]);
  t.same(rd2.entries.map((e) => e.index), [3], 'the second Ready hands out only the new entry');
  t.equal(rd2.number, rd1.number + 1, 'Readys are numbered in order');
  t.equal(a.readysInFlight, 2);
  t.ok(rd2.messages.some((m) => m.type === MessageType.App && m.entries.some((e) => e.index === 3)), 'entry 3 goes to followers before entry 2 is durable');
  a.step(msg(MessageType.AppResp, B, A, 1, { index: 3 }));
  t.equal(a.status().commit, 1, 'one follower ack and an unpersisted leader log are not a majority');
  a.persisted(rd1.number);
  t.equal(a.status().commit, 2, 'the leader counts itself up to its persisted entry 2');
  t.equal(a.readysInFlight, 1);
  const rd3 = a.ready();
  t.same(rd3.entries, [], 'nothing is handed out twice');
  t.same(rd3.committedEntries.map((e) => e.index), [2], 'entry 3 is committed nowhere yet');
  a.appliedTo(2);
  a.persisted(rd3.number);
  t.equal(a.status().commit, 3, 'persisted(n) covers every Ready up to n');
  t.equal(a.readysInFlight, 0);
  t.same(a.ready().committedEntries.map((e) => e.index), [3]);
  t.throws(() => a.persisted(rd3.number), 'a Ready is reported persisted once');
  t.end();
});

t.test('entries committed by the followers are handed out only once durable on the leader', (t) => {
  const a = leaderOf3();
  a.propose(new Uint8Array([1]));
  const rd = a.ready();
  a.step(msg(MessageType.AppResp, B, A, 1, { index: 2 }));
  a.step(msg(MessageType.AppResp, C, A, 1, { index: 2 }));
  t.equal(a.status().commit, 2, 'committed by the two followers');
  t.same(a.ready().committedEntries, [], 'not applied before the leader\'s own write is durable');
  a.persisted(rd.number);
  t.same(a.ready().committedEntries.map((e) => e.index), [2]);
  t.end();
});

t.test('a follower truncation while a Ready is in flight: overwritten entries are not marked stable, kept ones not handed out again', (t) => {
  const f = withLog(A, [A, B, C], [1, 1], { term: 1 });
  drain(f);
  f.step(msg(MessageType.App, B, A, 2, { index: 2, logTerm: 1, entries: [ent(3, 2), ent(4, 2)], commit: 0 }));
  const rd1 = f.ready();
  t.same(rd1.entries.map((e) => [e.index, e.term]), [[3, 2], [4, 2]]);
  const ack1 = rd1.messages.find((m) => m.type === MessageType.AppResp);
  t.equal(ack1?.index, 4, 'the ack of Ready 1 (sent once it is durable)');
  // A new leader overwrites index 4 and commits through it before Ready 1 is durable.
  f.step(msg(MessageType.App, C, A, 3, { index: 3, logTerm: 2, entries: [ent(4, 3)], commit: 4 }));
  const rd2 = f.ready();
  t.same(rd2.entries.map((e) => [e.index, e.term]), [[4, 3]], 'only the replacing entry; entry 3 was handed out already');
  t.same(rd2.committedEntries.map((e) => e.index), [1, 2], 'committed and durable: 1 and 2 only');
  f.appliedTo(2);
  f.persisted(rd1.number);
  // Ready 1 wrote (4, term 2), which the log no longer has: nothing past 2 may count as durable.
  const rd3 = f.ready();
  t.same(rd3.committedEntries, [], 'entry 3 and the new 4 are not handed out to apply before the Ready with (4, 3) is durable');
  t.same(rd3.entries, []);
  f.persisted(rd3.number);
  t.same(f.ready().committedEntries.map((e) => [e.index, e.term]), [[3, 2], [4, 3]], 'both once the overwriting Ready is durable');
  t.end();
});

t.test('a snapshot is handed out once while its Ready is in flight', (t) => {
  const f = withLog(A, [A, B, C], [1], { term: 1 });
  drain(f);
  const snapshot = { meta: { index: 5 as never, term: 1 as never, conf: { voters: [A, B, C], learners: [] } }, data: new Uint8Array([9]) };
  f.step(msg(MessageType.Snap, B, A, 1, { snapshot }));
  const rd1 = f.ready();
  t.equal(rd1.snapshot?.meta.index, 5);
  f.step(msg(MessageType.App, B, A, 1, { index: 5, logTerm: 1, entries: [ent(6, 1)], commit: 6 }));
  const rd2 = f.ready();
  t.equal(rd2.snapshot, null, 'not handed out again');
  t.same(rd2.entries.map((e) => e.index), [6]);
  t.same(rd2.committedEntries, [], 'nothing past the snapshot applies before it is persisted');
  f.appliedTo(5);
  f.persisted(rd2.number);
  t.same(f.ready().committedEntries.map((e) => e.index), [6]);
  t.end();
});
