// Lock safety over a client-side history (fault runner on real processes; the
// simulator can feed the same shape): holders of a lock as a fenced resource saw
// them, fencing tokens in grant order, and the holders' own view of holding.
// Pure functions: a history in, anomalies and counts out.
//
// The fenced resource (a storage service honouring fencing tokens) accepts an
// exclusive holder's access only if its token is >= every token it accepted for
// that lock, and a shared holder's only if its token is >= every exclusive token
// it accepted (shared holders with different tokens legitimately coexist). With
// that rule the properties are:
// - fence-stale-accept: the resource accepted a token older than it should have.
// - exclusive-overlap / shared-exclusive-overlap: between two accepted accesses of
//   one hold, the resource accepted an incompatible access of another hold.
// - token-duplicate: two exclusive grants of one lock carry the same token.
// - token-order: a grant that completed before another was invoked has a token
//   that is not smaller (tokens strictly increase per lock in grant order).
// - hold-overlap: two holders believed they held incompatible modes of one lock
//   at the same time: from the grant's answer until release was invoked, `lost`
//   fired or the holder stalled (a paused process believes nothing), by more than
//   `toleranceMs`.
// - rejected-live-access: the resource rejected an access by a holder that had
//   checked, just before, that its lock was not lost, i.e. someone got a newer
//   token while it still held. Rejections of zombie accesses (a holder that stalled
//   past its lease without looking) are expected and counted, not anomalies.
// - access-after-lost: a holder used the resource after its `lost` had fired
//   (later than `toleranceMs`) without being a declared zombie: a client that
//   ignores `lost`, whatever the resource then decided.

import type { Anomaly, BaseOp } from './history.js';

export type LockMode = 'exclusive' | 'shared';

export interface AcquireOp extends BaseOp {
  readonly f: 'acquire';
  readonly lock: string;
  readonly mode: LockMode;
  /** The fencing token, on ok. */
  readonly token?: number;
}

export interface ReleaseOp extends BaseOp {
  readonly f: 'release';
  readonly lock: string;
  /** Id of the acquire whose hold this ends. */
  readonly grant: number;
}

/** The holder's `lost` fired (invokeMs = endMs = when). */
export interface LostOp extends BaseOp {
  readonly f: 'lost';
  readonly lock: string;
  readonly grant: number;
}

/** One use of the fenced resource by a holder (invokeMs: sent; endMs: verdict received). */
export interface AccessOp extends BaseOp {
  readonly f: 'access';
  readonly lock: string;
  readonly mode: LockMode;
  readonly grant: number;
  readonly token: number;
  /** The resource's verdict (outcome ok = accepted, fail = rejected). */
  readonly accepted: boolean;
  /** The holder stalled past its lease before this access without checking `lost`. */
  readonly zombie: boolean;
  /** Position in the order the resource judged accesses (one resource, one order). */
  readonly resourceSeq: number;
  /** For a zombie access: when the stall began (the holder believed nothing from then on). */
  readonly stalledFromMs?: number;
}

export type LockOp = AcquireOp | ReleaseOp | LostOp | AccessOp;

export interface LockCheckOptions {
  /**
   * Slack for hold intervals and live rejections: a holder's `lost` timer and the
   * other holder's grant answer run on different event loops, so a loss observed
   * up to this late is not called an overlap (default 50 ms).
   */
  readonly toleranceMs?: number;
}

export interface LockCheckStats {
  grantsExclusive: number;
  grantsShared: number;
  locksLost: number;
  accessesAccepted: number;
  accessesRejected: number;
  /** Zombie accesses the resource rejected: the fence doing its job (expected). */
  zombieRejected: number;
  /** Zombie accesses accepted: nobody else had used the lock since (harmless). */
  zombieAccepted: number;
  /** Live rejections within toleranceMs of the holder's `lost` (not called anomalies). */
  liveRejectedExcused: number;
}

export interface LockCheckResult {
  readonly anomalies: Anomaly[];
  readonly stats: LockCheckStats;
}

const toleranceMsDefault = 50;

interface Hold {
  readonly grant: AcquireOp;
  readonly token: number;
  /** When the holder stopped believing it held: release invoked or lost fired (Infinity if neither). */
  endMs: number;
  lostMs: number;
}

export function checkLockHistory(ops: readonly LockOp[], opts: LockCheckOptions = {}): LockCheckResult {
  const toleranceMs = opts.toleranceMs ?? toleranceMsDefault;
  const anomalies: Anomaly[] = [];
  const stats: LockCheckStats = { grantsExclusive: 0, grantsShared: 0, locksLost: 0, accessesAccepted: 0, accessesRejected: 0,
    zombieRejected: 0, zombieAccepted: 0, liveRejectedExcused: 0 };

  const holds = new Map<number, Hold>();
  for (const op of ops) {
    if (op.f !== 'acquire' || op.outcome !== 'ok' || op.token === undefined) continue;
    holds.set(op.id, { grant: op, token: op.token, endMs: Infinity, lostMs: Infinity });
    if (op.mode === 'exclusive') stats.grantsExclusive++;
    else stats.grantsShared++;
  }
  for (const op of ops) {
    if (op.f === 'access' && op.zombie) {
      // A stalled holder stopped acting on its belief when the stall began; what it sends after is a zombie's.
      const h = holds.get(op.grant);
      if (h !== undefined) h.endMs = Math.min(h.endMs, op.stalledFromMs ?? op.invokeMs);
    } else if (op.f === 'release') {
      const h = holds.get(op.grant);
      if (h !== undefined) h.endMs = Math.min(h.endMs, op.invokeMs);
    } else if (op.f === 'lost') {
      stats.locksLost++;
      const h = holds.get(op.grant);
      if (h !== undefined) {
        h.endMs = Math.min(h.endMs, op.invokeMs);
        h.lostMs = Math.min(h.lostMs, op.invokeMs);
      }
    }
  }

  checkFence(ops, anomalies);
  checkResourceOverlap(ops, holds, anomalies);
  checkTokens([...holds.values()], anomalies);
  checkHoldOverlap([...holds.values()], toleranceMs, anomalies);

  for (const op of ops) {
    if (op.f !== 'access') continue;
    const hold = holds.get(op.grant);
    if (!op.zombie && hold !== undefined && op.invokeMs > hold.lostMs + toleranceMs) {
      anomalies.push({ kind: 'access-after-lost', ops: [op.grant, op.id],
        message: `${op.process} used ${op.lock} (token ${op.token}) ${(op.invokeMs - hold.lostMs).toFixed(0)} ms after its lock was declared lost` });
    }
    if (op.accepted) {
      stats.accessesAccepted++;
      if (op.zombie) stats.zombieAccepted++;
      continue;
    }
    stats.accessesRejected++;
    if (op.zombie) {
      stats.zombieRejected++;
      continue;
    }
    const h = holds.get(op.grant);
    if (h !== undefined && h.lostMs <= op.invokeMs + toleranceMs) {
      stats.liveRejectedExcused++;
      continue;
    }
    anomalies.push({ kind: 'rejected-live-access', ops: [op.grant, op.id],
      message: `${op.process} held ${op.lock} (${op.mode}, token ${op.token}) and had not seen it lost, yet the fenced resource ` +
        'rejected its access: someone else was granted a newer token while it still held' });
  }
  return { anomalies, stats };
}

/** Replays the resource's decisions in its own order and flags any acceptance the fencing rule forbids. */
function checkFence(ops: readonly LockOp[], anomalies: Anomaly[]): void {
  const accesses = ops.filter((o): o is AccessOp => o.f === 'access').sort((a, b) => a.resourceSeq - b.resourceSeq);
  const newest = new Map<string, { all: number; allOp: number; exclusive: number; exclusiveOp: number }>();
  for (const a of accesses) {
    if (!a.accepted) continue;
    let n = newest.get(a.lock);
    if (n === undefined) {
      n = { all: 0, allOp: -1, exclusive: 0, exclusiveOp: -1 };
      newest.set(a.lock, n);
    }
    const bound = a.mode === 'exclusive' ? n.all : n.exclusive;
    const boundOp = a.mode === 'exclusive' ? n.allOp : n.exclusiveOp;
    if (a.token < bound) {
      anomalies.push({ kind: 'fence-stale-accept', ops: [boundOp, a.id],
        message: `the resource accepted ${a.process}'s ${a.mode} access to ${a.lock} with token ${a.token} after accepting token ${bound}` });
    }
    if (a.token > n.all) {
      n.all = a.token;
      n.allOp = a.id;
    }
    if (a.mode === 'exclusive' && a.token > n.exclusive) {
      n.exclusive = a.token;
      n.exclusiveOp = a.id;
    }
  }
}

/** In the resource's order of accepted accesses per lock, no incompatible access between two of one hold's. */
function checkResourceOverlap(ops: readonly LockOp[], holds: ReadonlyMap<number, Hold>, anomalies: Anomaly[]): void {
  const byLock = new Map<string, AccessOp[]>();
  for (const o of ops) {
    if (o.f !== 'access' || !o.accepted) continue;
    const list = byLock.get(o.lock) ?? [];
    list.push(o);
    byLock.set(o.lock, list);
  }
  for (const list of byLock.values()) {
    list.sort((a, b) => a.resourceSeq - b.resourceSeq);
    const span = new Map<number, { first: number; last: number }>();
    list.forEach((a, i) => {
      const s = span.get(a.grant);
      if (s === undefined) span.set(a.grant, { first: i, last: i });
      else s.last = i;
    });
    const reported = new Set<string>();
    for (const [grant, s] of span) {
      const mode = holds.get(grant)?.grant.mode ?? list[s.first]?.mode ?? 'exclusive';
      for (let i = s.first + 1; i < s.last; i++) {
        const other = list[i];
        if (other === undefined || other.grant === grant) continue;
        if (mode === 'shared' && other.mode === 'shared') continue;
        const key = `${Math.min(grant, other.grant)}/${Math.max(grant, other.grant)}`;
        if (reported.has(key)) continue;
        reported.add(key);
        const first = list[s.first];
        const last = list[s.last];
        const kind = mode === 'exclusive' && other.mode === 'exclusive' ? 'exclusive-overlap' : 'shared-exclusive-overlap';
        anomalies.push({ kind, ops: [grant, first?.id ?? -1, other.id, last?.id ?? -1],
          message: `the resource accepted ${other.process}'s ${other.mode} access to ${other.lock} (token ${other.token}) between two accepted ` +
            `accesses of ${first?.process ?? '?'}'s ${mode} hold (token ${first?.token ?? '?'})` });
      }
    }
  }
}

/** Exclusive tokens unique per lock; a grant answered before another was invoked has the smaller token. */
function checkTokens(holds: readonly Hold[], anomalies: Anomaly[]): void {
  const byLock = new Map<string, Hold[]>();
  for (const h of holds) {
    const list = byLock.get(h.grant.lock) ?? [];
    list.push(h);
    byLock.set(h.grant.lock, list);
  }
  for (const list of byLock.values()) {
    const exclusiveByToken = new Map<number, Hold>();
    for (const h of list) {
      if (h.grant.mode !== 'exclusive') continue;
      const twin = exclusiveByToken.get(h.token);
      if (twin !== undefined) {
        anomalies.push({ kind: 'token-duplicate', ops: [twin.grant.id, h.grant.id],
          message: `two exclusive grants of ${h.grant.lock} carry token ${h.token} (${twin.grant.process}, ${h.grant.process})` });
      } else {
        exclusiveByToken.set(h.token, h);
      }
    }
    // Sweep: grants by invoke time; the ones answered strictly before it form a prefix by end time.
    const byEnd = [...list].sort((a, b) => a.grant.endMs - b.grant.endMs);
    const byInvoke = [...list].sort((a, b) => a.grant.invokeMs - b.grant.invokeMs);
    let j = 0;
    let maxBefore: Hold | null = null;
    for (const h of byInvoke) {
      while (j < byEnd.length && (byEnd[j]?.grant.endMs ?? Infinity) < h.grant.invokeMs) {
        const e = byEnd[j];
        if (e !== undefined && (maxBefore === null || e.token > maxBefore.token)) maxBefore = e;
        j++;
      }
      if (maxBefore !== null && h.token <= maxBefore.token) {
        anomalies.push({ kind: 'token-order', ops: [maxBefore.grant.id, h.grant.id],
          message: `${h.grant.process}'s grant of ${h.grant.lock} (token ${h.token}) was invoked after ${maxBefore.grant.process}'s grant ` +
            `(token ${maxBefore.token}) was answered, yet its token is not larger` });
      }
    }
  }
}

/** Holders' own intervals: incompatible holds of one lock must not overlap by more than the slack. */
function checkHoldOverlap(holds: readonly Hold[], toleranceMs: number, anomalies: Anomaly[]): void {
  const byLock = new Map<string, Hold[]>();
  for (const h of holds) {
    const list = byLock.get(h.grant.lock) ?? [];
    list.push(h);
    byLock.set(h.grant.lock, list);
  }
  for (const list of byLock.values()) {
    list.sort((a, b) => a.grant.endMs - b.grant.endMs);
    for (let i = 0; i < list.length; i++) {
      const a = list[i];
      if (a === undefined) continue;
      for (let k = i + 1; k < list.length; k++) {
        const b = list[k];
        if (b === undefined) continue;
        if (b.grant.endMs >= a.endMs - toleranceMs) break; // sorted by start: no later hold starts inside a's interval
        if (a.grant.mode === 'shared' && b.grant.mode === 'shared') continue;
        if (a.grant.process === b.grant.process) continue; // one client's own successive holds (release then re-acquire)
        anomalies.push({ kind: 'hold-overlap', ops: [a.grant.id, b.grant.id],
          message: `${b.grant.process} was granted ${b.grant.lock} (${b.grant.mode}, token ${b.token}) at ${b.grant.endMs.toFixed(0)} ms while ` +
            `${a.grant.process} still held it (${a.grant.mode}, token ${a.token}, held until ${fmtMs(a.endMs)})` });
      }
    }
  }
}

function fmtMs(ms: number): string {
  return Number.isFinite(ms) ? `${ms.toFixed(0)} ms` : 'the end of the run';
}
