// The queue service's workload for the fault runner: one producer and one consumer per
// node (clients in the runner's process, each attached to its node first) on a topic of
// 4 partitions with 3 replicas. Producers publish unique values under 8 keys; consumers
// of one group ack what they process, and now and then fail on purpose: a nack, or a
// consumer that "crashes" holding a message (closed without acking, replaced by a fresh
// consumer), so redelivery after a deadline or a lost consumer is part of every run.
// A delivery is recorded only when it is processed (acked), so a message whose only
// attempts failed counts as never received. After load stops the consumers drain until
// every acknowledged publish was received (or a bound passes); the checker
// (test/checker/queue-accounting.ts) then reports lost, unexpected and misordered
// deliveries, and counts duplicates.
// Canary 'queue-forget-failed': nodes that treat a failed attempt as done (node bug,
// DSYNC_CANARY=queue-forget-failed): the failed-on-purpose messages are lost.

import { Client, DsyncError, type Consumer, type Producer } from '../../client/index.js';
import { Xoshiro128 } from '../../core/prng.js';
import { ErrorCode } from '../../protocol/errors.js';
import type { BaseOp } from '../checker/history.js';
import { checkQueueHistory, type DeliverOp, type PublishOp, type QueueOp } from '../checker/queue-accounting.js';
import { epochNowMs } from './clock.js';
import type { CheckOutcome, Workload, WorkloadContext } from './workload.js';

const topic = 'chaos';
const group = 'g1';
const keys = 8;
/** Pause between one producer's publishes: keeps the queue's share of two cores modest. */
const publishGapMs = 10;
/**
 * Publishes per producer at most (a bound besides time): 5,000, or 40 per second of load
 * for long runs (a producer manages about 20 a second), so a soak's load lasts its whole time.
 */
const publishesMaxFloor = 5_000;
const publishesPerSecondMax = 40;
/** A consumer's deliveries come back this long after it stopped answering. */
const ackDeadlineMs = 2_000;
/** Chance per message of a nack, and of a consumer crash holding it. */
const nackRatio = 0.01;
const crashRatio = 0.005;
/** How long the drain may take after load stops, and how long it waits without progress (a redelivery takes an ack deadline). */
const drainMsMax = 30_000;
const drainIdleMsMax = 3 * ackDeadlineMs;
/** Errors after which a publish certainly did not happen. */
const definiteFailures = new Set<string>([ErrorCode.BAD_REQUEST, ErrorCode.NOT_FOUND, ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.FORBIDDEN, ErrorCode.FENCED]);
const dec = new TextDecoder();

export class QueueWorkload implements Workload {
  readonly service = 'queues';
  readonly canaries = ['queue-forget-failed'] as const;
  readonly nodeCanaries = { 'queue-forget-failed': 'queue-forget-failed' };
  private ctx: WorkloadContext | null = null;
  private readonly clients: Client[] = [];
  private readonly loops: Promise<void>[] = [];
  private producing = true;
  private consuming = true;
  /** Values published ok and values processed: the drain ends when the first are all in the second. */
  private readonly acknowledged = new Set<string>();
  private readonly processed = new Set<string>();
  private nextId = 0;

  async start(ctx: WorkloadContext): Promise<void> {
    this.ctx = ctx;
    this.nextId = ctx.history.idBlock();
    const admin = await this.client(0, 'queue-admin');
    await admin.topics.create(topic, { partitions: 4, replicas: Math.min(3, ctx.seeds.length), ackDeadlineMs, maxDeliveries: 0 });
    for (let i = 0; i < ctx.seeds.length; i++) {
      const node = ctx.nodeIds[i] ?? '?';
      const pc = await this.client(i, `producer${i}@${node}`);
      this.loops.push(this.produce(pc, `producer${i}@${node}`, node, new Xoshiro128((ctx.seed * 31 + i) >>> 0)));
      const cc = await this.client(i, `consumer${i}@${node}`);
      this.loops.push(this.consume(cc, i, node, new Xoshiro128((ctx.seed * 37 + i) >>> 0)));
    }
  }

  async stop(): Promise<void> {
    const ctx = this.ctx;
    this.producing = false;
    // Drain: consumers run on until every acknowledged value was processed, or the bound passes.
    const until = performance.now() + drainMsMax;
    let seen = -1;
    let progressAt = performance.now();
    while (performance.now() < until && performance.now() - progressAt < drainIdleMsMax && [...this.acknowledged].some((v) => !this.processed.has(v))) {
      if (this.processed.size !== seen) {
        seen = this.processed.size;
        progressAt = performance.now();
      }
      await sleep(200);
    }
    const missing = [...this.acknowledged].filter((v) => !this.processed.has(v)).length;
    if (missing > 0) ctx?.log(`queues: drain ended with ${missing} acknowledged values not processed`);
    this.consuming = false;
    await Promise.all(this.loops);
    await Promise.all(this.clients.map((c) => c.close().catch(() => {})));
  }

  kill(): void {
    this.producing = false;
    this.consuming = false;
    for (const c of this.clients) void c.close().catch(() => {});
  }

  check(ops: readonly BaseOp[]): CheckOutcome {
    const r = checkQueueHistory(ops.filter((o): o is QueueOp => o.service === 'queues' && (o.f === 'publish' || o.f === 'deliver')), { drainedGroups: [group] });
    const s = r.stats;
    return { anomalies: r.anomalies, stats: { publishedOk: s.published.ok, publishedUnknown: s.published.unknown, publishedFail: s.published.fail,
      unknownLanded: s.unknownLanded, deliveries: s.deliveries, redeliveries: s.redeliveries, duplicates: s.duplicates, lost: s.lost } };
  }

  availabilityOps(ops: readonly BaseOp[]): BaseOp[] {
    return ops.filter((o) => o.service === 'queues' && o.f === 'publish');
  }

  private async client(nodeIndex: number, name: string): Promise<Client> {
    const ctx = this.ctx as WorkloadContext;
    const seeds = [...ctx.seeds.slice(nodeIndex), ...ctx.seeds.slice(0, nodeIndex)];
    const c = await Client.connect({ seeds, name, requestTimeoutMs: 4_000 });
    this.clients.push(c);
    return c;
  }

  private now(): number {
    return epochNowMs() - (this.ctx as WorkloadContext).originMs;
  }

  private async produce(client: Client, name: string, node: string, prng: Xoshiro128): Promise<void> {
    const ctx = this.ctx as WorkloadContext;
    const producer: Producer = client.producer(topic);
    const publishesMax = Math.max(publishesMaxFloor, Math.ceil((ctx.loadUntilMs / 1000) * publishesPerSecondMax));
    for (let seq = 0; this.producing && seq < publishesMax && this.now() < ctx.loadUntilMs; seq++) {
      const key = `k${prng.int(0, keys - 1)}`;
      const value = `${name}#${seq}`;
      const invokeMs = this.now();
      const base = { id: this.nextId++, process: name, node, service: 'queues', f: 'publish' as const, producer: name, key, value, invokeMs };
      try {
        const r = await producer.publish(key, value);
        this.acknowledged.add(value);
        const op: PublishOp = { ...base, endMs: this.now(), outcome: 'ok', partition: r.partition, offset: r.offset };
        ctx.history.add(op);
      } catch (err) {
        const code = err instanceof DsyncError ? err.code : String(err);
        const outcome = err instanceof DsyncError && definiteFailures.has(err.code) ? 'fail' : 'unknown';
        const op: PublishOp = { ...base, endMs: this.now(), outcome, error: code };
        ctx.history.add(op);
      }
      await sleep(publishGapMs);
    }
  }

  /** One consumer slot: a consumer that runs until it crashes on purpose, then a fresh one. */
  private async consume(client: Client, index: number, node: string, prng: Xoshiro128): Promise<void> {
    const ctx = this.ctx as WorkloadContext;
    for (let incarnation = 0; this.consuming; incarnation++) {
      const name = `consumer${index}.${incarnation}@${node}`;
      const consumer: Consumer = client.consumer(topic, group, { ackDeadlineMs, waitMs: 500, maxInFlight: 64 });
      const stopWatch = setInterval(() => { if (!this.consuming) void consumer.close(); }, 100);
      try {
        for await (const msg of consumer) {
          const roll = prng.next();
          if (roll < crashRatio) break; // holding msg unacked: it must come back to someone
          if (roll < crashRatio + nackRatio) {
            await msg.nack(50).catch(() => {});
            continue;
          }
          const value = dec.decode(msg.value);
          this.processed.add(value);
          const op: DeliverOp = { id: this.nextId++, process: name, node, service: 'queues', f: 'deliver', group, consumer: name, key: dec.decode(msg.key),
            value, partition: msg.partition, offset: msg.offset, attempt: msg.deliveries, invokeMs: this.now(), endMs: this.now(), outcome: 'ok' };
          ctx.history.add(op);
          msg.ack().catch(() => {}); // a lost ack means a redelivery: counted as a duplicate
        }
      } catch (err) {
        if (this.consuming) ctx.log(`queues: ${name} failed: ${err instanceof Error ? err.message : String(err)}; starting a fresh consumer`);
        await sleep(200);
      } finally {
        clearInterval(stopWatch);
        await consumer.close().catch(() => {});
      }
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
