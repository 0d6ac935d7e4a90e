// Routes a client's requests to the leader of each Raft group over one connection
// per node: remembers a leader per group, follows NOT_LEADER, and moves on to the
// next member when a node fails, is unreachable or (for requests safe to repeat)
// does not answer within one attempt, so a paused leader costs one attempt.

import { setMaxListeners } from 'node:events';
import { assert } from '../../core/assert.js';
import { clientAttemptTimeoutMsDefault, clientConnectTimeoutMsDefault, clientRequestAttemptsMaxDefault, clientRequestTimeoutMsDefault,
  clientRetryBackoffMsMax, clientRetryBackoffMsMin } from '../../core/constants.js';
import { DsyncError, ErrorCode } from '../../protocol/errors.js';
import { type ClientConnection, type ClientTlsOptions, type ConnectionFactory, type ConnectOptions, NodeConnection, type PushListener } from './connection.js';
import { type ClientClock, realClock, sleepOn } from './time.js';

export interface RequestOptions {
  /** The whole deadline across attempts (default: the router's requestTimeoutMs). */
  readonly timeoutMs?: number;
  /** Caps one attempt of an idempotent request below the router's attemptTimeoutMs. */
  readonly attemptTimeoutMs?: number;
  /**
   * The request carries a client id + seq (or only reads), so sending it again is applied
   * once: a per-attempt TIMEOUT then moves on to another member. Without it an attempt may
   * use the whole deadline and TIMEOUT is final (the request may have been applied).
   */
  readonly idempotent?: boolean;
  /**
   * A long poll (a waiting acquire): an attempt may last the whole deadline, and is
   * abandoned and sent to the new leader as soon as any request learns the group's
   * leader moved. Implies idempotent.
   */
  readonly followLeader?: boolean;
  /** Told the clock's nowMs() just before each attempt goes out (a renewal counts from its first send). */
  readonly onSend?: (atMs: number) => void;
}

/** What a service's part of the client needs from the transport (fakes implement it in tests). */
export interface GroupTransport {
  readonly requestTimeoutMs: number;
  readonly attemptTimeoutMs: number;
  /** Sends to the leader of `group`, retrying as RequestOptions says; rejects with the last DsyncError. */
  request(group: number, opcode: number, payload: Uint8Array, opts?: RequestOptions): Promise<Uint8Array>;
  /** Routes push frames of one opcode (from any node) to a listener. */
  onPush(opcode: number, listener: PushListener): void;
}

export interface RouterOptions {
  readonly seeds: readonly string[];
  readonly name: string;
  readonly requestTimeoutMs?: number;
  readonly connectTimeoutMs?: number;
  readonly attemptTimeoutMs?: number;
  readonly attemptsMax?: number;
  /** Opens a connection to one node (default: NodeConnection.open over TCP; the simulator passes its own). */
  readonly connect?: ConnectionFactory;
  /** Clock and timers for deadlines and backoff (default: performance.now() and Node timers). */
  readonly clock?: ClientClock;
  /** Hello token and TLS for every connection (see ClientOptions). */
  readonly token?: string;
  readonly tls?: ClientTlsOptions;
}

export class Router implements GroupTransport {
  readonly requestTimeoutMs: number;
  readonly attemptTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly attemptsMax: number;
  private readonly name: string;
  private readonly connect: ConnectionFactory;
  private readonly clock: ClientClock;
  private readonly security: Pick<ConnectOptions, 'token' | 'tls'>;
  private readonly connections = new Map<string, Promise<ClientConnection>>();
  /** The connections of `connections` that opened (and have not closed), by address: openConnectionNow()'s. */
  private readonly open = new Map<string, ClientConnection>();
  private readonly pushListeners = new Map<number, PushListener>();
  /** Seeds plus members nodes reported; the first is asked when a group's leader is unknown. */
  private readonly addresses: string[];
  private readonly leaders = new Map<number, string>();
  /** Addresses that just failed an attempt (clock ms until which): a redirect to one is not followed. */
  private readonly suspects = new Map<string, number>();
  /**
   * Long polls (followLeader) share one AbortController per group and target, aborted when
   * the group's leader is learned to be elsewhere: one controller per leadership, not one
   * (with a watcher closure) per waiting acquire.
   */
  private readonly abandonSignals = new Map<number, Map<string, AbortController>>();
  private closed = false;

  constructor(opts: RouterOptions) {
    if (opts.seeds.length === 0) throw new DsyncError(ErrorCode.BAD_REQUEST, 'Client.connect needs at least one seed address');
    this.addresses = [...opts.seeds];
    this.name = opts.name;
    this.connect = opts.connect ?? ((address, o) => NodeConnection.open(address, o));
    this.clock = opts.clock ?? realClock;
    this.security = { ...(opts.token === undefined ? {} : { token: opts.token }), ...(opts.tls === undefined ? {} : { tls: opts.tls }) };
    this.requestTimeoutMs = opts.requestTimeoutMs ?? clientRequestTimeoutMsDefault;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? clientConnectTimeoutMsDefault;
    this.attemptTimeoutMs = opts.attemptTimeoutMs ?? Math.min(clientAttemptTimeoutMsDefault, Math.ceil(this.requestTimeoutMs / 3));
    this.attemptsMax = opts.attemptsMax ?? clientRequestAttemptsMaxDefault;
    for (const [what, v] of [['requestTimeoutMs', this.requestTimeoutMs], ['connectTimeoutMs', this.connectTimeoutMs],
      ['attemptTimeoutMs', this.attemptTimeoutMs], ['maxRedirects', this.attemptsMax]] as const) {
      if (!(Number.isFinite(v) && v > 0)) throw new DsyncError(ErrorCode.BAD_REQUEST, `${what} must be a positive number`);
    }
  }

  /** Every member address learned so far (seeds plus what nodes reported). */
  members(): readonly string[] {
    return this.addresses;
  }

  /** The node this router believes leads `group` ('' when unknown). */
  leaderOf(group: number): string {
    return this.leaders.get(group) ?? '';
  }

  /** Where `group`'s leader probably is (a partition map's hint); ignored when a leader is known. NOT_LEADER corrects it. */
  hintLeader(group: number, address: string): void {
    if (address === '' || this.leaders.has(group)) return;
    this.learn(address);
    this.leaders.set(group, address);
  }

  onPush(opcode: number, listener: PushListener): void {
    this.pushListeners.set(opcode, listener);
  }

  async request(group: number, opcode: number, payload: Uint8Array, opts: RequestOptions = {}): Promise<Uint8Array> {
    const timeoutMs = opts.timeoutMs ?? this.requestTimeoutMs;
    assert(timeoutMs > 0, 'a request needs a positive deadline');
    const idempotent = opts.idempotent === true || opts.followLeader === true;
    const deadlineMs = this.clock.nowMs() + timeoutMs;
    let lastError: DsyncError | null = null;
    let retries = 0;
    for (let attempt = 0; attempt < this.attemptsMax; attempt++) {
      if (this.closed) throw new DsyncError(ErrorCode.CONNECTION_CLOSED, 'client is closed');
      const remainingMs = deadlineMs - this.clock.nowMs();
      if (remainingMs <= 0) break;
      const target = this.target(group);
      const attemptMs = !idempotent || opts.followLeader === true ? remainingMs
        : Math.min(remainingMs, this.attemptTimeoutMs, opts.attemptTimeoutMs ?? Infinity);
      try {
        const reply = await this.attempt(group, target, opcode, payload, attemptMs, opts);
        this.suspects.delete(target);
        this.setLeader(group, target);
        return reply;
      } catch (err) {
        if (!(err instanceof DsyncError)) throw err;
        lastError = err;
        if (err.code === ErrorCode.NOT_LEADER && err.leaderAddress !== '' && err.leaderAddress !== target
          && !this.isSuspect(err.leaderAddress)) {
          this.learn(err.leaderAddress);
          this.setLeader(group, err.leaderAddress);
          continue;
        }
        if (!this.retryable(err, idempotent)) throw err;
        // Move away from the failing node: the next attempt asks another member, and a
        // redirect back to it (a follower that has not noticed the pause yet) waits a while.
        if (err.code !== ErrorCode.NOT_LEADER && err.code !== ErrorCode.TOO_MANY_REQUESTS) {
          this.suspects.set(target, this.clock.nowMs() + this.attemptTimeoutMs);
        }
        this.rotateAway(target);
        if (this.leaders.get(group) === target) this.leaders.delete(group);
        const backoffMs = err.retryAfterMs > 0 ? err.retryAfterMs
          : Math.min(clientRetryBackoffMsMin * 2 ** retries, clientRetryBackoffMsMax);
        retries++;
        const left = deadlineMs - this.clock.nowMs();
        if (left <= 0) break;
        await sleepOn(this.clock, Math.min(backoffMs, left));
      }
    }
    throw lastError ?? new DsyncError(ErrorCode.TIMEOUT, 'request timed out before any node answered');
  }

  /**
   * Whether an attempt that failed with `err` is tried again (on another member unless
   * a redirect names the leader). A TIMEOUT is retried only for requests safe to repeat:
   * a paused or cut-off leader must cost one attempt, not the session (issue 7, item 5).
   */
  protected retryable(err: DsyncError, idempotent: boolean): boolean {
    return err.code === ErrorCode.NOT_LEADER || err.code === ErrorCode.UNAVAILABLE || err.code === ErrorCode.CONNECTION_CLOSED
      || err.code === ErrorCode.TOO_MANY_REQUESTS || (idempotent && err.code === ErrorCode.TIMEOUT);
  }

  /** Connection to the given address, opened (once) on first use. */
  connection(address: string): Promise<ClientConnection> {
    if (this.closed) return Promise.reject(new DsyncError(ErrorCode.CONNECTION_CLOSED, 'client is closed'));
    let p = this.connections.get(address);
    if (p === undefined) {
      p = this.connect(address, { ...this.security, connectTimeoutMs: this.connectTimeoutMs, name: this.name,
        onPush: (opcode, requestId, payload) => this.pushListeners.get(opcode)?.(opcode, requestId, payload) });
      this.connections.set(address, p);
      const opened = p;
      opened.then((conn) => {
        for (const m of conn.hello?.members ?? []) this.learn(m.address ?? '');
        if (!this.closed) this.open.set(address, conn);
        conn.onClose(() => {
          if (this.connections.get(address) === opened) this.connections.delete(address);
          if (this.open.get(address) === conn) this.open.delete(address);
        });
      }, () => {
        if (this.connections.get(address) === opened) this.connections.delete(address);
      });
    }
    return p;
  }

  /**
   * What anyConnection() would resolve to, when that is known now: the first address's
   * connection, already open. Else null (then await anyConnection()). Saves a request on
   * an open connection the promise hops of anyConnection().
   */
  openConnectionNow(): ClientConnection | null {
    const first = this.addresses[0];
    const conn = first === undefined ? undefined : this.open.get(first);
    return conn !== undefined && conn.isOpen ? conn : null;
  }

  /** Any live connection: an open one if there is one, else the first address that answers. */
  async anyConnection(): Promise<ClientConnection> {
    let lastError: unknown = null;
    for (const address of [...this.addresses]) {
      try {
        const conn = await this.connection(address);
        if (conn.isOpen) return conn;
      } catch (err) {
        // Refused credentials or protocol are the answer of the cluster, not of one node: say so.
        if (err instanceof DsyncError && (err.code === ErrorCode.UNAUTHORIZED || err.code === ErrorCode.BAD_VERSION)) throw err;
        lastError = err;
      }
    }
    const last = lastError instanceof DsyncError ? ` (last error: ${lastError.message})` : '';
    throw new DsyncError(ErrorCode.UNAVAILABLE, `no dsync node reachable at ${this.addresses.join(', ')}${last}`);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.open.clear();
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

  /** One attempt at one node; a connection that cannot be had in time is UNAVAILABLE (nothing was sent). */
  private attempt(group: number, target: string, opcode: number, payload: Uint8Array, attemptMs: number,
    opts: RequestOptions): Promise<Uint8Array> {
    // An open connection needs no deadline on the connect: skip its timer and promise hops.
    const open = this.open.get(target);
    if (open !== undefined && open.isOpen) return this.sendOn(open, group, target, opcode, payload, attemptMs, opts);
    return withDeadline(this.clock, this.connection(target), attemptMs, () =>
      new DsyncError(ErrorCode.UNAVAILABLE, `no connection to ${target} within ${Math.round(attemptMs)} ms`)).then(
      (conn) => this.sendOn(conn, group, target, opcode, payload, attemptMs, opts),
      (err: unknown) => {
        throw err instanceof DsyncError && err.code !== ErrorCode.CONNECTION_CLOSED
          ? new DsyncError(ErrorCode.UNAVAILABLE, err.message) : err;
      });
  }

  private sendOn(conn: ClientConnection, group: number, target: string, opcode: number, payload: Uint8Array, attemptMs: number,
    opts: RequestOptions): Promise<Uint8Array> {
    opts.onSend?.(this.clock.nowMs());
    if (opts.followLeader !== true) return conn.request(opcode, payload, attemptMs);
    return conn.request(opcode, payload, attemptMs, this.abandonSignal(group, target));
  }

  /** Aborted (NOT_LEADER) as soon as `group`'s leader is learned to be somewhere other than `target`. */
  private abandonSignal(group: number, target: string): AbortSignal {
    let byTarget = this.abandonSignals.get(group);
    if (byTarget === undefined) {
      byTarget = new Map();
      this.abandonSignals.set(group, byTarget);
    }
    let controller = byTarget.get(target);
    if (controller === undefined) {
      controller = new AbortController();
      // Shared by every long poll waiting on the target (one listener each, removed when it ends):
      // more than 10 is normal, not the leak Node's EventTarget warning suspects.
      setMaxListeners(0, controller.signal);
      byTarget.set(target, controller);
    }
    return controller.signal;
  }

  private target(group: number): string {
    const leader = this.leaders.get(group);
    if (leader !== undefined) return leader;
    // Leader unknown: the first member that has not just failed (all failed: the first).
    const first = this.addresses.find((a) => !this.isSuspect(a)) ?? this.addresses[0];
    assert(first !== undefined, 'the router always knows an address');
    return first;
  }

  private setLeader(group: number, address: string): void {
    if (this.leaders.get(group) === address) return;
    this.leaders.set(group, address);
    const byTarget = this.abandonSignals.get(group);
    if (byTarget === undefined) return;
    for (const [target, controller] of byTarget) {
      if (target === address) continue;
      byTarget.delete(target);
      controller.abort(new DsyncError(ErrorCode.NOT_LEADER, `the leader of group ${group} moved to ${address}`, { leaderAddress: address }));
    }
  }

  private isSuspect(address: string): boolean {
    const until = this.suspects.get(address);
    if (until === undefined) return false;
    if (until > this.clock.nowMs()) return true;
    this.suspects.delete(address);
    return false;
  }

  private learn(address: string): void {
    if (address !== '' && !this.addresses.includes(address)) this.addresses.push(address);
  }

  /** Moves a failing address to the back so the next attempt tries another node first. */
  private rotateAway(address: string): void {
    const i = this.addresses.indexOf(address);
    if (i >= 0 && this.addresses.length > 1) {
      this.addresses.splice(i, 1);
      this.addresses.push(address);
    }
  }
}

/** `p`, or a rejection with `timeout()` after `ms` on `clock` (p keeps running; its outcome is then ignored). */
function withDeadline<T>(clock: ClientClock, p: Promise<T>, ms: number, timeout: () => DsyncError): Promise<T> {
  if (!Number.isFinite(ms)) return p;
  return new Promise<T>((resolve, reject) => {
    const cancel = clock.after(ms, () => reject(timeout()));
    p.then((v) => { cancel(); resolve(v); }, (err: unknown) => { cancel(); reject(err); });
  });
}
