// Three GroupHosts (n1..n3) in one process, 24 groups replicated on all three, wired by a
// loop that hands each sent batch to its peer's receive(), one simulated clock. Checks the
// node-level behaviour of quiescence and coalesced heartbeats: while n3 is cut off and
// behind, groups cannot quiesce and the heartbeats of many groups travel together, once
// per peer per heartbeat interval; healed and idle, every replica quiesces and
// a node sends each peer nothing but empty liveness batches, a few per election timeout;
// when the node leading most groups goes silent, the quiesced followers of its groups wake
// and elect among themselves.

import t from 'tap';
import { electionTimeoutHeartbeatsMin, electionTimeoutTicksMax, electionTimeoutTicksMin, heartbeatIntervalTicks, raftTickMs } from '../../../core/constants.js';
import { type GroupId, groupId, type NodeId } from '../../../core/ids.js';
import { schema } from '../../../protocol/index.js';
import { nonce, nullMachine, type TestHost, testHost } from './runner-env.js';

const groupsCount = 24;
const livenessTicks = Math.floor(electionTimeoutTicksMin / electionTimeoutHeartbeatsMin);

interface SentBatch {
  readonly tick: number;
  readonly from: NodeId;
  readonly to: NodeId;
  readonly messages: number;
  readonly heartbeats: number;
}

class Trio {
  readonly clock = { now: 0 };
  readonly hosts: TestHost[];
  readonly groups: GroupId[] = Array.from({ length: groupsCount }, (_, i) => groupId(100 + i));
  readonly down = new Set<NodeId>();
  /** Cut off: ticks, but nothing it sends or is sent is delivered. */
  readonly cut = new Set<NodeId>();
  readonly sent: SentBatch[] = [];
  tick = 0;

  constructor() {
    this.hosts = ['n1', 'n2', 'n3'].map((id, i) => testHost({ id, bootNonce: nonce(i + 1), clock: { nowMs: () => this.clock.now } }));
    const voters = this.hosts.map((h) => h.host.nodeId);
    for (const h of this.hosts) for (const g of this.groups) h.host.ensure(g, nullMachine, { voters, learners: [] });
  }

  /** One tick of every live host, then deliveries until nothing is in flight (bounded). */
  step(): void {
    this.tick++;
    this.clock.now += raftTickMs;
    for (const h of this.hosts) if (!this.down.has(h.host.nodeId)) h.scheduler.tick();
    for (let round = 0; round < 1_000; round++) {
      let delivered = 0;
      for (const h of this.hosts) {
        for (const { peer, batch } of h.sent.splice(0)) {
          const b = schema.RaftBatch.decode(batch);
          this.sent.push({ tick: this.tick, from: h.host.nodeId, to: peer, messages: b.messages.length, heartbeats: b.heartbeats.length });
          if (this.down.has(peer) || this.down.has(h.host.nodeId) || this.cut.has(peer) || this.cut.has(h.host.nodeId)) continue;
          const target = this.hosts.find((x) => x.host.nodeId === peer);
          if (target === undefined) throw new Error(`no host ${peer}`);
          const refused = target.host.receive(h.host.nodeId, batch);
          if (refused !== null) throw refused;
          delivered++;
        }
      }
      for (const h of this.hosts) h.scheduler.drain();
      if (delivered === 0) return;
    }
    throw new Error('deliveries never settle');
  }

  live(): TestHost[] {
    return this.hosts.filter((h) => !this.down.has(h.host.nodeId));
  }

  leaderOf(g: GroupId): NodeId | null {
    for (const h of this.live()) if (h.host.groups.get(g)?.isLeader === true) return h.host.nodeId;
    return null;
  }

  quiescedReplicas(): number {
    let n = 0;
    for (const h of this.live()) for (const g of this.groups) if (h.host.groups.get(g)?.raft.quiesced === true) n++;
    return n;
  }

  runUntil(done: () => boolean, ticksMax: number): boolean {
    for (let i = 0; i < ticksMax && !done(); i++) this.step();
    return done();
  }
}

t.test('heartbeats coalesce per peer per interval; idle groups quiesce and send nothing but liveness; a silent leader node is replaced', async (t) => {
  const trio = new Trio();
  t.ok(trio.runUntil(() => trio.groups.every((g) => trio.leaderOf(g) !== null), 20 * electionTimeoutTicksMax), 'every group elects a leader');

  // n3 cut off and left behind by one entry per group: no group can quiesce, leaders heartbeat.
  const n3 = trio.hosts[2]?.host.nodeId as NodeId;
  trio.cut.add(n3);
  t.ok(trio.runUntil(() => trio.groups.every((g) => { const l = trio.leaderOf(g); return l !== null && l !== n3; }), 20 * electionTimeoutTicksMax),
    'n1 and n2 lead every group without n3');
  for (const g of trio.groups) {
    const leader = trio.hosts.find((h) => h.host.nodeId === trio.leaderOf(g));
    leader?.host.groups.get(g)?.propose(new Uint8Array([1])).catch(() => { /* only the heartbeats matter here */ });
  }
  const behindFrom = trio.sent.length;
  for (let i = 0; i < 4 * heartbeatIntervalTicks; i++) trio.step();
  const quiescedOn = (id: NodeId): number => trio.groups.filter((g) => trio.hosts.find((h) => h.host.nodeId === id)?.host.groups.get(g)?.raft.quiesced === true).length;
  t.equal(quiescedOn(trio.hosts[0]?.host.nodeId as NodeId) + quiescedOn(trio.hosts[1]?.host.nodeId as NodeId), 0, 'with n3 behind, no replica on n1 or n2 quiesces');
  const between = trio.sent.slice(behindFrom).filter((b) => b.from !== n3 && b.to !== n3 && b.messages === 0);
  const mostInOne = Math.max(...between.map((b) => b.heartbeats));
  t.ok(mostInOne >= groupsCount / 3, `one batch between n1 and n2 carries the heartbeats of many groups (up to ${mostInOne} of ${groupsCount})`);

  trio.cut.clear();
  t.ok(trio.runUntil(() => trio.quiescedReplicas() === 3 * groupsCount, 20 * electionTimeoutTicksMax), 'healed and idle, every replica of every group quiesces');

  const heartbeatBatches = trio.sent.filter((b) => b.messages === 0);
  t.ok(heartbeatBatches.every((b) => b.tick % heartbeatIntervalTicks === 0), 'heartbeats leave only at heartbeat-interval boundaries');
  const perPeerPerTick = new Map<string, number>();
  for (const b of heartbeatBatches) perPeerPerTick.set(`${b.from}>${b.to}@${b.tick}`, (perPeerPerTick.get(`${b.from}>${b.to}@${b.tick}`) ?? 0) + 1);
  t.equal(Math.max(...perPeerPerTick.values()), 1, 'one heartbeat batch per peer per interval');

  // Idle for ten election timeouts: only empty liveness batches, a few per election timeout per peer
  // (after one interval, in which heartbeat answers queued before quiescing still leave; they wake nothing).
  for (let i = 0; i < heartbeatIntervalTicks; i++) trio.step();
  const quietFrom = trio.sent.length;
  const quietTicks = 10 * electionTimeoutTicksMax;
  for (let i = 0; i < quietTicks; i++) trio.step();
  const quiet = trio.sent.slice(quietFrom);
  const busy = quiet.filter((b) => b.messages > 0 || b.heartbeats > 0);
  t.same(busy.slice(0, 5), [], 'idle: no Raft message and no heartbeat');
  t.equal(trio.quiescedReplicas(), 3 * groupsCount, 'still quiesced');
  const pairs = new Map<string, number>();
  for (const b of quiet) pairs.set(`${b.from}>${b.to}`, (pairs.get(`${b.from}>${b.to}`) ?? 0) + 1);
  t.equal(pairs.size, 6, 'every node keeps telling every peer it lives');
  t.ok([...pairs.values()].every((n) => n <= Math.ceil(quietTicks / livenessTicks) + 1), `at most one batch per ${livenessTicks} ticks per peer (${[...pairs.values()].join(',')})`);

  // The node leading most groups goes silent (as kill -9 would leave it).
  const led = new Map<NodeId, GroupId[]>();
  for (const g of trio.groups) {
    const l = trio.leaderOf(g) as NodeId;
    led.set(l, [...(led.get(l) ?? []), g]);
  }
  const [victim, orphaned] = [...led].sort((a, b) => b[1].length - a[1].length)[0] as [NodeId, GroupId[]];
  trio.down.add(victim);
  const downAt = trio.tick;
  const reelected = trio.runUntil(() => orphaned.every((g) => trio.leaderOf(g) !== null), 10 * electionTimeoutTicksMax);
  t.ok(reelected, `the ${orphaned.length} groups ${victim} led elect a survivor (${trio.tick - downAt} ticks)`);
  t.ok(trio.tick - downAt <= livenessTicks + 2 * electionTimeoutTicksMax,
    'within the last liveness batch, the longest election timeout and one more for a split vote');
  t.ok(trio.groups.every((g) => trio.leaderOf(g) !== victim), 'no group still counts the silent node as its leader');
  for (const h of trio.hosts) await h.host.stop();
});

t.test('a quiesced leader cut off from its followers wakes, steps down, and no longer claims its groups', async (t) => {
  const trio = new Trio();
  t.ok(trio.runUntil(() => trio.groups.every((g) => trio.leaderOf(g) !== null), 20 * electionTimeoutTicksMax), 'every group elects a leader');
  t.ok(trio.runUntil(() => trio.quiescedReplicas() === 3 * groupsCount, 20 * electionTimeoutTicksMax), 'idle, every replica quiesces');
  const ledBy = (id: NodeId): GroupId[] => trio.groups.filter((g) => trio.hosts.find((h) => h.host.nodeId === id)?.host.groups.get(g)?.isLeader === true);
  const victim = trio.hosts.map((h) => h.host.nodeId).sort((a, b) => ledBy(b).length - ledBy(a).length)[0] as NodeId;
  const orphaned = ledBy(victim);
  t.ok(orphaned.length > 0, `${victim} leads ${orphaned.length} quiesced groups`);

  // Cut off, not crashed: it keeps ticking. The other two elect; it must stop claiming leadership.
  trio.cut.add(victim);
  const cutAt = trio.tick;
  const others = trio.hosts.filter((h) => h.host.nodeId !== victim);
  const deposed = trio.runUntil(() => ledBy(victim).length === 0
    && orphaned.every((g) => others.some((h) => h.host.groups.get(g)?.isLeader === true)), 10 * electionTimeoutTicksMax);
  t.ok(deposed, `within ${trio.tick - cutAt} ticks ${victim} leads none of its ${orphaned.length} groups (still ${ledBy(victim).length}), and the others elected`);
  t.ok(trio.tick - cutAt <= livenessTicks + 3 * electionTimeoutTicksMax,
    'within the silence that wakes it, one election timeout of check-quorum and one more for its first');
  for (const h of trio.hosts) await h.host.stop();
});
