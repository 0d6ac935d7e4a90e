// HTTP gateway benchmark (`npm run bench:http`): a local 3-node cluster of child
// processes; three operations, each measured through the gateway with autocannon
// (keep-alive connections, HTTP_BENCH_CONNECTIONS of them) and through the binary
// protocol with the client library (as many concurrent loops, one Client each), for
// HTTP_BENCH_SECONDS each, against group 0's leader (which also leads the bench topic's
// one partition when placement allows; else that partition's leader):
//   cache-get      GET /v1/cache/keys/K            vs client.cache.get(K)        (a hit)
//   lock           POST .../acquire then .../release, one session per connection
//                                                  vs client.lock(name) + release()
//   publish        POST /v1/topics/T/publish (100-byte value)
//                                                  vs producer.publish(key, value)
// Requests per second and per-request latency p50/p99 (the lock pair is two requests
// on both sides). Prints a table and writes JSON to bench/results/http.json.
//
// Env: HTTP_BENCH_SECONDS (5 per measurement), HTTP_BENCH_CONNECTIONS (32),
// HTTP_BENCH_OPS (cache-get,lock,publish).

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon, { type Result as AutocannonResult } from 'autocannon';
import * as hdr from 'hdr-histogram-js';
import { Client } from '../client/index.js';
import { TestCluster } from '../test/integration/helpers/cluster.js';
import { waitForLeader } from '../test/integration/raft-helpers.js';
import { createCleanup, envInt, latencySummaryMs, runBenchmark, runCleanup, sleep } from './common.js';

const measureSeconds = envInt('HTTP_BENCH_SECONDS', 5, 1, 600);
const connections = envInt('HTTP_BENCH_CONNECTIONS', 32, 1, 1024);
const opNames = (process.env.HTTP_BENCH_OPS ?? 'cache-get,lock,publish').split(',').filter((s) => s !== '');
/** Highest latency the binary side's histogram tracks, in microseconds. */
const latencyUsMax = 60_000_000;
/** One binary request slower than this is an error, not a sample. */
const requestTimeoutMs = 10_000;
const valueBytes = 100;

const resultsPath = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'results', 'http.json');

type OpName = 'cache-get' | 'lock' | 'publish';
function isOp(s: string): s is OpName {
  return s === 'cache-get' || s === 'lock' || s === 'publish';
}

interface Side {
  readonly requestsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly requests: number;
  readonly errors: number;
}

interface OpResult {
  readonly op: OpName;
  readonly http: Side;
  readonly binary: Side;
}

async function httpJson(port: number, method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method, ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }) });
  const json = await res.json() as Record<string, unknown>;
  if (res.status !== 200) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/** Runs `op` in `loops` concurrent loops for measureSeconds; per-request latency in an HDR histogram. */
async function binaryLoops(loops: number, op: (loop: number, record: (startedMs: number) => void) => Promise<void>): Promise<Side> {
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: latencyUsMax, numberOfSignificantValueDigits: 3 });
  let requests = 0;
  let errors = 0;
  const record = (startedMs: number): void => {
    histogram.recordValue(Math.max(1, Math.round((performance.now() - startedMs) * 1000)));
    requests++;
  };
  const endMs = performance.now() + measureSeconds * 1000;
  const started = performance.now();
  await Promise.all(Array.from({ length: loops }, async (_, i) => {
    while (performance.now() < endMs) {
      try {
        await op(i, record);
      } catch {
        errors++;
      }
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  const lat = latencySummaryMs(histogram);
  histogram.destroy();
  return { requestsPerSec: requests / seconds, p50Ms: lat.p50, p99Ms: lat.p99, requests, errors };
}

function httpSide(r: AutocannonResult): Side {
  // Only answered successes count as throughput; errors are reported beside them.
  return { requestsPerSec: r['2xx'] / r.duration, p50Ms: r.latency.p50, p99Ms: r.latency.p99, requests: r['2xx'] + r.non2xx, errors: r.non2xx + r.errors + r.timeouts };
}

runBenchmark(async () => {
  const ops = opNames.map((o) => {
    if (!isOp(o)) throw new Error(`HTTP_BENCH_OPS: unknown operation ${o} (cache-get, lock, publish)`);
    return o;
  });
  const cleanup = createCleanup();
  const dataRoot = mkdtempSync(join(tmpdir(), 'dsync-bench-http-'));
  cleanup.teardown(() => rmSync(dataRoot, { recursive: true, force: true }));
  try {
    const cluster = await TestCluster.start(cleanup, { dataRoot });
    const control = await Client.connect({ seeds: cluster.seeds, requestTimeoutMs: requestTimeoutMs });
    cleanup.teardown(() => control.close());
    const leader = await waitForLeader(control, cluster.seeds, cluster.nodes.map((n) => n.spec.id));
    const leaderNode = cluster.node(leader.leaderId);
    /** Group 0's leader's HTTP port now (leadership can move on a loaded machine between measurements). */
    const leaderHttpNow = async (): Promise<number> => {
      const now = await waitForLeader(control, cluster.seeds, cluster.nodes.map((nd) => nd.spec.id));
      return cluster.node(now.leaderId).spec.httpPort;
    };
    const clients = await Promise.all(Array.from({ length: connections }, () =>
      Client.connect({ seeds: [leaderNode.address, ...cluster.seeds], requestTimeoutMs })));
    cleanup.teardown(() => Promise.all(clients.map((c) => c.close())).then(() => {}));
    const value = 'v'.repeat(valueBytes);
    const results: OpResult[] = [];

    for (const op of ops) {
      const leaderHttp = await leaderHttpNow();
      let http: Side;
      let binary: Side;
      if (op === 'cache-get') {
        await httpJson(leaderHttp, 'PUT', '/v1/cache/keys/bench-key', { value });
        http = httpSide(await autocannon({ url: `http://127.0.0.1:${leaderHttp}/v1/cache/keys/bench-key`, connections, duration: measureSeconds }));
        binary = await binaryLoops(connections, async (i, record) => {
          const t0 = performance.now();
          await (clients[i] as Client).cache.get('bench-key');
          record(t0);
        });
      } else if (op === 'lock') {
        const sessions = await Promise.all(Array.from({ length: connections }, async () =>
          Number((await httpJson(leaderHttp, 'POST', '/v1/sessions', { ttlMs: 60_000 }))['session'])));
        let next = 0;
        const pick = (context: Record<string, unknown>): number => {
          if (typeof context['session'] !== 'number') context['session'] = sessions[next++ % sessions.length] as number;
          return context['session'] as number;
        };
        http = httpSide(await autocannon({
          url: `http://127.0.0.1:${leaderHttp}`, connections, duration: measureSeconds,
          requests: [
            { method: 'POST', headers: { 'content-type': 'application/json' }, setupRequest: (req, context) => {
              const s = pick(context);
              return { ...req, path: `/v1/locks/bench%2Fs${s}/acquire`, body: JSON.stringify({ session: s, waitMs: 5000 }) };
            } },
            { method: 'POST', headers: { 'content-type': 'application/json' }, setupRequest: (req, context) => {
              const s = pick(context);
              return { ...req, path: `/v1/locks/bench%2Fs${s}/release`, body: JSON.stringify({ session: s }) };
            } },
          ],
        }));
        binary = await binaryLoops(connections, async (i, record) => {
          const t0 = performance.now();
          const lock = await (clients[i] as Client).lock(`bench/b${i}`, { waitMs: 5000 });
          record(t0);
          const t1 = performance.now();
          await lock.release();
          record(t1);
        });
      } else {
        await control.topics.create('bench', { partitions: 1, replicas: 3 });
        // The publish goes to the partition's leader; wait until it has one and is known.
        let partitionHttp = 0;
        // A new partition may first elect another replica, then hand over to its preferred
        // leader (the first replica): measure against the preferred one, or the bench's node
        // stops leading mid-run and answers 503 from then on.
        for (let i = 0; i < 100 && partitionHttp === 0; i++) {
          const info = await httpJson(leaderHttp, 'GET', '/v1/topics/bench');
          const p0 = (info['partitionList'] as { leaderId: string; replicas: string[] }[])[0];
          const id = p0 !== undefined && p0.leaderId === p0.replicas[0] ? p0.leaderId : '';
          const node = cluster.nodes.find((nd) => nd.spec.id === id);
          if (node !== undefined) {
            try {
              await httpJson(node.spec.httpPort, 'POST', '/v1/topics/bench/publish', { value, partition: 0 });
              partitionHttp = node.spec.httpPort;
            } catch {
              // not led yet
            }
          }
          if (partitionHttp === 0) await sleep(100);
        }
        if (partitionHttp === 0) throw new Error('the bench topic\'s partition has no leader');
        http = httpSide(await autocannon({ url: `http://127.0.0.1:${partitionHttp}/v1/topics/bench/publish`, connections, duration: measureSeconds,
          method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: 'k', value, partition: 0 }) }));
        const producers = clients.map((c) => c.producer('bench'));
        binary = await binaryLoops(connections, async (i, record) => {
          const t0 = performance.now();
          await producers[i]!.publish('k', value);
          record(t0);
        });
      }
      results.push({ op, http, binary });
    }

    const report = {
      benchmark: 'http', nodes: 3, connections, seconds: measureSeconds, valueBytes, leader: leader.leaderId,
      machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '', node: process.version, loadAverage1m: loadavg()[0] ?? 0 },
      results,
    };
    mkdirSync(dirname(resultsPath), { recursive: true });
    writeFileSync(resultsPath, JSON.stringify(report, null, 2) + '\n');
    const f = (x: number, w = 9, d = 2): string => x.toFixed(d).padStart(w);
    console.log(`bench:http  3 nodes, ${connections} HTTP connections / binary clients, ${measureSeconds} s per measurement, ${cpus().length} CPUs, load average ${(loadavg()[0] ?? 0).toFixed(1)}`);
    console.log('  operation   side        req/s    p50 ms    p99 ms  requests  errors');
    for (const r of results) {
      for (const [side, s] of [['http', r.http], ['binary', r.binary]] as const) {
        console.log(`  ${r.op.padEnd(10)}  ${side.padEnd(6)} ${f(s.requestsPerSec, 10, 0)} ${f(s.p50Ms)} ${f(s.p99Ms)} ${String(s.requests).padStart(9)} ${String(s.errors).padStart(7)}`);
      }
    }
    console.log('  (lock: acquire and release are one request each on both sides)');
    console.log(`  JSON: ${resultsPath}`);
  } finally {
    await runCleanup(cleanup);
  }
});
