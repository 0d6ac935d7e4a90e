// Property test: 3-4 cache nodes (each the home of some keys; homes of one directory entry
// in some runs) run random gets, sets, deletes, evictions and flushes while a simulated network delivers messages and memory
// completions in random order, drops and duplicates them, time passes and nodes crash.
// After every action the coherence invariants hold (never two E/M holders, never E/M
// beside another copy, every served line is recorded at its home, S copies agree with
// memory, versions never go back); after healing every op on a live node completes, and
// the history of every key without a counted write-back loss is linearizable against the
// naive twin (CacheModel). Each protocol variant runs; a build that skips one invalidation,
// one that grants M before the invalidations are acknowledged and a node that serves past
// its lease must each be caught by the history check alone. Write-back variants also run
// without crashes and drops, where most runs lose nothing and are all checked.
// fast-check prints the seed; replay with SEED=<n> PATH_REPLAY=<path>; RUNS=<n> for more.
// CI runs fixed seeds (ciSeed plus the test's offset), 1,000 runs per variant; other seeds are for
// exploring. Every schedule that ever failed is replayed as a fixed action list below.

import fc from 'fast-check';
import t from 'tap';
import { cacheNodeIndex } from '../../../core/ids.js';
import { assert } from '../../../core/assert.js';
import { cacheConfigDefault } from '../../../core/cache/messages.js';
import type { CacheConfig } from '../../../core/cache/messages.js';
import { checkHistory } from '../../checker/cache-linearizability.js';
import { Sim } from './sim.js';
import type { Action, SimOptions } from './sim.js';

const actionArb = (nodes: number, keys: number, faults: 'none' | 'reorder' | 'all'): fc.Arbitrary<Action> => {
  const node = fc.nat(nodes - 1);
  const key = fc.nat(keys - 1);
  const pick = fc.nat(1_000);
  const arbs: { weight: number; arbitrary: fc.Arbitrary<Action> }[] = [
    { weight: 6, arbitrary: fc.record({ t: fc.constant('get' as const), node, key }) },
    { weight: 4, arbitrary: fc.record({ t: fc.constant('set' as const), node, key, del: fc.constantFrom(false, false, false, false, true) }) },
    { weight: 14, arbitrary: fc.record({ t: fc.constant('deliver' as const), pick }) },
    // Without faults, time passes in small steps, so leases rarely run out with messages in flight.
    { weight: 3, arbitrary: fc.record({ t: fc.constant('tick' as const), ms: faults === 'reorder' ? fc.constantFrom(5, 20) : fc.constantFrom(5, 20, 60, 300) }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('evict' as const), node, key }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('flush' as const), node }) },
  ];
  if (faults !== 'none') arbs.push({ weight: 1, arbitrary: fc.record({ t: fc.constant('dup' as const), pick }) });
  if (faults === 'all') {
    arbs.push({ weight: 2, arbitrary: fc.record({ t: fc.constant('drop' as const), pick }) });
    arbs.push({ weight: 1, arbitrary: fc.record({ t: fc.constant('crash' as const), node }) });
  }
  return fc.oneof(...arbs);
};

const lossRuns = new Map<string, number>();
/** Per test: keys of lossy runs left out of the linearizability check, and keys in lossy runs. */
const lossKeys = new Map<string, { exempt: number; of: number }>();

/**
 * Write-back's documented loss window: a crashed node's dirty data, and an owner's whose
 * line the home reclaimed, are lost; nodes and homes count it (PutAck not applied,
 * renewal refused, owner reclaimed), the simulator counts what died with a node. The keys
 * a counted loss may concern (sim.lossKeys, a superset) are not held to linearizability
 * (they cannot be); every other key is, and every run to the coherence invariants.
 */
function run(name: string, opts: SimOptions, actions: readonly Action[]): Sim {
  const sim = new Sim(opts);
  for (const a of actions) sim.apply(a);
  if (!sim.settle()) throw new Error(`${sim.open.size} ops never completed after healing`);
  if (sim.dirtyLost > 0) {
    lossRuns.set(name, (lossRuns.get(name) ?? 0) + 1);
    const k = lossKeys.get(name) ?? { exempt: 0, of: 0 };
    k.exempt += sim.lossKeys.size;
    k.of += sim.keyNames.length;
    lossKeys.set(name, k);
  }
  const r = checkHistory(sim.history.filter((op) => !sim.lossKeys.has(op.key)));
  if (!r.ok) throw new Error(`history of ${r.key} is not linearizable`);
  return sim;
}

const ciSeed = 101;

/** CI: a fixed seed per test (ciSeed + `offset`), so a red build means a regression. SEED=<n> explores others. */
function params<T>(runs: number, offset: number, endOnFailure = false): fc.Parameters<T> {
  const p: fc.Parameters<T> = { numRuns: Number(process.env['RUNS'] ?? runs), endOnFailure };
  p.seed = process.env['SEED'] !== undefined ? Number(process.env['SEED']) : ciSeed + offset;
  if (process.env['PATH_REPLAY'] !== undefined) p.path = process.env['PATH_REPLAY'];
  return p;
}

const variants: { name: string; cfg: CacheConfig }[] = [
  { name: 'MESI write-through invalidate', cfg: cacheConfigDefault },
  { name: 'MESI write-back invalidate', cfg: { ...cacheConfigDefault, writePolicy: 'write-back' } },
  { name: 'MOESI write-back invalidate', cfg: { ...cacheConfigDefault, protocol: 'MOESI', writePolicy: 'write-back' } },
  { name: 'MESI write-through update', cfg: { ...cacheConfigDefault, propagation: 'update' } },
  { name: 'MOESI write-back update', cfg: { ...cacheConfigDefault, protocol: 'MOESI', writePolicy: 'write-back', propagation: 'update' } },
];
const simCfg = (cfg: CacheConfig): CacheConfig => ({ ...cfg, leaseMs: 400, retryMs: 50 });
const runsPerVariant = 1_000;
const runsNoCrash = 500;

/** What a run looks like: three nodes, a fourth (found a bug three never did), homes of one entry evicting their directory. */
const shapes: readonly { readonly nodes: number; readonly keys: number; readonly homeEntriesMax?: number }[] = [
  { nodes: 3, keys: 3 },
  { nodes: 4, keys: 3 },
  { nodes: 3, keys: 6, homeEntriesMax: 1 },
];
const nodesMax = 4;
const keysMax = 6;
const runArb = (faults: 'reorder' | 'all'): fc.Arbitrary<[number, Action[]]> =>
  fc.tuple(fc.nat(shapes.length - 1), fc.array(actionArb(nodesMax, keysMax, faults), { minLength: 20, maxLength: 100, size: 'max' }));
function shapeOpts(cfg: CacheConfig, shape: number): SimOptions {
  const s = shapes[shape % shapes.length];
  assert(s !== undefined, 'a shape');
  return { ...s, cfg: simCfg(cfg), invariants: true, lineEntriesMax: 2 };
}

for (const [i, v] of variants.entries()) {
  t.test(`${v.name}: coherent and linearizable per key under reordering, loss, duplicates and crashes`, async (t) => {
    const result = fc.check(fc.property(runArb('all'), ([shape, actions]) => {
      run(v.name, shapeOpts(v.cfg, shape), actions);
    }), params(runsPerVariant, i));
    if (result.failed) t.fail(fc.defaultReportMessage(result) ?? 'failed');
    const k = lossKeys.get(v.name) ?? { exempt: 0, of: 0 };
    if (!result.failed) t.pass(`${result.numRuns} runs, ${lossRuns.get(v.name) ?? 0} with a counted write-back loss (${k.exempt} of their ${k.of} keys not checked for linearizability)`);
    if (v.cfg.writePolicy === 'write-through') t.equal(lossRuns.get(v.name) ?? 0, 0, 'write-through never loses an acknowledged write');
  });
  if (v.cfg.writePolicy === 'write-back') {
    t.test(`${v.name}: linearizable per key under reordering and duplicates (no crash, no loss)`, async (t) => {
      const name = `${v.name} no-crash`;
      const result = fc.check(fc.property(runArb('reorder'), ([shape, actions]) => {
        run(name, shapeOpts(v.cfg, shape), actions);
      }), params(runsNoCrash, 100 + i));
      if (result.failed) t.fail(fc.defaultReportMessage(result) ?? 'failed');
      const lossy = lossRuns.get(name) ?? 0;
      t.ok(lossy * 2 <= result.numRuns, `most runs are checked for linearizability (${result.numRuns - lossy} of ${result.numRuns})`);
    });
  }
}

const canaryCfg = simCfg(cacheConfigDefault);

/**
 * Delivers every message in order; invalidations and forwards to `cut` are dropped (a
 * one-way partition), or with `all` every message to `cut` (its volume leases lapse).
 */
function deliverAll(sim: Sim, cut = -1, all = false): void {
  for (let d = 0; sim.flights.length > 0; d++) {
    if (d > 10_000) throw new Error('messages keep flowing');
    const f = sim.flights[0];
    const toCut = f !== undefined && f.to === 'node' && f.msg.to === cut && (all || f.msg.kind === 'Inv' || f.msg.kind === 'Fwd');
    sim.apply({ t: toCut ? 'drop' : 'deliver', pick: 0 });
  }
}

/** Nodes 1 and 2 share the key, node 0 writes (node `cut` cut off from invalidations meanwhile), both readers read again. */
function sharersThenWrite(canary?: 'skip-one-invalidation' | 'grant-m-before-acks', cut = -1): Sim {
  const sim = new Sim({ nodes: 3, keys: 1, cfg: canaryCfg, invariants: false, ...(canary !== undefined ? { canary } : {}) });
  sim.apply({ t: 'set', node: 0, key: 0, del: false });
  deliverAll(sim);
  sim.apply({ t: 'get', node: 1, key: 0 });
  deliverAll(sim);
  sim.apply({ t: 'get', node: 2, key: 0 });
  deliverAll(sim);
  sim.apply({ t: 'set', node: 0, key: 0, del: false });
  deliverAll(sim, cut);
  sim.apply({ t: 'get', node: 1, key: 0 });
  sim.apply({ t: 'get', node: 2, key: 0 });
  if (!sim.settle()) throw new Error('ops left open');
  return sim;
}

/**
 * Node 0 reads; node 1 writes (twice) while nothing reaches node 0 (its volume lease
 * lapses, its home reclaims it); node 0 reads again, still cut off, or (`back`) after it
 * was heard again for a lease (its volume lease renewed, in a new period).
 */
function cutOffReader(canary?: 'serve-past-volume-lease', back = false): Sim {
  const sim = new Sim({ nodes: 3, keys: 1, cfg: canaryCfg, invariants: false, ...(canary !== undefined ? { canary } : {}) });
  sim.apply({ t: 'get', node: 0, key: 0 });
  deliverAll(sim);
  sim.apply({ t: 'set', node: 1, key: 0, del: false });
  for (let i = 0; i < 20; i++) {
    deliverAll(sim, 0, true);
    sim.apply({ t: 'tick', ms: 50 });
  }
  // The first write waited out the reader's lease and may be reported unknown; a second one completes at once.
  sim.apply({ t: 'set', node: 1, key: 0, del: false });
  deliverAll(sim, 0, true);
  for (let i = 0; back && i < 10; i++) {
    deliverAll(sim);
    sim.apply({ t: 'tick', ms: 50 });
  }
  sim.apply({ t: 'get', node: 0, key: 0 });
  if (!sim.settle()) throw new Error('ops left open');
  return sim;
}

t.test('canary: a home that skips one invalidation per round is caught by the history check alone', async (t) => {
  t.ok(checkHistory(sharersThenWrite().history).ok, 'the scenario is linearizable on the real build');
  const r = checkHistory(sharersThenWrite('skip-one-invalidation').history);
  t.notOk(r.ok, 'the broken build produces a non-linearizable history');
});

t.test('canary: a home that grants M before the invalidations are acknowledged is caught by the history check alone', async (t) => {
  // Node 1 is cut off from the invalidations: the real build waits for it (or its lease), the broken one does not.
  t.ok(checkHistory(sharersThenWrite(undefined, 1).history).ok, 'the scenario is linearizable on the real build');
  t.notOk(checkHistory(sharersThenWrite('grant-m-before-acks', 1).history).ok, 'the broken build produces a non-linearizable history');
});

for (const [i, canary] of (['skip-one-invalidation', 'grant-m-before-acks'] as const).entries()) {
  t.test(`canary: the ${canary} build breaks the coherence invariants under random schedules`, async (t) => {
    const opts: SimOptions = { nodes: 3, keys: 1, cfg: canaryCfg, invariants: true, canary };
    const result = fc.check(fc.property(fc.array(actionArb(3, 1, 'none'), { minLength: 20, maxLength: 100, size: 'max' }), (actions) => {
      run(`canary ${canary}`, opts, actions);
    }), params(400, 200 + i, true));
    t.ok(result.failed, 'the invariant check fails');
    if (result.failed) t.match(String(result.errorInstance), /single writer|does not record|differ/);
  });
}

for (const back of [false, true]) {
  t.test(`canary: a node that serves a line past its volume lease${back ? ', or in a volume period that ended,' : ''} is caught by the history check alone`, async (t) => {
    const real = cutOffReader(undefined, back);
    t.ok(checkHistory(real.history).ok, 'the scenario is linearizable on the real build');
    t.ok((real.homes[0]?.counters.leaseReclaims ?? 0) > 0, 'the home reclaimed the cut-off reader');
    if (back) t.ok((real.nodes[0]?.volumeLeaseUntilMs(cacheNodeIndex(0)) ?? 0) > real.nowMs, 'the reader holds a volume lease again when it reads');
    t.notOk(checkHistory(cutOffReader('serve-past-volume-lease', back).history).ok, 'the broken build produces a non-linearizable history');
  });
}

// Every schedule that ever failed, replayed as found (shrunk) by fast-check.

/**
 * Seed 1212 (write-back, crashes): node 1 writes k1 locally (dirty M); node 0 reads it, so the
 * home forwards to node 1, which hands its dirty data over in its Ack and keeps a clean copy;
 * the Ack is lost and node 1 crashes before the home's resent Fwd reaches it. The data lived
 * on only in node 1's copy of its answer. The home counts the loss (it forgets the old
 * incarnation's possibly dirty M line) and serves memory's value to everyone from then on;
 * the simulator failed to count it (it counted dirty lines, PutMs and Acks in flight, not a
 * dropped Ack), so it held the run to linearizability.
 */
const seed1212: Action[] = [
  { t: 'set', node: 1, key: 1, del: false }, { t: 'deliver', pick: 0 }, { t: 'deliver', pick: 0 }, { t: 'deliver', pick: 0 },
  { t: 'get', node: 0, key: 1 }, { t: 'deliver', pick: 0 }, { t: 'deliver', pick: 0 }, { t: 'drop', pick: 0 },
  { t: 'crash', node: 1 }, { t: 'deliver', pick: 0 }, { t: 'evict', node: 0, key: 0 }, { t: 'get', node: 0, key: 0 },
  { t: 'get', node: 0, key: 0 }, { t: 'deliver', pick: 0 }, { t: 'set', node: 0, key: 0, del: false }, { t: 'get', node: 0, key: 0 },
  { t: 'deliver', pick: 0 }, { t: 'deliver', pick: 0 }, { t: 'deliver', pick: 0 }, { t: 'evict', node: 0, key: 0 },
  { t: 'dup', pick: 0 }, { t: 'deliver', pick: 0 }, { t: 'set', node: 0, key: 0, del: false }, { t: 'deliver', pick: 0 },
  { t: 'get', node: 1, key: 1 }, { t: 'evict', node: 0, key: 0 }, { t: 'get', node: 0, key: 0 }, { t: 'get', node: 0, key: 0 },
  { t: 'drop', pick: 166 },
];

for (const v of variants.filter((v) => v.cfg.writePolicy === 'write-back')) {
  t.test(`${v.name}: seed 1212, a crashed node's dirty data in a lost Ack is counted and never served again`, async (t) => {
    const opts: SimOptions = { nodes: 3, keys: 3, cfg: simCfg(v.cfg), invariants: true, lineEntriesMax: 2 };
    const sim = run(`${v.name} seed 1212`, opts, seed1212);
    t.ok(sim.dirtyLost > 0, 'the simulator counts the loss');
    t.ok((sim.homes[1]?.counters.writeBackLoss ?? 0) > 0, "the loss shows in the home's metrics");
    // Both reads of k1 (node 0's, answered after the crash, and the restarted node 1's) see memory's value.
    const reads = sim.history.filter((op) => op.key === 'k1' && op.kind === 'get');
    t.ok(reads.length === 2 && reads.every((op) => op.value === null), "every read of k1 answers memory's value, never the lost write");
    t.notOk(checkHistory(sim.history).ok, 'the history shows the loss (so the run is rightly not held to linearizability)');
  });
}

/**
 * Seed 41 with 4 nodes (write-through update): node 1's write of k2 (a GetM carrying it) is
 * held up until node 1 gives it up (unknown outcome); node 1 then reads k2 and ends up a
 * sharer. The old GetM arrives: the home took it for an upgrade from that sharer, so it
 * invalidated the others but not node 1, wrote memory and answered node 1, which no longer
 * waited for that answer and kept serving its old copy beside the new value (pushed to the
 * others, who could read it). The home now invalidates the requester too when a GetM writes.
 */
const seed41Nodes4: Action[] = [
  { t: 'set', node: 0, key: 0, del: false }, { t: 'get', node: 0, key: 1 }, { t: 'get', node: 0, key: 2 },
  { t: 'set', node: 1, key: 2, del: false }, { t: 'get', node: 1, key: 2 }, { t: 'tick', ms: 300 }, { t: 'deliver', pick: 188 },
  { t: 'deliver', pick: 0 }, { t: 'get', node: 1, key: 0 }, { t: 'tick', ms: 300 }, { t: 'get', node: 0, key: 0 },
  { t: 'deliver', pick: 266 }, { t: 'flush', node: 0 }, { t: 'deliver', pick: 0 }, { t: 'deliver', pick: 0 },
  { t: 'deliver', pick: 150 }, { t: 'set', node: 0, key: 0, del: false }, { t: 'deliver', pick: 4 },
  { t: 'get', node: 0, key: 0 }, { t: 'deliver', pick: 37 }, { t: 'get', node: 0, key: 0 }, { t: 'deliver', pick: 634 },
  { t: 'deliver', pick: 0 }, { t: 'flush', node: 0 }, { t: 'deliver', pick: 0 }, { t: 'dup', pick: 0 },
];

for (const v of variants.filter((v) => v.cfg.writePolicy === 'write-through')) {
  t.test(`${v.name}: seed 41 (4 nodes), a write given up and applied late leaves no stale copy at its writer`, async (t) => {
    const sim = run(`${v.name} seed 41`, { nodes: 4, keys: 3, cfg: simCfg(v.cfg), invariants: true, lineEntriesMax: 2 }, seed41Nodes4);
    t.ok(sim.history.some((op) => op.kind === 'set' && op.complete === Infinity), 'a write was given up (unknown outcome)');
    t.ok((sim.homes[2]?.counters.invalidationsSent ?? 0) > 0, 'the late write invalidated copies of k2');
  });
}

/**
 * Seed 101, run 683 (write-through): node 0's write of k0 is held up until node 0 gives it
 * up; node 0 reads k0 and becomes its owner (E); the old write arrives and the home, taking
 * a new request from the owner to mean "it holds nothing", applied it and granted M again
 * (an answer node 0 ignored). Node 0's next write, from its E line at the old version, was
 * refused as stale, and it started over from the same line: the same Write, refused again,
 * with no time passing (a livelock). Now the home drops a write from the owner older than
 * the request that made it owner, and a node drops the line a stale Nack shows is behind.
 */
const seed101Run683: Action[] = [
  { t: 'set', node: 0, key: 1, del: false }, { t: 'set', node: 0, key: 0, del: false }, { t: 'deliver', pick: 0 },
  { t: 'tick', ms: 20 }, { t: 'tick', ms: 60 }, { t: 'get', node: 0, key: 0 }, { t: 'get', node: 0, key: 0 },
  { t: 'drop', pick: 0 }, { t: 'get', node: 0, key: 0 }, { t: 'deliver', pick: 0 }, { t: 'tick', ms: 20 },
  { t: 'drop', pick: 0 }, { t: 'drop', pick: 79 }, { t: 'evict', node: 0, key: 0 }, { t: 'set', node: 0, key: 0, del: false },
  { t: 'tick', ms: 300 }, { t: 'deliver', pick: 871 }, { t: 'deliver', pick: 16 }, { t: 'deliver', pick: 0 },
  { t: 'deliver', pick: 0 }, { t: 'dup', pick: 0 }, { t: 'set', node: 0, key: 0, del: false },
  { t: 'set', node: 0, key: 0, del: false }, { t: 'deliver', pick: 0 }, { t: 'deliver', pick: 0 },
];

/**
 * Seed 104, run 781 (write-through update): the same late write, from a node whose read of
 * the key was granted E a moment before: the home applied the write (the writer becoming a
 * sharer among the pushed subscribers) while the E grant was still on its way, so the node
 * installed an E line the home no longer recorded as owned, beside newer memory.
 */
const seed104Run781: Action[] = [
  { t: 'get', node: 0, key: 0 }, { t: 'set', node: 1, key: 1, del: false }, { t: 'deliver', pick: 0 }, { t: 'drop', pick: 0 },
  { t: 'get', node: 2, key: 1 }, { t: 'get', node: 0, key: 1 }, { t: 'deliver', pick: 0 }, { t: 'deliver', pick: 0 },
  { t: 'deliver', pick: 0 }, { t: 'deliver', pick: 0 }, { t: 'deliver', pick: 0 }, { t: 'deliver', pick: 0 },
  { t: 'deliver', pick: 0 }, { t: 'deliver', pick: 0 }, { t: 'deliver', pick: 0 }, { t: 'set', node: 2, key: 1, del: false },
  { t: 'tick', ms: 300 }, { t: 'set', node: 0, key: 4, del: false }, { t: 'crash', node: 2 }, { t: 'deliver', pick: 515 },
  { t: 'tick', ms: 300 }, { t: 'deliver', pick: 511 }, { t: 'deliver', pick: 415 }, { t: 'set', node: 2, key: 1, del: false },
  { t: 'get', node: 1, key: 4 }, { t: 'get', node: 0, key: 0 }, { t: 'deliver', pick: 530 }, { t: 'deliver', pick: 446 },
  { t: 'deliver', pick: 0 }, { t: 'deliver', pick: 0 }, { t: 'set', node: 0, key: 0, del: false }, { t: 'get', node: 0, key: 0 },
  { t: 'evict', node: 0, key: 0 }, { t: 'set', node: 0, key: 0, del: false }, { t: 'deliver', pick: 0 },
  { t: 'deliver', pick: 0 }, { t: 'get', node: 0, key: 0 }, { t: 'deliver', pick: 0 }, { t: 'deliver', pick: 0 },
  { t: 'set', node: 0, key: 0, del: false }, { t: 'deliver', pick: 0 }, { t: 'deliver', pick: 0 }, { t: 'crash', node: 2 },
  { t: 'crash', node: 2 }, { t: 'deliver', pick: 0 }, { t: 'deliver', pick: 0 },
];

for (const v of variants.filter((v) => v.cfg.writePolicy === 'write-through')) {
  for (const [name, actions] of [['seed 101 run 683', seed101Run683], ['seed 104 run 781', seed104Run781]] as const) {
    t.test(`${v.name}: ${name}, a write given up and applied late leaves the writer neither looping nor holding a line the home does not record`, async (t) => {
      const sim = run(`${v.name} ${name}`, { nodes: 3, keys: 3, cfg: simCfg(v.cfg), invariants: true, lineEntriesMax: 2 }, actions);
      t.ok(sim.history.some((op) => op.kind === 'set' && op.complete === Infinity), 'a write was given up (unknown outcome)');
      t.equal(sim.open.size, 0, 'every op completed');
    });
  }
}

/**
 * Seed 15, run 665 (write-back): node 1 owns k1 dirty; a Fwd of round 1 (node 2 reads) is
 * duplicated, and round 2 (node 0 writes) forwards too: node 1 answers round 2 with its dirty
 * data. The late copy of round 1's Fwd then replaced node 1's kept answer with "nothing
 * here", so the resent round-2 Fwd got that too: the home took the round as answered
 * without the data (MOESI: an assertion; an M owner's dirty data would go the same way,
 * uncounted). A node now ignores a Fwd of an older round than the answer it keeps.
 */
const seed15Run665: Action[] = [
  { t: 'set', node: 1, key: 1, del: false }, { t: 'deliver', pick: 0 }, { t: 'deliver', pick: 0 }, { t: 'deliver', pick: 0 },
  { t: 'get', node: 2, key: 1 }, { t: 'set', node: 0, key: 1, del: false }, { t: 'deliver', pick: 0 }, { t: 'dup', pick: 357 },
  { t: 'deliver', pick: 242 }, { t: 'deliver', pick: 273 }, { t: 'deliver', pick: 117 }, { t: 'dup', pick: 223 },
  { t: 'get', node: 0, key: 0 }, { t: 'get', node: 0, key: 0 }, { t: 'set', node: 0, key: 0, del: false },
  { t: 'set', node: 0, key: 0, del: false }, { t: 'get', node: 0, key: 0 }, { t: 'drop', pick: 382 },
  { t: 'get', node: 0, key: 0 }, { t: 'get', node: 0, key: 0 }, { t: 'get', node: 0, key: 0 }, { t: 'get', node: 0, key: 0 },
  { t: 'set', node: 0, key: 0, del: false }, { t: 'get', node: 0, key: 0 }, { t: 'deliver', pick: 0 }, { t: 'deliver', pick: 0 },
  { t: 'set', node: 0, key: 0, del: false }, { t: 'deliver', pick: 294 }, { t: 'deliver', pick: 905 },
  { t: 'set', node: 0, key: 0, del: false },
];

for (const v of variants.filter((v) => v.cfg.writePolicy === 'write-back')) {
  t.test(`${v.name}: seed 15 run 665, a late Fwd of an older round does not replace the dirty answer of the newer one`, async (t) => {
    const sim = run(`${v.name} seed 15`, { nodes: 3, keys: 3, cfg: simCfg(v.cfg), invariants: true, lineEntriesMax: 2 }, seed15Run665);
    t.equal(sim.dirtyLost, 0, 'nothing is lost');
    t.ok(sim.history.some((op) => op.key === 'k1' && op.kind === 'set' && op.value === 'w1'), 'node 1 wrote k1');
  });
}

/**
 * Seed 2026, run 656 (MESI write-back): a Fwd of round 1 (version 2) to node 2 is still in
 * flight when node 2 is granted E at version 5 and writes locally (dirty M). The late Fwd
 * arrived and node 2 obeyed it: it downgraded its dirty line to a clean S copy (its Ack,
 * for a round long over, ignored) while the home still recorded it as the E owner: the
 * write gone uncounted and an S copy beside different memory. A node now ignores a Fwd
 * older than the line it holds.
 */
const seed2026Run656: Action[] = [
  { t: 'get', node: 0, key: 0 }, { t: 'deliver', pick: 0 }, { t: 'deliver', pick: 0 }, { t: 'deliver', pick: 0 },
  { t: 'get', node: 2, key: 4 }, { t: 'deliver', pick: 0 }, { t: 'set', node: 2, key: 2, del: false }, { t: 'drop', pick: 21 },
  { t: 'crash', node: 0 }, { t: 'deliver', pick: 0 }, { t: 'tick', ms: 300 }, { t: 'set', node: 0, key: 0, del: false },
  { t: 'get', node: 0, key: 4 }, { t: 'deliver', pick: 799 }, { t: 'deliver', pick: 57 }, { t: 'deliver', pick: 587 },
  { t: 'get', node: 1, key: 0 }, { t: 'deliver', pick: 259 }, { t: 'tick', ms: 300 }, { t: 'deliver', pick: 591 },
  { t: 'deliver', pick: 90 }, { t: 'deliver', pick: 0 }, { t: 'get', node: 0, key: 0 }, { t: 'deliver', pick: 670 },
  { t: 'deliver', pick: 943 }, { t: 'deliver', pick: 549 }, { t: 'dup', pick: 719 }, { t: 'set', node: 2, key: 1, del: false },
  { t: 'set', node: 0, key: 0, del: false }, { t: 'set', node: 0, key: 0, del: false }, { t: 'tick', ms: 5 },
  { t: 'deliver', pick: 0 }, { t: 'deliver', pick: 0 }, { t: 'set', node: 0, key: 0, del: false }, { t: 'deliver', pick: 0 },
  { t: 'set', node: 0, key: 0, del: false }, { t: 'deliver', pick: 0 }, { t: 'deliver', pick: 0 }, { t: 'drop', pick: 0 },
  { t: 'flush', node: 0 }, { t: 'deliver', pick: 0 }, { t: 'tick', ms: 5 }, { t: 'drop', pick: 0 }, { t: 'deliver', pick: 0 },
  { t: 'flush', node: 0 }, { t: 'get', node: 0, key: 0 }, { t: 'set', node: 0, key: 0, del: false }, { t: 'deliver', pick: 0 },
];

for (const v of variants.filter((v) => v.cfg.writePolicy === 'write-back')) {
  t.test(`${v.name}: seed 2026 run 656, a late Fwd older than the line it finds leaves the line alone`, async (t) => {
    const sim = run(`${v.name} seed 2026`, { nodes: 3, keys: 3, cfg: simCfg(v.cfg), invariants: true, lineEntriesMax: 2 }, seed2026Run656);
    t.ok(sim.history.some((op) => op.key === 'k1' && op.kind === 'set' && op.value === 'w3'), 'node 2 wrote k1 locally');
  });
}
