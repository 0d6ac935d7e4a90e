// Lock benchmark (`npm run bench:locks`): a local 3-node cluster of child
// processes, 64 `Client` instances (one lock session each), two fixed scenarios:
//   (a) distinct: each client loops acquire(random one of 1,000 names) + release;
//       reported as acquire+release pairs/s.
//   (b) hot: every client loops acquire('hot') + release on one lock; reported as
//       hand-overs (grants) per second.
// Every grant and release is a group 0 entry, acknowledged only once committed
// (fsynced on a majority) and applied on the leader. Acquire latency (request
// sent to grant received, including the wait in the queue) in an HDR histogram:
// p50/p99/p999. Checks that the hot lock's fencing tokens never repeat. Prints a
// table and writes JSON to bench/results/locks.json.
//
// Env: LOCKS_BENCH_SECONDS (10 per scenario), LOCKS_BENCH_WARMUP_SECONDS (1),
// LOCKS_BENCH_CLIENTS (64), LOCKS_BENCH_NAMES (1000), LOCKS_BENCH_SCENARIOS
// (distinct,hot), SEED (name choice), LOCKS_BENCH_CPU_PROF_DIR (if set, the nodes
// are CPU-profiled by locks-profiler.ts and write node-PID.cpuprofile there on shutdown).

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '../client/index.js';
import { TestCluster } from '../test/integration/helpers/cluster.js';
import { consoleCommand, waitForLeader } from '../test/integration/raft-helpers.js';
import { closedLoop, createCleanup, profileNodeProcesses, envInt, type LatencySummaryMs, prng, runBenchmark, runCleanup } from './common.js';

const measureSeconds = envInt('LOCKS_BENCH_SECONDS', 10, 1, 3600);
const warmupSeconds = envInt('LOCKS_BENCH_WARMUP_SECONDS', 1, 0, 600);
const clientsCount = envInt('LOCKS_BENCH_CLIENTS', 64, 1, 1024);
const namesCount = envInt('LOCKS_BENCH_NAMES', 1000, 1, 1_000_000);
const seed = envInt('SEED', 1, 0, 2 ** 31 - 1);
const scenarioNames = (process.env.LOCKS_BENCH_SCENARIOS ?? 'distinct,hot').split(',').filter((s) => s !== '');
const cpuProfDir = process.env.LOCKS_BENCH_CPU_PROF_DIR ?? '';
/** One acquire waiting longer than this is an error, not a latency sample. */
const acquireWaitMsMax = 10_000;
/** Highest latency the histogram tracks, in microseconds. */
const latencyUsMax = 60_000_000;
/** Hot-lock tokens kept for the no-repeat check (bounds memory). */
const tokensKeptMax = 2_000_000;

const resultsPath = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'results', 'locks.json');

type ScenarioName = 'distinct' | 'hot';
function isScenario(s: string): s is ScenarioName {
  return s === 'distinct' || s === 'hot';
}

interface ScenarioResult {
  readonly scenario: ScenarioName;
  readonly description: string;
  readonly opsPerSec: number;
  readonly opsUnit: string;
  readonly measuredOps: number;
  readonly seconds: number;
  readonly acquireLatencyMs: LatencySummaryMs;
  readonly errors: number;
  readonly firstError: string;
  readonly goal: { opsPerSec: number; p99Ms: number; met: boolean };
  readonly leaderFsyncsPerSec: number;
  readonly entriesPerLeaderFsync: number;
}

interface WalMetricsView {
  readonly fsyncs: number;
}

async function walFsyncs(consolePort: number): Promise<number> {
  const out = await consoleCommand(consolePort, 'raft');
  const m = /^wal: (\{.*\})$/m.exec(out);
  if (m === null || m[1] === undefined) return Number.NaN;
  return (JSON.parse(m[1]) as WalMetricsView).fsyncs;
}

async function runScenario(scenario: ScenarioName, clients: readonly Client[], leaderConsolePort: number): Promise<ScenarioResult> {
  const next = prng(seed + (scenario === 'hot' ? 7919 : 0));
  const hotTokens = new Set<number>();
  let repeatedToken = 0;
  let fsyncs = 0;
  const r = await closedLoop({
    clients, warmupSeconds, measureSeconds, latencyUsMax,
    // The acquire is timed; the release is part of the cycle counted.
    op: async (client) => {
      const name = scenario === 'hot' ? 'hot' : `bench-${next() % namesCount}`;
      const t0 = performance.now();
      const lock = await client.lock(name, { waitMs: acquireWaitMsMax });
      const latencyUs = (performance.now() - t0) * 1000;
      if (scenario === 'hot' && hotTokens.size < tokensKeptMax) {
        if (hotTokens.has(lock.token)) repeatedToken = lock.token;
        hotTokens.add(lock.token);
      }
      await lock.release();
      return latencyUs;
    },
    beforeMeasure: async () => { fsyncs = await walFsyncs(leaderConsolePort); },
    afterMeasure: async () => { fsyncs = (await walFsyncs(leaderConsolePort)) - fsyncs; },
  });
  if (repeatedToken !== 0) throw new Error(`hot lock: fencing token ${repeatedToken} was granted twice`);
  const { measured, seconds, errors, firstError } = r;
  const opsPerSec = measured / seconds;
  const latency = r.latencyMs;
  const goal = scenario === 'distinct' ? { opsPerSec: 20_000, p99Ms: 20 } : { opsPerSec: 3_500, p99Ms: 50 };
  // Each counted op is two entries (acquire, release); sessions' keep-alives add a few.
  return {
    scenario,
    description: scenario === 'distinct'
      ? `${clients.length} clients, acquire+release of a random one of ${namesCount} names`
      : `${clients.length} clients contending for one exclusive lock`,
    opsPerSec,
    opsUnit: scenario === 'distinct' ? 'acquire+release pairs/s' : 'hand-overs/s',
    measuredOps: measured,
    seconds,
    acquireLatencyMs: latency,
    errors,
    firstError,
    goal: { ...goal, met: opsPerSec >= goal.opsPerSec && latency.p99 < goal.p99Ms },
    leaderFsyncsPerSec: fsyncs / seconds,
    entriesPerLeaderFsync: (2 * measured) / Math.max(1, fsyncs),
  };
}

async function main(): Promise<void> {
  const scenarios = scenarioNames.map((s) => {
    if (!isScenario(s)) throw new Error(`LOCKS_BENCH_SCENARIOS: unknown scenario ${s} (distinct, hot)`);
    return s;
  });
  const cleanup = createCleanup();
  const dataRoot = mkdtempSync(join(tmpdir(), 'dsync-bench-locks-'));
  cleanup.teardown(() => rmSync(dataRoot, { recursive: true, force: true }));
  const profilingDone = profileNodeProcesses(cpuProfDir);
  try {
    const cluster = await TestCluster.start(cleanup, { dataRoot });
    profilingDone();
    const control = await Client.connect({ seeds: cluster.seeds, name: 'bench-control' });
    cleanup.teardown(() => control.close());
    const leader = await waitForLeader(control, cluster.seeds, cluster.nodes.map((n) => n.spec.id));
    const leaderNode = cluster.node(leader.leaderId);
    // Leader first in the seeds: no redirects in the measured loops.
    const seeds = [leaderNode.address, ...cluster.seeds.filter((a) => a !== leaderNode.address)];
    const clients: Client[] = [];
    for (let i = 0; i < clientsCount; i++) clients.push(await Client.connect({ seeds, name: `bench-locks-${i}`, requestTimeoutMs: 15_000 }));
    cleanup.teardown(async () => {
      await Promise.all(clients.map((c) => c.close()));
    });

    const results: ScenarioResult[] = [];
    for (const s of scenarios) results.push(await runScenario(s, clients, leaderNode.spec.consolePort));
    const after = await waitForLeader(control, cluster.seeds, cluster.nodes.map((n) => n.spec.id));

    const report = {
      benchmark: 'locks',
      machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '', node: process.version },
      config: { seconds: measureSeconds, warmupSeconds, clients: clientsCount, names: namesCount, seed },
      leader: { id: leader.leaderId, unchanged: after.leaderId === leader.leaderId && after.term === leader.term },
      scenarios: results,
    };
    mkdirSync(dirname(resultsPath), { recursive: true });
    writeFileSync(resultsPath, JSON.stringify(report, null, 2) + '\n');

    const f = (n: number, w = 9, d = 2): string => n.toFixed(d).padStart(w);
    console.log(`bench:locks  3 nodes, ${clientsCount} clients, ${measureSeconds} s per scenario (+${warmupSeconds} s warm-up), seed ${seed}`);
    console.log('  scenario          ops/s  unit                       p50 ms    p99 ms   p999 ms    max ms  errors  goal');
    for (const r of results) {
      console.log(`  ${r.scenario.padEnd(9)} ${f(r.opsPerSec, 12, 0)}  ${r.opsUnit.padEnd(24)} ${f(r.acquireLatencyMs.p50)} ${f(r.acquireLatencyMs.p99)} ${f(r.acquireLatencyMs.p999)} ${f(r.acquireLatencyMs.max)} ${String(r.errors).padStart(7)}  ${r.goal.met ? 'met' : 'NOT met'} (>= ${r.goal.opsPerSec}/s, p99 < ${r.goal.p99Ms} ms)`);
      console.log(`            leader fsyncs/s ${r.leaderFsyncsPerSec.toFixed(0)}, lock entries per leader fsync ${r.entriesPerLeaderFsync.toFixed(1)}${r.firstError === '' ? '' : `; first error: ${r.firstError}`}`);
    }
    console.log(`  leader ${leader.leaderId} ${report.leader.unchanged ? 'led throughout' : 'CHANGED during the run'}`);
    console.log(`  JSON: ${resultsPath}`);
  } finally {
    await runCleanup(cleanup);
  }
}

runBenchmark(main);
