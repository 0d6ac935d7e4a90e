// Queue benchmark (`npm run bench:queue`): a local 3-node cluster of child processes
// (TestCluster), one topic of QUEUE_BENCH_PARTITIONS partitions with 3 replicas each, so
// every publish is acknowledged only once its entry is fsynced on a majority of the
// partition's replicas and applied on its leader. Two phases:
//   (a) publish: QUEUE_BENCH_PRODUCERS `Client` instances (64), each one producer with
//       one publish in flight (a synchronous publish, as the peers' pub.sync.c64 and
//       xadd.c64), 256-byte values under random keys; publishes/s and the publish
//       latency (call to answer) in an HDR histogram: p50/p99/p999.
//   (b) consume+ack: for each count in QUEUE_BENCH_CONSUMERS (4,16), that many
//       consumers of a fresh group drain what (a) published, acking every message;
//       messages acked per second (from the first delivery to the last ack).
// RSS of every node process at the end (/proc/PID/status). Per phase, from the nodes'
// /metrics: messages per Raft entry of the topic's partitions (what the leaders applied
// over the entries they proposed), WAL fsyncs per second per node and WAL records per
// fsync (the group commit across every group's Ready), and per partition entry the Raft
// messages and peer frames the nodes sent and the Readys they took (work that does not depend
// on the machine's load, unlike CPU ms per message). Prints a table and writes JSON to
// bench/results/queue.json.
//
// Partitions: one by default, because the peers' cells it is compared with (compare.sh queue:
// Redis XADD on one stream, NATS JetStream R3 publish to one stream) are one replicated,
// totally ordered log that all 64 producers append to, and dsync's equivalent is a topic of
// one partition (one Raft group). More partitions split the same 64 publishes over more
// logs: with one entry in flight per partition, an entry carries about
// producers / partitions / 2 publishes (the answered half of the producers comes back while
// the other half's entry is in flight), and the work per entry (a Ready, a WAL record and
// fdatasync on every replica, an append and its answer per follower) is most of a publish's
// CPU, so on a machine whose cores are the ceiling more partitions cost more CPU per message
// (2 cores: about 2x at 6 partitions against 1). QUEUE_BENCH_PARTITIONS=6 is the spread
// case (every node leads two partitions).
//
// Env: QUEUE_BENCH_SECONDS (10, the publish phase), QUEUE_BENCH_WARMUP_SECONDS (1),
// QUEUE_BENCH_PRODUCERS (64), QUEUE_BENCH_PARTITIONS (1), QUEUE_BENCH_CONSUMERS (4,16),
// QUEUE_BENCH_BYTES (256), QUEUE_BENCH_PORT_BASE (0: free ports; else 9 ports from it), SEED,
// QUEUE_BENCH_NODE_FLAGS (flags for the nodes' node processes, space-separated: profile them
// with `--cpu-prof --cpu-prof-dir=DIR`; the profiles are written when the nodes stop).

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, DsyncError, type Producer } from '../client/index.js';
import { TestCluster } from '../test/integration/helpers/cluster.js';
import { closedLoop, createCleanup, envInt, forEachMetricSample, type LatencySummaryMs, processCpuSeconds, prng, rssMb, runBenchmark, runCleanup, sleep } from './common.js';

const measureSeconds = envInt('QUEUE_BENCH_SECONDS', 10, 1, 3600);
const warmupSeconds = envInt('QUEUE_BENCH_WARMUP_SECONDS', 1, 0, 600);
const producersCount = envInt('QUEUE_BENCH_PRODUCERS', 64, 1, 1024);
const partitions = envInt('QUEUE_BENCH_PARTITIONS', 1, 1, 256);
const valueBytes = envInt('QUEUE_BENCH_BYTES', 256, 1, 1 << 20);
const portBase = envInt('QUEUE_BENCH_PORT_BASE', 0, 0, 65_000);
const seed = envInt('SEED', 1, 0, 2 ** 31 - 1);
const nodeFlags = (process.env.QUEUE_BENCH_NODE_FLAGS ?? '').split(' ').filter((s) => s !== '');
const consumerCounts = (process.env.QUEUE_BENCH_CONSUMERS ?? '4,16').split(',').filter((s) => s !== '').map((s) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1 || n > 256) throw new Error(`QUEUE_BENCH_CONSUMERS: ${s} is not a consumer count in 1..256`);
  return n;
});
/** A publish waiting longer than this is an error, not a latency sample. */
const requestTimeoutMs = 15_000;
/** Highest latency the histogram tracks, in microseconds. */
const latencyUsMax = 60_000_000;
/** A drain that sees no message for this long is over (everything published was acked, or it is stuck). */
const drainIdleMs = 3_000;
const topic = 'bench';

const resultsPath = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'results', 'queue.json');

interface PublishResult {
  readonly producers: number;
  readonly publishesPerSec: number;
  readonly measured: number;
  readonly seconds: number;
  readonly publishLatencyMs: LatencySummaryMs;
  readonly errors: number;
  readonly firstError: string;
}

interface ConsumeResult {
  readonly consumers: number;
  readonly group: string;
  readonly ackedPerSec: number;
  readonly acked: number;
  readonly redelivered: number;
  readonly seconds: number;
  readonly errors: number;
  readonly firstError: string;
}

async function publishPhase(clients: readonly Client[]): Promise<PublishResult & { total: number }> {
  const next = prng(seed);
  const value = new Uint8Array(valueBytes).map((_, i) => 97 + (i % 26));
  const producers = new Map(clients.map((c) => [c, c.producer(topic)]));
  let total = 0;
  const r = await closedLoop({ clients, warmupSeconds, measureSeconds, latencyUsMax, op: async (client) => {
    await (producers.get(client) as Producer).publish(`k${next() % 100_000}`, value);
    total++;
  } });
  return { producers: clients.length, publishesPerSec: r.measured / r.seconds, measured: r.measured, seconds: r.seconds, publishLatencyMs: r.latencyMs,
    errors: r.errors, firstError: r.firstError, total };
}

/** `count` consumers of a new group drain the topic, acking everything; done when `expected` were acked or nothing came for drainIdleMs. */
async function consumePhase(clients: readonly Client[], count: number, expected: number): Promise<ConsumeResult> {
  const group = `bench-k${count}`;
  const seen = new Set<string>();
  let acked = 0;
  let redelivered = 0;
  let errors = 0;
  let firstError = '';
  let firstMs = 0;
  let lastMs = 0;
  let lastMessageMs = performance.now();
  let done = false;
  const consumers = clients.slice(0, count).map((c) => c.consumer(topic, group, { waitMs: 500 }));
  const loop = async (i: number): Promise<void> => {
    const consumer = consumers[i];
    if (consumer === undefined) return;
    const pending = new Set<Promise<void>>();
    for await (const msg of consumer) {
      lastMessageMs = performance.now();
      if (firstMs === 0) firstMs = lastMessageMs;
      const id = `${msg.partition}/${msg.offset}`;
      if (seen.has(id)) redelivered++;
      seen.add(id);
      // Acks are not awaited one by one: the client sends those of one turn together.
      const p = msg.ack().then(() => {
        acked++;
        lastMs = performance.now();
      }, (err: unknown) => {
        errors++;
        if (firstError === '') firstError = err instanceof DsyncError ? `${err.code}: ${err.message}` : String(err);
      }).finally(() => pending.delete(p));
      pending.add(p);
      if (done) break;
    }
    await Promise.all(pending);
  };
  const running = Promise.all(consumers.map((_, i) => loop(i)));
  while (!done) {
    await sleep(100);
    if (seen.size >= expected || performance.now() - lastMessageMs > drainIdleMs) done = true;
  }
  await Promise.all(consumers.map((c) => c.close()));
  await running;
  const seconds = Math.max(1e-3, (lastMs - firstMs) / 1000);
  return { consumers: count, group, ackedPerSec: acked / seconds, acked, redelivered, seconds, errors, firstError };
}

/** The counters the phase breakdown is computed from, summed over the nodes. */
interface Counters {
  readonly fsyncs: number;
  readonly fsyncSeconds: number;
  readonly walRecords: number;
  /** Entries proposed by the leaders of groups other than group 0 (the partitions). */
  readonly partitionEntries: number;
  readonly published: number;
  readonly delivered: number;
  readonly acked: number;
  readonly raftMessagesSent: number;
  readonly peerFramesSent: number;
  readonly readys: number;
  /** Raft messages sent, by type (dsync_raft_messages_by_type_total), summed over the nodes. */
  readonly sentByType: Readonly<Record<string, number>>;
}

async function scrape(cluster: TestCluster): Promise<Counters> {
  let fsyncs = 0;
  let fsyncSeconds = 0;
  let walRecords = 0;
  let partitionEntries = 0;
  let published = 0;
  let delivered = 0;
  let acked = 0;
  let raftMessagesSent = 0;
  let peerFramesSent = 0;
  let readys = 0;
  const sentByType: Record<string, number> = {};
  await forEachMetricSample(cluster.nodes.map((n) => n.spec.httpPort), (name, labels, v) => {
    if (name === 'dsync_wal_fsyncs_total') fsyncs += v;
    else if (name === 'dsync_wal_records_total') walRecords += v;
    else if (name === 'dsync_wal_fsync_seconds_total') fsyncSeconds += v;
    else if (name === 'dsync_raft_proposals_total' && !labels.includes('group="0"')) partitionEntries += v;
    else if (name === 'dsync_raft_messages_total' && labels.includes('direction="sent"')) raftMessagesSent += v;
    else if (name === 'dsync_raft_peer_frames_total' && labels.includes('direction="sent"')) peerFramesSent += v;
    else if (name === 'dsync_raft_readys_total') readys += v;
    else if (name === 'dsync_raft_messages_by_type_total') {
      const type = /type="(\w+)"/.exec(labels)?.[1] ?? '?';
      sentByType[type] = (sentByType[type] ?? 0) + v;
    }
    else if (name === 'dsync_queue_messages_total' && labels.includes(`topic="${topic}"`)) {
      if (labels.includes('event="published"')) published += v;
      else if (labels.includes('event="delivered"')) delivered += v;
      else if (labels.includes('event="acked"')) acked += v;
    }
  });
  return { fsyncs, fsyncSeconds, walRecords, partitionEntries, published, delivered, acked, raftMessagesSent, peerFramesSent, readys, sentByType };
}

interface PhaseBreakdown {
  readonly seconds: number;
  /** Queue commands' messages (published + delivered + acked) per partition entry. */
  readonly messagesPerEntry: number;
  readonly entriesPerSec: number;
  /** fsyncs per second, per node. */
  readonly fsyncsPerSecPerNode: number;
  readonly walRecordsPerFsync: number;
  readonly fsyncMeanMs: number;
  /** Work per partition entry, summed over the nodes (all groups, heartbeats included): Raft messages sent, peer frames sent, Readys taken. */
  readonly raftMessagesPerEntry: number;
  readonly peerFramesPerEntry: number;
  readonly readysPerEntry: number;
  /** Raft messages sent per partition entry, by type (types never sent left out; the printed line also leaves out those under 0.005). */
  readonly raftMessagesPerEntryByType: Readonly<Record<string, number>>;
  /** CPU time (user + system, all threads) the nodes and this process spent, per message of the phase. */
  readonly nodesCpuMsPerMessage: number;
  readonly clientCpuMsPerMessage: number;
}

function breakdown(before: Counters, after: Counters, seconds: number, nodes: number, cpu: { nodes: number; client: number }, phaseMessages: number): PhaseBreakdown {
  const entries = after.partitionEntries - before.partitionEntries;
  const fsyncs = after.fsyncs - before.fsyncs;
  const messages = (after.published - before.published) + (after.delivered - before.delivered) + (after.acked - before.acked);
  return { seconds, messagesPerEntry: entries === 0 ? 0 : messages / entries, entriesPerSec: entries / seconds,
    fsyncsPerSecPerNode: fsyncs / seconds / nodes, walRecordsPerFsync: fsyncs === 0 ? 0 : (after.walRecords - before.walRecords) / fsyncs,
    fsyncMeanMs: fsyncs === 0 ? 0 : (after.fsyncSeconds - before.fsyncSeconds) * 1000 / fsyncs,
    raftMessagesPerEntry: entries === 0 ? 0 : (after.raftMessagesSent - before.raftMessagesSent) / entries,
    peerFramesPerEntry: entries === 0 ? 0 : (after.peerFramesSent - before.peerFramesSent) / entries,
    readysPerEntry: entries === 0 ? 0 : (after.readys - before.readys) / entries,
    raftMessagesPerEntryByType: Object.fromEntries(Object.entries(after.sentByType)
      .map(([type, n]) => [type, entries === 0 ? 0 : (n - (before.sentByType[type] ?? 0)) / entries] as const).filter(([, v]) => v > 0)),
    nodesCpuMsPerMessage: phaseMessages === 0 ? 0 : cpu.nodes * 1000 / phaseMessages, clientCpuMsPerMessage: phaseMessages === 0 ? 0 : cpu.client * 1000 / phaseMessages };
}

async function main(): Promise<void> {
  const cleanup = createCleanup();
  const dataRoot = mkdtempSync(join(tmpdir(), 'dsync-bench-queue-'));
  cleanup.teardown(() => rmSync(dataRoot, { recursive: true, force: true }));
  try {
    const ports = portBase === 0 ? undefined : Array.from({ length: 9 }, (_, i) => portBase + i);
    const cluster = await TestCluster.start(cleanup, { dataRoot, nodeFlags, ...(ports === undefined ? {} : { ports }) });
    const control = await Client.connect({ seeds: cluster.seeds, name: 'bench-control' });
    cleanup.teardown(() => control.close());
    for (let attempt = 1; ; attempt++) {
      try {
        await control.topics.create(topic, { partitions, replicas: 3 });
        break;
      } catch (err) {
        if (attempt >= 50 || !(err instanceof DsyncError)) throw err;
        await sleep(200);
      }
    }
    const clients: Client[] = [];
    for (let i = 0; i < Math.max(producersCount, ...consumerCounts); i++) {
      clients.push(await Client.connect({ seeds: cluster.seeds, name: `bench-queue-${i}`, requestTimeoutMs }));
    }
    cleanup.teardown(async () => {
      await Promise.all(clients.map((c) => c.close()));
    });

    const breakdowns: { phase: string; figures: PhaseBreakdown }[] = [];
    const cpuNow = (): { nodes: number; client: number } => ({
      nodes: cluster.nodes.reduce((sum, n) => sum + processCpuSeconds(n.proc?.child.pid), 0), client: process.cpuUsage().user / 1e6 + process.cpuUsage().system / 1e6 });
    const measured = async <T>(phase: string, run: () => Promise<T>, messages: (r: T) => number): Promise<T> => {
      const before = await scrape(cluster);
      const cpu0 = cpuNow();
      const t0 = performance.now();
      const result = await run();
      const seconds = (performance.now() - t0) / 1000;
      const cpu1 = cpuNow();
      breakdowns.push({ phase, figures: breakdown(before, await scrape(cluster), seconds, cluster.nodes.length,
        { nodes: cpu1.nodes - cpu0.nodes, client: cpu1.client - cpu0.client }, messages(result)) });
      return result;
    };
    const publish = await measured(`publish c${producersCount}`, () => publishPhase(clients.slice(0, producersCount)), (r) => r.total);
    const consume: ConsumeResult[] = [];
    for (const k of consumerCounts) consume.push(await measured(`consume+ack k${k}`, () => consumePhase(clients, k, publish.total), (r) => r.acked));
    const info = await control.topics.info(topic);
    const rss = cluster.nodes.map((n) => ({ node: n.spec.id, rssMb: rssMb(n.proc?.child.pid) }));

    const { total: published, ...publishFigures } = publish;
    const report = {
      benchmark: 'queue',
      machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '', node: process.version },
      config: { seconds: measureSeconds, warmupSeconds, producers: producersCount, partitions, replicas: 3, valueBytes, consumers: consumerCounts, seed },
      leaders: info.partitionList.map((p) => p.leaderId),
      publish: { ...publishFigures, published },
      consume,
      rss,
      breakdowns,
    };
    mkdirSync(dirname(resultsPath), { recursive: true });
    writeFileSync(resultsPath, JSON.stringify(report, null, 2) + '\n');

    const f = (n: number, w = 9, d = 2): string => n.toFixed(d).padStart(w);
    console.log(`bench:queue  3 nodes, topic of ${partitions} partitions x 3 replicas, ${valueBytes}-byte messages, ${measureSeconds} s publishing (+${warmupSeconds} s warm-up), seed ${seed}`);
    console.log('  phase                 msgs/s    p50 ms    p99 ms   p999 ms    max ms  errors');
    const l = publish.publishLatencyMs;
    console.log(`  publish c${String(producersCount).padEnd(4)} ${f(publish.publishesPerSec, 14, 0)} ${f(l.p50)} ${f(l.p99)} ${f(l.p999)} ${f(l.max)} ${String(publish.errors).padStart(7)}${publish.firstError === '' ? '' : `  first error: ${publish.firstError}`}`);
    for (const c of consume) {
      console.log(`  consume+ack k${String(c.consumers).padEnd(3)} ${f(c.ackedPerSec, 10, 0)}  (${c.acked} acked in ${c.seconds.toFixed(1)} s, ${c.redelivered} redelivered, ${c.errors} errors${c.firstError === '' ? '' : `: ${c.firstError}`})`);
    }
    console.log('  phase (whole, incl. warm-up/drain)  msgs/entry  entries/s  fsyncs/s/node  WAL records/fsync  fsync mean ms  CPU ms/msg nodes  client');
    for (const b of breakdowns) {
      const x = b.figures;
      console.log(`  ${b.phase.padEnd(34)} ${f(x.messagesPerEntry, 10, 1)} ${f(x.entriesPerSec, 10, 0)} ${f(x.fsyncsPerSecPerNode, 14, 0)} ${f(x.walRecordsPerFsync, 18, 1)} ${f(x.fsyncMeanMs, 13, 2)} ${f(x.nodesCpuMsPerMessage, 17, 3)} ${f(x.clientCpuMsPerMessage, 7, 3)}`
        + `  per entry: raft msgs ${f(x.raftMessagesPerEntry, 5, 1)} frames ${f(x.peerFramesPerEntry, 5, 1)} readys ${f(x.readysPerEntry, 5, 1)}`);
      console.log(`    raft msgs per entry by type: ${Object.entries(x.raftMessagesPerEntryByType).filter(([, v]) => v >= 0.005).map(([type, v]) => `${type} ${v.toFixed(2)}`).join(', ')}`);
    }
    console.log(`  published ${publish.total} in all; leaders ${report.leaders.join(',')}; RSS at the end: ${rss.map((r) => `${r.node} ${r.rssMb.toFixed(0)} MB`).join(', ')}`);
    console.log(`  JSON: ${resultsPath}`);
  } finally {
    await runCleanup(cleanup);
  }
}

runBenchmark(main);
