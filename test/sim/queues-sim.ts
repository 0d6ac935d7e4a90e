// The queue service under the simulator: SimNodes run the shipped QueueService (topics
// in group 0, each partition its own Raft group, memory message stores, snapshots every
// 12 entries - though over the 500 CI seeds no follower falls behind the leader's
// compaction, so none installs a partition snapshot; the `laggard` option's seeds
// (queues-laggard.test.ts) cut one replica off long enough that it must) and a
// client on the shipped Router over simulated connections publishes with
// producer dedup while consumers of one group fetch and ack, during the faults and after.
// The nemesis crashes and restarts nodes (losing unsynced writes), isolates them, pauses
// them, resets the client's connections (answers in flight are lost) and cuts the client
// from a node; peer messages are dropped (at least 1% of them), duplicated and delayed.
// Consumers sometimes die before processing a batch (never acked: the deadline
// redelivers it). Membership changes, in every fourth seed with 4 or 5 nodes (one change
// per seed: each costs about a quarter more events, and the CI run's time is fixed): the
// queue's voters (group 0 state) start without the last node, which joins during the
// faults, or (5 nodes, every eighth seed) start with all and one leaves; group 0's leader then moves partitions onto the new node or off
// the one that left (core/queue/rebalance.ts), their leaders walking each group there by
// learner, promotion and removal while publishes and fetches go on. After healing, the consumers drain the topic and the shared queue
// checker (test/checker/queue-accounting.ts) reads the history:
// - lost: a publish the service acknowledged is never delivered to the group;
// - unexpected: a delivery of a value that was never published;
// - offset-conflict: two values at one (partition, offset) (an acknowledged message
//   overwritten, by the publisher's answer or by a delivery);
// - producer-order / delivery-order: per-key order (keys share partitions): a
//   producer's publishes of one key get increasing offsets, and each consumer gets the
//   first attempts of a partition in offset order (redeliveries may come at any time);
// - liveness: nothing was acknowledged at all.
// Duplicates and redeliveries are counted (at-least-once), not failed.

import { consumerGroup, groupId } from '../../core/ids.js';
import { Xoshiro128 } from '../../core/prng.js';
import { DsyncError, ErrorCode } from '../../protocol/errors.js';
import { Opcode } from '../../protocol/frame.js';
import { schema } from '../../protocol/index.js';
import { Router } from '../../client/transport/router.js';
import { sleepOn } from '../../client/transport/time.js';
import { type QueueCanary, QueueService } from '../../server/services/queues/service.js';
import { memoryPartitionStorage } from '../../server/services/queues/storage.js';
import type { Hash32 } from '../../core/ring/index.js';
import { checkQueueHistory, type QueueOp } from '../checker/queue-accounting.js';
import { failureOf } from './common.js';
import { runnerProfile } from './runner-sim.js';
import { ClientNet, clientClock, simAddress } from './sim-client.js';
import { SimCluster, type SimNode } from './sim-cluster.js';
import { EntryKind, frameEntry, type SubMachine } from '../../server/raft/group0.js';
import type { Service } from '../../server/services/service.js';

/**
 * The queue's voters in the simulation: group 0 state, as the members table is on a real
 * node, so every replica applies a topic's create (its placement) and a move with the
 * voters as of that entry. Entries carry the whole list (JSON).
 */
class SimVoters implements SubMachine {
  constructor(public voters: string[]) {}
  apply(_entry: unknown, body: Uint8Array): null {
    this.voters = JSON.parse(dec.decode(body)) as string[];
    return null;
  }
  snapshot(): string[] {
    return [...this.voters];
  }
  restore(state: unknown): void {
    this.voters = [...(state as string[])];
  }
}

function simVotersService(machine: SimVoters): Service {
  return { name: 'sim-voters', opcodes: { min: 900, max: 999 }, group0: { kind: EntryKind.Members, machine }, start: () => {}, stop: () => {} };
}

export interface QueueSeedResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly property: string;
  readonly error: string;
  readonly profile: string;
  readonly acked: number;
  readonly delivered: number;
  readonly redeliveries: number;
  readonly duplicates: number;
  readonly crashes: number;
  readonly resets: number;
  readonly snapshotsInstalled: number;
  readonly snapshotsSaved: number;
  /** Partition moves group 0 applied (epochs summed over the partitions), and how many were not settled at the end. */
  readonly moves: number;
  readonly movesUnsettled: number;
  /** Virtual ms the seed ran (bootstrap, faults, drain) and the events it took. */
  readonly virtualMs: number;
  readonly events: number;
  /** Virtual ms at which the topic existed, the faults were healed, the drain ended. */
  readonly phasesMs: readonly number[];
  /** With opts.trace: the cluster's notes, the history, each replica's partition state at the end. */
  readonly trace: readonly string[];
}

export interface QueueSimOptions {
  /** Values published (spread over the partitions). */
  readonly publishes?: number;
  readonly faultPhaseMs?: number;
  /** After healing, how long the consumers may take to drain every acknowledged value. */
  readonly drainMs?: number;
  /** A deliberate bug in the shipped service, which the checker must catch (queues-canary.test.ts). */
  readonly canary?: QueueCanary;
  /** Keep the cluster's trace, the history and the partitions' final state (QueueSeedResult.trace). */
  readonly trace?: boolean;
  /**
   * A laggard: one follower of partition 0 is cut off from the other nodes for the whole
   * fault phase (the nemesis leaves it alone), so its partitions compact past it and it
   * catches up by installing their snapshots once healed.
   */
  readonly laggard?: boolean;
  /** Applied entries between a group's snapshots (default 12). */
  readonly snapshotEntries?: number;
}

const topic = 'sim';
const partitions = 2;
const consumersPerPartition = 2;
/** Keys per partition: several values share a key, so order per key is checked. */
const keysPerPartition = 3;
const group = consumerGroup('g');
const wallEpochMs = 1_700_000_000_000;
const dec = new TextDecoder();
const enc = new TextEncoder();

/**
 * One seed: publish and consume under faults for faultPhaseMs (from the start), heal, let
 * the publishers finish and the consumers drain, check the history.
 */
export async function runQueueSeed(seed: number, hash: Hash32, opts: QueueSimOptions = {}): Promise<QueueSeedResult> {
  const publishes = opts.publishes ?? 80;
  const faultPhaseMs = opts.faultPhaseMs ?? 4_000;
  const drainMs = opts.drainMs ?? 30_000;
  const profiled = runnerProfile(seed, {});
  const holder: { cluster: SimCluster | null } = { cluster: null };
  // The queue's voters (group 0's voters on a real node): group 0 state (SimVoters); the
  // membership changes below propose new lists. With 4 or 5 nodes the last starts outside.
  const nodeCount = Math.max(3, profiled.cluster.nodeCount);
  const allIds = Array.from({ length: nodeCount }, (_, i) => `n${i + 1}`);
  // Drawn from the seed alone (not from p), so the rest of the seed's schedule draws as before.
  const membership: 'none' | 'join' | 'leave' = nodeCount < 4 || seed % 4 !== 0 ? 'none' : nodeCount === 5 && seed % 8 === 0 ? 'leave' : 'join';
  const initialVoters = membership === 'join' ? allIds.slice(0, -1) : allIds;
  // Wall clocks (deadlines, ready times, timestamps) are NTP-close: the virtual time plus a
  // per-node offset within +-100 ms. (A node's monotonic clock - node.time - starts anywhere
  // in 0-100 s; used as the wall clock, a new leader up to 100 s behind holds redeliveries
  // back that long, which partition.ts accepts: deadlines assume clocks shared closely.)
  const services = (node: SimNode): Service[] => {
    const voters = new SimVoters(initialVoters);
    return [simVotersService(voters), new QueueService({
    hash, voters: () => [...voters.voters].sort() as never, storage: memoryPartitionStorage, wallClockMs: () => wallEpochMs + c.world.nowMs + (node.clockOffsetMs % 201) - 100,
    ...(opts.canary === undefined ? {} : { canary: opts.canary }),
  })];
  };
  // At least 3 nodes, partitions of 3 replicas; snapshots every few entries so install-snapshot runs;
  // peer messages always lossy (the profile's rate, at least 1%).
  const network = { ...profiled.cluster.network, dropProb: Math.max(0.01, profiled.cluster.network.dropProb) };
  const c = new SimCluster({ ...profiled.cluster, network, nodeCount, snapshotEntries: opts.snapshotEntries ?? 12, services });
  holder.cluster = c;
  /** Proposes the queue's voters through group 0's leader until some node applied them (retried: leaders change, entries get lost). */
  const changeVoters = (next: string[], why: string): void => {
    const applied = (): boolean => c.nodes.some((node) => node.up && node.services.some((svc) => svc.name === 'sim-voters'
      && ((svc as unknown as { group0: { machine: SimVoters } }).group0.machine.voters.join() === next.join())));
    const attempt = (): void => {
      if (applied()) {
        c.note(`membership: ${why}`);
        return;
      }
      const leader = c.leader();
      if (leader !== null) leader.group0.propose(frameEntry(EntryKind.Members, enc.encode(JSON.stringify(next)))).catch(() => {});
      c.world.at(100, attempt);
    };
    attempt();
  };
  c.traceEnabled = opts.trace === true;
  const n = c.opts.network;
  const profile = `nodes=${c.nodes.length} drop=${n.dropProb} dup=${n.dupProb} delay<=${n.delayMsMax}ms fsync<=${c.opts.fsyncMsMax}ms skew=${c.opts.clockSkew}`;
  const p = new Xoshiro128((seed * 7919) ^ 0x51554555);
  const net = new ClientNet(c, new Xoshiro128(p.int(0, 0x7fffffff)), { delayMsMin: 1, delayMsMax: 5, refuseMs: 2 });
  const clock = clientClock(c.world);
  const router = new Router({ seeds: c.nodes.map(simAddress), name: 'qsim', clock, connect: net.factory(0, clock), requestTimeoutMs: 3_000, attemptsMax: 30 });

  const history: QueueOp[] = [];
  let nextOp = 1;
  const acked = new Set<string>();
  const seen = new Set<string>();
  let groups: number[] = [];
  let draining = false;
  let result: { property: string; error: string } = { property: '', error: '' };
  const phasesMs: number[] = [];

  const create = async (): Promise<void> => {
    for (;;) {
      try {
        const reply = schema.TopicState.decode(await router.request(0, Opcode.TopicCreate, schema.TopicRequest.encode({ name: topic, partitions, replicas: 3, ackDeadlineMs: 1_000 }).finish()));
        groups = reply.partitionList.map((x) => x.groupId ?? 0);
        return;
      } catch (err) {
        if (err instanceof DsyncError && err.code === ErrorCode.ALREADY_EXISTS) {
          const info = schema.TopicState.decode(await router.request(0, Opcode.PartitionMap, schema.PartitionMapRequest.encode({ topic }).finish(), { idempotent: true }));
          groups = info.partitionList.map((x) => x.groupId ?? 0);
          return;
        }
      }
    }
  };

  // One publisher per partition: batches of 1-3 values, one batch in flight, a retry resends the same seq;
  // 0-250 ms between batches, so the publishes spread over the fault phase.
  const publish = async (partition: number): Promise<void> => {
    const producer = `prod-${partition}`;
    const perPartition = publishes / partitions;
    let seq = 1;
    let i = 0;
    while (i < perPartition) {
      const count = Math.min(p.int(1, 3), perPartition - i);
      const batch = Array.from({ length: count }, (_, k) => ({ key: `k${partition}.${(i + k) % keysPerPartition}`, value: `p${partition}-${i + k}` }));
      const payload = schema.PublishRequest.encode({ topic, partition, producer, firstSeq: seq,
        messages: batch.map((m) => ({ key: enc.encode(m.key), value: enc.encode(m.value) })) }).finish();
      const invokeMs = clock.nowMs();
      let reply: ReturnType<typeof schema.PublishReply.decode> | null = null;
      let error = '';
      try {
        reply = schema.PublishReply.decode(await router.request(groups[partition] ?? 0, Opcode.Publish, payload, { idempotent: true }));
      } catch (err) {
        // Not acknowledged: may or may not be in the log; never required.
        error = err instanceof DsyncError ? err.code : String(err);
      }
      const endMs = clock.nowMs();
      batch.forEach((m, k) => {
        const base = { id: nextOp++, process: producer, node: '', service: 'queues', f: 'publish' as const, producer, key: m.key, value: m.value, invokeMs, endMs };
        if (reply === null) {
          history.push({ ...base, outcome: 'unknown', error });
        } else {
          acked.add(m.value);
          history.push({ ...base, outcome: 'ok', partition: reply.partition, offset: Number(reply.baseOffset) + k });
        }
      });
      seq += count;
      i += count;
      const pauseMs = p.int(0, 250);
      await sleepOn(clock, pauseMs);
    }
  };

  // Consumers of the group, from the start (under the faults) until the drain has seen every acknowledged value.
  const allSeen = (): boolean => [...acked].every((v) => seen.has(v));
  let drainUntilMs = Infinity;
  const consume = async (partition: number, consumer: string): Promise<void> => {
    let fetchSeq = 0;
    let ackSeq = 0;
    while (clock.nowMs() < drainUntilMs && !(draining && allSeen())) {
      let reply: ReturnType<typeof schema.FetchReply.decode>;
      const invokeMs = clock.nowMs();
      try {
        reply = schema.FetchReply.decode(await router.request(groups[partition] ?? 0, Opcode.Fetch, schema.FetchRequest.encode({
          topic, partition, group, consumer, seq: ++fetchSeq, max: 8, waitMs: 200 }).finish(), { followLeader: true, timeoutMs: 3_000 }));
      } catch {
        continue;
      }
      if (reply.messages.length === 0) continue;
      // Under the faults a consumer sometimes dies before it processes a batch: not received, never acked.
      if (!draining && p.next() < 0.05) continue;
      const endMs = clock.nowMs();
      for (const d of reply.messages) {
        const value = dec.decode(d.message?.value ?? new Uint8Array(0));
        seen.add(value);
        history.push({ id: nextOp++, process: consumer, node: '', service: 'queues', f: 'deliver', group, consumer, invokeMs, endMs, outcome: 'ok',
          key: dec.decode(d.message?.key ?? new Uint8Array(0)), value, partition, offset: Number(d.offset ?? 0), attempt: d.attempt ?? 0 });
      }
      try {
        await router.request(groups[partition] ?? 0, Opcode.Ack, schema.SettleRequest.encode({ topic, partition, group, consumer: `${consumer}#s`, firstSeq: ++ackSeq,
          items: reply.messages.map((d) => ({ delivery: d.delivery ?? 0, attempt: d.attempt ?? 0 })) }).finish(), { idempotent: true });
      } catch {
        // Unacked: redelivered after the deadline.
      }
    }
  };

  // Nemesis, every few hundred ms during the fault phase: crash/restart, isolate/heal, pause,
  // reset the client's connections, cut the client from one node for a while. Half the
  // time it aims at the node leading a partition (as it sees itself), else at any node.
  const partitionLeader = (part: number): number | null => {
    const gid = groups[part];
    if (gid === undefined) return null;
    const i = c.nodes.findIndex((node) => node.up && node.host?.leaderOf(groupId(gid)) === node.nodeId);
    return i < 0 ? null : i;
  };
  let laggard = -1;
  /** Heals the nemesis's cuts; the laggard's stays until the fault phase ends. */
  const heal = (): void => {
    c.heal();
    if (laggard >= 0) c.isolate(laggard);
  };
  const nemesis = (): void => {
    if (c.world.nowMs > faultPhaseMs) return;
    const target = p.next() < 0.5 ? partitionLeader(p.int(0, partitions - 1)) : null;
    const idx = target ?? p.int(0, c.nodes.length - 1);
    const r = p.next();
    if (idx === laggard) {
      // Left alone: it is already cut off.
    } else if (r < 0.3) {
      c.crash(idx);
      c.world.at(p.int(100, 600), () => c.restart(idx));
    } else if (r < 0.45) {
      c.isolate(idx);
      c.world.at(p.int(100, 600), heal);
    } else if (r < 0.6) {
      c.pause(idx, p.int(50, 400));
    } else if (r < 0.75) {
      net.reset(0);
    } else if (r < 0.85) {
      net.setBlocked(0, [idx], true);
      c.world.at(p.int(100, 600), () => net.setBlocked(0, [idx], false));
    }
    c.world.at(p.int(150, 500), nemesis);
  };

  try {
    const created = create();
    await c.world.runUntil(() => groups.length === partitions, 30_000);
    await created;
    phasesMs.push(c.world.nowMs);
    if (opts.laggard === true) {
      const gid = groupId(groups[0] as number);
      // A replica of partition 0 that is not its leader and has heard from it (it hosts the group).
      const follower = (): number => {
        const leaderOf0 = partitionLeader(0);
        return leaderOf0 === null ? -1 : c.nodes.findIndex((node, i) => i !== leaderOf0 && node.up && (node.host?.leaderOf(gid) ?? '') !== '');
      };
      await c.world.runUntil(() => follower() >= 0, 10_000);
      laggard = follower();
      if (laggard >= 0) {
        c.note(`laggard ${c.node(laggard).id}`);
        c.isolate(laggard);
      }
    }
    c.world.at(100, nemesis);
    if (membership !== 'none') {
      const m = new Xoshiro128(seed ^ 0x4d454d42);
      const atMs = m.int(200, Math.max(300, Math.floor(faultPhaseMs / 2)));
      const leaving = allIds[m.int(0, allIds.length - 1)] as string;
      c.world.at(atMs, () => (membership === 'join'
        ? changeVoters(allIds, `${allIds[allIds.length - 1]} joined the queue's voters`)
        : changeVoters(allIds.filter((id) => id !== leaving), `${leaving} left the queue's voters`)));
    }
    let publishers = 0;
    for (let part = 0; part < partitions; part++) void publish(part).finally(() => { publishers++; });
    let consumers = 0;
    for (let part = 0; part < partitions; part++) {
      for (let k = 0; k < consumersPerPartition; k++) void consume(part, `c-${part}-${k}`).finally(() => { consumers++; });
    }
    await c.world.runUntil(() => c.world.nowMs > faultPhaseMs, faultPhaseMs + 1_000);
    phasesMs.push(c.world.nowMs);
    laggard = -1;
    c.healAll();
    net.healAll();
    // The publishers finish once healed (what they publish then must be acknowledged), then the consumers drain.
    if (!await c.world.runUntil(() => publishers === partitions, 30_000)) result = { property: 'liveness', error: 'the publishers did not finish within 30 s of healing' };
    draining = true;
    drainUntilMs = clock.nowMs() + drainMs;
    await c.world.runUntil(() => consumers === partitions * consumersPerPartition, drainMs + 4_000);
    phasesMs.push(c.world.nowMs);
    const checked = checkQueueHistory(history, { drainedGroups: [group] });
    const first = checked.anomalies[0];
    if (first !== undefined && result.property === '') {
      const kinds = [...new Set(checked.anomalies.map((a) => a.kind))];
      result = { property: first.kind, error: `${checked.anomalies.length} anomalies (${kinds.join(', ')}): ${checked.anomalies.slice(0, 4).map((a) => a.message).join(' | ')}` };
    }
    if (result.property === '' && acked.size === 0) result = { property: 'liveness', error: 'nothing was acknowledged' };
  } catch (err) {
    result = failureOf(err);
  } finally {
    await router.close();
  }
  const checked = checkQueueHistory(history, { drainedGroups: [group] });
  const trace = opts.trace !== true ? [] : [...c.trace, ...history.map((o) => JSON.stringify(o)), ...c.nodes.flatMap((node) => node.services.flatMap((svc) =>
    svc instanceof QueueService ? svc.topics.table.list().flatMap((t) => t.placement.map((_r, i) => `${node.id} p${i}: ${JSON.stringify(
      [...(svc as unknown as { hosted: Map<number, { index: number; topic: { name: string }; machine: { partition: { toSnapshot(): unknown } } }> }).hosted.values()].find((h) => h.index === i && h.topic.name === t.name)?.machine.partition.toSnapshot())}`)) : []))];
  // What group 0 applied, as the most advanced node that is up knows it.
  let moves = 0;
  let movesUnsettled = 0;
  for (const node of c.nodes) {
    for (const svc of node.services) {
      if (!(svc instanceof QueueService)) continue;
      const t = svc.topics.table.get(topic);
      if (t === undefined) continue;
      const applied = t.epochs.reduce((a, b) => a + b, 0);
      if (applied < moves) continue;
      moves = applied;
      movesUnsettled = t.hosts.filter((h, i) => h.length !== (t.placement[i]?.length ?? 0)).length;
    }
  }
  return { trace, seed, ok: result.property === '', ...result, profile, moves, movesUnsettled, acked: acked.size, delivered: checked.stats.deliveries, redeliveries: checked.stats.redeliveries,
    duplicates: checked.stats.duplicates, crashes: c.stats.crashes, resets: net.resets, snapshotsInstalled: c.statsNow().snapshotsInstalled,
    snapshotsSaved: c.statsNow().snapshotsSaved, virtualMs: c.world.nowMs, events: c.world.eventsRun, phasesMs };
}
