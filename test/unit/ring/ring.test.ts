// Checks the consistent-hash ring (core/ring) with xxhash32 from xxhash-wasm, the
// hash server/ and client/ inject:
// - agreement with the naive twin (naive.ts) on owner() and replicas() for random
//   memberships, vnode counts and keys, including a hash with many equal positions;
// - the mapping depends only on the membership set: rings built in different
//   insertion orders (and through add/remove detours) are identical;
// - adding or removing one of N members: owner() moves only keys to/from that
//   member; the partition placement (placeBounded, bounded loads) moves at most
//   ~1.2/N of 10,000 partitions (bounds in checkMoves) and keeps max/mean replicas per member <= 1.3 at
//   150 vnodes; the same bounds on a 100-member, 10,000-partition ring (removing
//   the heaviest member too); placeBounded agrees with its naive twin;
// - replicas() are distinct, start with owner(), and number min(r, N).
// Seeds print on failure; replay with SEED=<n>.

import fc from 'fast-check';
import t from 'tap';
import xxhash from 'xxhash-wasm';
import { ringVnodesPerNodeDefault } from '../../../core/constants.js';
import { nodeId } from '../../../core/ids.js';
import type { NodeId } from '../../../core/ids.js';
import { Ring } from '../../../core/ring/ring.js';
import type { Hash32 } from '../../../core/ring/ring.js';
import { NaiveRing, naivePlaceBounded } from './naive.js';

const { h32Raw } = await xxhash();
const xx: Hash32 = (b) => h32Raw(b, 0);
/** A poor hash with only 256 values: many vnodes collide, exercising the tie rule. */
const coarse: Hash32 = (b) => (h32Raw(b, 0) & 0xff) * 0x01000000;

const seed = process.env['SEED'] !== undefined ? Number(process.env['SEED']) : undefined;
const params = (numRuns: number): fc.Parameters<unknown> => ({ numRuns, ...(seed !== undefined ? { seed } : {}) });

const partitions = Array.from({ length: 10_000 }, (_, p) => `orders/${p}`);
const names = (n: number, prefix = 'node-'): NodeId[] => Array.from({ length: n }, (_, i) => nodeId(`${prefix}${i}`));

function loads(ring: Ring, keys: readonly string[]): Map<NodeId, number> {
  const out = new Map<NodeId, number>(ring.members().map((m) => [m, 0]));
  for (const k of keys) {
    const o = ring.owner(k);
    out.set(o, (out.get(o) as number) + 1);
  }
  return out;
}
const maxOverMean = (m: Map<NodeId, number>): number => Math.max(...m.values()) / ([...m.values()].reduce((a, b) => a + b, 0) / m.size);

t.test('agrees with the naive twin on owner() and replicas()', (t) => {
  const memberArb = fc.uniqueArray(fc.string({ minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 12 });
  for (const [label, hash] of [['xxhash32', xx], ['coarse hash (ties)', coarse]] as const) {
    fc.assert(
      fc.property(memberArb, fc.integer({ min: 1, max: 40 }), fc.array(fc.string(), { minLength: 1, maxLength: 40 }), fc.integer({ min: 1, max: 5 }),
        (members, v, keys, r) => {
          const ids = members.map(nodeId);
          const ring = new Ring(hash, { vnodesPerNode: v, nodes: ids });
          const naive = new NaiveRing(hash, ids, v);
          for (const k of keys) {
            if (ring.owner(k) !== naive.owner(k)) return false;
            if (JSON.stringify(ring.replicas(k, r)) !== JSON.stringify(naive.replicas(k, r))) return false;
          }
          return true;
        }),
      params(300),
    );
    t.pass(`${label}: typed-array ring == naive ring`);
  }
  t.end();
});

t.test('the same membership gives the same ring whatever the insertion order', (t) => {
  fc.assert(
    fc.property(fc.uniqueArray(fc.string({ minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 20 }), fc.integer(), fc.array(fc.string({ minLength: 1, maxLength: 8 }), { maxLength: 5 }),
      (members, shuffleSeed, detours) => {
        const ids = members.map(nodeId);
        const a = new Ring(xx, { vnodesPerNode: 16 });
        for (const m of ids) a.add(m);
        // b: another order, plus members added and removed again on the way.
        const order = [...ids].sort((x, y) => ((hashOf(x) ^ shuffleSeed) >>> 0) - ((hashOf(y) ^ shuffleSeed) >>> 0));
        const b = new Ring(xx, { vnodesPerNode: 16 });
        for (const d of detours) b.add(nodeId(`detour-${d}`));
        for (const m of order) b.add(m);
        for (const d of detours) b.remove(nodeId(`detour-${d}`));
        if (a.positionCount !== b.positionCount) return false;
        for (let i = 0; i < a.positionCount; i++) {
          const pa = a.positionAt(i);
          const pb = b.positionAt(i);
          if (pa.position !== pb.position || pa.node !== pb.node) return false;
        }
        return partitions.slice(0, 200).every((k) => a.owner(k) === b.owner(k));
      }),
    params(200),
  );
  const hundred = names(100);
  const forward = new Ring(xx, { nodes: hundred });
  const backward = new Ring(xx, { nodes: [...hundred].reverse() });
  t.ok(partitions.every((k) => forward.owner(k) === backward.owner(k)), '100 members, 10,000 partitions: identical placement');
  t.end();
});

function hashOf(s: string): number {
  return xx(new TextEncoder().encode(s));
}

interface Moves {
  worstMoveTimesN: number;
  worstLoad: number;
  worstOwnerLoad: number;
  worstShare: number;
  worstCascade: number;
  /** moved x N on each leave, for the median. */
  typicalLeaves: number[];
  rings: number;
}

function loadOf(placement: readonly NodeId[][], members: readonly NodeId[]): number {
  const count = new Map<NodeId, number>(members.map((m) => [m, 0]));
  for (const reps of placement) for (const m of reps) count.set(m, (count.get(m) as number) + 1);
  return maxOverMean(count);
}

/**
 * One member joins (N -> N+1) and one member, `leaver`, leaves (N -> N-1): with
 * owner() only the keys of that member move. With placeBounded(): a join moves at
 * most 1.3/N of the partitions; a leave moves the leaver's own partitions (<= 1.25/N
 * by the cap) plus a cascade of at most 0.15/N; the median leave is <= 1.2/N; and
 * max/mean replicas per member stay <= 1.3. (A literal "every leave <= 1.2/N" cannot
 * hold beside max/mean <= 1.3 at 100 partitions per member: the heaviest member's
 * own partitions are max/mean x 1/N, and the noise puts that above 1.2.)
 */
function checkMoves(t: { fail(message: string): unknown }, members: readonly NodeId[], joiner: NodeId, leaver: NodeId, acc: Moves): void {
  const n = members.length;
  const base = new Ring(xx, { nodes: members });
  const joined = new Ring(xx, { nodes: [...members, joiner] });
  const left = new Ring(xx, { nodes: members.filter((m) => m !== leaver) });
  partitions.forEach((k) => {
    const o = base.owner(k);
    const oj = joined.owner(k);
    if (oj !== o && oj !== joiner) t.fail(`owner(): adding ${joiner} moved ${k} from ${o} to ${oj}`);
    const ol = left.owner(k);
    if (ol !== o && o !== leaver) t.fail(`owner(): removing ${leaver} moved ${k} from ${o} to ${ol}`);
  });
  const p0 = base.placeBounded(partitions, 1);
  const pj = joined.placeBounded(partitions, 1);
  const pl = left.placeBounded(partitions, 1);
  let movedJoin = 0;
  let movedLeave = 0;
  for (let i = 0; i < partitions.length; i++) {
    if (pj[i]?.[0] !== p0[i]?.[0]) movedJoin++;
    if (pl[i]?.[0] !== p0[i]?.[0]) movedLeave++;
  }
  const joinTimesN = (movedJoin / partitions.length) * (n + 1);
  const leaveTimesN = (movedLeave / partitions.length) * n;
  // A leaver's own partitions must move; the cascade past full members is the rest.
  const leaverHeld = p0.filter((reps) => reps[0] === leaver).length;
  const cascadeTimesN = ((movedLeave - leaverHeld) / partitions.length) * n;
  if (joinTimesN > 1.3) t.fail(`adding a member to ${n} moved ${movedJoin} of ${partitions.length} partitions (${joinTimesN.toFixed(3)}/N)`);
  if (cascadeTimesN > 0.15) t.fail(`removing ${leaver} from ${n} moved ${movedLeave - leaverHeld} partitions it did not hold (${cascadeTimesN.toFixed(3)}/N)`);
  acc.typicalLeaves.push(leaveTimesN);
  const load = Math.max(loadOf(p0, members), loadOf(base.placeBounded(partitions, 3), members));
  if (load > 1.3) t.fail(`placement max/mean load ${load.toFixed(3)} with ${n} members`);
  const shares = [...base.shares().values()];
  acc.worstShare = Math.max(acc.worstShare, Math.max(...shares) * shares.length);
  acc.worstOwnerLoad = Math.max(acc.worstOwnerLoad, maxOverMean(loads(base, partitions)));
  acc.worstMoveTimesN = Math.max(acc.worstMoveTimesN, joinTimesN, leaveTimesN);
  acc.worstCascade = Math.max(acc.worstCascade, cascadeTimesN);
  acc.worstLoad = Math.max(acc.worstLoad, load);
  acc.rings++;
}

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? 0;
const report = (acc: Moves): string =>
  `${acc.rings} memberships: placement moved at most ${acc.worstMoveTimesN.toFixed(3)}/N (median leave ${median(acc.typicalLeaves).toFixed(3)}/N, ` +
  `worst cascade ${acc.worstCascade.toFixed(3)}/N), placement max/mean ${acc.worstLoad.toFixed(3)}; ` +
  `owner() alone: partition max/mean ${acc.worstOwnerLoad.toFixed(3)}, hash-space share max/mean ${acc.worstShare.toFixed(3)}`;

t.test('one member joining or leaving moves at most 1.2/N of 10,000 partitions; max/mean load <= 1.3 (150 vnodes)', (t) => {
  t.equal(ringVnodesPerNodeDefault, 150);
  const acc: Moves = { worstMoveTimesN: 0, worstLoad: 0, worstOwnerLoad: 0, worstShare: 0, worstCascade: 0, typicalLeaves: [], rings: 0 };
  fc.assert(
    fc.property(fc.integer({ min: 3, max: 24 }), fc.string({ minLength: 1, maxLength: 6 }), fc.nat(), (n, tag, pick) => {
      const members = names(n, `n-${tag}-`);
      checkMoves(t, members, nodeId(`joiner-${tag}`), members[pick % n] as NodeId, acc);
    }),
    params(Number(process.env['RING_RUNS'] ?? 25)),
  );
  t.ok(median(acc.typicalLeaves) <= 1.2, `a member leaving moves ~1/N: median ${median(acc.typicalLeaves).toFixed(3)}/N`);
  t.comment(report(acc));
  t.end();
});

t.test('a 100-member ring with 10,000 partitions shows the same bounds', (t) => {
  const acc: Moves = { worstMoveTimesN: 0, worstLoad: 0, worstOwnerLoad: 0, worstShare: 0, worstCascade: 0, typicalLeaves: [], rings: 0 };
  const members = names(100);
  const base = new Ring(xx, { nodes: members });
  const counts = loads(base, partitions);
  const heaviest = [...counts].sort((a, b) => b[1] - a[1])[0]?.[0] as NodeId;
  for (const leaver of [nodeId('node-0'), nodeId('node-57'), heaviest]) checkMoves(t, members, nodeId('node-100'), leaver, acc);
  const shares = [...base.shares().values()];
  t.ok(Math.abs(shares.reduce((a, b) => a + b, 0) - 1) < 1e-9, 'shares of the hash space sum to 1');
  t.ok(acc.worstShare <= 1.3, `largest share of the hash space ${acc.worstShare.toFixed(3)} x mean`);
  t.comment(report(acc));
  t.end();
});

t.test('placeBounded agrees with its naive twin', (t) => {
  fc.assert(
    fc.property(fc.uniqueArray(fc.string({ minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 8 }), fc.integer({ min: 1, max: 20 }),
      fc.array(fc.string(), { minLength: 0, maxLength: 60 }), fc.integer({ min: 1, max: 4 }), fc.constantFrom(1, 1.1, 1.25, 2),
      (members, v, keys, r, factor) => {
        const ids = members.map(nodeId);
        const got = new Ring(xx, { vnodesPerNode: v, nodes: ids }).placeBounded(keys, r, factor);
        const want = naivePlaceBounded(new NaiveRing(xx, ids, v), ids, keys, r, factor);
        return JSON.stringify(got) === JSON.stringify(want);
      }),
    params(300),
  );
  const ring = new Ring(xx, { nodes: names(5) });
  const placed = ring.placeBounded(partitions.slice(0, 1000), 3);
  t.ok(placed.every((reps) => reps.length === 3 && new Set(reps).size === 3), 'r distinct replicas each');
  t.ok(loadOf(placed, ring.members()) <= 1.25, 'capped at 1.25 x mean');
  t.end();
});

t.test('replicas are distinct, start with the owner, and number min(r, N)', (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 12 }), fc.array(fc.string(), { minLength: 1, maxLength: 30 }), (n, r, keys) => {
      const ring = new Ring(xx, { nodes: names(n) });
      return keys.every((k) => {
        const reps = ring.replicas(k, r);
        return reps.length === Math.min(r, n) && new Set(reps).size === reps.length && reps[0] === ring.owner(k);
      });
    }),
    params(300),
  );
  const ring = new Ring(xx, { nodes: names(5) });
  const bytes = new TextEncoder().encode('orders/7');
  t.equal(ring.owner(bytes), ring.owner('orders/7'), 'a key as bytes or as a string maps the same');
  t.same(ring.replicasOfHash(ring.hashKey('orders/7'), 3), ring.replicas('orders/7', 3));
  t.end();
});

t.test('membership edits', (t) => {
  const ring = new Ring(xx, { vnodesPerNode: 10 });
  t.equal(ring.add(nodeId('a')), true);
  t.equal(ring.add(nodeId('a')), false, 'adding a member twice is a no-op');
  t.equal(ring.positionCount, 10);
  t.equal(ring.owner('anything'), 'a', 'a single member owns everything');
  t.same(ring.replicas('anything', 3), ['a'], 'fewer members than r: every member once');
  t.equal(ring.remove(nodeId('b')), false);
  t.equal(ring.remove(nodeId('a')), true);
  t.equal(ring.size, 0);
  t.throws(() => ring.owner('x'), /empty ring/, 'owner() of an empty ring is a programmer error');
  t.throws(() => new Ring(xx, { vnodesPerNode: 0 }), /vnodesPerNode/);
  t.end();
});
