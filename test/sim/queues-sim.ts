// The queue service under the simulator: SimNodes run the shipped QueueService (topics
// in group 0, each partition its own Raft group, memory message stores, snapshots every
// few entries so followers that fell behind install partition snapshots that carry the
// bodies) and a client on the shipped Router over simulated connections publishes with
// producer dedup, fetches and acks, while the nemesis crashes and restarts nodes (losing
// unsynced writes), partitions the network and pauses nodes. After healing, checked:
// - lost: a publish the service acknowledged is never delivered to the group;
// - phantom: a delivery of a value that was never published;
// - liveness: the topic is served again after healing (every acknowledged value is
//   delivered within the liveness phase).
// Duplicates are counted (at-least-once), not failed.

import { consumerGroup } from '../../core/ids.js';
import { Xoshiro128 } from '../../core/prng.js';
import { DsyncError, ErrorCode } from '../../protocol/errors.js';
import { Opcode } from '../../protocol/frame.js';
import { schema } from '../../protocol/index.js';
import { Router } from '../../client/transport/router.js';
import { QueueService } from '../../server/services/queues/service.js';
import { memoryPartitionStorage } from '../../server/services/queues/storage.js';
import type { Hash32 } from '../../core/ring/index.js';
import { failureOf } from './common.js';
import { runnerProfile } from './runner-sim.js';
import { ClientNet, clientClock, simAddress } from './sim-client.js';
import { SimCluster, type SimNode } from './sim-cluster.js';

export interface QueueSeedResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly property: string;
  readonly error: string;
  readonly profile: string;
  readonly acked: number;
  readonly delivered: number;
  readonly duplicates: number;
  readonly crashes: number;
  readonly snapshotsInstalled: number;
  readonly snapshotsSaved: number;
}

const topic = 'sim';
const partitions = 2;
const group = consumerGroup('g');
const dec = new TextDecoder();
const enc = new TextEncoder();

/** One seed: publish `publishes` values under faults for faultPhaseMs, heal, consume everything. */
export async function runQueueSeed(seed: number, hash: Hash32, publishes = 80, faultPhaseMs = 4_000): Promise<QueueSeedResult> {
  const profiled = runnerProfile(seed, {});
  const holder: { cluster: SimCluster | null } = { cluster: null };
  const voters = (): string[] => (holder.cluster?.nodes ?? []).map((n) => n.id).sort();
  const services = (node: SimNode): QueueService[] => [new QueueService({
    hash, voters: () => voters() as never, storage: memoryPartitionStorage, wallClockMs: () => node.time?.nowMs() ?? 0,
  })];
  // At least 3 nodes, partitions of 3 replicas; snapshots every few entries so install-snapshot runs.
  const c = new SimCluster({ ...profiled.cluster, nodeCount: Math.max(3, profiled.cluster.nodeCount), snapshotEntries: 12, services });
  holder.cluster = c;
  const n = c.opts.network;
  const profile = `nodes=${c.nodes.length} drop=${n.dropProb} dup=${n.dupProb} delay<=${n.delayMsMax}ms fsync<=${c.opts.fsyncMsMax}ms skew=${c.opts.clockSkew}`;
  const p = new Xoshiro128((seed * 7919) ^ 0x51554555);
  const net = new ClientNet(c, new Xoshiro128(p.int(0, 0x7fffffff)), { delayMsMin: 1, delayMsMax: 5, refuseMs: 2 });
  const clock = clientClock(c.world);
  const router = new Router({ seeds: c.nodes.map(simAddress), name: 'qsim', clock, connect: net.factory(0, clock), requestTimeoutMs: 3_000, attemptsMax: 30 });

  const published = new Set<string>();
  const acked = new Set<string>();
  const seen = new Map<string, number>();
  let groups: number[] = [];
  let stopPublishing = false;
  let result: { property: string; error: string } = { property: '', error: '' };

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

  // One publisher per partition: batches of 1-3 values, one batch in flight, a retry resends the same seq.
  const publish = async (partition: number): Promise<void> => {
    let seq = 1;
    let i = 0;
    while (!stopPublishing && i < publishes / partitions) {
      const count = Math.min(p.int(1, 3), publishes / partitions - i);
      const values = Array.from({ length: count }, (_, k) => `p${partition}-${i + k}`);
      for (const v of values) published.add(v);
      const payload = schema.PublishRequest.encode({ topic, partition, producer: `prod-${partition}`, firstSeq: seq,
        messages: values.map((v) => ({ key: enc.encode(v), value: enc.encode(v) })) }).finish();
      try {
        await router.request(groups[partition] ?? 0, Opcode.Publish, payload, { idempotent: true });
        for (const v of values) acked.add(v);
      } catch {
        // Not acknowledged: may or may not be in the log; never required.
      }
      seq += count;
      i += count;
    }
  };

  const consume = async (partition: number, untilMs: number): Promise<void> => {
    let fetchSeq = 0;
    let ackSeq = 0;
    while (clock.nowMs() < untilMs && [...acked].some((v) => v.startsWith(`p${partition}-`) && !seen.has(v))) {
      let reply: ReturnType<typeof schema.FetchReply.decode>;
      try {
        reply = schema.FetchReply.decode(await router.request(groups[partition] ?? 0, Opcode.Fetch, schema.FetchRequest.encode({
          topic, partition, group, consumer: `c-${partition}`, seq: ++fetchSeq, max: 16, waitMs: 200 }).finish(), { followLeader: true, timeoutMs: 3_000 }));
      } catch {
        continue;
      }
      if (reply.messages.length === 0) continue;
      for (const d of reply.messages) {
        const v = dec.decode(d.message?.value ?? new Uint8Array(0));
        seen.set(v, (seen.get(v) ?? 0) + 1);
        if (!published.has(v) && result.property === '') result = { property: 'phantom', error: `delivered ${JSON.stringify(v)}, never published` };
      }
      try {
        await router.request(groups[partition] ?? 0, Opcode.Ack, schema.SettleRequest.encode({ topic, partition, group, consumer: `c-${partition}#s`, firstSeq: ++ackSeq,
          items: reply.messages.map((d) => ({ delivery: d.delivery ?? 0, attempt: d.attempt ?? 0 })) }).finish(), { idempotent: true });
      } catch {
        // Unacked: redelivered after the deadline.
      }
    }
  };

  // Nemesis: crash/restart, partition/heal, pause, every few hundred ms during the fault phase.
  const nemesis = (): void => {
    if (c.world.nowMs > faultPhaseMs) return;
    const idx = p.int(0, c.nodes.length - 1);
    const r = p.next();
    if (r < 0.4) {
      c.crash(idx);
      c.world.at(p.int(100, 600), () => c.restart(idx));
    } else if (r < 0.6) {
      c.isolate(idx);
      c.world.at(p.int(100, 600), () => c.heal());
    } else if (r < 0.75) {
      c.pause(idx, p.int(50, 400));
    }
    c.world.at(p.int(150, 500), nemesis);
  };

  try {
    const created = create();
    await c.world.runUntil(() => groups.length === partitions, 30_000);
    await created;
    c.world.at(100, nemesis);
    let publishers = 0;
    for (let part = 0; part < partitions; part++) void publish(part).finally(() => { publishers++; });
    await c.world.runUntil(() => publishers === partitions || c.world.nowMs > faultPhaseMs, faultPhaseMs + 1_000);
    stopPublishing = true;
    await c.world.runUntil(() => publishers === partitions, 30_000);
    c.healAll();
    const untilMs = clock.nowMs() + 30_000;
    let consumers = 0;
    for (let part = 0; part < partitions; part++) void consume(part, untilMs).finally(() => { consumers++; });
    await c.world.runUntil(() => consumers === partitions, 31_000);
    const missing = [...acked].filter((v) => !seen.has(v));
    if (result.property === '' && missing.length > 0) {
      result = { property: 'lost', error: `${missing.length} acknowledged publishes never delivered: ${missing.slice(0, 8).join(' ')}` };
    }
    if (result.property === '' && acked.size === 0) result = { property: 'liveness', error: 'nothing was acknowledged' };
  } catch (err) {
    result = failureOf(err);
  } finally {
    await router.close();
  }
  const delivered = [...seen.values()].reduce((a, b) => a + b, 0);
  return { seed, ok: result.property === '', ...result, profile, acked: acked.size, delivered, duplicates: delivered - seen.size,
    crashes: c.stats.crashes, snapshotsInstalled: c.statsNow().snapshotsInstalled, snapshotsSaved: c.statsNow().snapshotsSaved };
}
