// A home's "memory" is a backing store it talks to by value: the directory hands out
// read/write operations in ready() and takes their completions back as inputs
// (CacheHome.memoryRead / memoryWritten). Redis behind the wiring answers later; this
// in-process map answers at once, and is the default backing and the test double.

import type { CacheValue } from './messages.js';

/** What memory holds per key. Deleted keys keep their version (a tombstone) so versions never go back. */
export interface MemoryRecord {
  readonly value: CacheValue;
  readonly version: number;
  /** Home clock; 0 = no TTL. */
  readonly expiresAtMs: number;
}

export type MemoryOp =
  | { readonly kind: 'read'; readonly key: string }
  | { readonly kind: 'write'; readonly key: string; readonly record: MemoryRecord };

export class InMemoryBacking {
  private readonly records = new Map<string, MemoryRecord>();
  reads = 0;
  writes = 0;

  read(key: string): MemoryRecord | null {
    this.reads++;
    return this.records.get(key) ?? null;
  }

  write(key: string, record: MemoryRecord): void {
    this.writes++;
    this.records.set(key, record);
  }

  delete(key: string): void {
    this.records.delete(key);
  }

  get size(): number {
    return this.records.size;
  }

  /** Test and console view: every record. */
  entries(): IterableIterator<[string, MemoryRecord]> {
    return this.records.entries();
  }
}
