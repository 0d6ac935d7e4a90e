// Command-line runner for the lock simulation with the shipped client (locks-client-sim.ts).
//   SEED=n        replay one seed exactly (TRACE=1 prints its event trace)
//   SEEDS=n       run seeds SEED_START..SEED_START+n-1 (default 100)
//   JOBS=n        worker threads (default: available cores)
//   VARIANT=...   run a canary (grant-unchecked | timeout-final)
//   FAULT_MS=n    virtual ms of nemesis episodes before healing (default 25000)

import { availableParallelism } from 'node:os';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { envInt, runMain, runSeedsOnWorkers } from './common.js';
import type { SeedSummary } from './common.js';
import { clientVariants, runClientLockSeed } from './locks-client-sim.js';
import type { ClientSimOptions, ClientSimStats, ClientVariant } from './locks-client-sim.js';

interface Job {
  readonly seeds: readonly number[];
  readonly opts: ClientSimOptions;
}

export interface ClientSeedSummary extends SeedSummary {
  readonly clientStats: ClientSimStats;
}

function parseVariant(v: string | undefined): ClientVariant {
  if (v === undefined || v === '') return 'correct';
  const found = clientVariants.find((x) => x === v);
  if (found === undefined) throw new Error(`unknown VARIANT ${v} (one of ${clientVariants.join(', ')})`);
  return found;
}

async function runSeeds(job: Job, onResult: (s: ClientSeedSummary) => void): Promise<void> {
  for (const seed of job.seeds) {
    const r = await runClientLockSeed(seed, job.opts);
    onResult({ seed, ok: r.ok, property: r.property, error: r.error, profile: r.profile, steps: r.events, clientStats: r.clientStats });
  }
}

/**
 * Runs seeds over `jobs` worker threads (one for few seeds); never in the calling
 * thread, which may be tap's (on-worker.ts says why that is slow).
 */
export async function runClientSeedsParallel(seeds: readonly number[], opts: ClientSimOptions, jobs: number): Promise<ClientSeedSummary[]> {
  const workers = seeds.length < 4 ? 1 : Math.max(1, jobs);
  return runSeedsOnWorkers<Job, ClientSeedSummary>(seeds, workers, new URL(import.meta.url), (chunk) => ({ seeds: chunk, opts }));
}

async function main(): Promise<number> {
  const variant = parseVariant(process.env['VARIANT']);
  const opts: ClientSimOptions = { variant, faultPhaseMs: envInt('FAULT_MS', 25_000) };
  const single = process.env['SEED'];
  if (single !== undefined && single !== '') {
    const seed = envInt('SEED', 0);
    const t0 = performance.now();
    const r = await runClientLockSeed(seed, { ...opts, trace: process.env['TRACE'] === '1' });
    if (process.env['TRACE'] === '1') console.log(r.trace.join('\n'));
    console.log(`seed ${seed}: ${r.ok ? 'ok' : `FAILED ${r.property}`} (${r.events} events, ${Math.round(r.virtualMs)} virtual ms, ` +
      `${((performance.now() - t0) / 1000).toFixed(2)}s)`);
    console.log(`  profile: ${r.profile}`);
    console.log(`  clients: ${JSON.stringify(r.clientStats)}`);
    if (!r.ok) console.log(`  ${r.error}`);
    return r.ok ? 0 : 1;
  }
  const count = envInt('SEEDS', 100);
  const start = envInt('SEED_START', 0);
  const jobs = envInt('JOBS', availableParallelism());
  const seeds = Array.from({ length: count }, (_, i) => start + i);
  const t0 = performance.now();
  const results = await runClientSeedsParallel(seeds, opts, jobs);
  const failed = results.filter((r) => !r.ok);
  for (const r of failed) {
    console.log(`FAILED seed ${r.seed}: ${r.property}: ${r.error.split('\n').slice(0, 6).join('\n    ')}`);
    console.log(`  profile: ${r.profile}`);
    console.log(`  replay:  SEED=${r.seed} TRACE=1${variant === 'correct' ? '' : ` VARIANT=${variant}`} node dist/test/sim/locks-client-run.js`);
  }
  const byProperty = new Map<string, number>();
  for (const r of failed) byProperty.set(r.property, (byProperty.get(r.property) ?? 0) + 1);
  console.log(`${results.length} seeds, ${failed.length} failed ${JSON.stringify([...byProperty])}, ${((performance.now() - t0) / 1000).toFixed(1)}s on ` +
    `${jobs} job(s); variant ${variant}`);
  return failed.length === 0 ? 0 : 1;
}

if (isMainThread) {
  if (process.argv[1] !== undefined && new URL(import.meta.url).pathname === process.argv[1]) runMain(main);
} else {
  const job = workerData as Job;
  void runSeeds(job, (s) => parentPort?.postMessage(s));
}
