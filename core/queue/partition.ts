// One queue partition's state machine: the committed entries of the partition's Raft
// group are applied to it, on every replica, in log order. Pure and synchronous;
// every replica applying the same entries reaches the same state and answers.
//
// Decisions (commands.ts documents each command's fields):
// - Bodies are not kept here. Messages go to the MessageStore injected at
//   construction (store.ts); this machine keeps, per partition, the offsets
//   [logStart, logEnd), the last timestamp, producer dedup state and the redriven
//   offsets; per group, a cursor, the next new offset and the unacked deliveries.
//   Its memory is bounded by the constants (groups, consumers, in-flight, unacked
//   window, producers), not by the backlog or the body sizes.
// - Time: every command carries the proposing leader's nowMs. Message timestamps are
//   max(nowMs, previous timestamp), so they never go back within a partition (a
//   new leader's clock may be behind) and replay-by-time can binary-search them.
// - Offsets: 0, 1, 2, ... in append order; a batch's messages are contiguous.
// - Producer dedup: see Append in commands.ts. Producers are kept least recently
//   appending first and the oldest is forgotten beyond queueProducersPerPartitionMax:
//   a retry from a forgotten producer is appended again (at-least-once).
// - A group is created at the first offset retained (logStart) by its first fetch, or
//   where a replay puts it. Per group:
//     cursor  = committed offset: every offset below it is done (acked, dead-lettered,
//               skipped as another group's redrive, or replayed/retained past);
//     next    = the next offset never handed to this group;
//     unacked = the delivered-but-not-done offsets in [cursor, next), each with ONE
//               delivery record (id fixed per group and offset, attempt 1, 2, ...),
//               either in flight (a consumer, a deadline) or pending redelivery (a
//               ready time); done = the done offsets in (cursor, next).
//   New deliveries stop while next - cursor reaches unackedPerGroupMax (JetStream's
//   max_ack_pending): a stuck message holds its group's window, never its memory.
// - fetch hands out redeliveries first, by (readyAtMs, offset) among those ready at
//   nowMs, then new offsets in order; at most `max`, and at most the consumer's
//   in-flight bound minus what it holds. Deadline = nowMs + ackDeadlineMs.
// - ack/nack/extend name (delivery, attempt). The attempt is current until the
//   message is handed out again. ack: current -> done (even if its deadline passed and
//   it awaits redelivery: the work was done); older -> LATE_ACK; unknown delivery,
//   another group's, or already done -> NOT_FOUND; an attempt never issued ->
//   BAD_REQUEST. nack: current -> redeliver at nowMs + delayMs (default: backoff
//   queueNackBackoffMsMin x 2^(attempt-1), capped at queueNackBackoffMsMax). extend:
//   in flight -> deadline = nowMs + its ack deadline; an attempt whose deadline
//   already expired -> LATE_ACK (it is waiting to go to another consumer). Any
//   consumer of the group may settle a delivery (a client that reconnects has a new id).
// - A failed attempt (deadline expired, nacked, consumer gone) whose attempt number
//   reached the topic's maxDeliveries (0 = never) is dead-lettered instead: the offset
//   is done for that group, a 'deadLettered' event says so, and the dead letter joins
//   the partition's outbox (replicated state, in the snapshot): one batch per command,
//   sequence numbers 1, 2, ... The leader appends the head batch to the dead-letter
//   partition (producer dedup on its seq, so a new leader's resend lands once) and
//   proposes deadLettersForwarded; only then does it leave the outbox. The outbox pins
//   retention (even with dropUnacked: a dead letter is not a group's to drop) and is
//   bounded (deadLetterOutboxMax letters): while it is full, a message past maxDeliveries
//   is redelivered instead, so nothing is dropped while the dead-letter topic is away. expireDeadlines fails what is due in (deadline, delivery id) order;
//   consumerGone fails the consumer's in-flight deliveries in offset order, in every
//   group (groups in creation order), ready at once, and forgets the consumer.
// - Redrive: an append whose messages name onlyGroup; every other group skips those
//   offsets (deadletter.ts builds such appends from dead letters).
// - Retention (on every append, and on enforceRetention): drop from logStart while
//   the retained bytes exceed maxBytes or the oldest message is maxAgeMs old, but
//   never past the lowest group cursor unless the topic sets dropUnacked (then the
//   groups' cursors move up and their deliveries of dropped offsets are forgotten).
//   With no groups, nothing holds messages back.
// - Consumer dedup: see FromConsumer in commands.ts. A consumer's record (its
//   in-flight set and dedup entry) lives in its group; beyond queueConsumersPerGroupMax
//   the least recently active consumer without in-flight deliveries is forgotten, and
//   if every one holds deliveries a new consumer is refused (TOO_MANY_REQUESTS).
// - Deadlines and ready times are in the proposing leaders' clocks (absolute ms). A
//   new leader whose clock is ahead expires deliveries early (a redelivery, never a
//   loss); the wiring stamps entries with a clock shared closely enough (wall clock).

import { assert, assertNever } from '../assert.js';
import {
  queueAckBatchCountMax,
  queueAckDeadlineMsDefault,
  queueAckDeadlineMsMax,
  queueAckDeadlineMsMin,
  queueAppendBatchCountMax,
  queueConsumersPerGroupMax,
  queueDeadLetterOutboxMax,
  queueEntryBatchBytesMax,
  queueFetchBytesMax,
  queueFetchCountMax,
  queueGroupsPerPartitionMax,
  queueHeadersPerMessageMax,
  queueInflightPerConsumerMax,
  queueInflightPerConsumerMaxDefault,
  queueMaxDeliveriesDefault,
  queueMaxDeliveriesMax,
  queueMessageBytesMax,
  queueNackBackoffMsMax,
  queueNackBackoffMsMin,
  queueNackDelayMsMax,
  queueNameBytesMax,
  queueProducerBatchesRemembered,
  queueProducersPerPartitionMax,
  queueRedrivenRetainedMax,
  queueUnackedPerGroupMax,
  queueUnackedPerGroupMaxDefault,
} from '../constants.js';
import { deliveryId, logIndex, offset } from '../ids.js';
import { utf8Bytes } from '../locks/table.js';
import type { ConsumerGroup, ConsumerId, DeliveryId, LogIndex, Offset, ProducerId } from '../ids.js';
import type {
  AckStatus,
  Append,
  DeadLetter,
  DeadLetterBatch,
  Delivery,
  FailureReason,
  Fetch,
  Message,
  QueueCommand,
  QueueError,
  QueueErrorCode,
  QueueEvent,
  QueueOutcome,
  QueueResult,
  StoredMessage,
} from './commands.js';
import { PairHeap } from './heap.js';
import { messageBytes } from './store.js';
import type { MessageStore } from './store.js';

export interface RetentionConfig {
  /** Drop messages this old (0 = no age limit). */
  readonly maxAgeMs: number;
  /** Keep the retained bytes at or below this (0 = no size limit). */
  readonly maxBytes: number;
  /** Retention may drop messages some group has not acked. */
  readonly dropUnacked: boolean;
}

/** The topic's settings a partition applies (replicated in group 0 with the topic). */
export interface PartitionConfig {
  /** Deliveries to one group before dead-lettering; 0 = never. */
  readonly maxDeliveries: number;
  readonly ackDeadlineMs: number;
  readonly inflightPerConsumerMax: number;
  readonly unackedPerGroupMax: number;
  readonly retention: RetentionConfig;
}

export const defaultPartitionConfig: PartitionConfig = {
  maxDeliveries: queueMaxDeliveriesDefault,
  ackDeadlineMs: queueAckDeadlineMsDefault,
  inflightPerConsumerMax: queueInflightPerConsumerMaxDefault,
  unackedPerGroupMax: queueUnackedPerGroupMaxDefault,
  retention: { maxAgeMs: 0, maxBytes: 0, dropUnacked: false },
};

const isInt = (n: unknown, lo: number, hi: number): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= lo && n <= hi;

/** Why a topic config is unacceptable, or null (group 0 answers BAD_REQUEST with it). */
export function checkPartitionConfig(c: PartitionConfig): string | null {
  if (!isInt(c.maxDeliveries, 0, queueMaxDeliveriesMax)) return `maxDeliveries must be an integer in [0, ${queueMaxDeliveriesMax}]`;
  if (!isInt(c.ackDeadlineMs, queueAckDeadlineMsMin, queueAckDeadlineMsMax)) {
    return `ackDeadlineMs must be an integer in [${queueAckDeadlineMsMin}, ${queueAckDeadlineMsMax}]`;
  }
  if (!isInt(c.inflightPerConsumerMax, 1, queueInflightPerConsumerMax)) return `inflightPerConsumerMax must be in [1, ${queueInflightPerConsumerMax}]`;
  if (!isInt(c.unackedPerGroupMax, c.inflightPerConsumerMax, queueUnackedPerGroupMax)) {
    return `unackedPerGroupMax must be in [inflightPerConsumerMax, ${queueUnackedPerGroupMax}]`;
  }
  const r = c.retention;
  if (!isInt(r.maxAgeMs, 0, Number.MAX_SAFE_INTEGER) || !isInt(r.maxBytes, 0, Number.MAX_SAFE_INTEGER)) {
    return 'retention maxAgeMs and maxBytes must be non-negative integers (0 = no limit)';
  }
  if (typeof r.dropUnacked !== 'boolean') return 'retention dropUnacked must be a boolean';
  return null;
}

/** Backoff of a nack without a delay. */
export function nackBackoffMs(attempt: number): number {
  return Math.min(queueNackBackoffMsMin * 2 ** Math.min(attempt - 1, 30), queueNackBackoffMsMax);
}

interface DeliveryState {
  readonly id: DeliveryId;
  readonly group: GroupState;
  readonly offset: Offset;
  attempt: number;
  inFlight: boolean;
  /** Holder while in flight. */
  consumer: ConsumerState | null;
  deadlineMs: number;
  /** The deadline duration of the current attempt (extend renews by it). */
  ackDeadlineMs: number;
  /** While pending: when it may be handed out again. */
  readyAtMs: number;
}

interface ConsumerState {
  readonly id: ConsumerId;
  readonly inFlight: Set<DeliveryId>;
  lastSeq: number;
  lastResult: QueueResult;
}

interface GroupState {
  readonly name: ConsumerGroup;
  cursor: number;
  next: number;
  /** offset -> its delivery (in flight or pending). */
  readonly unacked: Map<number, DeliveryState>;
  /** Done offsets above the cursor. */
  readonly done: Set<number>;
  /** Least recently active first. */
  readonly consumers: Map<ConsumerId, ConsumerState>;
  /** (readyAtMs, offset) of pending deliveries; stale entries dropped on pop. */
  readonly redeliveries: PairHeap;
}

interface ProducerBatch {
  readonly firstSeq: number;
  readonly count: number;
  readonly baseOffset: Offset;
  readonly timestampMs: number;
}

interface ProducerState {
  readonly id: ProducerId;
  lastSeq: number;
  /** Oldest first, at most queueProducerBatchesRemembered. */
  readonly batches: ProducerBatch[];
  /** Neighbours in the partition's recency list (ProducerRecency). */
  older: ProducerState | null;
  newer: ProducerState | null;
}

/**
 * Producers by id, least recently appending first. A Map alone would keep the order by a
 * delete and a set per append (the Map's table churns, and every set stores a new key
 * string); here the order is a list through the producers themselves: an append moves its
 * producer to the newest end in O(1), the Map changes only when a producer comes or goes.
 */
class ProducerRecency {
  private readonly byId = new Map<ProducerId, ProducerState>();
  private oldest: ProducerState | null = null;
  private newest: ProducerState | null = null;

  get size(): number {
    return this.byId.size;
  }

  get(id: ProducerId): ProducerState | undefined {
    return this.byId.get(id);
  }

  /** A new producer, newest. */
  add(id: ProducerId, lastSeq: number, batches: ProducerBatch[]): ProducerState {
    assert(!this.byId.has(id), 'a producer is added once');
    const p: ProducerState = { id, lastSeq, batches, older: this.newest, newer: null };
    if (this.newest !== null) this.newest.newer = p;
    else this.oldest = p;
    this.newest = p;
    this.byId.set(id, p);
    return p;
  }

  /** `p` just appended: it becomes the newest. */
  touch(p: ProducerState): void {
    if (p === this.newest) return;
    this.unlink(p);
    p.older = this.newest;
    p.newer = null;
    (this.newest as ProducerState).newer = p;
    this.newest = p;
  }

  /** Forgets the least recently appending producer. */
  dropOldest(): void {
    const p = this.oldest;
    assert(p !== null, 'a producer to drop');
    this.unlink(p);
    this.byId.delete(p.id);
  }

  /** Least recently appending first. */
  *inOrder(): IterableIterator<ProducerState> {
    // Bounded by the producers: each step moves to a newer one.
    for (let p = this.oldest; p !== null; p = p.newer) yield p;
  }

  private unlink(p: ProducerState): void {
    if (p.older !== null) p.older.newer = p.newer;
    else this.oldest = p.newer;
    if (p.newer !== null) p.newer.older = p.older;
    else this.newest = p.older;
    p.older = null;
    p.newer = null;
  }
}

// --- snapshot shapes (plain JSON data but for the cached results' numbers) ---

export interface DeliveryInfo {
  readonly delivery: DeliveryId;
  readonly group: ConsumerGroup;
  readonly offset: Offset;
  readonly attempt: number;
  readonly inFlight: boolean;
  readonly consumer: ConsumerId | null;
  readonly deadlineMs: number;
  readonly ackDeadlineMs: number;
  readonly readyAtMs: number;
}
export interface ConsumerSnapshot {
  readonly consumer: ConsumerId;
  readonly inFlight: readonly DeliveryId[];
  readonly lastSeq: number;
  readonly lastResult: QueueResult;
}
export interface GroupSnapshot {
  readonly group: ConsumerGroup;
  readonly cursor: Offset;
  readonly next: Offset;
  readonly done: readonly Offset[];
  readonly consumers: readonly ConsumerSnapshot[];
  readonly deliveries: readonly DeliveryInfo[];
}
export interface QueuePartitionSnapshot {
  readonly version: 1;
  readonly lastAppliedIndex: LogIndex;
  readonly config: PartitionConfig;
  readonly logStart: Offset;
  readonly logEnd: Offset;
  readonly lastTimestampMs: number;
  readonly nextDeliveryId: DeliveryId;
  readonly producers: readonly { readonly producer: ProducerId; readonly lastSeq: number; readonly batches: readonly ProducerBatch[] }[];
  readonly onlyFor: readonly { readonly offset: Offset; readonly group: ConsumerGroup }[];
  readonly groups: readonly GroupSnapshot[];
  /** Absent in snapshots taken before the outbox existed (then empty, next seq 1). */
  readonly outbox?: readonly DeadLetterBatch[];
  readonly nextDeadLetterSeq?: number;
}

export interface GroupInfo {
  readonly group: ConsumerGroup;
  readonly cursor: Offset;
  readonly next: Offset;
  /** Messages this group has not finished: logEnd - cursor. */
  readonly lag: number;
  readonly inFlight: number;
  readonly pending: number;
  readonly consumers: number;
}

const err = (code: QueueErrorCode, message: string): QueueError => ({ kind: 'error', code, message });
const nameError = (what: string, s: unknown): string | null =>
  typeof s !== 'string' || s.length === 0 || utf8Bytes(s) > queueNameBytesMax
    ? `${what} must be a non-empty string of at most ${queueNameBytesMax} bytes`
    : null;

/** Set while fromSnapshot constructs: the store may hold messages then. */
let restoring = false;

/** What a command did besides its result; the lists are made by the first push (most commands make none). */
interface Effects {
  readonly nowMs: number;
  events: QueueEvent[] | null;
  /** Dead letters made by this command (they become outbox batches after it). */
  letters: DeadLetter[] | null;
}

/** The events of every outcome without any (read-only; frozen, so nothing can add to it). */
const noEvents: readonly QueueEvent[] = Object.freeze([]);

export type PartitionCanary = 'forget-failed-attempts' | 'cursor-before-ack';

export interface QueuePartitionOptions {
  /**
   * A deliberate bug for a checker's canary (never set otherwise):
   * - 'forget-failed-attempts': a failed attempt (deadline passed, nacked, consumer gone)
   *   finishes the message instead of redelivering it;
   * - 'cursor-before-ack': handing a message out finishes it for its group (the cursor
   *   moves at delivery, before any ack), so a delivery whose consumer never acks it (the
   *   answer was lost, the consumer died) is never redelivered.
   */
  readonly canary?: PartitionCanary;
  /** Dead letters the outbox holds at most (default queueDeadLetterOutboxMax; tests use small ones). */
  readonly deadLetterOutboxMax?: number;
}

export class QueuePartition {
  private readonly deliveries = new Map<DeliveryId, DeliveryState>();
  /** (deadlineMs, delivery id) of in-flight deliveries; stale entries dropped on pop. */
  private readonly deadlines = new PairHeap();
  /** Creation order. */
  private readonly groups = new Map<ConsumerGroup, GroupState>();
  private readonly producers = new ProducerRecency();
  /** Redriven offsets -> the one group that sees them (ascending offsets). */
  private readonly onlyFor = new Map<number, ConsumerGroup>();
  private lastAppliedIndex: LogIndex = logIndex(0);
  private logStart = 0;
  private logEnd = 0;
  private lastTimestampMs = 0;
  private nextDeliveryId = 1;
  /** Dead letters not yet acknowledged by the dead-letter partition, oldest batch first. */
  private readonly outbox: DeadLetterBatch[] = [];
  private outboxLetters = 0;
  private nextDeadLetterSeq = 1;
  private readonly outboxMax: number;

  constructor(
    readonly config: PartitionConfig,
    private readonly store: MessageStore,
    private readonly options: QueuePartitionOptions = {},
  ) {
    const bad = checkPartitionConfig(config);
    assert(bad === null, `partition config: ${bad ?? ''}`);
    this.outboxMax = options.deadLetterOutboxMax ?? queueDeadLetterOutboxMax;
    assert(Number.isSafeInteger(this.outboxMax) && this.outboxMax >= 1, 'the dead-letter outbox holds at least one letter');
    this.logStart = store.firstOffset;
    this.logEnd = store.nextOffset;
    assert(restoring || this.logStart === this.logEnd, 'a new partition starts from an empty store (restore takes a snapshot)');
  }

  // ------------------------------------------------------------------ apply

  apply(cmd: QueueCommand, index: LogIndex): QueueOutcome {
    assert(Number.isSafeInteger(index) && index > this.lastAppliedIndex, 'apply index must increase');
    assert(typeof cmd === 'object' && cmd !== null && Number.isFinite(cmd.nowMs), 'nowMs is stamped by the proposing leader');
    this.lastAppliedIndex = index;
    const fx: Effects = { nowMs: cmd.nowMs, events: null, letters: null };
    let result: QueueResult;
    let duplicate = false;
    switch (cmd.kind) {
      case 'append': {
        const r = this.append(cmd, fx);
        result = r.result;
        duplicate = r.duplicate;
        break;
      }
      case 'fetch':
      case 'ack':
      case 'nack':
      case 'extend': {
        const r = this.fromConsumer(cmd, fx);
        result = r.result;
        duplicate = r.duplicate;
        break;
      }
      case 'expireDeadlines':
        result = { kind: 'expired', count: this.expireDeadlines(fx) };
        break;
      case 'consumerGone':
        result = this.consumerGone(cmd.consumer, fx);
        break;
      case 'replay':
        result = this.replay(cmd.group, cmd.from);
        break;
      case 'deleteGroup': {
        const g = this.groups.get(cmd.group);
        if (g === undefined) result = err('NOT_FOUND', `group ${String(cmd.group)} does not exist on this partition`);
        else {
          this.resetGroup(g, g.cursor);
          this.groups.delete(g.name);
          result = { kind: 'ok' };
        }
        break;
      }
      case 'enforceRetention': {
        const dropped = this.retain(fx.nowMs);
        result = { kind: 'retained', logStart: offset(this.logStart), dropped };
        break;
      }
      case 'deadLettersForwarded':
        result = this.forwarded(cmd.firstSeq);
        break;
      default:
        return assertNever(cmd, 'queue command');
    }
    if (fx.letters !== null) this.batchLetters(fx.letters);
    this.check();
    return { result, duplicate, events: fx.events ?? noEvents };
  }

  // ------------------------------------------------------------------ append

  private append(cmd: Append, fx: Effects): { result: QueueResult; duplicate: boolean } {
    const bad = this.checkMessages(cmd.messages);
    if (bad !== null) return { result: bad, duplicate: false };
    const n = cmd.messages.length;
    if ((cmd.producer === undefined) !== (cmd.firstSeq === undefined)) {
      return { result: err('BAD_REQUEST', 'producer and firstSeq come together'), duplicate: false };
    }
    let p: ProducerState | undefined;
    if (cmd.producer !== undefined) {
      const badName = nameError('producer', cmd.producer);
      if (badName !== null) return { result: err('BAD_REQUEST', badName), duplicate: false };
      if (!isInt(cmd.firstSeq, 1, Number.MAX_SAFE_INTEGER - n)) return { result: err('BAD_REQUEST', 'firstSeq must be a positive integer'), duplicate: false };
      p = this.producers.get(cmd.producer);
      if (p !== undefined) {
        let seen: ProducerBatch | undefined;
        for (const b of p.batches) {
          if (b.firstSeq !== cmd.firstSeq) continue;
          seen = b;
          break;
        }
        if (seen !== undefined) {
          if (seen.count !== n) {
            return { result: err('BAD_REQUEST', `producer ${cmd.producer} sent seq ${cmd.firstSeq} before with ${seen.count} messages, now ${n}`), duplicate: false };
          }
          return { result: { kind: 'appended', baseOffset: seen.baseOffset, count: n, timestampMs: seen.timestampMs }, duplicate: true };
        }
        if ((cmd.firstSeq as number) <= p.lastSeq) {
          return { result: err('STALE_REQUEST', `seq ${cmd.firstSeq} of producer ${cmd.producer} is at or below its last seq ${p.lastSeq} and not a remembered batch`), duplicate: false };
        }
      }
    }
    let redriven = 0;
    for (const m of cmd.messages) if (m.onlyGroup !== undefined) redriven++;
    if (redriven > 0 && this.onlyFor.size + redriven > queueRedrivenRetainedMax) {
      return { result: err('TOO_MANY_REQUESTS', `the partition already retains ${this.onlyFor.size} redriven messages (at most ${queueRedrivenRetainedMax})`), duplicate: false };
    }

    const ts = Math.max(fx.nowMs, this.lastTimestampMs);
    const base = offset(this.logEnd);
    for (const m of cmd.messages) {
      this.store.append(offset(this.logEnd), ts, m);
      if (m.onlyGroup !== undefined) this.onlyFor.set(this.logEnd, m.onlyGroup);
      this.logEnd++;
    }
    this.lastTimestampMs = ts;
    if (cmd.producer !== undefined) {
      if (p === undefined) p = this.producers.add(cmd.producer, 0, []);
      else this.producers.touch(p);
      p.batches.push({ firstSeq: cmd.firstSeq as number, count: n, baseOffset: base, timestampMs: ts });
      if (p.batches.length > queueProducerBatchesRemembered) p.batches.shift();
      p.lastSeq = (cmd.firstSeq as number) + n - 1;
      if (this.producers.size > queueProducersPerPartitionMax) this.producers.dropOldest();
    }
    this.retain(fx.nowMs);
    return { result: { kind: 'appended', baseOffset: base, count: n, timestampMs: ts }, duplicate: false };
  }

  private checkMessages(messages: readonly Message[]): QueueError | null {
    if (!Array.isArray(messages) || messages.length === 0 || messages.length > queueAppendBatchCountMax) {
      return err('BAD_REQUEST', `an append carries 1 to ${queueAppendBatchCountMax} messages`);
    }
    for (const [i, m] of messages.entries()) {
      if (!(m.key instanceof Uint8Array) || !(m.value instanceof Uint8Array) || !Array.isArray(m.headers)) {
        return err('BAD_REQUEST', `message ${i}: key and value are bytes, headers a list`);
      }
      if (m.headers.length > queueHeadersPerMessageMax) return err('BAD_REQUEST', `message ${i}: more than ${queueHeadersPerMessageMax} headers`);
      for (const h of m.headers) {
        const bad = nameError('a header name', h.name);
        if (bad !== null) return err('BAD_REQUEST', `message ${i}: ${bad}`);
        if (!(h.value instanceof Uint8Array)) return err('BAD_REQUEST', `message ${i}: header ${h.name} value is not bytes`);
      }
      if (m.onlyGroup !== undefined) {
        const bad = nameError('onlyGroup', m.onlyGroup);
        if (bad !== null) return err('BAD_REQUEST', `message ${i}: ${bad}`);
      }
      const size = messageBytes(m);
      if (size > queueMessageBytesMax) return err('MESSAGE_TOO_LARGE', `message ${i} has ${size} bytes; the limit is ${queueMessageBytesMax}`);
    }
    return null;
  }

  // ------------------------------------------------------------------ consumer requests

  private fromConsumer(cmd: Extract<QueueCommand, { kind: 'fetch' | 'ack' | 'nack' | 'extend' }>, fx: Effects): { result: QueueResult; duplicate: boolean } {
    const bad = nameError('group', cmd.group) ?? nameError('consumer', cmd.consumer);
    if (bad !== null) return { result: err('BAD_REQUEST', bad), duplicate: false };
    if (!isInt(cmd.seq, 1, Number.MAX_SAFE_INTEGER)) return { result: err('BAD_REQUEST', 'seq must be a positive integer'), duplicate: false };
    const badArgs = this.checkArgs(cmd);
    if (badArgs !== null) return { result: badArgs, duplicate: false };
    let g = this.groups.get(cmd.group);
    const known = g?.consumers.get(cmd.consumer);
    if (known !== undefined && cmd.seq === known.lastSeq) return { result: known.lastResult, duplicate: true };
    if (known !== undefined && cmd.seq < known.lastSeq) {
      return { result: err('STALE_REQUEST', `seq ${cmd.seq} is older than consumer ${cmd.consumer}'s last seq ${known.lastSeq}`), duplicate: false };
    }
    if (g === undefined) {
      // Nothing to settle in a group that does not exist: answer, change nothing.
      if (cmd.kind === 'ack') return { result: { kind: 'acked', statuses: cmd.items.map((): AckStatus => 'NOT_FOUND') }, duplicate: false };
      if (cmd.kind !== 'fetch') return { result: err('NOT_FOUND', `group ${cmd.group} has no deliveries on this partition`), duplicate: false };
      if (this.groups.size >= queueGroupsPerPartitionMax) {
        return { result: err('TOO_MANY_REQUESTS', `the partition already has ${queueGroupsPerPartitionMax} groups`), duplicate: false };
      }
      g = this.createGroup(cmd.group, this.logStart);
    }
    const c = this.consumerOf(g, cmd.consumer);
    if (c === null) {
      return { result: err('TOO_MANY_REQUESTS', `group ${g.name} has ${queueConsumersPerGroupMax} consumers, each holding deliveries`), duplicate: false };
    }
    let result: QueueResult;
    switch (cmd.kind) {
      case 'fetch':
        result = this.fetch(g, c, cmd, fx);
        break;
      case 'ack':
        result = this.ack(g, cmd.items);
        break;
      case 'nack':
        result = this.nack(g, cmd.delivery, cmd.attempt, cmd.delayMs, fx);
        break;
      case 'extend':
        result = this.extend(g, cmd.delivery, cmd.attempt, fx);
        break;
      default:
        return assertNever(cmd, 'consumer command');
    }
    c.lastSeq = cmd.seq;
    c.lastResult = result;
    return { result, duplicate: false };
  }

  /** The request's own arguments (no state): checked before dedup and before anything is created. */
  private checkArgs(cmd: Extract<QueueCommand, { kind: 'fetch' | 'ack' | 'nack' | 'extend' }>): QueueError | null {
    switch (cmd.kind) {
      case 'fetch':
        if (!isInt(cmd.max, 1, queueFetchCountMax)) return err('BAD_REQUEST', `max must be an integer in [1, ${queueFetchCountMax}]`);
        if (cmd.ackDeadlineMs !== undefined && !isInt(cmd.ackDeadlineMs, queueAckDeadlineMsMin, queueAckDeadlineMsMax)) {
          return err('BAD_REQUEST', `ackDeadlineMs must be an integer in [${queueAckDeadlineMsMin}, ${queueAckDeadlineMsMax}]`);
        }
        return null;
      case 'ack':
        if (!Array.isArray(cmd.items) || cmd.items.length === 0 || cmd.items.length > queueAckBatchCountMax) {
          return err('BAD_REQUEST', `an ack carries 1 to ${queueAckBatchCountMax} items`);
        }
        return null;
      case 'nack':
        if (cmd.delayMs !== undefined && !isInt(cmd.delayMs, 0, queueNackDelayMsMax)) return err('BAD_REQUEST', `delayMs must be an integer in [0, ${queueNackDelayMsMax}]`);
        return null;
      case 'extend':
        return null;
      default:
        return assertNever(cmd, 'consumer command');
    }
  }

  private createGroup(name: ConsumerGroup, at: number): GroupState {
    assert(!this.groups.has(name) && this.groups.size < queueGroupsPerPartitionMax, 'creating a new group within the bound');
    const g: GroupState = { name, cursor: at, next: at, unacked: new Map(), done: new Set(), consumers: new Map(), redeliveries: new PairHeap() };
    this.groups.set(name, g);
    return g;
  }

  /** The consumer's record, made most recent; null when the group is full of busy consumers. */
  private consumerOf(g: GroupState, id: ConsumerId): ConsumerState | null {
    let c = g.consumers.get(id);
    if (c !== undefined) {
      g.consumers.delete(id);
      g.consumers.set(id, c);
      return c;
    }
    if (g.consumers.size >= queueConsumersPerGroupMax) {
      let idle: ConsumerId | undefined;
      for (const [k, v] of g.consumers) {
        if (v.inFlight.size === 0) {
          idle = k;
          break;
        }
      }
      if (idle === undefined) return null;
      g.consumers.delete(idle);
    }
    c = { id, inFlight: new Set(), lastSeq: 0, lastResult: { kind: 'ok' } };
    g.consumers.set(id, c);
    return c;
  }

  private fetch(g: GroupState, c: ConsumerState, cmd: Fetch, fx: Effects): QueueResult {
    const ackDeadlineMs = cmd.ackDeadlineMs ?? this.config.ackDeadlineMs;
    const room = Math.min(cmd.max, this.config.inflightPerConsumerMax - c.inFlight.size);
    const out: Delivery[] = [];
    const heap = g.redeliveries;
    // The answer carries the bodies: past queueFetchBytesMax (after the first), the rest waits for the next fetch.
    let bytes = 0;
    const fits = (at: number): boolean => {
      const size = this.store.sizeAt(offset(at));
      if (out.length > 0 && bytes + size > queueFetchBytesMax) return false;
      bytes += size;
      return true;
    };
    while (out.length < room && heap.peekA() <= fx.nowMs) {
      const readyAt = heap.peekA();
      const at = heap.peekB();
      const d = g.unacked.get(at);
      if (d === undefined || d.inFlight || d.readyAtMs !== readyAt) {
        heap.pop(); // stale
        continue;
      }
      if (!fits(at)) return { kind: 'delivered', deliveries: out };
      heap.pop();
      this.hand(d, c, ackDeadlineMs, fx.nowMs, out);
    }
    while (out.length < room && g.next < this.logEnd && g.next - g.cursor < this.config.unackedPerGroupMax) {
      // A redriven message (onlyFor) is skipped by every group but the one that gave up on it.
      const only = this.onlyFor.get(g.next);
      const forThisGroup = only === undefined || only === g.name;
      if (forThisGroup && !fits(g.next)) break;
      const at = g.next++;
      if (!forThisGroup) {
        g.done.add(at);
        this.advance(g);
        continue;
      }
      const d: DeliveryState = {
        id: deliveryId(this.nextDeliveryId++),
        group: g,
        offset: offset(at),
        attempt: 0,
        inFlight: false,
        consumer: null,
        deadlineMs: 0,
        ackDeadlineMs,
        readyAtMs: 0,
      };
      g.unacked.set(at, d);
      this.deliveries.set(d.id, d);
      this.hand(d, c, ackDeadlineMs, fx.nowMs, out);
    }
    return { kind: 'delivered', deliveries: out };
  }

  /** Attempt d.attempt + 1 goes to consumer c. */
  private hand(d: DeliveryState, c: ConsumerState, ackDeadlineMs: number, nowMs: number, out: Delivery[]): void {
    d.attempt++;
    d.inFlight = true;
    d.consumer = c;
    d.ackDeadlineMs = ackDeadlineMs;
    d.deadlineMs = nowMs + ackDeadlineMs;
    c.inFlight.add(d.id);
    this.deadlines.push(d.deadlineMs, d.id);
    out.push({ delivery: d.id, offset: d.offset, attempt: d.attempt, deadlineMs: d.deadlineMs });
    if (this.options.canary === 'cursor-before-ack') this.finish(d); // the deliberate bug: done before the consumer acked it
  }

  /** The delivery an ack/nack/extend names if its attempt is current, else the answer. */
  private current(g: GroupState, id: DeliveryId, attempt: number): DeliveryState | 'NOT_FOUND' | 'LATE_ACK' | 'BAD_REQUEST' {
    const d = this.deliveries.get(id);
    if (d === undefined || d.group !== g) return 'NOT_FOUND';
    if (!isInt(attempt, 1, d.attempt)) return 'BAD_REQUEST';
    if (attempt < d.attempt) return 'LATE_ACK';
    return d;
  }

  private ack(g: GroupState, items: readonly { delivery: DeliveryId; attempt: number }[]): QueueResult {
    const statuses: AckStatus[] = [];
    for (const item of items) {
      const d = this.current(g, item.delivery, item.attempt);
      if (typeof d === 'string') {
        statuses.push(d);
        continue;
      }
      this.finish(d);
      statuses.push('OK');
    }
    return { kind: 'acked', statuses };
  }

  private nack(g: GroupState, id: DeliveryId, attempt: number, delayMs: number | undefined, fx: Effects): QueueResult {
    const d = this.current(g, id, attempt);
    if (typeof d === 'string') return this.settleError(d, id, attempt);
    const at = fx.nowMs + (delayMs ?? nackBackoffMs(d.attempt));
    if (d.inFlight) {
      const dead = this.fail(d, 'nacked', at, fx);
      return { kind: 'nacked', redeliverAtMs: dead ? -1 : at, deadLettered: dead };
    }
    d.readyAtMs = at;
    g.redeliveries.push(at, d.offset);
    return { kind: 'nacked', redeliverAtMs: at, deadLettered: false };
  }

  private extend(g: GroupState, id: DeliveryId, attempt: number, fx: Effects): QueueResult {
    const d = this.current(g, id, attempt);
    if (typeof d === 'string') return this.settleError(d, id, attempt);
    if (!d.inFlight) return err('LATE_ACK', `delivery ${id} attempt ${attempt}: its deadline passed; it awaits redelivery`);
    d.deadlineMs = fx.nowMs + d.ackDeadlineMs;
    this.deadlines.push(d.deadlineMs, d.id);
    return { kind: 'extended', deadlineMs: d.deadlineMs };
  }

  private settleError(code: 'NOT_FOUND' | 'LATE_ACK' | 'BAD_REQUEST', id: DeliveryId, attempt: number): QueueError {
    switch (code) {
      case 'NOT_FOUND':
        return err(code, `delivery ${id} is not outstanding in this group (unknown, acked, dead-lettered or replayed past)`);
      case 'LATE_ACK':
        return err(code, `delivery ${id} attempt ${attempt} was already handed out again`);
      case 'BAD_REQUEST':
        return err(code, `delivery ${id} has no attempt ${String(attempt)}`);
      default:
        return assertNever(code, 'settle error');
    }
  }

  // ------------------------------------------------------------------ failures

  private expireDeadlines(fx: Effects): number {
    let count = 0;
    while (this.deadlines.peekA() <= fx.nowMs) {
      const deadline = this.deadlines.peekA();
      const id = deliveryId(this.deadlines.peekB());
      this.deadlines.pop();
      const d = this.deliveries.get(id);
      if (d === undefined || !d.inFlight || d.deadlineMs !== deadline) continue; // stale
      this.fail(d, 'deadline', fx.nowMs, fx);
      count++;
    }
    return count;
  }

  private consumerGone(id: ConsumerId, fx: Effects): QueueResult {
    const bad = nameError('consumer', id);
    if (bad !== null) return err('BAD_REQUEST', bad);
    let count = 0;
    for (const g of this.groups.values()) {
      const c = g.consumers.get(id);
      if (c === undefined) continue;
      const held = [...c.inFlight].map((x) => this.deliveries.get(x) as DeliveryState).sort((a, b) => a.offset - b.offset);
      for (const d of held) {
        this.fail(d, 'consumerGone', fx.nowMs, fx);
        count++;
      }
      assert(c.inFlight.size === 0, 'a gone consumer holds nothing');
      g.consumers.delete(id);
    }
    return { kind: 'consumerGone', count };
  }

  /** An in-flight attempt failed: pending until readyAtMs, or dead-lettered at maxDeliveries. True if dead-lettered. */
  private fail(d: DeliveryState, reason: FailureReason, readyAtMs: number, fx: Effects): boolean {
    assert(d.inFlight && d.consumer !== null, 'only an in-flight attempt fails');
    assert(d.consumer.inFlight.delete(d.id), 'the holder lists its delivery');
    d.inFlight = false;
    d.consumer = null;
    const g = d.group;
    if (this.options.canary === 'forget-failed-attempts') {
      this.finish(d); // the deliberate bug: the attempt failed, yet the message counts as done and is never handed out again
      return false;
    }
    if (this.config.maxDeliveries > 0 && d.attempt >= this.config.maxDeliveries && this.outboxLetters + (fx.letters?.length ?? 0) < this.outboxMax) {
      const letter: DeadLetter = { seq: this.nextDeadLetterSeq++, group: g.name, offset: d.offset, deliveries: d.attempt, reason };
      (fx.letters ??= []).push(letter);
      (fx.events ??= []).push({ kind: 'deadLettered', ...letter, delivery: d.id });
      this.finish(d);
      return true;
    }
    d.readyAtMs = readyAtMs;
    g.redeliveries.push(readyAtMs, d.offset);
    return false;
  }

  /** The offset is done for its group: forget the delivery, move the cursor. */
  private finish(d: DeliveryState): void {
    if (d.inFlight) {
      assert(d.consumer !== null && d.consumer.inFlight.delete(d.id), 'the holder lists its delivery');
      d.inFlight = false;
      d.consumer = null;
    }
    const g = d.group;
    assert(this.deliveries.delete(d.id) && g.unacked.delete(d.offset), 'a finished delivery was outstanding');
    g.done.add(d.offset);
    this.advance(g);
  }

  private advance(g: GroupState): void {
    while (g.cursor < g.next && g.done.delete(g.cursor)) g.cursor++;
  }

  // ------------------------------------------------------------------ replay, retention

  private replay(name: ConsumerGroup, from: { readonly offset: Offset } | { readonly timestampMs: number }): QueueResult {
    const bad = nameError('group', name);
    if (bad !== null) return err('BAD_REQUEST', bad);
    let target: number;
    if (typeof from === 'object' && from !== null && 'offset' in from) {
      if (!isInt(from.offset, 0, Number.MAX_SAFE_INTEGER)) return err('BAD_REQUEST', 'offset must be a non-negative integer');
      target = Math.min(Math.max(from.offset, this.logStart), this.logEnd);
    } else if (typeof from === 'object' && from !== null && 'timestampMs' in from && Number.isFinite(from.timestampMs)) {
      target = this.offsetForTimestamp(from.timestampMs);
    } else {
      return err('BAD_REQUEST', 'replay from an offset or a timestampMs');
    }
    let g = this.groups.get(name);
    if (g === undefined) {
      if (this.groups.size >= queueGroupsPerPartitionMax) return err('TOO_MANY_REQUESTS', `the partition already has ${queueGroupsPerPartitionMax} groups`);
      g = this.createGroup(name, target);
    }
    this.resetGroup(g, target);
    return { kind: 'replayed', offset: offset(target) };
  }

  /** Forgets every delivery of the group and puts cursor and next at `at`. */
  private resetGroup(g: GroupState, at: number): void {
    for (const d of g.unacked.values()) {
      if (d.inFlight) assert(d.consumer !== null && d.consumer.inFlight.delete(d.id), 'the holder lists its delivery');
      this.deliveries.delete(d.id);
    }
    g.unacked.clear();
    g.done.clear();
    g.redeliveries.clear();
    g.cursor = at;
    g.next = at;
  }

  /** The first retained offset whose timestamp is at or after `ms` (logEnd if none). */
  offsetForTimestamp(ms: number): number {
    let lo = this.logStart;
    let hi = this.logEnd;
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      if (this.store.timestampAt(offset(mid)) < ms) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Drops what retention allows (see the header); returns how many messages. */
  private retain(nowMs: number): number {
    const r = this.config.retention;
    if (r.maxAgeMs === 0 && r.maxBytes === 0) return 0;
    let floor = this.logEnd;
    if (!r.dropUnacked) for (const g of this.groups.values()) floor = Math.min(floor, g.cursor);
    for (const b of this.outbox) for (const l of b.letters) floor = Math.min(floor, l.offset);
    let start = this.logStart;
    let bytes = this.store.bytes;
    while (start < floor) {
      const tooBig = r.maxBytes > 0 && bytes > r.maxBytes;
      const tooOld = r.maxAgeMs > 0 && this.store.timestampAt(offset(start)) + r.maxAgeMs <= nowMs;
      if (!tooBig && !tooOld) break;
      bytes -= this.store.sizeAt(offset(start));
      start++;
    }
    const dropped = start - this.logStart;
    if (dropped === 0) return 0;
    this.store.truncateBefore(offset(start));
    this.logStart = start;
    for (const k of this.onlyFor.keys()) {
      if (k >= start) break;
      this.onlyFor.delete(k);
    }
    for (const g of this.groups.values()) {
      if (g.cursor >= start) continue;
      assert(r.dropUnacked, 'retention passes a cursor only when the topic allows it');
      for (const d of [...g.unacked.values()]) {
        if (d.offset >= start) continue;
        if (d.inFlight) assert(d.consumer !== null && d.consumer.inFlight.delete(d.id), 'the holder lists its delivery');
        this.deliveries.delete(d.id);
        g.unacked.delete(d.offset);
      }
      for (const k of [...g.done]) if (k < start) g.done.delete(k);
      g.cursor = start;
      g.next = Math.max(g.next, start);
      this.advance(g);
    }
    return dropped;
  }

  // ------------------------------------------------------------------ dead-letter outbox

  /** A command's dead letters become batches the dead-letter partition takes in one append each. */
  private batchLetters(letters: readonly DeadLetter[]): void {
    let batch: DeadLetter[] = [];
    let bytes = 0;
    const close = (): void => {
      if (batch.length === 0) return;
      this.outbox.push({ firstSeq: (batch[0] as DeadLetter).seq, letters: batch });
      this.outboxLetters += batch.length;
      batch = [];
      bytes = 0;
    };
    for (const l of letters) {
      const size = this.store.sizeAt(l.offset);
      if (batch.length >= queueAppendBatchCountMax || (batch.length > 0 && bytes + size > queueEntryBatchBytesMax)) close();
      batch.push(l);
      bytes += size;
    }
    close();
  }

  private forwarded(firstSeq: number): QueueResult {
    if (!isInt(firstSeq, 1, Number.MAX_SAFE_INTEGER)) return err('BAD_REQUEST', 'firstSeq must be a positive integer');
    let count = 0;
    // Batches go in order, so every batch at or below it was acknowledged; a repeat finds nothing.
    while (this.outbox.length > 0 && (this.outbox[0] as DeadLetterBatch).firstSeq <= firstSeq) {
      count += (this.outbox.shift() as DeadLetterBatch).letters.length;
    }
    this.outboxLetters -= count;
    return { kind: 'forwarded', count };
  }

  /** The oldest outbox batch, or null: what the leader appends to the dead-letter partition next. */
  deadLetterHead(): DeadLetterBatch | null {
    return this.outbox[0] ?? null;
  }

  /** Dead letters in the outbox. */
  get deadLettersPending(): number {
    return this.outboxLetters;
  }

  /** A retained message (the outbox pins its letters' offsets). */
  readMessage(at: Offset): StoredMessage {
    assert(at >= this.logStart && at < this.logEnd, 'reading a retained offset');
    return this.store.read(at);
  }

  // ------------------------------------------------------------------ invariants

  private check(): void {
    assert(this.store.firstOffset === this.logStart && this.store.nextOffset === this.logEnd, 'the store holds exactly [logStart, logEnd)');
    let outstanding = 0;
    for (const g of this.groups.values()) {
      assert(this.logStart <= g.cursor && g.cursor <= g.next && g.next <= this.logEnd, `group ${g.name}: logStart <= cursor <= next <= logEnd`);
      assert(g.unacked.size + g.done.size === g.next - g.cursor, `group ${g.name}: every offset in [cursor, next) is unacked or done`);
      assert(!g.done.has(g.cursor), `group ${g.name}: the cursor is at the lowest offset not done`);
      assert(g.next - g.cursor <= this.config.unackedPerGroupMax, `group ${g.name}: unacked window bounded`);
      assert(g.consumers.size <= queueConsumersPerGroupMax, `group ${g.name}: consumers bounded`);
      outstanding += g.unacked.size;
    }
    assert(outstanding === this.deliveries.size, 'every delivery belongs to its group');
    let letters = 0;
    let lastSeq = 0;
    for (const b of this.outbox) {
      assert(b.letters.length > 0 && b.firstSeq === (b.letters[0] as DeadLetter).seq, 'an outbox batch starts at its first letter');
      for (const [i, l] of b.letters.entries()) {
        assert(l.seq === b.firstSeq + i && l.seq > lastSeq, 'outbox letters are numbered consecutively in a batch, increasing overall');
        assert(l.offset >= this.logStart && l.offset < this.logEnd, 'retention keeps every outbox letter');
        lastSeq = l.seq;
      }
      letters += b.letters.length;
    }
    assert(letters === this.outboxLetters && letters <= this.outboxMax && lastSeq < this.nextDeadLetterSeq, 'outbox bounded and counted');
    assert(this.groups.size <= queueGroupsPerPartitionMax && this.producers.size <= queueProducersPerPartitionMax, 'groups and producers bounded');
  }

  // ------------------------------------------------------------------ read API

  get appliedIndex(): LogIndex {
    return this.lastAppliedIndex;
  }

  /** The first retained offset. */
  get logStartOffset(): Offset {
    return offset(this.logStart);
  }

  /** The next offset an append gets (the high watermark once applied). */
  get logEndOffset(): Offset {
    return offset(this.logEnd);
  }

  get retainedBytes(): number {
    return this.store.bytes;
  }

  listGroups(): ConsumerGroup[] {
    return [...this.groups.keys()];
  }

  groupInfo(name: ConsumerGroup): GroupInfo | null {
    const g = this.groups.get(name);
    if (g === undefined) return null;
    let inFlight = 0;
    for (const d of g.unacked.values()) if (d.inFlight) inFlight++;
    return {
      group: g.name,
      cursor: offset(g.cursor),
      next: offset(g.next),
      lag: this.logEnd - g.cursor,
      inFlight,
      pending: g.unacked.size - inFlight,
      consumers: g.consumers.size,
    };
  }

  deliveryInfo(id: DeliveryId): DeliveryInfo | null {
    const d = this.deliveries.get(id);
    return d === undefined ? null : infoOf(d);
  }

  /** Deliveries of a group, by offset (in flight and pending). */
  listDeliveries(name: ConsumerGroup): DeliveryInfo[] {
    const g = this.groups.get(name);
    if (g === undefined) return [];
    return [...g.unacked.values()].sort((a, b) => a.offset - b.offset).map(infoOf);
  }

  /** When the leader should propose expireDeadlines next (Infinity: nothing in flight). */
  nextDeadlineMs(): number {
    while (this.deadlines.size > 0) {
      const d = this.deliveries.get(deliveryId(this.deadlines.peekB()));
      if (d !== undefined && d.inFlight && d.deadlineMs === this.deadlines.peekA()) return d.deadlineMs;
      this.deadlines.pop(); // stale: dropping it changes no answer
    }
    return Infinity;
  }

  /** When a pending redelivery of the group becomes ready (Infinity: none); long polls wait for it. */
  nextRedeliveryMs(name: ConsumerGroup): number {
    const g = this.groups.get(name);
    if (g === undefined) return Infinity;
    let min = Infinity;
    for (const d of g.unacked.values()) if (!d.inFlight && d.readyAtMs < min) min = d.readyAtMs;
    return min;
  }

  // ------------------------------------------------------------------ snapshot

  /** The machine's state; the store's content travels separately (server/: its segments). */
  toSnapshot(): QueuePartitionSnapshot {
    return {
      version: 1,
      lastAppliedIndex: this.lastAppliedIndex,
      config: { ...this.config, retention: { ...this.config.retention } },
      logStart: offset(this.logStart),
      logEnd: offset(this.logEnd),
      lastTimestampMs: this.lastTimestampMs,
      nextDeliveryId: deliveryId(this.nextDeliveryId),
      producers: [...this.producers.inOrder()].map((p) => ({ producer: p.id, lastSeq: p.lastSeq, batches: p.batches.map((b) => ({ ...b })) })),
      onlyFor: [...this.onlyFor].map(([o, group]) => ({ offset: offset(o), group })),
      groups: [...this.groups.values()].map((g) => ({
        group: g.name,
        cursor: offset(g.cursor),
        next: offset(g.next),
        done: [...g.done].sort((a, b) => a - b).map(offset),
        consumers: [...g.consumers.values()].map((c) => ({ consumer: c.id, inFlight: [...c.inFlight], lastSeq: c.lastSeq, lastResult: c.lastResult })),
        deliveries: [...g.unacked.values()].sort((a, b) => a.offset - b.offset).map(infoOf),
      })),
      outbox: this.outbox.map((b) => ({ firstSeq: b.firstSeq, letters: b.letters.map((l) => ({ ...l })) })),
      nextDeadLetterSeq: this.nextDeadLetterSeq,
    };
  }

  /** Restores a partition whose store already holds exactly [logStart, logEnd). */
  static fromSnapshot(snap: QueuePartitionSnapshot, store: MessageStore, options: QueuePartitionOptions = {}): QueuePartition {
    assert(snap.version === 1, `unknown queue partition snapshot version ${String(snap.version)}`);
    assert(store.firstOffset === snap.logStart && store.nextOffset === snap.logEnd, 'the store matches the snapshot');
    restoring = true;
    let q: QueuePartition;
    try {
      q = new QueuePartition(snap.config, store, options);
    } finally {
      restoring = false;
    }
    q.lastAppliedIndex = snap.lastAppliedIndex;
    q.logStart = snap.logStart;
    q.logEnd = snap.logEnd;
    q.lastTimestampMs = snap.lastTimestampMs;
    q.nextDeliveryId = snap.nextDeliveryId;
    for (const p of snap.producers) q.producers.add(p.producer, p.lastSeq, p.batches.map((b) => ({ ...b })));
    for (const o of snap.onlyFor) q.onlyFor.set(o.offset, o.group);
    for (const b of snap.outbox ?? []) {
      q.outbox.push({ firstSeq: b.firstSeq, letters: b.letters.map((l) => ({ ...l })) });
      q.outboxLetters += b.letters.length;
    }
    q.nextDeadLetterSeq = snap.nextDeadLetterSeq ?? 1;
    for (const gs of snap.groups) {
      const g = q.createGroup(gs.group, gs.cursor);
      g.next = gs.next;
      for (const o of gs.done) g.done.add(o);
      for (const cs of gs.consumers) {
        g.consumers.set(cs.consumer, { id: cs.consumer, inFlight: new Set(cs.inFlight), lastSeq: cs.lastSeq, lastResult: cs.lastResult });
      }
      for (const di of gs.deliveries) {
        const consumer = di.consumer === null ? null : (g.consumers.get(di.consumer) ?? null);
        assert(di.inFlight === (consumer !== null) && (consumer === null || consumer.inFlight.has(di.delivery)), 'snapshot: in flight with its holder');
        const d: DeliveryState = {
          id: di.delivery,
          group: g,
          offset: di.offset,
          attempt: di.attempt,
          inFlight: di.inFlight,
          consumer,
          deadlineMs: di.deadlineMs,
          ackDeadlineMs: di.ackDeadlineMs,
          readyAtMs: di.readyAtMs,
        };
        g.unacked.set(d.offset, d);
        q.deliveries.set(d.id, d);
        if (d.inFlight) q.deadlines.push(d.deadlineMs, d.id);
        else g.redeliveries.push(d.readyAtMs, d.offset);
      }
    }
    q.check();
    return q;
  }
}

function infoOf(d: DeliveryState): DeliveryInfo {
  return {
    delivery: d.id,
    group: d.group.name,
    offset: d.offset,
    attempt: d.attempt,
    inFlight: d.inFlight,
    consumer: d.consumer === null ? null : d.consumer.id,
    deadlineMs: d.deadlineMs,
    ackDeadlineMs: d.ackDeadlineMs,
    readyAtMs: d.readyAtMs,
  };
}
