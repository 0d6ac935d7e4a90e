// The lock service: client lock requests become Raft entries of group 0,
// applied to the replicated LockTable. The leader runs the lease clock (expiring
// sessions, waking lock-delays, timing out waits), parks waiting acquires until a
// grant or failure applies, and tells a holder whose lock was taken away (LockLost
// push). Followers answer NOT_LEADER.
//
// Time: every duration the leader measures (leases, lock-delays, wait limits) is on
// ctx.clock, a monotonic clock, so a wall-clock step neither expires sessions nor
// ends waits. Entries still carry the proposer's wall time (nowMs) for display only
// (a session's last renewal, a lock-delay's "until"); no decision reads it.
//
// Wait limits travel in the acquire entry (waitMs) and stay with the waiter, so a
// new leader times out the waits it inherits (restarting their countdowns, as it
// does for leases).
//
// Answers a client can rely on after it lost a lock: release (and downgrade) by a
// session that is no longer open answers SESSION_EXPIRED; by an open session that
// does not hold the lock (force-released) answers NOT_FOUND. Neither changes
// anything, so a client may treat both as "already released". A retried release
// (same client id and seq) answers what the first one did.

import { assert } from '../../../core/assert.js';
import { lockOverloadRetryAfterMs, lockParkedAcquiresMax, lockSessionLinksMax } from '../../../core/constants.js';
import { type ClientId, clientId as toClientId, fencingToken, logIndex, type NodeId, type SessionId, sessionId } from '../../../core/ids.js';
import { LeaseClock, type LockCommand, type LockEvent, type LockInfo, type LockMode, type LockResult, LockTable,
  type LockTableSnapshot, type LockTableSnapshotHeader, type LockTableSnapshotSlice, type WaitSeed } from '../../../core/locks/index.js';
import type { Entry } from '../../../core/raft/types.js';
import { lockNameProblem } from '../../../core/locks/names.js';
import { DsyncError, ErrorCode, isErrorCode } from '../../../protocol/errors.js';
import { Opcode } from '../../../protocol/frame.js';
import { schema } from '../../../protocol/index.js';
import { wireNumber } from '../../../protocol/wire-number.js';
import type { GroupRunner } from '../../raft/runner.js';
import { EntryKind, frameEntry, type PartSnapshotJob, type SubMachine } from '../../raft/group0.js';
import { decodePayload } from '../../node/node.js';
import type { Cancel } from '../../runtime.js';
import type { ClientLink, RequestContext, Service, ServiceContext, ServiceNode } from '../service.js';
import type { Access } from '../../node/security.js';

/** How often the leader checks for expired leases and due lock-delays. */
const leaseCheckIntervalMs = 50;

const CommandKind = {
  openSession: 1, keepAlive: 2, closeSession: 3, expireSessions: 4, acquire: 5, release: 6, downgrade: 7,
  cancelWait: 8, forceRelease: 9, wakeDelayed: 10,
} as const satisfies Record<LockCommand['kind'], number>;
const kindByNumber = new Map<number, LockCommand['kind']>(Object.entries(CommandKind).map(([k, v]) => [v, k as LockCommand['kind']]));

/** Encodes a lock command for the Raft log (protobuf LockCommandEntry). */
export function encodeLockCommand(cmd: LockCommand): Uint8Array {
  const e: ReturnType<typeof schema.LockCommandEntry.create> = schema.LockCommandEntry.create({ kind: CommandKind[cmd.kind], nowMs: cmd.nowMs });
  if ('clientId' in cmd && cmd.clientId !== undefined) {
    e.clientId = cmd.clientId;
    e.seq = cmd.seq ?? 0;
    e.hasClient = true;
  }
  if ('session' in cmd) e.session = cmd.session;
  if ('lock' in cmd) e.lock = cmd.lock;
  switch (cmd.kind) {
    case 'openSession': e.ttlMs = cmd.ttlMs; e.lockDelayMs = cmd.lockDelayMs; break;
    case 'acquire': e.exclusive = cmd.mode === 'exclusive'; e.requestId = cmd.requestId; e.wait = cmd.wait; e.waitMs = cmd.waitMs ?? 0; break;
    case 'cancelWait': e.requestId = cmd.requestId; e.reason = cmd.reason === 'timeout' ? 0 : 1; break;
    case 'expireSessions':
      e.expireSessions = cmd.sessions.map((s) => s.session);
      e.expireRenewedIndex = cmd.sessions.map((s) => s.renewedIndex);
      break;
    default: break;
  }
  return schema.LockCommandEntry.encode(e).finish();
}

export function decodeLockCommand(body: Uint8Array): LockCommand {
  const e = schema.LockCommandEntry.decode(body);
  const kind = kindByNumber.get(e.kind);
  assert(kind !== undefined, `lock entry of unknown kind ${e.kind}`);
  const client = { clientId: toClientId(e.clientId), seq: wireNumber(e.seq), nowMs: e.nowMs };
  const session = sessionId(wireNumber(e.session));
  switch (kind) {
    case 'openSession': return { kind, ...client, ttlMs: e.ttlMs, lockDelayMs: e.lockDelayMs };
    case 'keepAlive': return { kind, ...client, session };
    case 'closeSession': return { kind, ...client, session };
    case 'expireSessions': return { kind, nowMs: e.nowMs, sessions: e.expireSessions.map((s, i) => ({
      session: sessionId(wireNumber(s)), renewedIndex: logIndex(wireNumber(e.expireRenewedIndex[i])) })) };
    case 'acquire': return { kind, ...client, session, lock: e.lock, mode: e.exclusive ? 'exclusive' : 'shared', requestId: e.requestId, wait: e.wait,
      waitMs: e.waitMs };
    case 'release': return { kind, ...client, session, lock: e.lock };
    case 'downgrade': return { kind, ...client, session, lock: e.lock };
    case 'cancelWait': {
      const base = { kind, nowMs: e.nowMs, session, lock: e.lock, requestId: e.requestId, reason: e.reason === 0 ? 'timeout' as const : 'cancelled' as const };
      return e.hasClient ? { ...base, clientId: client.clientId, seq: client.seq } : base;
    }
    case 'forceRelease': return { kind, ...client, lock: e.lock };
    case 'wakeDelayed': return { kind, nowMs: e.nowMs, lock: e.lock };
  }
}

/** A lock-table error result as the DsyncError the client sees. */
function lockError(code: string, message: string): DsyncError {
  if (code === 'TIMEOUT') return new DsyncError(ErrorCode.LOCK_TIMEOUT, message);
  return new DsyncError(isErrorCode(code) ? code : ErrorCode.INTERNAL, message);
}

interface ParkedAcquire {
  readonly key: string;
  readonly conn: ClientLink;
  readonly requestId: number;
  readonly session: SessionId;
  readonly lock: string;
  readonly lockRequestId: string;
  done: boolean;
  unsubscribeClose: () => void;
}

export class LockService implements SubMachine, Service {
  readonly name = 'locks';
  readonly opcodes = { min: Opcode.SessionOpen, max: 199 };
  readonly group0: { kind: EntryKind; machine: SubMachine } = { kind: EntryKind.Lock, machine: this };
  private table = new LockTable();
  private readonly leases = new LeaseClock();
  private isLeader = false;
  /** Acquires waiting on this node, by clientId + request id. */
  private readonly parked = new Map<string, ParkedAcquire>();
  private leaseTimer: Cancel | null = null;
  private expiryInFlight = false;
  private readonly wakesInFlight = new Set<string>();
  /** Wait timeouts proposed and not yet answered, by session + lock. */
  private readonly timeoutsInFlight = new Set<string>();
  /**
   * While leader: the connections each open session's requests came through, to push
   * LockLost to (link -> its close unsubscribe). Only live sessions; at most
   * lockSessionLinksMax links each, the oldest forgotten first.
   */
  private readonly sessionLinks = new Map<SessionId, Map<ClientLink, () => void>>();
  private runner: GroupRunner | null = null;
  private ctx: ServiceContext | null = null;

  start(ctx: ServiceContext): void {
    this.ctx = ctx;
    this.runner = ctx.groups.group0;
    this.registerHandlers();
    this.registerConsole();
    this.registerMetrics(ctx);
  }

  /**
   * What the applied entries did, for dsync_lock_events_total. Counted on every replica as it
   * applies (the same numbers everywhere: take the max over nodes, not the sum).
   */
  private readonly eventCounts = new Map<LockEventName, number>();

  private countOutcome(command: string, outcome: ReturnType<LockTable['apply']>): void {
    const add = (event: LockEventName, n = 1): void => { if (n > 0) this.eventCounts.set(event, (this.eventCounts.get(event) ?? 0) + n); };
    const r = outcome.result;
    // A cancelWait answering 'granted' reports a grant its event already counted.
    if (r.kind === 'granted' && command === 'acquire') add('granted');
    if (r.kind === 'error' && r.code === 'DEADLOCK') add('deadlock');
    if (r.kind === 'expired') add('session_expired', r.sessions.length);
    for (const ev of outcome.events) {
      if (ev.kind === 'granted') add('granted');
      else if (ev.kind === 'failed' && ev.code === 'TIMEOUT') add('wait_timeout');
      else if (ev.kind === 'revoked') add(ev.reason === 'forced' ? 'force_released' : 'lost_to_expiry');
    }
  }

  /** Lock table gauges for /metrics, read from this replica's applied state at scrape time. */
  private registerMetrics(ctx: ServiceContext): void {
    const m = ctx.node.metrics;
    // From counters the table keeps per apply: a scrape (the status page samples every 2 s) costs the same whatever the table holds.
    m.gauge('dsync_locks_held', 'Locks with at least one holder (this replica\'s applied state)', ['mode'], () => {
      const stats = this.table.stats();
      return [[{ mode: 'exclusive' }, stats.heldExclusive], [{ mode: 'shared' }, stats.heldShared]];
    });
    m.gauge('dsync_lock_waiters', 'Acquires waiting in lock queues', [], () => [[{}, this.table.stats().waiters]]);
    m.gauge('dsync_lock_sessions', 'Open lock sessions', [], () => [[{}, this.table.stats().sessions]]);
    m.counterFrom('dsync_lock_events_total', 'Lock events applied by this replica of group 0 (the same on every replica): granted, wait_timeout, '
      + 'deadlock, session_expired, lost_to_expiry, force_released', ['event'], () => [...this.eventCounts].map(([event, n]) => [{ event }, n]));
  }

  private get context(): ServiceContext {
    assert(this.ctx !== null, 'lock service used before start');
    return this.ctx;
  }

  private get node(): ServiceNode {
    return this.context.node;
  }

  /** Monotonic milliseconds: every duration the leader measures. */
  private monotonicMs(): number {
    return this.context.clock.nowMs();
  }

  private notLeader(): DsyncError {
    return this.node.notLeader('locks', this.runner?.leader ?? '');
  }

  // ---- SubMachine (runs on every replica, deterministically) ----

  apply(entry: Entry, body: Uint8Array): LockResult {
    const cmd = decodeLockCommand(body);
    const outcome = this.table.apply(cmd, entry.index);
    if (this.isLeader) this.leases.observe(cmd, entry.index, outcome, this.monotonicMs());
    if (!outcome.duplicate) this.countOutcome(cmd.kind, outcome);
    for (const ev of outcome.events) {
      if (ev.kind === 'revoked') {
        if (this.isLeader) this.pushLost(ev);
        continue;
      }
      const p = this.parked.get(parkKey(ev.clientId, ev.requestId));
      if (p === undefined) continue;
      if (ev.kind === 'granted') this.finish(p, grantReply(ev.lock, ev.token, ev.mode, ev.count), null);
      else this.finish(p, null, lockError(ev.code, ev.message));
    }
    for (const s of outcome.endedSessions) this.forgetLinks(s);
    return outcome.result;
  }

  snapshot(): LockTableSnapshot {
    return this.table.toSnapshot();
  }

  restore(state: unknown): void {
    this.table = LockTable.fromSnapshot(state as LockTableSnapshot);
  }

  /** The table as of now in slices (JSON per slice, lockSnapshotSliceWeightMax each): see LockTable.beginSnapshot. */
  beginSnapshot(): PartSnapshotJob {
    const writer = this.table.beginSnapshot();
    let headerWritten = false;
    return {
      step: (out) => {
        if (!headerWritten) {
          out.push(jsonBytes(writer.header));
          headerWritten = true;
        }
        const slice = writer.nextSlice();
        if (slice !== null) out.push(jsonBytes({ sessions: slice.sessions, locks: slice.locks.map(lockTuple) }));
        return writer.done;
      },
      abort: () => writer.abort(),
    };
  }

  restoreChunks(chunks: readonly Uint8Array[]): void {
    this.table = decodeLockTableChunks(chunks);
  }

  onLeaderChange(isLeader: boolean, _leader: NodeId | ''): void {
    const was = this.isLeader;
    this.isLeader = isLeader;
    if (isLeader && !was) {
      // Restart every countdown: a failover never expires sessions en masse.
      const waits: WaitSeed[] = [];
      for (const l of this.table.listLocks()) {
        for (const w of l.waiters) if (w.waitMs > 0) waits.push({ session: w.session, lock: l.name, requestId: w.requestId, waitMs: w.waitMs });
      }
      this.leases.becomeLeader(this.monotonicMs(),
        this.table.listSessions().map((s) => ({ session: s.session, ttlMs: s.ttlMs, renewedIndex: s.renewedIndex })),
        this.table.delayedLocks().map((d) => ({ lock: d.lock, lockDelayMs: d.lockDelayMs })), waits);
      this.leaseTimer = this.context.scheduler.every(leaseCheckIntervalMs, () => this.checkLeases());
    } else if (!isLeader && was) {
      this.leaseTimer?.();
      this.leaseTimer = null;
      // The next leader learns the links as requests arrive there.
      for (const s of [...this.sessionLinks.keys()]) this.forgetLinks(s);
      // The next leader does not know these waits: the clients retry them there (same seq).
      const err = this.notLeader();
      for (const p of this.parked.values()) this.finish(p, null, err);
    }
  }

  stop(): void {
    this.leaseTimer?.();
    this.leaseTimer = null;
    for (const s of [...this.sessionLinks.keys()]) this.forgetLinks(s);
    for (const p of this.parked.values()) this.finish(p, null, new DsyncError(ErrorCode.UNAVAILABLE, 'node is shutting down'));
  }

  // ---- leader-side proposals ----

  private propose(cmd: LockCommand): Promise<LockResult> {
    const group0 = this.runner;
    assert(group0 !== null, 'lock service used before attach');
    return group0.propose(frameEntry(EntryKind.Lock, encodeLockCommand(cmd))) as Promise<LockResult>;
  }

  private checkLeases(): void {
    if (!this.isLeader) return;
    const now = this.monotonicMs();
    const wallMs = Date.now(); // stamped into entries for display only
    if (!this.expiryInFlight) {
      const expired = this.leases.expired(now);
      if (expired.length > 0) {
        this.expiryInFlight = true;
        this.propose({ kind: 'expireSessions', nowMs: wallMs, sessions: expired })
          .then((r) => this.node.log.info('sessions expired', { count: r.kind === 'expired' ? r.sessions.length : 0 }),
            (err: unknown) => this.node.log.debug('expiry proposal failed', { err: String(err) }))
          .finally(() => { this.expiryInFlight = false; });
      }
    }
    for (const lock of this.leases.delaysDue(now)) {
      if (this.wakesInFlight.has(lock)) continue;
      this.wakesInFlight.add(lock);
      this.propose({ kind: 'wakeDelayed', nowMs: wallMs, lock })
        .catch((err: unknown) => this.node.log.debug('lock-delay wake failed', { err: String(err) }))
        .finally(() => this.wakesInFlight.delete(lock));
    }
    for (const w of this.leases.waitsDue(now)) {
      const key = `${w.session}\u0000${w.lock}`;
      if (this.timeoutsInFlight.has(key)) continue;
      this.timeoutsInFlight.add(key);
      this.propose({ kind: 'cancelWait', nowMs: wallMs, session: w.session, lock: w.lock, requestId: w.requestId, reason: 'timeout' })
        .catch((err: unknown) => this.node.log.debug('wait timeout proposal failed', { err: String(err) }))
        .finally(() => this.timeoutsInFlight.delete(key));
    }
  }

  // ---- telling holders ----

  /** Remembers that `session`'s requests arrive over `link` (leader only; live sessions only). */
  private trackLink(session: SessionId, link: ClientLink): void {
    if (!this.isLeader || link.closed || !this.table.hasSession(session)) return;
    let links = this.sessionLinks.get(session);
    if (links === undefined) {
      links = new Map();
      this.sessionLinks.set(session, links);
    }
    if (links.has(link)) return;
    while (links.size >= lockSessionLinksMax) {
      const [oldest, unsubscribe] = links.entries().next().value as [ClientLink, () => void];
      unsubscribe();
      links.delete(oldest);
    }
    const mine = links;
    links.set(link, link.onClose(() => {
      mine.delete(link);
      if (mine.size === 0 && this.sessionLinks.get(session) === mine) this.sessionLinks.delete(session);
    }));
    assert(links.size <= lockSessionLinksMax, 'session links bounded');
  }

  private forgetLinks(session: SessionId): void {
    const links = this.sessionLinks.get(session);
    if (links === undefined) return;
    for (const unsubscribe of links.values()) unsubscribe();
    this.sessionLinks.delete(session);
  }

  /** Tells every connection of the holder's session that its hold is gone. */
  private pushLost(ev: Extract<LockEvent, { kind: 'revoked' }>): void {
    const links = this.sessionLinks.get(ev.session);
    if (links === undefined) return;
    const code = ev.reason === 'forced' ? ErrorCode.FORCE_RELEASED : ErrorCode.SESSION_EXPIRED;
    const message = ev.reason === 'forced'
      ? `lock ${ev.lock} (token ${ev.token}) was force-released by an operator`
      : `session ${ev.session} expired: lock ${ev.lock} (token ${ev.token}) is released`;
    const payload = schema.LockLostPush.encode({ session: ev.session, lock: ev.lock, code, message, token: ev.token }).finish();
    for (const link of links.keys()) if (!link.closed) link.push(Opcode.LockLost, 0, payload);
  }

  // ---- requests ----

  private registerHandlers(): void {
    const on = (opcode: number, fn: (ctx: RequestContext, req: ReturnType<typeof schema.LockRequest.decode>) => void, access: Access = 'write'): void => {
      this.context.handle(opcode, (ctx, payload) => {
        const req = decodePayload((b) => schema.LockRequest.decode(b), payload, 'lock request');
        if (!this.isLeader) throw this.notLeader();
        if (req.clientId === '' && opcode !== Opcode.LockCancel) throw new DsyncError(ErrorCode.BAD_REQUEST, 'lock requests need a client id');
        if (wireNumber(req.session) !== 0) this.trackLink(sessionId(wireNumber(req.session)), ctx.conn);
        fn(ctx, req);
      }, access);
    };
    const answer = (ctx: RequestContext, promise: Promise<LockResult>): void => {
      promise.then((r) => {
        if (r.kind === 'sessionOpened') this.trackLink(r.session, ctx.conn);
        if (r.kind === 'error') ctx.conn.replyError(ctx.requestId, ctx.opcode, lockError(r.code, r.message), true);
        else ctx.conn.reply(ctx.requestId, ctx.opcode, schema.LockReply.encode(resultReply(r)).finish(), true);
      }, (err: unknown) => ctx.conn.replyError(ctx.requestId, ctx.opcode, this.node.asDsyncError(err), true));
    };
    const client = (req: ReturnType<typeof schema.LockRequest.decode>): { clientId: ClientId; seq: number; nowMs: number } =>
      ({ clientId: toClientId(req.clientId), seq: wireNumber(req.seq), nowMs: Date.now() });

    on(Opcode.SessionOpen, (ctx, req) => answer(ctx, this.propose({ kind: 'openSession', ...client(req), ttlMs: req.ttlMs, lockDelayMs: req.lockDelayMs })));
    on(Opcode.SessionKeepAlive, (ctx, req) => answer(ctx, this.propose({ kind: 'keepAlive', ...client(req), session: sessionId(wireNumber(req.session)) })));
    on(Opcode.SessionClose, (ctx, req) => answer(ctx, this.propose({ kind: 'closeSession', ...client(req), session: sessionId(wireNumber(req.session)) })));
    on(Opcode.LockRelease, (ctx, req) => answer(ctx, this.propose({ kind: 'release', ...client(req), session: sessionId(wireNumber(req.session)), lock: req.lock })));
    on(Opcode.LockDowngrade, (ctx, req) => answer(ctx, this.propose({ kind: 'downgrade', ...client(req), session: sessionId(wireNumber(req.session)), lock: req.lock })));
    on(Opcode.LockForceRelease, (ctx, req) => {
      checkLockName(req.lock);
      answer(ctx, this.propose({ kind: 'forceRelease', ...client(req), lock: req.lock }));
    }, 'admin');
    on(Opcode.LockCancel, (ctx, req) => answer(ctx, this.propose({
      kind: 'cancelWait', ...client(req), session: sessionId(wireNumber(req.session)), lock: req.lock, requestId: req.requestId, reason: 'cancelled',
    })));
    on(Opcode.LockAcquire, (ctx, req) => this.acquire(ctx, req, client(req)));

    this.context.handle(Opcode.LockInfo, (ctx, payload) => {
      const q = decodePayload((b) => schema.LockQuery.decode(b), payload, 'lock query');
      this.linearizable(ctx, () => schema.LockListReply.encode({ locks: q.lock === '' ? this.table.listLocks().map(lockState)
        : [this.table.lockInfo(q.lock)].filter((l): l is LockInfo => l !== null).map(lockState) }).finish());
    }, 'read');
    this.context.handle(Opcode.LockList, (ctx) => {
      this.linearizable(ctx, () => schema.LockListReply.encode({ locks: this.table.listLocks().map(lockState) }).finish());
    }, 'read');
    this.context.handle(Opcode.SessionList, (ctx) => {
      this.linearizable(ctx, () => schema.SessionListReply.encode({ sessions: this.table.listSessions().map((s) => ({
        session: s.session, clientId: s.clientId, ttlMs: s.ttlMs, holds: [...s.holds], waits: s.waits.length, lockDelayMs: s.lockDelayMs,
      })) }).finish());
    }, 'read');
  }

  /** Answers with the table's state after a ReadIndex barrier: never stale. */
  private linearizable(ctx: RequestContext, render: () => Uint8Array): void {
    const group0 = this.runner;
    assert(group0 !== null, 'lock service used before attach');
    group0.readBarrier().then(() => ctx.conn.reply(ctx.requestId, ctx.opcode, render(), true),
      (err: unknown) => ctx.conn.replyError(ctx.requestId, ctx.opcode, this.node.asDsyncError(err), true));
  }

  private acquire(ctx: RequestContext, req: ReturnType<typeof schema.LockRequest.decode>,
    client: { clientId: ClientId; seq: number; nowMs: number }): void {
    if (req.requestId === '') throw new DsyncError(ErrorCode.BAD_REQUEST, 'acquire needs a request id');
    checkLockName(req.lock);
    const key = parkKey(client.clientId, req.requestId);
    const session = sessionId(wireNumber(req.session));
    // Park before proposing: a grant can apply in the same batch as the queued answer.
    const previous = this.parked.get(key);
    if (previous === undefined && this.parked.size >= lockParkedAcquiresMax) {
      throw new DsyncError(ErrorCode.UNAVAILABLE, `${lockParkedAcquiresMax} acquires are already waiting on this leader`,
        { retryAfterMs: lockOverloadRetryAfterMs });
    }
    if (previous !== undefined) this.finish(previous, null, new DsyncError(ErrorCode.CANCELLED, 'superseded by a retry of the same acquire'));
    const p: ParkedAcquire = { key, conn: ctx.conn, requestId: ctx.requestId, session, lock: req.lock, lockRequestId: req.requestId,
      done: false, unsubscribeClose: () => {} };
    this.parked.set(key, p);
    p.unsubscribeClose = ctx.conn.onClose(() => {
      if (p.done) return;
      this.finish(p, null, null);
      if (this.isLeader) {
        // Nobody is left to take the grant: withdraw the wait.
        this.propose({ kind: 'cancelWait', nowMs: Date.now(), session, lock: req.lock, requestId: req.requestId, reason: 'cancelled' })
          .catch(() => { /* the session's expiry cleans up instead */ });
      }
    });
    // The wait limit goes into the entry: the lease clock of whichever node leads times it out.
    this.propose({ kind: 'acquire', ...client, session, lock: req.lock, mode: req.exclusive ? 'exclusive' : 'shared', requestId: req.requestId,
      wait: req.wait, waitMs: req.waitMs })
      .then((r) => {
        if (p.done) return;
        if (r.kind === 'queued') return;
        if (r.kind === 'error') this.finish(p, null, lockError(r.code, r.message));
        else this.finish(p, resultReply(r), null);
      }, (err: unknown) => this.finish(p, null, this.node.asDsyncError(err)));
  }

  /**
   * Answers a parked acquire once (reply, error, or nothing when its connection is gone).
   * Answers here and in answer() leave after the task (ClientLink.reply's afterTask): most
   * come out of group 0's ready pass, and a hot lock hands over only as fast as each grant
   * reaches the next holder; at the end of the turn they waited behind the next poll phase.
   */
  private finish(p: ParkedAcquire, reply: ReturnType<typeof schema.LockReply.create> | null, err: DsyncError | null): void {
    if (p.done) return;
    p.done = true;
    p.unsubscribeClose();
    if (this.parked.get(p.key) === p) this.parked.delete(p.key);
    if (p.conn.closed) return;
    if (reply !== null) p.conn.reply(p.requestId, Opcode.LockAcquire, schema.LockReply.encode(reply).finish(), true);
    else if (err !== null) p.conn.replyError(p.requestId, Opcode.LockAcquire, err, true);
  }

  // ---- console ----

  private registerConsole(): void {
    const c = this.node.consoleCommands;
    c.register({
      name: 'locks', usage: 'locks', help: 'every lock with holders and waiters (this node\'s applied state)',
      run: () => {
        const locks = this.table.listLocks();
        if (locks.length === 0) return '(no locks held or awaited)';
        return locks.map((l) => `${l.name}  holders=${l.holders.map((h) => `s${h.session}:${h.mode[0]}x${h.count}@${h.token}`).join(',') || '-'}  waiters=${l.waiters.length}  lastToken=${l.lastToken}`).join('\n');
      },
    });
    c.register({
      name: 'lock', usage: 'lock NAME', help: 'holders and waiters of one lock',
      run: (args) => {
        const name = args[0];
        if (name === undefined) return 'usage: lock NAME';
        const l = this.table.lockInfo(name);
        if (l === null) return `lock ${name} is free and has no waiters`;
        return [`lock ${l.name} lastToken=${l.lastToken}${l.delay === null ? '' : ` delayed until ${new Date(l.delay.untilMs).toISOString()}`}`,
          ...l.holders.map((h) => `  holder  session=${h.session} mode=${h.mode} count=${h.count} token=${h.token}`),
          ...l.waiters.map((w, i) => `  waiter#${i + 1} session=${w.session} mode=${w.mode} request=${w.requestId}`)].join('\n');
      },
    });
    c.register({
      name: 'sessions', usage: 'sessions', help: 'lock sessions with TTL and what they hold',
      run: () => {
        const sessions = this.table.listSessions();
        if (sessions.length === 0) return '(no sessions)';
        return sessions.map((s) => {
          const left = this.isLeader ? this.leases.deadlineOf(s.session) : null;
          return `session ${s.session} client=${s.clientId} ttl=${s.ttlMs}ms${left === null ? '' : ` expires in ${Math.max(0, left - this.monotonicMs())}ms`} holds=${s.holds.join(',') || '-'} waits=${s.waits.length}`;
        }).join('\n');
      },
    });
  }
}

function jsonBytes(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value));
}

/**
 * The table that LockService.beginSnapshot's chunks describe: a version 4 header then its
 * slices, or (a part written whole) one chunk holding a version 2 or 3 snapshot.
 */
export function decodeLockTableChunks(chunks: readonly Uint8Array[]): LockTable {
  const decoder = new TextDecoder();
  const first = chunks[0];
  assert(first !== undefined, 'a lock table snapshot has at least one chunk');
  const head = JSON.parse(decoder.decode(first)) as LockTableSnapshotHeader | LockTableSnapshot;
  if (head.version !== 4) {
    assert(chunks.length === 1, 'a lock table snapshot written whole is one chunk');
    return LockTable.fromSnapshot(head);
  }
  return LockTable.fromSlices(head, chunks.slice(1).map((c) => {
    const slice = JSON.parse(decoder.decode(c)) as { sessions: LockTableSnapshotSlice['sessions']; locks: LockTuple[] };
    return { sessions: slice.sessions, locks: slice.locks.map(lockFromTuple) };
  }));
}

/**
 * A lock in a version 4 slice: positional (a third of the bytes of the LockInfo object, so a
 * third of the copying, checksumming and writing): name, holders [session, exclusive 1/0,
 * count, token, requestId], waiters [session, exclusive 1/0, requestId, clientId, seq,
 * enqueuedIndex, waitMs], lastToken, delay [untilMs, lockDelayMs] or null.
 */
type LockTuple = [string, [number, number, number, number, string][], [number, number, string, string, number, number, number][], number,
  [number, number] | null];

function lockTuple(l: LockInfo): LockTuple {
  return [l.name, l.holders.map((h) => [h.session, h.mode === 'exclusive' ? 1 : 0, h.count, h.token, h.requestId]),
    l.waiters.map((w) => [w.session, w.mode === 'exclusive' ? 1 : 0, w.requestId, w.clientId, w.seq, w.enqueuedIndex, w.waitMs]),
    l.lastToken, l.delay === null ? null : [l.delay.untilMs, l.delay.lockDelayMs]];
}

function lockFromTuple([name, holders, waiters, lastToken, delay]: LockTuple): LockInfo {
  return {
    name,
    holders: holders.map(([session, exclusive, count, token, requestId]) => ({ session: sessionId(session), mode: exclusive === 1 ? 'exclusive' : 'shared',
      count, token: fencingToken(token), requestId })),
    waiters: waiters.map(([session, exclusive, requestId, clientId, seq, enqueuedIndex, waitMs]) => ({ session: sessionId(session),
      mode: exclusive === 1 ? 'exclusive' : 'shared', requestId, clientId: toClientId(clientId), seq, enqueuedIndex: logIndex(enqueuedIndex), waitMs })),
    lastToken: fencingToken(lastToken),
    delay: delay === null ? null : { lock: name, untilMs: delay[0], lockDelayMs: delay[1] },
  };
}

function parkKey(clientId: string, requestId: string): string {
  return `${clientId}\u0000${requestId}`;
}

function grantReply(lock: string, token: number, mode: LockMode, count: number): ReturnType<typeof schema.LockReply.create> {
  return schema.LockReply.create({ lock, token, exclusive: mode === 'exclusive', count });
}

function resultReply(r: Exclude<LockResult, { kind: 'error' }>): ReturnType<typeof schema.LockReply.create> {
  switch (r.kind) {
    case 'sessionOpened': return schema.LockReply.create({ session: r.session, ttlMs: r.ttlMs });
    case 'granted': return grantReply(r.lock, r.token, r.mode, r.count);
    case 'downgraded': return grantReply(r.lock, r.token, 'shared', r.count);
    case 'released': return schema.LockReply.create({ lock: r.lock, count: r.count });
    case 'queued': return schema.LockReply.create({ lock: r.lock });
    case 'expired': case 'ok': return schema.LockReply.create({});
  }
}

function lockState(l: LockInfo): ReturnType<typeof schema.LockState.create> {
  return schema.LockState.create({
    name: l.name,
    holders: l.holders.map((h) => ({ session: h.session, exclusive: h.mode === 'exclusive', count: h.count, token: h.token })),
    waiters: l.waiters.map((w) => ({ session: w.session, exclusive: w.mode === 'exclusive', requestId: w.requestId, clientId: w.clientId })),
    lastToken: l.lastToken,
    delayUntilMs: l.delay?.untilMs ?? 0,
  });
}

/** New lock names enter through acquire and force-release: refused before they are proposed (the table never sees them). */
function checkLockName(name: string): void {
  const problem = lockNameProblem(name);
  if (problem !== null) throw new DsyncError(ErrorCode.BAD_REQUEST, problem);
}

type LockEventName = 'granted' | 'wait_timeout' | 'deadlock' | 'session_expired' | 'lost_to_expiry' | 'force_released';
