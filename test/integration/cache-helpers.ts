// Test helper (not a test): 3-node clusters for the cache's real-process tests on ports
// 23000-23999 (this suite's own range, below the ephemeral range), each node its own
// `dsync node` process with extra flags, and a recorder that turns concurrent client
// calls into a history for test/checker/cache-linearizability.

import { createServer } from 'node:net';
import { join } from 'node:path';
import { Client } from '../../client/index.js';
import type { HistoryOp } from '../checker/cache-linearizability.js';
import { type NodeSpec, sleep, type Teardown, TestNode, tempDir } from './helpers/cluster.js';

/** CACHE_TEST_PORT_MIN / CACHE_TEST_PORT_SPAN move the range (a helper sharing the machine runs in its own). */
const rangeMin = Number(process.env.CACHE_TEST_PORT_MIN ?? 23_000);
const rangeSpan = Number(process.env.CACHE_TEST_PORT_SPAN ?? 1_000);
let cursor = (process.pid * 53) % rangeSpan;

function free(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** `count` free loopback ports from 23000-23999. */
export async function cachePorts(count: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < rangeSpan && out.length < count; i++) {
    const port = rangeMin + cursor;
    cursor = (cursor + 1) % rangeSpan;
    if (await free(port)) out.push(port);
  }
  if (out.length < count) throw new Error(`only ${out.length} of ${count} free ports in ${rangeMin}-${rangeMin + rangeSpan - 1}`);
  return out;
}

/** n1..n3 wired to each other, started, stopped at teardown (only these processes). */
export async function startCacheCluster(t: Teardown, extraArgs: readonly string[] = [], dataRoot = tempDir(t, 'dsync-cache-')): Promise<TestNode[]> {
  const count = 3;
  const ports = await cachePorts(count * 3);
  const ids = ['n1', 'n2', 'n3'];
  const specs: NodeSpec[] = ids.map((id, i) => ({
    id, port: ports[i] as number, httpPort: ports[count + i] as number, consolePort: ports[2 * count + i] as number, dataDir: join(dataRoot, id),
    peers: ids.flatMap((pid, j) => (j === i ? [] : [`${pid}@127.0.0.1:${ports[j] as number}`])),
  }));
  const nodes = specs.map((s) => new TestNode(t, s, ['--log-level', 'warn', ...extraArgs]));
  await Promise.all(nodes.map((n) => n.start()));
  await cacheRingFormed(nodes);
  return nodes;
}

/**
 * Waits (up to 30 s) until every node serves the same cache ring of all the nodes. While the
 * ring forms at start its generation changes, and a write in flight at a change has an unknown
 * fate (TIMEOUT; the client does not send it again): tests start from a formed ring.
 */
export async function cacheRingFormed(nodes: readonly TestNode[]): Promise<void> {
  const clients = await Promise.all(nodes.map((n) => Client.connect({ seeds: [n.address], requestTimeoutMs: 2_000 })));
  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const stats = await Promise.all(clients.map((c) => c.cache.stats().then((s) => s.counters, () => null)));
      const generations = new Set(stats.map((s) => s?.['ringGeneration'] ?? -1));
      if (stats.every((s) => s !== null && s['ringMembers'] === nodes.length && s['serving'] === 1) && generations.size === 1) return;
      if (Date.now() > deadline) throw new Error(`the cache ring did not form on all ${nodes.length} nodes within 30 s: ${JSON.stringify(stats)}`);
      await sleep(100);
    }
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

/** Records invoke/complete of client calls on one event counter (this process sees every call's start and end). */
export class HistoryRecorder {
  private events = 0;
  readonly ops: HistoryOp[] = [];
  errors = 0;

  async get(key: string, call: () => Promise<string | null>): Promise<void> {
    const invoke = ++this.events;
    try {
      const value = await call();
      this.ops.push({ key, kind: 'get', value, invoke, complete: ++this.events });
    } catch {
      this.errors++; // a read with no answer says nothing
    }
  }

  async set(key: string, value: string | null, call: () => Promise<void>): Promise<void> {
    const invoke = ++this.events;
    try {
      await call();
      this.ops.push({ key, kind: 'set', value, invoke, complete: ++this.events });
    } catch {
      this.errors++;
      this.ops.push({ key, kind: 'set', value, invoke, complete: Infinity }); // may or may not have happened
    }
  }
}
