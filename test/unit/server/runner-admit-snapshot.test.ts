// GroupRunner and a state machine that holds a leader's snapshot back (a queue partition
// streaming its bodies in, services/queues/catchup.ts): the held snapshot reaches Raft
// only when admitted, and meanwhile the replica's log stays as it was. A heartbeat that
// commits past the log (the replica's data directory was wiped: bench:backlog met "commit
// 3532 beyond last index 0" as the core's assert thrown out of step()) stops the node
// with a message naming the cause.

import t from 'tap';
import { groupId, logIndex, nodeId, term } from '../../../core/ids.js';
import { type Message, MessageType, type Snapshot } from '../../../core/raft/types.js';
import type { StateMachine } from '../../../server/raft/runner.js';
import { testHost } from './runner-env.js';

const n1 = nodeId('n1');
const n2 = nodeId('n2');
const message = (type: MessageType, extra: Partial<Message>): Message => ({
  type, from: n1, to: n2, term: term(2), logTerm: term(0), index: logIndex(0), entries: [], commit: logIndex(0), reject: false,
  rejectHint: logIndex(0), rejectHintTerm: term(0), snapshot: null, context: new Uint8Array(0), ...extra,
});

t.test('a heartbeat committing past the log stops the node, naming a lost data directory', (t) => {
  const h = testHost({ id: 'n2' });
  const g = h.host.ensure(groupId(256), { apply: () => undefined, snapshot: () => new Uint8Array(0), restore: () => {} },
    { voters: [n1, n2], learners: [] });
  t.doesNotThrow(() => g.step(message(MessageType.Heartbeat, { commit: logIndex(3532) })), 'no assert thrown out of step()');
  t.equal(h.fatals.length, 1, 'the node stops');
  t.match(h.fatals[0], /commits up to 3532.*log ends at 0.*wiped or lost.*new id/, 'naming the cause and the way back');
  t.equal(Number(g.raft.status().commit), 0, 'committed nothing');
  t.end();
});

t.test('a held snapshot reaches Raft only when admitted', async (t) => {
  const h = testHost({ id: 'n2' });
  let admit = false;
  const asked: number[] = [];
  const restored: number[] = [];
  let retry: (() => void) | null = null;
  const sm: StateMachine = {
    apply: () => undefined,
    snapshot: () => new Uint8Array(0),
    restore: (data) => { restored.push(data[0] ?? -1); },
    admitSnapshot: (snap, from, again) => {
      asked.push(Number(snap.meta.index));
      t.equal(from, n1, 'asked with the sender');
      retry = again;
      return admit;
    },
  };
  const g = h.host.ensure(groupId(256), sm, { voters: [n1, n2], learners: [] });
  const snapshot: Snapshot = { meta: { index: logIndex(3532), term: term(2), conf: { voters: [n1, n2], learners: [] } }, data: new Uint8Array([7]) };

  g.step(message(MessageType.Snap, { snapshot }));
  h.scheduler.drain();
  await Promise.resolve();
  h.scheduler.drain();
  t.same(asked, [3532], 'the machine was asked');
  t.equal(Number(g.raft.status().lastIndex), 0, 'held back: Raft never saw it');
  t.same(restored, [], 'nothing restored');
  g.step(message(MessageType.Heartbeat, { commit: logIndex(0) }));
  t.same(h.fatals, [], 'heartbeats while it is held (committing what it acknowledged) are fine');

  admit = true;
  t.ok(retry !== null, 'the machine got a retry');
  (retry as unknown as () => void)();
  for (let k = 0; k < 10; k++) {
    h.scheduler.drain();
    await Promise.resolve();
  }
  t.same(restored, [7], 'admitted: installed and restored');
  t.equal(g.applied, 3532, 'applied up to the snapshot');
  t.equal(Number(g.raft.status().commit), 3532);
  g.step(message(MessageType.Snap, { snapshot }));
  t.same(asked, [3532, 3532], 'a resend at or below the commit index is not asked about again');
});
