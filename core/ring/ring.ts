// The consistent-hash ring that places queue partitions on nodes (server/) and
// routes requests (client/). Pure: the 32-bit hash is injected (xxhash32 from
// xxhash-wasm in server/ and client/), so core/ does no I/O and tests may use any
// deterministic hash.
//
// Decisions:
// - Each member owns `vnodesPerNode` positions: hash(utf8(`${node}#${i}`)), i = 0..v-1.
//   A key belongs to the first position clockwise at or after hash(key), wrapping
//   at 2^32. Adding or removing a member moves only the keys on the arcs that
//   member gains or loses (~1/N of them).
// - Layout: `positions` is a sorted Uint32Array, `owners` a parallel Uint16Array of
//   indexes into `members` (sorted by id). Lookup is a binary search; no objects.
// - The mapping depends only on the membership SET: members are kept sorted by id
//   (UTF-16 code unit order, the same in every process), and equal positions are
//   ordered by (member rank, vnode index), so the first of them wins everywhere.
//   Two rings built from the same members in any order are identical, array for array.
// - add/remove rebuild every array: O(n log n) with n = members x vnodes. The sort
//   key packs (position, ordinal = rank * v + i) into one float64 (32 + 20 bits,
//   asserted in constants.ts), so the sort is the engine's numeric typed-array sort,
//   with no comparator calls. Membership changes are rare (a node joins or leaves);
//   lookups are what must be cheap.
// - replicas(key, r) walks clockwise from the owner collecting distinct members; a
//   stamp array (one u32 per member, bumped per call) replaces a per-call Set.
// - Partitions are placed with placeBounded(), not owner() alone: consistent hashing
//   with bounded loads (Mirrokni, Thorup, Zadimoghaddam 2016; HAProxy's
//   hash-balance-factor). Measured (test/unit/ring): with 150 vnodes and 10,000
//   partitions, owner() alone gives max/mean up to 1.40 on 100 members (100
//   partitions per member is Poisson noise of +-10% on top of the arcs' own +-8%),
//   so no key-by-key ring meets a 1.3 bound there. placeBounded() walks each
//   partition clockwise past members already holding loadFactor x the mean, in a
//   fixed order (by hash, then key), so max/mean <= loadFactor (1.25) by
//   construction; a join or leave still moves only ~1/N of partitions (a few
//   percent more through the cascade). It depends on the whole partition list, which
//   group 0 has (topics and their partition counts); clients get the resulting
//   partition map from the server and never recompute it.

import { assert } from '../assert.js';
import { ringNodeIdBytesMax, ringNodesMax, ringPlacementLoadFactor, ringVnodesPerNodeDefault, ringVnodesPerNodeMax } from '../constants.js';
import type { NodeId } from '../ids.js';

/** A 32-bit hash of some bytes (xxhash32 in production). Must be deterministic. */
export type Hash32 = (bytes: Uint8Array) => number;

const ordinalBits = 2 ** 20;
const encoder = new TextEncoder();

export interface RingOptions {
  readonly vnodesPerNode?: number;
  readonly nodes?: Iterable<NodeId>;
}

export class Ring {
  readonly vnodesPerNode: number;
  private readonly hash: Hash32;
  /** Members sorted by id; owners[] indexes into this. */
  private memberList: NodeId[] = [];
  private positions = new Uint32Array(0);
  private owners = new Uint16Array(0);
  /** Per member: the stamp of the last replicas() call that picked it. */
  private picked = new Uint32Array(0);
  private stamp = 0;
  /** Scratch for UTF-8 keys, grown on demand. */
  private scratch = new Uint8Array(256);

  constructor(hash: Hash32, opts: RingOptions = {}) {
    const v = opts.vnodesPerNode ?? ringVnodesPerNodeDefault;
    assert(Number.isSafeInteger(v) && v >= 1 && v <= ringVnodesPerNodeMax, `vnodesPerNode must be in [1, ${ringVnodesPerNodeMax}]`);
    this.vnodesPerNode = v;
    this.hash = hash;
    if (opts.nodes !== undefined) {
      const set = new Set(opts.nodes);
      for (const n of set) checkNodeId(n);
      this.memberList = [...set].sort(byId);
      this.rebuild();
    }
  }

  /** Members, sorted by id. */
  members(): readonly NodeId[] {
    return this.memberList;
  }

  get size(): number {
    return this.memberList.length;
  }

  /** Positions on the ring (members x vnodes). */
  get positionCount(): number {
    return this.positions.length;
  }

  has(node: NodeId): boolean {
    return this.rankOf(node) >= 0;
  }

  /** Adds a member; false if it was one already. */
  add(node: NodeId): boolean {
    checkNodeId(node);
    if (this.has(node)) return false;
    assert(this.memberList.length < ringNodesMax, `a ring holds at most ${ringNodesMax} members`);
    this.memberList = [...this.memberList, node].sort(byId);
    this.rebuild();
    return true;
  }

  /** Removes a member; false if it was not one. */
  remove(node: NodeId): boolean {
    const rank = this.rankOf(node);
    if (rank < 0) return false;
    this.memberList = this.memberList.filter((_, i) => i !== rank);
    this.rebuild();
    return true;
  }

  /** The u32 hash a key is placed by (the same function places the vnodes). */
  hashKey(key: string | Uint8Array): number {
    if (typeof key !== 'string') return this.hash(key) >>> 0;
    // Worst case 3 bytes per UTF-16 unit; encodeInto avoids allocating the bytes.
    if (this.scratch.length < key.length * 3) this.scratch = new Uint8Array(key.length * 3);
    const { written } = encoder.encodeInto(key, this.scratch);
    return this.hash(this.scratch.subarray(0, written)) >>> 0;
  }

  owner(key: string | Uint8Array): NodeId {
    return this.ownerOfHash(this.hashKey(key));
  }

  ownerOfHash(h: number): NodeId {
    assert(this.positions.length > 0, 'owner() of an empty ring');
    return this.memberList[this.owners[this.slotOf(h)] as number] as NodeId;
  }

  /** Up to r distinct members clockwise from the key's position; the first is owner(key). */
  replicas(key: string | Uint8Array, r: number): NodeId[] {
    return this.replicasOfHash(this.hashKey(key), r);
  }

  replicasOfHash(h: number, r: number, out: NodeId[] = []): NodeId[] {
    assert(Number.isSafeInteger(r) && r >= 1, 'replica count is a positive integer');
    assert(this.positions.length > 0, 'replicas() of an empty ring');
    out.length = 0;
    const want = Math.min(r, this.memberList.length);
    this.stamp = (this.stamp + 1) >>> 0;
    if (this.stamp === 0) {
      this.picked.fill(0);
      this.stamp = 1;
    }
    const n = this.positions.length;
    const start = this.slotOf(h);
    for (let k = 0; k < n && out.length < want; k++) {
      const owner = this.owners[(start + k) % n] as number;
      if (this.picked[owner] === this.stamp) continue;
      this.picked[owner] = this.stamp;
      out.push(this.memberList[owner] as NodeId);
    }
    assert(out.length === want, 'the walk found every wanted member');
    return out;
  }

  /**
   * Replica sets for a whole list of partition keys with bounded loads (see the header):
   * out[i] is keys[i]'s replicas, min(r, N) distinct members, the first the preferred
   * leader. Each member holds at most ceil(loadFactor x keys x r / N) replicas, unless
   * too few members have room for a partition's r (tiny rings): then the walk
   * takes the next members clockwise regardless.
   */
  placeBounded(keys: readonly (string | Uint8Array)[], r: number, loadFactor = ringPlacementLoadFactor): NodeId[][] {
    assert(Number.isSafeInteger(r) && r >= 1, 'replica count is a positive integer');
    assert(loadFactor >= 1, 'load factor is at least 1');
    assert(this.positions.length > 0, 'placeBounded() on an empty ring');
    const members = this.memberList.length;
    const want = Math.min(r, members);
    const cap = Math.ceil((loadFactor * keys.length * want) / members);
    const load = new Uint32Array(members);
    const hashes = new Float64Array(keys.length);
    for (let i = 0; i < keys.length; i++) hashes[i] = this.hashKey(keys[i] as string | Uint8Array);
    const order = Array.from({ length: keys.length }, (_, i) => i);
    order.sort((a, b) => (hashes[a] as number) - (hashes[b] as number) || compareKeys(keys[a] as string | Uint8Array, keys[b] as string | Uint8Array) || a - b);
    const out: NodeId[][] = new Array<NodeId[]>(keys.length);
    const n = this.positions.length;
    for (const i of order) {
      const reps: NodeId[] = [];
      this.stamp = (this.stamp + 1) >>> 0;
      if (this.stamp === 0) {
        this.picked.fill(0);
        this.stamp = 1;
      }
      const start = this.slotOf(hashes[i] as number);
      for (let k = 0; k < n && reps.length < want; k++) {
        const owner = this.owners[(start + k) % n] as number;
        if (this.picked[owner] === this.stamp || (load[owner] as number) >= cap) continue;
        this.picked[owner] = this.stamp;
        load[owner] = (load[owner] as number) + 1;
        reps.push(this.memberList[owner] as NodeId);
      }
      for (let k = 0; k < n && reps.length < want; k++) {
        const owner = this.owners[(start + k) % n] as number;
        if (this.picked[owner] === this.stamp) continue;
        this.picked[owner] = this.stamp;
        load[owner] = (load[owner] as number) + 1;
        reps.push(this.memberList[owner] as NodeId);
      }
      assert(reps.length === want, 'every partition gets min(r, N) replicas');
      out[i] = reps;
    }
    return out;
  }

  /** Each member's share of the hash space (arc lengths / 2^32), for the console and tests. */
  shares(): Map<NodeId, number> {
    const out = new Map<NodeId, number>(this.memberList.map((m) => [m, 0]));
    const n = this.positions.length;
    for (let i = 0; i < n; i++) {
      // Position i owns the arc (previous position, i].
      const prev = i === 0 ? (this.positions[n - 1] as number) - 2 ** 32 : (this.positions[i - 1] as number);
      const m = this.memberList[this.owners[i] as number] as NodeId;
      out.set(m, (out.get(m) as number) + ((this.positions[i] as number) - prev) / 2 ** 32);
    }
    return out;
  }

  /** Position i and its owner, in ring order (tests and the console's `ring`). */
  positionAt(i: number): { readonly position: number; readonly node: NodeId } {
    assert(i >= 0 && i < this.positions.length, 'position index in range');
    return { position: this.positions[i] as number, node: this.memberList[this.owners[i] as number] as NodeId };
  }

  // ------------------------------------------------------------------ internals

  /** Index of the first position >= h, wrapping to 0. */
  private slotOf(h: number): number {
    const p = this.positions;
    let lo = 0;
    let hi = p.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((p[mid] as number) < h) lo = mid + 1;
      else hi = mid;
    }
    return lo === p.length ? 0 : lo;
  }

  private rankOf(node: NodeId): number {
    let lo = 0;
    let hi = this.memberList.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.memberList[mid] as NodeId) < node) lo = mid + 1;
      else hi = mid;
    }
    return lo < this.memberList.length && this.memberList[lo] === node ? lo : -1;
  }

  private rebuild(): void {
    const v = this.vnodesPerNode;
    const members = this.memberList;
    const n = members.length * v;
    const keys = new Float64Array(n);
    for (let rank = 0; rank < members.length; rank++) {
      for (let i = 0; i < v; i++) {
        const ordinal = rank * v + i;
        keys[ordinal] = this.hashKey(`${members[rank] as NodeId}#${i}`) * ordinalBits + ordinal;
      }
    }
    keys.sort();
    this.positions = new Uint32Array(n);
    this.owners = new Uint16Array(n);
    for (let k = 0; k < n; k++) {
      const key = keys[k] as number;
      const ordinal = key % ordinalBits;
      this.positions[k] = (key - ordinal) / ordinalBits;
      this.owners[k] = Math.floor(ordinal / v);
    }
    this.picked = new Uint32Array(members.length);
    this.stamp = 0;
    for (let k = 1; k < n; k++) assert((this.positions[k - 1] as number) <= (this.positions[k] as number), 'positions sorted');
  }
}

function compareKeys(a: string | Uint8Array, b: string | Uint8Array): number {
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0;
  const x = typeof a === 'string' ? encoder.encode(a) : a;
  const y = typeof b === 'string' ? encoder.encode(b) : b;
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return (x[i] as number) - (y[i] as number);
  return x.length - y.length;
}

const byId = (a: NodeId, b: NodeId): number => (a < b ? -1 : a > b ? 1 : 0);

function checkNodeId(node: NodeId): void {
  assert(typeof node === 'string' && node.length > 0, 'a ring member id is a non-empty string');
  assert(encoder.encode(node).length <= ringNodeIdBytesMax, `a ring member id is at most ${ringNodeIdBytesMax} UTF-8 bytes`);
}
