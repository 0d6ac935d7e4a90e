// A deterministic simulated Raft cluster: 3-5 replicas driven from one seed over
// a virtual clock, a faulty network (delay, drop, duplicate, reorder, symmetric
// and one-way partitions), crashes that lose unsynced writes (a torn last
// write), restarts from the simulated disk, and clock jumps and pauses.
// Every step is checked by test/checker/raft-invariants.ts.

import { assert } from '../../core/assert.js';
import { logIndex, nodeId, term as termOf } from '../../core/ids.js';
import type { NodeId } from '../../core/ids.js';
import { Xoshiro128 } from '../../core/prng.js';
import { EntryType, MessageType, Role } from '../../core/raft/types.js';
import type {
  ConfChange,
  ConfState,
  Entry,
  HardState,
  Message,
  PersistedState,
  ProposeOutcome,
  RaftConfig,
  RaftNode,
  Ready,
  Snapshot,
} from '../../core/raft/types.js';
import { RaftSafetyChecker, entryKey } from '../checker/raft-invariants.js';
import { EventHeap } from './heap.js';

export type RaftFactory = (config: RaftConfig, persisted: PersistedState) => RaftNode;

/**
 * Deliberately broken harness variants (canaries) that the checkers must catch:
 * - ack-before-fsync: a Ready's messages go out before its write is durable;
 * - forget-vote: the disk loses the vote on a crash, so a restarted replica
 *   can vote again in the same term.
 */
export type Variant = 'correct' | 'ack-before-fsync' | 'forget-vote';

export interface NetworkOptions {
  delayMsMin: number;
  delayMsMax: number;
  /** Probability that a message is held back up to longDelayMsMax more (reordering). */
  longDelayProb: number;
  longDelayMsMax: number;
  dropProb: number;
  dupProb: number;
}

export interface ClusterOptions {
  readonly seed: number;
  readonly nodeCount: number;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  readonly maxEntriesPerMsg: number;
  readonly maxInflightMsgs: number;
  /** Virtual milliseconds per Raft tick (each node's clock drifts by up to tickSkew of it). */
  readonly tickMs: number;
  readonly tickSkew: number;
  readonly network: NetworkOptions;
  /** A Ready's write becomes durable 0..fsyncMsMax ms after it starts; a crash in between tears it. */
  readonly fsyncMsMax: number;
  /** Inputs (ticks, messages, proposals) stepped before asking for the next Ready: 1..inputsBatchMax. */
  readonly inputsBatchMax: number;
  /** Compact after about this many applied entries (randomized per snapshot); 0 never compacts. */
  readonly compactEveryApplied: number;
  readonly variant: Variant;
  /**
   * Check at send time that every acknowledgement (AppResp success, granted
   * VoteResp) is backed by the sender's durable disk. Canary tests turn it off
   * to show the end-to-end properties catch the same bugs on their own.
   */
  readonly checkAckDurability: boolean;
  readonly raftFactory: RaftFactory;
  /**
   * Membership tests: only the first initialVoters nodes boot (as the bootstrap
   * voters); the rest are spare machines started with join(). Default: all.
   */
  readonly initialVoters?: number;
}

/**
 * Hooks for checkers layered on top of the simulator (membership, reads,
 * transfer). Each is optional and observes only; a failure throws from it.
 */
export interface ClusterObserver {
  /** After `node` handled one input (tick, message, proposal, ...). */
  afterStep?(node: SimNode, raft: RaftNode): void;
  /** After a Ready was persisted, sent, applied (rd.committedEntries) and advanced. */
  afterAdvance?(node: SimNode, raft: RaftNode, rd: Ready): void;
  /** A message handed to the network (before any drop). */
  onSend?(msg: Message): void;
}

export const reliableNetwork = (): NetworkOptions => ({
  delayMsMin: 1,
  delayMsMax: 8,
  longDelayProb: 0,
  longDelayMsMax: 0,
  dropProb: 0,
  dupProb: 0,
});

export function defaultClusterOptions(seed: number, raftFactory: RaftFactory, overrides: Partial<ClusterOptions> = {}): ClusterOptions {
  return {
    seed,
    nodeCount: 3,
    electionTicks: 10,
    heartbeatTicks: 2,
    preVote: true,
    checkQuorum: true,
    maxEntriesPerMsg: 64,
    maxInflightMsgs: 16,
    tickMs: 10,
    tickSkew: 0.1,
    network: reliableNetwork(),
    fsyncMsMax: 2,
    inputsBatchMax: 2,
    compactEveryApplied: 0,
    variant: 'correct',
    checkAckDurability: true,
    raftFactory,
    ...overrides,
  };
}

type DiskRecord =
  | { readonly kind: 'snapshot'; readonly snapshot: Snapshot }
  | { readonly kind: 'entry'; readonly entry: Entry }
  | { readonly kind: 'hardState'; readonly hardState: HardState };

interface PendingWrite {
  readonly records: readonly DiskRecord[];
  readonly ready: Ready;
  readonly sent: boolean;
  /** A torn crash may keep a prefix of the records only when term and vote did not change. */
  readonly tearable: boolean;
  /** The replica's term when it produced the Ready. */
  readonly term: number;
}

/** What survived on the simulated disk. Entries are contiguous from snapshot index + 1. */
export interface Disk {
  hardState: HardState;
  snapshot: Snapshot | null;
  entries: Entry[];
}

type Input =
  | { readonly kind: 'tick' }
  | { readonly kind: 'msg'; readonly msg: Message }
  | { readonly kind: 'propose'; readonly data: Uint8Array; readonly done: (outcome: ProposeOutcome) => void }
  | { readonly kind: 'confChange'; readonly change: ConfChange; readonly done: (outcome: ProposeOutcome) => void }
  | { readonly kind: 'read'; readonly context: Uint8Array; readonly done: (accepted: boolean) => void }
  | { readonly kind: 'transfer'; readonly to: NodeId };

/** The replicated state machine: the payloads applied, in order (duplicates from client retries are skipped). */
export interface StateMachine {
  appliedIndex: number;
  /** Every payload-bearing entry applied: [index, term, payload]. */
  entries: Array<[number, number, string]>;
  byIndex: Map<number, string>;
  seen: Set<string>;
  /** Distinct payloads in apply order (what a client would observe). */
  log: string[];
}

export interface SimNode {
  readonly idx: number;
  readonly id: NodeId;
  raft: RaftNode | null;
  incarnation: number;
  disk: Disk;
  pending: PendingWrite | null;
  inputs: Input[];
  sm: StateMachine;
  tickIntervalMs: number;
  pausedUntilMs: number;
  lastTerm: number;
  leaderCheckTerm: number;
  compactAt: number;
  /** Started at least once (bootstrap voters, or a spare after join()). */
  joined: boolean;
  /** PersistedState.conf it boots with: the bootstrap voters, or the configuration it joined with. */
  bootConf: ConfState;
}

export interface ClusterStats {
  sent: number[];
  delivered: number;
  dropped: number;
  duplicated: number;
  appRejects: number;
  crashes: number;
  restarts: number;
  tornWrites: number;
  snapshotsInstalled: number;
  compactions: number;
  steps: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeStateMachine(sm: StateMachine): Uint8Array {
  return encoder.encode(JSON.stringify(sm.entries));
}

export function decodeStateMachine(data: Uint8Array, appliedIndex: number): StateMachine {
  const sm = emptyStateMachine();
  sm.appliedIndex = appliedIndex;
  if (data.length === 0) return sm;
  const parsed: unknown = JSON.parse(decoder.decode(data));
  assert(Array.isArray(parsed), 'snapshot data is an array');
  for (const item of parsed as unknown[]) {
    assert(Array.isArray(item) && item.length === 3, 'snapshot item shape');
    const [index, term, payload] = item as [unknown, unknown, unknown];
    assert(typeof index === 'number' && typeof term === 'number' && typeof payload === 'string', 'snapshot item types');
    assert(index <= appliedIndex, `snapshot holds index ${index} above its own index ${appliedIndex}`);
    addPayload(sm, index, term, payload);
  }
  return sm;
}

function emptyStateMachine(): StateMachine {
  return { appliedIndex: 0, entries: [], byIndex: new Map(), seen: new Set(), log: [] };
}

function addPayload(sm: StateMachine, index: number, term: number, payload: string): void {
  sm.entries.push([index, term, payload]);
  sm.byIndex.set(index, payload);
  if (!sm.seen.has(payload)) {
    sm.seen.add(payload);
    sm.log.push(payload);
  }
}

export const messageTypeNames = [
  'PreVote',
  'PreVoteResp',
  'Vote',
  'VoteResp',
  'App',
  'AppResp',
  'Heartbeat',
  'HeartbeatResp',
  'Snap',
  'TimeoutNow',
  'ReadIndex',
  'ReadIndexResp',
] as const;

export class Cluster {
  readonly opts: ClusterOptions;
  readonly prng: Xoshiro128;
  readonly checker = new RaftSafetyChecker();
  readonly nodes: SimNode[] = [];
  readonly network: NetworkOptions;
  readonly stats: ClusterStats = {
    sent: new Array<number>(messageTypeNames.length).fill(0),
    delivered: 0,
    dropped: 0,
    duplicated: 0,
    appRejects: 0,
    crashes: 0,
    restarts: 0,
    tornWrites: 0,
    snapshotsInstalled: 0,
    compactions: 0,
    steps: 0,
  };
  /** blocked[from][to]: messages from -> to are lost. */
  private readonly blocked: boolean[][];
  private readonly heap = new EventHeap();
  private readonly conf: ConfState;
  private readonly byId = new Map<string, SimNode>();
  nowMs = 0;
  readonly observers: ClusterObserver[] = [];
  /**
   * Membership tests: the voters of the latest committed configuration. When
   * set, checkCommittedDurable requires that the voters missing a committed
   * entry are not a quorum of it (instead of a majority of all nodes holding it).
   */
  durableVoters: (() => readonly NodeId[]) | null = null;
  /** Optional trace of notable events (crashes, partitions, leaders) for failure reports. */
  readonly trace: string[] = [];
  traceEnabled = false;

  constructor(opts: ClusterOptions) {
    assert(opts.nodeCount >= 1 && opts.nodeCount <= 9, 'node count');
    assert(opts.tickMs >= 1 && opts.tickSkew >= 0 && opts.tickSkew < 1, 'tick config');
    this.opts = opts;
    this.prng = new Xoshiro128(opts.seed);
    this.network = { ...opts.network };
    const ids: NodeId[] = [];
    for (let i = 0; i < opts.nodeCount; i++) ids.push(nodeId(`n${i + 1}`));
    const initialVoters = opts.initialVoters ?? opts.nodeCount;
    assert(initialVoters >= 1 && initialVoters <= opts.nodeCount, 'initial voters');
    this.conf = { voters: ids.slice(0, initialVoters), learners: [] };
    this.blocked = ids.map(() => ids.map(() => false));
    for (let i = 0; i < opts.nodeCount; i++) {
      const skew = 1 + opts.tickSkew * (2 * this.prng.next() - 1);
      const node: SimNode = {
        idx: i,
        id: ids[i]!,
        raft: null,
        incarnation: 0,
        disk: { hardState: { term: termOf(0), vote: '', commit: logIndex(0) }, snapshot: null, entries: [] },
        pending: null,
        inputs: [],
        sm: emptyStateMachine(),
        tickIntervalMs: Math.max(1, Math.round(opts.tickMs * skew)),
        pausedUntilMs: 0,
        lastTerm: 0,
        leaderCheckTerm: -1,
        compactAt: this.nextCompactAt(),
        joined: i < initialVoters,
        bootConf: this.conf,
      };
      this.nodes.push(node);
      this.byId.set(node.id, node);
    }
    for (const node of this.nodes) {
      if (node.joined) this.boot(node);
      this.scheduleTick(node, this.prng.int(1, node.tickIntervalMs));
    }
  }

  // ---------------------------------------------------------------- time

  schedule(delayMs: number, fn: () => void): void {
    assert(delayMs >= 0, 'no scheduling into the past');
    this.heap.push(this.nowMs + delayMs, fn);
  }

  runUntilTime(endMs: number): void {
    while (this.heap.peekAt() <= endMs) {
      const ev = this.heap.pop();
      assert(ev !== undefined, 'heap non-empty');
      this.nowMs = ev.at;
      ev.fn();
    }
    if (endMs > this.nowMs) this.nowMs = endMs;
  }

  runMs(ms: number): void {
    this.runUntilTime(this.nowMs + ms);
  }

  runTicks(ticks: number): void {
    this.runMs(ticks * this.opts.tickMs);
  }

  /** Runs until `pred()` holds (checked every tick) or msMax passes; returns whether it held. */
  runUntil(pred: () => boolean, msMax: number): boolean {
    const endMs = this.nowMs + msMax;
    for (;;) {
      if (pred()) return true;
      if (this.nowMs >= endMs) return false;
      this.runUntilTime(Math.min(endMs, this.nowMs + this.opts.tickMs));
    }
  }

  private scheduleTick(node: SimNode, delayMs: number): void {
    this.schedule(delayMs, () => {
      if (node.raft !== null && this.nowMs >= node.pausedUntilMs) {
        node.inputs.push({ kind: 'tick' });
        this.pump(node);
      }
      this.scheduleTick(node, node.tickIntervalMs);
    });
  }

  /** Clock jump: the node's clock bursts forward `ticks` ticks at once. */
  clockJump(idx: number, ticks: number): void {
    const node = this.node(idx);
    if (node.raft === null) return;
    this.note(`clock jump ${node.id} +${ticks} ticks`);
    for (let i = 0; i < ticks; i++) node.inputs.push({ kind: 'tick' });
    this.pump(node);
  }

  /** The node's clock stops for `ms` (a GC pause or a stalled VM). */
  clockPause(idx: number, ms: number): void {
    const node = this.node(idx);
    this.note(`clock pause ${node.id} ${ms}ms`);
    node.pausedUntilMs = Math.max(node.pausedUntilMs, this.nowMs + ms);
  }

  // ------------------------------------------------------------- network

  isolate(idx: number): void {
    this.note(`isolate ${this.node(idx).id}`);
    for (let j = 0; j < this.nodes.length; j++) {
      if (j === idx) continue;
      this.blocked[idx]![j] = true;
      this.blocked[j]![idx] = true;
    }
  }

  /** Reconnects `idx` with every node (one-way blocks involving it included). */
  reconnect(idx: number): void {
    this.note(`reconnect ${this.node(idx).id}`);
    for (let j = 0; j < this.nodes.length; j++) {
      this.blocked[idx]![j] = false;
      this.blocked[j]![idx] = false;
    }
  }

  /** Splits the cluster: nodes in different groups cannot talk; nodes not listed are isolated. */
  partition(groups: readonly (readonly number[])[]): void {
    this.note(`partition ${groups.map((g) => g.map((i) => this.node(i).id).join(',')).join(' | ')}`);
    const groupOf = new Array<number>(this.nodes.length).fill(-1);
    groups.forEach((g, gi) => g.forEach((i) => (groupOf[i] = gi)));
    for (let a = 0; a < this.nodes.length; a++) {
      for (let b = 0; b < this.nodes.length; b++) {
        const ga = groupOf[a]!;
        this.blocked[a]![b] = a !== b && (ga === -1 || ga !== groupOf[b]);
      }
    }
  }

  blockOneWay(from: number, to: number): void {
    this.note(`block ${this.node(from).id} -> ${this.node(to).id}`);
    this.blocked[from]![to] = true;
  }

  heal(): void {
    this.note('heal network');
    for (const row of this.blocked) row.fill(false);
  }

  isBlocked(from: number, to: number): boolean {
    return this.blocked[from]![to]!;
  }

  private send(msg: Message): void {
    for (const o of this.observers) o.onSend?.(msg);
    this.stats.sent[msg.type] = (this.stats.sent[msg.type] ?? 0) + 1;
    if (msg.type === MessageType.VoteResp && !msg.reject) this.checker.onVoteGranted(msg.from, msg.term, msg.to);
    if (msg.type === MessageType.AppResp && msg.reject) this.stats.appRejects++;
    if (this.traceEnabled && (msg.type <= MessageType.VoteResp || msg.reject || msg.type === MessageType.Snap)) {
      const what = messageTypeNames[msg.type] ?? String(msg.type);
      this.note(`${msg.from} -> ${msg.to} ${what} term ${msg.term} logTerm ${msg.logTerm} index ${msg.index}${msg.reject ? ' REJECT' : ''}`);
    }
    const from = this.byId.get(msg.from);
    const to = this.byId.get(msg.to);
    assert(from !== undefined && to !== undefined, `message between unknown nodes ${msg.from} -> ${msg.to}`);
    if (this.opts.checkAckDurability) this.checkAckDurable(from, msg);
    if (this.blocked[from.idx]![to.idx] || this.prng.next() < this.network.dropProb) {
      this.stats.dropped++;
      return;
    }
    const copies = this.prng.next() < this.network.dupProb ? 2 : 1;
    if (copies === 2) this.stats.duplicated++;
    for (let c = 0; c < copies; c++) {
      // A real network serializes: the receiver never shares the sender's arrays.
      const copy: Message = { ...msg, entries: msg.entries.slice() };
      let delayMs = this.prng.int(this.network.delayMsMin, this.network.delayMsMax);
      if (this.network.longDelayProb > 0 && this.prng.next() < this.network.longDelayProb) {
        delayMs += this.prng.int(0, this.network.longDelayMsMax);
      }
      this.schedule(delayMs, () => this.deliver(copy, from.idx, to));
    }
  }

  private checkAckDurable(from: SimNode, msg: Message): void {
    if (msg.type === MessageType.AppResp && !msg.reject && msg.index > this.lastIndex(from)) {
      this.checker.fail('ack-durability', `${from.id} acked index ${msg.index} to ${msg.to} with only ${this.lastIndex(from)} durable`);
    }
    if (msg.type === MessageType.VoteResp && !msg.reject) {
      const hs = from.disk.hardState;
      // Durable: this vote, or a later term (which forbids voting in msg.term again).
      if (hs.term < msg.term || (hs.term === msg.term && hs.vote !== msg.to)) {
        this.checker.fail('ack-durability', `${from.id} granted its term-${msg.term} vote to ${msg.to} with term ${hs.term} vote '${hs.vote}' durable`);
      }
    }
  }

  private deliver(msg: Message, fromIdx: number, to: SimNode): void {
    if (this.blocked[fromIdx]![to.idx] || to.raft === null) {
      this.stats.dropped++;
      return;
    }
    this.stats.delivered++;
    to.inputs.push({ kind: 'msg', msg });
    this.pump(to);
  }

  // ------------------------------------------------------- crash/restart

  node(idx: number): SimNode {
    const node = this.nodes[idx];
    assert(node !== undefined, `no node ${idx}`);
    return node;
  }

  isUp(idx: number): boolean {
    return this.node(idx).raft !== null;
  }

  /** Power loss: volatile state is gone; an unsynced write may survive in part, in whole, or not at all. */
  crash(idx: number): void {
    const node = this.node(idx);
    if (node.raft === null) return;
    this.stats.crashes++;
    const pending = node.pending;
    let kept = 0;
    if (pending !== null) {
      const n = pending.records.length;
      kept = pending.tearable ? this.prng.int(0, n) : this.prng.next() < 0.5 ? 0 : n;
      for (let i = 0; i < kept; i++) this.applyRecord(node, pending.records[i]!, pending.term);
      if (kept < n) this.stats.tornWrites++;
    }
    this.note(`crash ${node.id}${pending === null ? '' : ` (unsynced write: kept ${kept}/${pending.records.length} records)`}`);
    if (this.opts.variant === 'forget-vote') node.disk.hardState = { ...node.disk.hardState, vote: '' };
    node.raft = null;
    node.pending = null;
    node.inputs = [];
    node.sm = emptyStateMachine();
    node.incarnation++;
    this.checkCommittedDurable();
  }

  /** Every committed entry is on a majority of disks (in the log or under a snapshot). */
  checkCommittedDurable(): void {
    if (this.durableVoters !== null) {
      this.checkCommittedDurableInConf(this.durableVoters());
      return;
    }
    const quorum = Math.floor(this.nodes.length / 2) + 1;
    for (const [index, key] of this.checker.committedKeys()) {
      let copies = 0;
      for (const node of this.nodes) {
        const snapIndex = node.disk.snapshot?.meta.index ?? 0;
        if (index <= snapIndex) {
          copies++;
          continue;
        }
        const e = node.disk.entries[index - snapIndex - 1];
        if (e !== undefined && entryKey(e) === key) copies++;
      }
      if (copies < quorum) {
        this.checker.fail('committed-never-lost', `committed "${key}" at ${index} is durable on only ${copies} of ${this.nodes.length} disks`);
      }
    }
  }

  /** Membership: the voters without a committed entry must not form a quorum of `voters`. */
  private checkCommittedDurableInConf(voters: readonly NodeId[]): void {
    const quorum = Math.floor(voters.length / 2) + 1;
    for (const [index, key] of this.checker.committedKeys()) {
      let missing = 0;
      for (const id of voters) {
        const node = this.byId.get(id);
        assert(node !== undefined, `unknown voter ${id}`);
        const snapIndex = node.disk.snapshot?.meta.index ?? 0;
        if (index <= snapIndex) continue;
        const e = node.disk.entries[index - snapIndex - 1];
        if (e === undefined || entryKey(e) !== key) missing++;
      }
      if (missing >= quorum) {
        this.checker.fail('committed-never-lost', `committed "${key}" at ${index} is missing on ${missing} of voters ${voters.join(',')}: a quorum`);
      }
    }
  }

  /** Starts a spare node for the first time with the configuration it is being added with (empty disk). */
  join(idx: number, conf: ConfState): void {
    const node = this.node(idx);
    assert(!node.joined && node.raft === null, `${node.id} already joined`);
    node.joined = true;
    node.bootConf = conf;
    this.note(`join ${node.id} with voters ${conf.voters.join(',')} learners ${conf.learners.join(',')}`);
    this.boot(node);
    this.pump(node);
  }

  restart(idx: number): void {
    const node = this.node(idx);
    if (node.raft !== null || !node.joined) return;
    this.stats.restarts++;
    this.note(`restart ${node.id} (term ${node.disk.hardState.term}, vote '${node.disk.hardState.vote}', last ${this.lastIndex(node)})`);
    this.boot(node);
    this.pump(node);
  }

  private boot(node: SimNode): void {
    const disk = node.disk;
    const persisted: PersistedState = {
      hardState: disk.hardState,
      snapshot: disk.snapshot,
      entries: disk.entries.slice(),
      conf: node.bootConf,
    };
    const config: RaftConfig = {
      id: node.id,
      electionTicks: this.opts.electionTicks,
      heartbeatTicks: this.opts.heartbeatTicks,
      prng: new Xoshiro128(this.prng.int(0, 0x7fffffff)),
      preVote: this.opts.preVote,
      checkQuorum: this.opts.checkQuorum,
      maxEntriesPerMsg: this.opts.maxEntriesPerMsg,
      maxInflightMsgs: this.opts.maxInflightMsgs,
    };
    node.raft = this.opts.raftFactory(config, persisted);
    node.sm = disk.snapshot === null ? emptyStateMachine() : decodeStateMachine(disk.snapshot.data, disk.snapshot.meta.index);
    node.lastTerm = disk.hardState.term;
    node.leaderCheckTerm = -1;
  }

  // --------------------------------------------------------- the replica

  private pump(node: SimNode): void {
    let guard = 0;
    while (node.raft !== null && node.pending === null) {
      guard++;
      assert(guard < 1_000_000, `${node.id}: Ready loop does not settle`);
      if (node.raft.hasReady()) {
        this.handleReady(node, node.raft);
        continue;
      }
      if (node.inputs.length === 0) return;
      const batch = this.opts.inputsBatchMax <= 1 ? 1 : this.prng.int(1, this.opts.inputsBatchMax);
      for (let k = 0; k < batch; k++) {
        const input = node.inputs.shift();
        if (input === undefined || node.raft === null) break;
        this.step(node, node.raft, input);
      }
    }
  }

  private step(node: SimNode, raft: RaftNode, input: Input): void {
    this.stats.steps++;
    switch (input.kind) {
      case 'tick':
        raft.tick();
        break;
      case 'msg':
        raft.step(input.msg);
        break;
      case 'propose':
        input.done(raft.propose(input.data));
        break;
      case 'confChange':
        input.done(raft.proposeConfChange(input.change));
        break;
      case 'read':
        input.done(raft.readIndex(input.context));
        break;
      case 'transfer':
        raft.transferLeadership(input.to);
        break;
    }
    this.afterStep(node, raft);
    for (const o of this.observers) o.afterStep?.(node, raft);
  }

  /** Checks that need the replica's live status, after every input it handles. */
  private afterStep(node: SimNode, raft: RaftNode): void {
    const st = raft.status();
    if (st.term < node.lastTerm) this.checker.fail('term-monotonic', `${node.id} went from term ${node.lastTerm} to ${st.term}`);
    node.lastTerm = st.term;
    if (st.role === Role.Leader) {
      this.checker.onLeader(node.id, st.term);
      if (node.leaderCheckTerm !== st.term && node.leaderCheckTerm !== -st.term - 1) {
        this.note(`${node.id} leader of term ${st.term}`);
        node.leaderCheckTerm = -st.term - 1; // pending: checked once its log is durable
      }
    }
  }

  private handleReady(node: SimNode, raft: RaftNode): void {
    const rd = raft.ready();
    const currentTerm = raft.status().term;
    for (const e of rd.committedEntries) this.checker.onCommitted(node.id, e, currentTerm);
    const records: DiskRecord[] = [];
    if (rd.snapshot !== null) records.push({ kind: 'snapshot', snapshot: rd.snapshot });
    for (const entry of rd.entries) records.push({ kind: 'entry', entry });
    if (rd.hardState !== null) records.push({ kind: 'hardState', hardState: rd.hardState });
    const old = node.disk.hardState;
    // A snapshot is recorded atomically with its hard state (etcd: snapshot file +
    // WAL snapshot record); term/vote changes are too. Otherwise a crash may keep
    // any prefix of the appended entries.
    const tearable =
      rd.snapshot === null && (rd.hardState === null || (rd.hardState.term === old.term && rd.hardState.vote === old.vote));
    const early = this.opts.variant === 'ack-before-fsync';
    if (early) for (const m of rd.messages) this.send(m);
    const write: PendingWrite = { records, ready: rd, sent: early, tearable, term: currentTerm };
    const fsyncMs = records.length === 0 ? 0 : this.prng.int(0, this.opts.fsyncMsMax);
    if (fsyncMs === 0) {
      this.completeWrite(node, raft, write);
      return;
    }
    node.pending = write;
    const incarnation = node.incarnation;
    this.schedule(fsyncMs, () => {
      if (node.incarnation !== incarnation || node.pending !== write || node.raft === null) return;
      this.completeWrite(node, node.raft, write);
      this.pump(node);
    });
  }

  private completeWrite(node: SimNode, raft: RaftNode, write: PendingWrite): void {
    for (const rec of write.records) this.applyRecord(node, rec, write.term);
    node.pending = null;
    const rd = write.ready;
    if (!write.sent) for (const m of rd.messages) this.send(m);
    if (rd.snapshot !== null) this.installSnapshot(node, rd.snapshot, raft);
    for (const e of rd.committedEntries) this.apply(node, e);
    raft.advance();
    const st = raft.status();
    if (node.leaderCheckTerm === -st.term - 1 && st.role === Role.Leader && node.disk.hardState.term === st.term) {
      node.leaderCheckTerm = st.term;
      const disk = node.disk;
      const snapIndex = disk.snapshot?.meta.index ?? 0;
      this.checker.checkLeaderCompleteness(node.id, st.term, snapIndex, this.lastIndex(node), (i) => disk.entries[i - snapIndex - 1]);
    }
    for (const o of this.observers) o.afterAdvance?.(node, raft, rd);
    this.maybeCompact(node, raft);
  }

  private applyRecord(node: SimNode, rec: DiskRecord, nodeTerm: number): void {
    const disk = node.disk;
    switch (rec.kind) {
      case 'snapshot': {
        const meta = rec.snapshot.meta;
        const snapIndex = disk.snapshot?.meta.index ?? 0;
        if (meta.index < snapIndex) {
          this.checker.fail('ready-contract', `${node.id} was asked to persist snapshot ${meta.index} below its snapshot ${snapIndex}`);
        }
        const at = disk.entries[meta.index - snapIndex - 1];
        disk.entries = at !== undefined && at.term === meta.term ? disk.entries.slice(meta.index - snapIndex) : [];
        disk.snapshot = rec.snapshot;
        break;
      }
      case 'entry': {
        const e = rec.entry;
        const snapIndex = disk.snapshot?.meta.index ?? 0;
        if (e.index <= snapIndex || e.index > snapIndex + disk.entries.length + 1) {
          this.checker.fail(
            'ready-contract',
            `${node.id} was asked to persist entry ${e.index} outside (${snapIndex}, ${snapIndex + disk.entries.length + 1}]`,
          );
        }
        const prevTerm = e.index - 1 === snapIndex ? (disk.snapshot?.meta.term ?? 0) : disk.entries[e.index - snapIndex - 2]!.term;
        if (e.term < prevTerm) this.checker.fail('log-terms-monotonic', `${node.id} entry ${e.index} term ${e.term} after term ${prevTerm}`);
        const overwritten = disk.entries[e.index - snapIndex - 1];
        this.checker.onPersistedEntry(node.id, e, prevTerm, nodeTerm, overwritten);
        disk.entries.length = e.index - snapIndex - 1;
        disk.entries.push(e);
        break;
      }
      case 'hardState': {
        const hs = rec.hardState;
        const old = disk.hardState;
        if (hs.term < old.term) this.checker.fail('hardstate', `${node.id} persisted term ${hs.term} after ${old.term}`);
        if (hs.term === old.term && old.vote !== '' && hs.vote !== old.vote) {
          this.checker.fail('vote-safety', `${node.id} persisted vote ${hs.vote || "''"} after ${old.vote} in term ${hs.term}`);
        }
        if (hs.commit < old.commit) this.checker.fail('hardstate', `${node.id} persisted commit ${hs.commit} after ${old.commit}`);
        if (hs.commit > this.lastIndex(node)) {
          this.checker.fail('ready-contract', `${node.id} persisted commit ${hs.commit} beyond its durable log end ${this.lastIndex(node)}`);
        }
        disk.hardState = hs;
        break;
      }
    }
  }

  lastIndex(node: SimNode): number {
    return (node.disk.snapshot?.meta.index ?? 0) + node.disk.entries.length;
  }

  private installSnapshot(node: SimNode, snap: Snapshot, raft: RaftNode): void {
    const sm = node.sm;
    if (snap.meta.index < sm.appliedIndex) {
      this.checker.fail('ready-contract', `${node.id} got snapshot ${snap.meta.index} behind applied ${sm.appliedIndex}`);
    }
    const next = decodeStateMachine(snap.data, snap.meta.index);
    const currentTerm = raft.status().term;
    for (const [index, term, payload] of next.entries) this.checker.onSnapshotEntry(node.id, index, term, payload, currentTerm);
    // The snapshot must agree with what this replica had already applied.
    for (const [index, , payload] of sm.entries) {
      if (next.byIndex.get(index) !== payload) {
        this.checker.fail('state-machine-safety', `${node.id} snapshot ${snap.meta.index} disagrees at ${index} with applied "${payload}"`);
      }
    }
    node.sm = next;
    this.stats.snapshotsInstalled++;
    this.note(`${node.id} installed snapshot ${snap.meta.index}`);
  }

  private apply(node: SimNode, e: Entry): void {
    const sm = node.sm;
    if (e.index !== sm.appliedIndex + 1) {
      this.checker.fail('ready-contract', `${node.id} applies index ${e.index} after ${sm.appliedIndex}`);
    }
    this.checker.onCommitted(node.id, e, node.lastTerm);
    sm.appliedIndex = e.index;
    if (e.type === EntryType.Normal && e.data.length > 0) addPayload(sm, e.index, e.term, decoder.decode(e.data));
  }

  private nextCompactAt(): number {
    const every = this.opts.compactEveryApplied;
    return every <= 0 ? Infinity : this.prng.int(Math.max(1, every >> 1), every + (every >> 1));
  }

  private maybeCompact(node: SimNode, raft: RaftNode): void {
    const disk = node.disk;
    const snapIndex = disk.snapshot?.meta.index ?? 0;
    const index = node.sm.appliedIndex;
    if (index - snapIndex < node.compactAt) return;
    const entry = disk.entries[index - snapIndex - 1];
    if (entry === undefined) return;
    const data = encodeStateMachine(node.sm);
    raft.compact(logIndex(index), data);
    disk.snapshot = { meta: { index: logIndex(index), term: entry.term, conf: raft.status().conf }, data };
    disk.entries = disk.entries.slice(index - snapIndex);
    node.compactAt = this.nextCompactAt();
    this.stats.compactions++;
  }

  // ------------------------------------------------------------- clients

  /** Hands `payload` to node `idx` as a proposal; `done` gets the outcome (a down node refuses at once). */
  propose(idx: number, payload: string, done: (outcome: ProposeOutcome) => void): void {
    const node = this.node(idx);
    if (node.raft === null) {
      done({ ok: false, reason: 'not-leader', leader: '' });
      return;
    }
    node.inputs.push({ kind: 'propose', data: encoder.encode(payload), done });
    this.pump(node);
  }

  /** Hands a membership change to node `idx` (a down node refuses at once). */
  proposeConfChange(idx: number, change: ConfChange, done: (outcome: ProposeOutcome) => void): void {
    const node = this.node(idx);
    if (node.raft === null) {
      done({ ok: false, reason: 'not-leader', leader: '' });
      return;
    }
    node.inputs.push({ kind: 'confChange', change, done });
    this.pump(node);
  }

  /** Asks node `idx` for a ReadIndex with `context`; `done(false)` when it knows no leader (or is down). */
  readIndex(idx: number, context: Uint8Array, done: (accepted: boolean) => void): void {
    const node = this.node(idx);
    if (node.raft === null) {
      done(false);
      return;
    }
    node.inputs.push({ kind: 'read', context, done });
    this.pump(node);
  }

  /** Asks node `idx` to hand leadership to `to` (ignored unless it leads). */
  transferLeadership(idx: number, to: NodeId): void {
    const node = this.node(idx);
    if (node.raft === null) return;
    this.note(`transfer ${node.id} -> ${to}`);
    node.inputs.push({ kind: 'transfer', to });
    this.pump(node);
  }

  /** Proposes and runs the simulation until the node answers (null if it crashed first). */
  proposeNow(idx: number, payload: string): ProposeOutcome | null {
    let outcome: ProposeOutcome | null = null;
    const incarnation = this.node(idx).incarnation;
    this.propose(idx, payload, (o) => (outcome = o));
    this.runUntil(() => outcome !== null || this.node(idx).incarnation !== incarnation, 10 * this.opts.tickMs);
    return outcome;
  }

  /** The up replica in role leader with the highest term, if any. */
  leader(): SimNode | null {
    let best: SimNode | null = null;
    let bestTerm = -1;
    for (const node of this.nodes) {
      if (node.raft === null) continue;
      const st = node.raft.status();
      if (st.role === Role.Leader && st.term > bestTerm) {
        best = node;
        bestTerm = st.term;
      }
    }
    return best;
  }

  /** A leader that every up replica recognises in the same term. */
  stableLeader(): SimNode | null {
    const leader = this.leader();
    if (leader === null || leader.raft === null) return null;
    const term = leader.raft.status().term;
    for (const node of this.nodes) {
      if (node.raft === null) continue;
      const st = node.raft.status();
      if (st.leader !== leader.id || st.term !== term) return null;
    }
    return leader;
  }

  /** Leaders in role at this instant, per term (for "at most one leader" assertions in tests). */
  leadersByTerm(): Map<number, string[]> {
    const out = new Map<number, string[]>();
    for (const node of this.nodes) {
      if (node.raft === null) continue;
      const st = node.raft.status();
      if (st.role !== Role.Leader) continue;
      const list = out.get(st.term) ?? [];
      list.push(node.id);
      out.set(st.term, list);
    }
    return out;
  }

  term(idx: number): number {
    const raft = this.node(idx).raft;
    return raft === null ? this.node(idx).disk.hardState.term : raft.status().term;
  }

  /** How many up replicas applied `payload` at `index` (safety of the rest is the checker's job). */
  appliedCount(index: number, payload: string): number {
    let count = 0;
    for (const node of this.nodes) if (node.raft !== null && node.sm.byIndex.get(index) === payload) count++;
    return count;
  }

  /** The MIT 6.824 `one()`: get `payload` committed on at least `expected` replicas, retrying leaders. */
  one(payload: string, expected: number, retry: boolean, msMax = 10_000): number | null {
    const startMs = this.nowMs;
    let next = 0;
    while (this.nowMs - startMs < msMax) {
      let index = -1;
      for (let k = 0; k < this.nodes.length; k++) {
        const idx = (next + k) % this.nodes.length;
        if (!this.isUp(idx)) continue;
        const outcome = this.proposeNow(idx, payload);
        if (outcome !== null && outcome.ok) {
          index = outcome.index;
          next = idx;
          break;
        }
      }
      if (index >= 0) {
        const committed = this.runUntil(() => this.appliedCount(index, payload) >= expected, 2_000);
        if (committed) return index;
        if (!retry) return null;
      } else {
        this.runMs(5 * this.opts.tickMs);
      }
    }
    return null;
  }

  messagesSent(type: MessageType): number {
    return this.stats.sent[type] ?? 0;
  }

  messagesSentTotal(): number {
    return this.stats.sent.reduce((a, b) => a + b, 0);
  }

  note(line: string): void {
    if (this.traceEnabled) this.trace.push(`${String(this.nowMs).padStart(7)}ms ${line}`);
  }
}

