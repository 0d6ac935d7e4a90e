// Helpers shared by the cluster benchmarks (raft.ts, locks.ts): integer env
// settings, a teardown list run in reverse, the HDR latency summary and the
// process entry point, so each benchmark file holds only its scenario.

import type { Histogram } from 'hdr-histogram-js';

/** An integer from the environment variable `name`, `fallback` when unset or empty; throws outside min..max. */
export function envInt(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  const n = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be an integer in ${min}..${max}, got ${raw}`);
  return n;
}

/** Teardown steps registered while a benchmark sets up (also what `TestCluster.start` registers into). */
export interface Cleanup {
  readonly fns: (() => void | Promise<void>)[];
  teardown(fn: () => void | Promise<void>): void;
}

export function createCleanup(): Cleanup {
  return { fns: [], teardown(fn) { this.fns.push(fn); } };
}

/** Runs the teardown steps last-registered first; a failing step is logged and the rest still run. */
export async function runCleanup(cleanup: Cleanup): Promise<void> {
  for (const fn of cleanup.fns.reverse()) {
    try {
      await fn();
    } catch (err) {
      console.error(`cleanup: ${String(err)}`);
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export interface LatencySummaryMs {
  p50: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

/** p50/p99/p999/max/mean in milliseconds of a histogram recorded in microseconds. */
export function latencySummaryMs(histogramUs: Histogram): LatencySummaryMs {
  const ms = (us: number): number => us / 1000;
  return { p50: ms(histogramUs.getValueAtPercentile(50)), p99: ms(histogramUs.getValueAtPercentile(99)),
    p999: ms(histogramUs.getValueAtPercentile(99.9)), max: ms(histogramUs.maxValue), mean: ms(histogramUs.mean) };
}

/** Runs a benchmark's main and exits: 0 when it resolves, 1 (stack printed) when it rejects. */
export function runBenchmark(main: () => Promise<void>): void {
  main().then(() => process.exit(0), (err: unknown) => {
    console.error(err instanceof Error ? err.stack ?? err.message : String(err));
    process.exit(1);
  });
}

/** xorshift32: a benchmark's key or name sequence replays with the same SEED. */
export function prng(state: number): () => number {
  let x = state === 0 ? 0x9e3779b9 : state >>> 0;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}
