// The wait-for graph between sessions and its cycle check, kept apart from the
// lock table so it can be compared against a brute-force twin in property tests.
//
// Edges (decision): a waiting session S on lock L points at
//   - every holder of L (other than S) whose mode is incompatible with S's request, and
//   - every waiter AHEAD of S in L's FIFO queue whose mode is incompatible with S's.
// Counting waiters ahead matters because of FIFO fairness: a shared request queued
// behind an exclusive one waits for it even when the holders are compatible, and
// when that exclusive waiter is later granted the edge simply changes from "waiter
// ahead" to "holder". With this definition granting a waiter never adds a path, so
// the graph only gains paths when a request is enqueued; checking the requester on
// every enqueue therefore keeps the whole graph acyclic.
//
// The table uses a reduced edge set with the same reachability: holders as above,
// plus the waiters ahead back to (and including) the nearest exclusive waiter ahead
// (for a shared request: only that nearest exclusive waiter). The nearest exclusive
// waiter itself points at everything ahead of it and at every holder, so nothing
// reachable is lost. `blockersFull` is the literal definition; tests compare them.

import { assert } from '../assert.js';
import type { SessionId } from '../ids.js';
import type { LockMode } from './commands.js';

export interface QueueEntryView {
  readonly session: SessionId;
  readonly mode: LockMode;
}

export function compatible(a: LockMode, b: LockMode): boolean {
  return a === 'shared' && b === 'shared';
}

/**
 * Positions of one lock's waiters, built once per cycle check (a DFS may expand
 * many waiters of the same hot lock; scanning the queue for each would be quadratic).
 */
export class QueueIndex {
  private readonly position = new Map<SessionId, number>();
  /** nearestExclusive[i] = index of the last exclusive waiter before i, or -1. */
  private readonly nearestExclusive: Int32Array;

  constructor(readonly waiters: readonly QueueEntryView[]) {
    this.nearestExclusive = new Int32Array(waiters.length);
    let last = -1;
    for (let i = 0; i < waiters.length; i++) {
      const w = waiters[i] as QueueEntryView;
      assert(!this.position.has(w.session), 'one waiter per session per lock');
      this.position.set(w.session, i);
      this.nearestExclusive[i] = last;
      if (w.mode === 'exclusive') last = i;
    }
  }

  /**
   * Reduced blockers of `session`'s waiter (it must be queued): appended to `out`.
   */
  blockers(holders: Iterable<QueueEntryView>, session: SessionId, out: SessionId[]): SessionId[] {
    const position = this.position.get(session);
    assert(position !== undefined, 'blockers asked for a session that is not waiting on this lock');
    const me = this.waiters[position] as QueueEntryView;
    const nearest = this.nearestExclusive[position] as number;
    for (const h of holders) {
      if (h.session !== session && !compatible(h.mode, me.mode)) out.push(h.session);
    }
    if (me.mode === 'exclusive') {
      for (let i = nearest >= 0 ? nearest : 0; i < position; i++) out.push((this.waiters[i] as QueueEntryView).session);
    } else if (nearest >= 0) {
      out.push((this.waiters[nearest] as QueueEntryView).session);
    }
    return out;
  }
}

/** Reduced blockers of the waiter of `session` in `waiters` (one-off; see QueueIndex). */
export function blockersReduced(
  holders: Iterable<QueueEntryView>,
  waiters: readonly QueueEntryView[],
  session: SessionId,
  out: SessionId[],
): SessionId[] {
  return new QueueIndex(waiters).blockers(holders, session, out);
}

/** The literal edge definition (naive twin of blockersReduced). */
export function blockersFull(
  holders: Iterable<QueueEntryView>,
  waiters: readonly QueueEntryView[],
  session: SessionId,
): SessionId[] {
  const position = waiters.findIndex((w) => w.session === session);
  assert(position >= 0, 'blockers asked for a session that is not waiting on this lock');
  const me = waiters[position] as QueueEntryView;
  const out: SessionId[] = [];
  for (const h of holders) if (h.session !== session && !compatible(h.mode, me.mode)) out.push(h.session);
  for (let i = 0; i < position; i++) {
    const w = waiters[i] as QueueEntryView;
    if (!compatible(w.mode, me.mode)) out.push(w.session);
  }
  return out;
}

/**
 * True iff `start` can reach itself along `successors`: adding start's edges closed
 * a cycle (the graph without them was acyclic). Iterative DFS, each node expanded once;
 * `nodesMax` bounds the walk (a programmer error if exceeded).
 */
export function reachesItself(
  start: SessionId,
  successors: (session: SessionId, out: SessionId[]) => SessionId[],
  nodesMax: number,
): boolean {
  assert(nodesMax > 0, 'nodesMax positive');
  const visited = new Set<SessionId>();
  const stack: SessionId[] = successors(start, []);
  let expanded = 0;
  while (stack.length > 0) {
    const s = stack.pop() as SessionId;
    if (s === start) return true;
    if (visited.has(s)) continue;
    visited.add(s);
    expanded++;
    assert(expanded <= nodesMax, 'wait-for walk exceeded the number of sessions');
    successors(s, stack);
  }
  return false;
}

/**
 * Naive twin: transitive closure by repeated relaxation over an explicit edge list,
 * then "is start in its own closure". Quadratic or worse; for tests only.
 */
export function naiveReachesItself(start: SessionId, edges: ReadonlyMap<SessionId, readonly SessionId[]>): boolean {
  const reach = new Map<SessionId, Set<SessionId>>();
  for (const [s, out] of edges) reach.set(s, new Set(out));
  let changed = true;
  while (changed) {
    changed = false;
    for (const [, set] of reach) {
      for (const t of [...set]) {
        for (const u of reach.get(t) ?? []) {
          if (!set.has(u)) {
            set.add(u);
            changed = true;
          }
        }
      }
    }
  }
  return reach.get(start)?.has(start) ?? false;
}

/** True iff the graph has any cycle (naive; for tests and debugging). */
export function naiveHasCycle(edges: ReadonlyMap<SessionId, readonly SessionId[]>): boolean {
  for (const s of edges.keys()) if (naiveReachesItself(s, edges)) return true;
  return false;
}
