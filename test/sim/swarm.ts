// One randomized simulator run from a seed (VOPR style): the seed picks a cluster
// and a fault profile ("swarm testing": each seed enables a different mix of
// faults at different rates), runs a safety phase with faults and retrying
// clients, then heals everything and checks liveness: a leader within a bound,
// and every client proposal applied on every replica.

import { Xoshiro128 } from '../../core/prng.js';
import type { ProposeOutcome } from '../../core/raft/types.js';
import { Cluster, defaultClusterOptions } from './cluster.js';
import type { ClusterOptions, RaftFactory, Variant } from './cluster.js';
import { failureOf, seedOutcome } from './common.js';
import type { SeedOutcome } from './common.js';

export interface SwarmOptions {
  readonly raftFactory: RaftFactory;
  readonly variant?: Variant;
  /** Length of the fault phase in virtual ms. */
  readonly faultPhaseMs?: number;
  readonly trace?: boolean;
  /** Applied over the seed's profile (canaries use it to turn off ack-durability checks). */
  readonly clusterOverrides?: Partial<ClusterOptions>;
  readonly faultOverrides?: Partial<FaultProfile>;
}

export interface SwarmResult extends SeedOutcome {
  readonly virtualMs: number;
  readonly leaderAfterHealMs: number;
  readonly payloadsCommitted: number;
}

export interface FaultProfile {
  readonly crash: boolean;
  readonly partition: boolean;
  readonly oneWay: boolean;
  readonly clockJump: boolean;
  readonly clockPause: boolean;
  readonly faultIntervalMs: number;
  readonly clients: number;
  readonly payloadsPerClient: number;
}

function pick<T>(prng: Xoshiro128, items: readonly T[]): T {
  const item = items[prng.int(0, items.length - 1)];
  if (item === undefined) throw new Error('pick from empty list');
  return item;
}

export function profileFor(seed: number, raftFactory: RaftFactory, variant: Variant): { cluster: ClusterOptions; faults: FaultProfile } {
  const p = new Xoshiro128((seed * 2654435761) ^ 0x5eed5eed);
  const dropProb = pick(p, [0, 0, 0.01, 0.05, 0.15]);
  const cluster = defaultClusterOptions(seed, raftFactory, {
    nodeCount: p.int(3, 5),
    heartbeatTicks: pick(p, [1, 2, 3]),
    preVote: p.next() < 0.75,
    checkQuorum: p.next() < 0.75,
    maxEntriesPerMsg: pick(p, [1, 3, 64]),
    maxInflightMsgs: pick(p, [1, 4, 16]),
    tickSkew: pick(p, [0, 0.05, 0.1]),
    network: {
      delayMsMin: 1,
      delayMsMax: pick(p, [3, 10, 30]),
      longDelayProb: pick(p, [0, 0, 0.02, 0.1]),
      longDelayMsMax: pick(p, [50, 300]),
      dropProb,
      dupProb: pick(p, [0, 0, 0.02, 0.1]),
    },
    fsyncMsMax: pick(p, [0, 3, 10]),
    inputsBatchMax: pick(p, [1, 2, 4]),
    compactEveryApplied: pick(p, [0, 4, 15, 40]),
    variant,
  });
  const faults: FaultProfile = {
    crash: p.next() < 0.7,
    partition: p.next() < 0.6,
    oneWay: p.next() < 0.4,
    clockJump: p.next() < 0.4,
    clockPause: p.next() < 0.4,
    faultIntervalMs: pick(p, [40, 120, 400]),
    clients: p.int(1, 3),
    payloadsPerClient: pick(p, [10, 30]),
  };
  return { cluster, faults };
}

function describe(c: ClusterOptions, f: FaultProfile): string {
  const on = (['crash', 'partition', 'oneWay', 'clockJump', 'clockPause'] as const).filter((k) => f[k]);
  const n = c.network;
  return (
    `nodes=${c.nodeCount} hb=${c.heartbeatTicks} preVote=${c.preVote} checkQuorum=${c.checkQuorum} ` +
    `maxEntries=${c.maxEntriesPerMsg} inflight=${c.maxInflightMsgs} skew=${c.tickSkew} ` +
    `delay=${n.delayMsMin}-${n.delayMsMax}ms long=${n.longDelayProb}/${n.longDelayMsMax}ms drop=${n.dropProb} dup=${n.dupProb} ` +
    `fsync<=${c.fsyncMsMax}ms batch<=${c.inputsBatchMax} compact~${c.compactEveryApplied} ` +
    `faults=[${on.join(',')}]/${f.faultIntervalMs}ms clients=${f.clients}x${f.payloadsPerClient} variant=${c.variant}`
  );
}

/** A client that proposes unique payloads to whoever it believes leads, retrying until its server applied it. */
class SimClient {
  readonly issued: string[] = [];
  private seq = 0;
  private hint: number;
  private current: { payload: string; target: number; sentAtMs: number; waiting: boolean; attempt: number } | null = null;

  constructor(
    private readonly cluster: Cluster,
    private readonly id: number,
    private readonly prng: Xoshiro128,
    public budget: number,
    private readonly timeoutMs: number,
  ) {
    this.hint = prng.int(0, cluster.nodes.length - 1);
  }

  get done(): boolean {
    return this.current === null && this.budget <= 0;
  }

  describe(): string {
    const cur = this.current;
    return cur === null ? `c${this.id}: idle` : `c${this.id}: ${cur.payload} -> n${cur.target + 1} attempt ${cur.attempt}`;
  }

  step(): void {
    const c = this.cluster;
    if (this.current === null) {
      if (this.budget <= 0) return;
      this.budget--;
      const payload = `c${this.id}-${this.seq++}`;
      this.issued.push(payload);
      this.current = { payload, target: this.hint, sentAtMs: -Infinity, waiting: false, attempt: 0 };
    }
    const cur = this.current;
    const server = c.node(cur.target);
    if (cur.attempt > 0 && server.raft !== null && server.sm.seen.has(cur.payload)) {
      this.current = null; // the server it talks to applied it: acknowledged
      return;
    }
    if (c.nowMs - cur.sentAtMs < this.timeoutMs) return;
    if (cur.attempt > 0 && !cur.waiting) this.hint = this.prng.int(0, c.nodes.length - 1); // timed out: try elsewhere
    cur.target = this.hint;
    cur.sentAtMs = c.nowMs;
    cur.waiting = true;
    const attempt = ++cur.attempt;
    c.propose(cur.target, cur.payload, (out: ProposeOutcome) => {
      if (this.current !== cur || cur.attempt !== attempt) return;
      cur.waiting = false;
      if (out.ok) return; // now wait for it to be applied (or time out)
      const leaderIdx = out.leader === '' ? -1 : c.nodes.findIndex((n) => n.id === out.leader);
      this.hint = leaderIdx >= 0 ? leaderIdx : this.prng.int(0, c.nodes.length - 1);
      cur.sentAtMs = -Infinity; // retry at the next step
    });
  }
}

export function runSeed(seed: number, opts: SwarmOptions): SwarmResult {
  const variant = opts.variant ?? 'correct';
  const profiled = profileFor(seed, opts.raftFactory, variant);
  const faults: FaultProfile = { ...profiled.faults, ...opts.faultOverrides };
  const clusterOpts: ClusterOptions = { ...profiled.cluster, ...opts.clusterOverrides };
  const profile = describe(clusterOpts, faults);
  const faultPhaseMs = opts.faultPhaseMs ?? 3_000;
  const c = new Cluster(clusterOpts);
  c.traceEnabled = opts.trace === true;
  const prng = new Xoshiro128(seed ^ 0x7a7a7a7a);
  const electionMs = clusterOpts.electionTicks * clusterOpts.tickMs;
  const clients: SimClient[] = [];
  for (let i = 0; i < faults.clients; i++) {
    const client = new SimClient(c, i, prng, faults.payloadsPerClient, 4 * electionMs);
    clients.push(client);
    const intervalMs = prng.int(5, 40);
    const loop = (): void => {
      client.step();
      c.schedule(intervalMs, loop);
    };
    c.schedule(prng.int(0, intervalMs), loop);
  }
  const faultState: FaultState = { on: true, keepDown: new Set() };
  startFaults(c, prng, faults, electionMs, faultState);

  let leaderAfterHealMs = -1;
  const result = (property: string, error: string): SwarmResult => ({
    ...seedOutcome(seed, property, error, profile, c),
    virtualMs: c.nowMs,
    leaderAfterHealMs,
    payloadsCommitted: clients.reduce((a, cl) => a + cl.issued.length, 0),
  });
  try {
    // Safety phase: faults and clients; the checker runs on every step.
    c.runMs(faultPhaseMs);
    // Liveness phase: heal everything, then the cluster must converge.
    healAll(c, faultState);
    for (const client of clients) client.budget = Math.max(client.budget, 0) + 2;
    const healMs = c.nowMs;
    const leaderBoundMs = 30 * electionMs;
    if (!c.runUntil(() => c.stableLeader() !== null, leaderBoundMs)) {
      return result('liveness', `no stable leader within ${leaderBoundMs}ms of healing (terms ${c.nodes.map((_, i) => c.term(i)).join(',')})`);
    }
    leaderAfterHealMs = c.nowMs - healMs;
    const convergeBoundMs = 20_000;
    const all = (): string[] => clients.flatMap((cl) => cl.issued);
    const converged = (): boolean => {
      if (!clients.every((cl) => cl.done)) return false;
      const payloads = all();
      const applied = c.nodes[0]!.sm.appliedIndex;
      return c.nodes.every((node) => node.raft !== null && node.sm.appliedIndex === applied && payloads.every((p) => node.sm.seen.has(p)));
    };
    if (!c.runUntil(converged, convergeBoundMs)) {
      const missing = c.nodes.map((node) => `${node.id}:applied=${node.sm.appliedIndex},missing=${all().filter((p) => !node.sm.seen.has(p)).length}`);
      return result('liveness', `not converged ${convergeBoundMs}ms after healing: ${missing.join(' ')}; ${clients.map((cl) => cl.describe()).join('; ')}`);
    }
    // Every replica applied the same sequence.
    const reference = c.nodes[0]!.sm.log.join('\n');
    for (const node of c.nodes) {
      if (node.sm.log.join('\n') !== reference) return result('state-machine-safety', `${node.id} applied a different sequence than n1`);
    }
    return result('', '');
  } catch (err) {
    const failure = failureOf(err);
    return result(failure.property, failure.error);
  }
}

// ---------------------------------------------------------------- faults (shared by every simulator)

/** Whether the fault phase is still on, and which nodes faults must not restart (decommissioned ones). */
export interface FaultState {
  on: boolean;
  readonly keepDown: Set<number>;
}

/** One fault from the seed's profile, over every simulated node (not-yet-joined ones shrug it off). */
export function injectFault(c: Cluster, prng: Xoshiro128, f: FaultProfile, electionMs: number, state: FaultState): void {
  const kinds: string[] = [];
  if (f.crash) kinds.push('crash', 'crash');
  if (f.partition) kinds.push('partition');
  if (f.oneWay) kinds.push('oneWay');
  if (f.clockJump) kinds.push('clockJump');
  if (f.clockPause) kinds.push('clockPause');
  if (kinds.length === 0) return;
  const n = c.nodes.length;
  const kind = pick(prng, kinds);
  switch (kind) {
    case 'crash': {
      const idx = prng.int(0, n - 1);
      c.crash(idx);
      c.schedule(prng.int(10, 15 * electionMs), () => {
        if (state.on && !state.keepDown.has(idx)) c.restart(idx);
      });
      break;
    }
    case 'partition': {
      if (prng.next() < 0.4) {
        c.isolate(prng.int(0, n - 1));
      } else {
        const a: number[] = [];
        const b: number[] = [];
        for (let i = 0; i < n; i++) (prng.next() < 0.5 ? a : b).push(i);
        c.partition([a, b]);
      }
      c.schedule(prng.int(electionMs, 15 * electionMs), () => {
        if (state.on) c.heal();
      });
      break;
    }
    case 'oneWay': {
      const from = prng.int(0, n - 1);
      const to = (from + prng.int(1, n - 1)) % n;
      c.blockOneWay(from, to);
      c.schedule(prng.int(electionMs, 15 * electionMs), () => {
        if (state.on) c.heal();
      });
      break;
    }
    case 'clockJump':
      c.clockJump(prng.int(0, n - 1), prng.int(1, 3 * c.opts.electionTicks));
      break;
    case 'clockPause':
      c.clockPause(prng.int(0, n - 1), prng.int(1, 3 * electionMs));
      break;
    default:
      throw new Error(`unknown fault ${kind}`);
  }
}

/** Injects faults from the profile at random intervals until `state.on` turns false. */
export function startFaults(c: Cluster, prng: Xoshiro128, f: FaultProfile, electionMs: number, state: FaultState): void {
  const loop = (): void => {
    if (!state.on) return;
    injectFault(c, prng, f, electionMs, state);
    c.schedule(prng.int(1, 2 * f.faultIntervalMs), loop);
  };
  c.schedule(prng.int(0, f.faultIntervalMs), loop);
}

/** Ends the fault phase: heals the network and clocks, restarts every node not kept down, stops message loss. */
export function healAll(c: Cluster, state: FaultState): void {
  state.on = false;
  c.note('--- heal: liveness phase ---');
  c.heal();
  for (let i = 0; i < c.nodes.length; i++) if (!state.keepDown.has(i)) c.restart(i);
  for (const node of c.nodes) node.pausedUntilMs = 0;
  Object.assign(c.network, { dropProb: 0, dupProb: 0, longDelayProb: 0 });
}
