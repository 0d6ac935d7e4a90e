// Command-line runner for the lock simulator (locks-sim.ts).
//   SEED=n        replay one seed exactly (TRACE=1 prints its event trace)
//   SEEDS=n       run seeds SEED_START..SEED_START+n-1 (default 500), plus every seed in locks-failed-seeds.json
//   JOBS=n        worker threads (default: available cores)
//   VARIANT=...   run a canary (grant-when-blocked | barge | reuse-token)
//   FAULT_MS=n    length of the fault phase in virtual ms (default 6000)
// A new failing seed of the correct build is printed with its replay command and
// appended to test/sim/locks-failed-seeds.json (unless RECORD=0).

import { availableParallelism } from 'node:os';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { envInt, runMain, runSeedsOnWorkers, seedsToRun } from './common.js';
import type { SeedSummary } from './common.js';
import { lockVariants, runLockSeed } from './locks-sim.js';
import type { LockSimOptions, LockStats, LockVariant } from './locks-sim.js';
import { loadLockFailedSeeds, recordLockFailedSeed } from './seeds.js';

interface Job {
  readonly seeds: readonly number[];
  readonly opts: LockSimOptions;
}

export interface LockSeedSummary extends SeedSummary {
  readonly crashes: number;
  readonly grants: number;
  readonly lockStats: LockStats;
}

function parseVariant(v: string | undefined): LockVariant {
  if (v === undefined || v === '') return 'correct';
  const found = lockVariants.find((x) => x === v);
  if (found === undefined) throw new Error(`unknown VARIANT ${v} (one of ${lockVariants.join(', ')})`);
  return found;
}

async function runSeeds(job: Job, onResult: (s: LockSeedSummary) => void): Promise<void> {
  for (const seed of job.seeds) {
    const r = await runLockSeed(seed, job.opts);
    onResult({ seed, ok: r.ok, property: r.property, error: r.error, profile: r.profile, steps: r.events, crashes: r.stats.crashes, grants: r.lockStats.grants, lockStats: r.lockStats });
  }
}

/** Runs seeds over `jobs` worker threads (in this thread when jobs <= 1 or few seeds). */
export async function runLockSeedsParallel(seeds: readonly number[], opts: LockSimOptions, jobs: number): Promise<LockSeedSummary[]> {
  if (jobs <= 1 || seeds.length < 20) {
    const out: LockSeedSummary[] = [];
    await runSeeds({ seeds, opts }, (s) => out.push(s));
    return out;
  }
  return runSeedsOnWorkers<Job, LockSeedSummary>(seeds, jobs, new URL(import.meta.url), (chunk) => ({ seeds: chunk, opts }));
}

async function main(): Promise<number> {
  const variant = parseVariant(process.env['VARIANT']);
  const opts: LockSimOptions = { variant, faultPhaseMs: envInt('FAULT_MS', 6_000) };
  const single = process.env['SEED'];
  if (single !== undefined && single !== '') {
    const seed = envInt('SEED', 0);
    const r = await runLockSeed(seed, { ...opts, trace: process.env['TRACE'] === '1' });
    if (process.env['TRACE'] === '1') console.log(r.trace.join('\n'));
    console.log(`seed ${seed}: ${r.ok ? 'ok' : `FAILED ${r.property}`} (${r.events} events, ${Math.round(r.virtualMs)} virtual ms)`);
    console.log(`  profile: ${r.profile}`);
    console.log(`  locks: ${JSON.stringify(r.lockStats)}`);
    if (!r.ok) console.log(`  ${r.error}`);
    return r.ok ? 0 : 1;
  }
  const count = envInt('SEEDS', 500);
  const start = envInt('SEED_START', 0);
  const jobs = envInt('JOBS', availableParallelism());
  const regression = variant === 'correct' ? loadLockFailedSeeds().map((s) => s.seed) : [];
  const seeds = seedsToRun(regression, start, count);
  const t0 = performance.now();
  const results = await runLockSeedsParallel(seeds, opts, jobs);
  const elapsedS = (performance.now() - t0) / 1000;
  const failed = results.filter((r) => !r.ok);
  for (const r of failed) {
    console.log(`FAILED seed ${r.seed}: ${r.property}: ${r.error.split('\n').slice(0, 8).join('\n    ')}`);
    console.log(`  profile: ${r.profile}`);
    console.log(`  replay:  SEED=${r.seed} TRACE=1 node dist/test/sim/locks-run.js`);
    if (variant === 'correct' && process.env['RECORD'] !== '0') {
      recordLockFailedSeed({ seed: r.seed, property: r.property, note: r.error.split('\n')[0] ?? '' });
    }
  }
  const grants = results.reduce((a, r) => a + r.grants, 0);
  const byProperty = new Map<string, number>();
  for (const r of failed) byProperty.set(r.property, (byProperty.get(r.property) ?? 0) + 1);
  console.log(
    `${results.length} seeds (${regression.length} from locks-failed-seeds.json), ${failed.length} failed ${JSON.stringify([...byProperty])}, ` +
      `${grants} grants checked, ${elapsedS.toFixed(1)}s on ${jobs} job(s); variant ${variant}`,
  );
  return failed.length === 0 ? 0 : 1;
}

if (isMainThread) {
  // Only as the entry point (locks.test.ts imports runLockSeedsParallel).
  if (process.argv[1] !== undefined && new URL(import.meta.url).pathname === process.argv[1]) {
    runMain(main);
  }
} else {
  const job = workerData as Job;
  void runSeeds(job, (s) => parentPort?.postMessage(s));
}
