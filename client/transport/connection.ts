// One client connection to one node: hello handshake, pipelined requests
// matched by request id (answers may come back in any order), per-request
// deadlines swept by one timer, and push frames routed to listeners.

import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { protocolVersion } from '../../core/constants.js';
import { DsyncError, ErrorCode, isErrorCode, type ProtocolError } from '../../protocol/errors.js';
import { FrameDecoder, FrameType, Opcode, opcodeName } from '../../protocol/frame.js';
import { schema } from '../../protocol/index.js';
import { FrameWriter } from '../../protocol/writer.js';

interface Pending {
  readonly opcode: number;
  readonly deadlineMs: number;
  resolve(payload: Uint8Array): void;
  reject(err: DsyncError): void;
}

/** How often request deadlines are checked; a timeout fires at most this late. */
const deadlineSweepMs = 50;
const requestIdMax = 0xffff_ffff;

export type PushListener = (opcode: number, requestId: number, payload: Uint8Array) => void;

/** What the Router uses of a connection to one node (NodeConnection over TCP; the simulator's over virtual links). */
export interface ClientConnection {
  readonly address: string;
  /** The node's hello answer (its members are learned); null until the hello completes. */
  readonly hello: ReturnType<typeof schema.HelloReply.decode> | null;
  readonly isOpen: boolean;
  /** One request; resolves with the answer's payload or rejects with a DsyncError (TIMEOUT, CONNECTION_CLOSED, the answer's error, ...). */
  request(opcode: number, payload: Uint8Array, timeoutMs: number, signal?: AbortSignal): Promise<Uint8Array>;
  /** fn once when the connection closes (at once when it is closed already). */
  onClose(fn: (err: DsyncError) => void): void;
  close(): void;
}

/** TLS to nodes started with tls-cert (the cluster CA verifies them; host names are checked as usual). */
export interface ClientTlsOptions {
  /** PEM CA certificate(s) that signed the nodes' certificates. */
  readonly ca: string | Buffer;
  /** A client certificate and key, if the operator hands them out (nodes accept clients without). */
  readonly cert?: string | Buffer;
  readonly key?: string | Buffer;
  /** Name to check the node's certificate against when it differs from the address's host. */
  readonly servername?: string;
}

export interface ConnectOptions {
  readonly connectTimeoutMs: number;
  readonly name: string;
  readonly onPush?: PushListener;
  /** Sent in the hello to nodes that ask for tokens. Never logged. */
  readonly token?: string;
  readonly tls?: ClientTlsOptions;
}

/** Opens a connection and completes its hello; rejects with a DsyncError (UNAVAILABLE, TIMEOUT) on failure. */
export type ConnectionFactory = (address: string, opts: ConnectOptions) => Promise<ClientConnection>;

export class NodeConnection implements ClientConnection {
  private readonly pending = new Map<number, Pending>();
  private nextRequestId = 1;
  private sweepTimer: NodeJS.Timeout | null = null;
  private closedError: DsyncError | null = null;
  private readonly writer: FrameWriter;
  private readonly closeListeners: ((err: DsyncError) => void)[] = [];
  /** The node's hello answer: its id and the members it knows. */
  hello: ReturnType<typeof schema.HelloReply.decode> | null = null;
  /** Whether any byte came back yet: the first one tells a dsync port from another protocol. */
  private sawBytes = false;

  private constructor(private readonly socket: Socket, readonly address: string, private readonly onPush: PushListener) {
    this.writer = new FrameWriter({ write: (chunk) => socket.write(chunk) });
    const decoder = new FrameDecoder({
      frame: (type, opcode, requestId, payload) => this.onFrame(type, opcode, requestId, payload),
      error: (err: ProtocolError, requestId: number) => {
        const cause = new DsyncError(err.code, `node ${address} sent malformed bytes: ${err.message}`);
        // A non-fatal error (e.g. a push with an opcode this client does not know) spoils one frame, not the stream.
        if (err.fatal) this.fail(cause);
        else this.rejectOne(requestId, cause);
      },
    });
    socket.on('data', (chunk: Buffer) => {
      if (this.hello === null && !this.sawBytes && chunk.length > 0) {
        this.sawBytes = true;
        const other = notDsync(chunk, address);
        if (other !== null) {
          this.fail(other);
          return;
        }
      }
      decoder.push(chunk);
    });
    socket.on('error', (err) => this.fail(new DsyncError(ErrorCode.CONNECTION_CLOSED, `connection to ${address} failed: ${err.message}`)));
    socket.on('close', () => this.fail(new DsyncError(ErrorCode.CONNECTION_CLOSED, `connection to ${address} closed`)));
  }

  /** Connects and completes the hello; rejects with a DsyncError on failure or timeout. */
  static async open(address: string, opts: ConnectOptions): Promise<NodeConnection> {
    const { host, port } = parseAddress(address);
    const tls = opts.tls;
    const socket: Socket = tls === undefined ? connect({ host, port })
      : tlsConnect({ host, port, ca: tls.ca, ...(tls.cert === undefined ? {} : { cert: tls.cert }),
        ...(tls.key === undefined ? {} : { key: tls.key }), ...(tls.servername === undefined ? {} : { servername: tls.servername }) });
    socket.setNoDelay(true);
    const conn = new NodeConnection(socket, address, opts.onPush ?? (() => {}));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new DsyncError(ErrorCode.TIMEOUT, `could not connect to ${address} within ${opts.connectTimeoutMs} ms`));
      }, opts.connectTimeoutMs);
      socket.once(tls === undefined ? 'connect' : 'secureConnect', () => { clearTimeout(timer); resolve(); });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(new DsyncError(ErrorCode.UNAVAILABLE, `cannot connect to ${address}: ${err.message}`));
      });
    });
    const reply = await conn.request(Opcode.Hello, schema.Hello.encode({ role: schema.Role.ROLE_CLIENT, protocolVersion,
      name: opts.name, credentials: opts.token ?? '' }).finish(), opts.connectTimeoutMs);
    conn.hello = schema.HelloReply.decode(reply);
    return conn;
  }

  get isOpen(): boolean {
    return this.closedError === null;
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  onClose(fn: (err: DsyncError) => void): void {
    if (this.closedError !== null) fn(this.closedError);
    else this.closeListeners.push(fn);
  }

  /**
   * Sends one request; resolves with the answer's payload or rejects with a DsyncError.
   * An abort (e.g. the router learned the leader moved) stops waiting for the answer and
   * rejects with the signal's reason when it is a DsyncError, else with CANCELLED.
   */
  request(opcode: number, payload: Uint8Array, timeoutMs: number, signal?: AbortSignal): Promise<Uint8Array> {
    if (this.closedError !== null) return Promise.reject(this.closedError);
    if (signal?.aborted === true) return Promise.reject(abortError(signal, opcode));
    const requestId = this.allocateRequestId();
    if (signal === undefined) {
      // The common case, without the abort listener's closures.
      return new Promise<Uint8Array>((resolve, reject) => {
        this.pending.set(requestId, { opcode, deadlineMs: Date.now() + timeoutMs, resolve, reject });
        this.send(opcode, requestId, payload);
      });
    }
    return new Promise<Uint8Array>((resolve, reject) => {
      const onAbort = (): void => this.rejectOne(requestId, abortError(signal as AbortSignal, opcode));
      signal?.addEventListener('abort', onAbort, { once: true });
      const done = (): void => signal?.removeEventListener('abort', onAbort);
      this.pending.set(requestId, { opcode, deadlineMs: Date.now() + timeoutMs,
        resolve: (p) => { done(); resolve(p); }, reject: (e) => { done(); reject(e); } });
      this.send(opcode, requestId, payload);
    });
  }

  /** Queues a request frame (written with the rest of this turn's) and makes sure deadlines are swept. */
  private send(opcode: number, requestId: number, payload: Uint8Array): void {
    this.writer.send(FrameType.Request, opcode, requestId, payload);
    if (this.sweepTimer === null) {
      this.sweepTimer = setInterval(() => this.sweepDeadlines(), deadlineSweepMs);
      this.sweepTimer.unref();
    }
  }

  close(): void {
    this.fail(new DsyncError(ErrorCode.CONNECTION_CLOSED, `connection to ${this.address} closed by the client`));
  }

  private allocateRequestId(): number {
    // Skip ids still in use after a wrap-around (only possible with ~4 billion requests).
    for (;;) {
      const id = this.nextRequestId;
      this.nextRequestId = id === requestIdMax ? 1 : id + 1;
      if (!this.pending.has(id)) return id;
    }
  }

  private onFrame(type: FrameType, opcode: number, requestId: number, payload: Uint8Array): void {
    if (type === FrameType.Push) {
      this.onPush(opcode, requestId, payload);
      return;
    }
    const p = this.pending.get(requestId);
    if (p === undefined) return; // answered after its deadline: already rejected
    this.pending.delete(requestId);
    if (type === FrameType.Error) {
      p.reject(decodeError(payload, p.opcode));
      return;
    }
    p.resolve(payload);
  }

  private rejectOne(requestId: number, err: DsyncError): void {
    const p = this.pending.get(requestId);
    if (p === undefined) return;
    this.pending.delete(requestId);
    p.reject(err);
  }

  private sweepDeadlines(): void {
    const now = Date.now();
    for (const [id, p] of this.pending) {
      if (p.deadlineMs <= now) {
        this.pending.delete(id);
        p.reject(new DsyncError(ErrorCode.TIMEOUT, `${opcodeName(p.opcode)} to ${this.address} got no answer in time`));
      }
    }
    if (this.pending.size === 0 && this.sweepTimer !== null) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = null;
    }
  }

  private fail(err: DsyncError): void {
    if (this.closedError !== null) return;
    this.closedError = err;
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    this.writer.close();
    this.socket.destroy();
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    for (const fn of this.closeListeners.splice(0)) fn(err);
  }
}

/**
 * A dsync frame starts with its length, big-endian, below 2^24 (frameBytesMax): a first byte
 * other than 0 is another protocol. Names it (HTTP, a dsync console, other text) instead of
 * a "frame of 1213486160 bytes" error.
 */
function notDsync(first: Buffer, address: string): DsyncError | null {
  if (first[0] === 0) return null;
  const text = first.subarray(0, 80).toString('latin1');
  const line = text.split(/\r?\n/)[0] ?? '';
  const what = text.startsWith('HTTP/') ? 'it answered like HTTP'
    : /^dsync node \S+ console/.test(line) ? 'it is a dsync console port (the client port is the console port - 2000)'
      : /^[\x20-\x7e]+$/.test(line) ? `it answered "${line}"` : 'it answered with bytes that are not dsync frames';
  return new DsyncError(ErrorCode.BAD_FRAME, `${address} is not a dsync client port; ${what}`);
}

function abortError(signal: AbortSignal, opcode: number): DsyncError {
  const reason: unknown = signal.reason;
  return reason instanceof DsyncError ? reason : new DsyncError(ErrorCode.CANCELLED, `${opcodeName(opcode)} was abandoned`);
}

export function decodeError(payload: Uint8Array, opcode: number): DsyncError {
  try {
    const e = schema.ErrorReply.decode(payload);
    const code = isErrorCode(e.code) ? e.code : ErrorCode.INTERNAL;
    return new DsyncError(code, e.message, { leaderAddress: e.leaderAddress, leaderId: e.leaderId, retryAfterMs: e.retryAfterMs });
  } catch {
    return new DsyncError(ErrorCode.BAD_PAYLOAD, `undecodable error answer to ${opcodeName(opcode)}`);
  }
}

export function parseAddress(address: string): { host: string; port: number } {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(address.trim());
  const port = m === null ? NaN : Number(m[2]);
  if (m === null || !(port > 0 && port <= 65535)) {
    throw new DsyncError(ErrorCode.BAD_REQUEST, `"${address}" is not a host:port address`);
  }
  return { host: m[1] === '' ? '127.0.0.1' : m[1]!, port };
}
