// Helpers shared by the cluster benchmarks: integer env settings, a teardown list
// run in reverse, the HDR latency summary, the closed-loop driver (locks, queue,
// cache) and the process entry point, so each benchmark file holds only its scenario.

import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as hdr from 'hdr-histogram-js';
import type { Histogram } from 'hdr-histogram-js';
import { DsyncError } from '../client/index.js';

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

/** Cleanups not yet run: what an interrupted benchmark must still tear down (its nodes run in their own process groups). */
const pendingCleanups = new Set<Cleanup>();

export function createCleanup(): Cleanup {
  const cleanup: Cleanup = { fns: [], teardown(fn) { this.fns.push(fn); } };
  pendingCleanups.add(cleanup);
  return cleanup;
}

/** Runs the teardown steps last-registered first; a failing step is logged and the rest still run. */
export async function runCleanup(cleanup: Cleanup): Promise<void> {
  pendingCleanups.delete(cleanup);
  for (const fn of cleanup.fns.splice(0).reverse()) {
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
  let interrupted = false;
  // Ctrl-C or a kill must not leave the benchmark's nodes (and their data dirs) behind; what
  // main() does after that (its clients fail as they close) must not exit before the teardown ends.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      interrupted = true;
      console.error(`${signal}: stopping the benchmark's nodes`);
      void Promise.all([...pendingCleanups].map((c) => runCleanup(c))).finally(() => process.exit(130));
    });
  }
  main().then(() => {
    if (!interrupted) process.exit(0);
  }, (err: unknown) => {
    if (interrupted) return;
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

/** What a closed-loop phase measured: operations, wall seconds, latency, refused operations. */
export interface ClosedLoopResult {
  readonly measured: number;
  readonly seconds: number;
  readonly latencyMs: LatencySummaryMs;
  readonly errors: number;
  readonly firstError: string;
}

export interface ClosedLoopOptions<C> {
  readonly clients: readonly C[];
  readonly warmupSeconds: number;
  readonly measureSeconds: number;
  /** Highest latency the histogram tracks, in microseconds. */
  readonly latencyUsMax: number;
  /**
   * One operation by `client`; it may return the latency to record in microseconds (the
   * lock bench times the acquire only), else the whole call is timed. An operation that
   * keeps counters of its own counts only when `counts()` says so on completion, as the
   * driver does.
   */
  op(client: C, counts: () => boolean): Promise<number | void>;
  /**
   * With it, each client stops once this many operations were started in all (warm-up
   * included), and the measured window ends when the last one finished (or at
   * measureSeconds, whichever comes first): a run bounded by count, not only by time.
   */
  readonly opsMax?: number;
  /** Just before and just after the measured window (counter snapshots). */
  beforeMeasure?(): Promise<void>;
  afterMeasure?(): Promise<void>;
}

/**
 * Every client runs `op` back to back (one in flight each) through a warm-up and a
 * measured window; operations refused with a DsyncError are counted, anything else
 * thrown ends the benchmark. The driver the lock, queue and cache benches share.
 */
export async function closedLoop<C>(opts: ClosedLoopOptions<C>): Promise<ClosedLoopResult> {
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: opts.latencyUsMax, numberOfSignificantValueDigits: 3 });
  let measuring = false;
  let stopping = false;
  let measured = 0;
  let errors = 0;
  let firstError = '';
  let started = 0;
  const opsMax = opts.opsMax ?? Number.POSITIVE_INFINITY;
  const counts = (): boolean => measuring;
  const loop = async (client: C): Promise<void> => {
    while (!stopping && started < opsMax) {
      started++;
      const t0 = performance.now();
      try {
        const latencyUs = await opts.op(client, counts);
        if (measuring) {
          measured++;
          histogram.recordValue(Math.min(opts.latencyUsMax, Math.max(1, Math.round(latencyUs ?? (performance.now() - t0) * 1000))));
        }
      } catch (err) {
        if (!(err instanceof DsyncError)) throw err;
        errors++;
        if (firstError === '') firstError = `${err.code}: ${err.message}`;
      }
    }
  };
  const running = Promise.all(opts.clients.map(loop));
  await sleep(opts.warmupSeconds * 1000);
  await opts.beforeMeasure?.();
  measuring = true;
  const t0 = performance.now();
  await Promise.race([sleep(opts.measureSeconds * 1000), running]);
  measuring = false;
  const seconds = (performance.now() - t0) / 1000;
  await opts.afterMeasure?.();
  stopping = true;
  await running;
  return { measured, seconds, latencyMs: latencySummaryMs(histogram), errors, firstError };
}

/**
 * With `dir` set, node processes started until the returned function is called write CPU
 * profiles into it (bench/locks-profiler.js, inherited through NODE_OPTIONS: --cpu-prof is
 * refused there, and this process has already started). Empty `dir`: nothing to do.
 */
export function profileNodeProcesses(dir: string): () => void {
  if (dir === '') return () => {};
  mkdirSync(resolve(dir), { recursive: true });
  const profiler = join(dirname(fileURLToPath(import.meta.url)), 'locks-profiler.js');
  process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --import=${profiler}`.trim();
  process.env.LOCKS_BENCH_CPU_PROF_DIR = resolve(dir);
  return () => { delete process.env.NODE_OPTIONS; };
}

/**
 * Calls `sample` with every sample line of each node's /metrics (Prometheus text: name,
 * the label block as written or '', value); the benches sum the counters they report.
 */
export async function forEachMetricSample(httpPorts: readonly number[], sample: (name: string, labels: string, value: number) => void): Promise<void> {
  for (const port of httpPorts) {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    for (const line of text.split('\n')) {
      const m = /^(\w+)(\{[^}]*\})? (\S+)$/.exec(line);
      if (m === null) continue;
      const [, name = '', labels = '', raw] = m;
      sample(name, labels, Number(raw));
    }
  }
}

/** A process's resident set in MiB (VmRSS from /proc), NaN when it is gone or unknown. */
export function rssMb(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null || m[1] === undefined ? Number.NaN : Number(m[1]) / 1024;
  } catch {
    return Number.NaN;
  }
}

/** User + system CPU seconds a process spent so far, all its threads (/proc/PID/stat), 0 when unknown. */
export function processCpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 of stat(5), in clock ticks (100 per second on Linux).
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** Write system calls a process made so far (/proc/PID/io syscw: socket and file writes alike), 0 when unknown. */
export function processWriteCalls(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const m = /^syscw: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'));
    return m === null || m[1] === undefined ? 0 : Number(m[1]);
  } catch {
    return 0;
  }
}
