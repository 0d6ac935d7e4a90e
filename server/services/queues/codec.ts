// The queue service's log formats: a partition entry (QueueEntry: core/queue commands,
// several per entry when a turn batched them, each with an optional fencing token) and
// group 0's topic entry (TopicCommandEntry), both protobuf (protocol/dsync.proto).
// Decoding is strict about kinds: an entry no replica can read crashes every replica
// alike (assert), never lets them diverge. Partition entries are laid out and read by hand
// (queue-entry-layout.ts: the same protobuf bytes), protobufjs taking what that does not.

import { assert, assertNever } from '../../../core/assert.js';
import { consumerGroup, consumerId, deliveryId, offset, producerId } from '../../../core/ids.js';
import type { Header, Message, QueueCommand } from '../../../core/queue/commands.js';
import type { TopicCommand, TopicSpec } from '../../../core/queue/topics.js';
import type { NodeId } from '../../../core/ids.js';
import { schema, wireNumber } from '../../../protocol/index.js';
import { type CommandFields, layPublishReply, layQueueEntry, type PublishFields, queueCommandKinds, readPublishRequest, readQueueEntry } from './queue-entry-layout.js';

/** A lock's fencing token carried by a publish or an ack. */
export interface Fencing {
  readonly lock: string;
  readonly token: number;
}

/** One command of a partition entry. */
export interface EntryCommand {
  readonly cmd: QueueCommand;
  readonly fencing?: Fencing;
}

const Kind = queueCommandKinds;
const kindByNumber = new Map<number, QueueCommand['kind']>(Object.entries(Kind).map(([k, v]) => [v, k as QueueCommand['kind']]));

type WireMessage = ReturnType<typeof schema.QueueMessage.create>;

export function toWireMessage(m: { readonly key: Uint8Array; readonly value: Uint8Array; readonly headers: readonly Header[] }): WireMessage {
  return schema.QueueMessage.create({ key: m.key, value: m.value, headers: m.headers.map((h) => ({ name: h.name, value: h.value })) });
}

export function fromWireMessage(w: { key?: Uint8Array | null; value?: Uint8Array | null; headers?: { name?: string | null; value?: Uint8Array | null }[] | null }): Message {
  return { key: w.key ?? new Uint8Array(0), value: w.value ?? new Uint8Array(0),
    headers: (w.headers ?? []).map((h) => ({ name: h.name ?? '', value: h.value ?? new Uint8Array(0) })) };
}

function encodeCommand(c: EntryCommand): ReturnType<typeof schema.QueueCommandEntry.create> {
  const cmd = c.cmd;
  const e = schema.QueueCommandEntry.create({ kind: Kind[cmd.kind], nowMs: cmd.nowMs });
  if (c.fencing !== undefined) e.fencing = { lock: c.fencing.lock, token: c.fencing.token };
  switch (cmd.kind) {
    case 'append':
      if (cmd.producer !== undefined) e.producer = cmd.producer;
      e.firstSeq = cmd.firstSeq ?? 0;
      e.messages = cmd.messages.map(toWireMessage);
      e.onlyGroup = cmd.messages.map((m) => m.onlyGroup ?? '');
      break;
    case 'fetch':
      e.group = cmd.group; e.consumer = cmd.consumer; e.seq = cmd.seq; e.max = cmd.max; e.ackDeadlineMs = cmd.ackDeadlineMs ?? 0;
      break;
    case 'ack':
      e.group = cmd.group; e.consumer = cmd.consumer; e.seq = cmd.seq;
      e.items = cmd.items.map((i) => ({ delivery: i.delivery, attempt: i.attempt }));
      break;
    case 'nack':
      e.group = cmd.group; e.consumer = cmd.consumer; e.seq = cmd.seq;
      e.items = [{ delivery: cmd.delivery, attempt: cmd.attempt, delayMs: cmd.delayMs ?? 0, hasDelay: cmd.delayMs !== undefined }];
      break;
    case 'extend':
      e.group = cmd.group; e.consumer = cmd.consumer; e.seq = cmd.seq;
      e.items = [{ delivery: cmd.delivery, attempt: cmd.attempt }];
      break;
    case 'expireDeadlines': case 'enforceRetention':
      break;
    case 'deadLettersForwarded':
      e.firstSeq = cmd.firstSeq;
      break;
    case 'consumerGone':
      e.consumer = cmd.consumer;
      break;
    case 'replay':
      e.group = cmd.group;
      if ('offset' in cmd.from) e.replayOffset = cmd.from.offset;
      else { e.replayByTime = true; e.replayTimestampMs = cmd.from.timestampMs; }
      break;
    case 'deleteGroup':
      e.group = cmd.group;
      break;
    default:
      return assertNever(cmd, 'queue command');
  }
  return e;
}

export function encodeQueueEntry(commands: readonly EntryCommand[]): Uint8Array {
  assert(commands.length > 0, 'an entry carries at least one command');
  return layQueueEntry(commands) ?? encodeQueueEntrySlow(commands);
}

/** The entry through protobufjs: what the hand layout leaves to it, and the reference its tests compare with. */
export function encodeQueueEntrySlow(commands: readonly EntryCommand[]): Uint8Array {
  return schema.QueueEntry.encode({ commands: commands.map(encodeCommand) }).finish();
}

type WireCommand = ReturnType<typeof schema.QueueEntry.decode>['commands'][number];

/** A protobufjs-decoded command as the fields commandOf() reads. */
function fieldsOfWire(w: WireCommand): CommandFields {
  return {
    kind: w.kind ?? 0, nowMs: w.nowMs ?? 0, producer: w.producer ?? '', firstSeq: wireNumber(w.firstSeq), messages: (w.messages ?? []).map(fromWireMessage),
    group: w.group ?? '', consumer: w.consumer ?? '', seq: wireNumber(w.seq), max: w.max ?? 0, ackDeadlineMs: w.ackDeadlineMs ?? 0,
    items: (w.items ?? []).map((i) => ({ delivery: wireNumber(i.delivery), attempt: i.attempt ?? 0, delayMs: i.delayMs ?? 0, hasDelay: i.hasDelay === true })),
    fencing: w.fencing === null || w.fencing === undefined ? null : { lock: w.fencing.lock ?? '', token: wireNumber(w.fencing.token) },
    replayOffset: wireNumber(w.replayOffset), replayTimestampMs: w.replayTimestampMs ?? 0,
    replayByTime: w.replayByTime === true, onlyGroup: w.onlyGroup ?? [],
  };
}

/** The command the fields of one QueueCommandEntry say (read by hand or by protobufjs). */
function commandOf(e: CommandFields): EntryCommand {
  const kind = kindByNumber.get(e.kind);
  assert(kind !== undefined, `queue entry command of unknown kind ${e.kind}`);
  const nowMs = e.nowMs;
  let cmd: QueueCommand;
  switch (kind) {
    case 'append': {
      const only = e.onlyGroup;
      const messages = only.length === 0 ? e.messages : e.messages.map((m, i) => {
        const group = only[i] ?? '';
        return group === '' ? m : { ...m, onlyGroup: consumerGroup(group) };
      });
      cmd = e.producer === '' ? { kind, nowMs, messages } : { kind, nowMs, messages, producer: producerId(e.producer), firstSeq: e.firstSeq };
      break;
    }
    case 'fetch': {
      const from = { group: consumerGroup(e.group), consumer: consumerId(e.consumer), seq: e.seq, nowMs };
      cmd = e.ackDeadlineMs === 0 ? { kind, ...from, max: e.max } : { kind, ...from, max: e.max, ackDeadlineMs: e.ackDeadlineMs };
      break;
    }
    case 'ack':
      cmd = { kind, group: consumerGroup(e.group), consumer: consumerId(e.consumer), seq: e.seq, nowMs,
        items: e.items.map((i) => ({ delivery: deliveryId(i.delivery), attempt: i.attempt })) };
      break;
    case 'nack': {
      const item = e.items[0];
      assert(item !== undefined, 'a nack entry names its delivery');
      const from = { group: consumerGroup(e.group), consumer: consumerId(e.consumer), seq: e.seq, nowMs };
      cmd = item.hasDelay
        ? { kind, ...from, delivery: deliveryId(item.delivery), attempt: item.attempt, delayMs: item.delayMs }
        : { kind, ...from, delivery: deliveryId(item.delivery), attempt: item.attempt };
      break;
    }
    case 'extend': {
      const item = e.items[0];
      assert(item !== undefined, 'an extend entry names its delivery');
      cmd = { kind, group: consumerGroup(e.group), consumer: consumerId(e.consumer), seq: e.seq, nowMs, delivery: deliveryId(item.delivery), attempt: item.attempt };
      break;
    }
    case 'expireDeadlines': case 'enforceRetention':
      cmd = { kind, nowMs };
      break;
    case 'deadLettersForwarded':
      cmd = { kind, nowMs, firstSeq: e.firstSeq };
      break;
    case 'consumerGone':
      cmd = { kind, nowMs, consumer: consumerId(e.consumer) };
      break;
    case 'replay':
      cmd = { kind, nowMs, group: consumerGroup(e.group), from: e.replayByTime ? { timestampMs: e.replayTimestampMs } : { offset: offset(e.replayOffset) } };
      break;
    case 'deleteGroup':
      cmd = { kind, nowMs, group: consumerGroup(e.group) };
      break;
    default:
      return assertNever(kind, 'queue command kind');
  }
  return e.fencing === null ? { cmd } : { cmd, fencing: e.fencing };
}

export function decodeQueueEntry(bytes: Uint8Array): EntryCommand[] {
  const fields = readQueueEntry(bytes);
  if (fields === null) return decodeQueueEntrySlow(bytes);
  assert(fields.length > 0, 'a queue entry carries at least one command');
  return fields.map(commandOf);
}

/** The entry read by protobufjs alone: what the hand reader leaves to it, and the reference its tests compare with. */
export function decodeQueueEntrySlow(bytes: Uint8Array): EntryCommand[] {
  const fields = schema.QueueEntry.decode(bytes).commands.map(fieldsOfWire);
  assert(fields.length > 0, 'a queue entry carries at least one command');
  return fields.map(commandOf);
}

// ---- publish requests and replies ----

export type { PublishFields } from './queue-entry-layout.js';

/** A PublishRequest read by hand, or by protobufjs when the hand reader leaves it (it throws on malformed bytes). */
export function decodePublishRequest(payload: Uint8Array): PublishFields {
  const hand = readPublishRequest(payload);
  if (hand !== null) return hand;
  const r = schema.PublishRequest.decode(payload);
  return { topic: r.topic, partition: r.partition, producer: r.producer, firstSeq: wireNumber(r.firstSeq), messages: r.messages.map(fromWireMessage),
    fencing: r.fencing === null || r.fencing === undefined ? null : { lock: r.fencing.lock ?? '', token: wireNumber(r.fencing.token) } };
}

export function encodePublishReply(partition: number, baseOffset: number, count: number, timestampMs: number): Uint8Array {
  return layPublishReply(partition, baseOffset, count, timestampMs) ?? schema.PublishReply.encode({ partition, baseOffset, count, timestampMs }).finish();
}

// ---- group 0: topic commands ----

const TopicKind = { create: 1, delete: 2, move: 3, settle: 4 } as const satisfies Record<TopicCommand['kind'], number>;

export function encodeTopicCommand(cmd: TopicCommand): Uint8Array {
  if (cmd.kind === 'delete') return schema.TopicCommandEntry.encode({ kind: TopicKind.delete, topic: { name: cmd.name } }).finish();
  if (cmd.kind === 'move') {
    return schema.TopicCommandEntry.encode({ kind: TopicKind.move, topic: { name: cmd.name },
      move: { partition: cmd.partition, epoch: cmd.epoch, replicas: [...cmd.replicas] } }).finish();
  }
  if (cmd.kind === 'settle') {
    return schema.TopicCommandEntry.encode({ kind: TopicKind.settle, topic: { name: cmd.name }, move: { partition: cmd.partition, epoch: cmd.epoch } }).finish();
  }
  const s = cmd.spec;
  return schema.TopicCommandEntry.encode({
    kind: TopicKind.create,
    topic: {
      name: s.name, partitions: s.partitions ?? 0, replicas: s.replicas ?? 0,
      maxDeliveries: s.maxDeliveries ?? 0, hasMaxDeliveries: s.maxDeliveries !== undefined, ackDeadlineMs: s.ackDeadlineMs ?? 0,
      ...(s.retention === undefined ? {} : { retention: { maxAgeMs: s.retention.maxAgeMs, maxBytes: s.retention.maxBytes, dropUnacked: s.retention.dropUnacked } }),
    },
  }).finish();
}

/** A TopicRequest (wire or log) as a spec: zero means "the default" for every field but max_deliveries (has_max_deliveries says). */
export function specOf(t: NonNullable<ReturnType<typeof schema.TopicCommandEntry.decode>['topic']>): TopicSpec {
  const r = t.retention;
  const n = (v: number | null | undefined): number => Number(v ?? 0);
  return {
    name: t.name ?? '',
    ...(n(t.partitions) === 0 ? {} : { partitions: n(t.partitions) }),
    ...(n(t.replicas) === 0 ? {} : { replicas: n(t.replicas) }),
    ...(t.hasMaxDeliveries === true ? { maxDeliveries: n(t.maxDeliveries) } : {}),
    ...(n(t.ackDeadlineMs) === 0 ? {} : { ackDeadlineMs: n(t.ackDeadlineMs) }),
    ...(r === null || r === undefined ? {} : { retention: { maxAgeMs: n(r.maxAgeMs), maxBytes: n(r.maxBytes), dropUnacked: r.dropUnacked === true } }),
  };
}

export function decodeTopicCommand(bytes: Uint8Array): TopicCommand {
  const e = schema.TopicCommandEntry.decode(bytes);
  const t = e.topic;
  assert(t !== null && t !== undefined, 'a topic entry names its topic');
  if (e.kind === TopicKind.delete) return { kind: 'delete', name: t.name ?? '' };
  if (e.kind === TopicKind.move || e.kind === TopicKind.settle) {
    const m = e.move;
    assert(m !== null && m !== undefined, 'a move or settle entry names its partition');
    const common = { name: t.name ?? '', partition: m.partition ?? 0, epoch: wireNumber(m.epoch ?? 0) };
    return e.kind === TopicKind.settle ? { kind: 'settle', ...common } : { kind: 'move', ...common, replicas: (m.replicas ?? []) as NodeId[] };
  }
  assert(e.kind === TopicKind.create, `topic entry of unknown kind ${e.kind}`);
  return { kind: 'create', spec: specOf(t) };
}
