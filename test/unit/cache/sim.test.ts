// Property test: 3-4 cache nodes (each the home of some keys) run random gets, sets,
// deletes, evictions and flushes while a simulated network delivers messages and memory
// completions in random order, drops and duplicates them, time passes and nodes crash.
// After every action the coherence invariants hold (never two E/M holders, never E/M
// beside another copy, every served line is recorded at its home, S copies agree with
// memory, versions never go back); after healing every op on a live node completes, and
// the whole history is linearizable per key against the naive twin (model.ts). Each
// protocol variant runs; a build that skips one invalidation must be caught by the
// history check alone, and so must a node that serves past its lease. Write-back variants
// also run without crashes and drops, where most runs lose nothing and are all checked.
// fast-check prints the seed; replay with SEED=<n> PATH_REPLAY=<path>; RUNS=<n> for more.
// CI runs seed 101 (ciSeed); other seeds are for exploring.

import fc from 'fast-check';
import t from 'tap';
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

/**
 * Write-back's documented loss window: a crashed node's dirty data, and an owner's whose
 * line the home reclaimed, are lost; nodes and homes count it (PutAck not applied,
 * renewal refused, owner reclaimed), the simulator counts what died with a node. A run
 * with a counted loss is not held to linearizability (it cannot be); every other run is,
 * and every run to the coherence invariants.
 */
function run(name: string, opts: SimOptions, actions: readonly Action[]): void {
  const sim = new Sim(opts);
  for (const a of actions) sim.apply(a);
  if (!sim.settle()) throw new Error(`${sim.open.size} ops never completed after healing`);
  if (sim.dirtyLost > 0) {
    lossRuns.set(name, (lossRuns.get(name) ?? 0) + 1);
    return;
  }
  const r = checkHistory(sim.history);
  if (!r.ok) throw new Error(`history of ${r.key} is not linearizable`);
}

const ciSeed = 101;

function params(runs: number, endOnFailure = false): fc.Parameters<[Action[]]> {
  const p: fc.Parameters<[Action[]]> = { numRuns: Number(process.env['RUNS'] ?? runs), endOnFailure };
  // A fixed seed in CI: a red build must mean a regression. SEED=<n> explores others; seed 1212
  // finds a write-back run under crashes that fails (open, see issue 11's note).
  p.seed = Number(process.env['SEED'] ?? ciSeed);
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
const runsPerVariant = 24;

for (const v of variants) {
  t.test(`${v.name}: coherent and linearizable per key under reordering, loss, duplicates and crashes`, async (t) => {
    const opts: SimOptions = { nodes: 3, keys: 3, cfg: simCfg(v.cfg), invariants: true, lineEntriesMax: 2 };
    const result = fc.check(fc.property(fc.array(actionArb(3, 3, 'all'), { minLength: 20, maxLength: 100, size: 'max' }), (actions) => run(v.name, opts, actions)), params(runsPerVariant));
    if (result.failed) t.fail(fc.defaultReportMessage(result) ?? 'failed');
    else t.pass(`${result.numRuns} runs, ${lossRuns.get(v.name) ?? 0} with a counted write-back loss`);
    if (v.cfg.writePolicy === 'write-through') t.equal(lossRuns.get(v.name) ?? 0, 0, 'write-through never loses an acknowledged write');
  });
  if (v.cfg.writePolicy === 'write-back') {
    t.test(`${v.name}: linearizable per key under reordering and duplicates (no crash, no loss)`, async (t) => {
      const name = `${v.name} no-crash`;
      const opts: SimOptions = { nodes: 3, keys: 3, cfg: simCfg(v.cfg), invariants: true, lineEntriesMax: 2 };
      const result = fc.check(fc.property(fc.array(actionArb(3, 3, 'reorder'), { minLength: 20, maxLength: 100, size: 'max' }), (actions) => run(name, opts, actions)), params(20));
      if (result.failed) t.fail(fc.defaultReportMessage(result) ?? 'failed');
      const lossy = lossRuns.get(name) ?? 0;
      t.ok(lossy * 2 <= result.numRuns, `most runs are checked for linearizability (${result.numRuns - lossy} of ${result.numRuns})`);
    });
  }
}

const canaryCfg = simCfg(cacheConfigDefault);

/** Delivers every message in order; invalidations and forwards to `cut` are dropped (a one-way partition). */
function deliverAll(sim: Sim, cut = -1): void {
  for (let d = 0; sim.flights.length > 0; d++) {
    if (d > 10_000) throw new Error('messages keep flowing');
    const f = sim.flights[0];
    const toCut = f !== undefined && f.to === 'node' && f.msg.to === cut && (f.msg.kind === 'Inv' || f.msg.kind === 'Fwd');
    sim.apply({ t: toCut ? 'drop' : 'deliver', pick: 0 });
  }
}

/** Two readers share the key, a third node writes, the first reader reads again. */
function sharersThenWrite(canary?: 'skip-one-invalidation'): Sim {
  const sim = new Sim({ nodes: 3, keys: 1, cfg: canaryCfg, invariants: false, ...(canary !== undefined ? { canary } : {}) });
  sim.apply({ t: 'set', node: 0, key: 0, del: false });
  deliverAll(sim);
  sim.apply({ t: 'get', node: 1, key: 0 });
  deliverAll(sim);
  sim.apply({ t: 'get', node: 2, key: 0 });
  deliverAll(sim);
  sim.apply({ t: 'set', node: 0, key: 0, del: false });
  deliverAll(sim);
  sim.apply({ t: 'get', node: 1, key: 0 });
  sim.apply({ t: 'get', node: 2, key: 0 });
  if (!sim.settle()) throw new Error('ops left open');
  return sim;
}

/** Node 0 reads; node 1 writes (twice) while node 0 is cut off from invalidations until its lease ran out; node 0 reads again. */
function cutOffReader(canary?: 'serve-past-lease'): Sim {
  const sim = new Sim({ nodes: 3, keys: 1, cfg: canaryCfg, invariants: false, ...(canary !== undefined ? { canary } : {}) });
  sim.apply({ t: 'get', node: 0, key: 0 });
  deliverAll(sim);
  sim.apply({ t: 'set', node: 1, key: 0, del: false });
  for (let i = 0; i < 20; i++) {
    deliverAll(sim, 0);
    sim.apply({ t: 'tick', ms: 50 });
  }
  // The first write waited out the reader's lease and may be reported unknown; a second one completes at once.
  sim.apply({ t: 'set', node: 1, key: 0, del: false });
  deliverAll(sim, 0);
  sim.apply({ t: 'get', node: 0, key: 0 });
  if (!sim.settle()) throw new Error('ops left open');
  return sim;
}

t.test('canary: a home that skips one invalidation per round is caught by the history check alone', async (t) => {
  t.ok(checkHistory(sharersThenWrite().history).ok, 'the scenario is linearizable on the real build');
  const r = checkHistory(sharersThenWrite('skip-one-invalidation').history);
  t.notOk(r.ok, 'the broken build produces a non-linearizable history');
});

t.test('canary: the same broken build breaks the coherence invariants under random schedules', async (t) => {
  const opts: SimOptions = { nodes: 3, keys: 1, cfg: canaryCfg, invariants: true, canary: 'skip-one-invalidation' };
  const result = fc.check(fc.property(fc.array(actionArb(3, 1, 'none'), { minLength: 20, maxLength: 100, size: 'max' }), (actions) => run('canary-inv', opts, actions)), params(400, true));
  t.ok(result.failed, 'the invariant check fails');
  if (result.failed) t.match(String(result.errorInstance), /single writer|does not record|differ/);
});

t.test('canary: a node that serves a line past its lease is caught by the history check alone', async (t) => {
  const real = cutOffReader();
  t.ok(checkHistory(real.history).ok, 'the scenario is linearizable on the real build');
  t.ok((real.homes[0]?.counters.leaseReclaims ?? 0) > 0, 'the home reclaimed the cut-off reader');
  t.notOk(checkHistory(cutOffReader('serve-past-lease').history).ok, 'the broken build produces a non-linearizable history');
});
