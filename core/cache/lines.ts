// The lines one node caches: state, version, lease, value per key in typed arrays with a
// key->slot index and a free list, and LRU order as an index-linked list over Int32Arrays
// (head = most recently used). Bounded by entry count and bytes; the node's protocol
// code (node.ts) decides what to evict, this table only keeps order and totals. Every
// touch records when (usedMs), so the lines used since a time are a prefix of the LRU
// order: a renewal round walks from the head and stops at the first older line.

import { assert } from '../assert.js';
import { St, keyBytes, stateCount, valueBytes } from './messages.js';
import type { CacheValue } from './messages.js';

export class CacheLines {
  readonly entriesMax: number;
  readonly bytesMax: number;
  private readonly index = new Map<string, number>();
  private readonly keys: (string | null)[];
  private readonly values: CacheValue[];
  private readonly st: Uint8Array;
  private readonly ver: Uint32Array;
  private readonly lease: Float64Array;
  private readonly renewSent: Float64Array;
  private readonly used: Float64Array;
  private readonly dirtyFlag: Uint8Array;
  private readonly ttlFlag: Uint8Array;
  /** The node's index of the line's home, and the node's volume period of that home the line was granted in. */
  private readonly homeIdx: Uint8Array;
  private readonly periodOf: Uint32Array;
  private readonly size: Uint32Array;
  private readonly prev: Int32Array;
  private readonly next: Int32Array;
  private readonly free: Int32Array;
  private freeCount: number;
  private head = -1;
  private tail = -1;
  private bytesTotal = 0;
  /** transitions[from * stateCount + to]: every state change of a line, I for absent. */
  readonly transitions = new Uint32Array(stateCount * stateCount);

  constructor(entriesMax: number, bytesMax: number) {
    assert(Number.isInteger(entriesMax) && entriesMax > 0, 'line entriesMax');
    assert(Number.isInteger(bytesMax) && bytesMax > 0, 'line bytesMax');
    this.entriesMax = entriesMax;
    this.bytesMax = bytesMax;
    this.keys = new Array<string | null>(entriesMax).fill(null);
    this.values = new Array<CacheValue>(entriesMax).fill(null);
    this.st = new Uint8Array(entriesMax);
    this.ver = new Uint32Array(entriesMax);
    this.lease = new Float64Array(entriesMax);
    this.renewSent = new Float64Array(entriesMax);
    this.used = new Float64Array(entriesMax);
    this.dirtyFlag = new Uint8Array(entriesMax);
    this.ttlFlag = new Uint8Array(entriesMax);
    this.homeIdx = new Uint8Array(entriesMax);
    this.periodOf = new Uint32Array(entriesMax);
    this.size = new Uint32Array(entriesMax);
    this.prev = new Int32Array(entriesMax).fill(-1);
    this.next = new Int32Array(entriesMax).fill(-1);
    this.free = new Int32Array(entriesMax);
    for (let i = 0; i < entriesMax; i++) this.free[i] = entriesMax - 1 - i;
    this.freeCount = entriesMax;
  }

  get count(): number {
    return this.index.size;
  }

  get bytes(): number {
    return this.bytesTotal;
  }

  find(key: string): number {
    return this.index.get(key) ?? -1;
  }

  key(slot: number): string {
    return this.keys[slot] as string;
  }
  value(slot: number): CacheValue {
    return this.values[slot] as CacheValue;
  }
  state(slot: number): St {
    return this.st[slot] as St;
  }
  version(slot: number): number {
    return this.ver[slot] as number;
  }
  leaseUntilMs(slot: number): number {
    return this.lease[slot] as number;
  }
  renewSentMs(slot: number): number {
    return this.renewSent[slot] as number;
  }
  /** When the line was last inserted or touched. */
  usedMs(slot: number): number {
    return this.used[slot] as number;
  }
  dirty(slot: number): boolean {
    return this.dirtyFlag[slot] === 1;
  }
  hasTtl(slot: number): boolean {
    return this.ttlFlag[slot] === 1;
  }
  home(slot: number): number {
    return this.homeIdx[slot] as number;
  }
  period(slot: number): number {
    return this.periodOf[slot] as number;
  }

  /** Whether `extraLines` more lines of `extraBytes` in all fit within both bounds. */
  fits(extraLines: number, extraBytes: number): boolean {
    return this.index.size + extraLines <= this.entriesMax && this.bytesTotal + extraBytes <= this.bytesMax;
  }

  /** Bytes a line of this key and value takes toward the bound. */
  static bytesOf(key: string, value: CacheValue): number {
    return keyBytes(key) + valueBytes(value);
  }

  /** Adds a line at the LRU head, used at nowMs; the caller made room. */
  insert(key: string, state: St, version: number, leaseUntilMs: number, value: CacheValue, ttl: boolean, nowMs: number): number {
    assert(!this.index.has(key), 'insert of a key already cached');
    assert(state !== St.I && this.freeCount > 0, 'insert needs a valid state and a free slot');
    const bytes = CacheLines.bytesOf(key, value);
    assert(this.bytesTotal + bytes <= this.bytesMax, 'insert beyond the byte bound');
    const slot = this.free[--this.freeCount] as number;
    this.index.set(key, slot);
    this.keys[slot] = key;
    this.values[slot] = value;
    this.st[slot] = state;
    this.ver[slot] = version;
    this.lease[slot] = leaseUntilMs;
    this.renewSent[slot] = -Infinity;
    this.used[slot] = nowMs;
    this.dirtyFlag[slot] = 0;
    this.ttlFlag[slot] = ttl ? 1 : 0;
    this.homeIdx[slot] = 0;
    this.periodOf[slot] = 0;
    this.size[slot] = bytes;
    this.bytesTotal += bytes;
    this.link(slot);
    this.count1(St.I, state);
    return slot;
  }

  remove(slot: number): void {
    const key = this.keys[slot];
    assert(key !== null && key !== undefined, 'remove of a free slot');
    this.count1(this.st[slot] as St, St.I);
    this.index.delete(key);
    this.unlink(slot);
    this.bytesTotal -= this.size[slot] as number;
    this.keys[slot] = null;
    this.values[slot] = null;
    this.st[slot] = St.I;
    this.free[this.freeCount++] = slot;
    assert(this.bytesTotal >= 0, 'byte total never negative');
  }

  setState(slot: number, state: St): void {
    assert(state !== St.I, 'a line leaves by remove(), not by state I');
    const from = this.st[slot] as St;
    if (from === state) return;
    this.count1(from, state);
    this.st[slot] = state;
  }

  /** Replaces the value; the byte total may exceed the bound until the caller evicts. */
  setValue(slot: number, value: CacheValue): void {
    const bytes = CacheLines.bytesOf(this.keys[slot] as string, value);
    this.bytesTotal += bytes - (this.size[slot] as number);
    this.size[slot] = bytes;
    this.values[slot] = value;
  }

  setVersion(slot: number, version: number): void {
    this.ver[slot] = version;
  }
  setLease(slot: number, leaseUntilMs: number): void {
    this.lease[slot] = leaseUntilMs;
  }
  setRenewSent(slot: number, ms: number): void {
    this.renewSent[slot] = ms;
  }
  setDirty(slot: number, dirty: boolean): void {
    this.dirtyFlag[slot] = dirty ? 1 : 0;
  }
  setTtl(slot: number, ttl: boolean): void {
    this.ttlFlag[slot] = ttl ? 1 : 0;
  }
  /** Which home's volume lease the line is served under, and in which of the node's periods of it. */
  setVolume(slot: number, home: number, period: number): void {
    this.homeIdx[slot] = home;
    this.periodOf[slot] = period;
  }

  /** Marks the line most recently used, at nowMs (a node's clock never goes back). */
  touch(slot: number, nowMs: number): void {
    this.used[slot] = nowMs;
    if (this.head === slot) return;
    this.unlink(slot);
    this.link(slot);
  }

  /** Least recently used line, or -1. */
  lru(): number {
    return this.tail;
  }

  /** The next more recently used line after `slot`, or -1. */
  newer(slot: number): number {
    return this.prev[slot] as number;
  }

  /** Most recently used line, or -1. */
  mru(): number {
    return this.head;
  }

  /** The next less recently used line after `slot`, or -1. */
  older(slot: number): number {
    return this.next[slot] as number;
  }

  /** Keys from most to least recently used (tests, console). */
  *keysByRecency(): IterableIterator<string> {
    for (let s = this.head; s >= 0; s = this.next[s] as number) yield this.keys[s] as string;
  }

  private count1(from: St, to: St): void {
    const i = from * stateCount + to;
    this.transitions[i] = (this.transitions[i] as number) + 1;
  }

  private link(slot: number): void {
    this.prev[slot] = -1;
    this.next[slot] = this.head;
    if (this.head >= 0) this.prev[this.head] = slot;
    this.head = slot;
    if (this.tail < 0) this.tail = slot;
  }

  private unlink(slot: number): void {
    const p = this.prev[slot] as number;
    const n = this.next[slot] as number;
    if (p >= 0) this.next[p] = n;
    else this.head = n;
    if (n >= 0) this.prev[n] = p;
    else this.tail = p;
    this.prev[slot] = -1;
    this.next[slot] = -1;
  }
}
