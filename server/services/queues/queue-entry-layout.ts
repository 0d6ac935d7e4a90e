// A partition entry (QueueEntry of protocol/dsync.proto) laid out and read by hand: the
// protobuf bytes protobufjs writes and reads (test/unit/server/queue-entry-layout.test.ts
// compares them), without its Writer and Reader objects, a wire object per command and per
// message, a Long per absent uint64 field, or strings built 8 characters at a time (their
// hashing in the partition's producer table flattened every one). Every node, of any
// version, reads either layout: one difference is allowed, an append whose messages are for
// every group leaves out the only_group list (protobufjs writes one '' per message), which
// reads back as the same ''s. What this layout does not write exactly as protobufjs would
// (a negative or fractional integer, a string with a lone surrogate) and what this reader
// does not know (unknown fields, integers past 2^53 - 1, invalid UTF-8) answer null, and the
// codec (codec.ts) goes through protobufjs, which decides as it always has. A publish
// request (whose messages become the entry's) is read and its reply written the same way.

import { isUtf8 } from 'node:buffer';
import { assert, assertNever } from '../../../core/assert.js';
import type { Header, Message, QueueCommand } from '../../../core/queue/commands.js';
import { putVarint, varintBytes } from '../../../protocol/varint.js';

/** The kind numbers of QueueCommandEntry.kind. */
export const queueCommandKinds = {
  append: 1, fetch: 2, ack: 3, nack: 4, extend: 5, expireDeadlines: 6, consumerGone: 7, replay: 8, deleteGroup: 9, enforceRetention: 10, deadLettersForwarded: 11,
} as const satisfies Record<QueueCommand['kind'], number>;

/** A SettleItem's fields. */
export interface ItemFields {
  readonly delivery: number;
  readonly attempt: number;
  readonly delayMs: number;
  readonly hasDelay: boolean;
}

/** One QueueCommandEntry's fields, absent ones at their defaults (as protobufjs reads them). */
export interface CommandFields {
  kind: number;
  nowMs: number;
  producer: string;
  firstSeq: number;
  messages: Message[];
  group: string;
  consumer: string;
  seq: number;
  max: number;
  ackDeadlineMs: number;
  items: ItemFields[];
  fencing: { readonly lock: string; readonly token: number } | null;
  replayOffset: number;
  replayTimestampMs: number;
  replayByTime: boolean;
  onlyGroup: string[];
}

/** What the layout needs of a command (codec.ts's EntryCommand). */
interface LaidCommand {
  readonly cmd: QueueCommand;
  readonly fencing?: { readonly lock: string; readonly token: number };
}

// ---------------------------------------------------------------- writing

/** Tags (field number << 3 | wire type) of QueueCommandEntry's fields, and of the messages inside. */
const tag = {
  command: 0x0a, kind: 0x08, nowMs: 0x11, producer: 0x1a, firstSeq: 0x20, message: 0x2a, group: 0x32, consumer: 0x3a, seq: 0x40, max: 0x48,
  ackDeadlineMs: 0x50, item: 0x5a, fencing: 0x62, replayOffset: 0x68, replayTimestampMs: 0x71, replayByTime: 0x78,
  /** Field 16 takes a two-byte tag: 0x82 0x01. */
  onlyGroup: 0x82,
  key: 0x0a, value: 0x12, header: 0x1a, headerName: 0x0a, headerValue: 0x12,
  itemDelivery: 0x08, itemAttempt: 0x10, itemDelayMs: 0x18, itemHasDelay: 0x20, fencingLock: 0x0a, fencingToken: 0x10,
} as const;

const isUint64 = (v: number): boolean => Number.isSafeInteger(v) && v >= 0;
const isUint32 = (v: number): boolean => Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff;

/**
 * Sizes of the entry being laid out, in the order the writing pass needs them: per
 * command its body, then its messages', items' and fencing's bodies. Reused by every
 * layout (one entry at a time: nothing here is re-entrant, and nothing it calls lays out).
 */
const sizes: number[] = [];

/**
 * UTF-8 bytes of `s`, or -1 when it holds a lone surrogate (protobufjs writes one as three
 * bytes of its own, Buffer as U+FFFD: such a string is left to protobufjs).
 */
function utf8Length(s: string): number {
  let n = 0;
  // Bounded by the string's length.
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c < 0xd800 || c > 0xdfff) n += 3;
    else if (c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else return -1;
  }
  return n;
}

/** Bytes of a string field (tag, length, UTF-8), 0 when it is '' (not written); -1 when protobufjs must write it. */
function stringField(s: string, tagBytes = 1): number {
  if (s === '') return 0;
  const n = utf8Length(s);
  return n < 0 ? -1 : tagBytes + varintBytes(n) + n;
}

const bytesField = (b: Uint8Array): number => (b.length === 0 ? 0 : 1 + varintBytes(b.length) + b.length);
const uint64Field = (v: number): number => (v === 0 ? 0 : 1 + varintBytes(v));

function anyOnlyGroup(messages: readonly Message[]): boolean {
  for (const m of messages) if (m.onlyGroup !== undefined && m.onlyGroup !== '') return true;
  return false;
}

/** Bytes of a message's body. -1: protobufjs must write it. */
function messageSize(m: Message): number {
  let n = bytesField(m.key) + bytesField(m.value);
  for (const h of m.headers) {
    const name = stringField(h.name);
    if (name < 0) return -1;
    const body = name + bytesField(h.value);
    n += 1 + varintBytes(body) + body;
  }
  return n;
}

/** Bytes of one command's body, its nested sizes pushed (messages, items, fencing); -1: protobufjs must write it. */
function commandSize(c: LaidCommand): number {
  const cmd = c.cmd;
  let n = 1 + varintBytes(queueCommandKinds[cmd.kind]) + (Object.is(cmd.nowMs, 0) ? 0 : 9);
  switch (cmd.kind) {
    case 'append': {
      if (cmd.producer !== undefined) {
        const producer = stringField(cmd.producer);
        if (producer < 0) return -1;
        n += producer;
      }
      const firstSeq = cmd.firstSeq ?? 0;
      if (!isUint64(firstSeq)) return -1;
      n += uint64Field(firstSeq);
      for (const m of cmd.messages) {
        const slot = sizes.length;
        sizes.push(0);
        const body = messageSize(m);
        if (body < 0) return -1;
        sizes[slot] = body;
        n += 1 + varintBytes(body) + body;
      }
      // Once any message has an only_group, every message has one ('' for the others), as protobufjs writes them.
      if (anyOnlyGroup(cmd.messages)) {
        for (const m of cmd.messages) {
          const group = m.onlyGroup ?? '';
          if (group === '') n += 3;
          else {
            const g = stringField(group, 2);
            if (g < 0) return -1;
            n += g;
          }
        }
      }
      break;
    }
    case 'fetch': {
      const group = stringField(cmd.group);
      const consumer = stringField(cmd.consumer);
      const ackDeadlineMs = cmd.ackDeadlineMs ?? 0;
      if (group < 0 || consumer < 0 || !isUint64(cmd.seq) || !isUint32(cmd.max) || !isUint32(ackDeadlineMs)) return -1;
      n += group + consumer + uint64Field(cmd.seq) + uint64Field(cmd.max) + uint64Field(ackDeadlineMs);
      break;
    }
    case 'ack': case 'nack': case 'extend': {
      const group = stringField(cmd.group);
      const consumer = stringField(cmd.consumer);
      if (group < 0 || consumer < 0 || !isUint64(cmd.seq)) return -1;
      n += group + consumer + uint64Field(cmd.seq);
      const items = cmd.kind === 'ack' ? cmd.items : [cmd];
      for (const i of items) {
        const delayMs = cmd.kind === 'nack' ? cmd.delayMs ?? 0 : 0;
        if (!isUint64(i.delivery) || !isUint32(i.attempt) || !isUint32(delayMs)) return -1;
        const body = uint64Field(i.delivery) + uint64Field(i.attempt) + uint64Field(delayMs) + (cmd.kind === 'nack' && cmd.delayMs !== undefined ? 2 : 0);
        sizes.push(body);
        n += 1 + varintBytes(body) + body;
      }
      break;
    }
    case 'expireDeadlines': case 'enforceRetention':
      break;
    case 'deadLettersForwarded':
      if (!isUint64(cmd.firstSeq)) return -1;
      n += uint64Field(cmd.firstSeq);
      break;
    case 'consumerGone': {
      const consumer = stringField(cmd.consumer);
      if (consumer < 0) return -1;
      n += consumer;
      break;
    }
    case 'replay': {
      const group = stringField(cmd.group);
      if (group < 0) return -1;
      n += group;
      if ('offset' in cmd.from) {
        if (!isUint64(cmd.from.offset)) return -1;
        n += uint64Field(cmd.from.offset);
      } else {
        n += (Object.is(cmd.from.timestampMs, 0) ? 0 : 9) + 2;
      }
      break;
    }
    case 'deleteGroup': {
      const group = stringField(cmd.group);
      if (group < 0) return -1;
      n += group;
      break;
    }
    default:
      return assertNever(cmd, 'queue command');
  }
  if (c.fencing !== undefined) {
    const lock = stringField(c.fencing.lock);
    if (lock < 0 || !isUint64(c.fencing.token)) return -1;
    const body = lock + uint64Field(c.fencing.token);
    sizes.push(body);
    n += 1 + varintBytes(body) + body;
  }
  return n;
}

/** Writes the entry's bytes; `sizes` holds what commandSize() pushed, read in the same order. */
class EntryWriter {
  at = 0;
  private next = 0;

  constructor(readonly out: Buffer) {}

  size(): number {
    return sizes[this.next++] as number;
  }

  varint(v: number): void {
    this.at = putVarint(this.out, this.at, v);
  }

  uint(t: number, v: number): void {
    if (v === 0) return;
    this.out[this.at++] = t;
    this.varint(v);
  }

  double(t: number, v: number): void {
    if (Object.is(v, 0)) return;
    this.out[this.at++] = t;
    this.at = this.out.writeDoubleLE(v, this.at);
  }

  bool(t: number, v: boolean): void {
    if (!v) return;
    this.out[this.at++] = t;
    this.out[this.at++] = 1;
  }

  /** A string field; `repeated`: written even when '' (an element of a repeated field). */
  string(t: number, s: string, twoByteTag = false, repeated = false): void {
    if (s === '' && !repeated) return;
    this.out[this.at++] = t;
    if (twoByteTag) this.out[this.at++] = 0x01;
    const n = utf8Length(s);
    this.varint(n);
    this.at += this.out.write(s, this.at, n, n === s.length ? 'latin1' : 'utf8');
  }

  bytes(t: number, b: Uint8Array): void {
    if (b.length === 0) return;
    this.out[this.at++] = t;
    this.varint(b.length);
    this.out.set(b, this.at);
    this.at += b.length;
  }

  /** Opens a nested message of `body` bytes. */
  nested(t: number, body: number): void {
    this.out[this.at++] = t;
    this.varint(body);
  }

  headers(hs: readonly Header[]): void {
    for (const h of hs) {
      const body = stringField(h.name) + bytesField(h.value);
      this.nested(tag.header, body);
      this.string(tag.headerName, h.name);
      this.bytes(tag.headerValue, h.value);
    }
  }

  command(c: LaidCommand): void {
    const cmd = c.cmd;
    this.nested(tag.command, this.size());
    this.uint(tag.kind, queueCommandKinds[cmd.kind]);
    this.double(tag.nowMs, cmd.nowMs);
    switch (cmd.kind) {
      case 'append': {
        if (cmd.producer !== undefined) this.string(tag.producer, cmd.producer);
        this.uint(tag.firstSeq, cmd.firstSeq ?? 0);
        for (const m of cmd.messages) {
          this.nested(tag.message, this.size());
          this.bytes(tag.key, m.key);
          this.bytes(tag.value, m.value);
          this.headers(m.headers);
        }
        break;
      }
      case 'fetch':
        this.string(tag.group, cmd.group);
        this.string(tag.consumer, cmd.consumer);
        this.uint(tag.seq, cmd.seq);
        this.uint(tag.max, cmd.max);
        this.uint(tag.ackDeadlineMs, cmd.ackDeadlineMs ?? 0);
        break;
      case 'ack': case 'nack': case 'extend': {
        this.string(tag.group, cmd.group);
        this.string(tag.consumer, cmd.consumer);
        this.uint(tag.seq, cmd.seq);
        const items = cmd.kind === 'ack' ? cmd.items : [cmd];
        for (const i of items) {
          this.nested(tag.item, this.size());
          this.uint(tag.itemDelivery, i.delivery);
          this.uint(tag.itemAttempt, i.attempt);
          if (cmd.kind === 'nack') {
            this.uint(tag.itemDelayMs, cmd.delayMs ?? 0);
            this.bool(tag.itemHasDelay, cmd.delayMs !== undefined);
          }
        }
        break;
      }
      case 'expireDeadlines': case 'enforceRetention':
        break;
      case 'deadLettersForwarded':
        this.uint(tag.firstSeq, cmd.firstSeq);
        break;
      case 'consumerGone':
        this.string(tag.consumer, cmd.consumer);
        break;
      case 'replay':
        this.string(tag.group, cmd.group);
        break;
      case 'deleteGroup':
        this.string(tag.group, cmd.group);
        break;
      default:
        assertNever(cmd, 'queue command');
    }
    if (c.fencing !== undefined) {
      this.nested(tag.fencing, this.size());
      this.string(tag.fencingLock, c.fencing.lock);
      this.uint(tag.fencingToken, c.fencing.token);
    }
    // Fields 13-16 come after fencing (12), in field order as protobufjs writes them.
    if (cmd.kind === 'replay') {
      if ('offset' in cmd.from) this.uint(tag.replayOffset, cmd.from.offset);
      else {
        this.double(tag.replayTimestampMs, cmd.from.timestampMs);
        this.bool(tag.replayByTime, true);
      }
    }
    if (cmd.kind === 'append' && anyOnlyGroup(cmd.messages)) {
      for (const m of cmd.messages) this.string(tag.onlyGroup, m.onlyGroup ?? '', true, true);
    }
  }

  done(): number {
    return this.next;
  }
}

/** The entry's bytes, or null when protobufjs must write it (see the opening comment). */
export function layQueueEntry(commands: readonly LaidCommand[]): Uint8Array | null {
  sizes.length = 0;
  let total = 0;
  for (const c of commands) {
    const slot = sizes.length;
    sizes.push(0);
    const body = commandSize(c);
    if (body < 0) return null;
    sizes[slot] = body;
    total += 1 + varintBytes(body) + body;
  }
  const w = new EntryWriter(Buffer.allocUnsafe(total));
  for (const c of commands) w.command(c);
  assert(w.at === total && w.done() === sizes.length, `queue entry layout: wrote ${w.at} of ${total} bytes`);
  sizes.length = 0;
  return w.out;
}

// ---------------------------------------------------------------- reading

/**
 * The reader's position and input: one entry is read at a time, start to end, with no
 * call out in between (module state rather than a reader object per entry).
 */
let input: Uint8Array = new Uint8Array(0);
/** Made at the first double read (a publish request has none). */
let view: DataView | null = null;
let at = 0;
/** Set when the bytes are not what this reader takes: the whole entry goes to protobufjs. */
let unusual = false;

const latin1Slice = Buffer.prototype.latin1Slice;
// ignoreBOM: a leading U+FEFF stays part of the string, as protobufjs reads it.
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** A varint of at most `bytesMax` bytes ending by `end`; 0 and `unusual` set otherwise. */
function varint(end: number, bytesMax: number): number {
  let v = 0;
  let scale = 1;
  for (let k = 0; k < bytesMax; k++) {
    if (at >= end) break;
    const b = input[at++] as number;
    v += (b & 0x7f) * scale;
    if (b < 0x80) return v;
    scale *= 128;
  }
  unusual = true;
  return 0;
}

/** uint32 and bool fields as protobufjs reads them: the low 32 bits (of at most 5 bytes here). */
const uint32 = (end: number): number => varint(end, 5) % 0x1_0000_0000;

/** A uint64 up to 2^53 - 1 (8 bytes: every partial sum below 2^53 is exact, a larger value rounds to one past it). */
function uint64(end: number): number {
  const v = varint(end, 8);
  if (!Number.isSafeInteger(v)) unusual = true;
  return v;
}

/** The end of a length-delimited field starting here, within `end`. */
function delimited(end: number): number {
  const n = varint(end, 5);
  if (unusual || at + n > end) {
    unusual = true;
    return at;
  }
  return at + n;
}

function double(end: number): number {
  if (at + 8 > end) {
    unusual = true;
    return 0;
  }
  view ??= new DataView(input.buffer, input.byteOffset, input.byteLength);
  const v = view.getFloat64(at, true);
  at += 8;
  return v;
}

/** A string field: ASCII (every id and name in practice) as Latin-1, anything else strict UTF-8 as protobufjs reads it. */
function string(end: number): string {
  const stop = delimited(end);
  const from = at;
  at = stop;
  if (unusual) return '';
  for (let i = from; i < stop; i++) {
    if ((input[i] as number) >= 0x80) {
      const bytes = input.subarray(from, stop);
      if (!isUtf8(bytes)) {
        unusual = true;
        return '';
      }
      return strictUtf8.decode(bytes);
    }
  }
  return latin1Slice.call(input, from, stop);
}

/** A bytes field: a view of the entry (protobufjs hands out views too). */
function bytes(end: number): Uint8Array {
  const stop = delimited(end);
  const from = at;
  at = stop;
  return input.subarray(from, stop);
}

/** Messages without headers share this list (Message.headers is read-only; frozen, so nothing can add to it). */
const noHeaders: readonly Header[] = Object.freeze([]);
const empty: Uint8Array = new Uint8Array(0);

function header(end: number): Header {
  let name = '';
  let value = empty;
  while (at < end && !unusual) {
    const t = input[at++] as number;
    if (t === tag.headerName) name = string(end);
    else if (t === tag.headerValue) value = bytes(end);
    else unusual = true;
  }
  return { name, value };
}

function message(end: number): Message {
  let key = empty;
  let value = empty;
  let headers: Header[] | null = null;
  while (at < end && !unusual) {
    const t = input[at++] as number;
    if (t === tag.key) key = bytes(end);
    else if (t === tag.value) value = bytes(end);
    else if (t === tag.header) {
      const stop = delimited(end);
      (headers ??= []).push(header(stop));
      at = stop;
    } else unusual = true;
  }
  return { key, value, headers: headers ?? noHeaders };
}

function item(end: number): ItemFields {
  let delivery = 0;
  let attempt = 0;
  let delayMs = 0;
  let hasDelay = false;
  while (at < end && !unusual) {
    const t = input[at++] as number;
    if (t === tag.itemDelivery) delivery = uint64(end);
    else if (t === tag.itemAttempt) attempt = uint32(end);
    else if (t === tag.itemDelayMs) delayMs = uint32(end);
    else if (t === tag.itemHasDelay) hasDelay = uint32(end) !== 0;
    else unusual = true;
  }
  return { delivery, attempt, delayMs, hasDelay };
}

function fencing(end: number): { lock: string; token: number } {
  let lock = '';
  let token = 0;
  while (at < end && !unusual) {
    const t = input[at++] as number;
    if (t === tag.fencingLock) lock = string(end);
    else if (t === tag.fencingToken) token = uint64(end);
    else unusual = true;
  }
  return { lock, token };
}

const noMessages: readonly Message[] = [];
const noItems: readonly ItemFields[] = [];
const noGroups: readonly string[] = [];

function command(end: number): CommandFields {
  const f: CommandFields = {
    kind: 0, nowMs: 0, producer: '', firstSeq: 0, messages: noMessages as Message[], group: '', consumer: '', seq: 0, max: 0, ackDeadlineMs: 0,
    items: noItems as ItemFields[], fencing: null, replayOffset: 0, replayTimestampMs: 0, replayByTime: false, onlyGroup: noGroups as string[],
  };
  while (at < end && !unusual) {
    const t = input[at++] as number;
    switch (t) {
      case tag.kind: f.kind = uint32(end); break;
      case tag.nowMs: f.nowMs = double(end); break;
      case tag.producer: f.producer = string(end); break;
      case tag.firstSeq: f.firstSeq = uint64(end); break;
      case tag.message: {
        const stop = delimited(end);
        if (f.messages === noMessages) f.messages = [];
        f.messages.push(message(stop));
        at = stop;
        break;
      }
      case tag.group: f.group = string(end); break;
      case tag.consumer: f.consumer = string(end); break;
      case tag.seq: f.seq = uint64(end); break;
      case tag.max: f.max = uint32(end); break;
      case tag.ackDeadlineMs: f.ackDeadlineMs = uint32(end); break;
      case tag.item: {
        const stop = delimited(end);
        if (f.items === noItems) f.items = [];
        f.items.push(item(stop));
        at = stop;
        break;
      }
      case tag.fencing: {
        const stop = delimited(end);
        f.fencing = fencing(stop);
        at = stop;
        break;
      }
      case tag.replayOffset: f.replayOffset = uint64(end); break;
      case tag.replayTimestampMs: f.replayTimestampMs = double(end); break;
      case tag.replayByTime: f.replayByTime = uint32(end) !== 0; break;
      case tag.onlyGroup:
        if (at < end && input[at] === 0x01) {
          at++;
          if (f.onlyGroup === noGroups) f.onlyGroup = [];
          f.onlyGroup.push(string(end));
        } else unusual = true;
        break;
      default:
        unusual = true;
    }
  }
  return f;
}

/** The commands' fields of an entry, or null when protobufjs must read it (see the opening comment). */
export function readQueueEntry(entry: Uint8Array): CommandFields[] | null {
  input = entry;
  view = null;
  at = 0;
  unusual = false;
  const out: CommandFields[] = [];
  const end = entry.length;
  while (at < end && !unusual) {
    if (input[at++] !== tag.command) {
      unusual = true;
      break;
    }
    const stop = delimited(end);
    if (unusual) break;
    out.push(command(stop));
    at = stop;
  }
  const ok = !unusual;
  input = empty;
  view = null;
  return ok ? out : null;
}

/** A PublishRequest's fields, absent ones at their defaults (as protobufjs reads them). */
export interface PublishFields {
  readonly topic: string;
  readonly partition: number;
  readonly producer: string;
  readonly firstSeq: number;
  readonly messages: Message[];
  readonly fencing: { readonly lock: string; readonly token: number } | null;
}

/** PublishRequest's tags: the messages (field 5) are QueueMessages, read as an entry's are. */
const publishTag = { topic: 0x0a, partition: 0x10, producer: 0x1a, firstSeq: 0x20, message: 0x2a, fencing: 0x32 } as const;

/** A publish request read by hand, or null when protobufjs must read it (as readQueueEntry()). */
export function readPublishRequest(payload: Uint8Array): PublishFields | null {
  input = payload;
  view = null;
  at = 0;
  unusual = false;
  let topic = '';
  let partition = 0;
  let producer = '';
  let firstSeq = 0;
  const messages: Message[] = [];
  let fence: { lock: string; token: number } | null = null;
  const end = payload.length;
  while (at < end && !unusual) {
    const t = input[at++] as number;
    switch (t) {
      case publishTag.topic: topic = string(end); break;
      case publishTag.partition: partition = uint32(end); break;
      case publishTag.producer: producer = string(end); break;
      case publishTag.firstSeq: firstSeq = uint64(end); break;
      case publishTag.message: {
        const stop = delimited(end);
        messages.push(message(stop));
        at = stop;
        break;
      }
      case publishTag.fencing: {
        const stop = delimited(end);
        fence = fencing(stop);
        at = stop;
        break;
      }
      default:
        unusual = true;
    }
  }
  const ok = !unusual;
  input = empty;
  view = null;
  return ok ? { topic, partition, producer, firstSeq, messages, fencing: fence } : null;
}

/** The bytes of a PublishReply as protobufjs writes them (uint32 fields at their low 32 bits; base offsets are safe integers). */
export function layPublishReply(partition: number, baseOffset: number, count: number, timestampMs: number): Uint8Array | null {
  if (!isUint64(baseOffset)) return null;
  const p = partition >>> 0;
  const c = count >>> 0;
  const size = uint64Field(p) + uint64Field(baseOffset) + uint64Field(c) + (Object.is(timestampMs, 0) ? 0 : 9);
  const w = new EntryWriter(Buffer.allocUnsafe(size));
  w.uint(0x08, p);
  w.uint(0x10, baseOffset);
  w.uint(0x18, c);
  w.double(0x21, timestampMs);
  assert(w.at === size, 'publish reply layout');
  return w.out;
}
