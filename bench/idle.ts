// Idle cost of many groups (`npm run bench:idle`): a local 3-node cluster of child
// processes hosting IDLE_BENCH_TOPICS topics of IDLE_BENCH_PARTITIONS partitions x 3
// replicas (each topic brings its .dlq topic of as many partitions: 2 x 2 x 125 = 500
// groups by default, plus group 0). Once every group has a leader and IDLE_BENCH_SETTLE_SECONDS
// passed with no traffic, it reads each node's CPU time (user + system, every thread, from
// /proc/<pid>/stat) over IDLE_BENCH_SECONDS and prints CPU% per node (100% = one core) with
// the load average and how many groups each node has quiesced, and writes JSON to bench/results/idle.json.
//
// Env: IDLE_BENCH_TOPICS (2), IDLE_BENCH_PARTITIONS (125), IDLE_BENCH_SECONDS (10),
// IDLE_BENCH_SETTLE_SECONDS (5), IDLE_BENCH_PORT_BASE (0: free ports; else 9 ports from it).

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuPercentOver, leadersByNode, loadAverage, quiescedByNode, startManyGroupCluster } from '../test/integration/helpers/many-groups.js';
import { createCleanup, envInt, rssMb, runBenchmark, runCleanup, sleep } from './common.js';

const topicsCount = envInt('IDLE_BENCH_TOPICS', 2, 1, 64);
const partitions = envInt('IDLE_BENCH_PARTITIONS', 125, 1, 256);
const measureSeconds = envInt('IDLE_BENCH_SECONDS', 10, 1, 600);
const settleSeconds = envInt('IDLE_BENCH_SETTLE_SECONDS', 5, 0, 600);
const portBase = envInt('IDLE_BENCH_PORT_BASE', 0, 0, 65_000);

const resultsPath = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'results', 'idle.json');

async function main(): Promise<void> {
  const cleanup = createCleanup();
  const dataRoot = mkdtempSync(join(tmpdir(), 'dsync-bench-idle-'));
  cleanup.teardown(() => rmSync(dataRoot, { recursive: true, force: true }));
  try {
    const ports = portBase === 0 ? undefined : Array.from({ length: 9 }, (_, i) => portBase + i);
    const started = performance.now();
    const { cluster, control, groups } = await startManyGroupCluster(cleanup, { topics: topicsCount, partitions, dataRoot,
      ...(ports === undefined ? {} : { ports }) });
    const readySeconds = (performance.now() - started) / 1000;
    await sleep(settleSeconds * 1000);
    const pids = cluster.nodes.map((n) => {
      const pid = n.proc?.child.pid;
      if (pid === undefined) throw new Error(`node ${n.spec.id} has no pid`);
      return pid;
    });
    const loadBefore = loadAverage();
    const cpuPercent = await cpuPercentOver(pids, measureSeconds);
    const loadAfter = loadAverage();
    const views = await leadersByNode(control, cluster);
    const quiesced = await quiescedByNode(control, cluster);
    const led = cluster.nodes.map((n) => {
      let count = 0;
      for (const [, leader] of views.get(n.spec.id) ?? new Map<number, string>()) if (leader === n.spec.id) count++;
      return count;
    });
    const perNode = cluster.nodes.map((n, i) => ({ node: n.spec.id, cpuPercent: Number((cpuPercent[i] as number).toFixed(2)),
      groupsHosted: views.get(n.spec.id)?.size ?? 0, groupsLed: led[i], groupsQuiesced: quiesced.get(n.spec.id) ?? 0,
      rssMb: Number(rssMb(pids[i]).toFixed(1)) }));
    const report = {
      bench: 'idle',
      at: new Date().toISOString(),
      machine: { cpus: cpus().length, model: cpus()[0]?.model ?? '' },
      config: { topics: topicsCount, partitions, groups: groups.length + 1, measureSeconds, settleSeconds },
      readySeconds: Number(readySeconds.toFixed(1)),
      loadAverage: { before: loadBefore, after: loadAfter },
      nodes: perNode,
      cpuPercentMax: Math.max(...perNode.map((n) => n.cpuPercent)),
    };
    mkdirSync(dirname(resultsPath), { recursive: true });
    writeFileSync(resultsPath, JSON.stringify(report, null, 2) + '\n');
    console.log(`bench:idle  3 nodes, ${groups.length + 1} groups (${topicsCount} topics x ${partitions} partitions, with .dlq, + group 0), `
      + `all leaders after ${readySeconds.toFixed(1)} s, idle ${settleSeconds} s, measured ${measureSeconds} s`);
    for (const n of perNode) console.log(`  ${n.node}: CPU ${n.cpuPercent.toFixed(2)}% of a core, hosts ${n.groupsHosted} groups (${n.groupsQuiesced} quiesced), leads ${n.groupsLed}, RSS ${n.rssMb} MB`);
    console.log(`  load average before ${loadBefore.join(' ')}, after ${loadAfter.join(' ')}`);
    console.log(`  JSON: ${resultsPath}`);
  } finally {
    await runCleanup(cleanup);
  }
}

runBenchmark(main);
