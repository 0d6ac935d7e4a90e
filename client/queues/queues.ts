// The queue part of the client: producers, consumers and topic administration over
// the Router (client/transport/router.ts), which finds each partition's leader and
// follows NOT_LEADER. Partition maps come from group 0's leader and seed the router's
// leader hints.
//
// - Producer: key -> partition = xxhash32(utf8 key) mod partitions (the function the
//   server places by). Publishes for one partition issued in the same turn go out in
//   one Publish frame (no linger delay). One Publish per partition is in flight at a
//   time and the next batch collects behind it: producer dedup (id + sequence numbers)
//   then makes every retry of a batch land once, and a later batch never overtakes an
//   earlier one that might still be applied.
// - Consumer: one long-poll fetch per partition at a time (its own consumer id and
//   seq, so a retried fetch answers the same deliveries), the consumer's unsettled
//   deliveries kept at most maxInFlight; acks, nacks and extends are batched per
//   partition and turn under a second consumer id (...#s) with its own seq, one settle
//   in flight per partition; an ack's or nack's room under maxInFlight is free once its
//   settle is sent (see sendSettle). Closing the consumer nacks (delay 0) what it fetched but
//   never handed out; closing the connection makes the leader hand the rest back.

import { clientConsumerFetchWaitMsDefault, clientConsumerMaxInFlightDefault, clientPublishBatchBytesMax, clientRetryBackoffMsMax, clientRetryBackoffMsMin,
  queueAckBatchCountMax, queueInflightPerConsumerMaxDefault,
  queueAppendBatchCountMax, queueFetchCountMax } from '../../core/constants.js';
import { DsyncError, ErrorCode, isErrorCode } from '../../protocol/errors.js';
import { Opcode } from '../../protocol/frame.js';
import { schema, wireNumber } from '../../protocol/index.js';
import type { Router } from '../transport/router.js';
import xxhash from 'xxhash-wasm';

const encoder = new TextEncoder();
const bytesOf = (v: string | Uint8Array): Uint8Array => (typeof v === 'string' ? encoder.encode(v) : v);

let hasher: Promise<(b: Uint8Array) => number> | null = null;
/** xxhash32 (seed 0), the hash the server's ring and the key -> partition map use. */
export function keyHash(): Promise<(b: Uint8Array) => number> {
  hasher ??= xxhash().then((x) => (b: Uint8Array) => x.h32Raw(b) >>> 0);
  return hasher;
}

/** The partition a key goes to in a topic of `partitions` partitions. */
export function partitionOfKey(hash: (b: Uint8Array) => number, key: string | Uint8Array, partitions: number): number {
  return hash(bytesOf(key)) % partitions;
}

export interface RetentionOptions {
  /** Drop messages this old (0 = no age limit). */
  readonly maxAgeMs?: number;
  /** Keep at most this many bytes (0 = no limit). */
  readonly maxBytes?: number;
  /** Retention may drop messages some group has not acked (default false). */
  readonly dropUnacked?: boolean;
}

export interface TopicOptions {
  /** Default 4. Fixed for the topic's life (a key never changes partition). */
  readonly partitions?: number;
  /** Replicas per partition (default min(3, voters)). */
  readonly replicas?: number;
  /** Deliveries to one group before a message goes to NAME.dlq (default 5; 0 = never). */
  readonly maxDeliveries?: number;
  /** Default ack deadline of a delivery (default 30000 ms). */
  readonly ackDeadlineMs?: number;
  readonly retention?: RetentionOptions;
}

export interface PartitionInfo {
  readonly index: number;
  readonly groupId: number;
  readonly replicas: readonly string[];
  /** A hint: the leader the answering node knew of ('' when unknown). */
  readonly leaderId: string;
  /** Bumped by every move of the replica set (nodes joined, left or stayed down). */
  readonly epoch: number;
  /** While a move is under way: every node that may still be in the partition's Raft group (absent when none is). */
  readonly hosts?: readonly string[];
  /** Offsets and groups, when the answering node hosts the partition. */
  readonly logStart?: number;
  readonly logEnd?: number;
  readonly groups?: readonly { readonly group: string; readonly cursor: number; readonly lag: number; readonly inFlight: number; readonly pending: number }[];
}

export interface TopicInfo {
  readonly name: string;
  readonly id: number;
  readonly partitions: number;
  readonly replicas: number;
  readonly maxDeliveries: number;
  readonly ackDeadlineMs: number;
  readonly retention: Required<RetentionOptions>;
  /** NAME.dlq ('' for a dead-letter topic). */
  readonly deadLetterTopic: string;
  readonly partitionList: readonly PartitionInfo[];
}

export interface TopicAdmin {
  /** Creates a topic (and NAME.dlq). ALREADY_EXISTS if it exists, BAD_REQUEST for a bad name or setting. */
  create(name: string, opts?: TopicOptions): Promise<TopicInfo>;
  /** Deletes a topic and its dead-letter topic; NOT_FOUND if there is none. */
  delete(name: string): Promise<void>;
  info(name: string): Promise<TopicInfo>;
  list(): Promise<TopicInfo[]>;
  /**
   * Moves `group`'s cursor, and delivers again from there: in every partition to the first
   * message at or after `timestampMs`, or in one partition to `offset`. Resolves with the
   * cursor of each partition moved.
   */
  replay(topic: string, group: string, from: ReplayFrom): Promise<{ partition: number; offset: number }[]>;
  /**
   * Sends the dead letters of `topic` (held in NAME.dlq) back to their source partitions,
   * each visible only to the group that gave up on it, and removes them from NAME.dlq.
   * Ends once NAME.dlq has offered nothing for `idleMs` (default 1000) or `max` were moved.
   * Safe to repeat or to run after a crash: a dead letter already sent back is appended once.
   */
  redrive(topic: string, opts?: RedriveOptions): Promise<{ redriven: number }>;
}

export type ReplayFrom = { readonly timestampMs: number } | { readonly partition: number; readonly offset: number };

export interface RedriveOptions {
  readonly idleMs?: number;
  readonly max?: number;
}

/** The consumer group redrive reads NAME.dlq with. */
export const redriveGroup = 'dsync-redrive';

export interface Fencing {
  /** The lock whose fencing token this is. */
  readonly lock: string;
  readonly token: number;
}

export interface PublishOptions {
  readonly headers?: Readonly<Record<string, string | Uint8Array>>;
  /** Refused (FENCED) when the partition saw a newer token for this lock. */
  readonly fencing?: Fencing;
}

export interface PublishResult {
  readonly partition: number;
  readonly offset: number;
}

export interface Producer {
  readonly topic: string;
  /** Resolves once the message is durable on a majority of its partition's replicas. */
  publish(key: string | Uint8Array, value: string | Uint8Array, opts?: PublishOptions): Promise<PublishResult>;
}

export interface ConsumerOptions {
  /** Deliveries this consumer holds unsettled at once (default 256). */
  readonly maxInFlight?: number;
  /** Ack deadline of this consumer's deliveries (default: the topic's). */
  readonly ackDeadlineMs?: number;
  /** Long-poll wait per fetch (default 2000 ms). */
  readonly waitMs?: number;
  /** Carried by this consumer's acks: refused (FENCED) once a newer token of the lock was seen. */
  readonly fencing?: Fencing;
}

export interface ReceivedMessage {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  readonly headers: Readonly<Record<string, Uint8Array>>;
  /** 1 on the first delivery to this group. */
  readonly deliveries: number;
  readonly timestampMs: number;
  /** Done. Rejects LATE_ACK if the message was handed out again meanwhile, NOT_FOUND if it is not outstanding. */
  ack(): Promise<void>;
  /** Hand it back: redelivered after delayMs (default: backoff by attempt). */
  nack(delayMs?: number): Promise<void>;
  /** Still working: the deadline restarts. */
  extend(): Promise<void>;
}

export interface Consumer extends AsyncIterable<ReceivedMessage> {
  readonly topic: string;
  readonly group: string;
  close(): Promise<void>;
}

interface PartitionMap {
  readonly info: TopicInfo;
  readonly groups: readonly number[];
}

function topicInfo(s: ReturnType<typeof schema.TopicState.decode>): TopicInfo {
  const r = s.retention;
  return {
    name: s.name, id: Number(s.id), partitions: s.partitions, replicas: s.replicas, maxDeliveries: s.maxDeliveries, ackDeadlineMs: s.ackDeadlineMs,
    retention: { maxAgeMs: Number(r?.maxAgeMs ?? 0), maxBytes: Number(r?.maxBytes ?? 0), dropUnacked: r?.dropUnacked === true },
    deadLetterTopic: s.deadLetterTopic,
    partitionList: s.partitionList.map((p) => ({
      index: p.index ?? 0, groupId: p.groupId ?? 0, replicas: p.replicas ?? [], leaderId: p.leaderId ?? '', epoch: Number(p.epoch ?? 0),
      ...((p.hosts ?? []).length > 0 ? { hosts: p.hosts ?? [] } : {}),
      ...(p.hosted === true ? { logStart: Number(p.logStart ?? 0), logEnd: Number(p.logEnd ?? 0),
        groups: (p.groups ?? []).map((g) => ({ group: g.group ?? '', cursor: Number(g.cursor ?? 0), lag: Number(g.lag ?? 0), inFlight: g.inFlight ?? 0, pending: g.pending ?? 0 })) } : {}),
    })),
  };
}

function headersOf(h: Readonly<Record<string, string | Uint8Array>> | undefined): { name: string; value: Uint8Array }[] {
  if (h === undefined) return [];
  return Object.entries(h).map(([name, value]) => ({ name, value: bytesOf(value) }));
}

function randomId(): string {
  return `${Date.now().toString(36)}${Math.floor(Math.random() * 2 ** 32).toString(36)}`;
}

export class QueueClient {
  readonly topics: TopicAdmin;
  private readonly maps = new Map<string, Promise<PartitionMap>>();
  private readonly consumers = new Set<ConsumerImpl>();

  constructor(private readonly router: Router, private readonly name: string) {
    const admin = (opcode: number, payload: Uint8Array): Promise<Uint8Array> => router.request(0, opcode, payload, { idempotent: true });
    this.topics = {
      create: async (name, opts = {}) => {
        const r = opts.retention;
        const reply = await router.request(0, Opcode.TopicCreate, schema.TopicRequest.encode({
          name, partitions: opts.partitions ?? 0, replicas: opts.replicas ?? 0, maxDeliveries: opts.maxDeliveries ?? 0,
          hasMaxDeliveries: opts.maxDeliveries !== undefined, ackDeadlineMs: opts.ackDeadlineMs ?? 0,
          ...(r === undefined ? {} : { retention: { maxAgeMs: r.maxAgeMs ?? 0, maxBytes: r.maxBytes ?? 0, dropUnacked: r.dropUnacked ?? false } }),
        }).finish());
        this.maps.delete(name);
        return topicInfo(schema.TopicState.decode(reply));
      },
      delete: async (name) => {
        await router.request(0, Opcode.TopicDelete, schema.TopicRequest.encode({ name }).finish());
        this.maps.delete(name);
      },
      info: async (name) => topicInfo(schema.TopicState.decode(await admin(Opcode.TopicInfo, schema.TopicRequest.encode({ name }).finish()))),
      list: async () => schema.TopicListReply.decode(await admin(Opcode.TopicList, new Uint8Array(0))).topics.map((t) => topicInfo(t as ReturnType<typeof schema.TopicState.decode>)),
      replay: (topic, group, from) => this.replay(topic, group, from),
      redrive: (topic, opts) => this.redrive(topic, opts ?? {}),
    };
  }

  private async replay(topic: string, group: string, from: ReplayFrom): Promise<{ partition: number; offset: number }[]> {
    if (group === '') throw new DsyncError(ErrorCode.BAD_REQUEST, 'replay names a consumer group');
    const map = await this.partitionMap(topic);
    const byTime = 'timestampMs' in from;
    const at = byTime ? from.timestampMs : from.offset;
    if (!Number.isSafeInteger(at) || at < 0) throw new DsyncError(ErrorCode.BAD_REQUEST, `replay from ${byTime ? 'timestampMs' : 'offset'} must be a non-negative integer`);
    const partitions = byTime ? map.groups.map((_, i) => i) : [from.partition];
    for (const p of partitions) {
      if (!Number.isSafeInteger(p) || p < 0 || p >= map.groups.length) throw new DsyncError(ErrorCode.BAD_REQUEST, `topic ${topic} has partitions 0..${map.groups.length - 1}`);
    }
    // Repeating a replay sets the same cursor again: safe to retry.
    return Promise.all(partitions.map(async (partition) => {
      const reply = await this.router.request(map.groups[partition] as number, Opcode.Replay, schema.ReplayRequest.encode({
        topic, partition, group, byTime, ...(byTime ? { timestampMs: at } : { offset: at }) }).finish(), { idempotent: true });
      return { partition, offset: Number(schema.ReplayReply.decode(reply).offset) };
    }));
  }

  private async redrive(topic: string, opts: RedriveOptions): Promise<{ redriven: number }> {
    const idleMs = opts.idleMs ?? 1_000;
    const max = opts.max ?? Number.MAX_SAFE_INTEGER;
    const map = await this.partitionMap(topic);
    const dlq = map.info.deadLetterTopic;
    if (dlq === '') throw new DsyncError(ErrorCode.BAD_REQUEST, `${topic} is a dead-letter topic; redrive names its source topic`);
    const consumer = this.consumer(dlq, redriveGroup, { waitMs: Math.min(idleMs, 2_000) });
    const it = consumer[Symbol.asyncIterator]();
    let redriven = 0;
    try {
      while (redriven < max) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const idle = new Promise<null>((resolve) => { timer = setTimeout(() => resolve(null), idleMs); });
        const next = await Promise.race([it.next(), idle]);
        clearTimeout(timer);
        if (next === null || next.done === true) break;
        const m = next.value;
        try {
          await this.router.request(map.groups[m.partition] as number, Opcode.Redrive, schema.RedriveRequest.encode({
            topic, partition: m.partition, firstDlqOffset: m.offset,
            messages: [{ key: m.key, value: m.value, headers: Object.entries(m.headers).map(([name, value]) => ({ name, value })) }],
          }).finish(), { idempotent: true });
        } catch (err) {
          // An older repeat of this very redrive was applied (producer dedup): it is back already.
          if (!(err instanceof DsyncError && err.code === ErrorCode.STALE_REQUEST)) {
            await m.nack(0).catch(() => {});
            throw err;
          }
        }
        await m.ack();
        redriven++;
      }
    } finally {
      await consumer.close();
    }
    return { redriven };
  }

  /** The topic's partition map (cached; a NOT_FOUND drops it so a re-created topic is found). */
  partitionMap(topic: string): Promise<PartitionMap> {
    let p = this.maps.get(topic);
    if (p === undefined) {
      p = this.router.request(0, Opcode.PartitionMap, schema.PartitionMapRequest.encode({ topic }).finish(), { idempotent: true }).then((bytes) => {
        const info = topicInfo(schema.TopicState.decode(bytes));
        const state = schema.TopicState.decode(bytes);
        for (const part of state.partitionList) this.router.hintLeader(part.groupId ?? 0, part.leaderAddress ?? '');
        return { info, groups: info.partitionList.map((x) => x.groupId) };
      });
      this.maps.set(topic, p);
      const mine = p;
      p.catch(() => { if (this.maps.get(topic) === mine) this.maps.delete(topic); });
    }
    return p;
  }

  forgetMap(topic: string): void {
    this.maps.delete(topic);
  }

  producer(topic: string): Producer {
    return new ProducerImpl(this, this.router, topic, `${this.name}/${randomId()}`);
  }

  consumer(topic: string, group: string, opts: ConsumerOptions = {}): Consumer {
    const c = new ConsumerImpl(this, this.router, topic, group, `${this.name}/${randomId()}`, opts);
    this.consumers.add(c);
    c.onClosed = () => this.consumers.delete(c);
    return c;
  }

  async close(): Promise<void> {
    await Promise.all([...this.consumers].map((c) => c.close()));
  }
}

function errorFromStatus(code: string, message: string): DsyncError {
  return new DsyncError(isErrorCode(code) ? code : ErrorCode.INTERNAL, message);
}

// ---------------------------------------------------------------- producer

interface Outgoing {
  readonly message: ReturnType<typeof schema.QueueMessage.create>;
  readonly bytes: number;
  readonly fencing: Fencing | undefined;
  resolve(r: PublishResult): void;
  reject(err: unknown): void;
}

class PartitionOutbox {
  readonly queue: Outgoing[] = [];
  inFlight = false;
  scheduled = false;
  nextSeq = 1;
}

class ProducerImpl implements Producer {
  private readonly outboxes = new Map<number, PartitionOutbox>();

  constructor(private readonly queues: QueueClient, private readonly router: Router, readonly topic: string, private readonly id: string) {}

  async publish(key: string | Uint8Array, value: string | Uint8Array, opts: PublishOptions = {}): Promise<PublishResult> {
    const [hash, map] = await Promise.all([keyHash(), this.queues.partitionMap(this.topic)]);
    const partition = partitionOfKey(hash, key, map.info.partitions);
    const headers = headersOf(opts.headers);
    const message = schema.QueueMessage.create({ key: bytesOf(key), value: bytesOf(value), headers });
    let bytes = message.key.length + message.value.length;
    for (const h of headers) bytes += encoder.encode(h.name).length + h.value.length;
    let box = this.outboxes.get(partition);
    if (box === undefined) {
      box = new PartitionOutbox();
      this.outboxes.set(partition, box);
    }
    const outbox = box;
    return new Promise<PublishResult>((resolve, reject) => {
      outbox.queue.push({ message, bytes, fencing: opts.fencing, resolve, reject });
      this.schedule(partition, outbox, map);
    });
  }

  private schedule(partition: number, box: PartitionOutbox, map: PartitionMap): void {
    if (box.inFlight || box.scheduled || box.queue.length === 0) return;
    box.scheduled = true;
    setImmediate(() => {
      box.scheduled = false;
      this.send(partition, box, map);
    });
  }

  private send(partition: number, box: PartitionOutbox, map: PartitionMap): void {
    if (box.inFlight || box.queue.length === 0) return;
    // One batch: same fencing token throughout, within the count and byte bounds (a larger message alone).
    const first = box.queue[0] as Outgoing;
    const batch: Outgoing[] = [];
    let bytes = 0;
    while (box.queue.length > 0 && batch.length < queueAppendBatchCountMax) {
      const next = box.queue[0] as Outgoing;
      if (batch.length > 0 && (bytes + next.bytes > clientPublishBatchBytesMax || next.fencing?.lock !== first.fencing?.lock || next.fencing?.token !== first.fencing?.token)) break;
      batch.push(box.queue.shift() as Outgoing);
      bytes += next.bytes;
    }
    const firstSeq = box.nextSeq;
    box.nextSeq += batch.length;
    box.inFlight = true;
    const payload = schema.PublishRequest.encode({
      topic: this.topic, partition, producer: this.id, firstSeq, messages: batch.map((o) => o.message),
      ...(first.fencing === undefined ? {} : { fencing: { lock: first.fencing.lock, token: first.fencing.token } }),
    }).finish();
    const group = map.groups[partition] as number;
    this.router.request(group, Opcode.Publish, payload, { idempotent: true }).then((bytesReply) => {
      const r = schema.PublishReply.decode(bytesReply);
      batch.forEach((o, i) => o.resolve({ partition, offset: wireNumber(r.baseOffset) + i }));
    }, (err: unknown) => {
      // The topic may have been deleted (and made again): look its map up afresh next time.
      if (err instanceof DsyncError && (err.code === ErrorCode.NOT_FOUND || err.code === ErrorCode.BAD_REQUEST)) this.queues.forgetMap(this.topic);
      for (const o of batch) o.reject(err);
    }).finally(() => {
      box.inFlight = false;
      this.schedule(partition, box, map);
    });
  }
}

// ---------------------------------------------------------------- consumer

type SettleKind = 'ack' | 'nack' | 'extend';

interface SettleWork {
  readonly kind: SettleKind;
  readonly delivery: number;
  readonly attempt: number;
  readonly delayMs: number | undefined;
  /** Gives the delivery's room under maxInFlight back (once; an extend gives none). */
  readonly release: () => void;
  resolve(): void;
  reject(err: unknown): void;
}

class PartitionConsumer {
  fetchSeq = 0;
  settleSeq = 0;
  readonly settles: SettleWork[] = [];
  settling = false;
  settleScheduled = false;
  constructor(readonly index: number, readonly group: number) {}
}

class ConsumerImpl implements Consumer {
  private readonly maxInFlight: number;
  private readonly waitMs: number;
  /** Delivered to this consumer and not yet settled (handed out or buffered). */
  private unsettled = 0;
  private readonly buffer: ReceivedMessage[] = [];
  private readonly waiters: { resolve: (r: IteratorResult<ReceivedMessage>) => void; reject: (err: unknown) => void }[] = [];
  private roomWaiters: (() => void)[] = [];
  private closed = false;
  private started = false;
  private loops: Promise<void>[] = [];
  private parts: PartitionConsumer[] = [];
  private failure: unknown = null;
  onClosed: () => void = () => {};

  constructor(private readonly queues: QueueClient, private readonly router: Router, readonly topic: string, readonly group: string,
    private readonly id: string, private readonly opts: ConsumerOptions) {
    this.maxInFlight = opts.maxInFlight ?? clientConsumerMaxInFlightDefault;
    this.waitMs = opts.waitMs ?? clientConsumerFetchWaitMsDefault;
    // A partition holds at most queueInflightPerConsumerMaxDefault deliveries per consumer: more could never be fetched.
    if (!Number.isSafeInteger(this.maxInFlight) || this.maxInFlight < 1 || this.maxInFlight > queueInflightPerConsumerMaxDefault) {
      throw new DsyncError(ErrorCode.BAD_REQUEST, `maxInFlight must be an integer in [1, ${queueInflightPerConsumerMaxDefault}]`);
    }
    if (!Number.isSafeInteger(this.waitMs) || this.waitMs < 0) throw new DsyncError(ErrorCode.BAD_REQUEST, 'waitMs must be a non-negative integer');
  }

  [Symbol.asyncIterator](): AsyncIterator<ReceivedMessage> {
    this.start();
    return {
      next: () => {
        const m = this.buffer.shift();
        if (m !== undefined) return Promise.resolve({ value: m, done: false });
        if (this.failure !== null) return Promise.reject(this.failure);
        if (this.closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
      },
      return: async () => {
        await this.close();
        return { value: undefined, done: true };
      },
    };
  }

  private start(): void {
    if (this.started) return;
    this.started = true;
    this.loops.push(this.queues.partitionMap(this.topic).then((map) => {
      this.parts = map.groups.map((g, i) => new PartitionConsumer(i, g));
      this.loops.push(...this.parts.map((p) => this.fetchLoop(p)));
    }, (err: unknown) => this.fail(err)));
  }

  private fail(err: unknown): void {
    if (this.closed) return;
    this.failure = err;
    this.closed = true;
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  private settled(): void {
    this.unsettled--;
    this.wakeRoom();
  }

  private wakeRoom(): void {
    const ws = this.roomWaiters;
    this.roomWaiters = [];
    for (const w of ws) w();
  }

  private async fetchLoop(p: PartitionConsumer): Promise<void> {
    let backoffMs = 50;
    // Each partition's long poll reserves at most its share of maxInFlight, so one partition never starves the others.
    const share = Math.max(1, Math.ceil(this.maxInFlight / this.parts.length));
    while (!this.closed) {
      const max = Math.min(queueFetchCountMax, share, this.maxInFlight - this.unsettled);
      if (max <= 0) {
        await new Promise<void>((r) => this.roomWaiters.push(r));
        continue;
      }
      this.unsettled += max; // reserved until the answer says how many came
      let reply: ReturnType<typeof schema.FetchReply.decode>;
      try {
        p.fetchSeq++;
        const payload = schema.FetchRequest.encode({ topic: this.topic, partition: p.index, group: this.group, consumer: this.id, seq: p.fetchSeq,
          max, waitMs: this.waitMs, ackDeadlineMs: this.opts.ackDeadlineMs ?? 0, maxInFlight: this.maxInFlight }).finish();
        reply = schema.FetchReply.decode(await this.router.request(p.group, Opcode.Fetch, payload,
          { followLeader: true, timeoutMs: this.waitMs + this.router.requestTimeoutMs }));
        backoffMs = clientRetryBackoffMsMin;
      } catch (err) {
        this.unsettled -= max;
        if (this.closed) return;
        if (err instanceof DsyncError && (err.code === ErrorCode.NOT_FOUND || err.code === ErrorCode.BAD_REQUEST)) {
          this.fail(err);
          return;
        }
        // Overload, no leader for longer than the request deadline: keep polling.
        await new Promise((r) => setTimeout(r, backoffMs));
        backoffMs = Math.min(backoffMs * 2, clientRetryBackoffMsMax);
        continue;
      }
      this.unsettled -= max - reply.messages.length;
      for (const d of reply.messages) this.deliver(p, d);
      if (reply.messages.length < max) this.wakeRoom();
    }
  }

  private deliver(p: PartitionConsumer, d: ReturnType<typeof schema.FetchReply.decode>['messages'][number]): void {
    const delivery = wireNumber(d.delivery);
    const attempt = d.attempt ?? 0;
    const m = d.message ?? {};
    const headers: Record<string, Uint8Array> = {};
    for (const h of m.headers ?? []) headers[h.name ?? ''] = h.value ?? new Uint8Array(0);
    let settledOnce = false;
    const release = (): void => {
      if (!settledOnce) {
        settledOnce = true;
        this.settled();
      }
    };
    const settle = (kind: SettleKind, delayMs?: number): Promise<void> => {
      const work = new Promise<void>((resolve, reject) => {
        p.settles.push({ kind, delivery, attempt, delayMs, release: kind === 'extend' ? () => {} : release, resolve, reject });
        this.scheduleSettle(p);
      });
      if (kind === 'extend') return work;
      return work.finally(release);
    };
    const msg: ReceivedMessage = {
      topic: this.topic, partition: p.index, offset: wireNumber(d.offset), key: m.key ?? new Uint8Array(0), value: m.value ?? new Uint8Array(0),
      headers, deliveries: attempt, timestampMs: d.timestampMs ?? 0,
      ack: () => settle('ack'), nack: (delayMs?: number) => settle('nack', delayMs), extend: () => settle('extend'),
    };
    const w = this.waiters.shift();
    if (w !== undefined) w.resolve({ value: msg, done: false });
    else this.buffer.push(msg);
  }

  private scheduleSettle(p: PartitionConsumer): void {
    if (p.settling || p.settleScheduled || p.settles.length === 0) return;
    p.settleScheduled = true;
    setImmediate(() => {
      p.settleScheduled = false;
      this.sendSettle(p);
    });
  }

  private sendSettle(p: PartitionConsumer): void {
    if (p.settling || p.settles.length === 0) return;
    const kind = (p.settles[0] as SettleWork).kind;
    const batch: SettleWork[] = [];
    while (p.settles.length > 0 && batch.length < queueAckBatchCountMax && (p.settles[0] as SettleWork).kind === kind) batch.push(p.settles.shift() as SettleWork);
    const firstSeq = p.settleSeq + 1;
    p.settleSeq += kind === 'ack' ? 1 : batch.length;
    p.settling = true;
    const opcode = kind === 'ack' ? Opcode.Ack : kind === 'nack' ? Opcode.Nack : Opcode.Extend;
    const payload = schema.SettleRequest.encode({
      topic: this.topic, partition: p.index, group: this.group, consumer: `${this.id}#s`, firstSeq,
      items: batch.map((w) => ({ delivery: w.delivery, attempt: w.attempt, delayMs: w.delayMs ?? 0, hasDelay: w.delayMs !== undefined })),
      ...(this.opts.fencing === undefined ? {} : { fencing: { lock: this.opts.fencing.lock, token: this.opts.fencing.token } }),
    }).finish();
    const answered = this.router.request(p.group, opcode, payload, { idempotent: true });
    // The room these deliveries held is free once their settle is sent rather than once it
    // is answered: the fetch that lets the partition's loop send is issued after it, to the
    // same leader, which then applies the two in order (most often in one entry). A consumer
    // that acks as it goes pays one commit per window of maxInFlight instead of two. (The
    // partition bounds each consumer's deliveries itself: inflightPerConsumerMax.)
    for (const w of batch) w.release();
    answered.then((bytes) => {
      const statuses = schema.SettleReply.decode(bytes).statuses;
      batch.forEach((w, i) => {
        const s = statuses[i];
        const code = s?.code ?? '';
        // STALE_REQUEST: one settle is in flight per partition, so it means an earlier attempt of this one was applied.
        if (code === '' || code === ErrorCode.STALE_REQUEST) w.resolve();
        else w.reject(errorFromStatus(code, s?.message ?? code));
      });
    }, (err: unknown) => {
      for (const w of batch) w.reject(err);
    }).finally(() => {
      p.settling = false;
      this.scheduleSettle(p);
    });
  }

  async close(): Promise<void> {
    if (this.closed && this.failure === null && this.loops.length === 0) return;
    this.closed = true;
    for (const w of this.waiters.splice(0)) w.resolve({ value: undefined, done: true });
    for (const w of this.roomWaiters.splice(0)) w();
    // Hand back what was fetched but never handed out.
    const unread = this.buffer.splice(0);
    await Promise.allSettled(unread.map((m) => m.nack(0)));
    this.loops = [];
    this.onClosed();
  }
}
