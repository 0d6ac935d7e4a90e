// Test helper (not a test): 3-node clusters for the cache's real-process tests on ports
// 23000-23999 (this suite's own range, below the ephemeral range), each node its own
// `dsync node` process with extra flags, and a recorder that turns concurrent client
// calls into a history for test/checker/cache-linearizability.

import { createServer } from 'node:net';
import { join } from 'node:path';
import type { HistoryOp } from '../checker/cache-linearizability.js';
import { type NodeSpec, type Teardown, TestNode, tempDir } from './helpers/cluster.js';

const rangeMin = 23_000;
const rangeSpan = 1_000;
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
  return nodes;
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
