// The lock simulator in CI: LOCK_SIM_SEEDS (default 600, ~70 s on 2 idle cores) randomized seeds plus every
// seed in locks-failed-seeds.json run the shipped lock service (the real LockService
// and GroupHost on simulated nodes: leader lease clock, protobuf entries, retrying
// clients over links) under crashes with torn writes, partitions, message loss and
// pauses. Each seed
// checks the Raft invariants on every step, that every replica applies identical
// lock outcomes, that the committed grant history never overlaps an exclusive hold,
// keeps tokens increasing per lock and FIFO order, that every grant a client saw
// was made by a committed entry, and that after healing every client gets its
// locks again. A failure names the seed and property; replay with
// `SEED=n TRACE=1 node dist/test/sim/locks-run.js`.

import { availableParallelism } from 'node:os';
import t from 'tap';
import { runLockSeedsParallel } from './locks-run.js';
import type { LockSeedSummary } from './locks-run.js';
import { failureReport } from './common.js';
import { runLockSeed } from './locks-sim.js';
import { loadLockFailedSeeds } from './seeds.js';

const seedsCount = Number(process.env['LOCK_SIM_SEEDS'] ?? '600');
const seedStart = Number(process.env['SEED_START'] ?? '0');
const jobs = Math.max(1, Math.min(2, availableParallelism()));

function report(r: LockSeedSummary): string {
  return failureReport(r, 'node dist/test/sim/locks-run.js', 6);
}

t.test('every lock seed that ever failed still passes', async (t) => {
  const seeds = loadLockFailedSeeds();
  const results = await runLockSeedsParallel(seeds.map((s) => s.seed), {}, jobs);
  for (const r of results) t.ok(r.ok, r.ok ? `seed ${r.seed} passes` : report(r));
  t.pass(`${seeds.length} regression seeds replayed`);
});

t.test(`${seedsCount} random seeds keep the lock invariants and every client gets its locks after healing`, async (t) => {
  const t0 = performance.now();
  const seeds = Array.from({ length: seedsCount }, (_, i) => seedStart + i);
  const results = await runLockSeedsParallel(seeds, {}, jobs);
  const failures = results.filter((r) => !r.ok).map(report);
  t.same(failures, [], 'no seed failed');
  t.equal(results.length, seedsCount, 'every seed ran');
  // The run must really have exercised what it claims to.
  const sum = (f: (r: LockSeedSummary) => number): number => results.reduce((a, r) => a + f(r), 0);
  const stat = (k: keyof LockSeedSummary['lockStats']): number => sum((r) => r.lockStats[k]);
  t.ok(sum((r) => r.crashes) > seedsCount / 2, `crashes happened (${sum((r) => r.crashes)})`);
  t.ok(stat('grants') > seedsCount * 10, `grants were checked (${stat('grants')})`);
  t.ok(stat('clientGrants') > seedsCount * 10, `clients accepted grants, each checked against the committed history (${stat('clientGrants')})`);
  t.ok(stat('grantsAfterHeal') >= seedsCount * 4, `every client got locks after healing (${stat('grantsAfterHeal')})`);
  t.ok(stat('queued') > seedsCount, `requests waited in queues (${stat('queued')})`);
  t.ok(stat('sessionsExpired') > 50, `sessions expired through the leader's lease clock (${stat('sessionsExpired')})`);
  t.ok(stat('deadlocks') > 20, `deadlocks were detected (${stat('deadlocks')})`);
  t.ok(stat('waitTimeouts') > 20, `waits timed out (${stat('waitTimeouts')})`);
  t.ok(stat('revoked') > 20, `holds were force-released (${stat('revoked')})`);
  t.ok(stat('duplicates') > 20, `retried requests were applied once (${stat('duplicates')} duplicates)`);
  t.ok(stat('rebuilds') > 50, `replicas rebuilt their tables after crashes and snapshots (${stat('rebuilds')})`);
  t.comment(`${seedsCount} seeds in ${((performance.now() - t0) / 1000).toFixed(1)}s on ${jobs} job(s): ${JSON.stringify(results.reduce((acc, r) => {
    for (const [k, v] of Object.entries(r.lockStats)) acc[k] = (acc[k] ?? 0) + v;
    return acc;
  }, {} as Record<string, number>))}`);
});

t.test('a lock seed replays byte for byte', async (t) => {
  for (const seed of [3, 17, 42]) {
    const a = await runLockSeed(seed, { trace: true });
    const b = await runLockSeed(seed, { trace: true });
    t.ok(a.ok && b.ok, `seed ${seed} passes`);
    t.equal(a.trace.join('\n'), b.trace.join('\n'), `seed ${seed}: identical traces`);
    t.same(a.lockStats, b.lockStats, `seed ${seed}: identical lock counters`);
    t.ok(a.trace.some((l) => l.includes('apply')), `seed ${seed}: the trace shows applied lock commands`);
  }
});
