// Distributed locks for the client: one session per Client kept alive in the
// background, lock()/tryLock() returning a held lock with its fencing token,
// and typed errors. A lock is declared lost to its holder once the last
// successful renewal + TTL has passed — before the server would expire it —
// and no grant reaches user code unless its session is live by that measure.

import { randomUUID } from 'node:crypto';
import { assert } from '../../core/assert.js';
import { clientLeaseDriftFraction, clientReleaseRetryCountMax, clientRetryBackoffMsMax, clientRetryBackoffMsMin, sessionTtlMsDefault } from '../../core/constants.js';
import { lockNameProblem } from '../../core/locks/names.js';
import { DsyncError, ErrorCode, isErrorCode } from '../../protocol/errors.js';
import { Opcode } from '../../protocol/frame.js';
import { schema } from '../../protocol/index.js';
import { wireNumber } from '../../protocol/wire-number.js';
import { decodeLockReply, encodeLockRequest, type LockReplyFields, type LockRequestFields } from './lock-codec.js';
import type { GroupTransport, RequestOptions } from '../transport/router.js';
import { type CancelTimer, type ClientClock, realClock, sleepOn } from '../transport/time.js';

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
/** An administrator took the lock away (`dsync lock release --force`); the holder must stop using it. */
export class ForceReleasedError extends DsyncError {
  override name = 'ForceReleasedError';
  constructor(message: string) { super(ErrorCode.FORCE_RELEASED, message); }
}

/** The lock service lives in Raft group 0. */
const lockGroup = 0;

/** Every lock request carries a client id + seq (or only reads): safe to send again. */
const idempotentRequest: RequestOptions = { idempotent: true };

/** The typed error for a lock failure (subclasses for the codes callers branch on). */
function typed(err: DsyncError): DsyncError {
  switch (err.code) {
    case ErrorCode.LOCK_TIMEOUT: return new LockTimeoutError(err.message);
    case ErrorCode.DEADLOCK: return new DeadlockError(err.message);
    case ErrorCode.SESSION_EXPIRED: return new SessionExpiredError(err.message);
    case ErrorCode.FORCE_RELEASED: return new ForceReleasedError(err.message);
    default: return err;
  }
}

/** What an acquire whose AbortSignal fired rejects with: CANCELLED, the signal's reason as `cause`. */
function aborted(name: string, signal: AbortSignal): DsyncError {
  return new DsyncError(ErrorCode.CANCELLED, `acquire of ${name} was aborted`, { cause: signal.reason });
}

/** A call, not a property test, so TypeScript does not narrow `aborted` for the rest of the function. */
function isAborted(signal: AbortSignal): boolean {
  return signal.aborted;
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

interface Lane { readonly index: number; id: string; seq: number; busy: boolean }

/**
 * Client id + sequence lanes: each lane has one mutating request in flight, so retries
 * dedup exactly.
 *
 * STALE_REQUEST (core/locks/table.ts) means the server's dedup record for this client id
 * is past this seq, or was evicted: it cannot tell whether this request was applied, and
 * will refuse every seq up to the one it remembers. The lane then takes a fresh client id
 * (seq restarts at 1). A request that may safely be applied twice (`reapplySafe`) is sent
 * once more under the fresh id; any other fails with STALE_REQUEST saying that it may or
 * may not have been applied.
 */
class RequestLanes {
  private readonly lanes: Lane[] = [];
  /** Lanes not in use, the most recently freed last (taken first, so few client ids stay in use). */
  private readonly free: Lane[] = [];
  private static readonly lanesMax = 1024;
  /** Fresh client ids handed out after STALE_REQUEST (part of each new id, so ids never repeat). */
  private renewals = 0;

  constructor(private readonly base: string) {}

  async run<T>(fn: (clientId: string, seq: number) => Promise<T>, reapplySafe = false): Promise<T> {
    const lane = this.take();
    const firstId = lane.id;
    try {
      for (let attempt = 0; ; attempt++) {
        const seq = ++lane.seq;
        const id = lane.id;
        try {
          return await fn(id, seq);
        } catch (err) {
          const fatal = this.refused(lane, err, attempt, reapplySafe, firstId, id, seq);
          if (fatal !== null) throw fatal;
        }
      }
    } finally {
      this.give(lane);
    }
  }

  /** A free lane, marked busy: the caller gives it back (give) when its request is done. */
  take(): Lane {
    let lane = this.free.pop();
    if (lane === undefined) {
      if (this.lanes.length >= RequestLanes.lanesMax) {
        throw new DsyncError(ErrorCode.TOO_MANY_REQUESTS, `more than ${RequestLanes.lanesMax} lock requests in flight from one client`);
      }
      lane = { index: this.lanes.length, id: `${this.base}/${this.lanes.length}`, seq: 0, busy: false };
      this.lanes.push(lane);
    }
    assert(!lane.busy, 'a free lane is not in use');
    lane.busy = true;
    return lane;
  }

  /** Ends the use of a lane taken with take(). */
  give(lane: Lane): void {
    assert(lane.busy, 'a lane is given back once');
    lane.busy = false;
    this.free.push(lane);
  }

  /**
   * After a request (client id `id`, seq `seq`) on `lane` failed with `err`: null when it is
   * to be sent again (a STALE_REQUEST for a reapply-safe request, under the lane's fresh
   * id), else the error to fail with.
   */
  refused(lane: Lane, err: unknown, attempt: number, reapplySafe: boolean, firstId: string, id: string, seq: number): unknown {
    if (!(err instanceof DsyncError) || err.code !== ErrorCode.STALE_REQUEST) return err;
    lane.id = `${this.base}/${lane.index}.${++this.renewals}`;
    lane.seq = 0;
    assert(lane.id !== id, 'a stale lane gets a new client id');
    if (reapplySafe && attempt === 0) return null;
    return new DsyncError(ErrorCode.STALE_REQUEST, reapplySafe
      ? `the server refused this request as stale under client id ${firstId} and again under the fresh id ${id}: ${err.message}`
      : `the server cannot tell whether this request (client id ${id}, seq ${seq}) was applied, and it is not safe to send again; `
        + `check the state before retrying (this client now uses client id ${lane.id}): ${err.message}`);
  }
}

/**
 * Requests that may be applied twice without harm, so a STALE_REQUEST is answered by
 * sending them once more under a fresh client id: a keep-alive or close (idempotent), a
 * cancel (a second one changes nothing, or answers the grant again), and a session open
 * (a second session may open; the first then holds nothing and expires after its TTL).
 * Not acquire, release, downgrade or force-release: twice is a different outcome.
 */
const reapplySafeOpcodes: ReadonlySet<number> = new Set([Opcode.SessionOpen, Opcode.SessionKeepAlive, Opcode.SessionClose, Opcode.LockCancel]);

class Held implements HeldLock {
  private releasing: Promise<void> | null = null;
  isLost = false;
  readonly lost: Promise<DsyncError>;
  private markLost!: (err: DsyncError) => void;

  constructor(private readonly locks: LockClient, readonly name: string, public mode: LockMode, public token: number, readonly session: number) {
    this.lost = new Promise((resolve) => { this.markLost = resolve; });
  }

  /** No longer trusted to be held (session lost, force-released, ...); a release() after it sends nothing. */
  lose(err: DsyncError): void {
    if (this.isLost) return;
    this.isLost = true;
    this.markLost(err);
  }

  release(): Promise<void> {
    this.releasing ??= this.locks.releaseHold(this);
    return this.releasing;
  }

  async downgrade(): Promise<void> {
    if (this.releasing !== null || this.isLost) throw new DsyncError(ErrorCode.BAD_REQUEST, `lock ${this.name} is not held`);
    try {
      const r = await this.locks.mutate(Opcode.LockDowngrade, { session: this.session, lock: this.name });
      this.mode = 'shared';
      this.token = wireNumber(r.token);
    } catch (err) {
      if (err instanceof DsyncError) this.locks.holdGone(this, err);
      throw err;
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }
}

/** A lock session this client keeps alive; replaced by a new object on every (re)open. */
interface LiveSession {
  readonly id: number;
  readonly ttlMs: number;
  /** The clock's nowMs() at the FIRST send of the newest successful renewal (open or keep-alive). */
  renewedAtMs: number;
  keepAliveTimer: CancelTimer | null;
  lossTimer: CancelTimer | null;
  keepAliveInFlight: boolean;
}

/** Lock administration and inspection, as `client.locks`. */
export interface LockAdmin {
  /** Every lock with holders or waiters (empty name) or one lock; linearizable. */
  info(name?: string): Promise<LockInfo[]>;
  /** Every open lock session; linearizable. */
  sessions(): Promise<LockSessionInfo[]>;
  /** Takes a lock from whoever holds it (their sessions stay alive; they are told by a LockLost push). */
  forceRelease(name: string): Promise<void>;
}

export interface LockClientOptions {
  /** Client name, the prefix of this client's request lanes (client ids). */
  readonly name: string;
  readonly sessionTtlMs?: number;
  readonly lockDelayMs?: number;
  /** Clock and timers for the session's keep-alive, loss and release-retry timers (default: performance.now() and Node timers). */
  readonly clock?: ClientClock;
  /** Prefix of the request lanes' client ids (default: name plus a random suffix; the simulator derives it from its seed). */
  readonly laneBase?: string;
}

/** Errors after which a request may not have reached the leader: retrying (same seq) is safe. */
function isRetryable(err: DsyncError): boolean {
  return err.code === ErrorCode.TIMEOUT || err.code === ErrorCode.UNAVAILABLE || err.code === ErrorCode.CONNECTION_CLOSED
    || err.code === ErrorCode.NOT_LEADER || err.code === ErrorCode.TOO_MANY_REQUESTS;
}

/** Answers to a release/downgrade that mean the hold is no longer ours. */
function isHoldGone(err: DsyncError): boolean {
  return err.code === ErrorCode.NOT_FOUND || err.code === ErrorCode.SESSION_EXPIRED || err.code === ErrorCode.FORCE_RELEASED;
}

/** The lock part of a Client: sessions, acquires, releases and the admin calls, over a GroupTransport. */
export class LockClient implements LockAdmin {
  private readonly lanes: RequestLanes;
  private session: LiveSession | null = null;
  private opening: Promise<number> | null = null;
  private readonly held = new Set<Held>();
  private nextRequest = 1;
  private closed = false;
  private readonly defaultTtlMs: number;
  private readonly lockDelayMs: number;
  private readonly clock: ClientClock;

  constructor(private readonly transport: GroupTransport, opts: LockClientOptions) {
    this.lanes = new RequestLanes(opts.laneBase ?? `${opts.name}-${randomUUID().slice(0, 8)}`);
    this.clock = opts.clock ?? realClock;
    this.defaultTtlMs = opts.sessionTtlMs ?? sessionTtlMsDefault;
    this.lockDelayMs = opts.lockDelayMs ?? 0;
    transport.onPush(Opcode.LockLost, (_opcode, _requestId, payload) => this.onLockLost(payload));
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
    const s = this.session;
    if (s === null) return;
    this.endSession(s, new SessionExpiredError('the client closed its lock session'), false);
    try {
      await this.mutate(Opcode.SessionClose, { session: s.id });
    } catch {
      // The TTL ends it anyway.
    }
  }

  async info(name = ''): Promise<LockInfo[]> {
    const raw = await this.transport.request(lockGroup, Opcode.LockInfo, schema.LockQuery.encode({ lock: name }).finish(), { idempotent: true });
    const reply = schema.LockListReply.decode(raw);
    return reply.locks.map((l) => ({
      name: l.name ?? '',
      holders: (l.holders ?? []).map((h) => ({ session: wireNumber(h.session), mode: h.exclusive === true ? 'exclusive' as const : 'shared' as const,
        count: h.count ?? 0, token: wireNumber(h.token) })),
      waiters: (l.waiters ?? []).map((w) => ({ session: wireNumber(w.session), mode: w.exclusive === true ? 'exclusive' as const : 'shared' as const,
        requestId: w.requestId ?? '' })),
      lastToken: wireNumber(l.lastToken),
      delayUntilMs: l.delayUntilMs ?? 0,
    }));
  }

  async sessions(): Promise<LockSessionInfo[]> {
    const raw = await this.transport.request(lockGroup, Opcode.SessionList, new Uint8Array(0), { idempotent: true });
    return schema.SessionListReply.decode(raw).sessions.map((s) => ({ session: wireNumber(s.session), clientId: s.clientId ?? '',
      ttlMs: s.ttlMs ?? 0, holds: s.holds ?? [], waits: s.waits ?? 0 }));
  }

  async forceRelease(name: string): Promise<void> {
    const problem = lockNameProblem(name);
    if (problem !== null) throw new DsyncError(ErrorCode.BAD_REQUEST, problem);
    await this.mutate(Opcode.LockForceRelease, { lock: name });
  }

  /** One mutating lock request on a lane (client id + seq), routed to the leader; retries are applied once. */
  async mutate(opcode: number, fields: Omit<LockRequestFields, 'clientId' | 'seq'>, opts: RequestOptions = idempotentRequest): Promise<LockReplyFields> {
    // One async layer per request: the lane, the retries under a fresh id and the send inline.
    const reapplySafe = reapplySafeOpcodes.has(opcode);
    const requestOpts = opts.idempotent === true ? opts : { ...opts, idempotent: true };
    const lane = this.lanes.take();
    const firstId = lane.id;
    try {
      for (let attempt = 0; ; attempt++) {
        const seq = ++lane.seq;
        const id = lane.id;
        try {
          return decodeLockReply(await this.transport.request(lockGroup, opcode, encodeLockRequest(fields, id, seq), requestOpts));
        } catch (err) {
          const fatal = this.lanes.refused(lane, err, attempt, reapplySafe, firstId, id, seq);
          if (fatal !== null) throw fatal instanceof DsyncError ? typed(fatal) : fatal;
        }
      }
    } finally {
      this.lanes.give(lane);
    }
  }

  /**
   * Releases one hold. After the hold was lost, resolves without a request. An answer
   * saying the hold is gone (NOT_FOUND, SESSION_EXPIRED, FORCE_RELEASED) marks it lost and
   * resolves. When the cluster does not answer, resolves and keeps retrying in the
   * background on the same lane and seq (applied once) until the release applies or the
   * session is lost; after clientReleaseRetryCountMax retries the session is given up,
   * so the server frees the lock when its TTL runs out.
   */
  releaseHold(h: Held): Promise<void> {
    this.held.delete(h);
    if (h.isLost) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const settle = (err: unknown): void => {
        if (settled) return;
        settled = true;
        if (err === null) resolve();
        else reject(err);
      };
      this.lanes.run(async (clientId, seq) => {
        for (let retry = 0; ; retry++) {
          try {
            await this.send(Opcode.LockRelease, { session: h.session, lock: h.name, clientId, seq });
            settle(null);
            return;
          } catch (err) {
            if (!(err instanceof DsyncError)) throw err;
            if (isHoldGone(err)) {
              this.holdGone(h, err);
              settle(null);
              return;
            }
            if (!isRetryable(err)) {
              settle(err);
              return;
            }
            // Unanswered: the hold may still be in place. Hand it to the background.
            settle(null);
            const s = this.session;
            if (s === null || s.id !== h.session) return; // the session is gone: so is the hold
            if (retry >= clientReleaseRetryCountMax) {
              this.sessionLost(s, new SessionExpiredError(`release of ${h.name} got no answer after ${retry} retries; giving up session ${s.id}`));
              return;
            }
            await sleepOn(this.clock, Math.min(clientRetryBackoffMsMin * 2 ** retry, clientRetryBackoffMsMax));
          }
        }
      }).catch(settle);
    });
  }

  /** A request about `h` answered that the hold is not ours any more: `lost` fires. */
  holdGone(h: Held, err: DsyncError): void {
    if (!isHoldGone(err)) return;
    this.held.delete(h);
    h.lose(typed(err));
    const s = this.session;
    if (err.code === ErrorCode.SESSION_EXPIRED && s !== null && s.id === h.session) this.sessionLost(s, err);
  }

  private async send(opcode: number, fields: LockRequestFields): Promise<LockReplyFields> {
    const payload = encodeLockRequest(fields);
    try {
      return decodeLockReply(await this.transport.request(lockGroup, opcode, payload, idempotentRequest));
    } catch (err) {
      throw err instanceof DsyncError ? typed(err) : err;
    }
  }

  private async acquire(name: string, opts: LockOptions, wait: boolean): Promise<Held | null> {
    if (this.closed) throw new DsyncError(ErrorCode.CONNECTION_CLOSED, 'client is closed');
    const problem = typeof name === 'string' ? lockNameProblem(name) : 'a lock name must be a string';
    if (problem !== null) throw new DsyncError(ErrorCode.BAD_REQUEST, problem);
    const signal = opts.signal;
    if (signal !== undefined && isAborted(signal)) throw aborted(name, signal);
    const mode = opts.mode ?? 'exclusive';
    const waitMs = opts.waitMs ?? 0;
    if (!Number.isFinite(waitMs) || waitMs < 0) throw new DsyncError(ErrorCode.BAD_REQUEST, 'waitMs must be a finite number >= 0');
    const session = await this.ensureSession(opts.ttlMs ?? this.defaultTtlMs);
    const requestId = `r${this.nextRequest++}`;
    // A grant this acquire will not hand to user code (aborted, or granted before its cancel
    // applied) is released exactly once, whichever answer reports it first.
    let grantDropped = false;
    const dropGrant = async (reply: LockReplyFields): Promise<void> => {
      if (grantDropped) return;
      grantDropped = true;
      const h = new Held(this, name, reply.exclusive ? 'exclusive' : 'shared', wireNumber(reply.token), session);
      this.held.add(h);
      await h.release();
    };
    const cancel = (): void => {
      this.mutate(Opcode.LockCancel, { session, lock: name, requestId })
        // A token in the answer: the request was granted before the cancel applied (the
        // grant never reached us). Release that hold, or nobody ever would.
        .then((r) => (wireNumber(r.token) > 0 ? dropGrant(r) : undefined))
        .catch(() => { /* best effort: the session's end withdraws it anyway */ });
    };
    signal?.addEventListener('abort', cancel, { once: true });
    let r: LockReplyFields;
    try {
      const timeoutMs = !wait ? this.transport.requestTimeoutMs : waitMs > 0 ? waitMs + this.transport.requestTimeoutMs : Infinity;
      r = await this.mutate(Opcode.LockAcquire, { session, lock: name, exclusive: mode === 'exclusive', requestId, wait, waitMs: wait ? waitMs : 0 },
        { timeoutMs, followLeader: wait, idempotent: true });
    } catch (err) {
      if (err instanceof DsyncError) {
        if (!wait && err.code === ErrorCode.WOULD_BLOCK) return null;
        if (err.code === ErrorCode.CANCELLED && signal?.aborted === true) throw aborted(name, signal);
        if (err.code === ErrorCode.SESSION_EXPIRED) {
          const s = this.session;
          if (s !== null && s.id === session) this.sessionLost(s, err);
        }
        // Given up on without an answer (our deadline, or no leader): the wait may still be
        // queued under the live session, where it would block every later acquire of this
        // lock by the session ("already waits for"). Withdraw it.
        if (wait && isRetryable(err)) cancel();
      }
      throw err;
    } finally {
      signal?.removeEventListener('abort', cancel);
    }
    if (!this.grantable(session)) {
      const s = this.session;
      // Granted to a session this client already counts as lost, or whose TTL ran out while
      // the answer travelled: the server may expire it any moment and grant the lock to
      // someone else, so it must not reach user code. Ending the session frees the grant.
      const why = `lock ${name} was granted to session ${session} after ${s === null ? 'its lease' : `its ${s.ttlMs} ms lease`} could no longer be trusted`;
      if (s !== null && s.id === session) this.sessionLost(s, new SessionExpiredError(why));
      throw new SessionExpiredError(why);
    }
    if (signal?.aborted === true) {
      await dropGrant(r);
      throw aborted(name, signal);
    }
    const held = new Held(this, name, r.exclusive ? 'exclusive' : 'shared', wireNumber(r.token), session);
    this.held.add(held);
    return held;
  }

  /** Whether a grant to `session` may reach user code: it is this client's session and its lease is live by the client's count. */
  protected grantable(session: number): boolean {
    const s = this.session;
    return s !== null && s.id === session && this.isLive(s);
  }

  private isLive(s: LiveSession): boolean {
    return this.session === s && this.clock.nowMs() < trustedUntilMs(s);
  }

  private async ensureSession(ttlMs: number): Promise<number> {
    const s = this.session;
    if (s !== null) {
      if (this.isLive(s)) return s.id;
      // Its loss timer is due but has not run yet.
      this.sessionLost(s, new SessionExpiredError(`no successful renewal of lock session ${s.id} within its ${s.ttlMs} ms TTL`));
    }
    this.opening ??= this.openSession(ttlMs).finally(() => { this.opening = null; });
    return this.opening;
  }

  private async openSession(ttlMs: number): Promise<number> {
    let firstSentMs = NaN;
    const r = await this.mutate(Opcode.SessionOpen, { ttlMs, lockDelayMs: this.lockDelayMs },
      { onSend: (atMs) => { if (Number.isNaN(firstSentMs)) firstSentMs = atMs; } });
    assert(!Number.isNaN(firstSentMs), 'an answered request was sent');
    const s: LiveSession = { id: wireNumber(r.session), ttlMs: r.ttlMs, renewedAtMs: firstSentMs, keepAliveTimer: null, lossTimer: null,
      keepAliveInFlight: false };
    assert(s.id > 0 && s.ttlMs > 0, 'SessionOpen answers a session id and TTL');
    if (this.closed) {
      this.mutate(Opcode.SessionClose, { session: s.id }).catch(() => { /* the TTL ends it */ });
      throw new DsyncError(ErrorCode.CONNECTION_CLOSED, 'client is closed');
    }
    if (this.clock.nowMs() >= trustedUntilMs(s)) {
      // The answer took longer than the TTL (a stalled leader), counted from the first send.
      // Nothing is held under the session yet, and a keep-alive that succeeds proves it never
      // ended (session ids are never reused), so one fresh renewal decides.
      await this.renew(s);
      if (this.clock.nowMs() >= trustedUntilMs(s)) {
        this.mutate(Opcode.SessionClose, { session: s.id }).catch(() => { /* the TTL ends it */ });
        throw new SessionExpiredError(`lock session ${s.id} opened too late to be renewed within its ${s.ttlMs} ms TTL`);
      }
    }
    this.session = s;
    // Timers belong to this session object: a late or repeated open starts its own.
    s.keepAliveTimer = this.clock.every(Math.max(100, Math.floor(s.ttlMs / 3)), () => { void this.keepAlive(s); });
    this.scheduleLoss(s);
    return s.id;
  }

  private async keepAlive(s: LiveSession): Promise<void> {
    if (this.session !== s || s.keepAliveInFlight) return;
    await this.renew(s);
    if (this.session === s) this.scheduleLoss(s);
  }

  /**
   * One keep-alive. On success the renewal counts from its FIRST send, not the answered
   * attempt's: a retry may be answered from the dedup record of an earlier attempt that
   * the server applied (and started the countdown at) earlier. The server does not renew
   * on acquire (core/locks/table.ts renews on keepAlive only), so grants never count.
   */
  private async renew(s: LiveSession): Promise<void> {
    s.keepAliveInFlight = true;
    let firstSentMs = NaN;
    try {
      const leftMs = trustedUntilMs(s) - this.clock.nowMs();
      await this.mutate(Opcode.SessionKeepAlive, { session: s.id }, {
        // Past the loss deadline an answer is still worth having while the session opens.
        timeoutMs: Math.max(leftMs, Math.floor(s.ttlMs / 3), 1),
        attemptTimeoutMs: Math.max(100, Math.floor(s.ttlMs / 3)),
        onSend: (atMs) => { if (Number.isNaN(firstSentMs)) firstSentMs = atMs; },
      });
      s.renewedAtMs = Math.max(s.renewedAtMs, firstSentMs);
    } catch (err) {
      if (err instanceof DsyncError && err.code === ErrorCode.SESSION_EXPIRED && this.session === s) this.sessionLost(s, err);
    } finally {
      s.keepAliveInFlight = false;
    }
  }

  private scheduleLoss(s: LiveSession): void {
    s.lossTimer?.();
    s.lossTimer = this.clock.after(Math.max(0, trustedUntilMs(s) - this.clock.nowMs()), () => {
      if (this.session === s) this.sessionLost(s, new SessionExpiredError(`no successful renewal of lock session ${s.id} within its ${s.ttlMs} ms TTL`));
    }, true);
  }

  /** The session can no longer be trusted: every hold under it is lost, and the server is asked to end it. */
  private sessionLost(s: LiveSession, err: DsyncError): void {
    if (this.session !== s) return;
    this.endSession(s, err instanceof SessionExpiredError ? err : new SessionExpiredError(err.message), true);
  }

  private endSession(s: LiveSession, err: DsyncError, closeOnServer: boolean): void {
    assert(this.session === s, 'ending the live session');
    s.keepAliveTimer?.();
    s.lossTimer?.();
    s.keepAliveTimer = null;
    s.lossTimer = null;
    this.session = null;
    for (const h of this.held) if (h.session === s.id) h.lose(err);
    for (const h of [...this.held]) if (h.session === s.id) this.held.delete(h);
    // Frees at once what the server may still hold for it (a grant the client refused, waits).
    if (closeOnServer) this.mutate(Opcode.SessionClose, { session: s.id }).catch(() => { /* the TTL ends it */ });
  }

  /** A LockLost push: the server took a hold of ours away (force-release, expiry). */
  private onLockLost(payload: Uint8Array): void {
    let p: ReturnType<typeof schema.LockLostPush.decode>;
    try {
      p = schema.LockLostPush.decode(payload);
    } catch {
      return; // undecodable push: nothing to act on; the lease timer still guards the hold
    }
    const session = wireNumber(p.session);
    const token = wireNumber(p.token);
    const code = isErrorCode(p.code) ? p.code : ErrorCode.FORCE_RELEASED;
    const err = typed(new DsyncError(code, p.message !== '' ? p.message : `lock ${p.lock} was taken from session ${session} (${code})`));
    for (const h of [...this.held]) {
      // A hold granted after the lost one has a higher token (tokens increase per lock).
      if (h.session === session && h.name === p.lock && (token === 0 || h.token <= token)) {
        this.held.delete(h);
        h.lose(err);
      }
    }
    const s = this.session;
    if (code === ErrorCode.SESSION_EXPIRED && s !== null && s.id === session) this.sessionLost(s, err);
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

/**
 * Until when this client may trust its session, on its own clock: a drift margin short of
 * renewal + TTL, because the leader counts the TTL on its clock, which may run faster
 * than ours (Chubby's conservative client lease), so `lost` fires before the server expires it.
 */
function trustedUntilMs(s: { readonly renewedAtMs: number; readonly ttlMs: number }): number {
  return s.renewedAtMs + s.ttlMs * (1 - clientLeaseDriftFraction);
}
