// The home's "memory" behind core/cache's memory operations: in-process (a map, the
// default) or Redis (CACHE_BACKING=redis://..., through ioredis). A record is stored as
// version (u32 BE) + expiry (f64 BE, home clock 0 = none; Redis also gets PX) + a
// has-value byte + the value bytes, so versions survive a home's restart and never go back.

import { Redis } from 'ioredis';
import { InMemoryBacking } from '../../../core/cache/backing.js';
import type { MemoryRecord } from '../../../core/cache/backing.js';

export interface CacheBackingStore {
  /** 'memory' or the Redis URL without credentials. */
  readonly describe: string;
  /** A record, or null when memory has none; a Promise when it answers later. */
  read(key: string): MemoryRecord | null | Promise<MemoryRecord | null>;
  /** Stores it; a Promise when durable later. Rejects on failure (the caller retries). */
  write(key: string, record: MemoryRecord): void | Promise<void>;
  /** Forgets the keys this home is no longer home of (in-process only: Redis is shared by every home). */
  keepOnly(keep: (key: string) => boolean): void;
  /** null while the store is reachable; else why not (named in the errors clients get). */
  problem(): string | null;
  close(): Promise<void>;
}

export class InProcessBacking implements CacheBackingStore {
  readonly describe = 'memory';
  private readonly map = new InMemoryBacking();

  problem(): null {
    return null;
  }
  private readonly dropped = new Set<string>();

  read(key: string): MemoryRecord | null {
    return this.map.read(key);
  }

  write(key: string, record: MemoryRecord): void {
    this.map.write(key, record);
  }

  keepOnly(keep: (key: string) => boolean): void {
    for (const [key] of this.map.entries()) if (!keep(key)) this.dropped.add(key);
    for (const key of this.dropped) this.map.delete(key);
    this.dropped.clear();
  }

  get size(): number {
    return this.map.size;
  }

  async close(): Promise<void> {}
}

const headerBytes = 4 + 8 + 1;

export function encodeRecord(r: MemoryRecord): Buffer {
  const value = r.value ?? new Uint8Array(0);
  const out = Buffer.allocUnsafe(headerBytes + value.byteLength);
  out.writeUInt32BE(r.version, 0);
  out.writeDoubleBE(r.expiresAtMs, 4);
  out[12] = r.value === null ? 0 : 1;
  out.set(value, headerBytes);
  return out;
}

export function decodeRecord(b: Buffer): MemoryRecord | null {
  if (b.byteLength < headerBytes) return null;
  const has = b[12] === 1;
  return { version: b.readUInt32BE(0), expiresAtMs: b.readDoubleBE(4), value: has ? new Uint8Array(b.subarray(headerBytes)) : null };
}

/**
 * Redis as memory: GET/SET of one string per key under `prefix`. Expiry times are home
 * clock values, which another home does not share: a record read by a new home keeps its
 * value only while Redis still has it (SET ... PX ttl left), and the expiry is then reset
 * to "none" at the reader (Redis expires it). ioredis reconnects by itself; a failed
 * command rejects and the service retries it.
 */
export class RedisBacking implements CacheBackingStore {
  readonly describe: string;
  private readonly redis: Redis;
  private readonly prefix: string;

  constructor(url: string, private readonly nowMs: () => number, prefix = 'dsync:cache:') {
    const u = new URL(url);
    this.describe = `redis://${u.host}${u.pathname === '/' ? '' : u.pathname}`;
    this.prefix = prefix;
    this.redis = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 1, enableOfflineQueue: true });
    this.redis.on('error', () => {}); // reported by the failing commands; reconnects on its own
  }

  async read(key: string): Promise<MemoryRecord | null> {
    const b = await this.redis.getBuffer(this.prefix + key);
    if (b === null) return null;
    const r = decodeRecord(b);
    if (r === null) return null;
    // Another home's clock: Redis keeps the deadline (PX); here the key has none.
    return r.expiresAtMs > 0 ? { ...r, expiresAtMs: 0 } : r;
  }

  async write(key: string, record: MemoryRecord): Promise<void> {
    const body = encodeRecord(record);
    if (record.expiresAtMs > 0) {
      const leftMs = Math.max(1, Math.ceil(record.expiresAtMs - this.nowMs()));
      await this.redis.set(this.prefix + key, body, 'PX', leftMs);
    } else {
      await this.redis.set(this.prefix + key, body);
    }
  }

  keepOnly(): void {}

  problem(): string | null {
    return this.redis.status === 'ready' ? null : `not connected (${this.redis.status})`;
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}
