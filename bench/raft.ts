// Raft benchmark (`npm run bench:raft`): committed proposals/s of group 0 on a local
// 3-node cluster of child processes, 64 concurrent proposers of 64-byte journal
// appends talking straight to the leader, each keeping DEPTH requests in flight.
// An append is acknowledged only once committed (fsynced on a majority) and applied
// on the leader. Prints throughput, p50/p99/p999 commit latency (HDR histogram),
// fsyncs/s per node from the console `raft` WAL metrics, and the hardware floor
// (write+fdatasync latency, loopback ping); checks that all nodes converged to one
// (count, hash) with count >= acknowledged. Per proposal, for each phase: the three nodes'
// CPU (/proc, all threads) and this client's, Raft messages by type, peer frames and Readys
// (from /metrics): on a shared machine these, not proposals/s, show what a change costs.
// JSON to bench/results/raft.json.
//
// Many groups (RAFT_BENCH_GROUPS, default 200; 0 skips it): then the same proposers and depth
// publish to a topic of that many partitions, each partition its own Raft group with 3
// replicas (leaders spread over the nodes by the queue service), keys drawn at random so the
// proposals spread over every group at once; reported with the same figures next to the
// one-group ones (a publish is a replicated append acknowledged once committed and applied
// on its partition's leader; the client's producer batches what is in flight per partition).
//
// Env: RAFT_BENCH_SECONDS (10), RAFT_BENCH_WARMUP_SECONDS (1), RAFT_BENCH_PROPOSERS (64),
// RAFT_BENCH_DEPTH (8 requests in flight per proposer), RAFT_BENCH_PAYLOAD_BYTES (64),
// RAFT_BENCH_GROUPS (200), RAFT_BENCH_GROUPS_WARMUP_SECONDS (10: the new groups elect), RAFT_BENCH_PORT_BASE (0: free ports; else 9 ports from it),
// RAFT_BENCH_CPU_PROF_DIR (if set, the nodes are CPU-profiled over the one-group measured window by locks-profiler.ts
// and write node-PID.cpuprofile there).

import { closeSync, fdatasyncSync, mkdirSync, mkdtempSync, openSync, rmSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as hdr from 'hdr-histogram-js';
import { routerOf } from '../client/client.js';
import { Client } from '../client/index.js';
import type { ClientConnection } from '../client/transport/connection.js';
import { DsyncError } from '../protocol/errors.js';
import { Opcode } from '../protocol/frame.js';
import { schema } from '../protocol/index.js';
import { TestCluster } from '../test/integration/helpers/cluster.js';
import { consoleCommand, waitForConvergence, waitForLeader } from '../test/integration/raft-helpers.js';
import { queueTopicPartitionsMax } from '../core/constants.js';
import type { Producer } from '../client/index.js';
import { createCleanup, envInt, forEachMetricSample, latencySummaryMs, processCpuSeconds, processWriteCalls, profileNodeProcesses, prng, runBenchmark, runCleanup, sleep } from './common.js';

const measureSeconds = envInt('RAFT_BENCH_SECONDS', 10, 1, 3600);
const cpuProfDir = process.env.RAFT_BENCH_CPU_PROF_DIR ?? '';
const warmupSeconds = envInt('RAFT_BENCH_WARMUP_SECONDS', 1, 0, 600);
const proposersCount = envInt('RAFT_BENCH_PROPOSERS', 64, 1, 4096);
const depthPerProposer = envInt('RAFT_BENCH_DEPTH', 8, 1, 1024);
const payloadBytes = envInt('RAFT_BENCH_PAYLOAD_BYTES', 64, 1, 1024 * 1024);
const manyGroups = envInt('RAFT_BENCH_GROUPS', 200, 0, queueTopicPartitionsMax);
const portBase = envInt('RAFT_BENCH_PORT_BASE', 0, 0, 65_000);
const manyGroupsWarmupSeconds = envInt('RAFT_BENCH_GROUPS_WARMUP_SECONDS', 10, 0, 600);
/** A single request slower than this is an error, not a latency sample. */
const requestTimeoutMs = 10_000;
/** Raw write+fdatasync samples for the hardware floor. */
const fdatasyncSamplesCount = 300;
const pingSamplesCount = 500;
/** Highest latency the histogram tracks, in microseconds (requests time out well before). */
const latencyUsMax = 60_000_000;

const resultsPath = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'results', 'raft.json');

interface WalMetricsView {
  readonly fsyncs: number;
}

function percentileMs(sortedMs: readonly number[], p: number): number {
  return sortedMs[Math.min(sortedMs.length - 1, Math.floor(p * sortedMs.length))] ?? 0;
}

/** Raw write + fdatasync of one 4 KiB block, in the directory the nodes write to. */
function fdatasyncFloor(dir: string): { p50Ms: number; p99Ms: number; meanMs: number } {
  const file = join(dir, 'fdatasync-probe.bin');
  const fd = openSync(file, 'w');
  const block = new Uint8Array(4096).fill(1);
  const samples: number[] = [];
  try {
    for (let i = 0; i < fdatasyncSamplesCount; i++) {
      const t0 = performance.now();
      writeSync(fd, block);
      fdatasyncSync(fd);
      samples.push(performance.now() - t0);
    }
  } finally {
    closeSync(fd);
    unlinkSync(file);
  }
  samples.sort((a, b) => a - b);
  return { p50Ms: percentileMs(samples, 0.5), p99Ms: percentileMs(samples, 0.99), meanMs: samples.reduce((a, b) => a + b, 0) / samples.length };
}

async function pingFloor(client: Client): Promise<{ p50Ms: number; p99Ms: number }> {
  const samples: number[] = [];
  for (let i = 0; i < pingSamplesCount; i++) samples.push(await client.ping());
  samples.sort((a, b) => a - b);
  return { p50Ms: percentileMs(samples, 0.5), p99Ms: percentileMs(samples, 0.99) };
}

async function walFsyncs(consolePort: number): Promise<number> {
  const out = await consoleCommand(consolePort, 'raft');
  const m = /^wal: (\{.*\})$/m.exec(out);
  if (m === null || m[1] === undefined) throw new Error(`console raft printed no WAL metrics: ${out}`);
  const metrics = JSON.parse(m[1]) as WalMetricsView;
  if (typeof metrics.fsyncs !== 'number') throw new Error(`WAL metrics without fsyncs: ${m[1]}`);
  return metrics.fsyncs;
}

/** Starts (first call) or ends and writes (second call) the nodes' CPU profiles (locks-profiler.ts, window mode). */
function signalProfilers(cluster: TestCluster): void {
  for (const n of cluster.nodes) {
    try {
      if (n.proc?.child.pid !== undefined) process.kill(n.proc.child.pid, 'SIGUSR2');
    } catch {
      // gone: nothing to profile
    }
  }
}

/** What the nodes spent so far: CPU seconds and write system calls (each node, all threads), this process's CPU, and Raft work counters. */
interface WorkSample {
  readonly nodeCpuSeconds: readonly number[];
  readonly nodeWriteCalls: readonly number[];
  readonly clientCpuSeconds: number;
  readonly raftMessagesSent: number;
  readonly peerFramesSent: number;
  readonly readys: number;
  /** Client requests the nodes answered with an error (dsync_requests_total, code other than OK): NOT_LEADER redirects above all. */
  readonly errorAnswers: number;
  /** Raft messages sent by type (dsync_raft_messages_by_type_total), summed over the nodes. */
  readonly sentByType: Readonly<Record<string, number>>;
}

async function sampleWork(cluster: TestCluster): Promise<WorkSample> {
  let raftMessagesSent = 0;
  let peerFramesSent = 0;
  let readys = 0;
  let errorAnswers = 0;
  const sentByType: Record<string, number> = {};
  await forEachMetricSample(cluster.nodes.map((n) => n.spec.httpPort), (name, labels, v) => {
    if (name === 'dsync_raft_messages_total' && labels.includes('direction="sent"')) raftMessagesSent += v;
    else if (name === 'dsync_raft_peer_frames_total' && labels.includes('direction="sent"')) peerFramesSent += v;
    else if (name === 'dsync_raft_readys_total') readys += v;
    else if (name === 'dsync_requests_total' && !labels.includes('code="OK"')) errorAnswers += v;
    else if (name === 'dsync_raft_messages_by_type_total') {
      const type = /type="(\w+)"/.exec(labels)?.[1] ?? '?';
      sentByType[type] = (sentByType[type] ?? 0) + v;
    }
  });
  const u = process.cpuUsage();
  return { nodeCpuSeconds: cluster.nodes.map((n) => processCpuSeconds(n.proc?.child.pid)), nodeWriteCalls: cluster.nodes.map((n) => processWriteCalls(n.proc?.child.pid)),
    clientCpuSeconds: (u.user + u.system) / 1e6, raftMessagesSent, peerFramesSent, readys, errorAnswers, sentByType };
}

/** Work per acknowledged proposal between two samples (CPU in microseconds, the rest in counts). */
interface WorkPerProposal {
  readonly nodesCpuUs: number;
  /** The leader's share, and a follower's on average (-1 when no one node leads every group). */
  readonly leaderCpuUs: number;
  readonly followerCpuUsMean: number;
  /** write(2) and friends the nodes made (syscw), all of them and the leader's. */
  readonly nodesWriteCalls: number;
  readonly leaderWriteCalls: number;
  readonly clientCpuUs: number;
  readonly raftMessages: number;
  readonly peerFrames: number;
  readonly readys: number;
  readonly errorAnswers: number;
  readonly byType: Readonly<Record<string, number>>;
}

function workPerProposal(before: WorkSample, after: WorkSample, proposals: number, leaderIndex = -1): WorkPerProposal {
  const n = Math.max(1, proposals);
  const cpuUs = after.nodeCpuSeconds.map((c, i) => (c - (before.nodeCpuSeconds[i] ?? 0)) * 1e6 / n);
  const writes = after.nodeWriteCalls.map((c, i) => (c - (before.nodeWriteCalls[i] ?? 0)) / n);
  const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);
  const followers = cpuUs.filter((_, i) => i !== leaderIndex);
  const byType: Record<string, number> = {};
  for (const [type, v] of Object.entries(after.sentByType)) {
    const per = (v - (before.sentByType[type] ?? 0)) / n;
    if (per > 0) byType[type] = per;
  }
  return { nodesCpuUs: sum(cpuUs), leaderCpuUs: leaderIndex < 0 ? -1 : cpuUs[leaderIndex] ?? 0,
    followerCpuUsMean: leaderIndex < 0 ? -1 : sum(followers) / Math.max(1, followers.length),
    nodesWriteCalls: sum(writes), leaderWriteCalls: leaderIndex < 0 ? -1 : writes[leaderIndex] ?? 0, clientCpuUs: (after.clientCpuSeconds - before.clientCpuSeconds) * 1e6 / n,
    raftMessages: (after.raftMessagesSent - before.raftMessagesSent) / n, peerFrames: (after.peerFramesSent - before.peerFramesSent) / n,
    readys: (after.readys - before.readys) / n, errorAnswers: (after.errorAnswers - before.errorAnswers) / n, byType };
}

function formatWork(w: WorkPerProposal): string {
  const types = Object.entries(w.byType).map(([t, v]) => `${t} ${v.toFixed(2)}`).join(', ');
  const split = w.leaderCpuUs < 0 ? '' : ` (leader ${w.leaderCpuUs.toFixed(0)}, follower mean ${w.followerCpuUsMean.toFixed(0)})`;
  const leaderWrites = w.leaderWriteCalls < 0 ? '' : ` (leader ${w.leaderWriteCalls.toFixed(2)})`;
  return `per proposal: nodes CPU ${w.nodesCpuUs.toFixed(0)} us${split}, client CPU ${w.clientCpuUs.toFixed(0)} us, node write calls ${w.nodesWriteCalls.toFixed(2)}${leaderWrites},`
    + ` raft messages ${w.raftMessages.toFixed(2)}`
    + ` (${types}), peer frames ${w.peerFrames.toFixed(2)}, readys ${w.readys.toFixed(2)}, error answers ${w.errorAnswers.toFixed(3)}`;
}

/** The same proposers and depth over `manyGroups` groups: a topic's partitions, keys at random. */
async function manyGroupsPhase(control: Client, cluster: TestCluster, clients: readonly Client[]): Promise<{
  groups: number; groupsUsed: number; proposalsPerSec: number; commitLatencyMs: ReturnType<typeof latencySummaryMs>;
  fsyncsPerSec: Record<string, number>; errors: number; firstError: string; work: WorkPerProposal;
}> {
  const topic = 'bench-raft-groups';
  await control.topics.create(topic, { partitions: manyGroups, replicas: 3 });
  const next = prng(7);
  const value = new Uint8Array(payloadBytes).fill(120);
  const producers: Producer[] = clients.map((c) => c.producer(topic));
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: latencyUsMax, numberOfSignificantValueDigits: 3 });
  const used = new Set<number>();
  let measured = 0;
  let errors = 0;
  let firstError = '';
  let measuring = false;
  let stopping = false;
  const slot = async (producer: Producer): Promise<void> => {
    while (!stopping) {
      const t0 = performance.now();
      try {
        const r = await producer.publish(`k${next() % 1_000_000}`, value);
        used.add(r.partition);
      } catch (err) {
        if (!(err instanceof DsyncError)) throw err;
        errors++;
        if (firstError === '') firstError = `${err.code}: ${err.message}`;
        await sleep(10);
        continue;
      }
      if (measuring) {
        measured++;
        histogram.recordValue(Math.max(1, Math.round((performance.now() - t0) * 1000)));
      }
    }
  };
  const running = Promise.all(producers.flatMap((p) => Array.from({ length: depthPerProposer }, () => slot(p))));
  // The new groups elect and the producers learn the partition map during their own warm-up.
  await sleep(manyGroupsWarmupSeconds * 1000);
  const before = await Promise.all(cluster.nodes.map((n) => walFsyncs(n.spec.consolePort)));
  const workBefore = await sampleWork(cluster);
  measuring = true;
  const t0 = performance.now();
  await sleep(measureSeconds * 1000);
  measuring = false;
  const seconds = (performance.now() - t0) / 1000;
  const workAfter = await sampleWork(cluster);
  const after = await Promise.all(cluster.nodes.map((n) => walFsyncs(n.spec.consolePort)));
  stopping = true;
  await running;
  const fsyncsPerSec: Record<string, number> = {};
  cluster.nodes.forEach((n, i) => { fsyncsPerSec[n.spec.id] = ((after[i] ?? 0) - (before[i] ?? 0)) / seconds; });
  return { groups: manyGroups, groupsUsed: used.size, proposalsPerSec: measured / seconds, commitLatencyMs: latencySummaryMs(histogram),
    fsyncsPerSec, errors, firstError, work: workPerProposal(workBefore, workAfter, measured) };
}

async function main(): Promise<void> {
  const cleanup = createCleanup();
  const dataRoot = mkdtempSync(join(tmpdir(), 'dsync-bench-raft-'));
  cleanup.teardown(() => rmSync(dataRoot, { recursive: true, force: true }));
  try {
    const floor = fdatasyncFloor(dataRoot);
    const ports = portBase === 0 ? undefined : Array.from({ length: 9 }, (_, i) => portBase + i);
    if (cpuProfDir !== '') process.env.LOCKS_BENCH_CPU_PROF_WINDOW = 'signal';
    const profilingDone = profileNodeProcesses(cpuProfDir);
    const cluster = await TestCluster.start(cleanup, { dataRoot, ...(ports === undefined ? {} : { ports }) });
    profilingDone();
    delete process.env.LOCKS_BENCH_CPU_PROF_WINDOW;
    const control = await Client.connect({ seeds: cluster.seeds });
    cleanup.teardown(() => control.close());
    const leader = await waitForLeader(control, cluster.seeds, cluster.nodes.map((n) => n.spec.id));
    const leaderNode = cluster.node(leader.leaderId);
    const ping = await pingFloor(control);

    // One connection per proposer, straight to the leader (no redirects: a leader change is an error here).
    const conns: ClientConnection[] = [];
    const clients: Client[] = [];
    for (let i = 0; i < proposersCount; i++) {
      const c = await Client.connect({ seeds: [leaderNode.address], name: `bench-raft-${i}` });
      clients.push(c);
      conns.push(await routerOf(c).connection(leaderNode.address));
    }
    cleanup.teardown(async () => {
      await Promise.all(clients.map((c) => c.close()));
    });

    const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: latencyUsMax, numberOfSignificantValueDigits: 3 });
    let ackedTotal = 0;
    let ackedMeasured = 0;
    let errors = 0;
    let firstError = '';
    let measuring = false;
    let stopping = false;
    const payloads = conns.map((_, i) => {
      const data = new Uint8Array(payloadBytes);
      for (let k = 0; k < data.length; k++) data[k] = (i * 31 + k) & 0xff;
      return schema.JournalAppend.encode({ data }).finish();
    });

    const slot = async (conn: ClientConnection, payload: Uint8Array): Promise<void> => {
      while (!stopping) {
        const t0 = performance.now();
        try {
          await conn.request(Opcode.JournalAppend, payload, requestTimeoutMs);
        } catch (err) {
          if (!(err instanceof DsyncError)) throw err;
          errors++;
          if (firstError === '') firstError = `${err.code}: ${err.message}`;
          if (!conn.isOpen) return;
          continue;
        }
        ackedTotal++;
        if (measuring) {
          ackedMeasured++;
          histogram.recordValue(Math.max(1, Math.round((performance.now() - t0) * 1000)));
        }
      }
    };
    const running = Promise.all(conns.flatMap((conn, i) => Array.from({ length: depthPerProposer }, () => slot(conn, payloads[i] ?? new Uint8Array(0)))));

    await sleep(warmupSeconds * 1000);
    const fsyncsBefore = await Promise.all(cluster.nodes.map((n) => walFsyncs(n.spec.consolePort)));
    const workBefore = await sampleWork(cluster);
    if (cpuProfDir !== '') signalProfilers(cluster);
    measuring = true;
    const t0 = performance.now();
    await sleep(measureSeconds * 1000);
    measuring = false;
    const elapsedS = (performance.now() - t0) / 1000;
    if (cpuProfDir !== '') signalProfilers(cluster);
    const workAfter = await sampleWork(cluster);
    const fsyncsAfter = await Promise.all(cluster.nodes.map((n) => walFsyncs(n.spec.consolePort)));
    stopping = true;
    await running;

    const converged = await waitForConvergence(control, cluster.seeds, ackedTotal, 60_000);
    const many = manyGroups === 0 ? null : await manyGroupsPhase(control, cluster, clients);
    const journalCount = converged[0]?.count ?? 0;
    if (journalCount < ackedTotal) throw new Error(`journal holds ${journalCount} < ${ackedTotal} acknowledged appends`);

    const fsyncsPerSec: Record<string, number> = {};
    cluster.nodes.forEach((n, i) => {
      const role = n.spec.id === leader.leaderId ? 'leader' : 'follower';
      fsyncsPerSec[`${n.spec.id} (${role})`] = ((fsyncsAfter[i] ?? 0) - (fsyncsBefore[i] ?? 0)) / elapsedS;
    });
    const leaderIndex = cluster.nodes.indexOf(leaderNode);
    const leaderFsyncs = (fsyncsAfter[leaderIndex] ?? 0) - (fsyncsBefore[leaderIndex] ?? 0);
    const proposalsPerSec = ackedMeasured / elapsedS;
    const result = {
      scenario: '3 nodes, group 0 journal appends, acknowledged once committed (fsynced on a majority) and applied on the leader',
      machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '', node: process.version },
      config: { seconds: measureSeconds, warmupSeconds, proposers: proposersCount, depthPerProposer,
        inFlightMax: proposersCount * depthPerProposer, payloadBytes },
      proposalsPerSec,
      commitLatencyMs: latencySummaryMs(histogram),
      fsyncsPerSec,
      proposalsPerLeaderFsync: ackedMeasured / Math.max(1, leaderFsyncs),
      work: workPerProposal(workBefore, workAfter, ackedMeasured, leaderIndex),
      errors, firstError,
      acknowledgedTotal: ackedTotal,
      converged: { count: journalCount, hash: converged[0]?.hash ?? 0, nodes: converged.length },
      floor: { fdatasync4KiBMs: floor, loopbackPingMs: ping },
      ...(many === null ? {} : { manyGroups: many }),
    };

    mkdirSync(dirname(resultsPath), { recursive: true });
    writeFileSync(resultsPath, JSON.stringify(result, null, 2) + '\n');
    const f = (n: number): string => n.toFixed(3).padStart(9);
    console.log(`bench:raft  3 nodes, ${proposersCount} proposers x depth ${depthPerProposer}, ${payloadBytes}-byte appends, ${elapsedS.toFixed(1)} s`);
    console.log(`  committed proposals/s   ${proposalsPerSec.toFixed(0)}`);
    console.log('  commit latency ms          p50       p99      p999       max');
    console.log(`                       ${f(result.commitLatencyMs.p50)} ${f(result.commitLatencyMs.p99)} ${f(result.commitLatencyMs.p999)} ${f(result.commitLatencyMs.max)}`);
    for (const [k, v] of Object.entries(fsyncsPerSec)) console.log(`  fsyncs/s ${k.padEnd(16)} ${v.toFixed(0)}`);
    console.log(`  proposals per leader fsync ${result.proposalsPerLeaderFsync.toFixed(1)}`);
    console.log(`  ${formatWork(result.work)}`);
    console.log(`  errors ${errors}${firstError === '' ? '' : ` (first: ${firstError})`}`);
    console.log(`  converged: ${converged.length} nodes at count=${journalCount} hash=${result.converged.hash} (>= ${ackedTotal} acknowledged)`);
    if (many !== null) {
      console.log(`  ${many.groups} groups at once (topic partitions x 3 replicas, same proposers and depth): committed proposals/s ${many.proposalsPerSec.toFixed(0)}`
        + ` (one group: ${proposalsPerSec.toFixed(0)}, ratio ${(many.proposalsPerSec / proposalsPerSec).toFixed(2)})`);
      console.log(`                       ${f(many.commitLatencyMs.p50)} ${f(many.commitLatencyMs.p99)} ${f(many.commitLatencyMs.p999)} ${f(many.commitLatencyMs.max)}`);
      for (const [k, v] of Object.entries(many.fsyncsPerSec)) console.log(`  fsyncs/s ${k.padEnd(16)} ${v.toFixed(0)}`);
      console.log(`  ${formatWork(many.work)}`);
      console.log(`  groups proposed to ${many.groupsUsed}, errors ${many.errors}${many.firstError === '' ? '' : ` (first: ${many.firstError})`}`);
    }
    console.log(`  floor: write+fdatasync 4 KiB p50 ${floor.p50Ms.toFixed(3)} ms p99 ${floor.p99Ms.toFixed(3)} ms; loopback ping p50 ${ping.p50Ms.toFixed(3)} ms p99 ${ping.p99Ms.toFixed(3)} ms`);
    console.log(`  JSON: ${resultsPath}`);
  } finally {
    await runCleanup(cleanup);
  }
}

runBenchmark(main);
