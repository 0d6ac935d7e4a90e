// The fault runner: starts a cluster behind fault proxies, runs the workloads'
// clients while the nemesis injects faults, heals everything, lets load run on in
// a quiet tail (recovery and liveness), stops, checks every workload's history and
// builds the report. Everything started is stopped in `finally`, also on failure.

import { Xoshiro128 } from '../../core/prng.js';
import { type AvailabilityReport, availability } from '../checker/availability.js';
import type { Anomaly, BaseOp, FaultEvent, Outcome } from '../checker/history.js';
import { ChaosCluster, Teardowns } from './cluster.js';
import { CacheWorkload } from './cache-workload.js';
import { LockWorkload } from './locks-workload.js';
import { QueueWorkload } from './queue-workload.js';
import { type MoveName, Nemesis } from './nemesis.js';
import { History, type Workload } from './workload.js';
import { epochNowMs } from './clock.js';

export interface ChaosOptions {
  readonly seed: number;
  readonly durationMs: number;
  readonly nodes: number;
  readonly ttlMs?: number;
  /**
   * Canaries, comma-separated: 'fence-off', 'ignore-lost' (locks), 'queue-forget-failed'
   * (queues), 'cache-skip-invalidation' (cache); node bugs among them start the nodes with DSYNC_CANARY.
   */
  readonly canary?: string | null;
  /** Workloads to run (default every service: locks, queues, cache). */
  readonly services?: readonly ServiceName[];
  readonly moves?: readonly MoveName[];
  /** Progress lines (default: none). */
  readonly log?: (line: string) => void;
}

export interface ServiceResult {
  readonly service: string;
  readonly opsByOutcome: Record<string, Record<Outcome, number>>;
  readonly stats: Readonly<Record<string, number>>;
  readonly anomalies: readonly Anomaly[];
  readonly availability: AvailabilityReport;
}

export interface ChaosResult {
  readonly seed: number;
  readonly nodes: number;
  readonly durationMs: number;
  readonly ttlMs: number;
  readonly canary: string | null;
  readonly wallMs: number;
  readonly faults: readonly FaultEvent[];
  readonly services: readonly ServiceResult[];
  readonly anomalies: number;
  /** Every operation, for replay and offline analysis. */
  readonly history: readonly BaseOp[];
  readonly replay: string;
}

/** Quiet tail after the last heal: load keeps running so recovery shows. */
const cooldownMsMin = 6_000;

export const serviceNames = ['locks', 'queues', 'cache'] as const;
export type ServiceName = (typeof serviceNames)[number];

function workloadOf(name: ServiceName): Workload {
  switch (name) {
    case 'locks': return new LockWorkload();
    case 'queues': return new QueueWorkload();
    case 'cache': return new CacheWorkload();
  }
}
const warmupMs = 2_000;

export async function runChaos(opts: ChaosOptions): Promise<ChaosResult> {
  const log = opts.log ?? ((): void => {});
  const ttlMs = opts.ttlMs ?? 2_000;
  const canary = opts.canary ?? null;
  const wallStart = performance.now();
  const originMs = epochNowMs();
  const now = (): number => epochNowMs() - originMs;
  const t = new Teardowns();
  const workloads = (opts.services ?? serviceNames).map(workloadOf);
  const canaries = (canary ?? '').split(',').map((c) => c.trim()).filter((c) => c !== '');
  const nodeCanaries: string[] = [];
  for (const c of canaries) {
    const w = workloads.find((x) => x.canaries.includes(c));
    if (w === undefined) throw new Error(`unknown canary ${c} for services ${workloads.map((x) => x.service).join(', ')}`);
    const nodeBug = w.nodeCanaries?.[c];
    if (nodeBug !== undefined) nodeCanaries.push(nodeBug);
  }
  const history = new History();
  let nemesis: Nemesis | null = null;
  try {
    log(`starting ${opts.nodes} nodes (seed ${opts.seed})${nodeCanaries.length === 0 ? '' : ` with DSYNC_CANARY=${nodeCanaries.join(',')}`}`);
    const cluster = await ChaosCluster.start(t, { nodes: opts.nodes, seed: opts.seed,
      ...(nodeCanaries.length === 0 ? {} : { env: { DSYNC_CANARY: nodeCanaries.join(',') } }) });
    const loadStartMs = now();
    const loadUntilMs = loadStartMs + opts.durationMs;
    for (const w of workloads) t.teardown(() => w.kill());
    // Together: connecting clients and creating a topic take a while on a loaded machine, and it comes out of the fault window.
    await Promise.all(workloads.map((w) => w.start({ seeds: cluster.seeds, nodeIds: cluster.ids, seed: opts.seed, originMs, loadUntilMs, history,
      canaries, ttlMs, log })));
    log(`${(now() / 1000).toFixed(1)} s: load running`);
    const cooldownMs = Math.max(cooldownMsMin, Math.floor(opts.durationMs * 0.15));
    nemesis = new Nemesis(cluster, new Xoshiro128(opts.seed), {
      ttlMs, durationMs: opts.durationMs, faultsUntilMs: loadUntilMs - cooldownMs, warmupMs, ...(opts.moves === undefined ? {} : { moves: opts.moves }),
    }, now, (n) => { for (const w of workloads) w.onFaultStart?.(n); }, log);
    await nemesis.run();
    await cluster.healAll();
    const tailMs = loadUntilMs - now();
    if (tailMs > 0) await new Promise((r) => setTimeout(r, tailMs));
    log(`${(now() / 1000).toFixed(1)} s: stopping load`);
    await Promise.all(workloads.map((w) => w.stop()));
  } finally {
    nemesis?.stop();
    await t.run();
  }
  const faults = nemesis?.faults ?? [];
  const services = workloads.map((w): ServiceResult => {
    const ops = history.ops.filter((o) => o.service === w.service);
    const checked = w.check(ops);
    const opsByOutcome: Record<string, Record<Outcome, number>> = {};
    for (const o of ops) {
      const c = (opsByOutcome[o.f] ??= { ok: 0, fail: 0, unknown: 0 });
      c[o.outcome]++;
    }
    return { service: w.service, opsByOutcome, stats: checked.stats, anomalies: checked.anomalies,
      availability: availability(w.availabilityOps(ops), faults) };
  });
  return {
    seed: opts.seed, nodes: opts.nodes, durationMs: opts.durationMs, ttlMs, canary, wallMs: performance.now() - wallStart, faults, services,
    anomalies: services.reduce((n, s) => n + s.anomalies.length, 0), history: history.ops,
    replay: `npm run chaos -- --seed ${opts.seed} --duration ${Math.round(opts.durationMs / 1000)}s --nodes ${opts.nodes}` +
      (canary === null ? '' : ` --canary ${canary}`),
  };
}
