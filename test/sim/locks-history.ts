// The lock simulator's history checker: replays the committed lock history (each
// entry's command and ApplyOutcome, in log-index order) into a small model built
// only from those outcomes — never from LockTable internals — and fails with a
// named property the moment the history breaks a promise of the lock manager:
// - exclusive-overlap / shared-exclusive-overlap: a grant beside an incompatible
//   holder (reentrant counts and a sole holder's upgrade excepted);
// - token-index / token-order: a grant's fencing token is the index of the entry
//   that made it, and strictly increases per lock from one granting entry to the
//   next (a shared batch granted by one entry shares it);
// - fifo: an immediate grant while others wait, or a woken waiter that is not the
//   head of the queue (upgrades go ahead of ordinary waiters);
// - waiter-stuck: after an entry, the head waiter of a lock is grantable yet waits;
// - lock-delay: a grant on a lock whose expired holder's lock-delay is pending;
// - session-end: a closed/expired session still holds or waits for something;
// - dedup: a duplicate (retried) request changed something;
// - model: an outcome the model cannot explain (releasing what is not held, ...).

import type { SessionId } from '../../core/ids.js';
import type { ApplyOutcome, LockCommand, LockMode } from '../../core/locks/index.js';
import { InvariantViolation } from '../checker/raft-invariants.js';

interface ModelHold {
  mode: LockMode;
  count: number;
  token: number;
  readonly grantedIndex: number;
}

interface ModelWaiter {
  readonly session: SessionId;
  readonly mode: LockMode;
  readonly requestId: string;
}

interface ModelLock {
  readonly holders: Map<SessionId, ModelHold>;
  readonly queue: ModelWaiter[];
  lastToken: number;
  delayed: boolean;
}

/** One grant as the committed history made it: the fencing token names the entry. */
export interface HistoryGrant {
  readonly index: number;
  readonly session: SessionId;
  readonly lock: string;
  readonly mode: LockMode;
  readonly token: number;
}

const compatible = (a: LockMode, b: LockMode): boolean => a === 'shared' && b === 'shared';

export class LockHistoryChecker {
  private readonly locks = new Map<string, ModelLock>();
  private readonly sessions = new Set<SessionId>();
  private lastIndex = 0;
  /** Every grant in index order (new holds, upgrades and reentrant counts). */
  readonly grants: HistoryGrant[] = [];
  /** index -> grants made by that entry (for the clients' end-to-end check). */
  readonly grantsAt = new Map<number, HistoryGrant[]>();
  grantsCount = 0;
  overlapsChecked = 0;

  fail(property: string, detail: string): never {
    throw new InvariantViolation(property, detail);
  }

  private lock(name: string): ModelLock {
    let l = this.locks.get(name);
    if (l === undefined) {
      l = { holders: new Map(), queue: [], lastToken: 0, delayed: false };
      this.locks.set(name, l);
    }
    return l;
  }

  /** Feeds the committed entry at `index` (indices strictly increase; empty entries may be skipped). */
  onEntry(index: number, cmd: LockCommand, out: ApplyOutcome): void {
    if (index <= this.lastIndex) this.fail('model', `history index ${index} after ${this.lastIndex}`);
    this.lastIndex = index;
    const at = `index ${index} (${cmd.kind})`;
    if (out.duplicate) {
      if (out.events.length > 0 || out.endedSessions.length > 0 || out.delayedLocks.length > 0) {
        this.fail('dedup', `${at}: a duplicate request had effects ${JSON.stringify(out)}`);
      }
      return;
    }
    const touched = new Set<string>();
    const r = out.result;
    // 1. What the command itself did (the table's dispatch step).
    switch (cmd.kind) {
      case 'openSession':
        if (r.kind === 'sessionOpened') {
          if (this.sessions.has(r.session) || r.session !== index) this.fail('model', `${at}: session id ${r.session} not fresh/not the index`);
          this.sessions.add(r.session);
        }
        break;
      case 'acquire':
        touched.add(cmd.lock);
        if (r.kind === 'granted') this.immediateGrant(index, cmd.session, cmd.lock, cmd.mode, r.mode, r.token, r.count, at);
        else if (r.kind === 'queued') this.enqueue(cmd.session, cmd.lock, cmd.mode, cmd.requestId, at);
        break;
      case 'release':
        if (r.kind === 'released') {
          touched.add(cmd.lock);
          const h = this.lock(cmd.lock).holders.get(cmd.session);
          if (h === undefined) this.fail('model', `${at}: session ${cmd.session} released ${cmd.lock} it does not hold`);
          h.count--;
          if (h.count !== r.count) this.fail('model', `${at}: release count ${r.count}, model has ${h.count}`);
          if (h.count === 0) this.lock(cmd.lock).holders.delete(cmd.session);
        }
        break;
      case 'downgrade':
        if (r.kind === 'downgraded') {
          touched.add(cmd.lock);
          const h = this.lock(cmd.lock).holders.get(cmd.session);
          if (h === undefined || h.mode !== 'exclusive') this.fail('model', `${at}: downgrade of a hold that is not exclusive`);
          if (h.token !== r.token) this.fail('token-order', `${at}: downgrade changed token ${h.token} -> ${r.token}`);
          h.mode = 'shared';
        }
        break;
      case 'wakeDelayed':
        if (r.kind === 'ok') {
          touched.add(cmd.lock);
          this.lock(cmd.lock).delayed = false;
        }
        break;
      case 'keepAlive':
      case 'closeSession':
      case 'expireSessions':
      case 'cancelWait':
      case 'forceRelease':
        break;
    }
    // 2. Failures and revocations (before any grant the entry made).
    for (const ev of out.events) {
      if (ev.kind === 'failed') {
        touched.add(ev.lock);
        const q = this.lock(ev.lock).queue;
        const i = q.findIndex((w) => w.session === ev.session && w.requestId === ev.requestId);
        if (i < 0) this.fail('model', `${at}: failed a wait (${ev.session} on ${ev.lock}) that is not queued`);
        q.splice(i, 1);
      } else if (ev.kind === 'revoked') {
        touched.add(ev.lock);
        const l = this.lock(ev.lock);
        const h = l.holders.get(ev.session);
        if (h === undefined || h.token !== ev.token) this.fail('model', `${at}: revoked a hold (${ev.session} on ${ev.lock}) the model does not have`);
        l.holders.delete(ev.session);
      }
    }
    for (const s of out.endedSessions) {
      if (!this.sessions.delete(s)) this.fail('model', `${at}: ended session ${s} that is not open`);
      for (const [name, l] of this.locks) {
        if (l.queue.some((w) => w.session === s)) this.fail('session-end', `${at}: session ${s} ended but still waits for ${name} (no failure pushed)`);
        if (l.holders.delete(s)) touched.add(name);
      }
    }
    for (const d of out.delayedLocks) {
      touched.add(d.lock);
      this.lock(d.lock).delayed = true;
    }
    // 3. Waiters woken by this entry, in order.
    for (const ev of out.events) {
      if (ev.kind !== 'granted') continue;
      touched.add(ev.lock);
      this.wake(index, ev.session, ev.lock, ev.mode, ev.requestId, ev.token, ev.count, at);
    }
    // 4. After the entry: no incompatible holders, no grantable head waiter.
    for (const name of touched) this.checkLock(name, at);
  }

  private record(g: HistoryGrant): void {
    this.grants.push(g);
    this.grantsCount++;
    const list = this.grantsAt.get(g.index) ?? [];
    list.push(g);
    this.grantsAt.set(g.index, list);
  }

  private checkNewToken(l: ModelLock, index: number, token: number, lock: string, at: string): void {
    if (token !== index) this.fail('token-index', `${at}: ${lock} granted with token ${token}, not the granting index ${index}`);
    if (!(token > l.lastToken || (token === l.lastToken && l.lastToken === index))) {
      this.fail('token-order', `${at}: ${lock} token ${token} after token ${l.lastToken}`);
    }
    l.lastToken = token;
  }

  private checkCompatible(l: ModelLock, session: SessionId, mode: LockMode, lock: string, at: string): void {
    this.overlapsChecked++;
    if (l.delayed) this.fail('lock-delay', `${at}: ${lock} granted to ${session} while its lock-delay is pending`);
    for (const [other, h] of l.holders) {
      if (other === session || compatible(h.mode, mode)) continue;
      const property = h.mode === 'exclusive' && mode === 'exclusive' ? 'exclusive-overlap' : 'shared-exclusive-overlap';
      this.fail(property, `${at}: ${lock} granted ${mode} to session ${session} while session ${other} holds it ${h.mode} (token ${h.token}, since index ${h.grantedIndex})`);
    }
  }

  private immediateGrant(index: number, session: SessionId, lock: string, want: LockMode, mode: LockMode, token: number, count: number, at: string): void {
    if (!this.sessions.has(session)) this.fail('model', `${at}: grant to session ${session} that is not open`);
    const l = this.lock(lock);
    const held = l.holders.get(session);
    if (held !== undefined && (held.mode === 'exclusive' || want === 'shared')) {
      // Reentrant: same token and mode, one more count.
      if (token !== held.token || mode !== held.mode || count !== held.count + 1) {
        this.fail('model', `${at}: reentrant grant of ${lock} to ${session} as ${mode}x${count}@${token}, held ${held.mode}x${held.count}@${held.token}`);
      }
      held.count = count;
      this.record({ index, session, lock, mode, token });
      return;
    }
    if (mode !== want) this.fail('model', `${at}: asked ${want} on ${lock}, granted ${mode}`);
    this.checkCompatible(l, session, mode, lock, at);
    if (held === undefined && l.queue.length > 0) {
      this.fail('fifo', `${at}: ${lock} granted at once to ${session} while ${l.queue.length} request(s) wait (head ${l.queue[0]?.session})`);
    }
    this.checkNewToken(l, index, token, lock, at);
    this.hold(l, session, mode, token, count, held, index, lock, at);
  }

  private hold(l: ModelLock, session: SessionId, mode: LockMode, token: number, count: number, held: ModelHold | undefined, index: number, lock: string, at: string): void {
    if (held !== undefined) {
      // Upgrade shared -> exclusive: a new grant with a new token.
      if (held.mode !== 'shared' || mode !== 'exclusive' || count !== held.count + 1) this.fail('model', `${at}: bad upgrade of ${lock} by ${session}`);
      held.mode = mode;
      held.count = count;
      held.token = token;
    } else {
      if (count !== 1) this.fail('model', `${at}: new hold of ${lock} by ${session} with count ${count}`);
      l.holders.set(session, { mode, count, token, grantedIndex: index });
    }
    this.record({ index, session, lock, mode, token });
  }

  private enqueue(session: SessionId, lock: string, mode: LockMode, requestId: string, at: string): void {
    if (!this.sessions.has(session)) this.fail('model', `${at}: queued for session ${session} that is not open`);
    const l = this.lock(lock);
    if (l.queue.some((w) => w.session === session)) this.fail('model', `${at}: session ${session} queued twice on ${lock}`);
    let pos = l.queue.length;
    if (l.holders.has(session)) {
      pos = 0;
      while (pos < l.queue.length && l.holders.has(l.queue[pos]!.session)) pos++;
    }
    l.queue.splice(pos, 0, { session, mode, requestId });
  }

  private wake(index: number, session: SessionId, lock: string, mode: LockMode, requestId: string, token: number, count: number, at: string): void {
    const l = this.lock(lock);
    const head = l.queue[0];
    if (head === undefined || head.session !== session || head.requestId !== requestId) {
      const pos = l.queue.findIndex((w) => w.session === session && w.requestId === requestId);
      this.fail('fifo', `${at}: ${lock} woke ${session} (request ${requestId}) at queue position ${pos}, head is ${head?.session ?? 'none'}`);
    }
    if (head.mode !== mode) this.fail('model', `${at}: ${lock} waiter asked ${head.mode}, woken as ${mode}`);
    l.queue.shift();
    this.checkCompatible(l, session, mode, lock, at);
    this.checkNewToken(l, index, token, lock, at);
    this.hold(l, session, mode, token, count, l.holders.get(session), index, lock, at);
  }

  private checkLock(name: string, at: string): void {
    const l = this.locks.get(name);
    if (l === undefined) return;
    let exclusive = 0;
    for (const h of l.holders.values()) if (h.mode === 'exclusive') exclusive++;
    if (exclusive > 0 && l.holders.size > 1) this.fail('exclusive-overlap', `${at}: ${name} has an exclusive holder among ${l.holders.size}`);
    const head = l.queue[0];
    if (head !== undefined && !l.delayed) {
      let blocked = false;
      for (const [s, h] of l.holders) if (s !== head.session && !compatible(h.mode, head.mode)) blocked = true;
      if (!blocked) this.fail('waiter-stuck', `${at}: ${name}'s head waiter ${head.session} (${head.mode}) is grantable but waits`);
    }
    if (l.holders.size === 0 && l.queue.length === 0 && !l.delayed) this.locks.delete(name);
  }

  /** Holders per lock as the model sees them, for comparison with a replica's table. */
  holdersView(): string {
    const names = [...this.locks.keys()].filter((n) => this.locks.get(n)!.holders.size > 0).sort();
    return names
      .map((n) => {
        const hs = [...this.locks.get(n)!.holders].map(([s, h]) => `${s}:${h.mode}x${h.count}@${h.token}`).sort();
        return `${n}=${hs.join(',')}`;
      })
      .join(' ');
  }

  get appliedIndex(): number {
    return this.lastIndex;
  }
}
