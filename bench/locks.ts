// Lock benchmark (`npm run bench:locks`): a local 3-node cluster of child
// processes, 64 `Client` instances (one lock session each), two fixed scenarios:
//   (a) distinct: each client loops acquire(random one of 1,000 names) + release;
//       reported as acquire+release pairs/s.
//   (b) hot: every client loops acquire('hot') + release on one lock; reported as
//       hand-overs (grants) per second.
//   (c) held (not in the default list): every client acquires distinct locks and KEEPS
//       them until LOCKS_BENCH_HELD_LEVELS' largest level is held in all; for each level
//       L it reports the acquire latency of the acquires L-10,000+1..L (the 10,000 that
//       brought the table to L), their rate, and the nodes' RSS (VmRSS) at L with the
//       growth per 100,000 held locks. Cost that grows with state shows as a higher p99
//       or max at the larger level.
// Every grant and release is a group 0 command, acknowledged only once committed
// (fsynced on a majority) and applied on the leader. Per cycle of distinct and hot, the
// work behind it: CPU (user + system, all threads) of the 3 nodes together and of this
// process (the 64 clients), group 0 entries, write system calls of the nodes (socket and
// WAL writes), and per group 0 entry the Raft messages, peer frames, Readys and WAL
// fsyncs of the nodes together (figures that load disturbs far less than throughput). Acquire latency (request
// sent to grant received, including the wait in the queue) in an HDR histogram:
// p50/p99/p999. Checks that the hot lock's fencing tokens never repeat. Prints a
// table and writes JSON to bench/results/locks.json.
//
// Env: LOCKS_BENCH_SECONDS (10 per scenario), LOCKS_BENCH_WARMUP_SECONDS (1),
// LOCKS_BENCH_CLIENTS (64), LOCKS_BENCH_NAMES (1000), LOCKS_BENCH_SCENARIOS
// (distinct,hot; held on request), LOCKS_BENCH_HELD_LEVELS (10000,200000),
// LOCKS_BENCH_PORT_BASE (0: free ports; else nodes use BASE..BASE+8), SEED (name choice), LOCKS_BENCH_CPU_PROF_DIR (if set, the nodes
// are CPU-profiled by locks-profiler.ts and write node-PID.cpuprofile there on shutdown).

import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '../client/index.js';
import { TestCluster } from '../test/integration/helpers/cluster.js';
import { consoleCommand, waitForLeader } from '../test/integration/raft-helpers.js';
import * as hdr from 'hdr-histogram-js';
import type { Histogram } from 'hdr-histogram-js';
import { closedLoop, createCleanup, forEachMetricSample, profileNodeProcesses, envInt, type LatencySummaryMs, latencySummaryMs, processCpuSeconds, processWriteCalls, prng, runBenchmark,
  runCleanup } from './common.js';

const measureSeconds = envInt('LOCKS_BENCH_SECONDS', 10, 1, 3600);
const warmupSeconds = envInt('LOCKS_BENCH_WARMUP_SECONDS', 1, 0, 600);
const clientsCount = envInt('LOCKS_BENCH_CLIENTS', 64, 1, 1024);
const namesCount = envInt('LOCKS_BENCH_NAMES', 1000, 1, 1_000_000);
const seed = envInt('SEED', 1, 0, 2 ** 31 - 1);
const scenarioNames = (process.env.LOCKS_BENCH_SCENARIOS ?? 'distinct,hot').split(',').filter((s) => s !== '');
const cpuProfDir = process.env.LOCKS_BENCH_CPU_PROF_DIR ?? '';
const heldLevels = (process.env.LOCKS_BENCH_HELD_LEVELS ?? '10000,200000').split(',').filter((s) => s !== '').map(Number);
const portBase = envInt('LOCKS_BENCH_PORT_BASE', 0, 0, 65_000);
/** Acquires per level window of the held scenario: the 10,000 that brought the table to the level. */
const heldWindowAcquires = 10_000;
/** The held scenario ends at its largest level or after this long, whichever comes first. */
const heldSecondsMax = 1_800;
/** Refused acquires (e.g. a session expired during a stall) the held scenario replaces before it gives up on its top level. */
const heldRefusedAcquiresMax = 10_000;
/** One acquire waiting longer than this is an error, not a latency sample. */
const acquireWaitMsMax = 10_000;
/** Highest latency the histogram tracks, in microseconds. */
const latencyUsMax = 60_000_000;
/** Hot-lock tokens kept for the no-repeat check (bounds memory). */
const tokensKeptMax = 2_000_000;

const resultsDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'results');
/** A held-only run writes its own file, so it does not replace the last distinct/hot figures. */
const resultsPath = join(resultsDir, scenarioNames.length === 1 && scenarioNames[0] === 'held' ? 'locks-held.json' : 'locks.json');

type ScenarioName = 'distinct' | 'hot' | 'held';
function isScenario(s: string): s is ScenarioName {
  return s === 'distinct' || s === 'hot' || s === 'held';
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
  readonly perCycle: CycleWork;
}

/** The nodes' counters (summed over the nodes) and CPU at one moment. */
interface WorkCounters {
  readonly group0Entries: number;
  readonly raftMessagesSent: number;
  readonly peerFramesSent: number;
  readonly readys: number;
  readonly fsyncs: number;
  readonly nodeWriteCalls: number;
  readonly nodesCpuSeconds: number;
  readonly clientCpuSeconds: number;
}

/** What one acquire+release cycle (a hand-over, for hot) cost over the measured window. */
interface CycleWork {
  readonly nodesCpuMs: number;
  readonly clientCpuMs: number;
  readonly group0Entries: number;
  readonly nodeWriteCalls: number;
  /** Per group 0 entry, the nodes together. */
  readonly raftMessagesPerEntry: number;
  readonly peerFramesPerEntry: number;
  readonly readysPerEntry: number;
  readonly fsyncsPerEntry: number;
}

interface BenchNode {
  readonly pid: number;
  readonly httpPort: number;
}

async function workCounters(nodes: readonly BenchNode[]): Promise<WorkCounters> {
  let group0Entries = 0;
  let raftMessagesSent = 0;
  let peerFramesSent = 0;
  let readys = 0;
  let fsyncs = 0;
  await forEachMetricSample(nodes.map((n) => n.httpPort), (name, labels, v) => {
    if (name === 'dsync_raft_proposals_total' && labels.includes('group="0"')) group0Entries += v;
    else if (name === 'dsync_raft_messages_total' && labels.includes('direction="sent"')) raftMessagesSent += v;
    else if (name === 'dsync_raft_peer_frames_total' && labels.includes('direction="sent"')) peerFramesSent += v;
    else if (name === 'dsync_raft_readys_total') readys += v;
    else if (name === 'dsync_wal_fsyncs_total') fsyncs += v;
  });
  const usage = process.cpuUsage();
  return { group0Entries, raftMessagesSent, peerFramesSent, readys, fsyncs,
    nodeWriteCalls: nodes.reduce((sum, n) => sum + processWriteCalls(n.pid), 0),
    nodesCpuSeconds: nodes.reduce((sum, n) => sum + processCpuSeconds(n.pid), 0), clientCpuSeconds: (usage.user + usage.system) / 1e6 };
}

const emptyWork: WorkCounters = { group0Entries: 0, raftMessagesSent: 0, peerFramesSent: 0, readys: 0, fsyncs: 0, nodeWriteCalls: 0, nodesCpuSeconds: 0,
  clientCpuSeconds: 0 };

function cycleWork(before: WorkCounters, after: WorkCounters, cycles: number): CycleWork {
  const entries = after.group0Entries - before.group0Entries;
  const perCycle = (n: number): number => (cycles === 0 ? 0 : n / cycles);
  const perEntry = (n: number): number => (entries === 0 ? 0 : n / entries);
  return {
    nodesCpuMs: perCycle((after.nodesCpuSeconds - before.nodesCpuSeconds) * 1000),
    clientCpuMs: perCycle((after.clientCpuSeconds - before.clientCpuSeconds) * 1000),
    group0Entries: perCycle(entries),
    nodeWriteCalls: perCycle(after.nodeWriteCalls - before.nodeWriteCalls),
    raftMessagesPerEntry: perEntry(after.raftMessagesSent - before.raftMessagesSent),
    peerFramesPerEntry: perEntry(after.peerFramesSent - before.peerFramesSent),
    readysPerEntry: perEntry(after.readys - before.readys),
    fsyncsPerEntry: perEntry(after.fsyncs - before.fsyncs),
  };
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

async function runScenario(scenario: ScenarioName, clients: readonly Client[], leaderConsolePort: number, nodes: readonly BenchNode[]): Promise<ScenarioResult> {
  const next = prng(seed + (scenario === 'hot' ? 7919 : 0));
  const hotTokens = new Set<number>();
  let repeatedToken = 0;
  let fsyncs = 0;
  const work: { before: WorkCounters | null; after: WorkCounters | null } = { before: null, after: null };
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
    beforeMeasure: async () => {
      fsyncs = await walFsyncs(leaderConsolePort);
      work.before = await workCounters(nodes);
    },
    afterMeasure: async () => {
      work.after = await workCounters(nodes);
      fsyncs = (await walFsyncs(leaderConsolePort)) - fsyncs;
    },
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
    perCycle: work.before === null || work.after === null ? cycleWork(emptyWork, emptyWork, 0) : cycleWork(work.before, work.after, measured),
  };
}

/** One level of the held scenario: the window of acquires that brought the table to `heldLocks`. */
interface HeldLevel {
  readonly heldLocks: number;
  readonly windowAcquires: number;
  readonly windowSeconds: number;
  readonly windowAcquiresPerSec: number;
  readonly acquireLatencyMs: LatencySummaryMs;
  /** VmRSS of each node process at this level, in MB, by node id. */
  readonly rssMb: Record<string, number>;
  /** (RSS here - RSS before the first acquire) per 100,000 held locks, in MB, by node id. */
  readonly rssMbPer100kHeld: Record<string, number>;
}

interface HeldResult {
  readonly scenario: 'held';
  readonly description: string;
  readonly levels: readonly HeldLevel[];
  readonly acquired: number;
  readonly seconds: number;
  readonly errors: number;
  readonly firstError: string;
  readonly rssMbBefore: Record<string, number>;
  readonly goal: { p99RatioMax: number; maxMsMax: number; p99Ratio: number; met: boolean };
}

/** VmRSS of a process in MB (NaN when it cannot be read: the process is gone). */
function rssMb(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null || m[1] === undefined ? Number.NaN : Number(m[1]) / 1024;
  } catch {
    return Number.NaN;
  }
}

async function runHeld(clients: readonly Client[], nodes: readonly { id: string; pid: number }[]): Promise<HeldResult> {
  const levels = [...heldLevels].sort((a, b) => a - b);
  const top = levels[levels.length - 1];
  if (top === undefined || levels.some((l) => !Number.isInteger(l) || l < heldWindowAcquires)) {
    throw new Error(`LOCKS_BENCH_HELD_LEVELS: integers of at least ${heldWindowAcquires}, got ${heldLevels.join(',')}`);
  }
  const rssOfNodes = (): Record<string, number> => Object.fromEntries(nodes.map((n) => [n.id, rssMb(n.pid)]));
  const rssMbBefore = rssOfNodes();
  const windows = new Map<number, { histogram: Histogram; firstAtMs: number; lastAtMs: number }>();
  for (const l of levels) {
    windows.set(l, { histogram: hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: latencyUsMax, numberOfSignificantValueDigits: 3 }),
      firstAtMs: Number.NaN, lastAtMs: Number.NaN });
  }
  const reached: HeldLevel[] = [];
  let started = 0;
  let completed = 0;
  let failed = 0;
  const kept: unknown[] = [];
  const r = await closedLoop({
    // Room for refused acquires (counted as errors) to be replaced until `top` are held.
    clients, warmupSeconds: 0, measureSeconds: heldSecondsMax, latencyUsMax, opsMax: top + heldRefusedAcquiresMax,
    op: async (client) => {
      if (started - failed >= top) return 0; // enough in flight or held: the loop runs out its count
      const name = `held-${started++}`;
      const t0 = performance.now();
      const lock = await client.lock(name, { waitMs: acquireWaitMsMax }).catch((e: unknown) => {
        failed++;
        throw e;
      });
      const t1 = performance.now();
      kept.push(lock); // held to the end: the table only grows
      const ordinal = ++completed;
      for (const l of levels) {
        if (ordinal <= l - heldWindowAcquires || ordinal > l) continue;
        const w = windows.get(l) as { histogram: Histogram; firstAtMs: number; lastAtMs: number };
        w.histogram.recordValue(Math.min(latencyUsMax, Math.max(1, Math.round((t1 - t0) * 1000))));
        if (Number.isNaN(w.firstAtMs)) w.firstAtMs = t0;
        w.lastAtMs = t1;
        if (ordinal === l) {
          const rss = rssOfNodes();
          const seconds = (w.lastAtMs - w.firstAtMs) / 1000;
          reached.push({ heldLocks: l, windowAcquires: heldWindowAcquires, windowSeconds: seconds, windowAcquiresPerSec: heldWindowAcquires / seconds,
            acquireLatencyMs: latencySummaryMs(w.histogram), rssMb: rss,
            rssMbPer100kHeld: Object.fromEntries(nodes.map((n) => [n.id, ((rss[n.id] ?? Number.NaN) - (rssMbBefore[n.id] ?? Number.NaN)) * 100_000 / l])) });
        }
      }
      return (t1 - t0) * 1000;
    },
  });
  const first = reached[0];
  const last = reached[reached.length - 1];
  const p99Ratio = first !== undefined && last !== undefined ? last.acquireLatencyMs.p99 / first.acquireLatencyMs.p99 : Number.NaN;
  const maxMsMax = 100;
  const p99RatioMax = 1.5;
  return {
    scenario: 'held',
    description: `${clients.length} clients acquiring and keeping distinct locks up to ${top} held`,
    levels: reached, acquired: completed, seconds: r.seconds, errors: r.errors, firstError: r.firstError, rssMbBefore,
    goal: { p99RatioMax, maxMsMax, p99Ratio, met: p99Ratio <= p99RatioMax && (last?.acquireLatencyMs.max ?? Infinity) < maxMsMax },
  };
}

async function main(): Promise<void> {
  const scenarios = scenarioNames.map((s) => {
    if (!isScenario(s)) throw new Error(`LOCKS_BENCH_SCENARIOS: unknown scenario ${s} (distinct, hot, held)`);
    return s;
  });
  const cleanup = createCleanup();
  const dataRoot = mkdtempSync(join(tmpdir(), 'dsync-bench-locks-'));
  cleanup.teardown(() => rmSync(dataRoot, { recursive: true, force: true }));
  const profilingDone = profileNodeProcesses(cpuProfDir);
  try {
    const ports = portBase === 0 ? undefined : Array.from({ length: 9 }, (_, i) => portBase + i);
    const cluster = await TestCluster.start(cleanup, { dataRoot, ...(ports === undefined ? {} : { ports }) });
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
    let held: HeldResult | null = null;
    for (const s of scenarios) {
      if (s === 'held') held = await runHeld(clients, cluster.nodes.map((n) => ({ id: n.spec.id, pid: n.process.pid })));
      else {
        results.push(await runScenario(s, clients, leaderNode.spec.consolePort,
          cluster.nodes.map((n) => ({ pid: n.process.pid, httpPort: n.spec.httpPort }))));
      }
    }
    const after = await waitForLeader(control, cluster.seeds, cluster.nodes.map((n) => n.spec.id));

    const report = {
      benchmark: 'locks',
      machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '', node: process.version },
      config: { seconds: measureSeconds, warmupSeconds, clients: clientsCount, names: namesCount, seed },
      leader: { id: leader.leaderId, unchanged: after.leaderId === leader.leaderId && after.term === leader.term },
      scenarios: results,
      ...(held === null ? {} : { held }),
    };
    mkdirSync(dirname(resultsPath), { recursive: true });
    writeFileSync(resultsPath, JSON.stringify(report, null, 2) + '\n');

    const f = (n: number, w = 9, d = 2): string => n.toFixed(d).padStart(w);
    console.log(`bench:locks  3 nodes, ${clientsCount} clients, ${measureSeconds} s per scenario (+${warmupSeconds} s warm-up), seed ${seed}`);
    console.log('  scenario          ops/s  unit                       p50 ms    p99 ms   p999 ms    max ms  errors  goal');
    for (const r of results) {
      console.log(`  ${r.scenario.padEnd(9)} ${f(r.opsPerSec, 12, 0)}  ${r.opsUnit.padEnd(24)} ${f(r.acquireLatencyMs.p50)} ${f(r.acquireLatencyMs.p99)} ${f(r.acquireLatencyMs.p999)} ${f(r.acquireLatencyMs.max)} ${String(r.errors).padStart(7)}  ${r.goal.met ? 'met' : 'NOT met'} (>= ${r.goal.opsPerSec}/s, p99 < ${r.goal.p99Ms} ms)`);
      console.log(`            leader fsyncs/s ${r.leaderFsyncsPerSec.toFixed(0)}, lock commands per leader fsync ${r.entriesPerLeaderFsync.toFixed(1)}${r.firstError === '' ? '' : `; first error: ${r.firstError}`}`);
      const w = r.perCycle;
      console.log(`            per cycle: CPU ms nodes ${w.nodesCpuMs.toFixed(3)} client ${w.clientCpuMs.toFixed(3)}, group 0 entries ${w.group0Entries.toFixed(2)}, node write calls ${w.nodeWriteCalls.toFixed(2)}; `
        + `per entry: Raft messages ${w.raftMessagesPerEntry.toFixed(2)}, peer frames ${w.peerFramesPerEntry.toFixed(2)}, Readys ${w.readysPerEntry.toFixed(2)}, fsyncs ${w.fsyncsPerEntry.toFixed(2)}`);
    }
    if (held !== null) {
      console.log(`  held: ${held.description}; ${held.acquired} acquired in ${held.seconds.toFixed(1)} s, errors ${held.errors}${held.firstError === '' ? '' : ` (first: ${held.firstError})`}`);
      console.log('    held locks   last 10k s  acquires/s    p50 ms    p99 ms   p999 ms    max ms  RSS MB by node (per 100k held)');
      for (const l of held.levels) {
        const rss = Object.keys(l.rssMb).map((id) => `${id} ${(l.rssMb[id] ?? 0).toFixed(0)} (${(l.rssMbPer100kHeld[id] ?? 0).toFixed(0)})`).join(', ');
        console.log(`    ${String(l.heldLocks).padStart(10)} ${f(l.windowSeconds, 12)} ${f(l.windowAcquiresPerSec, 11, 0)} ${f(l.acquireLatencyMs.p50)} ${f(l.acquireLatencyMs.p99)} ${f(l.acquireLatencyMs.p999)} ${f(l.acquireLatencyMs.max)}  ${rss}`);
      }
      console.log(`    goal: p99 at the top level within ${held.goal.p99RatioMax}x of the first (${held.goal.p99Ratio.toFixed(2)}x), max < ${held.goal.maxMsMax} ms: ${held.goal.met ? 'met' : 'NOT met'}`);
    }
    console.log(`  leader ${leader.leaderId} ${report.leader.unchanged ? 'led throughout' : 'CHANGED during the run'}`);
    console.log(`  JSON: ${resultsPath}`);
  } finally {
    await runCleanup(cleanup);
  }
}

runBenchmark(main);
