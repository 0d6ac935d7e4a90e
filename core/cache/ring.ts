// The cache ring's membership as group 0 decides it, and the rule that keeps two
// generations of the ring from both serving a key. Pure: the service feeds it group 0's
// applied state, its clock, and the answers of its ReadIndex barriers.
//
// Decisions:
// - Membership is replicated state (group 0, EntryKind.CacheRing): a generation number
//   and the member list. Only the group 0 leader proposes a change, computed by
//   desiredCacheMembers() from how long ago it heard each voter; the entry names the
//   generation it was computed from and applies only on top of that one (compare and
//   set), so two leaders' proposals, or one proposed twice, never stack. Every node
//   builds the same ring for a generation: homes are no longer each node's opinion.
// - Serving needs a confirmation (ServingLease): a node serves lines, answers client
//   operations and acts as a home for generation G only until confirmedUntilMs =
//   t0 + confirmLeaseMs, where t0 is its clock when it STARTED a ReadIndex barrier on
//   group 0 that returned with G still applied. ReadIndex is linearizable: had G+1
//   been applied anywhere before t0, the barrier would have returned with G+1. So
//   every node that applies G+1 does so after every t0 of G, and G's service ends by
//   (apply time of G+1) + confirmLeaseMs on every node's clock.
// - The new home of G+1 grants nothing until leaseMs after it applied G+1 (core/cache's
//   one-lease rule, CacheHome.startedMs). confirmLeaseMs = leaseMs minus twice the drift
//   margin, so G's service has ended even on a clock that runs slightly fast: no node
//   serves a G value while G+1 writes. A node cut off from group 0's majority cannot
//   complete a barrier, so it stops serving within confirmLeaseMs of its last one.
// - A node that was not heard from for nodeDownMs leaves the ring; it comes back once it
//   is heard again within nodeUpMs (shorter: a flapping link does not churn the ring).
//   A new leader first waits nodeDownMs (it has not been hearing from followers) before
//   it removes anyone.

import { assert } from '../assert.js';
import { cacheLeaseDriftMarginMs, cacheNodesMax } from '../constants.js';
import type { NodeId } from '../ids.js';

/** Group 0's cache-ring state: generation 0 is the empty ring before the first leader proposed one. */
export interface CacheRingState {
  readonly generation: number;
  readonly members: readonly NodeId[];
}

export const cacheRingEmpty: CacheRingState = { generation: 0, members: [] };

/** The one command: "replace members, if the ring is still at generation basedOn". */
export interface CacheRingCommand {
  readonly basedOn: number;
  readonly members: readonly NodeId[];
}

/** The next state, or null when the command is stale (another change came first) or changes nothing. */
export function applyCacheRing(state: CacheRingState, cmd: CacheRingCommand): CacheRingState | null {
  if (cmd.basedOn !== state.generation) return null;
  const members = normalizeMembers(cmd.members);
  if (sameMembers(members, state.members)) return null;
  const next = { generation: state.generation + 1, members };
  assert(next.generation > state.generation && next.members.length <= cacheNodesMax, 'a ring generation grows and holds at most cacheNodesMax nodes');
  return next;
}

/** Sorted, without repeats, at most cacheNodesMax: every replica builds the same ring from it. */
export function normalizeMembers(ids: readonly NodeId[]): NodeId[] {
  return [...new Set(ids)].sort().slice(0, cacheNodesMax);
}

export function sameMembers(a: readonly NodeId[], b: readonly NodeId[]): boolean {
  return a.length === b.length && a.every((m, i) => m === b[i]);
}

export interface RingTiming {
  /** Not heard from this long: out of the ring. */
  readonly nodeDownMs: number;
  /** Out of the ring and heard from within this: back in. */
  readonly nodeUpMs: number;
}

export function checkRingTiming(t: RingTiming): string | null {
  if (!(Number.isInteger(t.nodeDownMs) && t.nodeDownMs > 0)) return 'the node-down time must be a positive number of ms';
  if (!(Number.isInteger(t.nodeUpMs) && t.nodeUpMs > 0 && t.nodeUpMs <= t.nodeDownMs)) return 'the node-up time must be positive and at most the node-down time';
  return null;
}

/**
 * The members the group 0 leader wants: itself, and every voter it heard from recently
 * (within nodeDownMs for a member, nodeUpMs for a node out of the ring). While it has led
 * for less than nodeDownMs it removes nobody (its silence clocks started as a follower).
 */
export function desiredCacheMembers(
  self: NodeId, voters: readonly NodeId[], current: readonly NodeId[],
  sinceHeardMs: (peer: NodeId) => number, ledForMs: number, t: RingTiming,
): NodeId[] {
  const out: NodeId[] = [];
  for (const v of voters) {
    if (v === self) {
      out.push(v);
      continue;
    }
    const heard = sinceHeardMs(v);
    const member = current.includes(v);
    if (member ? heard < t.nodeDownMs || ledForMs < t.nodeDownMs : heard < t.nodeUpMs) out.push(v);
  }
  return normalizeMembers(out);
}

/** How long a confirmation lets a node serve, for a cache lease of leaseMs (see the header). */
export function confirmLeaseMsFor(leaseMs: number): number {
  const ms = leaseMs - 2 * cacheLeaseDriftMarginMs;
  assert(ms > 0 && ms + 2 * cacheLeaseDriftMarginMs <= leaseMs, 'the confirmation lease ends before a new home grants');
  return ms;
}

/**
 * One node's right to serve generation `generation`: confirmed by barriers that started at
 * t0 and came back with the same generation applied. begin() before the barrier, done()
 * after it (only if the generation did not change meanwhile).
 */
export class ServingLease {
  private confirmedUntilMs = Number.NEGATIVE_INFINITY;
  private inFlightSinceMs: number | null = null;

  /** canary: a deliberately broken build for the rule's test: the lease counts from the barrier's answer, not its start. */
  constructor(readonly generation: number, readonly confirmLeaseMs: number, private readonly canary?: 'count-from-answer') {
    assert(confirmLeaseMs > 0, 'a confirmation lease lasts a while');
  }

  /** True while this node may serve lines, answer clients and grant as a home. */
  serving(nowMs: number): boolean {
    return nowMs < this.confirmedUntilMs;
  }

  /** Starts a barrier when none is in flight and the lease is past a quarter; the t0 to hand to done(), or null. */
  begin(nowMs: number): number | null {
    if (this.inFlightSinceMs !== null) return null;
    if (nowMs < this.confirmedUntilMs - (3 * this.confirmLeaseMs) / 4) return null;
    this.inFlightSinceMs = nowMs;
    return nowMs;
  }

  /** The barrier started at t0 came back at nowMs: `generation` is what was applied then. */
  done(t0: number, generation: number, nowMs: number): void {
    assert(this.inFlightSinceMs === t0 && nowMs >= t0, 'a barrier answered that was not begun, or before it began');
    this.inFlightSinceMs = null;
    if (generation !== this.generation) return;
    const from = this.canary === 'count-from-answer' ? nowMs : t0;
    this.confirmedUntilMs = Math.max(this.confirmedUntilMs, from + this.confirmLeaseMs);
  }

  /** The barrier failed (no leader, timed out): nothing confirmed; the next begin() may retry. */
  failed(t0: number): void {
    assert(this.inFlightSinceMs === t0, 'a barrier failed that was not begun');
    this.inFlightSinceMs = null;
  }

  get untilMs(): number {
    return this.confirmedUntilMs;
  }
}
