// Where queue partitions move when nodes join, leave or stay down, and how a partition's
// Raft group walks to a new replica set one membership change at a time. Pure: group 0's
// leader calls planMoves with the topic table and what it knows of the voters, and each
// partition's leader calls nextMoveStep with its group's configuration and progress.
//
// Decisions:
// - Replica counts, not the ring: topics are placed by the ring when created; after that a
//   move replaces one node by another in a replica set, chosen by counts (CockroachDB's
//   allocator balances replica counts the same way). Recomputing the ring's placement over
//   the new voters would want partitions back on nodes they left, which they cannot return
//   to (group ids are not reused on a node: core/queue/topics.ts).
// - First repair, then balance: a replica on a node that is no longer a voter, or that
//   group 0's leader has not heard for the node-down time, is replaced by the least loaded
//   spare voter (live, not already a replica, not retired from that partition); several in
//   one move if needed. A partition with a move under way can be re-aimed this way too (its
//   target died), never for balance. Then, while some live voter's replica count is
//   more than one off the mean (a node joined, or took a node's share when it left) and
//   the most and least loaded differ by more than one, one replica moves from the most to
//   the least loaded. The band leaves alone what the ring's bounded placement gives a new
//   topic (counts a little apart), so creating a topic does not start moves.
// - Bounded: at most movesMax partitions have a move under way in the whole cluster; a
//   partition only starts a new move when its last one settled (re-aiming aside).
// - The new node takes the replaced one's position in the set, so a partition whose
//   preferred leader (first replica) moves gets the new node as preferred leader.
// - Steps (nextMoveStep): a learner that is not wanted is removed; a wanted learner that is
//   caught up is promoted; else one wanted node missing from the group is added as a
//   learner; only when every wanted node is a voter are the other voters removed (the group
//   never has fewer wanted voters than before the move). No step may leave the group
//   without a quorum of live voters: promoting or removing waits until it would not. The
//   leader never removes itself: it hands leadership to a caught-up wanted voter first.

import { assert } from '../assert.js';
import type { NodeId } from '../ids.js';
import { isMoving, type TopicRecord } from './topics.js';

export interface RebalanceInput {
  /** Every topic (dead-letter topics too: their partitions are groups like any other). */
  readonly topics: readonly TopicRecord[];
  /** Group 0's voters: the nodes replicas may live on. */
  readonly voters: readonly NodeId[];
  /** Voters group 0's leader has not heard from for the node-down time. */
  readonly down: ReadonlySet<NodeId>;
  /** Moves under way at once in the cluster, at most. */
  readonly movesMax: number;
  /** Nodes a partition may have left; a move that would retire more is not planned. */
  readonly retiredMax: number;
}

export type MoveReason = 'repair' | 'balance';

export interface PlannedMove {
  readonly topic: string;
  readonly partition: number;
  /** The partition's epoch the move was planned against (the move applies only on top of it). */
  readonly epoch: number;
  readonly replicas: readonly NodeId[];
  readonly reason: MoveReason;
}

const byId = (a: NodeId, b: NodeId): number => (a < b ? -1 : a > b ? 1 : 0);

/** The moves to propose now, in the order to propose them (deterministic for the same input). */
export function planMoves(input: RebalanceInput): PlannedMove[] {
  const live = input.voters.filter((v) => !input.down.has(v)).sort(byId);
  const voterSet = new Set(input.voters);
  const load = new Map<NodeId, number>(live.map((v) => [v, 0]));
  let underWay = 0;
  for (const t of input.topics) {
    t.placement.forEach((replicas, p) => {
      if (isMoving(t, p)) underWay++;
      for (const r of replicas) if (load.has(r)) load.set(r, (load.get(r) ?? 0) + 1);
    });
  }
  const out: PlannedMove[] = [];
  const touched = new Set<string>();
  const spareFor = (t: TopicRecord, p: number, taken: readonly NodeId[]): NodeId | null => {
    const retired = t.retired[p] ?? [];
    const hosts = t.hosts[p] ?? [];
    let best: NodeId | null = null;
    for (const v of live) {
      // A node the partition is leaving in the move under way is still in its group: not a spare.
      if (taken.includes(v) || retired.includes(v) || hosts.includes(v)) continue;
      if (best === null || (load.get(v) ?? 0) < (load.get(best) ?? 0)) best = v;
    }
    return best;
  };
  const retiresTooMany = (t: TopicRecord, p: number, replicas: readonly NodeId[]): boolean => {
    const leaving = new Set([...(t.hosts[p] ?? [])].filter((n) => !replicas.includes(n)));
    return (t.retired[p] ?? []).filter((n) => !leaving.has(n)).length + leaving.size > input.retiredMax;
  };
  const propose = (t: TopicRecord, p: number, replicas: NodeId[], reason: MoveReason): void => {
    const before = t.placement[p] ?? [];
    for (const n of before) if (!replicas.includes(n) && load.has(n)) load.set(n, (load.get(n) ?? 0) - 1);
    for (const n of replicas) if (!before.includes(n) && load.has(n)) load.set(n, (load.get(n) ?? 0) + 1);
    if (!isMoving(t, p)) underWay++;
    touched.add(`${t.name}/${p}`);
    out.push({ topic: t.name, partition: p, epoch: t.epochs[p] ?? 0, replicas, reason });
  };

  // Repair: replicas on departed or down voters.
  for (const t of input.topics) {
    t.placement.forEach((replicas, p) => {
      const bad = replicas.filter((r) => !voterSet.has(r) || input.down.has(r));
      if (bad.length === 0) return;
      if (!isMoving(t, p) && underWay >= input.movesMax) return;
      const next = [...replicas];
      for (const b of bad) {
        const spare = spareFor(t, p, next);
        if (spare === null) return;
        next[next.indexOf(b)] = spare;
      }
      if (retiresTooMany(t, p, next)) return;
      propose(t, p, next, 'repair');
    });
  }

  // Balance: from the most to the least loaded live voter, one replica at a time, while someone is out of the band.
  const total = [...load.values()].reduce((a, b) => a + b, 0);
  const mean = live.length === 0 ? 0 : total / live.length;
  const bandLow = Math.floor(mean) - 1;
  const bandHigh = Math.ceil(mean) + 1;
  for (;;) {
    if (underWay >= input.movesMax) break;
    const order = [...live].sort((a, b) => (load.get(a) ?? 0) - (load.get(b) ?? 0) || byId(a, b));
    const lowest = load.get(order[0] as NodeId) ?? 0;
    const highest = load.get(order[order.length - 1] as NodeId) ?? 0;
    if (lowest >= bandLow && highest <= bandHigh) break;
    let planned = false;
    for (let hi = order.length - 1; hi >= 0 && !planned; hi--) {
      const from = order[hi] as NodeId;
      for (let lo = 0; lo < hi && !planned; lo++) {
        const to = order[lo] as NodeId;
        if ((load.get(from) ?? 0) - (load.get(to) ?? 0) <= 1) break;
        for (const t of input.topics) {
          const p = t.placement.findIndex((replicas, i) => replicas.includes(from) && !replicas.includes(to) && !isMoving(t, i)
            && !touched.has(`${t.name}/${i}`) && !(t.retired[i] ?? []).includes(to)
            && replicas.every((r) => voterSet.has(r) && !input.down.has(r)));
          if (p < 0) continue;
          const next = (t.placement[p] ?? []).map((r) => (r === from ? to : r));
          if (retiresTooMany(t, p, next)) continue;
          propose(t, p, next, 'balance');
          planned = true;
          break;
        }
      }
    }
    if (!planned) break;
  }
  for (const m of out) assert(new Set(m.replicas).size === m.replicas.length, `move of ${m.topic}/${m.partition} names a node twice`);
  return out;
}

/** A partition group as its leader sees it. */
export interface GroupView {
  readonly self: NodeId;
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
  readonly lastIndex: number;
  /** Each member's match index (the leader's progress). */
  readonly match: ReadonlyMap<NodeId, number>;
  /** Members heard from recently (the leader itself included). */
  readonly live: ReadonlySet<NodeId>;
}

export type MoveStep =
  | { readonly kind: 'addLearner' | 'promote' | 'remove'; readonly node: NodeId }
  | { readonly kind: 'transferLeadership'; readonly to: NodeId }
  /** The group's voters are exactly the wanted set and it has no learners: report it to group 0. */
  | { readonly kind: 'settled' }
  | { readonly kind: 'wait'; readonly why: string };

const quorum = (voters: number): number => Math.floor(voters / 2) + 1;

/** The next membership step of a group whose wanted voters are `wanted` (catchUpEntriesMax: how far behind a learner may be when promoted). */
export function nextMoveStep(g: GroupView, wanted: readonly NodeId[], catchUpEntriesMax: number): MoveStep {
  assert(g.voters.includes(g.self), 'only a voter (the leader) walks its group');
  const liveAfter = (voters: readonly NodeId[]): boolean => voters.filter((v) => g.live.has(v)).length >= quorum(voters.length);
  const unwantedLearner = g.learners.find((l) => !wanted.includes(l));
  if (unwantedLearner !== undefined) return { kind: 'remove', node: unwantedLearner };
  const extra = g.voters.filter((v) => !wanted.includes(v));
  const missing = wanted.filter((w) => !g.voters.includes(w));
  if (missing.length === 0 && extra.length === 0 && g.learners.length === 0) return { kind: 'settled' };
  const caughtUp = (n: NodeId): boolean => g.live.has(n) && (g.match.get(n) ?? 0) + catchUpEntriesMax >= g.lastIndex;
  for (const l of g.learners) {
    if (!caughtUp(l)) continue;
    const after = [...g.voters, l];
    if (!liveAfter(after)) return { kind: 'wait', why: `promoting ${l} would leave too few live voters` };
    return { kind: 'promote', node: l };
  }
  if (g.learners.length > 0) return { kind: 'wait', why: `learner ${g.learners.join(',')} is catching up` };
  const add = missing[0];
  if (add !== undefined) return { kind: 'addLearner', node: add };
  // Every wanted node is a voter: remove the others, dead ones first, the leader last (after handing over).
  const order = [...extra].sort((a, b) => Number(g.live.has(a)) - Number(g.live.has(b)) || Number(a === g.self) - Number(b === g.self) || byId(a, b));
  const victim = order[0] as NodeId;
  if (victim === g.self) {
    const to = wanted.find((w) => w !== g.self && caughtUp(w));
    return to === undefined ? { kind: 'wait', why: 'no caught-up wanted voter to hand leadership to' } : { kind: 'transferLeadership', to };
  }
  const after = g.voters.filter((v) => v !== victim);
  if (!liveAfter(after)) return { kind: 'wait', why: `removing ${victim} would leave too few live voters` };
  return { kind: 'remove', node: victim };
}
