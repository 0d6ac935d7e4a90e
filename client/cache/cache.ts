// client.cache: get / set / delete / flush / stats against the node the client is
// attached to (its first reachable seed), which serves hits from its own lines. Requests
// issued in one turn leave in one write (the connection corks per turn). A request the
// node refused for now (UNAVAILABLE while the cache ring changes, TOO_MANY_REQUESTS) is
// sent again, on another node if this one is gone. A get is also sent again after its
// connection closed. A write is not: once sent it may have been applied, and sending it
// again could apply it a second time after another client's write (the 30-minute fault
// run caught exactly that), so a write whose fate is unknown rejects (CONNECTION_CLOSED,
// or TIMEOUT from the node) and the caller decides.

import { cacheClientWaitMarginMs, cacheKeyBytesMax, cacheTtlMsMax, cacheValueBytesMax } from '../../core/constants.js';
import { DsyncError, ErrorCode } from '../../protocol/errors.js';
import { Opcode } from '../../protocol/frame.js';
import { schema } from '../../protocol/index.js';
import type { Router } from '../transport/router.js';

export interface CacheSetOptions extends CacheFenceOptions {
  /** Expire the value after this many ms (default: never). */
  readonly ttlMs?: number;
}

/**
 * A fenced write: the fencing token of a lock this client holds (`lock.token`). The key's home
 * refuses the write with FENCED when it has seen a newer token for the same lock, so a holder
 * whose lock was taken over cannot overwrite its successor's writes. Without `lock`, tokens are
 * compared per key.
 */
export interface CacheFenceOptions {
  readonly fencingToken?: number;
  /** The lock's name (default: tokens are compared per key). */
  readonly lock?: string;
}

export interface CacheStats {
  readonly nodeId: string;
  readonly protocol: string;
  readonly writePolicy: string;
  readonly backing: string;
  /** hits, misses, hitRatio, transitions by state pair, invalidations, write-backs, evictions, lease reclaims, ... */
  readonly counters: Readonly<Record<string, number>>;
}

export interface CacheApi {
  /** The value (bytes), or null when the key has none. */
  get(key: string): Promise<Uint8Array | null>;
  /** The value as UTF-8 text, or null. */
  getString(key: string): Promise<string | null>;
  set(key: string, value: string | Uint8Array, opts?: CacheSetOptions): Promise<void>;
  delete(key: string, opts?: CacheFenceOptions): Promise<void>;
  /** Write-back: sends this node's dirty lines to their homes' memory. */
  flush(): Promise<void>;
  stats(): Promise<CacheStats>;
}

/** Refusals made before the operation did anything: any operation may be sent again. */
const refusedBeforeApplying = new Set<string>([ErrorCode.UNAVAILABLE, ErrorCode.TOO_MANY_REQUESTS]);
const attemptsMax = 8;
const enc = new TextEncoder();
// ignoreBOM: a value that begins with U+FEFF reads back whole.
const dec = new TextDecoder('utf-8', { ignoreBOM: true });
const surrogate = /[\uD800-\uDFFF]/;

export class CacheClient implements CacheApi {
  constructor(private readonly router: Router, private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms))) {}

  get(key: string): Promise<Uint8Array | null> {
    let payload: Uint8Array;
    try {
      payload = encodeGetRequest(checkKey(key));
    } catch (err) {
      return Promise.reject(err);
    }
    return this.request(Opcode.CacheGet, payload, true).then(decodeGetReply);
  }

  async getString(key: string): Promise<string | null> {
    const v = await this.get(key);
    return v === null ? null : dec.decode(v);
  }

  async set(key: string, value: string | Uint8Array, opts: CacheSetOptions = {}): Promise<void> {
    const bytes = typeof value === 'string' ? enc.encode(value) : value;
    if (bytes.byteLength > cacheValueBytesMax) throw new DsyncError(ErrorCode.BAD_REQUEST, `cache value of ${bytes.byteLength} bytes exceeds the ${cacheValueBytesMax}-byte limit`);
    const ttlMs = opts.ttlMs ?? 0;
    if (!Number.isInteger(ttlMs) || ttlMs < 0 || ttlMs > cacheTtlMsMax) throw new DsyncError(ErrorCode.BAD_REQUEST, `ttlMs must be an integer from 0 to ${cacheTtlMsMax}`);
    await this.request(Opcode.CacheSet, schema.CacheRequest.encode({ key: checkKey(key), value: bytes, hasValue: true, ttlMs, waitMs: this.writeWaitMs(), ...fenceFields(opts) }).finish());
  }

  async delete(key: string, opts: CacheFenceOptions = {}): Promise<void> {
    await this.request(Opcode.CacheDelete, schema.CacheRequest.encode({ key: checkKey(key), waitMs: this.writeWaitMs(), ...fenceFields(opts) }).finish());
  }

  /** How long the node may keep trying a write: this client's request deadline, less the time its answer needs to come back. */
  private writeWaitMs(): number {
    return Math.max(0, this.router.requestTimeoutMs - cacheClientWaitMarginMs);
  }

  async flush(): Promise<void> {
    await this.request(Opcode.CacheFlush, schema.CacheFlushRequest.encode({}).finish());
  }

  async stats(): Promise<CacheStats> {
    const r = schema.CacheStatsReply.decode(await this.request(Opcode.CacheStats, schema.CacheStatsRequest.encode({}).finish(), true));
    return { nodeId: r.nodeId ?? '', protocol: r.protocol ?? '', writePolicy: r.writePolicy ?? '', backing: r.backing ?? '',
      counters: Object.fromEntries((r.counters ?? []).map((c) => [c.name ?? '', Number(c.value ?? 0)])) };
  }

  /** `readOnly`: the request has no effect, so a closed connection's answer may be asked for again. */
  private async request(opcode: number, payload: Uint8Array, readOnly = false): Promise<Uint8Array> {
    let backoffMs = 50;
    for (let attempt = 1; ; attempt++) {
      try {
        let conn = this.router.openConnectionNow();
        if (conn === null) {
          try {
            conn = await this.router.anyConnection();
          } catch (err) {
            // Nothing was sent: as safe to repeat as a refusal.
            throw err instanceof DsyncError && err.code === ErrorCode.CONNECTION_CLOSED
              ? new DsyncError(ErrorCode.UNAVAILABLE, err.message, { retryAfterMs: err.retryAfterMs }) : err;
          }
        }
        return await conn.request(opcode, payload, this.router.requestTimeoutMs);
      } catch (err) {
        const again = err instanceof DsyncError && (refusedBeforeApplying.has(err.code) || (readOnly && err.code === ErrorCode.CONNECTION_CLOSED));
        if (!again || attempt >= attemptsMax) throw err;
        await this.sleep(Math.max(backoffMs, err.retryAfterMs));
        backoffMs = Math.min(500, backoffMs * 2);
      }
    }
  }
}

function fenceFields(opts: CacheFenceOptions): { fencingToken?: number; lock?: string } {
  if (opts.fencingToken === undefined) {
    if (opts.lock !== undefined) throw new DsyncError(ErrorCode.BAD_REQUEST, 'a cache write names a lock but carries no fencingToken');
    return {};
  }
  if (!Number.isSafeInteger(opts.fencingToken) || opts.fencingToken <= 0) throw new DsyncError(ErrorCode.BAD_REQUEST, 'fencingToken must be a positive integer (a lock\'s token)');
  if (opts.lock !== undefined && enc.encode(opts.lock).byteLength > cacheKeyBytesMax) throw new DsyncError(ErrorCode.BAD_REQUEST, `lock name over ${cacheKeyBytesMax} bytes`);
  return { fencingToken: opts.fencingToken, ...(opts.lock === undefined ? {} : { lock: opts.lock }) };
}

/**
 * A get's CacheRequest ({ key }) laid out by hand: the bytes protobufjs writes (tag 0x0a,
 * varint length, UTF-8 key; test/unit/client/cache-codec.test.ts), without its writer
 * objects. The key is never empty (checkKey), so the field is always present. A key with
 * surrogates goes through protobufjs: its UTF-8 writer keeps a lone surrogate where Buffer
 * writes U+FFFD, and a get must name the key exactly as a set (protobufjs) names it.
 */
export function encodeGetRequest(key: string): Uint8Array {
  const n = Buffer.byteLength(key, 'utf8');
  if (n !== key.length && surrogate.test(key)) return schema.CacheRequest.encode({ key }).finish();
  const lenBytes = n < 0x80 ? 1 : n < 0x4000 ? 2 : 3;
  const out = Buffer.allocUnsafe(1 + lenBytes + n);
  out[0] = 0x0a;
  let at = 1;
  let rest = n;
  while (rest >= 0x80) {
    out[at++] = (rest & 0x7f) | 0x80;
    rest >>>= 7;
  }
  out[at++] = rest;
  out.write(key, at, 'utf8');
  return out;
}

/**
 * A get's CacheReply read by hand when it is what nodes send (nothing: absent; found; found
 * and a value that ends the payload); anything else goes through the generated decoder.
 * The value is a view of the payload, as the generated decoder's is.
 */
export function decodeGetReply(payload: Uint8Array): Uint8Array | null {
  if (payload.length === 0) return null;
  if (payload[0] === 0x08 && payload[1] === 0x01) {
    if (payload.length === 2) return new Uint8Array(0);
    if (payload[2] === 0x12) {
      let len = 0;
      let shift = 0;
      let at = 3;
      for (; at < payload.length && at < 8; at++) {
        const b = payload[at] as number;
        len += (b & 0x7f) * 2 ** shift;
        shift += 7;
        if (b < 0x80) {
          at++;
          if (at + len === payload.length) return payload.subarray(at);
          break;
        }
      }
    }
  }
  const reply = schema.CacheReply.decode(payload);
  return reply.found === true ? reply.value ?? new Uint8Array(0) : null;
}

function checkKey(key: string): string {
  if (typeof key !== 'string' || key === '') throw new DsyncError(ErrorCode.BAD_REQUEST, 'cache key must be a non-empty string');
  if (key.length * 3 <= cacheKeyBytesMax) return key; // UTF-8 takes at most 3 bytes per UTF-16 unit: surely within the limit
  const bytes = enc.encode(key).byteLength;
  if (bytes > cacheKeyBytesMax) throw new DsyncError(ErrorCode.BAD_REQUEST, `cache key of ${bytes} bytes exceeds the ${cacheKeyBytesMax}-byte limit`);
  return key;
}
