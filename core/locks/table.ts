// The lock table: the deterministic state machine that Raft group 0's committed
// entries are applied to. Pure and synchronous; every replica reaches the same state.
//
// Decisions (see also commands.ts and waitfor.ts):
// - Session id = the Raft index of its openSession entry.
// - Fencing token of a grant = the Raft index of the entry whose apply made the
//   grant (for a woken waiter, the release/expiry/... entry that woke it). Waiters
//   granted by the same entry (a shared batch) share that token. lastToken per lock
//   strictly increases from one granting entry to the next.
// - Reentrancy: an acquire by a session that already holds the lock in a mode that
//   covers the request (shared<-shared, exclusive<-anything) is granted at once, with
//   count+1 and the EXISTING token and mode. Release decrements; at 0 the hold ends.
// - Upgrade: an exclusive acquire by a session holding shared waits like any request,
//   but is queued AHEAD of ordinary waiters (behind it they would wait for its shared
//   hold while it waits for them: a self-made deadlock). It is granted, with a new
//   token and count+1, when the session is the only holder. Two upgraders on one lock
//   wait for each other: the second one gets DEADLOCK.
// - Cancel after grant: a cancelWait naming a request that is no longer waiting because
//   it was granted (the hold's latest grant came from that requestId) answers 'granted'
//   with the hold (token, mode, count) and changes nothing, so a requester that gave up
//   without hearing the grant releases the hold instead of leaking it. Only the hold's
//   LATEST granting request is remembered: a reentrant acquire of the same lock applied
//   between the grant and the cancel makes the cancel answer NOT_FOUND.
// - A waiter is granted only from the head of the queue; after each grant the new head
//   is tried again, so a run of shared waiters is granted together and an exclusive
//   waiter blocks every later request (no writer starvation).
// - A lock whose holder's session EXPIRED with lockDelayMs > 0 grants nothing until
//   wakeDelayed is applied for it; close and release have no delay.
// - Dedup: per client id (a client "lane": one mutating request in flight), the last
//   applied seq and its result. A duplicate answers the cached result and changes
//   nothing; an older seq answers STALE_REQUEST; a queued acquire's cached result is
//   replaced by its final grant/failure, so a retry after failover learns the outcome.
//   Where the entry lives decides how long a retry stays safe, so it is scoped:
//   * a request that names a session (keepAlive, close, acquire, release, downgrade,
//     a client's cancelWait) keeps its entry IN that session, keyed by client id, and
//     it dies with the session (a retry then answers SESSION_EXPIRED, never a second
//     apply). No global LRU can evict it. Per session at most
//     dedupLanesPerSessionMax client ids (a client's lane limit); one more is refused.
//   * openSession keeps its entry in the session it opened (found through the opener's
//     client id). If that session has already ended, a retry opens a fresh session:
//     the client asked for a session and gets a live one, nothing else changes.
//   * forceRelease (the one sessionless command) keeps its entry in a bounded FIFO
//     (dedupClientsWithoutSessionMax). An evicted entry leaves a tombstone (client id
//     and last seq, dedupEvictedClientsMax of them): a request from that client with a
//     seq at or below the tombstone answers STALE_REQUEST ("evicted, retry with a new
//     client id", TigerBeetle's eviction message) instead of being applied again.
//     Client lanes share ids between sessions and admin requests, so an unknown id
//     with a seq above 1 is normal and is applied. Only a retry whose entry AND
//     tombstone were both evicted (more than the two bounds of other admin clients
//     in between) could be re-applied.
// - Cost: the deadlock check on enqueue walks every session reachable from the
//   requester, so on a hot lock it is O(waiters ahead): ~20 us at 64 waiters, ~3 ms
//   at waitersPerLockMax (10,000). Release/hand-over is O(queue) for the shift.

import { assert, assertNever } from '../assert.js';
import {
  dedupClientsWithoutSessionMax,
  dedupEvictedClientsMax,
  dedupLanesPerSessionMax,
  lockDelayMsMax,
  lockNameBytesMax,
  lockSnapshotSliceWeightMax,
  locksPerSessionMax,
  requestIdBytesMax,
  sessionTtlMsMax,
  sessionTtlMsMin,
  waitersPerLockMax,
} from '../constants.js';
import { fencingToken, logIndex, sessionId } from '../ids.js';
import type { ClientId, FencingToken, LogIndex, SessionId } from '../ids.js';
import type {
  Acquire,
  ApplyOutcome,
  CancelWait,
  DelayedLock,
  ExpireSessions,
  LockCommand,
  LockError,
  LockErrorCode,
  LockEvent,
  LockMode,
  LockResult,
} from './commands.js';
import { QueueIndex, compatible, reachesItself } from './waitfor.js';

interface Holder {
  readonly session: SessionId;
  mode: LockMode;
  count: number;
  token: FencingToken;
  /** The acquire (requestId) whose grant last made or added to this hold. */
  requestId: string;
}

/** A queued request; the read API hands these out as they are (all fields readonly). */
type Waiter = WaiterInfo;

interface LockState {
  readonly name: string;
  /** Insertion order = grant order. */
  readonly holders: Map<SessionId, Holder>;
  readonly waiters: Waiter[];
  lastToken: FencingToken;
  /** Set while a lock-delay is pending. */
  delay: DelayedLock | null;
  /** The snapshot generation that has already written this lock as it is (see SnapshotCopyOnWrite). */
  writtenGeneration: number;
  /** How this lock is counted in LockTable.stats() (brought up to date after every apply that touches it). */
  countedAs: 'free' | LockMode;
  countedWaiters: number;
}

interface SessionState {
  readonly id: SessionId;
  readonly clientId: ClientId;
  readonly ttlMs: number;
  readonly lockDelayMs: number;
  renewedIndex: LogIndex;
  renewedMs: number;
  /** Lock names held, in first-grant order. */
  readonly holds: Set<string>;
  /** Lock name -> requestId of this session's waiting acquire there. */
  readonly waits: Map<string, string>;
  /** Dedup entries of the client ids (lanes) that made requests in this session. */
  readonly lanes: Map<ClientId, DedupEntry>;
  /** The snapshot generation that has already written this session as it is (see SnapshotCopyOnWrite). */
  writtenGeneration: number;
}

interface DedupEntry {
  lastSeq: number;
  lastResult: LockResult;
}

// --- read API / snapshot shapes (plain JSON data) ---

export interface HolderInfo {
  readonly session: SessionId;
  readonly mode: LockMode;
  readonly count: number;
  readonly token: FencingToken;
  /**
   * The acquire (requestId) whose grant last made or added to this hold: a cancel of that
   * request arriving after the grant answers 'granted' (see cancelWait).
   */
  readonly requestId: string;
}
export interface WaiterInfo {
  readonly session: SessionId;
  readonly mode: LockMode;
  readonly requestId: string;
  readonly clientId: ClientId;
  readonly seq: number;
  readonly enqueuedIndex: LogIndex;
  /** The acquire's wait limit (0 = none): a new leader restarts its countdown. */
  readonly waitMs: number;
}
export interface LockInfo {
  readonly name: string;
  readonly holders: readonly HolderInfo[];
  readonly waiters: readonly WaiterInfo[];
  readonly lastToken: FencingToken;
  readonly delay: DelayedLock | null;
}
export interface SessionInfo {
  readonly session: SessionId;
  readonly clientId: ClientId;
  readonly ttlMs: number;
  readonly lockDelayMs: number;
  readonly renewedIndex: LogIndex;
  /** Leader clock (nowMs) of the last applied openSession/keepAlive; informational. */
  readonly renewedMs: number;
  readonly holds: readonly string[];
  readonly waits: readonly { readonly lock: string; readonly requestId: string }[];
}
export interface ClientSnapshot {
  readonly clientId: ClientId;
  readonly lastSeq: number;
  readonly lastResult: LockResult;
}
export interface SessionSnapshot extends SessionInfo {
  /** The session's dedup entries, in first-use order. */
  readonly lanes: readonly ClientSnapshot[];
}
/**
 * A snapshot in slices (LockTable.beginSnapshot): the header, then slices of sessions and
 * locks. Restored by LockTable.fromSlices; together they hold what a LockTableSnapshot of
 * the same index holds (a lock or session removed while the snapshot was being written
 * comes after the others instead of in its place).
 */
export interface LockTableSnapshotHeader {
  readonly version: 4;
  readonly lastAppliedIndex: LogIndex;
  readonly sessionlessClients: readonly ClientSnapshot[];
  readonly evictedClients: readonly { readonly clientId: ClientId; readonly lastSeq: number }[];
}
export interface LockTableSnapshotSlice {
  readonly sessions: readonly SessionSnapshot[];
  readonly locks: readonly LockInfo[];
}

export interface LockTableSnapshot {
  /** 3 adds HolderInfo.requestId; a version 2 snapshot restores with requestId ''. */
  readonly version: 2 | 3;
  readonly lastAppliedIndex: LogIndex;
  readonly sessions: readonly SessionSnapshot[];
  readonly locks: readonly LockInfo[];
  /** Dedup entries of sessionless requests (forceRelease), oldest first (eviction order). */
  readonly sessionlessClients: readonly ClientSnapshot[];
  /** Tombstones of evicted sessionless entries, oldest first. */
  readonly evictedClients: readonly { readonly clientId: ClientId; readonly lastSeq: number }[];
}

export interface LockTableStats {
  /** Locks with an exclusive holder. */
  readonly heldExclusive: number;
  /** Locks with shared holders. */
  readonly heldShared: number;
  /** Acquires waiting in every queue. */
  readonly waiters: number;
  readonly sessions: number;
  /** Locks with a holder, a waiter or a pending lock-delay. */
  readonly locks: number;
}

/** What a snapshot being written kept of one lock or session before the table changed it (null: it did not exist yet). */
interface PreImage<T> {
  readonly data: T | null;
  written: boolean;
}

/**
 * The table's side of a snapshot being written in slices: before anything the writer has
 * not written yet changes (or is created), its state as of the snapshot's index is kept
 * here, so the writer sees that index however many entries apply in between (copy on
 * write, per lock and per session). Cost: one copy of each lock or session changed
 * while the snapshot is being written, at most once per snapshot.
 */
interface SnapshotCopyOnWrite {
  readonly generation: number;
  readonly locks: Map<string, PreImage<LockInfo>>;
  readonly sessions: Map<SessionId, PreImage<SessionSnapshot>>;
}

/**
 * Writes a LockTable's snapshot in slices of bounded weight (records plus the holds, waits,
 * dedup lanes, holders and waiters in them) while the table goes on applying entries; every
 * slice reflects the table at `header.lastAppliedIndex`. One writer per table at a time.
 */
export class LockTableSnapshotWriter {
  private readonly sessionsLeft: Iterator<SessionState>;
  private readonly locksLeft: Iterator<LockState>;
  private readonly removedSessionsLeft: Iterator<PreImage<SessionSnapshot>>;
  private readonly removedLocksLeft: Iterator<PreImage<LockInfo>>;
  private phase: 'sessions' | 'locks' | 'removed' | 'done' = 'sessions';
  private slices = 0;

  constructor(
    readonly header: LockTableSnapshotHeader,
    private readonly cow: SnapshotCopyOnWrite,
    sessions: Map<SessionId, SessionState>,
    locks: Map<string, LockState>,
    private readonly finish: (w: LockTableSnapshotWriter) => void,
  ) {
    // Map iterators follow deletions and insertions made after they were created.
    this.sessionsLeft = sessions.values();
    this.locksLeft = locks.values();
    this.removedSessionsLeft = cow.sessions.values();
    this.removedLocksLeft = cow.locks.values();
  }

  get done(): boolean {
    return this.phase === 'done';
  }

  /** Slices written so far. */
  get slicesWritten(): number {
    return this.slices;
  }

  /** The next slice, at most `weightMax` (one record always fits), or null once everything is written. */
  nextSlice(weightMax: number = lockSnapshotSliceWeightMax): LockTableSnapshotSlice | null {
    assert(Number.isSafeInteger(weightMax) && weightMax > 0, 'slice weight is a positive integer');
    if (this.phase === 'done') return null;
    const sessions: SessionSnapshot[] = [];
    const locks: LockInfo[] = [];
    let weight = 0;
    while (weight < weightMax && this.phase !== 'done') {
      switch (this.phase) {
        case 'sessions': {
          const next = this.sessionsLeft.next();
          if (next.done === true) {
            this.phase = 'locks';
            break;
          }
          const s = next.value;
          const kept = this.cow.sessions.get(s.id);
          if (kept !== undefined) {
            if (!kept.written && kept.data !== null) {
              sessions.push(kept.data);
              weight += sessionWeight(kept.data);
            }
            kept.written = true;
          } else {
            const snap = sessionSnapshotOf(s);
            s.writtenGeneration = this.cow.generation;
            sessions.push(snap);
            weight += sessionWeight(snap);
          }
          break;
        }
        case 'locks': {
          const next = this.locksLeft.next();
          if (next.done === true) {
            this.phase = 'removed';
            break;
          }
          const l = next.value;
          const kept = this.cow.locks.get(l.name);
          if (kept !== undefined) {
            if (!kept.written && kept.data !== null) {
              locks.push(kept.data);
              weight += lockWeight(kept.data);
            }
            kept.written = true;
          } else {
            const info = lockInfoOf(l);
            l.writtenGeneration = this.cow.generation;
            locks.push(info);
            weight += lockWeight(info);
          }
          break;
        }
        case 'removed': {
          // Removed from the table after the snapshot's index, before the writer reached them.
          const nextSession = this.removedSessionsLeft.next();
          if (nextSession.done !== true) {
            const kept = nextSession.value;
            if (kept.written || kept.data === null) break;
            kept.written = true;
            sessions.push(kept.data);
            weight += sessionWeight(kept.data);
            break;
          }
          const nextLock = this.removedLocksLeft.next();
          if (nextLock.done !== true) {
            const kept = nextLock.value;
            if (kept.written || kept.data === null) break;
            kept.written = true;
            locks.push(kept.data);
            weight += lockWeight(kept.data);
            break;
          }
          this.phase = 'done';
          this.finish(this);
          break;
        }
        default:
          assertNever(this.phase, 'snapshot writer phase');
      }
    }
    this.slices++;
    return { sessions, locks };
  }

  /** Stops writing (the snapshot is no longer wanted): the table stops keeping copies. */
  abort(): void {
    if (this.phase === 'done') return;
    this.phase = 'done';
    this.finish(this);
  }
}

const sessionWeight = (s: SessionSnapshot): number => 1 + s.holds.length + s.waits.length + s.lanes.length;
const lockWeight = (l: LockInfo): number => 1 + l.holders.length + l.waiters.length;

function lanesSnapshot(m: ReadonlyMap<ClientId, DedupEntry>): ClientSnapshot[] {
  return [...m].map(([clientId, e]) => ({ clientId, lastSeq: e.lastSeq, lastResult: structuredCloneResult(e.lastResult) }));
}

function sessionSnapshotOf(s: SessionState): SessionSnapshot {
  return {
    session: s.id,
    clientId: s.clientId,
    ttlMs: s.ttlMs,
    lockDelayMs: s.lockDelayMs,
    renewedIndex: s.renewedIndex,
    renewedMs: s.renewedMs,
    holds: [...s.holds],
    waits: [...s.waits].map(([lock, requestId]) => ({ lock, requestId })),
    lanes: lanesSnapshot(s.lanes),
  };
}

function lockInfoOf(l: LockState): LockInfo {
  return {
    name: l.name,
    holders: [...l.holders.values()].map((h) => ({ session: h.session, mode: h.mode, count: h.count, token: h.token, requestId: h.requestId })),
    waiters: l.waiters.map((w) => ({
      session: w.session,
      mode: w.mode,
      requestId: w.requestId,
      clientId: w.clientId,
      seq: w.seq,
      enqueuedIndex: w.enqueuedIndex,
      waitMs: w.waitMs,
    })),
    lastToken: l.lastToken,
    delay: l.delay === null ? null : { ...l.delay },
  };
}

const err = (code: LockErrorCode, message: string): LockError => ({ kind: 'error', code, message });

/** UTF-8 length without TextEncoder allocation; lone surrogates count 3 like U+FFFD. */
export function utf8Bytes(s: string): number {
  let bytes = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        bytes += 4;
        i++;
      } else bytes += 3;
    } else bytes += 3;
  }
  return bytes;
}

function validLockName(name: unknown): string | null {
  if (typeof name !== 'string' || name.length === 0) return 'lock name must be a non-empty string';
  if (utf8Bytes(name) > lockNameBytesMax) return `lock name longer than ${lockNameBytesMax} bytes`;
  return null;
}

function validRequestId(id: unknown): string | null {
  if (typeof id !== 'string' || id.length === 0) return 'requestId must be a non-empty string';
  if (utf8Bytes(id) > requestIdBytesMax) return `requestId longer than ${requestIdBytesMax} bytes`;
  return null;
}

const isSeq = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n > 0;

/** Apply-time scratch: what this entry did, collected in order. */
interface Effects {
  readonly index: LogIndex;
  readonly nowMs: number;
  readonly events: LockEvent[];
  readonly endedSessions: SessionId[];
  readonly delayedLocks: DelayedLock[];
  /** Locks touched, in first-touch order: grant loops and invariant checks run over these. */
  readonly touched: Set<string>;
}

export class LockTable {
  private readonly sessions = new Map<SessionId, SessionState>();
  private readonly locks = new Map<string, LockState>();
  /** Dedup entries of sessionless requests, least recently used first; bounded by dedupClientsWithoutSessionMax. */
  private readonly sessionless = new Map<ClientId, DedupEntry>();
  /** client id -> last seq of an evicted sessionless entry, oldest first; bounded by dedupEvictedClientsMax. */
  private readonly evicted = new Map<ClientId, number>();
  /** client id -> the live sessions it opened (derived from sessions: finds an openSession's dedup entry). */
  private readonly openedBy = new Map<ClientId, Set<SessionId>>();
  private lastAppliedIndex: LogIndex = logIndex(0);
  /** Locks held exclusive / shared, and acquires waiting, kept up to date per apply (stats()). */
  private readonly heldLocks = { exclusive: 0, shared: 0 };
  private waitersCount = 0;
  /** Set while a snapshot is being written in slices (beginSnapshot). */
  private cow: SnapshotCopyOnWrite | null = null;
  private snapshotGeneration = 0;

  // ------------------------------------------------------------------ apply

  apply(cmd: LockCommand, index: LogIndex): ApplyOutcome {
    assert(Number.isSafeInteger(index) && index > this.lastAppliedIndex, 'apply index must increase');
    assert(typeof cmd === 'object' && cmd !== null, 'command is an object');
    assert(Number.isFinite(cmd.nowMs), 'nowMs is stamped by the proposing leader');
    this.lastAppliedIndex = index;
    const fx: Effects = {
      index,
      nowMs: cmd.nowMs,
      events: [],
      endedSessions: [],
      delayedLocks: [],
      touched: new Set(),
    };
    const client = 'clientId' in cmd && cmd.clientId !== undefined ? cmd.clientId : null;
    const seq = 'seq' in cmd ? cmd.seq : undefined;

    if (client !== null) {
      if (!isSeq(seq)) return this.outcome(fx, err('BAD_REQUEST', 'seq must be a positive integer'));
      const entry = this.dedupEntry(cmd, client);
      if (entry !== undefined && seq === entry.lastSeq) return this.outcome(fx, entry.lastResult, true);
      if (entry !== undefined && seq < entry.lastSeq) {
        return this.outcome(
          fx,
          err('STALE_REQUEST', `seq ${seq} is older than the last applied seq ${entry.lastSeq} of this client`),
        );
      }
      const evictedSeq = cmd.kind === 'forceRelease' && entry === undefined ? this.evicted.get(client) : undefined;
      if (evictedSeq !== undefined && seq <= evictedSeq) {
        return this.outcome(fx, err('STALE_REQUEST',
          `the dedup entry of client ${client} (seq ${evictedSeq}) was evicted; retry with a new client id`));
      }
      const s = sessionOf(cmd) === null ? undefined : this.sessions.get(sessionOf(cmd) as SessionId);
      if (s !== undefined && !s.lanes.has(client) && s.lanes.size >= dedupLanesPerSessionMax) {
        return this.outcome(fx, err('BAD_REQUEST',
          `session ${s.id} already has requests from ${dedupLanesPerSessionMax} client ids (the most one client uses)`));
      }
    } else if (seq !== undefined) {
      return this.outcome(fx, err('BAD_REQUEST', 'seq without clientId'));
    }

    const result = this.dispatch(cmd, fx);
    this.grantAndCheck(fx);
    if (client !== null) this.remember(cmd, client, seq as number, result);
    return this.outcome(fx, result);
  }

  /** Where a client request's dedup entry lives (see the header): its session, the opened session, or the sessionless FIFO. */
  private dedupEntry(cmd: LockCommand, client: ClientId): DedupEntry | undefined {
    if (cmd.kind === 'openSession') {
      let found: DedupEntry | undefined;
      for (const id of this.openedBy.get(client) ?? []) {
        const e = this.sessions.get(id)?.lanes.get(client);
        if (e !== undefined && (found === undefined || e.lastSeq > found.lastSeq)) found = e;
      }
      return found;
    }
    const session = sessionOf(cmd);
    if (session !== null) return this.sessions.get(session)?.lanes.get(client);
    assert(cmd.kind === 'forceRelease', `sessionless client command ${cmd.kind}`);
    return this.sessionless.get(client);
  }

  private dispatch(cmd: LockCommand, fx: Effects): LockResult {
    switch (cmd.kind) {
      case 'openSession':
        return this.openSession(cmd.clientId, cmd.ttlMs, cmd.lockDelayMs, fx);
      case 'keepAlive': {
        const s = this.sessions.get(cmd.session);
        if (s === undefined) return this.noSession(cmd.session);
        this.keepSession(s);
        s.renewedIndex = fx.index;
        s.renewedMs = fx.nowMs;
        return { kind: 'ok' };
      }
      case 'closeSession': {
        const s = this.sessions.get(cmd.session);
        if (s === undefined) return this.noSession(cmd.session);
        this.endSession(s, 'closed', fx);
        return { kind: 'ok' };
      }
      case 'expireSessions':
        return this.expireSessions(cmd, fx);
      case 'acquire':
        return this.acquire(cmd, fx);
      case 'release':
        return this.release(cmd.session, cmd.lock, fx);
      case 'downgrade':
        return this.downgrade(cmd.session, cmd.lock, fx);
      case 'cancelWait':
        return this.cancelWait(cmd, fx);
      case 'forceRelease':
        return this.forceRelease(cmd.lock, fx);
      case 'wakeDelayed': {
        const l = this.locks.get(cmd.lock);
        if (l === undefined || l.delay === null) return err('NOT_FOUND', `lock ${cmd.lock} has no pending lock-delay`);
        this.keepLock(l);
        l.delay = null;
        fx.touched.add(l.name);
        return { kind: 'ok' };
      }
      default:
        return assertNever(cmd, 'lock command');
    }
  }

  private outcome(fx: Effects, result: LockResult, duplicate = false): ApplyOutcome {
    return { result, duplicate, events: fx.events, endedSessions: fx.endedSessions, delayedLocks: fx.delayedLocks };
  }

  private noSession(id: SessionId): LockError {
    return err('SESSION_EXPIRED', `session ${id} is not open (expired, closed or never opened)`);
  }

  private openSession(client: ClientId, ttlMs: number, lockDelayMs: number, fx: Effects): LockResult {
    if (!Number.isSafeInteger(ttlMs) || ttlMs < sessionTtlMsMin || ttlMs > sessionTtlMsMax) {
      return err('BAD_REQUEST', `ttlMs must be an integer in [${sessionTtlMsMin}, ${sessionTtlMsMax}]`);
    }
    if (!Number.isSafeInteger(lockDelayMs) || lockDelayMs < 0 || lockDelayMs > lockDelayMsMax) {
      return err('BAD_REQUEST', `lockDelayMs must be an integer in [0, ${lockDelayMsMax}]`);
    }
    const id = sessionId(fx.index);
    assert(!this.sessions.has(id), 'session ids are unique log indices');
    this.keepNewSession(id);
    this.sessions.set(id, {
      id,
      clientId: client,
      ttlMs,
      lockDelayMs,
      renewedIndex: fx.index,
      renewedMs: fx.nowMs,
      holds: new Set(),
      waits: new Map(),
      lanes: new Map(),
      writtenGeneration: 0,
    });
    this.addOpener(client, id);
    return { kind: 'sessionOpened', session: id, ttlMs };
  }

  private expireSessions(cmd: ExpireSessions, fx: Effects): LockResult {
    if (!Array.isArray(cmd.sessions)) return err('BAD_REQUEST', 'sessions must be an array');
    const expired: SessionId[] = [];
    for (const lease of cmd.sessions) {
      const s = this.sessions.get(lease.session);
      // Gone already, or renewed after the leader decided: not expired.
      if (s === undefined || s.renewedIndex !== lease.renewedIndex) continue;
      this.endSession(s, 'expired', fx);
      expired.push(s.id);
    }
    return { kind: 'expired', sessions: expired };
  }

  /** Close or expiry: fail every wait, drop every hold (lock-delay on expiry), at once. */
  private endSession(s: SessionState, why: 'closed' | 'expired', fx: Effects): void {
    assert(this.sessions.get(s.id) === s, 'ending a live session');
    this.keepSession(s);
    for (const [name, requestId] of s.waits) {
      const l = this.lockOf(name);
      const w = this.removeWaiter(l, s.id);
      assert(w.requestId === requestId, 'session waits agree with the queue');
      this.failWaiter(w, name, 'SESSION_EXPIRED', `session ${s.id} ${why} while waiting`, fx);
      fx.touched.add(name);
    }
    s.waits.clear();
    for (const name of s.holds) {
      const l = this.lockOf(name);
      this.keepLock(l);
      const h = l.holders.get(s.id);
      assert(h !== undefined && l.holders.delete(s.id), 'session holds agree with holders');
      if (why === 'expired') fx.events.push({ kind: 'revoked', session: s.id, lock: name, token: h.token, reason: 'expired' });
      fx.touched.add(name);
      if (why === 'expired' && s.lockDelayMs > 0) {
        const untilMs = fx.nowMs + s.lockDelayMs;
        if (l.delay === null || l.delay.untilMs < untilMs) {
          l.delay = { lock: name, untilMs, lockDelayMs: s.lockDelayMs };
          const at = fx.delayedLocks.findIndex((d) => d.lock === name);
          if (at >= 0) fx.delayedLocks.splice(at, 1);
          fx.delayedLocks.push(l.delay);
        }
      }
    }
    s.holds.clear();
    this.sessions.delete(s.id);
    fx.endedSessions.push(s.id);
    const opened = this.openedBy.get(s.clientId);
    assert(opened !== undefined && opened.delete(s.id), 'an ending session is indexed by its opener');
    if (opened.size === 0) this.openedBy.delete(s.clientId);
  }

  private acquire(cmd: Acquire, fx: Effects): LockResult {
    const bad = validLockName(cmd.lock) ?? validRequestId(cmd.requestId);
    if (bad !== null) return err('BAD_REQUEST', bad);
    if (cmd.mode !== 'shared' && cmd.mode !== 'exclusive') return err('BAD_REQUEST', 'mode must be shared or exclusive');
    const waitMs = cmd.waitMs ?? 0;
    if (!Number.isSafeInteger(waitMs) || waitMs < 0) return err('BAD_REQUEST', 'waitMs must be a non-negative integer');
    const s = this.sessions.get(cmd.session);
    if (s === undefined) return this.noSession(cmd.session);
    if (s.waits.has(cmd.lock)) {
      return err('BAD_REQUEST', `session ${s.id} already waits for ${cmd.lock} (request ${s.waits.get(cmd.lock)})`);
    }
    const existing = this.locks.get(cmd.lock);
    const held = existing?.holders.get(s.id);

    // Reentrant: the hold already covers the request.
    if (held !== undefined && (held.mode === 'exclusive' || cmd.mode === 'shared')) {
      this.keepLock(existing as LockState);
      held.count++;
      held.requestId = cmd.requestId;
      return { kind: 'granted', lock: cmd.lock, token: held.token, mode: held.mode, count: held.count };
    }
    if (held === undefined && s.holds.size + s.waits.size >= locksPerSessionMax) {
      return err('TOO_MANY_LOCKS', `session ${s.id} already holds or waits for ${locksPerSessionMax} locks`);
    }
    const l = existing ?? this.createLock(cmd.lock);
    fx.touched.add(l.name);
    const upgrade = held !== undefined;
    if (this.grantable(l, s.id, cmd.mode) && (upgrade || l.waiters.length === 0)) {
      const h = this.grant(l, s, cmd.mode, cmd.requestId, fx);
      return { kind: 'granted', lock: l.name, token: h.token, mode: h.mode, count: h.count };
    }
    if (!cmd.wait) return err('WOULD_BLOCK', `lock ${l.name} is not available`);
    if (l.waiters.length >= waitersPerLockMax) {
      return err('TOO_MANY_WAITERS', `lock ${l.name} already has ${waitersPerLockMax} waiters`);
    }
    const waiter: Waiter = {
      session: s.id,
      mode: cmd.mode,
      requestId: cmd.requestId,
      clientId: cmd.clientId,
      seq: cmd.seq,
      enqueuedIndex: fx.index,
      waitMs,
    };
    // Upgrades go ahead of ordinary waiters (behind earlier upgrades, of which the
    // deadlock check lets at most one exist).
    this.keepLock(l);
    this.keepSession(s);
    let at = l.waiters.length;
    if (upgrade) {
      at = 0;
      while (at < l.waiters.length && l.holders.has((l.waiters[at] as Waiter).session)) at++;
    }
    l.waiters.splice(at, 0, waiter);
    s.waits.set(l.name, cmd.requestId);
    const indexes = new Map<string, QueueIndex>();
    if (reachesItself(s.id, (x, out) => this.blockersOfSession(x, out, indexes), this.sessions.size)) {
      l.waiters.splice(at, 1);
      s.waits.delete(l.name);
      return err('DEADLOCK', `acquiring ${l.name} would close a wait-for cycle through session ${s.id}`);
    }
    return { kind: 'queued', lock: l.name, requestId: cmd.requestId };
  }

  private release(session: SessionId, name: string, fx: Effects): LockResult {
    const bad = validLockName(name);
    if (bad !== null) return err('BAD_REQUEST', bad);
    if (!this.sessions.has(session)) return this.noSession(session);
    const l = this.locks.get(name);
    const h = l?.holders.get(session);
    if (l === undefined || h === undefined) return err('NOT_FOUND', `session ${session} does not hold ${name}`);
    this.keepLock(l);
    h.count--;
    fx.touched.add(name);
    if (h.count === 0) {
      l.holders.delete(session);
      const s = this.sessions.get(session) as SessionState;
      this.keepSession(s);
      s.holds.delete(name);
    }
    return { kind: 'released', lock: name, count: h.count };
  }

  private downgrade(session: SessionId, name: string, fx: Effects): LockResult {
    const bad = validLockName(name);
    if (bad !== null) return err('BAD_REQUEST', bad);
    if (!this.sessions.has(session)) return this.noSession(session);
    const l = this.locks.get(name);
    const h = l?.holders.get(session);
    if (l === undefined || h === undefined) return err('NOT_FOUND', `session ${session} does not hold ${name}`);
    if (h.mode !== 'exclusive') return err('BAD_REQUEST', `session ${session} holds ${name} shared, not exclusive`);
    this.keepLock(l);
    h.mode = 'shared';
    fx.touched.add(name);
    return { kind: 'downgraded', lock: name, token: h.token, count: h.count };
  }

  private cancelWait(cmd: CancelWait, fx: Effects): LockResult {
    const bad = validLockName(cmd.lock) ?? validRequestId(cmd.requestId);
    if (bad !== null) return err('BAD_REQUEST', bad);
    if (cmd.reason !== 'timeout' && cmd.reason !== 'cancelled') return err('BAD_REQUEST', 'reason must be timeout or cancelled');
    const s = this.sessions.get(cmd.session);
    if (s === undefined) return this.noSession(cmd.session);
    if (s.waits.get(cmd.lock) !== cmd.requestId) {
      // Granted before the cancel arrived (the requester never heard): say so, with the
      // hold, so the requester releases it instead of leaking it. Changes nothing.
      const h = this.locks.get(cmd.lock)?.holders.get(s.id);
      if (h !== undefined && h.requestId === cmd.requestId) {
        return { kind: 'granted', lock: cmd.lock, token: h.token, mode: h.mode, count: h.count };
      }
      return err('NOT_FOUND', `request ${cmd.requestId} of session ${s.id} is not waiting for ${cmd.lock}`);
    }
    const l = this.lockOf(cmd.lock);
    const w = this.removeWaiter(l, s.id);
    this.keepSession(s);
    s.waits.delete(cmd.lock);
    fx.touched.add(cmd.lock);
    switch (cmd.reason) {
      case 'timeout':
        this.failWaiter(w, cmd.lock, 'TIMEOUT', `wait for ${cmd.lock} timed out`, fx);
        break;
      case 'cancelled':
        this.failWaiter(w, cmd.lock, 'CANCELLED', `wait for ${cmd.lock} cancelled`, fx);
        break;
      default:
        return assertNever(cmd.reason, 'cancel reason');
    }
    return { kind: 'ok' };
  }

  private forceRelease(name: string, fx: Effects): LockResult {
    const bad = validLockName(name);
    if (bad !== null) return err('BAD_REQUEST', bad);
    const l = this.locks.get(name);
    if (l === undefined || l.holders.size === 0) return err('NOT_FOUND', `lock ${name} has no holders`);
    this.keepLock(l);
    for (const h of l.holders.values()) {
      const s = this.sessions.get(h.session);
      if (s !== undefined) this.keepSession(s);
      assert(s !== undefined && s.holds.delete(name), 'holder session holds the lock');
      fx.events.push({ kind: 'revoked', session: h.session, lock: name, token: h.token, reason: 'forced' });
    }
    l.holders.clear();
    fx.touched.add(name);
    return { kind: 'ok' };
  }

  // ------------------------------------------------------------------ grants

  /** Could `session` be granted `mode` now, ignoring the queue (the delay counts)? */
  private grantable(l: LockState, session: SessionId, mode: LockMode): boolean {
    if (l.delay !== null) return false;
    for (const h of l.holders.values()) {
      if (h.session !== session && !compatible(h.mode, mode)) return false;
    }
    return true;
  }

  private grant(l: LockState, s: SessionState, mode: LockMode, requestId: string, fx: Effects): Holder {
    assert(fx.index >= l.lastToken, 'fencing tokens never go back');
    this.keepLock(l);
    this.keepSession(s);
    const token = fencingToken(fx.index);
    l.lastToken = token;
    const held = l.holders.get(s.id);
    if (held !== undefined) {
      // Upgrade shared -> exclusive: a new grant, so a new token.
      assert(held.mode === 'shared' && mode === 'exclusive' && l.holders.size === 1, 'upgrade only when sole holder');
      held.mode = 'exclusive';
      held.count++;
      held.token = token;
      held.requestId = requestId;
      return held;
    }
    const h: Holder = { session: s.id, mode, count: 1, token, requestId };
    l.holders.set(s.id, h);
    s.holds.add(l.name);
    return h;
  }

  /** Grant from the head of every touched lock's queue, GC empty locks, check invariants. */
  private grantAndCheck(fx: Effects): void {
    for (const name of fx.touched) {
      const l = this.locks.get(name);
      if (l === undefined) continue;
      for (;;) {
        const head = l.waiters[0];
        if (head === undefined || !this.grantable(l, head.session, head.mode)) break;
        this.keepLock(l);
        l.waiters.shift();
        const s = this.sessions.get(head.session);
        assert(s !== undefined && s.waits.get(name) === head.requestId, 'waiter session waits here');
        this.keepSession(s);
        s.waits.delete(name);
        const h = this.grant(l, s, head.mode, head.requestId, fx);
        const ev: LockEvent = {
          kind: 'granted',
          session: s.id,
          lock: name,
          requestId: head.requestId,
          clientId: head.clientId,
          seq: head.seq,
          token: h.token,
          mode: h.mode,
          count: h.count,
        };
        fx.events.push(ev);
        this.updateCachedResult(head, { kind: 'granted', lock: name, token: h.token, mode: h.mode, count: h.count });
      }
      if (l.holders.size === 0 && l.waiters.length === 0 && l.delay === null) {
        this.keepLock(l);
        this.locks.delete(name);
        this.recount(l, false);
      } else {
        this.checkLock(l);
        this.recount(l, true);
      }
    }
  }

  private failWaiter(w: Waiter, lock: string, code: 'SESSION_EXPIRED' | 'TIMEOUT' | 'CANCELLED', message: string, fx: Effects): void {
    fx.events.push({
      kind: 'failed',
      session: w.session,
      lock,
      requestId: w.requestId,
      clientId: w.clientId,
      seq: w.seq,
      code,
      message,
    });
    this.updateCachedResult(w, err(code, message));
  }

  private updateCachedResult(w: Waiter, result: LockResult): void {
    const s = this.sessions.get(w.session);
    const entry = s?.lanes.get(w.clientId);
    if (s !== undefined && entry !== undefined && entry.lastSeq === w.seq) {
      this.keepSession(s);
      entry.lastResult = result;
    }
  }

  /** Invariants of one lock, after every apply that touched it. */
  private checkLock(l: LockState): void {
    let exclusive = 0;
    for (const h of l.holders.values()) {
      assert(h.count > 0, `hold count positive on ${l.name}`);
      assert(h.token > 0 && h.token <= l.lastToken, `holder token within lastToken on ${l.name}`);
      if (h.mode === 'exclusive') exclusive++;
      assert(this.sessions.get(h.session)?.holds.has(l.name) === true, `holder's session holds ${l.name}`);
    }
    assert(exclusive === 0 || l.holders.size === 1, `exclusive holder beside another holder on ${l.name}`);
    assert(l.waiters.length <= waitersPerLockMax, `waiters bounded on ${l.name}`);
    const head = l.waiters[0];
    assert(head === undefined || !this.grantable(l, head.session, head.mode), `head waiter of ${l.name} is grantable`);
    if (l.waiters.length <= 64) {
      const seen = new Set<SessionId>();
      for (const w of l.waiters) {
        assert(!seen.has(w.session), `one waiter per session on ${l.name}`);
        seen.add(w.session);
        assert(this.sessions.get(w.session)?.waits.get(l.name) === w.requestId, `waiter's session waits on ${l.name}`);
      }
    }
  }

  // ------------------------------------------------------------------ helpers

  /** Successors in the wait-for graph; `indexes` caches queue positions for one check. */
  private blockersOfSession(session: SessionId, out: SessionId[], indexes: Map<string, QueueIndex>): SessionId[] {
    const s = this.sessions.get(session);
    assert(s !== undefined, 'wait-for graph node is a live session');
    for (const name of s.waits.keys()) {
      const l = this.lockOf(name);
      let qi = indexes.get(name);
      if (qi === undefined) {
        qi = new QueueIndex(l.waiters);
        indexes.set(name, qi);
      }
      qi.blockers(l.holders.values(), session, out);
    }
    return out;
  }

  /** Brings stats() up to date for `l` (gone from the table when !present): O(1), whatever the table holds. */
  private recount(l: LockState, present: boolean): void {
    if (l.countedAs !== 'free') this.heldLocks[l.countedAs]--;
    this.waitersCount -= l.countedWaiters;
    const first = l.holders.values().next();
    // An exclusive holder is the only holder (checkLock): the first one says how the lock is held.
    l.countedAs = !present || first.done === true ? 'free' : first.value.mode;
    l.countedWaiters = present ? l.waiters.length : 0;
    if (l.countedAs !== 'free') this.heldLocks[l.countedAs]++;
    this.waitersCount += l.countedWaiters;
    assert(this.heldLocks.exclusive >= 0 && this.heldLocks.shared >= 0 && this.waitersCount >= 0, 'lock stats never negative');
  }

  /** Before `l` changes or leaves the table: a snapshot being written that has not written it yet keeps its state. */
  private keepLock(l: LockState): void {
    const c = this.cow;
    if (c === null || l.writtenGeneration === c.generation || c.locks.has(l.name)) return;
    c.locks.set(l.name, { data: lockInfoOf(l), written: false });
  }

  private keepSession(s: SessionState): void {
    const c = this.cow;
    if (c === null || s.writtenGeneration === c.generation || c.sessions.has(s.id)) return;
    c.sessions.set(s.id, { data: sessionSnapshotOf(s), written: false });
  }

  /** Before a lock named `name` is created: a snapshot being written must not contain it (unless it held an earlier one of that name). */
  private keepNewLock(name: string): void {
    const c = this.cow;
    if (c !== null && !c.locks.has(name)) c.locks.set(name, { data: null, written: true });
  }

  private keepNewSession(id: SessionId): void {
    const c = this.cow;
    if (c !== null && !c.sessions.has(id)) c.sessions.set(id, { data: null, written: true });
  }

  private lockOf(name: string): LockState {
    const l = this.locks.get(name);
    assert(l !== undefined, `lock ${name} exists`);
    return l;
  }

  private createLock(name: string): LockState {
    assert(!this.locks.has(name), 'creating a new lock');
    this.keepNewLock(name);
    const l: LockState = { name, holders: new Map(), waiters: [], lastToken: fencingToken(0), delay: null, writtenGeneration: 0,
      countedAs: 'free', countedWaiters: 0 };
    this.locks.set(name, l);
    return l;
  }

  private removeWaiter(l: LockState, session: SessionId): Waiter {
    const at = l.waiters.findIndex((w) => w.session === session);
    assert(at >= 0, `session ${session} waits on ${l.name}`);
    this.keepLock(l);
    const [w] = l.waiters.splice(at, 1);
    assert(w !== undefined && w.session === session, 'removed the right waiter');
    return w;
  }

  private addOpener(client: ClientId, id: SessionId): void {
    let opened = this.openedBy.get(client);
    if (opened === undefined) {
      opened = new Set();
      this.openedBy.set(client, opened);
    }
    opened.add(id);
  }

  /** Records a client request's result where dedupEntry() will find it. */
  private remember(cmd: LockCommand, client: ClientId, seq: number, result: LockResult): void {
    if (cmd.kind === 'openSession') {
      if (result.kind !== 'sessionOpened') return; // nothing changed: a retry answers the same
      const s = this.sessions.get(result.session);
      assert(s !== undefined && s.lanes.size === 0, 'a new session has no dedup entries');
      this.keepSession(s);
      s.lanes.set(client, { lastSeq: seq, lastResult: result });
      return;
    }
    const session = sessionOf(cmd);
    if (session !== null) {
      // Gone (never open, or closed by this request): a retry answers SESSION_EXPIRED.
      const s = this.sessions.get(session);
      if (s === undefined) return;
      this.keepSession(s);
      const entry = s.lanes.get(client);
      assert(entry === undefined || seq > entry.lastSeq, 'dedup seq increases');
      if (entry === undefined) s.lanes.set(client, { lastSeq: seq, lastResult: result });
      else {
        entry.lastSeq = seq;
        entry.lastResult = result;
      }
      assert(s.lanes.size <= dedupLanesPerSessionMax, 'session dedup entries bounded');
      return;
    }
    const entry = this.sessionless.get(client);
    assert(entry === undefined || seq > entry.lastSeq, 'dedup seq increases');
    this.sessionless.delete(client); // most recently used goes last
    this.sessionless.set(client, { lastSeq: seq, lastResult: result });
    this.evicted.delete(client);
    while (this.sessionless.size > dedupClientsWithoutSessionMax) {
      const [oldest, e] = this.sessionless.entries().next().value as [ClientId, DedupEntry];
      this.sessionless.delete(oldest);
      this.evicted.set(oldest, e.lastSeq);
    }
    while (this.evicted.size > dedupEvictedClientsMax) {
      this.evicted.delete(this.evicted.keys().next().value as ClientId);
    }
  }

  // ------------------------------------------------------------------ read API

  lockInfo(name: string): LockInfo | null {
    const l = this.locks.get(name);
    return l === undefined ? null : lockInfoOf(l);
  }

  /** Every lock with a holder, a waiter or a pending delay, in creation order. */
  listLocks(): LockInfo[] {
    return [...this.locks.keys()].map((n) => this.lockInfo(n) as LockInfo);
  }

  /** Counts for /metrics in O(1) (listLocks() copies every lock: not for a timer). */
  stats(): LockTableStats {
    return { heldExclusive: this.heldLocks.exclusive, heldShared: this.heldLocks.shared, waiters: this.waitersCount,
      sessions: this.sessions.size, locks: this.locks.size };
  }

  hasSession(id: SessionId): boolean {
    return this.sessions.has(id);
  }

  sessionInfo(id: SessionId): SessionInfo | null {
    const s = this.sessions.get(id);
    if (s === undefined) return null;
    return {
      session: s.id,
      clientId: s.clientId,
      ttlMs: s.ttlMs,
      lockDelayMs: s.lockDelayMs,
      renewedIndex: s.renewedIndex,
      renewedMs: s.renewedMs,
      holds: [...s.holds],
      waits: [...s.waits].map(([lock, requestId]) => ({ lock, requestId })),
    };
  }

  /** Open sessions in id order (= opening order). */
  listSessions(): SessionInfo[] {
    return [...this.sessions.keys()].map((id) => this.sessionInfo(id) as SessionInfo);
  }

  /** Locks under lock-delay: the leader proposes wakeDelayed for each when due. */
  delayedLocks(): DelayedLock[] {
    const out: DelayedLock[] = [];
    for (const l of this.locks.values()) if (l.delay !== null) out.push({ ...l.delay });
    return out;
  }

  get appliedIndex(): LogIndex {
    return this.lastAppliedIndex;
  }

  // ------------------------------------------------------------------ snapshot

  /** The whole state in one piece (version 3): O(table) on the caller's turn; beginSnapshot writes it in slices. */
  toSnapshot(): LockTableSnapshot {
    return {
      version: 3,
      lastAppliedIndex: this.lastAppliedIndex,
      sessions: [...this.sessions.values()].map(sessionSnapshotOf),
      locks: [...this.locks.values()].map(lockInfoOf),
      sessionlessClients: lanesSnapshot(this.sessionless),
      evictedClients: [...this.evicted].map(([clientId, lastSeq]) => ({ clientId, lastSeq })),
    };
  }

  /**
   * Starts writing the state as of now (appliedIndex) in slices (version 4): the table may
   * apply entries between slices, each slice still reflects this index. The sessionless
   * dedup entries and tombstones (bounded by dedupClientsWithoutSessionMax and
   * dedupEvictedClientsMax) are copied into the header now.
   */
  beginSnapshot(): LockTableSnapshotWriter {
    assert(this.cow === null, 'one snapshot writer at a time');
    const cow: SnapshotCopyOnWrite = { generation: ++this.snapshotGeneration, locks: new Map(), sessions: new Map() };
    this.cow = cow;
    const header: LockTableSnapshotHeader = {
      version: 4,
      lastAppliedIndex: this.lastAppliedIndex,
      sessionlessClients: lanesSnapshot(this.sessionless),
      evictedClients: [...this.evicted].map(([clientId, lastSeq]) => ({ clientId, lastSeq })),
    };
    return new LockTableSnapshotWriter(header, cow, this.sessions, this.locks, () => {
      if (this.cow === cow) this.cow = null;
    });
  }

  /** Whether a snapshot writer is under way (its copies are kept until it is done or aborted). */
  get snapshotWriting(): boolean {
    return this.cow !== null;
  }

  /** The table a version 4 snapshot (header and every slice, in order) describes. */
  static fromSlices(header: LockTableSnapshotHeader, slices: readonly LockTableSnapshotSlice[]): LockTable {
    assert(header.version === 4, `lock table snapshot header version ${String(header.version)}`);
    const sessions: SessionSnapshot[] = [];
    const locks: LockInfo[] = [];
    for (const slice of slices) {
      for (const x of slice.sessions) sessions.push(x);
      for (const x of slice.locks) locks.push(x);
    }
    return LockTable.fromSnapshot({ version: 3, lastAppliedIndex: header.lastAppliedIndex, sessions, locks,
      sessionlessClients: header.sessionlessClients, evictedClients: header.evictedClients });
  }

  static fromSnapshot(snap: LockTableSnapshot): LockTable {
    assert(snap.version === 2 || snap.version === 3, `unknown lock table snapshot version ${String(snap.version)}`);
    const t = new LockTable();
    const entries = (cs: readonly ClientSnapshot[]): Map<ClientId, DedupEntry> =>
      new Map(cs.map((c) => [c.clientId, { lastSeq: c.lastSeq, lastResult: structuredCloneResult(c.lastResult) }]));
    t.lastAppliedIndex = snap.lastAppliedIndex;
    for (const s of snap.sessions) {
      t.sessions.set(s.session, {
        id: s.session,
        clientId: s.clientId,
        ttlMs: s.ttlMs,
        lockDelayMs: s.lockDelayMs,
        renewedIndex: s.renewedIndex,
        renewedMs: s.renewedMs,
        holds: new Set(s.holds),
        waits: new Map(s.waits.map((w) => [w.lock, w.requestId])),
        lanes: entries(s.lanes),
        writtenGeneration: 0,
      });
      t.addOpener(s.clientId, s.session);
      assert(s.lanes.length <= dedupLanesPerSessionMax, 'snapshot session dedup entries bounded');
    }
    for (const li of snap.locks) {
      const l: LockState = {
        name: li.name,
        // A version 2 snapshot has no requestId (undefined at run time despite the type).
        holders: new Map(li.holders.map((h) => [h.session, { ...h, requestId: h.requestId ?? '' }])),
        waiters: li.waiters.map((w) => ({ ...w })),
        lastToken: li.lastToken,
        delay: li.delay === null ? null : { ...li.delay },
        writtenGeneration: 0,
        countedAs: 'free',
        countedWaiters: 0,
      };
      assert(!t.locks.has(l.name), `lock ${l.name} twice in a snapshot`);
      t.locks.set(l.name, l);
    }
    for (const [c, e] of entries(snap.sessionlessClients)) t.sessionless.set(c, e);
    for (const c of snap.evictedClients) t.evicted.set(c.clientId, c.lastSeq);
    for (const l of t.locks.values()) {
      t.checkLock(l);
      t.recount(l, true);
    }
    assert(t.sessionless.size <= dedupClientsWithoutSessionMax, 'snapshot sessionless clients bounded');
    assert(t.evicted.size <= dedupEvictedClientsMax, 'snapshot evicted clients bounded');
    return t;
  }
}

/** The session a client command names, or null (openSession, forceRelease, leader commands). */
function sessionOf(cmd: LockCommand): SessionId | null {
  switch (cmd.kind) {
    case 'keepAlive': case 'closeSession': case 'acquire': case 'release': case 'downgrade': case 'cancelWait':
      return cmd.session;
    case 'openSession': case 'expireSessions': case 'forceRelease': case 'wakeDelayed':
      return null;
    default:
      return assertNever(cmd, 'lock command');
  }
}

function structuredCloneResult(r: LockResult): LockResult {
  return r.kind === 'expired' ? { kind: 'expired', sessions: [...r.sessions] } : { ...r };
}
