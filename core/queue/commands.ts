// The typed commands applied to one queue partition from its Raft group's log, and
// the values apply() returns. The server decodes entries into these; nothing here
// runs. Every command carries nowMs, stamped by the leader that proposed it: apply
// reads time from nowhere else.

import type { ConsumerGroup, ConsumerId, DeliveryId, Offset, ProducerId } from '../ids.js';

export interface Header {
  readonly name: string;
  readonly value: Uint8Array;
}

/** A message as a producer sends it. */
export interface Message {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  readonly headers: readonly Header[];
  /**
   * Only this group sees the message; every other group skips it. Set by redrive (a
   * dead letter goes back to the group that gave up on it), never by producers.
   */
  readonly onlyGroup?: ConsumerGroup;
}

/** A message as the partition holds it. */
export interface StoredMessage extends Message {
  readonly offset: Offset;
  /** The appending leader's clock, never going back within a partition. */
  readonly timestampMs: number;
}

export interface Stamped {
  readonly nowMs: number;
}

/**
 * Producer dedup: a batch from producer P carries sequence numbers firstSeq ..
 * firstSeq + messages - 1. A retry of one of P's last queueProducerBatchesRemembered
 * batches (same firstSeq) answers that batch's original offsets; a firstSeq at or
 * below P's last sequence otherwise answers STALE_REQUEST. Gaps are allowed (a
 * refused batch's numbers may be skipped). Without a producer: no dedup.
 */
export interface Append extends Stamped {
  readonly kind: 'append';
  readonly producer?: ProducerId;
  readonly firstSeq?: number;
  readonly messages: readonly Message[];
}

/**
 * Consumer requests carry the consumer's own sequence number: a retry of the
 * consumer's last request (same seq) answers the cached result and changes nothing;
 * an older seq answers STALE_REQUEST. The entry lives with the consumer in its group
 * and goes when the consumer does (consumerGone).
 */
export interface FromConsumer extends Stamped {
  readonly group: ConsumerGroup;
  readonly consumer: ConsumerId;
  readonly seq: number;
}

/** Hand out up to `max` deliveries (redeliveries first), within the consumer's in-flight bound. */
export interface Fetch extends FromConsumer {
  readonly kind: 'fetch';
  readonly max: number;
  /** This consumer's ack deadline; the topic's when absent. */
  readonly ackDeadlineMs?: number;
}

export interface AckItem {
  readonly delivery: DeliveryId;
  readonly attempt: number;
}

export interface Ack extends FromConsumer {
  readonly kind: 'ack';
  readonly items: readonly AckItem[];
}

export interface Nack extends FromConsumer {
  readonly kind: 'nack';
  readonly delivery: DeliveryId;
  readonly attempt: number;
  /** Redeliver after this long; absent = backoff by attempt (queueNackBackoffMsMin x 2^(attempt-1), capped). */
  readonly delayMs?: number;
}

export interface Extend extends FromConsumer {
  readonly kind: 'extend';
  readonly delivery: DeliveryId;
  readonly attempt: number;
}

/** Proposed by the leader when in-flight deadlines have passed on its clock: nowMs decides which. */
export interface ExpireDeadlines extends Stamped {
  readonly kind: 'expireDeadlines';
}

/** Proposed by the leader when a consumer's connection closed: its deliveries come back at once, in every group. */
export interface ConsumerGone extends Stamped {
  readonly kind: 'consumerGone';
  readonly consumer: ConsumerId;
}

/** Move a group's cursor (creating the group if new) to an offset or to the first message at or after a time. */
export interface Replay extends Stamped {
  readonly kind: 'replay';
  readonly group: ConsumerGroup;
  readonly from: { readonly offset: Offset } | { readonly timestampMs: number };
}

export interface DeleteGroup extends Stamped {
  readonly kind: 'deleteGroup';
  readonly group: ConsumerGroup;
}

/** Proposed by the leader from time to time: drops messages past the age limit (size is enforced on append too). */
export interface EnforceRetention extends Stamped {
  readonly kind: 'enforceRetention';
}

/**
 * Proposed by the leader once the dead-letter partition acknowledged the outbox's batches
 * up to and including the one starting at firstSeq: they leave the outbox.
 */
export interface DeadLettersForwarded extends Stamped {
  readonly kind: 'deadLettersForwarded';
  readonly firstSeq: number;
}

export type QueueCommand = Append | Fetch | Ack | Nack | Extend | ExpireDeadlines | ConsumerGone | Replay | DeleteGroup | EnforceRetention
  | DeadLettersForwarded;

export type QueueErrorCode = 'BAD_REQUEST' | 'NOT_FOUND' | 'LATE_ACK' | 'STALE_REQUEST' | 'TOO_MANY_REQUESTS' | 'MESSAGE_TOO_LARGE';

export interface QueueError {
  readonly kind: 'error';
  readonly code: QueueErrorCode;
  readonly message: string;
}

export interface Delivery {
  readonly delivery: DeliveryId;
  readonly offset: Offset;
  /** 1 for the first delivery of this message to this group. */
  readonly attempt: number;
  readonly deadlineMs: number;
}

/** One ack item's answer, in item order. */
export type AckStatus = 'OK' | 'NOT_FOUND' | 'LATE_ACK' | 'BAD_REQUEST';

export type QueueResult =
  | { readonly kind: 'appended'; readonly baseOffset: Offset; readonly count: number; readonly timestampMs: number }
  | { readonly kind: 'delivered'; readonly deliveries: readonly Delivery[] }
  | { readonly kind: 'acked'; readonly statuses: readonly AckStatus[] }
  /** redeliverAtMs is -1 when the nack dead-lettered the message. */
  | { readonly kind: 'nacked'; readonly redeliverAtMs: number; readonly deadLettered: boolean }
  | { readonly kind: 'extended'; readonly deadlineMs: number }
  | { readonly kind: 'expired'; readonly count: number }
  | { readonly kind: 'consumerGone'; readonly count: number }
  | { readonly kind: 'replayed'; readonly offset: Offset }
  | { readonly kind: 'retained'; readonly logStart: Offset; readonly dropped: number }
  | { readonly kind: 'forwarded'; readonly count: number }
  | { readonly kind: 'ok' }
  | QueueError;

export type FailureReason = 'deadline' | 'nacked' | 'consumerGone';

/**
 * A message that reached the topic's maxDeliveries in a group. It is done for that group
 * and waits in the partition's replicated dead-letter outbox (so a leader that dies before
 * forwarding it loses nothing) until the leader appends it to the topic's dead-letter
 * partition (deadLetterMessage() in deadletter.ts) and proposes DeadLettersForwarded.
 */
export interface DeadLetter {
  /** Outbox sequence number: 1, 2, ... per partition, the dead-letter producer's sequence. */
  readonly seq: number;
  readonly group: ConsumerGroup;
  readonly offset: Offset;
  readonly deliveries: number;
  /** What ended the last attempt. */
  readonly reason: FailureReason;
}

/** Dead letters made by one command, in seq order: forwarded as one append, always the same one. */
export interface DeadLetterBatch {
  readonly firstSeq: number;
  readonly letters: readonly DeadLetter[];
}

export interface DeadLettered extends DeadLetter {
  readonly kind: 'deadLettered';
  readonly delivery: DeliveryId;
}

export type QueueEvent = DeadLettered;

export interface QueueOutcome {
  readonly result: QueueResult;
  /** A retry of the requester's last applied request: cached result, nothing changed. */
  readonly duplicate: boolean;
  readonly events: readonly QueueEvent[];
}
