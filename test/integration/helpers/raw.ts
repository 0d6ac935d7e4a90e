// A raw socket speaking the frame protocol byte by byte, for tests that must
// send what the Client never would (garbage, half frames, huge length
// prefixes, unknown opcodes) and see exactly which frames come back.

import { connect, type Socket } from 'node:net';
import { protocolVersion } from '../../../core/constants.js';
import { encodeFrame, FrameDecoder, FrameType, Opcode, type ProtocolError, schema } from '../../../protocol/index.js';

export interface ReceivedFrame {
  readonly type: FrameType;
  readonly opcode: number;
  readonly requestId: number;
  /** A copy (the decoder's view is only valid during the callback). */
  readonly payload: Uint8Array;
}

/** Frames received past this count are a test bug (bounds memory). */
const receivedFramesMax = 1_000_000;

export class RawConnection {
  readonly frames: ReceivedFrame[] = [];
  /** Protocol errors in what the node sent us (should stay empty). */
  readonly decodeErrors: ProtocolError[] = [];
  readonly closed: Promise<void>;
  isClosed = false;
  private waiters: (() => void)[] = [];
  private readonly decoder: FrameDecoder;

  private constructor(readonly socket: Socket) {
    this.decoder = new FrameDecoder({
      frame: (type, opcode, requestId, payload) => {
        if (this.frames.length >= receivedFramesMax) throw new Error('RawConnection: too many frames received');
        this.frames.push({ type, opcode, requestId, payload: payload.slice() });
        this.wake();
      },
      error: (err) => {
        this.decodeErrors.push(err);
        this.wake();
      },
    });
    socket.on('data', (chunk: Buffer) => this.decoder.push(chunk));
    socket.on('error', () => {
      // a reset by the node is an expected outcome for abusive input; 'close' follows
    });
    this.closed = new Promise((r) => socket.once('close', () => {
      this.isClosed = true;
      this.wake();
      r();
    }));
  }

  static open(port: number, host = '127.0.0.1'): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host, port });
      socket.setNoDelay(true);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new RawConnection(socket));
      });
      socket.once('error', reject);
    });
  }

  write(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** Sends a client hello (request id 1 by default) and waits for the node's answer. */
  async hello(requestId = 1): Promise<ReceivedFrame> {
    this.write(helloFrame(requestId));
    await this.waitFrames(this.frames.length + 1);
    const last = this.frames[this.frames.length - 1];
    if (last === undefined || last.type !== FrameType.Response || last.opcode !== Opcode.Hello) {
      throw new Error(`hello was not answered with a Hello response: ${JSON.stringify(last)}`);
    }
    return last;
  }

  /** Resolves when at least `count` frames have arrived; rejects when the socket closes first or on timeout. */
  waitFrames(count: number, timeoutMs = 10_000): Promise<ReceivedFrame[]> {
    return this.waitUntil(() => this.frames.length >= count, `${count} frames (have ${this.frames.length})`, timeoutMs, true)
      .then(() => this.frames);
  }

  /** Resolves when a frame matching `pred` has arrived; rejects when the socket closes first or on timeout. */
  waitUntilFrame(pred: (f: ReceivedFrame) => boolean, timeoutMs = 10_000): Promise<void> {
    let seen = 0;
    let found = false;
    // Scans only frames that arrived since the last check.
    return this.waitUntil(() => {
      for (; seen < this.frames.length && !found; seen++) found = pred(this.frames[seen]!);
      return found;
    }, 'a matching frame', timeoutMs, true);
  }

  /** Resolves when the node has closed the connection; rejects on timeout. */
  waitClosed(timeoutMs = 10_000): Promise<void> {
    return this.waitUntil(() => this.isClosed, 'the node to close the connection', timeoutMs, false);
  }

  destroy(): void {
    this.socket.destroy();
  }

  private waitUntil(cond: () => boolean, what: string, timeoutMs: number, failOnClose: boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const check = (): void => {
        if (cond()) {
          done();
          resolve();
        } else if (failOnClose && this.isClosed) {
          done();
          reject(new Error(`connection closed while waiting for ${what}`));
        }
      };
      const done = (): void => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
      };
      this.waiters.push(check);
      check();
    });
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }
}

export function helloFrame(requestId = 1): Uint8Array {
  return encodeFrame(FrameType.Request, Opcode.Hello, requestId,
    schema.Hello.encode({ role: schema.Role.ROLE_CLIENT, protocolVersion, name: 'raw-test' }).finish());
}

/** A RaftBatch pushed as a peer would push it. */
export function raftPush(messages: ReturnType<typeof schema.RaftMessage.create>[]): Uint8Array {
  return encodeFrame(FrameType.Push, Opcode.Raft, 0, schema.RaftBatch.encode({ messages }).finish());
}

export function pingFrame(requestId: number, payload: Uint8Array): Uint8Array {
  return encodeFrame(FrameType.Request, Opcode.Ping, requestId, schema.Ping.encode({ payload }).finish());
}

/** The code of an Error frame's payload. */
export function errorCode(frame: ReceivedFrame): string {
  return schema.ErrorReply.decode(frame.payload).code;
}
