// The client library's network under the simulator: SimConnection is the
// ClientConnection (client/transport/connection.ts) the shipped Router opens
// through its connection factory, and at the same time the node's ClientLink for
// it (SimNode.dispatch). Frames travel in order per direction (one TCP stream)
// with a seeded delay; a client↔node partition stalls them (TCP retransmits) until
// it heals; a crashed node or a reset closes the connection. Request deadlines
// run on the client's virtual clock, so the real Router and LockClient run here.

import { assert } from '../../core/assert.js';
import { protocolVersion } from '../../core/constants.js';
import type { Xoshiro128 } from '../../core/prng.js';
import type { ClientConnection, ConnectionFactory, ConnectOptions, PushListener } from '../../client/transport/connection.js';
import { decodeError } from '../../client/transport/connection.js';
import type { ClientClock } from '../../client/transport/time.js';
import { DsyncError, ErrorCode } from '../../protocol/errors.js';
import { Opcode, opcodeName } from '../../protocol/frame.js';
import { schema } from '../../protocol/index.js';
import type { SimCluster, SimLinkEnd, SimNode } from './sim-cluster.js';
import { NodeTime, type SimWorld } from './world.js';

/** The address a simulated node answers to (as SimNode.notLeader names leaders). */
export const simAddress = (node: SimNode): string => `sim://${node.id}`;

export interface ClientNetOptions {
  readonly delayMsMin: number;
  readonly delayMsMax: number;
  /** How long a refused connect (node down) takes to fail. */
  readonly refuseMs: number;
}

/** A client process's clock: virtual time at rate 1, never paused, never crashed. */
export function clientClock(world: SimWorld): ClientClock {
  return new NodeTime(world, { alive: () => true, pausedUntilMs: 0 }, 1, 1, 0);
}

/** The network between simulated clients and nodes: per (client, node) blocks, delays, resets. */
export class ClientNet {
  /** blocked[client][node]: frames between them stall (both directions). */
  private readonly blocked = new Map<number, boolean[]>();
  private readonly conns = new Set<SimConnection>();
  connectionsOpened = 0;
  resets = 0;

  constructor(
    readonly cluster: SimCluster,
    readonly prng: Xoshiro128,
    readonly opts: ClientNetOptions,
  ) {
    assert(opts.delayMsMin >= 0 && opts.delayMsMax >= opts.delayMsMin, 'client delay range');
  }

  isBlocked(client: number, node: number): boolean {
    return this.blocked.get(client)?.[node] === true;
  }

  /** Cuts (or heals) `client` from the listed nodes. */
  setBlocked(client: number, nodes: readonly number[], on: boolean): void {
    let row = this.blocked.get(client);
    if (row === undefined) {
      row = new Array<boolean>(this.cluster.nodes.length).fill(false);
      this.blocked.set(client, row);
    }
    for (const n of nodes) row[n] = on;
    this.cluster.note(`client ${client} ${on ? 'cut from' : 'reconnected to'} ${nodes.map((n) => this.cluster.node(n).id).join(',')}`);
    if (!on) for (const c of this.conns) if (c.client === client) c.flush();
  }

  healAll(): void {
    for (const [client, row] of this.blocked) {
      const cut = row.flatMap((b, i) => (b ? [i] : []));
      if (cut.length > 0) this.setBlocked(client, cut, false);
    }
  }

  /** Resets every open connection of `client` (a NAT or load balancer dropping its flows). */
  reset(client: number): void {
    for (const c of [...this.conns]) if (c.client === client) {
      this.resets++;
      c.reset();
    }
  }

  forget(c: SimConnection): void {
    this.conns.delete(c);
  }

  delayMs(): number {
    return this.prng.int(this.opts.delayMsMin, this.opts.delayMsMax);
  }

  /** The Router's connection factory for client number `client`. */
  factory(client: number, clock: ClientClock): ConnectionFactory {
    return (address, opts) => this.open(client, clock, address, opts);
  }

  private open(client: number, clock: ClientClock, address: string, opts: ConnectOptions): Promise<ClientConnection> {
    const node = this.cluster.nodes.find((n) => simAddress(n) === address);
    if (node === undefined) return Promise.reject(new DsyncError(ErrorCode.UNAVAILABLE, `cannot connect to ${address}: no such node`));
    if (!node.up) {
      // Connection refused: nothing listens on the port.
      return new Promise((_resolve, reject) => {
        clock.after(this.opts.refuseMs, () => reject(new DsyncError(ErrorCode.UNAVAILABLE, `cannot connect to ${address}: connection refused`)));
      });
    }
    this.connectionsOpened++;
    const conn = new SimConnection(this, client, node, clock, opts.onPush ?? (() => {}));
    this.conns.add(conn);
    // The hello, answered by the node process (a paused node answers when it resumes), as NodeConnection.open does it.
    return conn.request(Opcode.Hello, schema.Hello.encode({ role: schema.Role.ROLE_CLIENT, protocolVersion, name: opts.name }).finish(), opts.connectTimeoutMs)
      .then((reply) => {
        conn.hello = schema.HelloReply.decode(reply);
        return conn;
      }, (err: unknown) => {
        conn.close();
        throw err instanceof DsyncError && err.code === ErrorCode.TIMEOUT
          ? new DsyncError(ErrorCode.TIMEOUT, `could not connect to ${address} within ${opts.connectTimeoutMs} ms`) : err;
      });
  }
}

interface Pending {
  readonly opcode: number;
  resolve(payload: Uint8Array): void;
  reject(err: DsyncError): void;
}

/** A frame on its way; `deliver` runs at the far end unless the connection closed meanwhile. */
interface Frame {
  readonly deliver: () => void;
}

/** One direction of the stream: in order, and stalled while the client↔node path is cut. */
class Pipe {
  private lastAtMs = 0;
  private readonly stalled: Frame[] = [];

  constructor(private readonly conn: SimConnection) {}

  send(f: Frame): void {
    const world = this.conn.net.cluster.world;
    const atMs = Math.max(world.nowMs + this.conn.net.delayMs(), this.lastAtMs);
    this.lastAtMs = atMs;
    world.at(atMs - world.nowMs, () => this.arrive(f));
  }

  private arrive(f: Frame): void {
    if (this.conn.closed) return;
    if (this.stalled.length > 0 || this.conn.cut) {
      this.stalled.push(f);
      return;
    }
    f.deliver();
  }

  /** The path healed: what stalled goes through, in order, after one more delay. */
  flush(): void {
    const frames = this.stalled.splice(0);
    for (const f of frames) this.send(f);
  }
}

/** The node's end of a SimConnection (the ClientLink its services answer and push on). */
class NodeEnd implements SimLinkEnd {
  constructor(private readonly conn: SimConnection) {}

  get closed(): boolean {
    return this.conn.closed;
  }

  reply(requestId: number, _opcode: number, payload: Uint8Array): void {
    this.conn.reply(requestId, payload);
  }

  replyError(requestId: number, opcode: number, err: DsyncError): void {
    this.conn.replyError(requestId, opcode, err);
  }

  push(opcode: number, requestId: number, payload: Uint8Array): void {
    this.conn.push(opcode, requestId, payload);
  }

  onClose(fn: () => void): () => void {
    return this.conn.onCloseServer(fn);
  }

  serverGone(): void {
    this.conn.serverGone();
  }
}

/** Client end of one simulated TCP connection (what the Router holds); `nodeEnd` is what the node sees. */
export class SimConnection implements ClientConnection {
  readonly address: string;
  hello: ReturnType<typeof schema.HelloReply.decode> | null = null;
  /** Closed as the node sees it (no more frames in or out). */
  closed = false;
  /** Closed as the client sees it. */
  private clientClosed: DsyncError | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextRequestId = 1;
  private readonly clientCloseFns: ((err: DsyncError) => void)[] = [];
  private readonly serverCloseFns = new Set<() => void>();
  private readonly incarnation: number;
  private readonly up: Pipe;
  private readonly down: Pipe;
  readonly nodeEnd: NodeEnd;

  constructor(
    readonly net: ClientNet,
    readonly client: number,
    readonly node: SimNode,
    private readonly clock: ClientClock,
    private readonly onPush: PushListener,
  ) {
    this.address = simAddress(node);
    this.incarnation = node.incarnation;
    this.up = new Pipe(this);
    this.down = new Pipe(this);
    this.nodeEnd = new NodeEnd(this);
  }

  get cut(): boolean {
    return this.net.isBlocked(this.client, this.node.idx);
  }

  get isOpen(): boolean {
    return this.clientClosed === null;
  }

  flush(): void {
    this.up.flush();
    this.down.flush();
  }

  // ---- client end ----

  request(opcode: number, payload: Uint8Array, timeoutMs: number, signal?: AbortSignal): Promise<Uint8Array> {
    if (this.clientClosed !== null) return Promise.reject(this.clientClosed);
    if (signal?.aborted === true) return Promise.reject(abortError(signal, opcode));
    const requestId = this.nextRequestId++;
    return new Promise<Uint8Array>((resolve, reject) => {
      const onAbort = (): void => this.rejectOne(requestId, abortError(signal as AbortSignal, opcode));
      signal?.addEventListener('abort', onAbort, { once: true });
      // A long poll without a wait limit has no deadline (NodeConnection's never comes due either).
      const cancelDeadline = !Number.isFinite(timeoutMs) ? (): void => {} : this.clock.after(timeoutMs, () =>
        this.rejectOne(requestId, new DsyncError(ErrorCode.TIMEOUT, `${opcodeName(opcode)} to ${this.address} got no answer in time`)));
      const done = (): void => {
        signal?.removeEventListener('abort', onAbort);
        cancelDeadline();
      };
      this.pending.set(requestId, { opcode, resolve: (p) => { done(); resolve(p); }, reject: (e) => { done(); reject(e); } });
      const copy = payload.slice();
      this.up.send({ deliver: () => this.atNode(opcode, requestId, copy) });
    });
  }

  onClose(fn: (err: DsyncError) => void): void {
    if (this.clientClosed !== null) fn(this.clientClosed);
    else this.clientCloseFns.push(fn);
  }

  /** The client hangs up: the node sees the close after one delay. */
  close(): void {
    this.closeClientEnd(new DsyncError(ErrorCode.CONNECTION_CLOSED, `connection to ${this.address} closed by the client`));
    this.up.send({ deliver: () => this.closeNodeEnd() });
  }

  // ---- node end (through NodeEnd) ----

  reply(requestId: number, payload: Uint8Array): void {
    if (this.closed) return;
    const copy = payload.slice();
    this.down.send({ deliver: () => this.answer(requestId, (p) => p.resolve(copy)) });
  }

  replyError(requestId: number, opcode: number, err: DsyncError): void {
    if (this.closed) return;
    // On the wire: an ErrorReply, decoded by the client as NodeConnection decodes it.
    const bytes = schema.ErrorReply.encode({ code: err.code, message: err.message, leaderAddress: err.leaderAddress, leaderId: err.leaderId,
      retryAfterMs: err.retryAfterMs }).finish();
    this.down.send({ deliver: () => this.answer(requestId, (p) => p.reject(decodeError(bytes, opcode))) });
  }

  push(opcode: number, requestId: number, payload: Uint8Array): void {
    if (this.closed) return;
    const copy = payload.slice();
    this.down.send({ deliver: () => { if (this.clientClosed === null) this.onPush(opcode, requestId, copy); } });
  }

  onCloseServer(fn: () => void): () => void {
    this.serverCloseFns.add(fn);
    return () => this.serverCloseFns.delete(fn);
  }

  /** The node crashed: its end is gone; the client learns of it (RST) after one delay. */
  serverGone(): void {
    if (this.closed) return;
    this.closed = true;
    this.serverCloseFns.clear();
    this.net.forget(this);
    this.net.cluster.world.at(this.net.delayMs(), () =>
      this.closeClientEnd(new DsyncError(ErrorCode.CONNECTION_CLOSED, `connection to ${this.address} closed`)));
  }

  /** Both ends see the connection reset. */
  reset(): void {
    this.closeNodeEnd();
    this.net.cluster.world.at(this.net.delayMs(), () =>
      this.closeClientEnd(new DsyncError(ErrorCode.CONNECTION_CLOSED, `connection to ${this.address} reset`)));
  }

  // ---- inside ----

  private atNode(opcode: number, requestId: number, payload: Uint8Array): void {
    const node = this.node;
    if (!node.up || node.incarnation !== this.incarnation) {
      this.serverGone();
      return;
    }
    if (opcode === Opcode.Hello) {
      const time = node.time;
      assert(time !== null, 'an up node has a clock');
      time.gated(() => {
        if (this.closed || !node.alive(this.incarnation)) return;
        const members = this.net.cluster.nodes.map((n) => ({ id: n.id, address: simAddress(n) }));
        this.reply(requestId, schema.HelloReply.encode({ nodeId: node.id, protocolVersion, members }).finish());
      })();
      return;
    }
    node.dispatch(this.nodeEnd, opcode, requestId, payload);
  }

  private answer(requestId: number, fn: (p: Pending) => void): void {
    const p = this.pending.get(requestId);
    if (p === undefined) return; // answered after its deadline or abort: already rejected
    this.pending.delete(requestId);
    fn(p);
  }

  private rejectOne(requestId: number, err: DsyncError): void {
    this.answer(requestId, (p) => p.reject(err));
  }

  private closeNodeEnd(): void {
    if (this.closed) return;
    this.closed = true;
    this.net.forget(this);
    this.node.forgetLink(this.nodeEnd);
    const fns = [...this.serverCloseFns];
    this.serverCloseFns.clear();
    const time = this.node.time;
    if (time !== null && this.node.alive(this.incarnation)) time.defer(() => fns.forEach((fn) => fn()));
  }

  private closeClientEnd(err: DsyncError): void {
    if (this.clientClosed !== null) return;
    this.clientClosed = err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    for (const fn of this.clientCloseFns.splice(0)) fn(err);
  }
}

function abortError(signal: AbortSignal, opcode: number): DsyncError {
  const reason: unknown = signal.reason;
  return reason instanceof DsyncError ? reason : new DsyncError(ErrorCode.CANCELLED, `${opcodeName(opcode)} was abandoned`);
}
