// The cluster a fault run drives: N `dsync node` processes on loopback whose peer
// links each go through a FaultProxy (one per direction per pair), with the moves
// the nemesis needs (kill -9 and restart, SIGSTOP/SIGCONT, per-link faults) and a
// leader lookup. Ports come from 29600-32699: below the ephemeral range, apart from
// every other test's (the runner shares the machine with them in CI). Every
// process and proxy started here is stopped by close(), also after a failure; the
// helpers' exit hook kills the process groups if the runner itself dies.

import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '../../client/index.js';
import { Xoshiro128 } from '../../core/prng.js';
import { type ManagedProcess, nodeArgs, type NodeSpec, spawnDsync, type Teardown, waitUntilServing } from '../integration/helpers/cluster.js';
import { FaultProxy, type ProxyFault } from './proxy.js';

/** Collects cleanups (the spawn helpers register theirs here) and runs them once, last first. */
export class Teardowns implements Teardown {
  private readonly fns: (() => void | Promise<void>)[] = [];

  teardown(fn: () => void | Promise<void>): void {
    this.fns.push(fn);
  }

  async run(): Promise<void> {
    while (this.fns.length > 0) {
      const fn = this.fns.pop();
      try {
        await fn?.();
      } catch {
        // keep tearing down the rest
      }
    }
  }
}

const portLow = 29_600;
const portHigh = 32_700;

function portFree(port: number): Promise<boolean> {
  return new Promise((r) => {
    const s = createServer();
    s.once('error', () => r(false));
    s.listen(port, '127.0.0.1', () => s.close(() => r(true)));
  });
}

/** `count` ports in portLow..portHigh free right now, from a pid-dependent start so parallel runs rarely collide. */
export async function lowPorts(count: number): Promise<number[]> {
  const found: number[] = [];
  let p = portLow + ((process.pid * 131) % (portHigh - portLow));
  for (let tried = 0; found.length < count && tried < portHigh - portLow; tried++) {
    p = p + 1 >= portHigh ? portLow : p + 1;
    if (await portFree(p)) found.push(p);
  }
  if (found.length < count) throw new Error(`only ${found.length} of ${count} free ports in ${portLow}-${portHigh}`);
  return found;
}

/** How long a node may take to answer after (re)start. */
const startTimeoutMs = 20_000;

export class ChaosNode {
  proc: ManagedProcess | null = null;
  paused = false;

  constructor(private readonly t: Teardown, readonly spec: NodeSpec, private readonly env: Record<string, string>,
    private readonly extraArgs: readonly string[] = []) {}

  get id(): string {
    return this.spec.id;
  }

  get address(): string {
    return `127.0.0.1:${this.spec.port}`;
  }

  get running(): boolean {
    return this.proc !== null && this.proc.running;
  }

  /**
   * Spawns the node and waits until it serves. With a failpoint (`DSYNC_FAILPOINT_WAL`)
   * it only spawns: the node may die by design before it serves.
   */
  async start(failpoint?: string): Promise<void> {
    if (this.running) throw new Error(`node ${this.id} is already running`);
    this.paused = false;
    this.proc = spawnDsync(this.t, nodeArgs(this.spec, this.extraArgs), { env: failpoint === undefined ? this.env : { ...this.env, DSYNC_FAILPOINT_WAL: failpoint } });
    if (failpoint !== undefined) return;
    await this.proc.waitForStdout(/listening on/, startTimeoutMs);
    await waitUntilServing(this.address, startTimeoutMs);
  }

  /** Resolves once the process has exited or `ms` passed, whichever is first. */
  async exitedWithin(ms: number): Promise<void> {
    const proc = this.proc;
    if (proc === null || !proc.running) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([proc.exited, new Promise<void>((r) => { timer = setTimeout(r, ms); })]);
    clearTimeout(timer);
  }

  async kill9(): Promise<void> {
    this.paused = false;
    await this.proc?.kill9();
  }

  pause(): void {
    this.proc?.pause();
    this.paused = true;
  }

  resume(): void {
    this.proc?.resume();
    this.paused = false;
  }

  async stop(): Promise<void> {
    this.paused = false;
    await this.proc?.stop();
  }
}

export interface ChaosClusterOptions {
  readonly nodes: number;
  readonly seed: number;
  /** Extra environment for every node (e.g. NODE_OPTIONS with a canary preload). */
  readonly env?: Record<string, string>;
}

export class ChaosCluster {
  private admin: Client | null = null;
  private joined = 0;

  private constructor(readonly nodes: readonly ChaosNode[], readonly proxies: ReadonlyMap<string, FaultProxy>, private readonly t: Teardowns,
    private readonly dataRoot: string, private readonly env: Record<string, string>) {}

  static async start(t: Teardowns, opts: ChaosClusterOptions): Promise<ChaosCluster> {
    const n = opts.nodes;
    const dataRoot = mkdtempSync(join(tmpdir(), 'dsync-chaos-'));
    t.teardown(() => rmSync(dataRoot, { recursive: true, force: true }));
    const ports = await lowPorts(n * 3 + n * (n - 1));
    const at = (i: number): number => {
      const p = ports[i];
      if (p === undefined) throw new Error('port index out of range');
      return p;
    };
    const ids = Array.from({ length: n }, (_, i) => `n${i + 1}`);
    const proxies = new Map<string, FaultProxy>();
    let next = n * 3;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        if (i === j) continue;
        const key = linkKey(ids[i] ?? '', ids[j] ?? '');
        const proxy = await FaultProxy.start(at(next++), at(j), key, new Xoshiro128(opts.seed * 131 + i * 17 + j));
        t.teardown(() => proxy.close());
        proxies.set(key, proxy);
      }
    }
    const specs: NodeSpec[] = ids.map((id, i) => ({
      id, port: at(i), httpPort: at(n + i), consolePort: at(2 * n + i), dataDir: join(dataRoot, id),
      peers: ids.flatMap((pid, j) => (j === i ? [] : [`${pid}@127.0.0.1:${proxies.get(linkKey(id, pid))?.port ?? 0}`])),
    }));
    const env = { LOG_LEVEL: 'warn', ...(opts.env ?? {}) };
    const nodes = specs.map((s) => new ChaosNode(t, s, env));
    const cluster = new ChaosCluster(nodes, proxies, t, dataRoot, env);
    t.teardown(() => cluster.stopAll());
    await Promise.all(nodes.map((node) => node.start()));
    return cluster;
  }

  get ids(): string[] {
    return this.nodes.map((n) => n.id);
  }

  get seeds(): string[] {
    return this.nodes.map((n) => n.address);
  }

  node(id: string): ChaosNode {
    const n = this.nodes.find((x) => x.id === id);
    if (n === undefined) throw new Error(`no node ${id}`);
    return n;
  }

  /** The proxy carrying `from`'s messages to `to`. */
  link(from: string, to: string): FaultProxy {
    const p = this.proxies.get(linkKey(from, to));
    if (p === undefined) throw new Error(`no link ${from}>${to}`);
    return p;
  }

  setLink(from: string, to: string, fault: ProxyFault): void {
    this.link(from, to).set(fault);
  }

  healLinks(): void {
    for (const p of this.proxies.values()) p.heal();
  }

  /**
   * The group 0 leader with the highest term among running, unpaused nodes that
   * answer within `timeoutMs`; null when none claims it.
   */
  async leader(timeoutMs = 1_000): Promise<string | null> {
    const admin = await this.adminClient(timeoutMs);
    const views = await Promise.all(this.nodes.filter((n) => n.running && !n.paused).map(async (n) => {
      try {
        const s = await withTimeout(admin.status(n.address), timeoutMs);
        const g = s.groups.find((x) => x.group === 0);
        return g !== undefined && g.role === 'leader' ? { id: n.id, term: g.term } : null;
      } catch {
        return null;
      }
    }));
    let best: { id: string; term: number } | null = null;
    for (const v of views) if (v !== null && (best === null || v.term > best.term)) best = v;
    return best?.id ?? null;
  }

  /**
   * Starts a new node (ids j1, j2, ...) with `--join` through a running member and waits
   * until group 0 has made it a voter. Its peer links are direct, not through proxies
   * (a joining node learns its peers' advertised addresses from the cluster), so link
   * faults never involve it; clients are not attached to it, but it serves as a replica,
   * a cache home and a possible leader.
   */
  async join(via: string, timeoutMs = 20_000): Promise<ChaosNode> {
    const id = `j${++this.joined}`;
    const [port, httpPort, consolePort] = await lowPorts(3);
    const spec: NodeSpec = { id, port: port as number, httpPort: httpPort as number, consolePort: consolePort as number, dataDir: join(this.dataRoot, id), peers: [] };
    const node = new ChaosNode(this.t, spec, this.env, ['--join', via]);
    await node.start();
    const deadline = performance.now() + timeoutMs;
    while (!(await this.isVoter(id))) {
      if (performance.now() > deadline) throw new Error(`${id} joined through ${via} but was not a voter within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 200));
    }
    return node;
  }

  /** Removes `node` from group 0 (retrying while the cluster refuses or has no leader), then stops it. */
  async leave(node: ChaosNode, timeoutMs = 20_000): Promise<void> {
    const admin = await this.adminClient(1_000);
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      try {
        await admin.cluster.remove(node.id);
        break;
      } catch (err) {
        if (performance.now() > deadline) throw new Error(`could not remove ${node.id}: ${err instanceof Error ? err.message : String(err)}`);
        await new Promise((r) => setTimeout(r, 300));
      }
    }
    await node.stop();
  }

  private async isVoter(id: string): Promise<boolean> {
    try {
      const members = await (await this.adminClient(1_000)).cluster.members();
      return members.some((m) => m.id === id && m.voter);
    } catch {
      return false;
    }
  }

  private async adminClient(timeoutMs: number): Promise<Client> {
    this.admin ??= await Client.connect({ seeds: this.seeds, requestTimeoutMs: timeoutMs, connectTimeoutMs: timeoutMs, name: 'chaos-admin' });
    return this.admin;
  }

  /** Undo every fault: links healed, paused nodes thawed, dead nodes restarted. */
  async healAll(): Promise<void> {
    this.healLinks();
    for (const n of this.nodes) if (n.paused) n.resume();
    await Promise.all(this.nodes.filter((n) => !n.running).map((n) => n.start()));
  }

  async stopAll(): Promise<void> {
    const admin = this.admin;
    this.admin = null;
    if (admin !== null) await admin.close().catch(() => { /* closing anyway */ });
    await Promise.all(this.nodes.map((n) => n.stop()));
  }

  /** Stops everything this cluster started (nodes, proxies, data dir). */
  close(): Promise<void> {
    return this.t.run();
  }
}

export function linkKey(from: string, to: string): string {
  return `${from}>${to}`;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    p.then((v) => { clearTimeout(timer); resolve(v); }, (err: unknown) => { clearTimeout(timer); reject(err instanceof Error ? err : new Error(String(err))); });
  });
}
