// The leader-side lease clock: decides which sessions to propose for expiry and
// which lock-delays to propose waking. Pure; time is the caller's `nowMs` (this
// node's clock). Followers may feed it too but never act on it.
//
// Countdowns are durations measured on the leader's own clock: becomeLeader restarts
// every one from its nowMs, so a failover (or a long gap) never expires sessions en
// masse, and a session's deadline only ever moves later. Each expiry carries the
// renewedIndex it was based on, so a keepAlive applied in between wins (see
// commands.ts ExpiredLease).

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

export class LeaseClock {
  private readonly leases = new Map<SessionId, Lease>();
  /** lock -> due time on this node's clock. */
  private readonly delays = new Map<string, number>();

  /**
   * This node became leader at nowMs: forget what was tracked and restart every
   * lease and lock-delay countdown from nowMs (pass table.listSessions() and
   * table.delayedLocks()).
   */
  becomeLeader(nowMs: number, sessions: readonly LeaseSeed[], delays: readonly DelaySeed[] = []): void {
    assert(Number.isFinite(nowMs), 'nowMs finite');
    this.leases.clear();
    this.delays.clear();
    for (const s of sessions) this.track(s.session, s.ttlMs, nowMs, s.renewedIndex);
    for (const d of delays) this.delay(d.lock, nowMs + d.lockDelayMs);
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
   * sessions, starts and clears lock-delays.
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
    for (const s of outcome.endedSessions) this.untrack(s);
    for (const d of outcome.delayedLocks) this.delay(d.lock, nowMs + d.lockDelayMs);
  }
}
