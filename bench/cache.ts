// Cache benchmark (`npm run bench:cache`): a local 3-node cluster of child processes,
// CACHE_BENCH_CONNECTIONS clients (64; one connection each, spread evenly over the three
// nodes) running CACHE_BENCH_INFLIGHT closed loops with one request in flight each (as many
// as connections by default; more share the connections round robin, as the Redis peer's
// c64 cells run 64 in flight on one connection), on a working set of 10,000 keys
// with 64-byte values (as the Redis peer's cells) that fits every node's lines. Two fixed
// scenarios, each bounded in time:
//   (a) read-heavy: 95% get, 5% set of a random key;
//   (b) write-heavy: 50% get, 50% set.
// The keys are written once before the first scenario, then read once at every node
// (the clients attached to it), so the measured window starts from a cache that holds the
// working set, as the Redis peer's does, instead of counting 30,000 first-touch misses.
// CACHE_BENCH_WARM=0 skips that read pass. Reported: ops/s, hit ratio (the
// nodes' hits / (hits + misses) over the measured window, from `cache stats`), latency of
// every operation (request sent to answer) in an HDR histogram: p50/p99/p999. Prints a
// table and writes JSON to bench/results/cache.json. Also the CPU each side spent per
// operation over the measured window (the nodes' from /proc/PID/stat, this client's from
// process.cpuUsage): on a machine shared with other work, ops/s follow the CPU share the
// bench gets, while CPU per operation stays a measure of the code.
//
// Env: CACHE_BENCH_SECONDS (8 per scenario), CACHE_BENCH_WARMUP_SECONDS (2),
// CACHE_BENCH_CONNECTIONS (64), CACHE_BENCH_KEYS (10000), CACHE_BENCH_SCENARIOS
// (read-heavy,write-heavy), SEED (key choice), CACHE_BENCH_LEASE_MS (the nodes' --cache-lease;
// default theirs, 2 s: a line not read within a lease is a miss), CACHE_BENCH_CPU_PROF_DIR (if set, the nodes
// are CPU-profiled by locks-profiler.ts over the first scenario's measured window only, and write
// node-PID.cpuprofile there at its end), CACHE_BENCH_PORT_BASE (0: free ports; else 9 ports from it).
// Also reported per operation: the cache peer messages and batches the nodes sent (misses,
// invalidations, renewals: a hit sends none), and the nodes' read and write system calls
// (syscr + syscw from /proc/PID/io: socket reads and writes, one each per request frame and
// per answer write when nothing batches).

import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '../client/index.js';
import { cacheRingFormed } from '../test/integration/cache-helpers.js';
import { TestCluster } from '../test/integration/helpers/cluster.js';
import * as hdr from 'hdr-histogram-js';
import { closedLoop, createCleanup, profileNodeProcesses, envInt, type LatencySummaryMs, latencySummaryMs, prng, runBenchmark, runCleanup } from './common.js';

const measureSeconds = envInt('CACHE_BENCH_SECONDS', 8, 1, 3600);
const warmupSeconds = envInt('CACHE_BENCH_WARMUP_SECONDS', 2, 0, 600);
const connectionsCount = envInt('CACHE_BENCH_CONNECTIONS', 64, 1, 1024);
const inflightCount = envInt('CACHE_BENCH_INFLIGHT', connectionsCount, 1, 4096);
const keysCount = envInt('CACHE_BENCH_KEYS', 10_000, 1, 1_000_000);
const seed = envInt('SEED', 1, 0, 2 ** 31 - 1);
const scenarioNames = (process.env.CACHE_BENCH_SCENARIOS ?? 'read-heavy,write-heavy').split(',').filter((s) => s !== '');
const cpuProfDir = process.env.CACHE_BENCH_CPU_PROF_DIR ?? '';
const leaseMs = envInt('CACHE_BENCH_LEASE_MS', 0, 0, 60_000);
const portBase = envInt('CACHE_BENCH_PORT_BASE', 0, 0, 65_000);
const warmLines = envInt('CACHE_BENCH_WARM', 1, 0, 1) === 1;
/** Value size: the Redis peer's cells use 64-byte values. */
const valueBytes = 64;
/** Highest latency the histogram tracks, in microseconds. */
const latencyUsMax = 60_000_000;
/** Keys written per batch while loading the working set. */
const loadBatchKeys = 500;

const resultsPath = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'results', 'cache.json');

type ScenarioName = 'read-heavy' | 'write-heavy';
const getShare: Record<ScenarioName, number> = { 'read-heavy': 0.95, 'write-heavy': 0.5 };
function isScenario(s: string): s is ScenarioName {
  return s === 'read-heavy' || s === 'write-heavy';
}

interface ScenarioResult {
  readonly scenario: ScenarioName;
  readonly description: string;
  readonly opsPerSec: number;
  readonly getsPerSec: number;
  readonly setsPerSec: number;
  readonly measuredOps: number;
  readonly seconds: number;
  readonly hitRatio: number;
  /** Renewals the nodes asked their homes for, per operation: lines (a fixed rate per working set) plus volume leases (a fixed rate per home). */
  readonly renewalsPerOp: number;
  /** Cache peer messages (and the batches carrying them) the nodes sent, per operation. */
  readonly peerMessagesPerOp: number;
  readonly peerBatchesPerOp: number;
  /** Read and write system calls of the three nodes together, per operation. */
  readonly nodesSyscallsPerOp: number;
  readonly latencyMs: LatencySummaryMs;
  /** The same for gets and sets apart: which kind the tail is made of. */
  readonly getLatencyMs: LatencySummaryMs;
  readonly setLatencyMs: LatencySummaryMs;
  readonly errors: number;
  readonly firstError: string;
  /** CPU microseconds per operation over the measured window: the three nodes together, and this client process. */
  readonly nodesCpuUsPerOp: number;
  readonly clientCpuUsPerOp: number;
}

/** Clock ticks per second of /proc/PID/stat's utime and stime (USER_HZ: 100 on Linux). */
const procTicksPerSecond = 100;

/** CPU seconds (user + system) the processes used so far, from /proc (0 for one that is gone). */
function procCpuSeconds(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // Fields after the command name (which may hold spaces) start at its closing parenthesis.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // not Linux, or the process is gone: counts nothing
    }
  }
  return ticks / procTicksPerSecond;
}

/** Read plus write system calls the processes made so far (/proc/PID/io; 0 for one that is gone). */
function procSyscalls(pids: readonly number[]): number {
  let n = 0;
  for (const pid of pids) {
    try {
      const io = readFileSync(`/proc/${pid}/io`, 'utf8');
      n += Number(/^syscr: (\d+)$/m.exec(io)?.[1] ?? 0) + Number(/^syscw: (\d+)$/m.exec(io)?.[1] ?? 0);
    } catch {
      // not Linux, or the process is gone: counts nothing
    }
  }
  return n;
}

function clientCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** Sum of hits and misses over the nodes (each client's stats come from the node it is attached to). */
interface NodeCounts { hits: number; misses: number; renewals: number; peerMessages: number; peerBatches: number }
const noCounts: NodeCounts = { hits: 0, misses: 0, renewals: 0, peerMessages: 0, peerBatches: 0 };

async function hitsAndMisses(probes: readonly Client[]): Promise<NodeCounts> {
  let hits = 0;
  let misses = 0;
  let renewals = 0;
  let peerMessages = 0;
  let peerBatches = 0;
  for (const c of probes) {
    const s = await c.cache.stats();
    hits += s.counters['node.hits'] ?? 0;
    misses += s.counters['node.misses'] ?? 0;
    // Line renewals and volume-lease renewals (one per home per interval): every renewal message's key or volume.
    renewals += (s.counters['node.renewalsSent'] ?? 0) + (s.counters['node.volumeRenewalsSent'] ?? 0);
    peerMessages += s.counters['peerMessagesSent'] ?? 0;
    peerBatches += s.counters['peerBatchesSent'] ?? 0;
  }
  return { hits, misses, renewals, peerMessages, peerBatches };
}

/** Starts (first call) or ends and writes (second call) the nodes' CPU profiles (locks-profiler.ts, window mode). */
function signalProfilers(pids: readonly number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGUSR2');
    } catch {
      // gone: nothing to profile
    }
  }
}

async function runScenario(scenario: ScenarioName, clients: readonly Client[], probes: readonly Client[], nodePids: readonly number[], profile: boolean): Promise<ScenarioResult> {
  const next = prng(seed + (scenario === 'write-heavy' ? 7919 : 0));
  const getBelow = Math.floor(getShare[scenario] * 1_000_000);
  const value = new Uint8Array(valueBytes).fill(0x78);
  let gets = 0;
  let sets = 0;
  let before = noCounts;
  let after = noCounts;
  let nodesCpuSeconds = 0;
  let clientCpuSecondsUsed = 0;
  let nodesSyscalls = 0;
  const histogram = (): ReturnType<typeof hdr.build> => hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: latencyUsMax, numberOfSignificantValueDigits: 3 });
  const getUs = histogram();
  const setUs = histogram();
  const r = await closedLoop({
    clients, warmupSeconds, measureSeconds, latencyUsMax,
    op: async (client, counts) => {
      const key = `key:${next() % keysCount}`;
      const isGet = next() % 1_000_000 < getBelow;
      const t0 = performance.now();
      if (isGet) await client.cache.get(key);
      else await client.cache.set(key, value);
      const us = Math.min(latencyUsMax, Math.max(1, Math.round((performance.now() - t0) * 1000)));
      if (counts()) {
        if (isGet) gets++;
        else sets++;
        (isGet ? getUs : setUs).recordValue(us);
      }
      return us;
    },
    beforeMeasure: async () => {
      before = await hitsAndMisses(probes);
      nodesCpuSeconds = procCpuSeconds(nodePids);
      nodesSyscalls = procSyscalls(nodePids);
      clientCpuSecondsUsed = clientCpuSeconds();
      if (profile) signalProfilers(nodePids);
    },
    afterMeasure: async () => {
      if (profile) signalProfilers(nodePids);
      nodesCpuSeconds = procCpuSeconds(nodePids) - nodesCpuSeconds;
      nodesSyscalls = procSyscalls(nodePids) - nodesSyscalls;
      clientCpuSecondsUsed = clientCpuSeconds() - clientCpuSecondsUsed;
      after = await hitsAndMisses(probes);
    },
  });
  const { seconds, errors, firstError } = r;
  const hits = after.hits - before.hits;
  const misses = after.misses - before.misses;
  const ops = gets + sets;
  return {
    scenario,
    description: `${connectionsCount} connections, ${clients.length} requests in flight, ${Math.round(getShare[scenario] * 100)}% get / ${Math.round((1 - getShare[scenario]) * 100)}% set of ${keysCount} keys (${valueBytes}-byte values)`,
    opsPerSec: (gets + sets) / seconds,
    getsPerSec: gets / seconds,
    setsPerSec: sets / seconds,
    measuredOps: gets + sets,
    seconds,
    hitRatio: hits + misses === 0 ? 0 : hits / (hits + misses),
    renewalsPerOp: ops === 0 ? 0 : (after.renewals - before.renewals) / ops,
    peerMessagesPerOp: ops === 0 ? 0 : (after.peerMessages - before.peerMessages) / ops,
    peerBatchesPerOp: ops === 0 ? 0 : (after.peerBatches - before.peerBatches) / ops,
    nodesSyscallsPerOp: ops === 0 ? 0 : nodesSyscalls / ops,
    latencyMs: r.latencyMs,
    getLatencyMs: latencySummaryMs(getUs),
    setLatencyMs: latencySummaryMs(setUs),
    errors,
    firstError,
    nodesCpuUsPerOp: gets + sets === 0 ? 0 : (nodesCpuSeconds * 1e6) / (gets + sets),
    clientCpuUsPerOp: gets + sets === 0 ? 0 : (clientCpuSecondsUsed * 1e6) / (gets + sets),
  };
}

async function main(): Promise<void> {
  const scenarios = scenarioNames.map((s) => {
    if (!isScenario(s)) throw new Error(`CACHE_BENCH_SCENARIOS: unknown scenario ${s} (read-heavy, write-heavy)`);
    return s;
  });
  const cleanup = createCleanup();
  const dataRoot = mkdtempSync(join(tmpdir(), 'dsync-bench-cache-'));
  cleanup.teardown(() => rmSync(dataRoot, { recursive: true, force: true }));
  if (cpuProfDir !== '') process.env.LOCKS_BENCH_CPU_PROF_WINDOW = 'signal';
  const profilingDone = profileNodeProcesses(cpuProfDir);
  try {
    const ports = portBase === 0 ? undefined : Array.from({ length: 9 }, (_, i) => portBase + i);
    const cluster = await TestCluster.start(cleanup, { dataRoot, ...(ports === undefined ? {} : { ports }), extraArgs: ['--log-level', 'warn', ...(leaseMs === 0 ? [] : ['--cache-lease', String(leaseMs)])] });
    profilingDone();
    delete process.env.LOCKS_BENCH_CPU_PROF_WINDOW;
    const seeds = cluster.seeds;
    // Client i is attached to node i mod 3 (its first seed), so the load spreads evenly.
    const rotated = (i: number): string[] => seeds.map((_, j) => seeds[(i + j) % seeds.length] as string);
    const clients: Client[] = [];
    for (let i = 0; i < connectionsCount; i++) clients.push(await Client.connect({ seeds: rotated(i), name: `bench-cache-${i}`, requestTimeoutMs: 15_000 }));
    cleanup.teardown(async () => {
      await Promise.all(clients.map((c) => c.close()));
    });
    const probes: Client[] = [];
    for (let i = 0; i < seeds.length; i++) probes.push(await Client.connect({ seeds: rotated(i), name: `bench-cache-probe-${i}` }));
    cleanup.teardown(async () => {
      await Promise.all(probes.map((c) => c.close()));
    });

    // From a formed ring only: a write in flight while the ring forms has an unknown fate (TIMEOUT or UNAVAILABLE).
    await cacheRingFormed(cluster.nodes);
    // The working set, written once (spread over the clients, a batch at a time).
    const value = new Uint8Array(valueBytes).fill(0x78);
    const loadStart = performance.now();
    for (let k = 0; k < keysCount; k += loadBatchKeys) {
      const batch: Promise<void>[] = [];
      for (let j = k; j < Math.min(keysCount, k + loadBatchKeys); j++) batch.push((clients[j % clients.length] as Client).cache.set(`key:${j}`, value));
      await Promise.all(batch);
    }
    // Every node reads every key once through a client attached to it (client i is on node i mod nodes).
    if (warmLines) {
      const perNode = Math.max(1, Math.floor(clients.length / seeds.length));
      const onNode = (n: number, j: number): Client => clients[(n + seeds.length * (j % perNode)) % clients.length] as Client;
      for (let k = 0; k < keysCount; k += loadBatchKeys) {
        const batch: Promise<Uint8Array | null>[] = [];
        for (let j = k; j < Math.min(keysCount, k + loadBatchKeys); j++) {
          for (let n = 0; n < seeds.length; n++) batch.push(onNode(n, j).cache.get(`key:${j}`));
        }
        await Promise.all(batch);
      }
    }
    const loadSeconds = (performance.now() - loadStart) / 1000;

    const results: ScenarioResult[] = [];
    const nodePids = cluster.nodes.flatMap((n) => (n.proc === null ? [] : [n.proc.pid]));
    // Loop i runs on connection i mod connections (so on node i mod 3, like that connection).
    const loops = Array.from({ length: inflightCount }, (_, i) => clients[i % clients.length] as Client);
    for (const [i, s] of scenarios.entries()) results.push(await runScenario(s, loops, probes, nodePids, cpuProfDir !== '' && i === 0));

    const report = {
      benchmark: 'cache',
      machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '', node: process.version },
      config: { seconds: measureSeconds, warmupSeconds, connections: connectionsCount, inflight: inflightCount, keys: keysCount, valueBytes, seed, loadSeconds, leaseMs: leaseMs === 0 ? 'node default' : leaseMs },
      goals: { readHeavy: 'ops/s >= 1.3x redis.none.io.get.c64 and >= 1.0x redis.none.io.get.c64.autopipe; p99 < 5 ms' },
      scenarios: results,
    };
    mkdirSync(dirname(resultsPath), { recursive: true });
    writeFileSync(resultsPath, JSON.stringify(report, null, 2) + '\n');

    const f = (n: number, w = 9, d = 2): string => n.toFixed(d).padStart(w);
    console.log(`bench:cache  3 nodes, ${connectionsCount} connections, ${inflightCount} in flight, ${keysCount} keys of ${valueBytes} bytes, ${measureSeconds} s per scenario (+${warmupSeconds} s warm-up), seed ${seed}, lease ${leaseMs === 0 ? 'default' : `${leaseMs} ms`}; load ${loadSeconds.toFixed(1)} s`);
    console.log('  scenario          ops/s     get/s     set/s  hit ratio    p50 ms    p99 ms   p999 ms    max ms  nodes cpu us/op  client cpu us/op  renewals/op  peer msgs/op  peer batches/op  node syscalls/op  errors');
    for (const r of results) {
      console.log(`  ${r.scenario.padEnd(11)} ${f(r.opsPerSec, 10, 0)} ${f(r.getsPerSec, 9, 0)} ${f(r.setsPerSec, 9, 0)} ${f(r.hitRatio, 10, 3)} ${f(r.latencyMs.p50)} ${f(r.latencyMs.p99)} ${f(r.latencyMs.p999)} ${f(r.latencyMs.max)} ${f(r.nodesCpuUsPerOp, 16, 1)} ${f(r.clientCpuUsPerOp, 17, 1)} ${f(r.renewalsPerOp, 12, 2)} ${f(r.peerMessagesPerOp, 13, 2)} ${f(r.peerBatchesPerOp, 16, 2)} ${f(r.nodesSyscallsPerOp, 17, 2)} ${String(r.errors).padStart(7)}${r.firstError === '' ? '' : `  first error: ${r.firstError}`}`);
    }
    for (const r of results) console.log(`  ${r.scenario}: get p50/p99 ${f(r.getLatencyMs.p50, 0)}/${f(r.getLatencyMs.p99, 0)} ms, set p50/p99 ${f(r.setLatencyMs.p50, 0)}/${f(r.setLatencyMs.p99, 0)} ms`);
    console.log(`  JSON: ${resultsPath}`);
  } finally {
    await runCleanup(cleanup);
  }
}

runBenchmark(main);
