// Where a partition's message bodies live. The state machine (partition.ts) keeps
// offsets and delivery metadata only, so its memory does not grow with body sizes or
// with the retained backlog; bodies go to a MessageStore injected at construction.
// server/ implements it as a per-partition segment store on disk (appended to as
// entries apply, truncated from the front by retention, carried by the Raft snapshot);
// MemoryMessageStore here is the reference implementation for tests and simulations.
//
// Contract: offsets are appended contiguously; the partition decides retention and
// calls truncateBefore(); timestampAt/sizeAt answer for retained offsets without
// reading bodies (a segment index has them), so retention and replay-by-time never
// touch bodies. read() is synchronous (the segment store reads with readSync or from
// its cache); the partition calls it only to hand a dead letter on.

import { assert } from '../assert.js';
import { offset } from '../ids.js';
import { utf8Bytes } from '../locks/table.js';
import type { Offset } from '../ids.js';
import type { Header, Message, StoredMessage } from './commands.js';

export interface MessageStore {
  readonly firstOffset: Offset;
  readonly nextOffset: Offset;
  /** Sum of messageBytes() over retained messages. */
  readonly bytes: number;
  append(at: Offset, timestampMs: number, message: Message): void;
  read(at: Offset): StoredMessage;
  timestampAt(at: Offset): number;
  sizeAt(at: Offset): number;
  /** Forget every message below `at` (retention). */
  truncateBefore(at: Offset): void;
}

/** The size a message counts for in limits and retention: key + value + header names (UTF-8) and values. */
export function messageBytes(m: Message): number {
  let n = m.key.length + m.value.length;
  for (const h of m.headers) n += utf8Bytes(h.name) + h.value.length;
  return n;
}

export interface MemoryStoreSnapshot {
  readonly firstOffset: Offset;
  readonly messages: readonly StoredMessage[];
}

export class MemoryMessageStore implements MessageStore {
  private messages: StoredMessage[] = [];
  private sizes: number[] = [];
  /** messages[0] has offset `first`; entries before `head` are already dropped. */
  private head = 0;
  private first = 0;
  private total = 0;

  get firstOffset(): Offset {
    return offset(this.first);
  }

  get nextOffset(): Offset {
    return offset(this.first + this.messages.length - this.head);
  }

  get bytes(): number {
    return this.total;
  }

  append(at: Offset, timestampMs: number, message: Message): void {
    assert(at === this.nextOffset, `store appends are contiguous: ${at} after ${this.nextOffset}`);
    const stored: StoredMessage = {
      offset: at,
      timestampMs,
      key: message.key,
      value: message.value,
      headers: message.headers.map((h: Header) => ({ name: h.name, value: h.value })),
      ...(message.onlyGroup !== undefined ? { onlyGroup: message.onlyGroup } : {}),
    };
    const size = messageBytes(message);
    this.messages.push(stored);
    this.sizes.push(size);
    this.total += size;
  }

  read(at: Offset): StoredMessage {
    return this.messages[this.slot(at)] as StoredMessage;
  }

  timestampAt(at: Offset): number {
    return (this.messages[this.slot(at)] as StoredMessage).timestampMs;
  }

  sizeAt(at: Offset): number {
    return this.sizes[this.slot(at)] as number;
  }

  truncateBefore(at: Offset): void {
    assert(at >= this.firstOffset && at <= this.nextOffset, 'truncation point within the store');
    while (this.firstOffset < at) {
      this.total -= this.sizes[this.head] as number;
      this.head++;
      this.first++;
    }
    if (this.head > 1024 && this.head * 2 > this.messages.length) {
      this.messages = this.messages.slice(this.head);
      this.sizes = this.sizes.slice(this.head);
      this.head = 0;
    }
  }

  toSnapshot(): MemoryStoreSnapshot {
    return { firstOffset: this.firstOffset, messages: this.messages.slice(this.head) };
  }

  static fromSnapshot(snap: MemoryStoreSnapshot): MemoryMessageStore {
    const s = new MemoryMessageStore();
    s.first = snap.firstOffset;
    for (const m of snap.messages) s.append(m.offset, m.timestampMs, m);
    return s;
  }

  private slot(at: Offset): number {
    assert(Number.isSafeInteger(at) && at >= this.first && at < this.nextOffset, `offset ${at} is retained in the store`);
    return this.head + (at - this.first);
  }
}
