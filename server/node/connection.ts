// One accepted TCP connection: decodes frames incrementally, requires a hello
// first, enforces per-connection limits (pending requests, idle time, write
// queue) and applies backpressure (stop reading while the peer does not drain).

import type { Socket } from 'node:net';
import { assert } from '../../core/assert.js';
import { connectionIdleMsMax, connectionWriteQueueBytesMax, featureVersionBase, helloTimeoutMs, overloadRetryAfterMs, pendingRequestsPerConnectionMax,
  protocolVersion } from '../../core/constants.js';
import { DsyncError, ErrorCode, ProtocolError } from '../../protocol/errors.js';
import { FrameDecoder, type FrameSink, FrameType, Opcode, opcodeName } from '../../protocol/frame.js';
import { schema } from '../../protocol/index.js';
import { FrameWriter } from '../../protocol/writer.js';
import type { Logger } from './log.js';
import { latencyTrace } from './latency-trace.js';
import { type Credential, RateBucket } from './security.js';
import { spokenFeatureVersion } from './version.js';

export type ConnectionRole = 'pending' | 'client' | 'peer';

export interface ConnectionOwner {
  readonly nodeId: string;
  readonly log: Logger;
  /** Answer to a client's hello: who we are and how to reach the members. */
  helloReply(): Uint8Array;
  /** A request (or push) from an authenticated connection. */
  dispatch(conn: Connection, type: FrameType, opcode: number, requestId: number, payload: Uint8Array): void;
  closed(conn: Connection): void;
  /** A peer introduced itself (its id and advertised client address); an error refuses the link with it. */
  peerHello(conn: Connection): DsyncError | null | void;
  /** A handler threw something other than a DsyncError: a bug (e.g. an AssertionError); stop the node. */
  fatal(message: string, err: unknown): void;
  /**
   * Checks a hello's proof of identity (token, peer certificate) before anything is
   * served; sets conn.credential. An error refuses the connection with it. Absent: open node.
   */
  authenticate?(conn: Connection, hello: { readonly name: string; readonly credentials: string }): DsyncError | null;
  /** Requests per second one connection may send; 0 or absent = unlimited. */
  readonly requestRatePerConnection?: number;
  /** Told of each answered request (metrics): 'OK' or the error code, seconds since it arrived. */
  requestAnswered?(opcode: number, code: string, seconds: number): void;
}

let nextConnectionId = 1;

export class Connection implements FrameSink {
  readonly id = nextConnectionId++;
  role: ConnectionRole = 'pending';
  /** Client name or peer node id from the hello. */
  name = '';
  /** Peers: the client address the peer advertised. */
  advertise = '';
  /** Peers: the feature version the peer said it speaks (featureVersionBase when it did not say). */
  featureVersion = featureVersionBase;
  private readonly decoder: FrameDecoder;
  private readonly writer: FrameWriter;
  private pendingRequests = 0;
  private helloTimer: NodeJS.Timeout | null;
  private isClosed = false;
  private readonly closeListeners = new Set<() => void>();
  /** Who the hello's token says this is (null when the node asks for none). */
  credential: Credential | null = null;
  private readonly rate: RateBucket | null;
  /**
   * Arrival time (performance.now() ms) of each pending request, for the latency metric: one
   * in these two fields, the others in arrivedMs. A connection with one request at a time
   * (the usual client) then never touches the Map, whose every delete down to empty
   * allocated a new table.
   */
  private soleArrivedRequestId = -1;
  private soleArrivedMs = 0;
  private readonly arrivedMs = new Map<number, number>();

  constructor(readonly socket: Socket, private readonly owner: ConnectionOwner) {
    const perSecond = owner.requestRatePerConnection ?? 0;
    this.rate = perSecond > 0 ? new RateBucket(perSecond, performance.now()) : null;
    this.decoder = new FrameDecoder(this);
    this.writer = new FrameWriter({ write: (chunk) => this.writeToSocket(chunk) });
    socket.setNoDelay(true);
    socket.setTimeout(connectionIdleMsMax);
    socket.on('data', (chunk: Buffer) => this.decoder.push(chunk));
    socket.on('timeout', () => this.close('idle timeout'));
    socket.on('drain', () => socket.resume());
    socket.on('error', (err) => owner.log.debug('connection error', { conn: this.id, err: err.message }));
    socket.on('close', () => this.onSocketClosed());
    this.helloTimer = setTimeout(() => this.close('no hello within the handshake timeout'), helloTimeoutMs);
    this.helloTimer.unref();
  }

  get closed(): boolean {
    return this.isClosed;
  }

  get remoteAddress(): string {
    return `${this.socket.remoteAddress ?? '?'}:${this.socket.remotePort ?? '?'}`;
  }

  /** Runs `fn` once when the connection closes (e.g. to requeue a consumer's deliveries). */
  onClose(fn: () => void): () => void {
    if (this.isClosed) {
      fn();
      return () => {};
    }
    this.closeListeners.add(fn);
    return () => this.closeListeners.delete(fn);
  }

  // ---- FrameSink ----

  frame(type: FrameType, opcode: number, requestId: number, payload: Uint8Array): void {
    // Frames that arrived in the same chunk as a refused hello (or after any close) are never served.
    if (this.isClosed) return;
    latencyTrace?.mark('frameIn', this.role === 'peer' ? 1 : 0);
    if (this.role === 'pending') {
      this.handleHello(type, opcode, requestId, payload);
      return;
    }
    if (type === FrameType.Request) {
      const waitMs = this.rate?.take(performance.now()) ?? 0;
      if (waitMs > 0) {
        // Refused before it was counted, like the pending bound below.
        this.sendError(requestId, opcode, new DsyncError(ErrorCode.TOO_MANY_REQUESTS,
          `this connection is over its rate of ${this.owner.requestRatePerConnection ?? 0} requests/s; retry in ${waitMs} ms`,
          { retryAfterMs: waitMs }));
        return;
      }
      if (this.pendingRequests >= pendingRequestsPerConnectionMax) {
        // Refused before it was counted: answered without touching the pending count.
        this.sendError(requestId, opcode, new DsyncError(ErrorCode.TOO_MANY_REQUESTS,
          `more than ${pendingRequestsPerConnectionMax} requests pending on this connection; wait for answers`,
          { retryAfterMs: overloadRetryAfterMs }));
        return;
      }
      this.pendingRequests++;
      if (this.soleArrivedRequestId < 0) {
        this.soleArrivedRequestId = requestId;
        this.soleArrivedMs = performance.now();
      } else {
        this.arrivedMs.set(requestId, performance.now());
      }
    } else if (type !== FrameType.Push) {
      // Never counted as a request, so not answered through replyError: that would take
      // one off another request's count, and that request's answer would then trip the
      // pending-count assertion and stop the node (found by test/fuzz/live-node).
      this.sendError(requestId, opcode, new ProtocolError(ErrorCode.BAD_FRAME, 'clients may only send requests and pushes', false));
      return;
    }
    try {
      this.owner.dispatch(this, type, opcode, requestId, payload);
    } catch (err) {
      // Operating errors arrive as DsyncError answers, never as exceptions here: anything
      // thrown is a broken invariant, and a node that keeps going after one can corrupt
      // state or vote wrongly. Stop it (crash-only), never swallow.
      this.owner.fatal(`handler for ${opcodeName(opcode)} threw on connection ${this.id} (${this.role} ${this.name})`, err);
    }
  }

  error(err: ProtocolError, requestId: number): void {
    if (err.fatal) {
      // Tell the peer why, then close: the byte stream can no longer be trusted.
      this.sendError(requestId, Opcode.None, err);
      this.writer.flush();
      this.close(err.message);
      return;
    }
    this.sendError(requestId, Opcode.None, err);
  }

  // ---- replies ----

  /** `afterTask`: written once the current task ends (FrameWriter.sendAfterTask), not at the end of the turn. */
  reply(requestId: number, opcode: number, payload: Uint8Array, afterTask = false): void {
    this.answered(requestId, opcode, 'OK');
    if (afterTask) this.writer.sendAfterTask(FrameType.Response, opcode, requestId, payload);
    else this.writer.send(FrameType.Response, opcode, requestId, payload);
  }

  replyError(requestId: number, opcode: number, err: DsyncError, afterTask = false): void {
    this.answered(requestId, opcode, err.code);
    this.sendError(requestId, opcode, err, afterTask);
  }

  /** Number of requests dispatched and not answered yet (bounded by pendingRequestsPerConnectionMax). */
  get pending(): number {
    return this.pendingRequests;
  }

  /** One counted request got its one answer. */
  private answered(requestId: number, opcode: number, code: string): void {
    assert(this.pendingRequests > 0, `connection ${this.id}: an answer without a pending request`);
    this.pendingRequests--;
    let arrived: number | undefined;
    if (requestId === this.soleArrivedRequestId) {
      arrived = this.soleArrivedMs;
      this.soleArrivedRequestId = -1;
    } else {
      arrived = this.arrivedMs.get(requestId);
      if (arrived === undefined) return;
      this.arrivedMs.delete(requestId);
    }
    this.owner.requestAnswered?.(opcode, code, (performance.now() - arrived) / 1000);
  }

  /** Server-initiated frame (lock grant, raft batch); not tied to the pending count. */
  push(opcode: number, requestId: number, payload: Uint8Array): void {
    this.writer.send(FrameType.Push, opcode, requestId, payload);
  }

  /** Tells the other side why (an error frame about no request), then closes. */
  refuse(err: DsyncError): void {
    this.sendError(0, Opcode.None, err);
    this.close(err.message);
  }

  close(reason: string): void {
    if (this.isClosed) return;
    this.owner.log.debug('closing connection', { conn: this.id, reason });
    this.writer.flush();
    this.socket.end();
    this.socket.destroySoon();
    // Make sure a peer that never reads cannot keep the socket alive.
    setTimeout(() => this.socket.destroy(), 1000).unref();
    this.onSocketClosed();
  }

  private sendError(requestId: number, opcode: number, err: DsyncError, afterTask = false): void {
    const payload = schema.ErrorReply.encode({ code: err.code, message: err.message, leaderAddress: err.leaderAddress,
      leaderId: err.leaderId, retryAfterMs: err.retryAfterMs }).finish();
    if (afterTask) this.writer.sendAfterTask(FrameType.Error, opcode, requestId, payload);
    else this.writer.send(FrameType.Error, opcode, requestId, payload);
  }

  private handleHello(type: FrameType, opcode: number, requestId: number, payload: Uint8Array): void {
    if (type !== FrameType.Request || opcode !== Opcode.Hello) {
      this.sendError(requestId, opcode, new ProtocolError(ErrorCode.HELLO_REQUIRED, 'the first frame on a connection must be a hello', true));
      this.close('first frame was not a hello');
      return;
    }
    let hello: ReturnType<typeof schema.Hello.decode>;
    try {
      hello = schema.Hello.decode(payload);
    } catch (err) {
      this.sendError(requestId, opcode, new ProtocolError(ErrorCode.BAD_PAYLOAD, `undecodable hello: ${(err as Error).message}`, true));
      this.close('undecodable hello');
      return;
    }
    if (hello.protocolVersion !== protocolVersion) {
      this.sendError(requestId, opcode, new ProtocolError(ErrorCode.BAD_VERSION,
        `hello asks for protocol version ${hello.protocolVersion}; this node speaks ${protocolVersion}`, true));
      this.close('protocol version mismatch');
      return;
    }
    if (this.helloTimer !== null) clearTimeout(this.helloTimer);
    this.helloTimer = null;
    this.role = hello.role === schema.Role.ROLE_PEER ? 'peer' : 'client';
    this.name = hello.name;
    this.advertise = hello.advertise;
    this.featureVersion = spokenFeatureVersion(hello.featureVersion);
    const unauthenticated = this.owner.authenticate?.(this, hello) ?? null;
    if (unauthenticated !== null) {
      this.owner.log.warn('refused a connection that did not authenticate', { conn: this.id, role: this.role, name: hello.name,
        from: this.remoteAddress, why: unauthenticated.message });
      this.role = 'pending';
      this.sendError(requestId, Opcode.Hello, unauthenticated);
      this.close(unauthenticated.message);
      return;
    }
    if (this.role === 'peer') {
      const refused = this.owner.peerHello(this);
      if (refused !== null && refused !== undefined) {
        this.sendError(requestId, Opcode.Hello, refused);
        this.close(refused.message);
        return;
      }
    }
    // Peers talk continuously (heartbeats); an idle peer link is a dead one.
    this.writer.send(FrameType.Response, Opcode.Hello, requestId, this.owner.helloReply());
  }

  private writeToSocket(chunk: Uint8Array): boolean {
    if (this.socket.destroyed) return false;
    latencyTrace?.mark('writeOut', this.role === 'peer' ? 1 : 0);
    const ok = this.socket.write(chunk);
    if (!ok) {
      if (this.socket.writableLength > connectionWriteQueueBytesMax) {
        this.owner.log.warn('closing a connection that does not read its replies', { conn: this.id, queuedBytes: this.socket.writableLength });
        this.socket.destroy();
        return false;
      }
      // Backpressure: stop reading requests until the peer drains what we owe it.
      this.socket.pause();
    }
    return ok;
  }

  private onSocketClosed(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    if (this.helloTimer !== null) clearTimeout(this.helloTimer);
    this.writer.close();
    this.owner.closed(this);
    const listeners = [...this.closeListeners];
    this.closeListeners.clear();
    for (const fn of listeners) fn();
  }
}
