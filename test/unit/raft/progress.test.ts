// The leader's flow control for one follower (Probe -> Replicate), checked on
// three replicas shuttled by the helper network, dropping chosen messages and
// replaying a delayed one, and read back through the leader's progressOf().

import t from 'tap';
import { ProgressState } from '../../../core/raft/progress.js';
import { MessageType } from '../../../core/raft/types.js';
import type { Message } from '../../../core/raft/types.js';
import { A, B, C, Net, drain, text } from './helpers.js';

t.test('after an election with no proposals, heartbeats leave every follower in Replicate', (t) => {
  const net = new Net([A, B, C]);
  net.elect(A);
  net.tickAll(5);
  const a = net.node(A);
  for (const id of [B, C]) {
    const pr = a.progressOf(id);
    t.equal(pr?.state, ProgressState.Replicate, `${id} replicates`);
    t.equal(pr?.match, a.status().lastIndex, `${id} is caught up`);
  }
  t.end();
});

interface ProbeCase {
  readonly name: string;
  /** Whether B ends up holding the leader's last entry before the delayed ack arrives. */
  readonly bHasLast: boolean;
  /** What the network loses while B falls into Probe; `last` is the leader's new last index. */
  readonly lose: (last: number) => (m: Message) => boolean;
}

const isAppWithEntriesToB = (m: Message): boolean => m.type === MessageType.App && m.to === B && m.entries.length > 0;

// B's append for a new entry is lost, so B rejects the next (empty, commit-only)
// append and the leader probes it at match + 1. A delayed copy of B's earlier
// ack (index == match, a message B really sent in this term) then arrives while
// the probe is outstanding. It proves next = match + 1 is safe, so the leader
// should replicate at once rather than stay in Probe, paused, until the probe's
// answer or a heartbeat response.
const cases: readonly ProbeCase[] = [
  {
    name: 'the probe is lost too (B lacks the last entry)',
    bHasLast: false,
    lose: () => isAppWithEntriesToB,
  },
  {
    name: 'the probe arrives but its answer is lost (B is caught up)',
    bHasLast: true,
    lose: (last) => {
      let firstLost = false;
      return (m) => {
        if (!firstLost && isAppWithEntriesToB(m)) return (firstLost = true);
        return m.type === MessageType.AppResp && m.from === B && !m.reject && m.index === last;
      };
    },
  },
];

for (const c of cases) {
  t.test(`a probing follower whose delayed ack confirms its match moves to Replicate at once: ${c.name}`, (t) => {
    const net = new Net([A, B, C]);
    net.elect(A);
    const a = net.node(A);
    a.propose(text('x'));
    net.settle();
    const match = a.status().lastIndex;
    const delayedAck = net.log.find((m) => m.type === MessageType.AppResp && m.from === B && !m.reject && m.index === match);
    t.ok(delayedAck !== undefined, 'B acked the match in this term');

    net.dropIf = c.lose(match + 1);
    a.propose(text('y'));
    net.settle();
    net.dropIf = null;
    const last = a.status().lastIndex;
    t.equal(last, match + 1, 'one new entry');
    t.equal(a.status().commit, last, 'committed with C');
    t.equal(net.node(B).status().lastIndex, c.bHasLast ? last : match, 'B holds the new entry only if the probe reached it');
    t.same(a.progressOf(B), { state: ProgressState.Probe, match, next: match + 1, paused: true }, 'B is probed, the probe unanswered');

    a.step(delayedAck as Message);
    t.same(a.progressOf(B), { state: ProgressState.Replicate, match, next: last + 1, paused: false }, 'B replicates again');
    const toB = drain(a).messages.filter((m) => m.to === B && m.type === MessageType.App);
    t.same(
      toB.map((m) => [m.index, m.entries.map((e) => e.index)]),
      [[match, [last]]],
      'the missing entry goes out without waiting for a heartbeat',
    );
    for (const m of toB) net.node(B).step(m);
    net.settle();
    t.same(a.progressOf(B), { state: ProgressState.Replicate, match: last, next: last + 1, paused: false }, 'B caught up');
    t.end();
  });
}
