// Many Raft groups on one set of simulated nodes: 5 SimNodes each run the shipped
// GroupHost with group 0 plus 64 test groups whose 3-replica sets overlap (every 3 of the
// 5 nodes, in turn), as queue partitions would be placed. A driver proposes to whichever
// replica leads each group, while the nemesis crashes and restarts nodes (unsynced
// writes lost), isolates, partitions and pauses them, over a lossy, duplicating,
// reordering network, with small snapshot thresholds so groups compact and lagging
// replicas install snapshots. SimCluster's Raft checker watches every group
// (checkAllGroups: election and vote safety, log matching, leader completeness,
// committed entries durable on a majority of the group's replicas). After healing:
// every group elects a leader, and every replica of every group applies every
// acknowledged proposal, all in the same order.

import { groupId, type GroupId, type NodeId } from '../../core/ids.js';
import { Xoshiro128 } from '../../core/prng.js';
import { type Entry, Role } from '../../core/raft/types.js';
import type { StateMachine } from '../../server/raft/runner.js';
import type { Service, ServiceContext } from '../../server/services/service.js';
import { failureOf } from './common.js';
import { runnerProfile } from './runner-sim.js';
import { SimCluster, type SimNode } from './sim-cluster.js';
import type { DiskVariant } from './sim-disk.js';

export const multiGroupCount = 64;
const nodeCount = 5;
const firstGroupId = 1_000_000;
const enc = new TextEncoder();
const dec = new TextDecoder();

/** Every 3 of 5 nodes, in turn: group i's replica indexes. */
const replicaSets: number[][] = [];
for (let a = 0; a < nodeCount; a++) for (let b = a + 1; b < nodeCount; b++) for (let c = b + 1; c < nodeCount; c++) replicaSets.push([a, b, c]);

export function replicasOf(i: number): number[] {
  return replicaSets[i % replicaSets.length] as number[];
}

/** One group's state: the proposals it applied, in order. */
class LogMachine implements StateMachine {
  applied: string[] = [];

  apply(entry: Entry): unknown {
    this.applied.push(dec.decode(entry.data));
    return this.applied.length;
  }

  snapshot(): Uint8Array {
    return enc.encode(JSON.stringify(this.applied));
  }

  restore(data: Uint8Array): void {
    this.applied = JSON.parse(dec.decode(data)) as string[];
  }
}

/** Hosts this node's replicas of the test groups (as the queue service hosts partitions). */
class GroupsService implements Service {
  readonly name = 'sim-groups';
  readonly opcodes = { min: 900, max: 900 };
  readonly machines = new Map<GroupId, LogMachine>();

  constructor(private readonly ids: readonly NodeId[]) {}

  start(ctx: ServiceContext): void {
    for (let i = 0; i < multiGroupCount; i++) {
      const voters = replicasOf(i).map((r) => this.ids[r] as NodeId);
      if (!voters.includes(ctx.node.nodeId)) continue;
      const g = groupId(firstGroupId + i);
      const m = new LogMachine();
      this.machines.set(g, m);
      ctx.groups.ensure(g, m, { voters: [...voters].sort(), learners: [] });
    }
  }

  stop(): void {}
}

export interface MultiGroupResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly property: string;
  readonly error: string;
  readonly profile: string;
  readonly acked: number;
  readonly crashes: number;
  readonly snapshotsInstalled: number;
  /** Snapshots that travelled in chunks (the simulation cuts them at 256 bytes) and were reassembled. */
  readonly snapshotsReassembled: number;
  /** Leaderless groups right after healing, and simulated ms until every group had a leader again. */
  readonly leaderlessAtHeal: number;
  readonly allLedAfterMs: number;
}

/** One seed: proposals under faults for faultPhaseMs, heal, then check liveness and that nothing acknowledged is missing. */
export async function runMultiGroupSeed(seed: number, faultPhaseMs = 3_000, diskVariant: DiskVariant = 'correct'): Promise<MultiGroupResult> {
  const profiled = runnerProfile(seed, { diskVariant });
  const ids = Array.from({ length: nodeCount }, (_, i) => `n${i + 1}` as NodeId);
  const c = new SimCluster({ ...profiled.cluster, nodeCount, snapshotEntries: profiled.cluster.snapshotEntries ?? 25, snapshotChunkBytes: 256, checkAllGroups: true,
    services: () => [new GroupsService(ids)] });
  const n = c.opts.network;
  const profile = `nodes=${nodeCount} groups=${multiGroupCount} drop=${n.dropProb} dup=${n.dupProb} delay<=${n.delayMsMax}ms fsync<=${c.opts.fsyncMsMax}ms ` +
    `skew=${c.opts.clockSkew} compact=${c.opts.snapshotEntries ?? 'default'}`;
  const p = new Xoshiro128((seed * 40503) ^ 0x4d554c54);
  const groups = Array.from({ length: multiGroupCount }, (_, i) => groupId(firstGroupId + i));
  const acked = groups.map(() => new Set<string>());
  let result: { property: string; error: string } = { property: '', error: '' };
  let leaderlessAtHeal = 0;
  let allLedAfterMs = -1;

  const machineOf = (node: SimNode, g: GroupId): LogMachine | undefined => (node.services[0] as GroupsService | undefined)?.machines.get(g);
  const leaderOf = (i: number): SimNode | null => {
    for (const r of replicasOf(i)) {
      const node = c.node(r);
      if (!node.up || node.pausedUntilMs > c.nowMs) continue;
      const runner = node.host?.groups.get(groups[i] as GroupId);
      if (runner !== undefined && runner.raft.status().role === Role.Leader) return node;
    }
    return null;
  };

  let stopProposing = false;
  let proposed = 0;
  let inFlight = 0;
  const propose = (): void => {
    if (stopProposing) return;
    for (let k = 0; k < 4 && inFlight < 24; k++) {
      const i = p.int(0, multiGroupCount - 1);
      const leader = leaderOf(i);
      const runner = leader?.host?.groups.get(groups[i] as GroupId);
      if (runner === undefined) continue;
      const value = `g${i}-${proposed++}`;
      inFlight++;
      runner.propose(enc.encode(value)).then(() => { acked[i]?.add(value); }, () => { /* not acknowledged: never required */ })
        .finally(() => { inFlight--; });
    }
    c.world.at(p.int(2, 10), propose);
  };

  const nemesis = (): void => {
    if (c.world.nowMs > faultPhaseMs) return;
    const idx = p.int(0, nodeCount - 1);
    const r = p.next();
    if (r < 0.35) {
      c.crash(idx);
      c.world.at(p.int(100, 700), () => c.restart(idx));
    } else if (r < 0.55) {
      c.isolate(idx);
      c.world.at(p.int(100, 600), () => c.heal());
    } else if (r < 0.7) {
      const side = [idx, (idx + 1 + p.int(0, nodeCount - 2)) % nodeCount];
      c.partition([side, ids.map((_, j) => j).filter((j) => !side.includes(j))]);
      c.world.at(p.int(150, 600), () => c.heal());
    } else if (r < 0.85) {
      c.pause(idx, p.int(50, 500));
    }
    c.world.at(p.int(100, 400), nemesis);
  };

  try {
    c.world.at(50, propose);
    c.world.at(200, nemesis);
    await c.world.runUntilTime(faultPhaseMs + 200);
    c.healAll();
    for (let r = 0; r < nodeCount; r++) if (!c.node(r).up) c.restart(r);
    const healedAt = c.nowMs;
    leaderlessAtHeal = groups.filter((_, i) => leaderOf(i) === null).length;
    await c.world.runUntil(() => groups.every((_, i) => leaderOf(i) !== null), 20_000);
    allLedAfterMs = groups.every((_, i) => leaderOf(i) !== null) ? c.nowMs - healedAt : -1;
    if (allLedAfterMs < 0) {
      result = { property: 'liveness', error: `groups without a leader 20 s after healing: ${groups.filter((_, i) => leaderOf(i) === null).length}` };
    }
    // Proposals keep flowing after healing; then stop and let every replica catch up.
    await c.world.runUntilTime(c.nowMs + 500);
    stopProposing = true;
    await c.world.runUntil(() => inFlight === 0, 10_000);
    const caughtUp = (): boolean => groups.every((g, i) => replicasOf(i).every((r) => {
      const m = machineOf(c.node(r), g);
      return m !== undefined && [...(acked[i] ?? [])].every((v) => m.applied.includes(v));
    }));
    await c.world.runUntil(caughtUp, 20_000);
    if (result.property === '') {
      for (const [i, g] of groups.entries()) {
        const logs = replicasOf(i).map((r) => machineOf(c.node(r), g)?.applied ?? []);
        const missing = [...(acked[i] ?? [])].filter((v) => logs.some((l) => !l.includes(v)));
        if (missing.length > 0) {
          result = { property: 'lost', error: `group ${g}: ${missing.length} acknowledged proposals missing on a replica: ${missing.slice(0, 5).join(' ')}` };
          break;
        }
        const longest = logs.reduce((a, b) => (b.length > a.length ? b : a), [] as string[]);
        if (logs.some((l) => l.some((v, k) => longest[k] !== v))) {
          result = { property: 'apply-order', error: `group ${g}: replicas applied different sequences` };
          break;
        }
      }
    }
    if (result.property === '' && acked.every((s) => s.size === 0)) result = { property: 'liveness', error: 'nothing was acknowledged' };
  } catch (err) {
    result = failureOf(err);
  }
  return { seed, ok: result.property === '', ...result, profile, acked: acked.reduce((a, s) => a + s.size, 0), crashes: c.stats.crashes,
    snapshotsInstalled: c.statsNow().snapshotsInstalled, snapshotsReassembled: c.statsNow().snapshotsReassembled, leaderlessAtHeal, allLedAfterMs };
}
