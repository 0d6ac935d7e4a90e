// Real dsync processes on loopback for integration tests: free ports, temp data
// dirs, spawning `dsync node` / `dsync cluster` / one-shot CLI commands, waiting
// until a node answers, and stopping only the processes started here (SIGTERM,
// then SIGKILL after a grace period). A TestCluster can kill -9 one node and
// restart it on the same ports and data dir, for Raft/lock crash tests.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '../../../client/index.js';

/** The checkout root (this file runs from dist/test/integration/helpers/). */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
/** The `dsync` executable as the README runs it. */
export const dsyncBin = join(repoRoot, 'bin', 'dsync.js');

/** How long a stopped process gets between SIGTERM and SIGKILL. */
export const stopGraceMsDefault = 3_000;
/** How long to wait for a node to answer a ping after it was spawned. */
export const startTimeoutMsDefault = 15_000;
/** Bytes of a child's stdout/stderr kept for assertions and failure reports. */
const outputBytesMax = 1024 * 1024;
/** Attempts to find a free block of ports before giving up. */
const portSearchAttemptsMax = 200;

/** The slice of tap's Test that the helpers need (keeps them usable from any runner). */
export interface Teardown {
  teardown(fn: () => void | Promise<void>): void;
}

// ---- processes ----

/** Every process started here, so a crashed test run still kills its children on exit. */
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) killGroup(child, 'SIGKILL');
});

/** Signals the child's process group (it is spawned detached, so the group is ours alone). */
function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

export interface ExitStatus {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** A child process started by these helpers, with its output captured. */
export class ManagedProcess {
  stdout = '';
  stderr = '';
  readonly exited: Promise<ExitStatus>;
  private exitStatus: ExitStatus | null = null;
  private readonly stdoutWaiters: { pattern: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];

  constructor(readonly child: ChildProcess, readonly label: string) {
    live.add(child);
    child.stdout?.setEncoding('utf8');
    child.stderr?.setEncoding('utf8');
    child.stdout?.on('data', (s: string) => {
      this.stdout = capped(this.stdout + s);
      for (const w of [...this.stdoutWaiters]) {
        const m = this.stdout.match(w.pattern);
        if (m !== null) {
          this.stdoutWaiters.splice(this.stdoutWaiters.indexOf(w), 1);
          w.resolve(m);
        }
      }
    });
    child.stderr?.on('data', (s: string) => {
      this.stderr = capped(this.stderr + s);
    });
    this.exited = new Promise((resolveExit) => {
      child.once('exit', (code, signal) => {
        live.delete(child);
        this.exitStatus = { code, signal };
        resolveExit(this.exitStatus);
      });
    });
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error(`${this.label} has no pid (spawn failed)`);
    return this.child.pid;
  }

  get running(): boolean {
    return this.exitStatus === null;
  }

  /** Resolves with the first match of `pattern` in stdout; rejects on exit or timeout. */
  waitForStdout(pattern: RegExp, timeoutMs = startTimeoutMsDefault): Promise<RegExpMatchArray> {
    const m = this.stdout.match(pattern);
    if (m !== null) return Promise.resolve(m);
    return new Promise((resolveMatch, reject) => {
      const waiter = { pattern, resolve: (found: RegExpMatchArray): void => { cleanup(); resolveMatch(found); } };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`${this.label}: no ${pattern} on stdout within ${timeoutMs} ms\n${this.describe()}`));
      }, timeoutMs);
      const onExit = (s: ExitStatus): void => {
        cleanup();
        reject(new Error(`${this.label} exited (${s.signal ?? `code ${s.code}`}) before printing ${pattern}\n${this.describe()}`));
      };
      const cleanup = (): void => {
        clearTimeout(timer);
        const i = this.stdoutWaiters.indexOf(waiter);
        if (i >= 0) this.stdoutWaiters.splice(i, 1);
      };
      this.stdoutWaiters.push(waiter);
      void this.exited.then(onExit);
    });
  }

  /** Sends one signal to this process only (not its children). */
  signal(signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal);
  }

  /** SIGTERM, then SIGKILL to the whole group after `graceMs`; resolves with how it exited. */
  async stop(graceMs = stopGraceMsDefault): Promise<ExitStatus> {
    if (!this.running) return this.exited;
    this.child.kill('SIGCONT'); // a paused process cannot act on SIGTERM
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => killGroup(this.child, 'SIGKILL'), graceMs);
    const status = await this.exited;
    clearTimeout(timer);
    // Anything the process left behind in its group goes too.
    killGroup(this.child, 'SIGKILL');
    return status;
  }

  /** kill -9 of the process group: no shutdown hooks run. */
  async kill9(): Promise<ExitStatus> {
    killGroup(this.child, 'SIGKILL');
    return this.exited;
  }

  /** Freezes (SIGSTOP) or thaws (SIGCONT) the process: a node that stops answering without closing sockets. */
  pause(): void {
    this.signal('SIGSTOP');
  }

  resume(): void {
    this.signal('SIGCONT');
  }

  /** Last output lines, for failure messages. */
  describe(): string {
    const tail = (s: string): string => s.split('\n').slice(-20).join('\n');
    return `--- ${this.label} stdout ---\n${tail(this.stdout)}\n--- ${this.label} stderr ---\n${tail(this.stderr)}`;
  }
}

function capped(s: string): string {
  return s.length > outputBytesMax ? s.slice(s.length - outputBytesMax) : s;
}

export interface SpawnOptions {
  readonly env?: Record<string, string>;
  readonly cwd?: string;
  /** Flags for node itself, before the script (e.g. `--cpu-prof`, which NODE_OPTIONS refuses). */
  readonly nodeFlags?: readonly string[];
}

/**
 * Spawns `node bin/dsync.js ...args` in its own process group; stopped at teardown.
 * The environment is the parent's minus the dsync settings, plus `env`.
 */
export function spawnDsync(t: Teardown, args: readonly string[], opts: SpawnOptions = {}): ManagedProcess {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !dsyncEnvNames.has(k)) env[k] = v;
  }
  Object.assign(env, opts.env ?? {});
  const child = spawn(process.execPath, [...(opts.nodeFlags ?? []), dsyncBin, ...args], {
    cwd: opts.cwd ?? repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
  });
  const proc = new ManagedProcess(child, `dsync ${args.slice(0, 3).join(' ')}`);
  t.teardown(async () => {
    await proc.stop();
  });
  return proc;
}

/** Settings a developer's shell might export that would leak into spawned nodes. */
const dsyncEnvNames = new Set(['NODE_ID', 'HOST', 'PORT', 'PEERS', 'DATA_DIR', 'HTTP_PORT', 'CONSOLE_PORT', 'LOG_LEVEL', 'ADVERTISE', 'JOIN',
  'ELECTION_TIMEOUT_MIN', 'ELECTION_TIMEOUT_MAX', 'HEARTBEAT_INTERVAL']
  .flatMap((name) => [name, `DSYNC_${name}`]).concat(['DSYNC_CONFIG', 'DSYNC_SEEDS']));

/** Runs a one-shot CLI command to completion (killed after `timeoutMs`). */
export async function runDsync(t: Teardown, args: readonly string[], opts: SpawnOptions & { timeoutMs?: number } = {}):
  Promise<ExitStatus & { stdout: string; stderr: string }> {
  const proc = spawnDsync(t, args, opts);
  const timer = setTimeout(() => void proc.stop(0), opts.timeoutMs ?? 20_000);
  const status = await proc.exited;
  clearTimeout(timer);
  // 'exit' can precede the last 'data' events of the pipes; wait for them to close.
  await Promise.all([streamClosed(proc.child.stdout), streamClosed(proc.child.stderr)]);
  return { ...status, stdout: proc.stdout, stderr: proc.stderr };
}

function streamClosed(s: NodeJS.ReadableStream | null): Promise<void> {
  if (s === null) return Promise.resolve();
  const stream = s as NodeJS.ReadableStream & { readableEnded?: boolean; destroyed?: boolean };
  if (stream.readableEnded === true || stream.destroyed === true) return Promise.resolve();
  return new Promise((r) => {
    s.once('close', () => r());
    s.once('end', () => r());
  });
}

// ---- ports and directories ----

/** A temp directory removed at teardown. */
export function tempDir(t: Teardown, prefix = 'dsync-it-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function listenOn(port: number): Promise<Server | null> {
  return new Promise((r) => {
    const server = createServer();
    server.once('error', () => r(null));
    server.listen(port, '127.0.0.1', () => r(server));
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((r) => server.close(() => r()));
}

/**
 * Ports handed out by freePorts() come from here: below the ephemeral range, apart from
 * freeBasePort's blocks. DSYNC_TEST_PORTS=LO-HI narrows it (several people sharing one
 * machine, each given a range).
 */
const freePortsRange = (/^(\d+)-(\d+)$/.exec(process.env.DSYNC_TEST_PORTS ?? '') ?? [])
  .slice(1).map(Number).filter((n) => n >= 1024 && n < 32_768);
const freePortsMin = freePortsRange.length === 2 ? freePortsRange[0] as number : 10_000;
const freePortsSpan = freePortsRange.length === 2 ? Math.max(1, (freePortsRange[1] as number) - freePortsMin + 1) : 10_000;
/** Where the next freePorts() search starts: pid-dependent so parallel test files rarely collide, moving on per call. */
let freePortsCursor = (process.pid * 131) % freePortsSpan;

/**
 * `count` distinct ports that are free right now, in 10000..19999 or DSYNC_TEST_PORTS
 * (never the ephemeral range above 32767, where the OS also picks outgoing ports).
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let attempt = 0; attempt < portSearchAttemptsMax * 10 && servers.length < count; attempt++) {
      const port = freePortsMin + freePortsCursor;
      freePortsCursor = (freePortsCursor + 1) % freePortsSpan;
      const s = await listenOn(port);
      if (s !== null) servers.push(s);
    }
    if (servers.length < count) throw new Error(`found only ${servers.length} of ${count} free ports in ${freePortsMin}..${freePortsMin + freePortsSpan - 1}`);
    return servers.map((s) => {
      const addr = s.address();
      if (addr === null || typeof addr === 'string') throw new Error('no port');
      return addr.port;
    });
  } finally {
    await Promise.all(servers.map(closeServer));
  }
}

/**
 * The first of `count` consecutive ports free right now, from freePorts()'s range
 * (for `dsync cluster --base-port P --http-base-port P+n ...` layouts).
 */
export async function freePortBlock(count: number): Promise<number> {
  for (let attempt = 0; attempt < portSearchAttemptsMax * 10; attempt++) {
    const base = freePortsMin + (freePortsCursor % Math.max(1, freePortsSpan - count + 1));
    freePortsCursor = (freePortsCursor + count) % freePortsSpan;
    const held: Server[] = [];
    for (let p = base; p < base + count; p++) {
      const s = await listenOn(p);
      if (s === null) break;
      held.push(s);
    }
    await Promise.all(held.map(closeServer));
    if (held.length === count) return base;
  }
  throw new Error(`found no ${count} consecutive free ports in ${freePortsMin}..${freePortsMin + freePortsSpan - 1}`);
}

const freeBaseMin = 20_000;
const freeBaseSpan = 7_500;

/**
 * A base port P such that P..P+count-1, and the same +1000 (HTTP) and +2000
 * (console), are all free: the layout `dsync cluster --base-port P` uses.
 * Bases are searched in 20000..27499, so that even base+2000+count stays below
 * the fault runner's ports (29600 up, see test/chaos/cluster.ts), starting at a
 * pid-dependent offset so parallel runs rarely collide.
 */
export async function freeBasePort(count: number): Promise<number> {
  let base = freeBaseMin + ((process.pid * 37) % freeBaseSpan);
  for (let attempt = 0; attempt < portSearchAttemptsMax; attempt++) {
    base = freeBaseMin + ((base - freeBaseMin + 97) % freeBaseSpan);
    const wanted = [0, 1000, 2000].flatMap((offset) => Array.from({ length: count }, (_, i) => base + offset + i));
    const held: Server[] = [];
    let ok = true;
    for (const port of wanted) {
      const s = await listenOn(port);
      if (s === null) {
        ok = false;
        break;
      }
      held.push(s);
    }
    await Promise.all(held.map(closeServer));
    if (ok) return base;
  }
  throw new Error(`no free block of ${count} x 3 ports found`);
}

// ---- nodes ----

/** Pings `address` until it answers or `timeoutMs` passes. */
export async function waitUntilServing(address: string, timeoutMs = startTimeoutMsDefault): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown = null;
  while (Date.now() < deadline) {
    try {
      const client = await Client.connect({ seeds: [address], connectTimeoutMs: 1000, requestTimeoutMs: 2000 });
      try {
        await client.ping();
        return;
      } finally {
        await client.close();
      }
    } catch (err) {
      lastError = err;
      await sleep(100);
    }
  }
  throw new Error(`${address} did not answer a ping within ${timeoutMs} ms: ${String(lastError)}`);
}

export interface NodeSpec {
  readonly id: string;
  readonly port: number;
  readonly httpPort: number;
  readonly consolePort: number;
  readonly dataDir: string;
  /** `id@127.0.0.1:port` of the other members. */
  readonly peers: readonly string[];
}

export function nodeArgs(spec: NodeSpec, extra: readonly string[] = []): string[] {
  const args = ['node', '--id', spec.id, '--host', '127.0.0.1', '--port', String(spec.port), '--http-port', String(spec.httpPort),
    '--console-port', String(spec.consolePort), '--data-dir', spec.dataDir];
  if (spec.peers.length > 0) args.push('--peers', spec.peers.join(','));
  return [...args, ...extra];
}

/** One `dsync node` process that can be stopped, killed and restarted with the same spec. */
export class TestNode {
  proc: ManagedProcess | null = null;
  /** Extra environment for the next start (e.g. DSYNC_FEATURE_VERSION). */
  env: Record<string, string> = {};

  constructor(private readonly t: Teardown, readonly spec: NodeSpec, private readonly extraArgs: readonly string[] = [],
    private readonly nodeFlags: readonly string[] = []) {}

  get address(): string {
    return `127.0.0.1:${this.spec.port}`;
  }

  get consoleAddress(): { host: string; port: number } {
    return { host: '127.0.0.1', port: this.spec.consolePort };
  }

  /** The running process (throws when the node is down). */
  get process(): ManagedProcess {
    if (this.proc === null || !this.proc.running) throw new Error(`node ${this.spec.id} is not running`);
    return this.proc;
  }

  /** Spawns the node; with `wait` (default) resolves once it answers a ping. */
  async start(wait = true): Promise<void> {
    if (this.proc !== null && this.proc.running) throw new Error(`node ${this.spec.id} is already running`);
    this.proc = spawnDsync(this.t, nodeArgs(this.spec, this.extraArgs), { nodeFlags: this.nodeFlags, env: this.env });
    if (!wait) return;
    await this.proc.waitForStdout(/listening on/);
    await waitUntilServing(this.address);
  }

  /** Graceful stop (SIGTERM, SIGKILL after the grace period). */
  async stop(graceMs = stopGraceMsDefault): Promise<ExitStatus | null> {
    return this.proc === null ? null : this.proc.stop(graceMs);
  }

  /** Crash: kill -9, no shutdown hooks, data dir left as it was. */
  async kill9(): Promise<ExitStatus | null> {
    return this.proc === null ? null : this.proc.kill9();
  }

  /** Starts again on the same ports and data dir (after stop or kill9). */
  async restart(wait = true): Promise<void> {
    if (this.proc !== null && this.proc.running) await this.proc.stop();
    await this.start(wait);
  }
}

export interface ClusterOptions {
  readonly nodes?: number;
  /** Parent of the nodes' data dirs; a fresh temp dir (removed at teardown) by default. */
  readonly dataRoot?: string;
  /** Extra flags for every node (e.g. `--log-level debug`). */
  readonly extraArgs?: readonly string[];
  /** nodes x 3 ports to use (client, then HTTP, then console ports) instead of free ones found in 10000-19999. */
  readonly ports?: readonly number[];
  /** Flags for every node's node process (benchmarks profile with `--cpu-prof --cpu-prof-dir=DIR`). */
  readonly nodeFlags?: readonly string[];
  /** Extra environment per node id for its first start (TestNode.env after that). */
  readonly nodeEnv?: Readonly<Record<string, Record<string, string>>>;
}

/** N nodes `n1..nN` on free ports, each its own `dsync node` process, peers wired to each other. */
export class TestCluster {
  private constructor(readonly nodes: readonly TestNode[], readonly dataRoot: string) {}

  /** Starts every node and waits until each answers. Everything is stopped at teardown. */
  static async start(t: Teardown, opts: ClusterOptions = {}): Promise<TestCluster> {
    const count = opts.nodes ?? 3;
    const dataRoot = opts.dataRoot ?? tempDir(t, 'dsync-cluster-');
    const ports = opts.ports ?? await freePorts(count * 3);
    if (ports.length < count * 3) throw new Error(`a ${count}-node cluster needs ${count * 3} ports, got ${ports.length}`);
    const ids = Array.from({ length: count }, (_, i) => `n${i + 1}`);
    const port = (i: number): number => ports[i]!;
    const specs: NodeSpec[] = ids.map((id, i) => ({
      id, port: port(i), httpPort: port(count + i), consolePort: port(2 * count + i), dataDir: join(dataRoot, id),
      peers: ids.flatMap((pid, j) => (j === i ? [] : [`${pid}@127.0.0.1:${port(j)}`])),
    }));
    const cluster = new TestCluster(specs.map((s) => new TestNode(t, s, opts.extraArgs ?? [], opts.nodeFlags ?? [])), dataRoot);
    for (const n of cluster.nodes) n.env = { ...(opts.nodeEnv?.[n.spec.id] ?? {}) };
    await Promise.all(cluster.nodes.map((n) => n.start()));
    return cluster;
  }

  get seeds(): string[] {
    return this.nodes.map((n) => n.address);
  }

  node(id: string): TestNode {
    const n = this.nodes.find((x) => x.spec.id === id);
    if (n === undefined) throw new Error(`no node ${id} in this cluster`);
    return n;
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
  }
}

/** True while a process with this pid exists (signal 0 probes without signalling). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Polls `fn` every `intervalMs` until it returns something other than null, up to
 * `timeoutMs`; a throw counts as "not yet" (a node restarting). Times out naming `what`
 * and the last error.
 */
export async function pollUntil<T>(what: string, fn: () => Promise<T | null>, timeoutMs: number, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== null) return v;
    } catch (err) {
      last = err;
    }
    await sleep(intervalMs);
  }
  throw new Error(`timed out waiting for ${what}${last === null ? '' : `: ${String(last)}`}`);
}
