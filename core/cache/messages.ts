// The vocabulary of the coherent cache: line states, configuration, and the plain
// messages a node's cache and a key's home exchange. step() takes these, ready() hands them out.
//
// Time in a message is always in ONE clock's domain, never compared across nodes:
// `sentMs` is the requester's clock when it sent the request, and `leaseUntilMs` in a
// reply is computed by the home in the requester's domain (sentMs + lease - drift
// margin, capped by the key's TTL). The home keeps its own expiry on its own clock from
// the moment it granted, which is later than sentMs, so the node stops serving first.

import type { Fence } from './fence.js';
import { assert } from '../assert.js';
import {
  cacheLeaseMsMax,
  cacheLeaseMsMin,
  cacheLeaseMsDefault,
  cacheRetryMsDefault,
  cacheRetryMsMin,
} from '../constants.js';
import type { CacheNodeIndex } from '../ids.js';

/** MOESI states as small ints (they live in Uint8Arrays): I=0 S=1 E=2 M=3 O=4. */
export const St = { I: 0, S: 1, E: 2, M: 3, O: 4 } as const;
export type St = (typeof St)[keyof typeof St];
export const stateNames = ['I', 'S', 'E', 'M', 'O'] as const;
export const stateCount = 5;

/** A value: bytes, or null when the key is absent (never set, deleted, expired). */
export type CacheValue = Uint8Array | null;

export interface CacheConfig {
  /** MOESI adds O (dirty and shared): a downgraded dirty owner keeps its data and memory is not written. */
  readonly protocol: 'MESI' | 'MOESI';
  /** write-through: a write completes once home memory has it. write-back: M lines reach memory on eviction, downgrade, flush. */
  readonly writePolicy: 'write-through' | 'write-back';
  /** invalidate: other copies are invalidated on a write. update: the home also pushes written values to the invalidated sharers. */
  readonly propagation: 'invalidate' | 'update';
  readonly leaseMs: number;
  /** Resend period of an unanswered request (node) or invalidation (home). */
  readonly retryMs: number;
}

export const cacheConfigDefault: CacheConfig = {
  protocol: 'MESI',
  writePolicy: 'write-through',
  propagation: 'invalidate',
  leaseMs: cacheLeaseMsDefault,
  retryMs: cacheRetryMsDefault,
};

/** Bad configuration is an operating error: a sentence a person can act on, or null. */
export function checkCacheConfig(c: CacheConfig): string | null {
  if (c.protocol !== 'MESI' && c.protocol !== 'MOESI') return `cache protocol must be MESI or MOESI, not ${String(c.protocol)}`;
  if (c.writePolicy !== 'write-through' && c.writePolicy !== 'write-back') {
    return `cache write policy must be write-through or write-back, not ${String(c.writePolicy)}`;
  }
  if (c.propagation !== 'invalidate' && c.propagation !== 'update') return `cache propagation must be invalidate or update, not ${String(c.propagation)}`;
  if (!(c.leaseMs >= cacheLeaseMsMin && c.leaseMs <= cacheLeaseMsMax)) return `cache lease must be ${cacheLeaseMsMin}..${cacheLeaseMsMax} ms`;
  if (!(c.retryMs >= cacheRetryMsMin && 4 * c.retryMs <= c.leaseMs)) return `cache retry must be at least ${cacheRetryMsMin} ms and a quarter of the lease at most`;
  return null;
}

export function assertCacheConfig(c: CacheConfig): void {
  const problem = checkCacheConfig(c);
  assert(problem === null, problem ?? '');
}

// --- node -> home ---

interface FromNode {
  readonly from: CacheNodeIndex;
  /** The sender's boot incarnation: a home forgets everything of an older one when a newer one speaks. */
  readonly incarnation: number;
  readonly to: CacheNodeIndex;
  readonly key: string;
}
interface NodeRequest extends FromNode {
  /** Increasing per node incarnation; a node has at most one request in flight per key. */
  readonly reqId: number;
  /** The sender's clock when it first sent this request (resends keep it). */
  readonly sentMs: number;
}
/** Read miss: wants a readable copy (E when nobody else holds the key, S otherwise). */
export interface GetS extends NodeRequest {
  readonly kind: 'GetS';
}
/**
 * Wants M (to write). From a sharer this is an upgrade: the home does not invalidate the
 * requester. With `write` (write-through, or a set with a TTL) the home also writes
 * `value` to memory when it grants, so a write needs one round trip and cannot be taken
 * away between the grant and the write (three writers would otherwise livelock).
 */
export interface GetM extends NodeRequest {
  readonly kind: 'GetM';
  readonly write: boolean;
  readonly value: CacheValue;
  readonly ttlMs: number;
  /** A write that carries a lock's fencing token (null: unfenced); the home refuses an older token (Nack fenced). */
  readonly fence: Fence | null;
}
/**
 * From the exclusive owner: memory takes `value` (write-through writes, a TTL set, a
 * write-back flush). `version` is the owner's line version; applied only if it matches.
 */
export interface Write extends NodeRequest {
  readonly kind: 'Write';
  readonly version: number;
  readonly value: CacheValue;
  /** 0 = no TTL (and a set without TTL clears an earlier one). */
  readonly ttlMs: number;
  /** As GetM's. */
  readonly fence: Fence | null;
}
/** The owner gives its dirty line back (eviction, or a dirty line whose lease ran out). */
export interface PutM extends NodeRequest {
  readonly kind: 'PutM';
  readonly version: number;
  readonly value: CacheValue;
}
/** Extends the lease on a line the node holds (reqId 0: no transaction). */
export interface Renew extends NodeRequest {
  readonly kind: 'Renew';
  readonly version: number;
}
/**
 * A renewal round: the lines this node still reads that it holds from one home, in one
 * message (node.ts renews them a lease/4 round at a time). versions[i] is the version of
 * keys[i]'s line. The home answers with one RenewedBatch; a key whose entry is busy is
 * left out (renewals are refused while a round of invalidations runs).
 */
export interface RenewBatch {
  readonly kind: 'RenewBatch';
  readonly from: CacheNodeIndex;
  readonly incarnation: number;
  readonly to: CacheNodeIndex;
  /** The sender's clock when it sent the batch: every lease in the answer is anchored here. */
  readonly sentMs: number;
  readonly keys: readonly string[];
  readonly versions: readonly number[];
}
/** The answer to Inv or Fwd. */
export interface Ack extends FromNode {
  readonly kind: 'Ack';
  readonly epoch: number;
  readonly round: number;
  /** The node still holds a copy (after a Fwd to S). */
  readonly kept: boolean;
  /** `value` is dirty data the home did not have. */
  readonly dirty: boolean;
  readonly value: CacheValue;
}
/**
 * Asks a home to renew this node's volume lease: one lease over every line the node holds
 * from that home (home.ts has the argument). No key: one per home per renewal interval.
 */
export interface Volume {
  readonly kind: 'Volume';
  readonly from: CacheNodeIndex;
  readonly incarnation: number;
  readonly to: CacheNodeIndex;
  /** The sender's clock when it sent this: the lease in the answer is anchored here. */
  readonly sentMs: number;
}
export type ToHome = GetS | GetM | Write | PutM | Renew | RenewBatch | Ack | Volume;

// --- home -> node ---

interface FromHome {
  readonly from: CacheNodeIndex;
  readonly to: CacheNodeIndex;
  /** The addressee's incarnation the home knows: a restarted node drops what was meant for its previous life. */
  readonly incarnation: number;
  readonly key: string;
}
/**
 * Which volume-lease period of the home a grant belongs to: the home's life (epoch) and
 * the addressee's reclaim count there (seq; it grows each time the home reclaimed a round
 * from the node on volume-lease grounds). A copy is served only within its period.
 */
export interface VolumePeriod {
  readonly epoch: number;
  readonly seq: number;
}
/** A grant: a copy in `state` (S, E or M) at `version`, servable until leaseUntilMs (addressee's clock) and within its volume period. */
export interface Data extends FromHome, VolumePeriod {
  readonly kind: 'Data';
  readonly reqId: number;
  readonly state: St;
  readonly version: number;
  readonly value: CacheValue;
  readonly leaseUntilMs: number;
  /** The key has a TTL: a write-back node writes it through instead of locally. */
  readonly ttl: boolean;
}
/** Update propagation: a copy of a newly written value for a node that held the key; servable after a Renew. */
export interface Push extends FromHome {
  readonly kind: 'Push';
  readonly version: number;
  readonly value: CacheValue;
}
export interface WriteAck extends FromHome, VolumePeriod {
  readonly kind: 'WriteAck';
  readonly reqId: number;
  /** The version memory now has. */
  readonly version: number;
  /** M: still the exclusive owner. S: others hold copies too (MOESI flush, update propagation). I: no longer a holder. */
  readonly state: St;
  readonly leaseUntilMs: number;
  readonly ttl: boolean;
}
export interface PutAck extends FromHome {
  readonly kind: 'PutAck';
  readonly reqId: number;
  /** false: the node was no longer the owner (its lease ran out): the data was not taken. */
  readonly applied: boolean;
}
/**
 * The request was not served: `busy` = resend the same request later; `stale` = not applied,
 * start over; `fenced` = a write whose fencing token is older than the newest the home saw
 * for that lock: not applied, and the client's set fails FENCED.
 */
export interface Nack extends FromHome {
  readonly kind: 'Nack';
  readonly reqId: number;
  readonly reason: 'busy' | 'stale' | 'fenced';
  /** fenced: the newest token the home saw for the lock (0 otherwise). */
  readonly newestToken: number;
  readonly retryAfterMs: number;
}
/** Drop every copy of the key at version <= `version`, then Ack. */
export interface Inv extends FromHome {
  readonly kind: 'Inv';
  readonly epoch: number;
  readonly round: number;
  readonly version: number;
}
/** To the owner: send dirty data back and go to `toState` (S: keep a copy, I: drop it), then Ack. */
export interface Fwd extends FromHome {
  readonly kind: 'Fwd';
  readonly epoch: number;
  readonly round: number;
  readonly version: number;
  readonly toState: St;
}
/** The answer to Renew: ok with the new lease and the current version, or not a holder (drop the line). */
export interface Renewed extends FromHome {
  readonly kind: 'Renewed';
  readonly ok: boolean;
  readonly version: number;
  readonly leaseUntilMs: number;
}
/**
 * The answer to a RenewBatch: for each key answered (a busy one is left out), as Renewed:
 * ok with the current version and the new lease, or not a holder (drop the line).
 */
export interface RenewedBatch {
  readonly kind: 'RenewedBatch';
  readonly from: CacheNodeIndex;
  readonly to: CacheNodeIndex;
  readonly incarnation: number;
  readonly keys: readonly string[];
  readonly ok: readonly boolean[];
  readonly versions: readonly number[];
  readonly leaseUntilMs: readonly number[];
}
/**
 * The answer to Volume: every line this node holds from the home (life `epoch`) may be
 * served until leaseUntilMs (the node's clock), but only after the node applied `revoke`:
 * every Inv or Fwd of a round still waiting for this node, as if each had arrived on its own. A lease granted while a round waits on
 * the node thus never lets it serve the copy the round takes back.
 */
export interface VolumeGranted extends VolumePeriod {
  readonly kind: 'VolumeGranted';
  readonly from: CacheNodeIndex;
  readonly to: CacheNodeIndex;
  readonly incarnation: number;
  readonly leaseUntilMs: number;
  readonly revoke: readonly Revoke[];
}
/** One round waiting on the addressee, carried in a VolumeGranted: an Inv (fwdTo null) or a Fwd. */
export interface Revoke {
  readonly key: string;
  readonly round: number;
  readonly version: number;
  /** null: an Inv; S or I: a Fwd to that state. */
  readonly fwdTo: St | null;
}
export type ToNode = Data | Push | WriteAck | PutAck | Nack | Inv | Fwd | Renewed | RenewedBatch | VolumeGranted;

/** Message kinds as a tuple, for counters and tests. */
export const toHomeKinds = ['GetS', 'GetM', 'Write', 'PutM', 'Renew', 'Ack', 'RenewBatch', 'Volume'] as const;
export const toNodeKinds = ['Data', 'Push', 'WriteAck', 'PutAck', 'Nack', 'Inv', 'Fwd', 'Renewed', 'RenewedBatch', 'VolumeGranted'] as const;

/** UTF-16 code units of a key count as two bytes each toward a node's byte bound (no encoder on the hot path). */
export function keyBytes(key: string): number {
  return key.length * 2;
}

export function valueBytes(value: CacheValue): number {
  return value === null ? 0 : value.byteLength;
}
