// Typed errors with stable string codes, shared by server and client (undici's
// UND_ERR_* style). A code is part of the wire contract: never rename one.

export const ErrorCode = {
  BAD_REQUEST: 'BAD_REQUEST',
  BAD_FRAME: 'BAD_FRAME',
  BAD_VERSION: 'BAD_VERSION',
  BAD_PAYLOAD: 'BAD_PAYLOAD',
  FRAME_TOO_LARGE: 'FRAME_TOO_LARGE',
  UNKNOWN_OPCODE: 'UNKNOWN_OPCODE',
  HELLO_REQUIRED: 'HELLO_REQUIRED',
  TOO_MANY_REQUESTS: 'TOO_MANY_REQUESTS',
  NOT_LEADER: 'NOT_LEADER',
  UNAVAILABLE: 'UNAVAILABLE',
  TIMEOUT: 'TIMEOUT',
  NOT_FOUND: 'NOT_FOUND',
  DEADLOCK: 'DEADLOCK',
  LOCK_TIMEOUT: 'LOCK_TIMEOUT',
  WOULD_BLOCK: 'WOULD_BLOCK',
  SESSION_EXPIRED: 'SESSION_EXPIRED',
  TOO_MANY_WAITERS: 'TOO_MANY_WAITERS',
  TOO_MANY_LOCKS: 'TOO_MANY_LOCKS',
  STALE_REQUEST: 'STALE_REQUEST',
  UNAUTHORIZED: 'UNAUTHORIZED',
  /** Authenticated, but the credential's role may not do this (a read-only client writing, a non-admin force-releasing). */
  FORBIDDEN: 'FORBIDDEN',
  /** The node holds as many connections as it is configured for (max-connections); try another node or later. */
  TOO_MANY_CONNECTIONS: 'TOO_MANY_CONNECTIONS',
  CONNECTION_CLOSED: 'CONNECTION_CLOSED',
  CANCELLED: 'CANCELLED',
  /** An administrator took the lock away (force-release); the holder must stop using it. */
  FORCE_RELEASED: 'FORCE_RELEASED',
  /** A membership change refused: it would leave group 0 without a quorum of reachable voters. */
  WOULD_LOSE_QUORUM: 'WOULD_LOSE_QUORUM',
  /** This node id was removed from the cluster: it may not take part or rejoin under that id. */
  MEMBER_REMOVED: 'MEMBER_REMOVED',
  /**
   * A node (a peer link or a join) speaks a storage/snapshot feature version below the
   * cluster version: it could not read the cluster's snapshots. Upgrade it.
   */
  FEATURE_VERSION: 'FEATURE_VERSION',
  INTERNAL: 'INTERNAL',
  /**
   * An ack, nack or extend named an attempt that is no longer current: the message was
   * handed out again (or, for extend, its deadline passed). Another consumer may be
   * working on it; this one should stop.
   */
  LATE_ACK: 'LATE_ACK',
  /** A message larger than the queue's limit (queueMessageBytesMax). */
  MESSAGE_TOO_LARGE: 'MESSAGE_TOO_LARGE',
  /** Something with that name exists already (a topic). */
  ALREADY_EXISTS: 'ALREADY_EXISTS',
  /** A publish or ack carried a lock's fencing token older than the newest the partition has seen for that lock. */
  FENCED: 'FENCED',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const knownCodes = new Set<string>(Object.values(ErrorCode));
export function isErrorCode(s: string): s is ErrorCode {
  return knownCodes.has(s);
}

export interface DsyncErrorDetails {
  /** NOT_LEADER: where the leader can be reached, when known. */
  readonly leaderAddress?: string;
  readonly leaderId?: string;
  /** Overload: retry after about this long. */
  readonly retryAfterMs?: number;
  /** What led to this error (e.g. CANCELLED: the AbortSignal's reason); becomes `error.cause`. */
  readonly cause?: unknown;
}

/** The one error type of dsync: a stable code plus a message a person can act on. */
export class DsyncError extends Error {
  override name = 'DsyncError';
  readonly code: ErrorCode;
  readonly leaderAddress: string;
  readonly leaderId: string;
  readonly retryAfterMs: number;

  constructor(code: ErrorCode, message: string, details: DsyncErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.code = code;
    this.leaderAddress = details.leaderAddress ?? '';
    this.leaderId = details.leaderId ?? '';
    this.retryAfterMs = details.retryAfterMs ?? 0;
  }
}

/** Malformed bytes on the wire: bad length, oversized frame, unknown version/opcode, undecodable payload. */
export class ProtocolError extends DsyncError {
  override name = 'ProtocolError';
  /** A fatal error means the byte stream can no longer be trusted: close the connection. */
  readonly fatal: boolean;

  constructor(code: ErrorCode, message: string, fatal: boolean) {
    super(code, message);
    this.fatal = fatal;
  }
}
