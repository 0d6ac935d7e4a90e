// Test helper (not a test): drives a QueuePartition the way the server would, with
// increasing log indices, a leader clock (nowMs) the test moves, and a seq per
// consumer; plus short-hands for messages and deliveries.

import { consumerGroup, consumerId, logIndex, producerId } from '../../../core/ids.js';
import type { ConsumerGroup, ConsumerId, DeliveryId } from '../../../core/ids.js';
import type { Delivery, Message, QueueCommand, QueueOutcome, QueueResult } from '../../../core/queue/commands.js';
import { QueuePartition, defaultPartitionConfig } from '../../../core/queue/partition.js';
import type { PartitionConfig, QueuePartitionOptions } from '../../../core/queue/partition.js';
import { MemoryMessageStore } from '../../../core/queue/store.js';

type Distribute<T> = T extends unknown ? Omit<T, 'nowMs'> : never;
export type Body = Distribute<QueueCommand>;

const enc = new TextEncoder();
export const msg = (key: string, value = key, headers: Record<string, string> = {}): Message => ({
  key: enc.encode(key),
  value: enc.encode(value),
  headers: Object.entries(headers).map(([name, v]) => ({ name, value: enc.encode(v) })),
});
export const text = (b: Uint8Array): string => new TextDecoder().decode(b);

export function config(over: Partial<PartitionConfig> = {}): PartitionConfig {
  return { ...defaultPartitionConfig, ackDeadlineMs: 10_000, ...over, retention: { ...defaultPartitionConfig.retention, ...over.retention } };
}

export class Driver {
  store = new MemoryMessageStore();
  q: QueuePartition;
  index = 0;
  nowMs = 1_000_000;
  private readonly seqs = new Map<string, number>();
  readonly log: QueueOutcome[] = [];

  constructor(cfg: PartitionConfig = config(), options: QueuePartitionOptions = {}) {
    this.q = new QueuePartition(cfg, this.store, options);
  }

  apply(body: Body): QueueOutcome {
    this.index++;
    const out = this.q.apply({ ...body, nowMs: this.nowMs } as QueueCommand, logIndex(this.index));
    this.log.push(out);
    return out;
  }

  publish(...messages: Message[]): QueueResult {
    return this.apply({ kind: 'append', messages }).result;
  }

  produce(producer: string, firstSeq: number, ...messages: Message[]): QueueOutcome {
    return this.apply({ kind: 'append', producer: producerId(producer), firstSeq, messages });
  }

  nextSeq(group: string, consumer: string): number {
    const k = `${group}/${consumer}`;
    const s = (this.seqs.get(k) ?? 0) + 1;
    this.seqs.set(k, s);
    return s;
  }

  /** A consumer request with the consumer's next seq. */
  send(group: string, consumer: string, body: Record<string, unknown> & { kind: 'fetch' | 'ack' | 'nack' | 'extend' }): QueueOutcome {
    return this.apply({ ...body, group: consumerGroup(group), consumer: consumerId(consumer), seq: this.nextSeq(group, consumer) } as Body);
  }

  fetch(group: string, consumer: string, max = 10, ackDeadlineMs?: number): Delivery[] {
    const r = this.send(group, consumer, { kind: 'fetch', max, ...(ackDeadlineMs !== undefined ? { ackDeadlineMs } : {}) }).result;
    if (r.kind !== 'delivered') throw new Error(`fetch failed: ${JSON.stringify(r)}`);
    return [...r.deliveries];
  }

  ack(group: string, consumer: string, ...ds: { delivery: DeliveryId; attempt: number }[]): QueueResult {
    return this.send(group, consumer, { kind: 'ack', items: ds.map((d) => ({ delivery: d.delivery, attempt: d.attempt })) }).result;
  }

  nack(group: string, consumer: string, d: { delivery: DeliveryId; attempt: number }, delayMs?: number): QueueOutcome {
    return this.send(group, consumer, { kind: 'nack', delivery: d.delivery, attempt: d.attempt, ...(delayMs !== undefined ? { delayMs } : {}) });
  }

  extend(group: string, consumer: string, d: { delivery: DeliveryId; attempt: number }): QueueResult {
    return this.send(group, consumer, { kind: 'extend', delivery: d.delivery, attempt: d.attempt }).result;
  }

  expire(): QueueOutcome {
    return this.apply({ kind: 'expireDeadlines' });
  }

  gone(consumer: string): QueueOutcome {
    return this.apply({ kind: 'consumerGone', consumer: consumerId(consumer) });
  }

  cursor(group: string): number {
    return this.q.groupInfo(consumerGroup(group))?.cursor ?? -1;
  }
}

export const g = (s: string): ConsumerGroup => consumerGroup(s);
export const c = (s: string): ConsumerId => consumerId(s);
export const offsets = (ds: readonly Delivery[]): number[] => ds.map((d) => d.offset);
