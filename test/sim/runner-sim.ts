// One seeded run of the shipped replication path (GroupHost/GroupRunner, the
// JournalService, group 0) on simulated nodes (sim-cluster.ts): clients append
// through the service's JournalAppend handler and read through JournalInfo
// (ReadIndex), under crashes with torn writes, partitions, one-way links, drops,
// duplicates, reordering and pauses; then everything heals and must converge.
//
// Checked besides the Raft checker (every Ready, durable record and message):
// - acked-not-committed: an acknowledged append is the committed entry at its index;
// - stale-read: a linearizable read reports an applied index below an append
//   acknowledged before the read began;
// - after healing, every replica applies the same journal (count, crc chain).

import { Xoshiro128 } from '../../core/prng.js';
import { EntryType } from '../../core/raft/types.js';
import { type DsyncError, ErrorCode } from '../../protocol/errors.js';
import { Opcode } from '../../protocol/frame.js';
import { schema } from '../../protocol/index.js';
import { EntryKind, frameEntry } from '../../server/raft/group0.js';
import { JournalService } from '../../server/services/journal/service.js';
import { InvariantViolation } from '../checker/raft-invariants.js';
import { failureOf } from './common.js';
import { type DiskVariant } from './sim-disk.js';
import { type NetworkOptions, SimCluster, type SimClusterOptions, SimLink, type SimStats } from './sim-cluster.js';

export interface RunnerSimOptions {
  readonly diskVariant?: DiskVariant;
  readonly checkAckDurability?: boolean;
  /** Virtual ms of the fault phase. */
  readonly faultPhaseMs?: number;
  readonly trace?: boolean;
  /** Canaries: crash often, fsync slowly. */
  readonly harsh?: boolean;
}

export interface RunnerFaults {
  readonly crash: boolean;
  readonly partition: boolean;
  readonly oneWay: boolean;
  readonly pause: boolean;
  readonly faultIntervalMs: number;
}

export interface RunnerSimResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly property: string;
  readonly error: string;
  readonly profile: string;
  readonly stats: SimStats;
  readonly trace: readonly string[];
  readonly acked: number;
  readonly reads: number;
  readonly events: number;
  readonly virtualMs: number;
}

/** Election timeouts are 300-600 ms on the real runner (core/constants.ts). */
const electionMs = 600;
const requestTimeoutMs = 2_000;
const leaderAfterHealMs = 30 * electionMs;
const convergeMsMax = 20_000;

function pick<T>(p: Xoshiro128, items: readonly T[]): T {
  const item = items[p.int(0, items.length - 1)];
  if (item === undefined) throw new Error('pick from an empty list');
  return item;
}

export function runnerProfile(seed: number, opts: RunnerSimOptions): { cluster: SimClusterOptions; faults: RunnerFaults; clients: number } {
  const p = new Xoshiro128((seed * 2654435761) ^ 0x52554e52);
  const network: NetworkOptions = {
    delayMsMin: 1,
    delayMsMax: pick(p, [3, 10, 30]),
    longDelayProb: pick(p, [0, 0, 0.02, 0.1]),
    longDelayMsMax: pick(p, [50, 300]),
    dropProb: pick(p, [0, 0, 0.01, 0.05, 0.15]),
    dupProb: pick(p, [0, 0, 0.02, 0.1]),
  };
  const harsh = opts.harsh === true;
  const snapshotEvery = pick(p, [0, 10, 40]);
  const cluster: SimClusterOptions = {
    seed,
    nodeCount: p.int(3, 5),
    network,
    fsyncMsMax: harsh ? 20 : pick(p, [0, 3, 10]),
    diskVariant: opts.diskVariant ?? 'correct',
    clockSkew: pick(p, [0, 0.02, 0.05]),
    snapshotEntries: snapshotEvery === 0 ? undefined : snapshotEvery,
    checkAckDurability: opts.checkAckDurability ?? true,
    services: () => [new JournalService()],
  };
  const faults: RunnerFaults = {
    crash: harsh || p.next() < 0.7,
    partition: p.next() < 0.6,
    oneWay: p.next() < 0.4,
    pause: p.next() < 0.4,
    faultIntervalMs: harsh ? 150 : pick(p, [150, 400, 1000]),
  };
  return { cluster, faults, clients: p.int(1, 3) };
}

function describe(c: SimClusterOptions, f: RunnerFaults, clients: number): string {
  const n = c.network;
  const on = (['crash', 'partition', 'oneWay', 'pause'] as const).filter((k) => f[k]);
  return `nodes=${c.nodeCount} delay=${n.delayMsMin}-${n.delayMsMax}ms long=${n.longDelayProb}/${n.longDelayMsMax}ms drop=${n.dropProb} dup=${n.dupProb} ` +
    `fsync<=${c.fsyncMsMax}ms skew=${c.clockSkew} compact=${c.snapshotEntries ?? 'default'} faults=[${on.join(',')}]/${f.faultIntervalMs}ms ` +
    `clients=${clients} disk=${c.diskVariant}`;
}

/** Injects the profile's faults at random intervals until `on()` turns false. */
export function startSimFaults(c: SimCluster, prng: Xoshiro128, f: RunnerFaults, on: () => boolean): void {
  const kinds: string[] = [];
  if (f.crash) kinds.push('crash', 'crash');
  if (f.partition) kinds.push('partition');
  if (f.oneWay) kinds.push('oneWay');
  if (f.pause) kinds.push('pause');
  if (kinds.length === 0) return;
  const n = c.nodes.length;
  const inject = (): void => {
    switch (pick(prng, kinds)) {
      case 'crash': {
        const idx = prng.int(0, n - 1);
        const restartLater = (): void => c.world.at(prng.int(10, 5 * electionMs), () => {
          if (on()) c.restart(idx);
        });
        if (prng.next() < 0.5) {
          c.crash(idx);
          restartLater();
          break;
        }
        // Power fails while the node's next write is in flight: recovery's torn-tail path.
        c.node(idx).disk.armOnNextAppend((msUntilDurable) => {
          c.world.at(msUntilDurable <= 0 ? 0 : prng.int(0, msUntilDurable - 1), () => {
            if (!on()) return;
            c.crash(idx);
            restartLater();
          });
        });
        break;
      }
      case 'partition': {
        if (prng.next() < 0.4) c.isolate(prng.int(0, n - 1));
        else {
          const a: number[] = [];
          const b: number[] = [];
          for (let i = 0; i < n; i++) (prng.next() < 0.5 ? a : b).push(i);
          c.partition([a, b]);
        }
        c.world.at(prng.int(electionMs, 6 * electionMs), () => {
          if (on()) c.heal();
        });
        break;
      }
      case 'oneWay': {
        const from = prng.int(0, n - 1);
        c.blockOneWay(from, (from + prng.int(1, n - 1)) % n);
        c.world.at(prng.int(electionMs, 6 * electionMs), () => {
          if (on()) c.heal();
        });
        break;
      }
      case 'pause':
        c.pause(prng.int(0, n - 1), prng.int(1, 3 * electionMs));
        break;
    }
  };
  const loop = (): void => {
    if (!on()) return;
    inject();
    c.world.at(prng.int(1, 2 * f.faultIntervalMs), loop);
  };
  c.world.at(prng.int(0, f.faultIntervalMs), loop);
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** Appends unique blobs one at a time (retrying a blob until acknowledged) and reads now and then. */
class JournalClient {
  private link: SimLink | null = null;
  private target: number;
  private nextRequestId = 1;
  private blobSeq = 0;
  private pending: { requestId: number; opcode: number; sentAtMs: number; blob: string; readFloor: number } | null = null;
  budget: number;
  done = 0;

  constructor(
    private readonly sim: RunnerSim,
    private readonly name: string,
    private readonly prng: Xoshiro128,
    budget: number,
  ) {
    this.budget = budget;
    this.target = prng.int(0, sim.cluster.nodes.length - 1);
  }

  get idle(): boolean {
    return this.pending === null && this.budget <= 0;
  }

  describe(): string {
    const p = this.pending;
    return `${this.name}: ${p === null ? 'idle' : `${p.opcode === Opcode.JournalAppend ? `append ${p.blob}` : 'read'} -> n${this.target + 1}`} budget ${this.budget}`;
  }

  private connect(): SimLink {
    if (this.link !== null && !this.link.closed && this.link.node === this.sim.cluster.node(this.target)) return this.link;
    this.link?.close();
    const c = this.sim.cluster;
    const link = new SimLink(c, c.node(this.target), {
      onReply: (id, opcode, payload) => this.onReply(id, opcode, payload),
      onError: (id, _opcode, err) => this.onError(id, err),
      onPush: () => {},
      onClosed: () => {
        if (this.link === link) this.retryElsewhere(-1);
      },
    }, 5);
    this.link = link;
    return link;
  }

  step(): void {
    const c = this.sim.cluster;
    const p = this.pending;
    if (p !== null) {
      if (c.nowMs - p.sentAtMs >= requestTimeoutMs) this.retryElsewhere(-1);
      return;
    }
    if (this.budget <= 0) return;
    if (this.prng.next() < 0.25) {
      this.send(Opcode.JournalInfo, schema.JournalInfoRequest.encode({ local: false }).finish(), '', this.sim.ackedIndexMax);
      return;
    }
    this.budget--;
    this.send(Opcode.JournalAppend, schema.JournalAppend.encode({ data: encoder.encode(`${this.name}-${this.blobSeq++}`) }).finish(), `${this.name}-${this.blobSeq - 1}`, 0);
  }

  private send(opcode: number, payload: Uint8Array, blob: string, readFloor: number): void {
    const requestId = this.nextRequestId++;
    this.pending = { requestId, opcode, sentAtMs: this.sim.cluster.nowMs, blob, readFloor };
    this.sim.requests.set(requestId + this.name, payload);
    this.connect().request(opcode, requestId, payload);
  }

  /** Sends the pending request again to another node (the hint, else a random one). */
  private retryElsewhere(hint: number): void {
    const p = this.pending;
    if (p === null) return;
    const n = this.sim.cluster.nodes.length;
    this.target = hint >= 0 ? hint : (this.target + this.prng.int(1, n - 1)) % n;
    const payload = this.sim.requests.get(p.requestId + this.name);
    if (payload === undefined) return;
    this.sim.requests.delete(p.requestId + this.name);
    const requestId = this.nextRequestId++;
    // A read restarts: its floor is what was acknowledged before this attempt began.
    const readFloor = p.opcode === Opcode.JournalInfo ? this.sim.ackedIndexMax : 0;
    this.pending = { ...p, requestId, sentAtMs: this.sim.cluster.nowMs, readFloor };
    this.sim.requests.set(requestId + this.name, payload);
    this.connect().request(p.opcode, requestId, payload);
  }

  private onReply(requestId: number, opcode: number, payload: Uint8Array): void {
    const p = this.pending;
    if (p === null || p.requestId !== requestId) return;
    this.pending = null;
    this.sim.requests.delete(requestId + this.name);
    if (opcode === Opcode.JournalAppend) {
      const r = schema.JournalAppendReply.decode(payload);
      this.sim.onAcked(this.name, Number(r.index), p.blob);
      this.done++;
    } else {
      const r = schema.JournalInfoReply.decode(payload);
      this.sim.onRead(this.name, r.nodeId, Number(r.appliedIndex), p.readFloor);
    }
  }

  private onError(requestId: number, err: DsyncError): void {
    const p = this.pending;
    if (p === null || p.requestId !== requestId) return;
    const c = this.sim.cluster;
    const hint = err.code === ErrorCode.NOT_LEADER ? c.nodes.findIndex((nd) => nd.id === err.leaderId) : -1;
    // Back off a little when nobody leads; go at once when told who does.
    if (hint >= 0) this.retryElsewhere(hint);
    else p.sentAtMs = c.nowMs - requestTimeoutMs + this.prng.int(20, 200);
  }
}

export class RunnerSim {
  readonly requests = new Map<string, Uint8Array>();
  ackedIndexMax = 0;
  readonly acked: { client: string; index: number; blob: string }[] = [];
  reads = 0;

  constructor(readonly cluster: SimCluster) {}

  fail(property: string, detail: string): never {
    throw new InvariantViolation(property, detail);
  }

  onAcked(client: string, index: number, blob: string): void {
    this.acked.push({ client, index, blob });
    if (index > this.ackedIndexMax) this.ackedIndexMax = index;
    this.checkAcked({ client, index, blob }, false);
  }

  /**
   * The acknowledged blob is the committed entry at its index. The runner answers a
   * proposer as it applies, which may be before the checker hears of that Ready (it
   * does after advance()), so an index not yet known committed is checked at the end.
   */
  checkAcked(a: { client: string; index: number; blob: string }, final: boolean): void {
    const key = this.cluster.checker.committedAt(a.index);
    if (key === undefined && !final) return;
    const suffix = `/${EntryType.Normal}/${decoder.decode(frameEntry(EntryKind.Journal, encoder.encode(a.blob)))}`;
    if (key === undefined || !key.endsWith(suffix)) {
      this.fail('acked-not-committed', `${a.client}'s append of ${a.blob} was acknowledged at index ${a.index}, where "${key ?? 'nothing'}" is committed`);
    }
  }

  onRead(client: string, node: string, appliedIndex: number, floor: number): void {
    this.reads++;
    if (appliedIndex < floor) {
      this.fail('stale-read', `${client}'s linearizable read on ${node} saw applied index ${appliedIndex}, below ${floor} acknowledged before it began`);
    }
  }
}

/** Asks every up node for its local journal summary; resolves with the answers (or null when one is missing). */
async function journalSummaries(c: SimCluster): Promise<string[] | null> {
  const answers = new Map<number, string>();
  for (const node of c.nodes) {
    const link = new SimLink(c, node, {
      onReply: (_id, _op, payload) => {
        const r = schema.JournalInfoReply.decode(payload);
        answers.set(node.idx, `count=${Number(r.count)} hash=${r.hash} applied=${Number(r.appliedIndex)}`);
        link.close();
      },
      onError: () => link.close(),
      onPush: () => {},
      onClosed: () => {},
    }, 1);
    link.request(Opcode.JournalInfo, 1, schema.JournalInfoRequest.encode({ local: true }).finish());
  }
  await c.world.runUntil(() => answers.size === c.nodes.length, 100, 1);
  return answers.size === c.nodes.length ? c.nodes.map((n) => answers.get(n.idx)!) : null;
}

export async function runRunnerSeed(seed: number, opts: RunnerSimOptions = {}): Promise<RunnerSimResult> {
  const { cluster: clusterOpts, faults, clients: clientsCount } = runnerProfile(seed, opts);
  const profile = describe(clusterOpts, faults, clientsCount);
  const c = new SimCluster(clusterOpts);
  c.traceEnabled = opts.trace === true;
  const sim = new RunnerSim(c);
  const prng = new Xoshiro128(seed ^ 0x7a7a7a7a);
  const clients: JournalClient[] = [];
  for (let i = 0; i < clientsCount; i++) {
    const client = new JournalClient(sim, `c${i}`, new Xoshiro128(prng.int(0, 0x7fffffff)), pick(prng, [20, 60]));
    clients.push(client);
    const intervalMs = prng.int(5, 40);
    const loop = (): void => {
      client.step();
      c.world.at(intervalMs, loop);
    };
    c.world.at(prng.int(0, intervalMs), loop);
  }
  let faultsOn = true;
  startSimFaults(c, prng, faults, () => faultsOn);
  const result = (property: string, error: string): RunnerSimResult => ({
    seed, ok: property === '', property, error, profile, stats: c.statsNow(), trace: c.trace, acked: sim.acked.length, reads: sim.reads,
    events: c.world.eventsRun, virtualMs: c.nowMs,
  });
  try {
    await c.world.runMs(opts.faultPhaseMs ?? 6_000);
    faultsOn = false;
    c.healAll();
    for (const cl of clients) cl.budget += 2;
    if (!(await c.world.runUntil(() => c.stableLeader() !== null, leaderAfterHealMs))) {
      return result('liveness', `no stable leader within ${leaderAfterHealMs}ms of healing`);
    }
    const converged = (): boolean => {
      if (!clients.every((cl) => cl.idle)) return false;
      const applied = c.node(0).group0.applied;
      return applied >= sim.ackedIndexMax && c.nodes.every((n) => n.up && n.group0.applied === applied);
    };
    if (!(await c.world.runUntil(converged, convergeMsMax))) {
      return result('liveness', `not converged ${convergeMsMax}ms after healing: applied ${c.nodes.map((n) => n.up ? n.group0.applied : -1).join(',')}; acked up to ${sim.ackedIndexMax}; ${clients.map((cl) => cl.describe()).join('; ')}`);
    }
    for (const a of sim.acked) sim.checkAcked(a, true);
    const summaries = await journalSummaries(c);
    if (summaries === null) return result('liveness', 'a node did not answer a local journal read after converging');
    if (new Set(summaries).size !== 1) return result('replica-divergence', `journals differ after converging: ${summaries.join(' / ')}`);
    return result('', '');
  } catch (err) {
    const failure = failureOf(err);
    return result(failure.property, failure.error);
  }
}
