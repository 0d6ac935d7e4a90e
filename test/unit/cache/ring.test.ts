// core/cache/ring.ts: the ring's compare-and-set command, the leader's choice of members,
// and the serving rule. The rule is checked by a deterministic simulator: group 0 commits
// ring generations at random times; nodes with clocks running up to 2% fast or slow apply
// them after random delays (much later while cut off), confirm through ReadIndex barriers
// that answer with the generation committed when the leader read them, and stop when
// their ServingLease runs out; a new generation's homes grant one cache lease after they
// applied it. Checked: no node serves generation G once any node grants in G+1, and a node
// cut off stops within the confirmation lease of its last barrier's start. A canary that
// starts the lease when the barrier answers (not when it was sent) must be caught.
// Seeds are printed on failure; replay one with SEED=<n>.

import t from 'tap';
import { applyCacheRing, cacheRingEmpty, confirmLeaseMsFor, desiredCacheMembers, normalizeMembers, ServingLease } from '../../../core/cache/ring.js';
import { cacheLeaseDriftMarginMs } from '../../../core/constants.js';
import { type NodeId, nodeId } from '../../../core/ids.js';
import { Xoshiro128 } from '../../../core/prng.js';

const ids = (...xs: string[]): NodeId[] => xs.map((x) => nodeId(x));

t.test('ring command: compare and set on the generation, normalized members', async (t) => {
  const s1 = applyCacheRing(cacheRingEmpty, { basedOn: 0, members: ids('n3', 'n1', 'n2', 'n1') });
  t.same(s1, { generation: 1, members: ids('n1', 'n2', 'n3') });
  if (s1 === null) return;
  t.equal(applyCacheRing(s1, { basedOn: 0, members: ids('n1') }), null, 'a command computed from an older generation does nothing');
  t.equal(applyCacheRing(s1, { basedOn: 1, members: ids('n2', 'n1', 'n3') }), null, 'the same members are no change');
  t.same(applyCacheRing(s1, { basedOn: 1, members: ids('n1', 'n3') }), { generation: 2, members: ids('n1', 'n3') });
  t.same(normalizeMembers(ids('b', 'a', 'b')), ids('a', 'b'));
});

t.test('the leader keeps who it hears, drops the silent, takes back the heard', async (t) => {
  const timing = { nodeDownMs: 1000, nodeUpMs: 400 };
  const heard = (ms: Record<string, number>) => (p: NodeId): number => ms[p] ?? Number.POSITIVE_INFINITY;
  const voters = ids('n1', 'n2', 'n3');
  const all = ids('n1', 'n2', 'n3');
  t.same(desiredCacheMembers(nodeId('n1'), voters, all, heard({ n2: 10, n3: 999 }), 5000, timing), all, 'heard within the down time: stays');
  t.same(desiredCacheMembers(nodeId('n1'), voters, all, heard({ n2: 10, n3: 1000 }), 5000, timing), ids('n1', 'n2'), 'silent for the down time: out');
  t.same(desiredCacheMembers(nodeId('n1'), voters, all, heard({ n2: 10 }), 999, timing), all, 'a new leader removes nobody before the down time');
  t.same(desiredCacheMembers(nodeId('n1'), voters, ids('n1', 'n2'), heard({ n2: 10, n3: 500 }), 5000, timing), ids('n1', 'n2'), 'out of the ring: back only when heard within the up time');
  t.same(desiredCacheMembers(nodeId('n1'), voters, ids('n1', 'n2'), heard({ n2: 10, n3: 399 }), 5000, timing), all, 'heard again: back in');
  t.same(desiredCacheMembers(nodeId('n1'), ids('n1', 'n2'), all, heard({ n2: 10, n3: 10 }), 5000, timing), ids('n1', 'n2'), 'a voter removed from the cluster leaves the ring');
  t.same(desiredCacheMembers(nodeId('n1'), voters, ids('n2'), heard({}), 5000, timing), ids('n1'), 'the leader is always in');
});

t.test('serving lease: begun, confirmed by the same generation only, renewed after a quarter', async (t) => {
  const lease = new ServingLease(4, 1000);
  t.notOk(lease.serving(0));
  const t0 = lease.begin(0);
  t.equal(t0, 0);
  t.equal(lease.begin(1), null, 'one barrier at a time');
  lease.done(0, 5, 5);
  t.notOk(lease.serving(10), 'a barrier that saw a newer generation confirms nothing');
  t.equal(lease.begin(20), 20);
  lease.done(20, 4, 90);
  t.ok(lease.serving(1019));
  t.notOk(lease.serving(1020), 'the lease counts from when the barrier began');
  t.equal(lease.begin(200), null, 'no renewal in the first quarter');
  t.equal(lease.begin(300), 300);
  lease.failed(300);
  t.ok(lease.serving(1019), 'a failed barrier takes nothing away');
  t.equal(confirmLeaseMsFor(2000), 2000 - 2 * cacheLeaseDriftMarginMs);
});

interface RuleRun {
  /** Real ms by which a node still served G after a node granted in G+1 (0: never). */
  readonly overlapMs: number;
  /** Longest real ms a node served after its last barrier began, less the confirmation lease (<= drift). */
  readonly servedPastLastBarrierMs: number;
  readonly grants: number;
}

/**
 * One run of the serving rule (see the header). Time is real ms in steps of 1; node i's clock
 * reads t x rate_i. `canary`: the lease counts from when the barrier answered.
 */
function runRule(seed: number, canary: boolean): RuleRun {
  const rng = new Xoshiro128(seed);
  const nodes = rng.int(3, 5);
  const leaseMs = 2000;
  const confirmMs = confirmLeaseMsFor(leaseMs);
  const endMs = 12_000;
  const rate = Array.from({ length: nodes }, () => 1 + (rng.int(-200, 200) / 10_000));
  const local = (i: number, tMs: number): number => tMs * (rate[i] as number);
  // Commits of generations 1..K (generation 1 at 0).
  const commitAt: number[] = [Number.NEGATIVE_INFINITY, 0];
  while ((commitAt[commitAt.length - 1] as number) < endMs) commitAt.push((commitAt[commitAt.length - 1] as number) + rng.int(200, 3000));
  const committedAt = (tMs: number): number => {
    let g = 0;
    while (g + 1 < commitAt.length && (commitAt[g + 1] as number) <= tMs) g++;
    return g;
  };
  // Each node is cut off from group 0 for random stretches.
  const cut: [number, number][][] = Array.from({ length: nodes }, () => {
    const out: [number, number][] = [];
    for (let k = rng.int(0, 3); k > 0; k--) {
      const from = rng.int(0, endMs);
      out.push([from, from + rng.int(100, 4000)]);
    }
    return out;
  });
  const isCut = (i: number, tMs: number): boolean => (cut[i] as [number, number][]).some(([a, b]) => tMs >= a && tMs < b);
  const cutEnd = (i: number, tMs: number): number => {
    let t1 = tMs;
    while (isCut(i, t1)) t1++;
    return t1;
  };
  // Apply times: after the commit and a delay, never while cut off.
  const applyAt: number[][] = Array.from({ length: nodes }, (_, i) => commitAt.map((c) => (c === Number.NEGATIVE_INFINITY ? c : cutEnd(i, Math.max(0, c) + rng.int(0, 60)))));
  for (const row of applyAt) for (let g = 2; g < row.length; g++) row[g] = Math.max(row[g] as number, row[g - 1] as number); // in log order
  const appliedAt = (i: number, tMs: number): number => {
    const row = applyAt[i] as number[];
    let g = 0;
    while (g + 1 < row.length && (row[g + 1] as number) <= tMs) g++;
    return g;
  };

  interface Barrier { readonly t0Local: number; readonly resolveAt: number; readonly ok: boolean; readonly lease: ServingLease }
  const leases: (ServingLease | null)[] = Array.from({ length: nodes }, () => null);
  const leaseGen: number[] = Array.from({ length: nodes }, () => 0);
  const barriers: (Barrier | null)[] = Array.from({ length: nodes }, () => null);
  const lastBarrierStart: number[] = Array.from({ length: nodes }, () => Number.NEGATIVE_INFINITY);
  const homeStartLocal: number[] = Array.from({ length: nodes }, () => Number.POSITIVE_INFINITY);
  const lastServed = new Map<number, number>(); // generation -> last real ms any node served it
  const firstGrant = new Map<number, number>(); // generation -> first real ms any home granted in it
  let servedPast = Number.NEGATIVE_INFINITY;

  for (let now = 0; now < endMs; now++) {
    for (let i = 0; i < nodes; i++) {
      const g = appliedAt(i, now);
      if (g !== leaseGen[i]) {
        leaseGen[i] = g;
        leases[i] = g === 0 ? null : new ServingLease(g, confirmMs, canary ? 'count-from-answer' : undefined);
        homeStartLocal[i] = local(i, now);
      }
      const b = barriers[i];
      if (b !== null && b !== undefined && now >= b.resolveAt) {
        barriers[i] = null;
        if (b.ok) {
          // As the service: the generation applied when the barrier returns, for the lease it was begun on.
          b.lease.done(b.t0Local, b.lease === leases[i] ? appliedAt(i, now) : -1, local(i, now));
        } else {
          b.lease.failed(b.t0Local);
        }
      }
      const lease = leases[i];
      if (lease === null || lease === undefined) continue;
      const lnow = local(i, now);
      if (barriers[i] === null) {
        const t0 = lease.begin(lnow);
        if (t0 !== null) {
          lastBarrierStart[i] = now;
          // The leader reads its commit index a little later; the answer comes back once this node applied that much.
          const readAt = now + rng.int(0, 30);
          const ok = !isCut(i, now) && !isCut(i, readAt);
          const read = committedAt(readAt);
          // The answer is sometimes slow (a busy leader, a paused process): up to 400 ms.
          const backAt = Math.max(readAt + (rng.int(0, 4) === 0 ? rng.int(0, 400) : rng.int(0, 30)), (applyAt[i] as number[])[read] as number);
          barriers[i] = { t0Local: t0, resolveAt: ok ? backAt : now + 200, ok, lease };
        }
      }
      if (lease.serving(lnow)) {
        lastServed.set(lease.generation, now);
        servedPast = Math.max(servedPast, now - (lastBarrierStart[i] as number) - confirmMs);
        if (lnow >= (homeStartLocal[i] as number) + leaseMs && !firstGrant.has(lease.generation)) firstGrant.set(lease.generation, now);
      }
    }
  }
  let overlap = 0;
  for (const [g, at] of firstGrant) {
    const before = lastServed.get(g - 1);
    if (before !== undefined && before >= at) overlap = Math.max(overlap, before - at + 1);
  }
  return { overlapMs: overlap, servedPastLastBarrierMs: servedPast, grants: firstGrant.size };
}

const ruleSeeds = Number(process.env.RING_RUNS ?? 200);
const seedBase = process.env.SEED === undefined ? 1 : Number(process.env.SEED);

t.test(`serving rule: generation G never serves once G+1 grants (${ruleSeeds} seeds)`, async (t) => {
  let grants = 0;
  for (let s = seedBase; s < seedBase + ruleSeeds; s++) {
    const r = runRule(s, false);
    grants += r.grants;
    if (r.overlapMs > 0) t.fail(`seed ${s}: generation G served ${r.overlapMs} ms into G+1's grants (SEED=${s})`);
    // Serving ends within the confirmation lease of the last barrier's start, stretched by a 2%-slow clock.
    if (r.servedPastLastBarrierMs > 0.03 * confirmLeaseMsFor(2000)) t.fail(`seed ${s}: served ${r.servedPastLastBarrierMs} ms past its last confirmation (SEED=${s})`);
  }
  t.ok(grants > ruleSeeds, `homes granted in ${grants} generations`);
});

t.test('canary: a lease counted from the barrier\'s answer is caught', async (t) => {
  let caught = 0;
  for (let s = 1; s <= 400 && caught === 0; s++) if (runRule(s, true).overlapMs > 0) caught = s;
  t.ok(caught > 0, `caught at seed ${caught}`);
});
