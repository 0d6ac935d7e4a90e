// Command-line runner for the cluster simulator.
//   SEED=n        replay one seed exactly (TRACE=1 prints its event trace)
//   SEEDS=n       run seeds SEED_START..SEED_START+n-1 (default 500), plus every seed in failed-seeds.json
//   SOAK=1        20,000 seeds (npm run sim:soak)
//   JOBS=n        worker threads (default: available cores)
//   VARIANT=...   run a canary variant (ack-before-fsync | forget-vote)
//   FAULT_MS=n    length of the fault phase in virtual ms (default 3000)
//   ACK_CHECK=0   turn off the send-time ack-durability check (see what end-to-end checks catch)
//   HARSH=1       always crash, long fsync windows (what canary.test.ts uses)
// A new failing seed is printed with its replay command and appended to
// test/sim/failed-seeds.json (unless RECORD=0 or a canary variant runs).

import { availableParallelism } from 'node:os';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { Variant } from './cluster.js';
import { envInt, runMain, runSeedsOnWorkers, seedsToRun } from './common.js';
import type { SeedSummary } from './common.js';
import { realRaft } from './raft-factory.js';
import { loadFailedSeeds, recordFailedSeed } from './seeds.js';
import { runSeed } from './swarm.js';
import type { SwarmResult } from './swarm.js';

interface WorkerJob {
  readonly seeds: readonly number[];
  readonly variant: Variant;
  readonly ackCheck: boolean;
}

/** A seed's summary plus how soon a stable leader emerged after healing (-1: none). */
interface Summary extends SeedSummary {
  readonly leaderAfterHealMs: number;
}

function summarize(r: SwarmResult): Summary {
  return {
    seed: r.seed,
    ok: r.ok,
    property: r.property,
    error: r.error,
    profile: r.profile,
    steps: r.stats.steps,
    leaderAfterHealMs: r.leaderAfterHealMs,
  };
}

function parseVariant(v: string | undefined): Variant {
  if (v === undefined || v === '' || v === 'correct') return 'correct';
  if (v === 'ack-before-fsync' || v === 'forget-vote') return v;
  throw new Error(`unknown VARIANT ${v}`);
}

function runSeeds(seeds: readonly number[], variant: Variant, ackCheck: boolean, onResult: (s: Summary) => void): void {
  const harsh = process.env['HARSH'] === '1'; // canary tuning: long fsync windows, crashes always on
  for (const seed of seeds) {
    const r = runSeed(seed, {
      raftFactory: realRaft,
      variant,
      faultPhaseMs: envInt('FAULT_MS', 3_000),
      clusterOverrides: { checkAckDurability: ackCheck, ...(harsh ? { fsyncMsMax: 10 } : {}) },
      ...(harsh ? { faultOverrides: { crash: true } } : {}),
    });
    onResult(summarize(r));
  }
}

async function runParallel(seeds: readonly number[], variant: Variant, ackCheck: boolean, jobs: number): Promise<Summary[]> {
  if (jobs <= 1 || seeds.length < 50) {
    const out: Summary[] = [];
    runSeeds(seeds, variant, ackCheck, (s) => out.push(s));
    return out;
  }
  return runSeedsOnWorkers<WorkerJob, Summary>(seeds, jobs, new URL(import.meta.url), (chunk) => ({ seeds: chunk, variant, ackCheck }));
}

async function main(): Promise<number> {
  const variant = parseVariant(process.env['VARIANT']);
  const ackCheck = process.env['ACK_CHECK'] !== '0';
  const single = process.env['SEED'];
  if (single !== undefined && single !== '') {
    const seed = envInt('SEED', 0);
    const r = runSeed(seed, {
      raftFactory: realRaft,
      variant,
      faultPhaseMs: envInt('FAULT_MS', 3_000),
      trace: process.env['TRACE'] === '1',
      clusterOverrides: { checkAckDurability: ackCheck },
    });
    if (process.env['TRACE'] === '1') console.log(r.trace.join('\n'));
    console.log(`seed ${seed}: ${r.ok ? 'ok' : `FAILED ${r.property}`} (${r.stats.steps} steps, ${r.virtualMs} virtual ms, leader ${r.leaderAfterHealMs}ms after heal)`);
    console.log(`  profile: ${r.profile}`);
    if (!r.ok) console.log(`  ${r.error}`);
    return r.ok ? 0 : 1;
  }
  const count = process.env['SOAK'] === '1' ? envInt('SEEDS', 20_000) : envInt('SEEDS', 500);
  const start = envInt('SEED_START', 0);
  const jobs = envInt('JOBS', availableParallelism());
  const regression = variant === 'correct' ? loadFailedSeeds().map((s) => s.seed) : [];
  const seeds = seedsToRun(regression, start, count);
  const t0 = performance.now();
  const results = await runParallel(seeds, variant, ackCheck, jobs);
  const elapsedS = (performance.now() - t0) / 1000;
  const failed = results.filter((r) => !r.ok);
  for (const r of failed) {
    console.log(`FAILED seed ${r.seed}: ${r.property}: ${r.error.split('\n').slice(0, 6).join('\n    ')}`);
    console.log(`  profile: ${r.profile}`);
    console.log(`  replay:  SEED=${r.seed} TRACE=1 node dist/test/sim/run.js`);
    if (variant === 'correct' && process.env['RECORD'] !== '0') {
      recordFailedSeed({ seed: r.seed, property: r.property, note: r.error.split('\n')[0] ?? '' });
    }
  }
  const steps = results.reduce((a, r) => a + r.steps, 0);
  const leaders = results.filter((r) => r.leaderAfterHealMs >= 0).map((r) => r.leaderAfterHealMs);
  const leaderMax = leaders.length === 0 ? -1 : Math.max(...leaders);
  console.log(
    `${results.length} seeds (${regression.length} from failed-seeds.json), ${failed.length} failed, ` +
      `${steps} steps, ${elapsedS.toFixed(1)}s on ${jobs} job(s); slowest leader after heal ${leaderMax}ms; variant ${variant}`,
  );
  return failed.length === 0 ? 0 : 1;
}

if (isMainThread) {
  runMain(main);
} else {
  const job = workerData as WorkerJob;
  runSeeds(job.seeds, job.variant, job.ackCheck, (s) => parentPort?.postMessage(s));
}
