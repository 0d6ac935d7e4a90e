// The shipped replication path under the simulator: RUNNER_SIM_SEEDS (default 120)
// seeds run real GroupHost/GroupRunner instances with the JournalService on
// simulated disks (torn unsynced tails on crash), a faulty network and per-node
// virtual clocks (sim-cluster.ts), checking Raft's safety properties on every
// Ready, durable record and message, that every acknowledged append is the
// committed entry at its index, that linearizable reads see every append
// acknowledged before they began, and that replicas converge after healing.
// A failure names the seed; replay with `SEED=n TRACE=1 node dist/test/sim/runner-run.js`.

import t from 'tap';
import { assert } from '../../core/assert.js';
import { failureReport } from './common.js';
import { mapSeedsOnWorker } from './on-worker.js';
import type { RunnerSimOptions, RunnerSimResult } from './runner-sim.js';
import { loadKeptSeeds } from './seeds.js';

const seedsCount = Number(process.env['RUNNER_SIM_SEEDS'] ?? '120');
const seedStart = Number(process.env['SEED_START'] ?? '0');

/** runRunnerSeed for each seed, in order, off tap's thread (on-worker.ts says why). */
function runRunnerSeeds(seeds: readonly number[], opts: RunnerSimOptions = {}): Promise<RunnerSimResult[]> {
  return mapSeedsOnWorker(new URL('./runner-sim.js', import.meta.url), 'runRunnerSeed', seeds, opts);
}

t.test('every runner seed that ever failed still passes', async (t) => {
  const kept = loadKeptSeeds('runner-seeds.json');
  for (const r of await runRunnerSeeds(kept.map((s) => s.seed))) {
    t.ok(r.ok, r.ok ? `seed ${r.seed} passes` : failureReport(r, 'node dist/test/sim/runner-run.js'));
  }
  t.pass(`${kept.length} regression seeds replayed`);
});

t.test(`${seedsCount} seeds of the real runner keep every invariant and converge after healing`, async (t) => {
  const t0 = performance.now();
  const failures: string[] = [];
  let crashes = 0;
  let torn = 0;
  let snapshots = 0;
  let acked = 0;
  let reads = 0;
  let events = 0;
  let readysInFlightMax = 0;
  for (const r of await runRunnerSeeds(Array.from({ length: seedsCount }, (_, i) => seedStart + i))) {
    if (!r.ok) failures.push(failureReport(r, 'node dist/test/sim/runner-run.js'));
    crashes += r.stats.crashes;
    torn += r.stats.tornWrites;
    snapshots += r.stats.snapshotsInstalled;
    acked += r.acked;
    reads += r.reads;
    events += r.events;
    readysInFlightMax = Math.max(readysInFlightMax, r.stats.readysInFlightMax);
  }
  t.same(failures, [], 'no seed failed');
  // The run must really have exercised what it claims to.
  t.ok(crashes > seedsCount, `crashes happened (${crashes})`);
  t.ok(torn > seedsCount / 4, `unsynced writes were lost or torn (${torn})`);
  t.ok(snapshots > 10, `snapshots were installed from leaders (${snapshots})`);
  t.ok(acked > seedsCount * 20, `appends were acknowledged and checked (${acked})`);
  t.ok(reads > seedsCount * 5, `linearizable reads were checked (${reads})`);
  // The pipelined runner, not a one-Ready-at-a-time one, was under test.
  t.ok(readysInFlightMax > 1, `a group had several Readys in flight at once (at most ${readysInFlightMax})`);
  t.comment(`${seedsCount} seeds, ${events} events in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
});

t.test('a runner seed replays byte for byte', async (t) => {
  for (const seed of [3, 17]) {
    const [a, b] = await runRunnerSeeds([seed, seed], { trace: true });
    assert(a !== undefined && b !== undefined, 'two runs');
    t.ok(a.ok, `seed ${seed} passes`);
    t.equal(a.trace.join('\n'), b.trace.join('\n'), `seed ${seed}: identical traces`);
    t.same([a.stats, a.acked, a.reads, a.events], [b.stats, b.acked, b.reads, b.events], `seed ${seed}: identical counters`);
    t.ok(a.trace.length > 10, `seed ${seed}: the trace is not empty`);
  }
});
