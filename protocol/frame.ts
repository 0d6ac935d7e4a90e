// The frame format: u32 big-endian length of the rest, then a fixed 8-byte
// header (version u8, frame type u8, opcode u16 BE, request id u32 BE), then the
// protobuf payload. FrameDecoder is an incremental state machine that parses
// across chunk boundaries without concatenating, checks the length against the
// limit before buffering anything, and hands payloads on as subarray views.

import { frameBytesMax, frameHeaderBytes, frameLengthPrefixBytes, protocolVersion } from '../core/constants.js';
import { ErrorCode, ProtocolError } from './errors.js';

export const FrameType = {
  Request: 1,
  Response: 2,
  Error: 3,
  /** Server-initiated event (e.g. a lock granted to a waiter); request id names the request it concerns. */
  Push: 4,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

export const Opcode = {
  /**
   * No operation: the opcode of Error frames about the stream rather than one
   * request (bad frame, unknown opcode) and of pushes that answer nothing. Known
   * to the decoder so such frames reach the peer; no handler ever serves it.
   */
  None: 0,
  Hello: 1,
  Ping: 2,
  Status: 3,
  /** Peer-only: a RaftBatch. Sent as a Push (no answer expected). */
  Raft: 10,
  JournalAppend: 11,
  JournalInfo: 12,
  // Members service: 20-39 (group 0's membership: join, remove, list).
  MemberJoin: 20,
  MemberRemove: 21,
  MemberList: 22,
  // Locks service: 100-199 (each service owns an opcode range; the seam refuses overlaps).
  SessionOpen: 100,
  SessionKeepAlive: 101,
  SessionClose: 102,
  LockAcquire: 103,
  LockRelease: 104,
  LockDowngrade: 105,
  LockCancel: 106,
  LockForceRelease: 107,
  LockInfo: 108,
  LockList: 109,
  SessionList: 110,
  /** Push to a session's holder: a lock it held was taken away (force-release, expiry). */
  LockLost: 111,
  // Queues service: 200-299 (topics in group 0; each partition its own Raft group).
  TopicCreate: 200,
  TopicDelete: 201,
  TopicInfo: 202,
  TopicList: 203,
  /** Where a topic's partitions are: replicas, Raft group id and a leader hint per partition. */
  PartitionMap: 204,
  /** A batch of messages for ONE partition (producer id + first sequence number). */
  Publish: 205,
  Fetch: 206,
  Ack: 207,
  Nack: 208,
  Extend: 209,
  /** Peer-only push: a publish for a partition the receiver leads (a partition leader forwarding dead letters). */
  QueueForward: 210,
  /** Peer-only push: the answer to a QueueForward. */
  QueueForwardReply: 211,
  /** Move a consumer group's cursor in one partition to an offset or a time (messages are delivered again from there). */
  Replay: 212,
  /** Dead letters back to their source partition, visible only to the group that gave up on them. */
  Redrive: 213,
  /** The consistent-hash ring over group 0's voters: each member's share and the partition replicas it hosts. */
  Ring: 214,
  /** Peer-only push to group 0's leader: a partition's leader reports its group reached the placement of a move (QueueMoveDone). */
  QueueMoveDone: 215,
  /** Peer-only push: a replica installing a partition snapshot pulls the bodies it lacks (QueueCatchUpPull). */
  QueueCatchUpPull: 216,
  /** Peer-only push: records answering a QueueCatchUpPull. */
  QueueCatchUpChunk: 217,
  // Cache service: 300-399.
  CacheGet: 300,
  CacheSet: 301,
  CacheDelete: 302,
  CacheFlush: 303,
  CacheStats: 304,
  /** Peer-only: a CachePeerBatch between nodes' lines and keys' homes. Sent as a Push. */
  CachePeer: 399,
} as const;
export type Opcode = (typeof Opcode)[keyof typeof Opcode];

const opcodeNames = new Map<number, string>(Object.entries(Opcode).map(([k, v]) => [v, k]));
export function opcodeName(op: number): string {
  return opcodeNames.get(op) ?? `opcode ${op}`;
}
export function isKnownOpcode(op: number): boolean {
  return opcodeNames.has(op);
}
export function isKnownFrameType(type: number): boolean {
  return type >= FrameType.Request && type <= FrameType.Push;
}

export const frameOverheadBytes = frameLengthPrefixBytes + frameHeaderBytes;

/** Writes one frame into `out` at `offset`; returns the offset after it. `out` must have room. */
export function writeFrame(out: Uint8Array, offset: number, type: FrameType, opcode: number, requestId: number,
  payload: Uint8Array): number {
  const bodyBytes = frameHeaderBytes + payload.length;
  if (bodyBytes > frameBytesMax) {
    throw new ProtocolError(ErrorCode.FRAME_TOO_LARGE, `frame of ${bodyBytes} bytes exceeds the ${frameBytesMax}-byte limit`, false);
  }
  // Byte stores, not a DataView: this runs once per outgoing frame (a DataView per call showed in profiles).
  out[offset] = bodyBytes >>> 24;
  out[offset + 1] = bodyBytes >>> 16;
  out[offset + 2] = bodyBytes >>> 8;
  out[offset + 3] = bodyBytes;
  out[offset + 4] = protocolVersion;
  out[offset + 5] = type;
  out[offset + 6] = opcode >>> 8;
  out[offset + 7] = opcode;
  out[offset + 8] = requestId >>> 24;
  out[offset + 9] = requestId >>> 16;
  out[offset + 10] = requestId >>> 8;
  out[offset + 11] = requestId;
  out.set(payload, offset + frameOverheadBytes);
  return offset + frameOverheadBytes + payload.length;
}

/** One frame as a standalone buffer (tests, rare paths). Hot paths batch through FrameWriter. */
export function encodeFrame(type: FrameType, opcode: number, requestId: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(frameOverheadBytes + payload.length);
  writeFrame(out, 0, type, opcode, requestId, payload);
  return out;
}

export interface FrameSink {
  /** A whole, well-formed frame. `payload` is a view valid only during the call unless copied. */
  frame(type: FrameType, opcode: number, requestId: number, payload: Uint8Array): void;
  /**
   * Malformed input. Non-fatal errors (unknown opcode) concern one delimited frame, whose
   * request id is given; fatal ones (bad length/version/type) poison the stream.
   */
  error(err: ProtocolError, requestId: number): void;
}

const enum DecodeState {
  Header,
  Payload,
  Failed,
}

/**
 * Incremental frame decoder. Feed it chunks in order; it calls the sink per frame.
 * Never throws on bad input: malformed bytes become ProtocolErrors through the sink.
 */
export class FrameDecoder {
  private state = DecodeState.Header;
  /** Header bytes gathered so far (a header may straddle chunks). */
  private readonly header = new Uint8Array(frameOverheadBytes);
  private readonly headerView = new DataView(this.header.buffer);
  private headerFilled = 0;
  /** Payload assembly buffer, only used when a payload straddles chunks. */
  private payload: Uint8Array | null = null;
  private payloadFilled = 0;
  private payloadBytes = 0;
  private type: FrameType = FrameType.Request;
  private opcode = 0;
  private requestId = 0;

  constructor(private readonly sink: FrameSink, private readonly frameBytesLimit = frameBytesMax) {}

  get failed(): boolean {
    return this.state === DecodeState.Failed;
  }

  /** True when no partial frame is buffered (a clean place to stop). */
  get idle(): boolean {
    return this.state === DecodeState.Header && this.headerFilled === 0;
  }

  push(chunk: Uint8Array): void {
    let pos = 0;
    const end = chunk.length;
    while (pos < end && this.state !== DecodeState.Failed) {
      if (this.state === DecodeState.Header) {
        // Fast path: the whole header is inside this chunk and nothing is half-read.
        if (this.headerFilled === 0 && end - pos >= frameOverheadBytes) {
          this.header.set(chunk.subarray(pos, pos + frameOverheadBytes));
          pos += frameOverheadBytes;
        } else {
          const take = Math.min(frameOverheadBytes - this.headerFilled, end - pos);
          this.header.set(chunk.subarray(pos, pos + take), this.headerFilled);
          this.headerFilled += take;
          pos += take;
          if (this.headerFilled < frameOverheadBytes) return;
        }
        this.headerFilled = 0;
        if (!this.parseHeader()) return;
        if (this.payloadBytes === 0) {
          this.emit(chunk.subarray(pos, pos));
          continue;
        }
        // Zero-copy when the payload is entirely inside this chunk.
        if (end - pos >= this.payloadBytes) {
          this.emit(chunk.subarray(pos, pos + this.payloadBytes));
          pos += this.payloadBytes;
          continue;
        }
        // The payload straddles chunks: one buffer of exactly its (already bounded) size.
        // Pooled below 4 KiB (a typed array over 64 bytes costs a malloc); filled before it is emitted.
        this.payload = Buffer.allocUnsafe(this.payloadBytes);
        this.payloadFilled = 0;
        this.state = DecodeState.Payload;
      } else {
        const payload = this.payload;
        if (payload === null) throw new Error('decoder invariant: payload buffer missing');
        const take = Math.min(this.payloadBytes - this.payloadFilled, end - pos);
        payload.set(chunk.subarray(pos, pos + take), this.payloadFilled);
        this.payloadFilled += take;
        pos += take;
        if (this.payloadFilled === this.payloadBytes) {
          this.payload = null;
          this.state = DecodeState.Header;
          this.emit(payload);
        }
      }
    }
  }

  /** Validates the header just gathered; false when the stream is now failed. */
  private parseHeader(): boolean {
    const bodyBytes = this.headerView.getUint32(0);
    const version = this.header[4] ?? 0;
    const type = this.header[5] ?? 0;
    this.opcode = this.headerView.getUint16(6);
    this.requestId = this.headerView.getUint32(8);
    if (bodyBytes < frameHeaderBytes) {
      return this.fail(new ProtocolError(ErrorCode.BAD_FRAME, `frame length ${bodyBytes} is shorter than the ${frameHeaderBytes}-byte header`, true));
    }
    if (bodyBytes > this.frameBytesLimit) {
      return this.fail(new ProtocolError(ErrorCode.FRAME_TOO_LARGE, `frame of ${bodyBytes} bytes exceeds the ${this.frameBytesLimit}-byte limit`, true));
    }
    if (version !== protocolVersion) {
      return this.fail(new ProtocolError(ErrorCode.BAD_VERSION, `protocol version ${version} is not supported (this node speaks ${protocolVersion})`, true));
    }
    if (!isKnownFrameType(type)) {
      return this.fail(new ProtocolError(ErrorCode.BAD_FRAME, `unknown frame type ${type}`, true));
    }
    this.type = type as FrameType;
    this.payloadBytes = bodyBytes - frameHeaderBytes;
    return true;
  }

  private emit(payload: Uint8Array): void {
    if (!isKnownOpcode(this.opcode)) {
      // The frame is well delimited, so the stream stays usable: answer this request only.
      this.sink.error(new ProtocolError(ErrorCode.UNKNOWN_OPCODE, `unknown opcode ${this.opcode}`, false), this.requestId);
      return;
    }
    this.sink.frame(this.type, this.opcode, this.requestId, payload);
  }

  private fail(err: ProtocolError): false {
    this.state = DecodeState.Failed;
    this.payload = null;
    this.sink.error(err, this.requestId);
    return false;
  }
}
