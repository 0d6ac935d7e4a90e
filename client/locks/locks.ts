// Distributed locks for the client: one session per Client kept alive in the
// background, lock()/tryLock() returning a held lock with its fencing token,
// and typed errors. A lock is declared lost to its holder once the last
// successful renewal + TTL has passed — before the server would expire it.

import { randomUUID } from 'node:crypto';
import { sessionTtlMsDefault } from '../../core/constants.js';
import { DsyncError, ErrorCode } from '../../protocol/errors.js';
import { Opcode } from '../../protocol/frame.js';
import { schema } from '../../protocol/index.js';
import type { Client } from '../client.js';

export class LockTimeoutError extends DsyncError {
  override name = 'LockTimeoutError';
  constructor(message: string) { super(ErrorCode.LOCK_TIMEOUT, message); }
}
export class DeadlockError extends DsyncError {
  override name = 'DeadlockError';
  constructor(message: string) { super(ErrorCode.DEADLOCK, message); }
}
export class SessionExpiredError extends DsyncError {
  override name = 'SessionExpiredError';
  constructor(message: string) { super(ErrorCode.SESSION_EXPIRED, message); }
}

/** The typed error for a lock failure (subclasses for the codes callers branch on). */
function typed(err: DsyncError): DsyncError {
  switch (err.code) {
    case ErrorCode.LOCK_TIMEOUT: return new LockTimeoutError(err.message);
    case ErrorCode.DEADLOCK: return new DeadlockError(err.message);
    case ErrorCode.SESSION_EXPIRED: return new SessionExpiredError(err.message);
    default: return err;
  }
}

export type LockMode = 'exclusive' | 'shared';

export interface LockOptions {
  /** Default 'exclusive'. */
  readonly mode?: LockMode;
  /** The session's TTL; only the first lock of a session sets it (default: the client's sessionTtlMs, 10 s). */
  readonly ttlMs?: number;
  /** Give up waiting after this long with LockTimeoutError (default: wait as long as it takes). */
  readonly waitMs?: number;
  readonly signal?: AbortSignal;
}

export interface HeldLock extends AsyncDisposable {
  readonly name: string;
  readonly mode: LockMode;
  /** Fencing token: the Raft index of the grant, strictly increasing per lock. */
  readonly token: number;
  /** Resolves (with the reason) when the lock can no longer be trusted to be held. */
  readonly lost: Promise<DsyncError>;
  readonly isLost: boolean;
  release(): Promise<void>;
  /** exclusive → shared; other shared waiters may then be granted. */
  downgrade(): Promise<void>;
}

/** Client id + sequence lanes: each lane has one mutating request in flight, so retries dedup exactly. */
class RequestLanes {
  private readonly lanes: { id: string; seq: number; busy: boolean }[] = [];
  private static readonly lanesMax = 1024;

  constructor(private readonly base: string) {}

  async run<T>(fn: (clientId: string, seq: number) => Promise<T>): Promise<T> {
    let lane = this.lanes.find((l) => !l.busy);
    if (lane === undefined) {
      if (this.lanes.length >= RequestLanes.lanesMax) {
        throw new DsyncError(ErrorCode.TOO_MANY_REQUESTS, `more than ${RequestLanes.lanesMax} lock requests in flight from one client`);
      }
      lane = { id: `${this.base}/${this.lanes.length}`, seq: 0, busy: false };
      this.lanes.push(lane);
    }
    lane.busy = true;
    lane.seq++;
    try {
      return await fn(lane.id, lane.seq);
    } finally {
      lane.busy = false;
    }
  }
}

class Held implements HeldLock {
  private released = false;
  isLost = false;
  readonly lost: Promise<DsyncError>;
  private markLost!: (err: DsyncError) => void;

  constructor(private readonly locks: LockManager, readonly name: string, public mode: LockMode, public token: number, readonly session: number) {
    this.lost = new Promise((resolve) => { this.markLost = resolve; });
  }

  lose(err: DsyncError): void {
    if (this.isLost || this.released) return;
    this.isLost = true;
    this.markLost(err);
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    this.locks.forget(this);
    if (this.isLost) return;
    await this.locks.mutate(Opcode.LockRelease, { session: this.session, lock: this.name });
  }

  async downgrade(): Promise<void> {
    if (this.released || this.isLost) throw new DsyncError(ErrorCode.BAD_REQUEST, `lock ${this.name} is not held`);
    const r = await this.locks.mutate(Opcode.LockDowngrade, { session: this.session, lock: this.name });
    this.mode = 'shared';
    this.token = Number(r.token);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }
}

export interface LockHolderInfo {
  readonly session: number;
  readonly mode: LockMode;
  readonly count: number;
  readonly token: number;
}

export interface LockWaiterInfo {
  readonly session: number;
  readonly mode: LockMode;
  readonly requestId: string;
}

/** Holders and waiters of a lock, as of a linearizable read on the leader. */
export interface LockInfo {
  readonly name: string;
  readonly holders: readonly LockHolderInfo[];
  readonly waiters: readonly LockWaiterInfo[];
  readonly lastToken: number;
  /** Lock-delay after a holder's session expired: no grant before this (epoch ms); 0 when none. */
  readonly delayUntilMs: number;
}

export interface LockSessionInfo {
  readonly session: number;
  readonly clientId: string;
  readonly ttlMs: number;
  readonly holds: readonly string[];
  readonly waits: number;
}

export class LockManager {
  private readonly lanes: RequestLanes;
  private sessionId = 0;
  private sessionTtlMs = 0;
  private opening: Promise<number> | null = null;
  private lastRenewalMs = 0;
  private keepAliveTimer: NodeJS.Timeout | null = null;
  private lossTimer: NodeJS.Timeout | null = null;
  private readonly held = new Set<Held>();
  private nextRequest = 1;
  private closed = false;

  constructor(private readonly client: Client, private readonly defaultTtlMs = sessionTtlMsDefault, private readonly lockDelayMs = 0) {
    this.lanes = new RequestLanes(`${client.name}-${randomUUID().slice(0, 8)}`);
  }

  async lock(name: string, opts: LockOptions = {}): Promise<HeldLock> {
    const held = await this.acquire(name, opts, true);
    if (held === null) throw new DsyncError(ErrorCode.INTERNAL, 'a waiting acquire answered without a grant');
    return held;
  }

  async tryLock(name: string, opts: Omit<LockOptions, 'waitMs'> = {}): Promise<HeldLock | null> {
    return this.acquire(name, opts, false);
  }

  /** Ends the session: releases everything it holds. */
  async close(): Promise<void> {
    this.closed = true;
    this.stopTimers();
    const session = this.sessionId;
    this.sessionId = 0;
    for (const h of this.held) h.lose(new SessionExpiredError('the client closed its lock session'));
    this.held.clear();
    if (session !== 0) {
      try {
        await this.mutate(Opcode.SessionClose, { session });
      } catch {
        // The TTL ends it anyway.
      }
    }
  }

  /** Every lock with holders or waiters (empty name) or one lock; linearizable. */
  async info(name = ''): Promise<LockInfo[]> {
    const reply = schema.LockListReply.decode(await this.client.leaderRequest(Opcode.LockInfo, schema.LockQuery.encode({ lock: name }).finish()));
    return reply.locks.map((l) => ({
      name: l.name ?? '',
      holders: (l.holders ?? []).map((h) => ({ session: Number(h.session ?? 0), mode: h.exclusive === true ? 'exclusive' as const : 'shared' as const,
        count: h.count ?? 0, token: Number(h.token ?? 0) })),
      waiters: (l.waiters ?? []).map((w) => ({ session: Number(w.session ?? 0), mode: w.exclusive === true ? 'exclusive' as const : 'shared' as const,
        requestId: w.requestId ?? '' })),
      lastToken: Number(l.lastToken ?? 0),
      delayUntilMs: l.delayUntilMs ?? 0,
    }));
  }

  async sessions(): Promise<LockSessionInfo[]> {
    const reply = schema.SessionListReply.decode(await this.client.leaderRequest(Opcode.SessionList, new Uint8Array(0)));
    return reply.sessions.map((s) => ({ session: Number(s.session ?? 0), clientId: s.clientId ?? '', ttlMs: s.ttlMs ?? 0,
      holds: s.holds ?? [], waits: s.waits ?? 0 }));
  }

  /** Admin: takes a lock from whoever holds it (their sessions stay alive). */
  async forceRelease(name: string): Promise<void> {
    await this.mutate(Opcode.LockForceRelease, { lock: name });
  }

  forget(h: Held): void {
    this.held.delete(h);
  }

  /** One mutating lock request on a lane (client id + seq), routed to the leader. */
  async mutate(opcode: number, fields: Omit<Parameters<typeof schema.LockRequest.create>[0] & object, 'clientId' | 'seq'>,
    timeoutMs = this.client.requestTimeoutMs): Promise<ReturnType<typeof schema.LockReply.decode>> {
    return this.lanes.run(async (clientId, seq) => {
      const payload = schema.LockRequest.encode({ ...fields, clientId, seq }).finish();
      try {
        return schema.LockReply.decode(await this.client.leaderRequest(opcode, payload, timeoutMs));
      } catch (err) {
        throw err instanceof DsyncError ? typed(err) : err;
      }
    });
  }

  private async acquire(name: string, opts: LockOptions, wait: boolean): Promise<Held | null> {
    if (this.closed) throw new DsyncError(ErrorCode.CONNECTION_CLOSED, 'client is closed');
    if (name.length === 0) throw new DsyncError(ErrorCode.BAD_REQUEST, 'a lock needs a name');
    const signal = opts.signal;
    signal?.throwIfAborted();
    const mode = opts.mode ?? 'exclusive';
    const waitMs = opts.waitMs ?? 0;
    if (!Number.isFinite(waitMs) || waitMs < 0) throw new DsyncError(ErrorCode.BAD_REQUEST, 'waitMs must be a finite number >= 0');
    const session = await this.ensureSession(opts.ttlMs ?? this.defaultTtlMs);
    const requestId = `r${this.nextRequest++}`;
    const onAbort = (): void => {
      this.mutate(Opcode.LockCancel, { session, lock: name, requestId }).catch(() => { /* the acquire's own answer reports the outcome */ });
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const timeoutMs = !wait ? this.client.requestTimeoutMs : waitMs > 0 ? waitMs + this.client.requestTimeoutMs : Infinity;
      const r = await this.mutate(Opcode.LockAcquire, { session, lock: name, exclusive: mode === 'exclusive', requestId, wait, waitMs: wait ? waitMs : 0 }, timeoutMs);
      const held = new Held(this, name, r.exclusive ? 'exclusive' : 'shared', Number(r.token), session);
      this.held.add(held);
      if (signal?.aborted === true) {
        await held.release();
        throw new DsyncError(ErrorCode.CANCELLED, `acquire of ${name} was aborted`);
      }
      return held;
    } catch (err) {
      if (err instanceof DsyncError) {
        if (!wait && err.code === ErrorCode.WOULD_BLOCK) return null;
        if (err.code === ErrorCode.CANCELLED && signal?.aborted === true) throw new DsyncError(ErrorCode.CANCELLED, `acquire of ${name} was aborted`);
        if (err.code === ErrorCode.SESSION_EXPIRED) this.sessionLost(err);
      }
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  private ensureSession(ttlMs: number): Promise<number> {
    if (this.sessionId !== 0) return Promise.resolve(this.sessionId);
    if (this.opening !== null) return this.opening;
    const sentAt = Date.now();
    this.opening = this.mutate(Opcode.SessionOpen, { ttlMs, lockDelayMs: this.lockDelayMs }).then((r) => {
      this.sessionId = Number(r.session);
      this.sessionTtlMs = r.ttlMs;
      this.renewed(sentAt);
      this.keepAliveTimer = setInterval(() => this.keepAlive(), Math.max(100, Math.floor(this.sessionTtlMs / 3)));
      this.keepAliveTimer.unref();
      return this.sessionId;
    }).finally(() => {
      this.opening = null;
    });
    return this.opening;
  }

  private keepAlive(): void {
    const session = this.sessionId;
    if (session === 0) return;
    // Count the renewal from when it was sent: the server's countdown started no earlier.
    const sentAt = Date.now();
    this.mutate(Opcode.SessionKeepAlive, { session }, Math.max(100, Math.floor(this.sessionTtlMs / 3))).then(() => {
      if (this.sessionId === session) this.renewed(sentAt);
    }, (err: unknown) => {
      if (err instanceof DsyncError && err.code === ErrorCode.SESSION_EXPIRED && this.sessionId === session) this.sessionLost(err);
    });
  }

  private renewed(sentAtMs: number): void {
    this.lastRenewalMs = Math.max(this.lastRenewalMs, sentAtMs);
    if (this.lossTimer !== null) clearTimeout(this.lossTimer);
    const session = this.sessionId;
    this.lossTimer = setTimeout(() => {
      if (this.sessionId === session) this.sessionLost(new SessionExpiredError(`no successful renewal of lock session ${session} within its ${this.sessionTtlMs} ms TTL`));
    }, this.lastRenewalMs + this.sessionTtlMs - Date.now());
    this.lossTimer.unref();
  }

  private sessionLost(err: DsyncError): void {
    this.stopTimers();
    this.sessionId = 0;
    const lost = err instanceof SessionExpiredError ? err : new SessionExpiredError(err.message);
    for (const h of this.held) h.lose(lost);
    this.held.clear();
  }

  private stopTimers(): void {
    if (this.keepAliveTimer !== null) clearInterval(this.keepAliveTimer);
    if (this.lossTimer !== null) clearTimeout(this.lossTimer);
    this.keepAliveTimer = null;
    this.lossTimer = null;
  }
}
