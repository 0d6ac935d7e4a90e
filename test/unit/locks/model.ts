// Test helper (not a test): a deliberately naive reference model of the lock table.
// Plain arrays, no indexes, everything recomputed: grants by a fixpoint over all
// locks, deadlock by the literal wait-for definition and a brute-force closure.
// Written from the spec in core/locks/table.ts's header, not from its code.

import type { ClientId, LogIndex, SessionId } from '../../../core/ids.js';
import type { LockCommand, LockErrorCode, LockMode, LockResult } from '../../../core/locks/commands.js';
import { blockersFull, naiveHasCycle, naiveReachesItself } from '../../../core/locks/waitfor.js';
import { dedupClientsWithoutSessionMax, dedupEvictedClientsMax, dedupLanesPerSessionMax } from '../../../core/constants.js';

/** Results and events without human-readable messages (those may differ). */
export type Plain = Record<string, unknown>;

interface MSession {
  id: SessionId;
  client: ClientId;
  lockDelayMs: number;
  renewedIndex: number;
  /** Dedup entries of the client ids that made requests naming this session (or opened it). */
  lanes: Record<string, MDedup>;
}
interface MDedup {
  lastSeq: number;
  lastResult: Plain;
}
interface MHold {
  session: SessionId;
  mode: LockMode;
  count: number;
  token: number;
  /** The request whose grant last made or added to the hold. */
  requestId: string;
}
interface MWait {
  session: SessionId;
  mode: LockMode;
  requestId: string;
  clientId: ClientId;
  seq: number;
  enqueuedIndex: number;
  waitMs: number;
}
interface MLock {
  holders: MHold[];
  waiters: MWait[];
  lastToken: number;
  delay: { lock: string; untilMs: number; lockDelayMs: number } | null;
}

const e = (code: LockErrorCode): Plain => ({ kind: 'error', code });
const both = (a: LockMode, b: LockMode): boolean => a === 'shared' && b === 'shared';

export class Model {
  sessions: MSession[] = [];
  locks: Record<string, MLock> = {};
  /** forceRelease dedup entries, least recently used first; then tombstones of evicted ones. */
  sessionless: { client: string; entry: MDedup }[] = [];
  evicted: { client: string; lastSeq: number }[] = [];
  private events: Plain[] = [];

  apply(cmd: LockCommand, index: LogIndex): { result: Plain; events: Plain[] } {
    this.events = [];
    const c = 'clientId' in cmd ? cmd.clientId : undefined;
    const seq = 'seq' in cmd ? cmd.seq : undefined;
    if (c !== undefined && seq !== undefined) {
      const entry = this.dedup(cmd, c);
      if (entry && seq === entry.lastSeq) return { result: entry.lastResult, events: [] };
      if (entry && seq < entry.lastSeq) return { result: e('STALE_REQUEST'), events: [] };
      const tomb = this.evicted.find((x) => x.client === c);
      if (!entry && cmd.kind === 'forceRelease' && tomb && seq <= tomb.lastSeq) return { result: e('STALE_REQUEST'), events: [] };
      const s = 'session' in cmd ? this.session(cmd.session) : undefined;
      if (s && s.lanes[c] === undefined && Object.keys(s.lanes).length >= dedupLanesPerSessionMax) return { result: e('BAD_REQUEST'), events: [] };
    }
    const result = this.run(cmd, index);
    this.settle(index);
    if (c !== undefined && seq !== undefined) this.remember(cmd, c, seq, result);
    return { result, events: this.events };
  }

  /** The spec: a session's request dedups in the session; openSession in the sessions its client opened; forceRelease in the FIFO. */
  private dedup(cmd: LockCommand, c: string): MDedup | undefined {
    if (cmd.kind === 'openSession') {
      const entries = this.sessions.filter((s) => s.client === c).map((s) => s.lanes[c]).filter((x): x is MDedup => x !== undefined);
      return entries.sort((a, b) => b.lastSeq - a.lastSeq)[0];
    }
    if ('session' in cmd) return this.session(cmd.session)?.lanes[c];
    return this.sessionless.find((x) => x.client === c)?.entry;
  }

  private remember(cmd: LockCommand, c: string, seq: number, result: Plain): void {
    if (cmd.kind === 'openSession') {
      if (result['kind'] === 'sessionOpened') (this.session(result['session'] as SessionId) as MSession).lanes[c] = { lastSeq: seq, lastResult: result };
      return;
    }
    if ('session' in cmd) {
      const s = this.session(cmd.session);
      if (s) s.lanes[c] = { lastSeq: seq, lastResult: result };
      return;
    }
    this.sessionless = [...this.sessionless.filter((x) => x.client !== c), { client: c, entry: { lastSeq: seq, lastResult: result } }];
    this.evicted = this.evicted.filter((x) => x.client !== c);
    while (this.sessionless.length > dedupClientsWithoutSessionMax) {
      const [oldest] = this.sessionless.splice(0, 1);
      if (oldest) this.evicted.push({ client: oldest.client, lastSeq: oldest.entry.lastSeq });
    }
    while (this.evicted.length > dedupEvictedClientsMax) this.evicted.shift();
  }

  /** The cached answer of the request that queued waiter w, if it is still the lane's latest. */
  private waiterEntry(w: MWait): MDedup | undefined {
    const entry = this.session(w.session)?.lanes[w.clientId];
    return entry && entry.lastSeq === w.seq ? entry : undefined;
  }

  private session(id: SessionId): MSession | undefined {
    return this.sessions.find((s) => s.id === id);
  }

  private lock(name: string): MLock {
    this.locks[name] ??= { holders: [], waiters: [], lastToken: 0, delay: null };
    return this.locks[name];
  }

  private run(cmd: LockCommand, index: number): Plain {
    switch (cmd.kind) {
      case 'openSession':
        this.sessions.push({ id: index as SessionId, client: cmd.clientId, lockDelayMs: cmd.lockDelayMs, renewedIndex: index, lanes: {} });
        return { kind: 'sessionOpened', session: index, ttlMs: cmd.ttlMs };
      case 'keepAlive': {
        const s = this.session(cmd.session);
        if (!s) return e('SESSION_EXPIRED');
        s.renewedIndex = index;
        return { kind: 'ok' };
      }
      case 'closeSession': {
        if (!this.session(cmd.session)) return e('SESSION_EXPIRED');
        this.kill([cmd.session], cmd.nowMs, false);
        return { kind: 'ok' };
      }
      case 'expireSessions': {
        const dead = cmd.sessions
          .filter((l) => this.session(l.session)?.renewedIndex === l.renewedIndex)
          .map((l) => l.session)
          .filter((s, i, all) => all.indexOf(s) === i);
        this.kill(dead, cmd.nowMs, true);
        return { kind: 'expired', sessions: dead };
      }
      case 'acquire': {
        if (!this.session(cmd.session)) return e('SESSION_EXPIRED');
        const l = this.locks[cmd.lock];
        if (l?.waiters.some((w) => w.session === cmd.session)) return e('BAD_REQUEST');
        const mine = l?.holders.find((h) => h.session === cmd.session);
        if (mine && (mine.mode === 'exclusive' || cmd.mode === 'shared')) {
          mine.count++;
          mine.requestId = cmd.requestId;
          return { kind: 'granted', lock: cmd.lock, token: mine.token, mode: mine.mode, count: mine.count };
        }
        const lock = this.lock(cmd.lock);
        const free = lock.delay === null && lock.holders.every((h) => h.session === cmd.session || both(h.mode, cmd.mode));
        if (free && (mine !== undefined || lock.waiters.length === 0)) {
          const h = this.grant(cmd.lock, cmd.session, cmd.mode, cmd.requestId, index);
          return { kind: 'granted', lock: cmd.lock, token: h.token, mode: h.mode, count: h.count };
        }
        if (!cmd.wait) return e('WOULD_BLOCK');
        const w: MWait = {
          session: cmd.session,
          mode: cmd.mode,
          requestId: cmd.requestId,
          clientId: cmd.clientId,
          seq: cmd.seq,
          enqueuedIndex: index,
          waitMs: cmd.waitMs ?? 0,
        };
        const trial = [...lock.waiters];
        if (mine) {
          const at = trial.findIndex((x) => !lock.holders.some((h) => h.session === x.session));
          trial.splice(at < 0 ? trial.length : at, 0, w);
        } else trial.push(w);
        const saved = lock.waiters;
        lock.waiters = trial;
        if (naiveReachesItself(cmd.session, this.graph())) {
          lock.waiters = saved;
          return e('DEADLOCK');
        }
        return { kind: 'queued', lock: cmd.lock, requestId: cmd.requestId };
      }
      case 'release': {
        if (!this.session(cmd.session)) return e('SESSION_EXPIRED');
        const l = this.locks[cmd.lock];
        const h = l?.holders.find((x) => x.session === cmd.session);
        if (!l || !h) return e('NOT_FOUND');
        h.count--;
        if (h.count === 0) l.holders = l.holders.filter((x) => x !== h);
        return { kind: 'released', lock: cmd.lock, count: h.count };
      }
      case 'downgrade': {
        if (!this.session(cmd.session)) return e('SESSION_EXPIRED');
        const h = this.locks[cmd.lock]?.holders.find((x) => x.session === cmd.session);
        if (!h) return e('NOT_FOUND');
        if (h.mode !== 'exclusive') return e('BAD_REQUEST');
        h.mode = 'shared';
        return { kind: 'downgraded', lock: cmd.lock, token: h.token, count: h.count };
      }
      case 'cancelWait': {
        if (!this.session(cmd.session)) return e('SESSION_EXPIRED');
        const l = this.locks[cmd.lock];
        const w = l?.waiters.find((x) => x.session === cmd.session && x.requestId === cmd.requestId);
        if (!l || !w) {
          // The spec: granted already (its grant is the hold's latest) -> 'granted' with the hold.
          const h = l?.holders.find((x) => x.session === cmd.session && x.requestId === cmd.requestId);
          return h ? { kind: 'granted', lock: cmd.lock, token: h.token, mode: h.mode, count: h.count } : e('NOT_FOUND');
        }
        l.waiters = l.waiters.filter((x) => x !== w);
        this.fail(cmd.lock, w, cmd.reason === 'timeout' ? 'TIMEOUT' : 'CANCELLED');
        return { kind: 'ok' };
      }
      case 'forceRelease': {
        const l = this.locks[cmd.lock];
        if (!l || l.holders.length === 0) return e('NOT_FOUND');
        for (const h of l.holders) this.events.push({ kind: 'revoked', session: h.session, lock: cmd.lock, token: h.token, reason: 'forced' });
        l.holders = [];
        return { kind: 'ok' };
      }
      case 'wakeDelayed': {
        const l = this.locks[cmd.lock];
        if (!l || l.delay === null) return e('NOT_FOUND');
        l.delay = null;
        return { kind: 'ok' };
      }
    }
  }

  private kill(ids: SessionId[], nowMs: number, expired: boolean): void {
    for (const id of ids) {
      const s = this.session(id);
      if (!s) continue;
      for (const [name, l] of Object.entries(this.locks)) {
        for (const w of l.waiters.filter((x) => x.session === id)) this.fail(name, w, 'SESSION_EXPIRED');
        l.waiters = l.waiters.filter((x) => x.session !== id);
        const mine = l.holders.find((h) => h.session === id);
        if (mine) {
          if (expired) this.events.push({ kind: 'revoked', session: id, lock: name, token: mine.token, reason: 'expired' });
          l.holders = l.holders.filter((h) => h.session !== id);
          if (expired && s.lockDelayMs > 0 && (l.delay === null || l.delay.untilMs < nowMs + s.lockDelayMs)) {
            l.delay = { lock: name, untilMs: nowMs + s.lockDelayMs, lockDelayMs: s.lockDelayMs };
          }
        }
      }
      this.sessions = this.sessions.filter((x) => x.id !== id);
    }
  }

  private fail(lock: string, w: MWait, code: string): void {
    this.events.push({ kind: 'failed', session: w.session, lock, requestId: w.requestId, clientId: w.clientId, seq: w.seq, code });
    const entry = this.waiterEntry(w);
    if (entry) entry.lastResult = { kind: 'error', code };
  }

  private grant(name: string, session: SessionId, mode: LockMode, requestId: string, index: number): MHold {
    const l = this.lock(name);
    l.lastToken = index;
    const old = l.holders.find((h) => h.session === session);
    if (old) {
      old.mode = 'exclusive';
      old.count++;
      old.token = index;
      old.requestId = requestId;
      return old;
    }
    const h: MHold = { session, mode, count: 1, token: index, requestId };
    l.holders.push(h);
    return h;
  }

  /** Grant heads until nothing changes anywhere; drop empty locks. */
  private settle(index: number): void {
    let changed = true;
    while (changed) {
      changed = false;
      for (const [name, l] of Object.entries(this.locks)) {
        const w = l.waiters[0];
        if (!w || l.delay !== null) continue;
        if (!l.holders.every((h) => h.session === w.session || both(h.mode, w.mode))) continue;
        l.waiters = l.waiters.slice(1);
        const h = this.grant(name, w.session, w.mode, w.requestId, index);
        const ev = { kind: 'granted', session: w.session, lock: name, requestId: w.requestId, clientId: w.clientId, seq: w.seq, token: h.token, mode: h.mode, count: h.count };
        this.events.push(ev);
        const entry = this.waiterEntry(w);
        if (entry) entry.lastResult = { kind: 'granted', lock: name, token: h.token, mode: h.mode, count: h.count };
        changed = true;
      }
    }
    for (const [name, l] of Object.entries(this.locks)) {
      if (l.holders.length === 0 && l.waiters.length === 0 && l.delay === null) delete this.locks[name];
    }
  }

  /** The literal wait-for graph over every waiting session. */
  graph(): Map<SessionId, SessionId[]> {
    const g = new Map<SessionId, SessionId[]>();
    for (const l of Object.values(this.locks)) {
      for (const w of l.waiters) {
        const out = g.get(w.session) ?? [];
        out.push(...blockersFull(l.holders, l.waiters, w.session));
        g.set(w.session, out);
      }
    }
    return g;
  }

  hasCycle(): boolean {
    return naiveHasCycle(this.graph());
  }

  /** Comparable state: locks by name, with holders/waiters in order. */
  view(): Plain {
    const locks: Plain = {};
    for (const name of Object.keys(this.locks).sort()) {
      const l = this.locks[name] as MLock;
      locks[name] = {
        holders: l.holders.map((h) => ({ ...h })),
        waiters: l.waiters.map((w) => ({ ...w })),
        lastToken: l.lastToken,
        delay: l.delay,
      };
    }
    return { sessions: this.sessions.map((s) => s.id), locks };
  }
}

/** Strip messages so the model's and the table's answers compare exactly. */
export function plain(x: LockResult | Plain): Plain {
  const { message: _m, ...rest } = x as Plain;
  return rest;
}
