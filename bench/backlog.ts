// Backlog benchmark (`npm run bench:backlog`): node memory with a large retained backlog,
// and a wiped replica's streamed catch-up of it. A local 3-node cluster of child processes
// (TestCluster, --snapshot-entries BACKLOG_SNAPSHOT_ENTRIES so partitions compact past the
// backlog), one topic of BACKLOG_PARTITIONS partitions x 3 replicas, no retention limit.
//   (1) fill: BACKLOG_MESSAGES messages of BACKLOG_BYTES bytes (random keys), published by
//       BACKLOG_CLIENTS clients with BACKLOG_INFLIGHT publishes in flight each (publishes of
//       one tick go out in one frame); every node's RSS (VmRSS, /proc/PID/status) sampled
//       every second during the fill, then after it (and after a settle of 5 s).
//   (2) catch-up: the last node is killed -9, every partition gets more than a snapshot
//       interval of entries more (so its leader compacts past the node's log), and it is
//       started again: every partition's snapshot carries only its store's range, so the
//       node streams the whole backlog in (into fresh incoming stores) from the leaders'
//       segment files before it installs the snapshots. (Not a wiped data dir: a node that
//       lost its Raft log but kept its id is not Raft-safe, and quiesced groups whose
//       leader believes it caught up never send it anything.) Reported: the time until it applied every partition's commit index
//       (as its leader had it before the restart), bytes of records moved
//       (dsync_queue_catchup_total bytes_in / bytes_out), snapshots installed after
//       streaming, and the RSS of the receiver and of each sender sampled every 200 ms.
// BACKLOG_NODES=1 runs one node and replicas 1, and only the fill: what one node's memory
// does with the whole backlog retained on its disk, at a third of the CPU (the issue's
// ten-million-message run).
// Writes JSON to bench/results/backlog.json (backlog-1node.json with one node) and prints a summary.
//
// Env: BACKLOG_NODES (3; or 1), BACKLOG_MESSAGES (1000000), BACKLOG_BYTES (256), BACKLOG_PARTITIONS (6),
// BACKLOG_CLIENTS (8), BACKLOG_INFLIGHT (128), BACKLOG_SNAPSHOT_ENTRIES (1000),
// BACKLOG_PORT_BASE (0: free ports; else 9 ports from it), BACKLOG_DATA_ROOT (a temp dir
// under the OS temp dir; removed at the end), SEED.

import { mkdirSync, mkdtempSync, rmSync, statSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, DsyncError } from '../client/index.js';
import { TestCluster, type TestNode } from '../test/integration/helpers/cluster.js';
import { createCleanup, envInt, prng, rssMb, runBenchmark, runCleanup, sleep } from './common.js';

const messages = envInt('BACKLOG_MESSAGES', 1_000_000, 1, 100_000_000);
const valueBytes = envInt('BACKLOG_BYTES', 256, 1, 1 << 20);
const partitions = envInt('BACKLOG_PARTITIONS', 6, 1, 256);
const clientsCount = envInt('BACKLOG_CLIENTS', 8, 1, 256);
const inflight = envInt('BACKLOG_INFLIGHT', 128, 1, 4096);
const snapshotEntries = envInt('BACKLOG_SNAPSHOT_ENTRIES', 1000, 100, 10_000_000);
const portBase = envInt('BACKLOG_PORT_BASE', 0, 0, 65_000);
const seed = envInt('SEED', 1, 0, 2 ** 31 - 1);
const nodeCount = envInt('BACKLOG_NODES', 3, 1, 3);
if (nodeCount === 2) throw new Error('BACKLOG_NODES is 3 (fill and catch-up) or 1 (fill only)');
const topic = 'backlog';
/** A publish waiting longer than this fails (and is retried by the fill). */
const requestTimeoutMs = 30_000;
/** The catch-up must end within this. */
const catchUpTimeoutMs = 30 * 60_000;

const resultsPath = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'results', nodeCount === 1 ? 'backlog-1node.json' : 'backlog.json');

function duBytes(dir: string): number {
  let total = 0;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const s = statSync(p);
    total += s.isDirectory() ? duBytes(p) : s.size;
  }
  return total;
}

/** Samples each node's RSS every `everyMs` until stopped; keeps the maximum and the last sample. */
class RssSampler {
  readonly max = new Map<string, number>();
  readonly last = new Map<string, number>();
  private readonly timer: ReturnType<typeof setInterval>;
  constructor(private readonly nodes: readonly TestNode[], everyMs: number) {
    this.sample();
    this.timer = setInterval(() => this.sample(), everyMs);
  }
  private sample(): void {
    for (const n of this.nodes) {
      const mb = rssMb(n.proc?.running === true ? n.proc.child.pid : undefined);
      if (Number.isNaN(mb)) continue;
      this.last.set(n.spec.id, mb);
      this.max.set(n.spec.id, Math.max(this.max.get(n.spec.id) ?? 0, mb));
    }
  }
  stop(): Record<string, { maxMb: number; lastMb: number }> {
    clearInterval(this.timer);
    this.sample();
    return Object.fromEntries(this.nodes.map((n) => [n.spec.id, { maxMb: round(this.max.get(n.spec.id) ?? Number.NaN), lastMb: round(this.last.get(n.spec.id) ?? Number.NaN) }]));
  }
}

const round = (x: number): number => Math.round(x * 10) / 10;

async function metricSum(node: TestNode, pattern: RegExp): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${node.spec.httpPort}/metrics`)).text();
  let sum = 0;
  for (const m of text.matchAll(pattern)) sum += Number(m[1]);
  return sum;
}
const catchUp = (event: string): RegExp => new RegExp(`^dsync_queue_catchup_total\\{[^}]*event="${event}"[^}]*\\} (\\d+)`, 'gm');

function writeResult(result: object): void {
  mkdirSync(dirname(resultsPath), { recursive: true });
  writeFileSync(resultsPath, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`wrote ${resultsPath}`);
}

async function main(): Promise<void> {
  const cleanup = createCleanup();
  const dataRoot = mkdtempSync(join(process.env.BACKLOG_DATA_ROOT ?? tmpdir(), 'dsync-bench-backlog-'));
  cleanup.teardown(() => rmSync(dataRoot, { recursive: true, force: true }));
  try {
    const ports = portBase === 0 ? undefined : Array.from({ length: 3 * nodeCount }, (_, i) => portBase + i);
    const cluster = await TestCluster.start(cleanup, { dataRoot, nodes: nodeCount, extraArgs: ['--snapshot-entries', String(snapshotEntries)], ...(ports === undefined ? {} : { ports }) });
    const control = await Client.connect({ seeds: cluster.seeds, name: 'bench-control', requestTimeoutMs });
    cleanup.teardown(() => control.close());
    let info: Awaited<ReturnType<typeof control.topics.create>> | null = null;
    for (let attempt = 1; info === null; attempt++) {
      try {
        info = await control.topics.create(topic, { partitions, replicas: nodeCount });
      } catch (err) {
        if (attempt >= 50 || !(err instanceof DsyncError)) throw err;
        await sleep(200);
      }
    }
    const groups = info.partitionList.map((p) => p.groupId);

    // (1) fill
    const clients: Client[] = [];
    for (let i = 0; i < clientsCount; i++) clients.push(await Client.connect({ seeds: cluster.seeds, name: `bench-backlog-${i}`, requestTimeoutMs }));
    cleanup.teardown(async () => { await Promise.all(clients.map((c) => c.close())); });
    const value = new Uint8Array(valueBytes).fill(0x61);
    const next = prng(seed);
    let issued = 0;
    let acked = 0;
    let failures = 0;
    const fillRss = new RssSampler(cluster.nodes, 1000);
    const t0 = performance.now();
    let lastReport = t0;
    const worker = async (c: Client): Promise<void> => {
      const producer = c.producer(topic);
      // Bounded by `messages` (a failed publish is retried, at most 100 failures in all).
      while (issued < messages) {
        issued++;
        for (;;) {
          try {
            await producer.publish(`k${next() % 1_000_000}`, value);
            acked++;
            break;
          } catch (err) {
            if (++failures > 100) throw err;
            await sleep(100);
          }
        }
        const now = performance.now();
        if (now - lastReport > 10_000) {
          lastReport = now;
          console.log(`  fill: ${acked} of ${messages} acked, ${Math.round(acked / ((now - t0) / 1000))}/s, RSS ${[...fillRss.last].map(([id, mb]) => `${id} ${mb.toFixed(0)} MB`).join(', ')}`);
        }
      }
    };
    await Promise.all(clients.flatMap((c) => Array.from({ length: inflight }, () => worker(c))));
    const fillSeconds = (performance.now() - t0) / 1000;
    const rssDuringFill = fillRss.stop();
    const rssAfterFill = Object.fromEntries(cluster.nodes.map((n) => [n.spec.id, round(rssMb(n.proc?.child.pid))]));
    await sleep(5_000);
    const rssSettled = Object.fromEntries(cluster.nodes.map((n) => [n.spec.id, round(rssMb(n.proc?.child.pid))]));
    const diskPerNodeMb = Object.fromEntries(cluster.nodes.map((n) => [n.spec.id, round(duBytes(n.spec.dataDir) / 2 ** 20)]));
    console.log(`fill: ${acked} messages of ${valueBytes} bytes in ${fillSeconds.toFixed(1)} s (${Math.round(acked / fillSeconds)}/s), ${failures} retried; `
      + `RSS max during ${JSON.stringify(rssDuringFill)}, after ${JSON.stringify(rssAfterFill)}, settled ${JSON.stringify(rssSettled)}; disk MB ${JSON.stringify(diskPerNodeMb)}`);

    const fill = { acked, seconds: round(fillSeconds), perSec: Math.round(acked / fillSeconds), retried: failures, rssMbDuring: rssDuringFill, rssMbAfter: rssAfterFill,
      rssMbSettled: rssSettled, diskMbPerNode: diskPerNodeMb };
    const settings = { nodes: nodeCount, messages, valueBytes, partitions, clients: clientsCount, inflight, snapshotEntries, seed };
    if (nodeCount === 1) {
      writeResult({ date: new Date().toISOString(), loadavg: loadavg().map(round), command: 'BACKLOG_NODES=1 npm run bench:backlog', settings, fill });
      return;
    }

    // (2) catch-up of a replica that was down
    const victim = cluster.nodes[cluster.nodes.length - 1] as TestNode;
    const others = cluster.nodes.filter((n) => n !== victim);
    const commits = new Map<number, number>();
    for (const n of cluster.nodes) {
      const s = await control.status(n.address);
      for (const g of groups) commits.set(g, Math.max(commits.get(g) ?? 0, Number(s.groups.find((x) => x.group === g)?.commit ?? 0)));
    }
    const bytesOutBefore = (await Promise.all(others.map((n) => metricSum(n, catchUp('bytes_out'))))).reduce((a, b) => a + b, 0);
    await victim.kill9();
    // With the victim down, every partition gets more than a snapshot interval of entries (one small message each,
    // one publish in flight per partition key) so its leader compacts past the victim's log: it must take a snapshot.
    const extra = Math.ceil(partitions * snapshotEntries * 1.5);
    const producer = control.producer(topic);
    const keys = Array.from({ length: partitions }, (_, p) => p);
    let sent = 0;
    await Promise.all(keys.map(async (p) => {
      // Bounded by `extra`.
      while (sent < extra) {
        sent++;
        await producer.publish(`extra-${p}-${sent}`, 'x').catch(() => {});
      }
    }));
    commits.clear();
    for (const n of others) {
      const s = await control.status(n.address);
      for (const g of groups) commits.set(g, Math.max(commits.get(g) ?? 0, Number(s.groups.find((x) => x.group === g)?.commit ?? 0)));
    }
    console.log(`  ${victim.spec.id} down; ${extra} more publishes; commits ${JSON.stringify([...commits])}`);
    const c0 = performance.now();
    await victim.restart();
    console.log(`  ${victim.spec.id} restarted`);
    const catchUpRss = new RssSampler(cluster.nodes, 200);
    const pending = new Set(groups);
    const deadline = Date.now() + catchUpTimeoutMs;
    let lastProgress = performance.now();
    while (pending.size > 0 && Date.now() < deadline) {
      try {
        const s = await control.status(victim.address);
        for (const g of [...pending]) {
          const applied = Number(s.groups.find((x) => x.group === g)?.applied ?? 0);
          if (applied >= (commits.get(g) ?? Infinity)) pending.delete(g);
        }
        if (performance.now() - lastProgress > 10_000) {
          lastProgress = performance.now();
          console.log(`  catch-up: ${pending.size} groups pending: ${[...pending].map((g) => `${g} applied ${s.groups.find((x) => x.group === g)?.applied ?? '-'}/${commits.get(g)}`).join(', ')}; `
            + `${((await metricSum(victim, catchUp('bytes_in'))) / 2 ** 20).toFixed(1)} MiB in`);
        }
      } catch {
        // still starting
      }
      if (pending.size > 0) await sleep(200);
    }
    const catchUpSeconds = (performance.now() - c0) / 1000;
    const rssDuringCatchUp = catchUpRss.stop();
    if (pending.size > 0) throw new Error(`the wiped replica did not catch up groups ${[...pending].join(',')} within ${catchUpTimeoutMs} ms`);
    const bytesIn = await metricSum(victim, catchUp('bytes_in'));
    const chunksIn = await metricSum(victim, catchUp('chunks_in'));
    const installed = await metricSum(victim, catchUp('installed'));
    const bytesOut = (await Promise.all(others.map((n) => metricSum(n, catchUp('bytes_out'))))).reduce((a, b) => a + b, 0) - bytesOutBefore;
    const victimDiskMb = round(duBytes(victim.spec.dataDir) / 2 ** 20);
    console.log(`catch-up of ${victim.spec.id}: ${catchUpSeconds.toFixed(1)} s (restart included), ${installed} snapshots installed after streaming, `
      + `${(bytesIn / 2 ** 20).toFixed(1)} MiB in ${chunksIn} chunks (senders: ${(bytesOut / 2 ** 20).toFixed(1)} MiB out), ${(bytesIn / 2 ** 20 / catchUpSeconds).toFixed(1)} MiB/s; `
      + `its disk ${victimDiskMb} MB; RSS during ${JSON.stringify(rssDuringCatchUp)}`);

    writeResult({
      date: new Date().toISOString(), loadavg: loadavg().map(round), command: 'npm run bench:backlog', settings, fill,
      catchUp: { node: victim.spec.id, seconds: round(catchUpSeconds), snapshotsInstalledAfterStreaming: installed, bytesIn, chunksIn, bytesOut,
        mibPerSec: round(bytesIn / 2 ** 20 / catchUpSeconds), diskMb: victimDiskMb, rssMb: rssDuringCatchUp },
    });
  } finally {
    await runCleanup(cleanup);
  }
}

runBenchmark(main);
