// The leader-side lease clock: decides which sessions to propose for expiry, which
// lock-delays to propose waking and which waits to propose timing out. Pure; time is the caller's `nowMs` (this
// node's clock). Followers may feed it too but never act on it.
//
// Countdowns are durations measured on the leader's own clock: becomeLeader restarts
// every one from its nowMs, so a failover (or a long gap) never expires sessions en
// masse, and a session's deadline only ever moves later. Each expiry carries the
// renewedIndex it was based on, so a keepAlive applied in between wins (see
// commands.ts ExpiredLease). Wait deadlines are replicated as durations (the
// acquire's waitMs, kept with the waiter), so a new leader times out the waits it
// inherits too; like leases, their countdowns restart at becomeLeader, so a wait can
// last up to waitMs longer than asked across a failover, never shorter.

import { assert } from '../assert.js';
import type { LogIndex, SessionId } from '../ids.js';
import type { ApplyOutcome, ExpiredLease, LockCommand } from './commands.js';

interface Lease {
  readonly session: SessionId;
  readonly ttlMs: number;
  deadlineMs: number;
  renewedIndex: LogIndex;
}

export interface LeaseSeed {
  readonly session: SessionId;
  readonly ttlMs: number;
  readonly renewedIndex: LogIndex;
}

export interface DelaySeed {
  readonly lock: string;
  readonly lockDelayMs: number;
}

/** A waiting acquire with a wait limit: what the leader proposes cancelWait('timeout') for when due. */
export interface WaitSeed {
  readonly session: SessionId;
  readonly lock: string;
  readonly requestId: string;
  readonly waitMs: number;
}

interface Wait extends WaitSeed {
  readonly deadlineMs: number;
}

const waitKey = (session: SessionId, lock: string): string => `${session}\u0000${lock}`;

export class LeaseClock {
  private readonly leases = new Map<SessionId, Lease>();
  /** lock -> due time on this node's clock. */
  private readonly delays = new Map<string, number>();
  /** session + lock -> a wait with a limit (a session waits at most once per lock). */
  private readonly waits = new Map<string, Wait>();

  /**
   * This node became leader at nowMs: forget what was tracked and restart every
   * lease and lock-delay countdown from nowMs (pass table.listSessions() and
   * table.delayedLocks()).
   */
  becomeLeader(nowMs: number, sessions: readonly LeaseSeed[], delays: readonly DelaySeed[] = [],
    waits: readonly WaitSeed[] = []): void {
    assert(Number.isFinite(nowMs), 'nowMs finite');
    this.leases.clear();
    this.delays.clear();
    this.waits.clear();
    for (const s of sessions) this.track(s.session, s.ttlMs, nowMs, s.renewedIndex);
    for (const d of delays) this.delay(d.lock, nowMs + d.lockDelayMs);
    for (const w of waits) this.trackWait(w, nowMs);
    assert(this.leases.size === sessions.length, 'becomeLeader: sessions are distinct');
  }

  track(session: SessionId, ttlMs: number, nowMs: number, renewedIndex: LogIndex): void {
    assert(ttlMs > 0 && Number.isFinite(nowMs), 'track: positive ttl, finite clock');
    assert(!this.leases.has(session), `session ${session} tracked twice`);
    this.leases.set(session, { session, ttlMs, deadlineMs: nowMs + ttlMs, renewedIndex });
  }

  /** A keepAlive for the session applied at renewedIndex; nowMs is THIS node's clock. */
  keepAlive(session: SessionId, nowMs: number, renewedIndex: LogIndex): void {
    const lease = this.leases.get(session);
    if (lease === undefined) return; // opened before this node tracked it: becomeLeader seeds it
    assert(renewedIndex >= lease.renewedIndex, 'renewals applied in log order');
    lease.deadlineMs = Math.max(lease.deadlineMs, nowMs + lease.ttlMs);
    lease.renewedIndex = renewedIndex;
  }

  untrack(session: SessionId): void {
    this.leases.delete(session);
  }

  delay(lock: string, untilMs: number): void {
    assert(Number.isFinite(untilMs), 'delay until finite');
    this.delays.set(lock, Math.max(this.delays.get(lock) ?? untilMs, untilMs));
  }

  undelay(lock: string): void {
    this.delays.delete(lock);
  }

  /** A wait with a limit (waitMs > 0) queued at nowMs; one that has no limit is not tracked. */
  trackWait(w: WaitSeed, nowMs: number): void {
    assert(Number.isSafeInteger(w.waitMs) && w.waitMs >= 0 && Number.isFinite(nowMs), 'trackWait: waitMs a duration');
    if (w.waitMs === 0) return;
    const key = waitKey(w.session, w.lock);
    assert(!this.waits.has(key), `session ${w.session} tracked waiting twice for ${w.lock}`);
    this.waits.set(key, { session: w.session, lock: w.lock, requestId: w.requestId, waitMs: w.waitMs, deadlineMs: nowMs + w.waitMs });
  }

  /** The wait of `session` on `lock` ended (granted, failed or cancelled). */
  untrackWait(session: SessionId, lock: string): void {
    this.waits.delete(waitKey(session, lock));
  }

  /**
   * Waits whose limit passed, earliest first (ties by session, lock): propose
   * cancelWait('timeout') for each. Re-proposing before it applies is harmless (the
   * second one answers NOT_FOUND).
   */
  waitsDue(nowMs: number, countMax = 1024): WaitSeed[] {
    assert(countMax > 0, 'countMax positive');
    const due = [...this.waits.values()].filter((w) => w.deadlineMs <= nowMs);
    due.sort((a, b) => a.deadlineMs - b.deadlineMs || a.session - b.session || (a.lock < b.lock ? -1 : a.lock > b.lock ? 1 : 0));
    return due.slice(0, countMax).map(({ session, lock, requestId, waitMs }) => ({ session, lock, requestId, waitMs }));
  }

  get waitingCount(): number {
    return this.waits.size;
  }

  /**
   * Sessions whose countdown reached nowMs, earliest deadline first, ties by session
   * id: what the leader should propose in one expireSessions entry. Re-proposing
   * (until the entry applies and untracks them) is harmless.
   */
  expired(nowMs: number, countMax = 1024): ExpiredLease[] {
    assert(countMax > 0, 'countMax positive');
    const due: Lease[] = [];
    for (const l of this.leases.values()) if (l.deadlineMs <= nowMs) due.push(l);
    due.sort((a, b) => a.deadlineMs - b.deadlineMs || a.session - b.session);
    return due.slice(0, countMax).map((l) => ({ session: l.session, renewedIndex: l.renewedIndex }));
  }

  /** Locks whose lock-delay has passed (propose wakeDelayed for each), by due time then name. */
  delaysDue(nowMs: number): string[] {
    const due = [...this.delays].filter(([, at]) => at <= nowMs);
    due.sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    return due.map(([lock]) => lock);
  }

  /** Earliest deadline (lease or delay) tracked, for scheduling the next check; null if none. */
  nextDeadlineMs(): number | null {
    let next: number | null = null;
    for (const l of this.leases.values()) if (next === null || l.deadlineMs < next) next = l.deadlineMs;
    for (const at of this.delays.values()) if (next === null || at < next) next = at;
    for (const w of this.waits.values()) if (next === null || w.deadlineMs < next) next = w.deadlineMs;
    return next;
  }

  deadlineOf(session: SessionId): number | null {
    return this.leases.get(session)?.deadlineMs ?? null;
  }

  get trackedCount(): number {
    return this.leases.size;
  }

  /**
   * Convenience wiring: call after every applied lock command with its index, outcome
   * and this node's clock. Tracks opened sessions, renews on keepAlive, untracks ended
   * sessions, starts and clears lock-delays, starts and ends timed waits.
   */
  observe(cmd: LockCommand, index: LogIndex, outcome: ApplyOutcome, nowMs: number): void {
    if (outcome.duplicate) return; // a retry changed nothing in the table
    const r = outcome.result;
    if (cmd.kind === 'openSession' && r.kind === 'sessionOpened') {
      this.track(r.session, r.ttlMs, nowMs, index);
    } else if (cmd.kind === 'keepAlive' && r.kind === 'ok') {
      this.keepAlive(cmd.session, nowMs, index);
    } else if (cmd.kind === 'wakeDelayed') {
      this.undelay(cmd.lock);
    }
    if (cmd.kind === 'acquire' && r.kind === 'queued') {
      this.trackWait({ session: cmd.session, lock: cmd.lock, requestId: cmd.requestId, waitMs: cmd.waitMs ?? 0 }, nowMs);
    }
    for (const ev of outcome.events) if (ev.kind !== 'revoked') this.untrackWait(ev.session, ev.lock);
    for (const s of outcome.endedSessions) this.untrack(s);
    for (const d of outcome.delayedLocks) this.delay(d.lock, nowMs + d.lockDelayMs);
  }
}
