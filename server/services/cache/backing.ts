// The home's "memory" behind core/cache's memory operations: in-process (a map, the
// default) or Redis (CACHE_BACKING=redis://..., through ioredis). A record is stored as
// version (u32 BE) + expiry (f64 BE, home clock 0 = none; Redis also gets PX) + a
// has-value byte + the value bytes, so versions survive a home's restart and never go back.
// Redis is shared by every home, so its operations are fenced by the cluster's id and the
// cache ring's generation: a home of an older generation, or of a cluster that a newer one
// took the store from, can neither overwrite what a newer home wrote nor read around it
// (RedisBacking).

import { Redis } from 'ioredis';
import { InMemoryBacking } from '../../../core/cache/backing.js';
import type { MemoryRecord } from '../../../core/cache/backing.js';

export interface CacheBackingStore {
  /** 'memory' or the Redis URL without credentials. */
  readonly describe: string;
  /**
   * A record, or null when memory has none; a Promise when it answers later. `generation`:
   * the cache ring generation of the home asking (a shared store refuses older ones with
   * BackingFencedError).
   */
  read(key: string, generation: number): MemoryRecord | null | Promise<MemoryRecord | null>;
  /** Stores it; a Promise when durable later. Rejects on failure (the caller retries) or with BackingFencedError (never retried). */
  write(key: string, record: MemoryRecord, generation: number): void | Promise<void>;
  /** Forgets the keys this home is no longer home of (in-process only: Redis is shared by every home). */
  keepOnly(keep: (key: string) => boolean): void;
  /** null while the store is reachable; else why not (named in the errors clients get). */
  problem(): string | null;
  close(): Promise<void>;
}

/**
 * A shared store refused a home's operation: a home of a newer ring generation has used the
 * store since (newerGeneration), or another cluster took the store from this one (retiredCluster).
 */
export class BackingFencedError extends Error {
  constructor(readonly generation: number, readonly newerGeneration: number, readonly retiredCluster = '') {
    super(retiredCluster === ''
      ? `cache ring generation ${generation} is fenced off the backing store: generation ${newerGeneration} has used it`
      : `cluster ${retiredCluster} is fenced off the backing store: another cluster has taken it over`);
  }
}

/** In-process memory belongs to this node alone: no other home shares it, so there is nothing to fence. */
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
 * Redis as memory: one string per key under `prefix`. Expiry times are home clock values,
 * which another home does not share: a record read by a new home keeps its value only while
 * Redis still has it (SET ... PX ttl left), and the expiry is then reset to "none" at the
 * reader (Redis expires it). ioredis reconnects by itself; a failed command rejects and the
 * service retries it.
 *
 * Fencing: `${prefix}@generation` holds the highest cache ring generation that has used
 * the store. Every read and write is one Lua script that raises it to the caller's
 * generation, or refuses the caller (BackingFencedError) when it is already higher; Redis
 * runs a script atomically. A key's new home reads the key before it grants or writes
 * anything (core/cache/home.ts creates an entry by loading it), so once it has read, every
 * write of an older home is refused: one still in flight (ioredis's offline queue), or
 * retried after Redis came back, cannot overwrite what the new home wrote, and the old home
 * never acknowledges it (its clients get TIMEOUT: may or may not have been applied, and it
 * was not). The generation is cluster-wide, so the fence is one key for the whole store.
 *
 * Generations are per cluster: a brand-new cluster counts from 1 again. So the store also
 * records which cluster owns it, `${prefix}@cluster` (group 0's cluster id, etcd's cluster
 * ID), and the ids it was taken from, the set `${prefix}@retired`. A home of another
 * cluster takes the store over: the owner it replaces is retired, and the generation
 * becomes the newcomer's. A home of a retired cluster is refused for good (a stale home of
 * the old cluster, or the old cluster itself if it still runs against this Redis: the
 * newest cluster to use a store wins it). What the old cluster left in Redis stays readable.
 * A store with no owner yet is claimed under the generation fence, not taken over: one a
 * release before cluster ids used holds only `@generation`, and a stale home of that same
 * cluster, upgraded, must still be refused below it.
 * Limits: a cluster of a release before cluster ids never sets or checks `@cluster`, so its
 * homes are fenced by the generation alone; with Redis Cluster every fence key and the
 * record would need one hash slot, so this assumes one Redis.
 * KEYS: generation, cluster, retired, record. ARGV: cluster id, generation, then for writes
 * the body and the PX ms (0: none). Answers {1, body or false} or {0, newer generation} or
 * {0, 'retired'}.
 */
const fenceScript = `
local me = ARGV[1]
local mine = tonumber(ARGV[2])
if redis.call('SISMEMBER', KEYS[3], me) == 1 then return {0, 'retired'} end
local owner = redis.call('GET', KEYS[2])
if owner and owner ~= me then
  redis.call('SADD', KEYS[3], owner)
  redis.call('SET', KEYS[2], me)
  redis.call('SET', KEYS[1], ARGV[2])
else
  local g = tonumber(redis.call('GET', KEYS[1]) or '0')
  if g > mine then return {0, tostring(g)} end
  if g < mine then redis.call('SET', KEYS[1], ARGV[2]) end
  if not owner then redis.call('SET', KEYS[2], me) end
end
`;
const fencedReadScript = `${fenceScript}
return {1, redis.call('GET', KEYS[4])}
`;
const fencedWriteScript = `${fenceScript}
if ARGV[4] == '0' then redis.call('SET', KEYS[4], ARGV[3]) else redis.call('SET', KEYS[4], ARGV[3], 'PX', ARGV[4]) end
return {1, false}
`;

interface FencedRedis extends Redis {
  /** ioredis' Buffer variant of a defined command: bulk replies as Buffers (records are binary). */
  dsyncFencedReadBuffer(generationKey: string, clusterKey: string, retiredKey: string, key: string, clusterId: string, generation: number): Promise<[number, Buffer | null]>;
  dsyncFencedWrite(generationKey: string, clusterKey: string, retiredKey: string, key: string, clusterId: string, generation: number, body: Buffer,
    pxMs: number): Promise<[number, Buffer | null]>;
}

export interface RedisBackingOptions {
  /** Prefix of every key (default `dsync:cache:`). */
  readonly prefix?: string;
  /**
   * This cluster's id (group 0's); '' while not known, when operations fail and are
   * retried. Absent: the store is fenced by the generation alone, under the unnamed owner ''.
   */
  readonly clusterId?: () => string;
}

function fenced(clusterId: string, generation: number, why: string): BackingFencedError {
  return why === 'retired' ? new BackingFencedError(generation, 0, clusterId === '' ? '(unnamed)' : clusterId) : new BackingFencedError(generation, Number(why));
}

export class RedisBacking implements CacheBackingStore {
  readonly describe: string;
  private readonly redis: FencedRedis;
  private readonly prefix: string;
  private readonly fenceKeys: readonly [string, string, string];
  private readonly clusterId: () => string;

  constructor(url: string, private readonly nowMs: () => number, opts: RedisBackingOptions = {}) {
    const u = new URL(url);
    this.describe = `redis://${u.host}${u.pathname === '/' ? '' : u.pathname}`;
    const prefix = opts.prefix ?? 'dsync:cache:';
    this.prefix = prefix;
    this.fenceKeys = [`${prefix}@generation`, `${prefix}@cluster`, `${prefix}@retired`];
    const clusterId = opts.clusterId;
    this.clusterId = clusterId === undefined ? () => '' : () => {
      const id = clusterId();
      // Never touch the store unnamed: '' would take it over from this very cluster's homes.
      if (id === '') throw new Error('the cluster id is not known yet (group 0 has not applied it); retrying');
      return id;
    };
    const redis = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 1, enableOfflineQueue: true });
    redis.on('error', () => {}); // reported by the failing commands; reconnects on its own
    // ioredis sends EVALSHA and falls back to EVAL once per connection when the script is not loaded.
    redis.defineCommand('dsyncFencedRead', { numberOfKeys: 4, lua: fencedReadScript });
    redis.defineCommand('dsyncFencedWrite', { numberOfKeys: 4, lua: fencedWriteScript });
    this.redis = redis as FencedRedis;
  }

  async read(key: string, generation: number): Promise<MemoryRecord | null> {
    const id = this.clusterId();
    const [ok, b] = await this.redis.dsyncFencedReadBuffer(...this.fenceKeys, this.prefix + key, id, generation);
    if (ok !== 1) throw fenced(id, generation, String(b));
    if (b === null) return null;
    const r = decodeRecord(b);
    if (r === null) return null;
    // Another home's clock: Redis keeps the deadline (PX); here the key has none.
    return r.expiresAtMs > 0 ? { ...r, expiresAtMs: 0 } : r;
  }

  async write(key: string, record: MemoryRecord, generation: number): Promise<void> {
    const body = encodeRecord(record);
    const pxMs = record.expiresAtMs > 0 ? Math.max(1, Math.ceil(record.expiresAtMs - this.nowMs())) : 0;
    const id = this.clusterId();
    const [ok, newer] = await this.redis.dsyncFencedWrite(...this.fenceKeys, this.prefix + key, id, generation, body, pxMs);
    if (ok !== 1) throw fenced(id, generation, String(newer));
  }

  keepOnly(): void {}

  problem(): string | null {
    return this.redis.status === 'ready' ? null : `not connected (${this.redis.status})`;
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}
