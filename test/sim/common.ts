// What the seeded simulators (swarm, membership, reads, transfer, locks), their
// tap suites and their command-line runners share: the fields every seed's
// result carries, how an exception ends a run, a failed seed's report line, and
// running seeds on worker threads. One copy here instead of one per simulator.

import { Worker } from 'node:worker_threads';
import { InvariantViolation } from '../checker/raft-invariants.js';
import type { Cluster, ClusterStats } from './cluster.js';

// ---------------------------------------------------------------- one seed's result

/** What every simulator's result for one seed holds (each adds its own counters). */
export interface SeedOutcome {
  readonly seed: number;
  readonly ok: boolean;
  /** The violated property ('liveness', 'election-safety', ..., 'exception'; '' when ok). */
  readonly property: string;
  readonly error: string;
  readonly profile: string;
  readonly stats: ClusterStats;
  readonly trace: readonly string[];
}

/** The common fields of a seed's result, read from the cluster now; `property` '' means the seed passed. */
export function seedOutcome(seed: number, property: string, error: string, profile: string, c: Cluster): SeedOutcome {
  return { seed, ok: property === '', property, error, profile, stats: c.stats, trace: c.trace };
}

/** How an exception thrown during a run is reported: an invariant's own property and message, else 'exception' with the stack. */
export function failureOf(err: unknown): { readonly property: string; readonly error: string } {
  if (err instanceof InvariantViolation) return { property: err.property, error: err.message };
  const e = err instanceof Error ? err : new Error(String(err));
  return { property: 'exception', error: e.stack ?? e.message };
}

/** A failed seed as a test prints it: property, the error's first lines, the profile and how to replay it. */
export function failureReport(r: Pick<SeedOutcome, 'seed' | 'property' | 'error' | 'profile'>, replayCommand: string, errorLinesMax = 4): string {
  return `seed ${r.seed}: ${r.property}: ${r.error.split('\n').slice(0, errorLinesMax).join(' | ')}\n  profile: ${r.profile}\n  replay: SEED=${r.seed} TRACE=1 ${replayCommand}`;
}

// ---------------------------------------------------------------- command-line runners

/** What a runner's worker posts back for one seed (structured-clone sized: no trace). */
export interface SeedSummary extends Pick<SeedOutcome, 'seed' | 'ok' | 'property' | 'error' | 'profile'> {
  readonly steps: number;
}

/** An integer from the environment variable `name`, `fallback` when unset or empty. */
export function envInt(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new Error(`${name} must be an integer, got ${v}`);
  return n;
}

/** The kept regression seeds first, then `count` seeds from `start`, each once. */
export function seedsToRun(regression: readonly number[], start: number, count: number): number[] {
  return [...new Set([...regression, ...Array.from({ length: count }, (_, i) => start + i)])];
}

/**
 * Deals the seeds round-robin to `jobs` worker threads running `workerUrl`; each
 * worker gets `jobFor(its seeds)` as workerData and posts one summary per seed.
 * Resolves with every summary, ordered by seed; rejects if a worker fails.
 */
export async function runSeedsOnWorkers<Job, Summary extends { readonly seed: number }>(
  seeds: readonly number[],
  jobs: number,
  workerUrl: URL,
  jobFor: (seeds: readonly number[]) => Job,
): Promise<Summary[]> {
  const chunks: number[][] = Array.from({ length: jobs }, () => []);
  seeds.forEach((s, i) => chunks[i % jobs]!.push(s));
  const parts = await Promise.all(
    chunks.map(
      (chunk) =>
        new Promise<Summary[]>((resolvePart, reject) => {
          const worker = new Worker(workerUrl, { workerData: jobFor(chunk) });
          const out: Summary[] = [];
          worker.on('message', (s: Summary) => out.push(s));
          worker.on('error', reject);
          worker.on('exit', (code) => (code === 0 ? resolvePart(out) : reject(new Error(`worker exited ${code}`))));
        }),
    ),
  );
  return parts.flat().sort((a, b) => a.seed - b.seed);
}

/** Runs a runner's main: its resolved number becomes the exit code; a rejection is printed and exits 2. */
export function runMain(main: () => Promise<number>): void {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      console.error(err);
      process.exitCode = 2;
    },
  );
}
