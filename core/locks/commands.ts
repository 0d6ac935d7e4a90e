// The typed commands applied to the lock table from Raft group 0's log, and the
// values apply() returns. The server decodes entries into these; nothing here runs.

import type { ClientId, FencingToken, LogIndex, SessionId } from '../ids.js';

export type LockMode = 'shared' | 'exclusive';

/** Stamped by the leader that proposed the entry: its clock at proposal time. */
export interface Stamped {
  readonly nowMs: number;
}

/**
 * Carried by every request a client makes. A retried request (same clientId and
 * seq) is applied once: the table keeps, per client, the last applied seq and its
 * result. A client must have at most one mutating request in flight per clientId
 * (a lower seq after a higher one answers STALE_REQUEST).
 */
export interface FromClient extends Stamped {
  readonly clientId: ClientId;
  readonly seq: number;
}

export interface OpenSession extends FromClient {
  readonly kind: 'openSession';
  readonly ttlMs: number;
  /** Lock-delay (Chubby/Consul) for locks this session holds when it EXPIRES; 0 = none. */
  readonly lockDelayMs: number;
}
export interface KeepAlive extends FromClient {
  readonly kind: 'keepAlive';
  readonly session: SessionId;
}
export interface CloseSession extends FromClient {
  readonly kind: 'closeSession';
  readonly session: SessionId;
}
/** One session the leader's lease clock found expired, with the renewal it based that on. */
export interface ExpiredLease {
  readonly session: SessionId;
  /**
   * Index of the last openSession/keepAlive the leader had seen for the session.
   * If a later keepAlive was applied before this entry, the session is NOT expired.
   */
  readonly renewedIndex: LogIndex;
}
/** Proposed by the leader's LeaseClock, never by a client. */
export interface ExpireSessions extends Stamped {
  readonly kind: 'expireSessions';
  readonly sessions: readonly ExpiredLease[];
}
export interface Acquire extends FromClient {
  readonly kind: 'acquire';
  readonly session: SessionId;
  readonly lock: string;
  readonly mode: LockMode;
  /** Client-chosen, echoed in the granted/failed event; unique among the session's waits. */
  readonly requestId: string;
  /** false = tryLock: WOULD_BLOCK instead of queueing. */
  readonly wait: boolean;
  /**
   * How long the client waits (0 or absent = no limit). Replicated with the waiter so
   * whichever node leads times it out (LeaseClock, on that leader's clock).
   */
  readonly waitMs?: number;
}
export interface Release extends FromClient {
  readonly kind: 'release';
  readonly session: SessionId;
  readonly lock: string;
}
export interface Downgrade extends FromClient {
  readonly kind: 'downgrade';
  readonly session: SessionId;
  readonly lock: string;
}
/**
 * Proposed by the leader when a waiter's wait timeout fires (reason 'timeout', no
 * clientId/seq) or by the client on abort (reason 'cancelled', with clientId/seq).
 * A no-op if the request is no longer waiting: result 'granted' (with the hold's token,
 * mode and count) if it was granted and its grant is the hold's latest, so the requester
 * must release it; NOT_FOUND otherwise (never applied, already failed, or released).
 */
export interface CancelWait extends Stamped {
  readonly kind: 'cancelWait';
  readonly session: SessionId;
  readonly lock: string;
  readonly requestId: string;
  readonly reason: 'timeout' | 'cancelled';
  readonly clientId?: ClientId;
  readonly seq?: number;
}
/** Admin: every holder loses the lock at once (a 'revoked' event each); waiters are then granted. */
export interface ForceRelease extends FromClient {
  readonly kind: 'forceRelease';
  readonly lock: string;
}
/** Proposed by the leader when a lock's lock-delay has passed. */
export interface WakeDelayed extends Stamped {
  readonly kind: 'wakeDelayed';
  readonly lock: string;
}

export type LockCommand =
  | OpenSession
  | KeepAlive
  | CloseSession
  | ExpireSessions
  | Acquire
  | Release
  | Downgrade
  | CancelWait
  | ForceRelease
  | WakeDelayed;

export type LockErrorCode =
  | 'BAD_REQUEST'
  | 'NOT_FOUND'
  | 'SESSION_EXPIRED'
  | 'WOULD_BLOCK'
  | 'DEADLOCK'
  | 'TOO_MANY_WAITERS'
  | 'TOO_MANY_LOCKS'
  | 'STALE_REQUEST'
  | 'TIMEOUT'
  | 'CANCELLED';

export interface LockError {
  readonly kind: 'error';
  readonly code: LockErrorCode;
  readonly message: string;
}

/** The requester's answer. */
export type LockResult =
  | { readonly kind: 'sessionOpened'; readonly session: SessionId; readonly ttlMs: number }
  | {
      readonly kind: 'granted';
      readonly lock: string;
      readonly token: FencingToken;
      readonly mode: LockMode;
      readonly count: number;
    }
  | { readonly kind: 'queued'; readonly lock: string; readonly requestId: string }
  | { readonly kind: 'released'; readonly lock: string; readonly count: number }
  | { readonly kind: 'downgraded'; readonly lock: string; readonly token: FencingToken; readonly count: number }
  | { readonly kind: 'expired'; readonly sessions: readonly SessionId[] }
  | { readonly kind: 'ok' }
  | LockError;

/** What apply did to requests OTHER than the one applied (pushed to their waiting clients). */
export type LockEvent =
  | {
      readonly kind: 'granted';
      readonly session: SessionId;
      readonly lock: string;
      readonly requestId: string;
      readonly clientId: ClientId;
      readonly seq: number;
      readonly token: FencingToken;
      readonly mode: LockMode;
      readonly count: number;
    }
  | {
      readonly kind: 'failed';
      readonly session: SessionId;
      readonly lock: string;
      readonly requestId: string;
      readonly clientId: ClientId;
      readonly seq: number;
      readonly code: 'SESSION_EXPIRED' | 'TIMEOUT' | 'CANCELLED';
      readonly message: string;
    }
  /**
   * A holder lost the lock without asking: forceRelease ('forced') or its session's
   * expiry ('expired'); never for its own release or close. The leader tells the holder.
   */
  | {
      readonly kind: 'revoked';
      readonly session: SessionId;
      readonly lock: string;
      readonly token: FencingToken;
      readonly reason: 'forced' | 'expired';
    };

export interface DelayedLock {
  readonly lock: string;
  /** nowMs of the expiry entry + the session's lockDelayMs (the proposing leader's clock). */
  readonly untilMs: number;
  readonly lockDelayMs: number;
}

export interface ApplyOutcome {
  readonly result: LockResult;
  /** True when this was a retry of the client's last applied seq: cached result, nothing changed. */
  readonly duplicate: boolean;
  readonly events: readonly LockEvent[];
  /** Sessions that stopped existing in this entry (closed or expired): untrack their leases. */
  readonly endedSessions: readonly SessionId[];
  /** Lock-delays started by this entry: the leader proposes wakeDelayed when each passes. */
  readonly delayedLocks: readonly DelayedLock[];
}
