// The dsync client: one per service. Discovers the cluster from any seed,
// keeps a connection per node it talks to, pipelines requests, follows
// NOT_LEADER to the leader, reconnects, and surfaces typed DsyncErrors.

import { clientConnectTimeoutMsDefault, clientRequestTimeoutMsDefault } from '../core/constants.js';
import { DsyncError, ErrorCode } from '../protocol/errors.js';
import { Opcode } from '../protocol/frame.js';
import { schema } from '../protocol/index.js';
import { NodeConnection, type PushListener } from './transport/connection.js';
import { type HeldLock, LockManager, type LockOptions } from './locks/locks.js';

export interface ClientOptions {
  /** Any subset of the cluster's client addresses (host:port); the rest is discovered. */
  readonly seeds: readonly string[];
  /** Per-request deadline (default 5000 ms). */
  readonly requestTimeoutMs?: number;
  /** Per-connection connect + hello deadline (default 3000 ms). */
  readonly connectTimeoutMs?: number;
  /** Shown in the nodes' logs. */
  readonly name?: string;
  /** How many times a leader-routed request follows NOT_LEADER / retries UNAVAILABLE (default 8). */
  readonly maxRedirects?: number;
  /** TTL of this client's lock session (default 10000 ms); kept alive in the background. */
  readonly sessionTtlMs?: number;
  /**
   * Lock-delay (Chubby/Consul): when this client's session EXPIRES (a crash, not a clean
   * release), the locks it held are not granted to anyone for this long (default 0).
   */
  readonly lockDelayMs?: number;
}

export interface MemberStatus {
  readonly id: string;
  readonly address: string;
  readonly connected: boolean;
  readonly voter: boolean;
}

export interface GroupStatus {
  readonly group: number;
  readonly role: string;
  readonly leaderId: string;
  readonly term: number;
  readonly commit: number;
  readonly applied: number;
  readonly lastIndex: number;
  readonly voters: readonly string[];
  readonly learners: readonly string[];
}

export interface NodeStatus {
  readonly nodeId: string;
  readonly address: string;
  readonly members: readonly MemberStatus[];
  readonly leaderId: string;
  readonly leaderAddress: string;
  readonly uptimeMs: number;
  readonly groups: readonly GroupStatus[];
}

export class Client {
  private readonly connections = new Map<string, Promise<NodeConnection>>();
  private readonly pushListeners = new Map<number, PushListener>();
  private readonly knownAddresses: string[];
  private leaderAddress = '';
  private closed = false;
  readonly requestTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  readonly name: string;
  private readonly maxRedirects: number;
  private readonly lockManager: LockManager;

  private constructor(opts: ClientOptions) {
    if (opts.seeds.length === 0) throw new DsyncError(ErrorCode.BAD_REQUEST, 'Client.connect needs at least one seed address');
    this.knownAddresses = [...opts.seeds];
    this.requestTimeoutMs = opts.requestTimeoutMs ?? clientRequestTimeoutMsDefault;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? clientConnectTimeoutMsDefault;
    this.name = opts.name ?? `client-${process.pid}`;
    this.maxRedirects = opts.maxRedirects ?? 8;
    this.lockManager = new LockManager(this, opts.sessionTtlMs, opts.lockDelayMs);
  }

  /** Acquires a lock (waiting as needed); the held lock carries its fencing token. Works with `await using`. */
  lock(name: string, opts?: LockOptions): Promise<HeldLock> {
    return this.lockManager.lock(name, opts);
  }

  /** Lock administration and inspection (linearizable reads through the leader). */
  get locks(): Pick<LockManager, 'info' | 'sessions' | 'forceRelease'> {
    return this.lockManager;
  }

  /** Acquires a lock only if it is free right now; resolves null otherwise. */
  tryLock(name: string, opts?: Omit<LockOptions, 'waitMs'>): Promise<HeldLock | null> {
    return this.lockManager.tryLock(name, opts);
  }

  /** Connects to the first reachable seed and learns the members from its hello. */
  static async connect(opts: ClientOptions): Promise<Client> {
    const client = new Client(opts);
    await client.anyConnection();
    return client;
  }

  /** Round trip to the attached node; resolves with the measured milliseconds. */
  async ping(payload: Uint8Array = new Uint8Array(0)): Promise<number> {
    const conn = await this.anyConnection();
    const started = performance.now();
    const reply = schema.Pong.decode(await conn.request(Opcode.Ping, schema.Ping.encode({ payload }).finish(), this.requestTimeoutMs));
    if (reply.payload.length !== payload.length) throw new DsyncError(ErrorCode.BAD_PAYLOAD, 'ping echo does not match what was sent');
    return performance.now() - started;
  }

  /** The attached node's view: its id, members, who it thinks leads, its groups. */
  async status(address?: string): Promise<NodeStatus> {
    const conn = address === undefined ? await this.anyConnection() : await this.connection(address);
    const s = schema.StatusReply.decode(await conn.request(Opcode.Status, new Uint8Array(0), this.requestTimeoutMs));
    return {
      nodeId: s.nodeId,
      address: s.address,
      members: s.members.map((m) => ({ id: m.id ?? '', address: m.address ?? '', connected: m.connected === true, voter: m.voter === true })),
      leaderId: s.leaderId,
      leaderAddress: s.leaderAddress,
      uptimeMs: Number(s.uptimeMs),
      groups: s.groups.map((g) => ({ group: g.group ?? 0, role: g.role ?? '', leaderId: g.leaderId ?? '', term: Number(g.term ?? 0),
        commit: Number(g.commit ?? 0), applied: Number(g.applied ?? 0), lastIndex: Number(g.lastIndex ?? 0), voters: g.voters ?? [],
        learners: g.learners ?? [] })),
    };
  }

  /** Every member address learned so far (seeds plus what nodes reported). */
  members(): readonly string[] {
    return this.knownAddresses;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.lockManager.close();
    this.closed = true;
    const all = [...this.connections.values()];
    this.connections.clear();
    for (const p of all) {
      try {
        (await p).close();
      } catch {
        // a connection that never opened has nothing to close
      }
    }
  }

  // ---- for the service modules of this client (locks, queues, cache) ----

  /** Routes push frames of one opcode (e.g. lock grants) to a listener. */
  onPush(opcode: number, listener: PushListener): void {
    this.pushListeners.set(opcode, listener);
  }

  /**
   * Sends a request to the leader, following NOT_LEADER and retrying UNAVAILABLE /
   * lost connections. Only for requests that are safe to repeat (idempotent or
   * carrying a client id + sequence).
   */
  async leaderRequest(opcode: number, payload: Uint8Array, timeoutMs = this.requestTimeoutMs): Promise<Uint8Array> {
    let lastError: DsyncError | null = null;
    const deadline = Date.now() + timeoutMs;
    for (let attempt = 0; attempt <= this.maxRedirects && Date.now() < deadline; attempt++) {
      const target = this.leaderAddress !== '' ? this.leaderAddress : undefined;
      // The node actually asked (with no known leader, whichever anyConnection picked).
      let tried = target;
      try {
        const conn = target === undefined ? await this.anyConnection() : await this.connection(target);
        tried = conn.address;
        const remaining = Math.max(1, deadline - Date.now());
        return await conn.request(opcode, payload, remaining);
      } catch (err) {
        if (!(err instanceof DsyncError)) throw err;
        lastError = err;
        if (err.code === ErrorCode.NOT_LEADER && err.leaderAddress !== '') {
          this.leaderAddress = err.leaderAddress;
          this.learn(err.leaderAddress);
          continue;
        }
        if (err.code === ErrorCode.UNAVAILABLE || err.code === ErrorCode.CONNECTION_CLOSED || err.code === ErrorCode.NOT_LEADER) {
          // Forget the leader we believed in and try the next node after a short pause (a
          // leaderless minority node first in the list must not be asked again and again).
          if (tried !== undefined) this.rotateAway(tried);
          this.leaderAddress = '';
          await sleep(Math.min(50 * 2 ** attempt, 500));
          continue;
        }
        throw err;
      }
    }
    throw lastError ?? new DsyncError(ErrorCode.TIMEOUT, 'request timed out before any node answered');
  }

  /** Connection to the given address, opened (once) on first use. */
  connection(address: string): Promise<NodeConnection> {
    if (this.closed) return Promise.reject(new DsyncError(ErrorCode.CONNECTION_CLOSED, 'client is closed'));
    let p = this.connections.get(address);
    if (p === undefined) {
      p = NodeConnection.open(address, { connectTimeoutMs: this.connectTimeoutMs, name: this.name,
        onPush: (opcode, requestId, payload) => this.pushListeners.get(opcode)?.(opcode, requestId, payload) });
      this.connections.set(address, p);
      p.then((conn) => {
        for (const m of conn.hello?.members ?? []) this.learn(m.address ?? '');
        conn.onClose(() => {
          if (this.connections.get(address) === p) this.connections.delete(address);
        });
      }, () => {
        if (this.connections.get(address) === p) this.connections.delete(address);
      });
    }
    return p;
  }

  /** Any live connection: an open one if there is one, else the first address that answers. */
  async anyConnection(): Promise<NodeConnection> {
    let lastError: unknown = null;
    for (const address of [...this.knownAddresses]) {
      try {
        const conn = await this.connection(address);
        if (conn.isOpen) return conn;
      } catch (err) {
        lastError = err;
      }
    }
    if (lastError instanceof DsyncError) {
      throw new DsyncError(ErrorCode.UNAVAILABLE, `no dsync node reachable at ${this.knownAddresses.join(', ')} (last error: ${lastError.message})`);
    }
    throw new DsyncError(ErrorCode.UNAVAILABLE, `no dsync node reachable at ${this.knownAddresses.join(', ')}`);
  }

  private learn(address: string): void {
    if (address !== '' && !this.knownAddresses.includes(address)) this.knownAddresses.push(address);
  }

  /** Moves a failing address to the back so the next attempt tries another node first. */
  private rotateAway(address: string): void {
    const i = this.knownAddresses.indexOf(address);
    if (i >= 0) {
      this.knownAddresses.splice(i, 1);
      this.knownAddresses.push(address);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
