// Simulated nodes that run the shipped server/ classes: each SimNode is a real
// GroupHost (server/raft/runner.ts) with services started through registerServices
// and serviceContext exactly as server/main.ts starts them, on a SimDisk, a seeded
// faulty network (SimNet) and per-node virtual time. Crash drops a node's objects
// and restarts it from what its disk recovers. The Raft safety checker watches
// every Ready (RaftObserver), every durable record and every message on the wire.

import { assert } from '../../core/assert.js';
import { readContextNonceBytes } from '../../core/constants.js';
import { type GroupId, groupId, type NodeId, nodeId } from '../../core/ids.js';
import { Xoshiro128 } from '../../core/prng.js';
import type { Raft } from '../../core/raft/raft.js';
import { type Entry, type HardState, type Message, MessageType, type Ready, Role } from '../../core/raft/types.js';
import { DsyncError, ErrorCode } from '../../protocol/errors.js';
import { Opcode, opcodeName } from '../../protocol/frame.js';
import { schema } from '../../protocol/index.js';
import { ConsoleRegistry } from '../../server/node/console.js';
import { Logger } from '../../server/node/log.js';
import { NodeMetrics } from '../../server/node/metrics.js';
import { fromWire } from '../../server/raft/codec.js';
import { Group0StateMachine } from '../../server/raft/group0.js';
import { GroupHost, type GroupRunner, type RaftObserver } from '../../server/raft/runner.js';
import { type ClientLink, type PeerMessageHandler, registerServices, type RequestHandler, type Service, serviceContext, type ServiceMember, type ServiceNode }
  from '../../server/services/service.js';
import { entryKey, RaftSafetyChecker } from '../checker/raft-invariants.js';
import { type DiskObserver, type DiskVariant, SimDisk } from './sim-disk.js';
import { NodeTime, SimWorld } from './world.js';

/** Group 0, as server/main.ts names it (metaGroup). */
export const group0Id: GroupId = groupId(0);

export interface NetworkOptions {
  delayMsMin: number;
  delayMsMax: number;
  /** Probability that a batch is held back up to longDelayMsMax more (reordering). */
  longDelayProb: number;
  longDelayMsMax: number;
  dropProb: number;
  dupProb: number;
}

export interface SimClusterOptions {
  readonly seed: number;
  readonly nodeCount: number;
  readonly network: NetworkOptions;
  readonly fsyncMsMax: number;
  readonly diskVariant: DiskVariant;
  /** Each node's clock runs at 1 ± up to this (timers and nowMs alike). */
  readonly clockSkew: number;
  /** GroupHostEnv.snapshotEntriesThreshold: compact after this many applied entries (undefined: the node's default). */
  readonly snapshotEntries: number | undefined;
  /** GroupHostEnv.snapshotChunkBytes: snapshots above this travel in chunks (small here so the simulator's snapshots do). */
  readonly snapshotChunkBytes?: number;
  /** Check at send time that every AppResp/VoteResp is backed by the sender's durable disk. */
  readonly checkAckDurability: boolean;
  /** The services one node runs, fresh for each incarnation (server/main.ts services()). */
  readonly services: (node: SimNode) => Service[];
  /**
   * Check the Raft invariants of every group a node hosts, not only group 0's (the
   * multi-group simulation): one checker per group, committed entries durable on a
   * majority of the disks that ever held the group. Off by default (CPU).
   */
  readonly checkAllGroups?: boolean;
}

export interface SimStats {
  batchesSent: number;
  batchesDelivered: number;
  batchesDropped: number;
  batchesDuplicated: number;
  crashes: number;
  restarts: number;
  tornWrites: number;
  snapshotsInstalled: number;
  /** Snapshots that reached a disk (compactions and installed ones). */
  snapshotsSaved: number;
  pauses: number;
  /** Snapshot messages reassembled from chunks and stepped (GroupHost.snapshotTransfers.received, every incarnation). */
  snapshotsReassembled: number;
  /**
   * Most Readys one group runner had in flight at once (GroupRunner.pipeline.maxSeen, every
   * incarnation): above 1 shows the pipelined runner really overlapped writes in this run.
   */
  readysInFlightMax: number;
}

const silentOut = (): void => {};

/** The deepest pipeline any group of `host` reached (see GroupRunner.pipeline). */
function readysInFlightMax(host: GroupHost): number {
  let max = 0;
  for (const g of host.groups.values()) max = Math.max(max, g.pipeline.maxSeen);
  return max;
}

// ---------------------------------------------------------------- network

class SimNet {
  /** blocked[from][to]: batches from -> to are lost. */
  readonly blocked: boolean[][];

  constructor(
    private readonly cluster: SimCluster,
    readonly opts: NetworkOptions,
    count: number,
  ) {
    this.blocked = Array.from({ length: count }, () => new Array<boolean>(count).fill(false));
  }

  /** A Push frame from -> to: a Raft batch (opcode Raft), or a service's peer message. */
  send(from: SimNode, to: NodeId, batch: Uint8Array, opcode: number = Opcode.Raft): void {
    const c = this.cluster;
    const target = c.byId(to);
    c.stats.batchesSent++;
    if (opcode === Opcode.Raft) c.world.guard(() => c.onWire(from, batch));
    const prng = c.prng;
    if (this.blocked[from.idx]![target.idx] || prng.next() < this.opts.dropProb) {
      c.stats.batchesDropped++;
      return;
    }
    const copies = prng.next() < this.opts.dupProb ? 2 : 1;
    if (copies === 2) c.stats.batchesDuplicated++;
    for (let k = 0; k < copies; k++) {
      let delayMs = prng.int(this.opts.delayMsMin, this.opts.delayMsMax);
      if (this.opts.longDelayProb > 0 && prng.next() < this.opts.longDelayProb) delayMs += prng.int(0, this.opts.longDelayMsMax);
      const bytes = batch.slice();
      c.world.at(delayMs, () => this.deliver(from, target, bytes, opcode));
    }
  }

  private deliver(from: SimNode, to: SimNode, bytes: Uint8Array, opcode: number): void {
    const time = to.time;
    if (this.blocked[from.idx]![to.idx] || time === null || to.host === null) {
      this.cluster.stats.batchesDropped++;
      return;
    }
    const host = to.host;
    // A paused receiver takes it when it resumes (a kernel buffer holds it meanwhile).
    time.gated(() => {
      this.cluster.stats.batchesDelivered++;
      if (opcode === Opcode.Raft) host.receive(from.id, bytes);
      else to.receivePeer(from.id, opcode, bytes);
    })();
  }
}

// ---------------------------------------------------------------- one node

/** A node's client connection end: requests in, replies and pushes out, closed on crash. */
export interface SimLinkEnd extends ClientLink {
  /** The server side of the link (this node incarnation) is gone. */
  serverGone(): void;
}

export class SimNode implements ServiceNode {
  incarnation = 0;
  pausedUntilMs = 0;
  host: GroupHost | null = null;
  time: NodeTime | null = null;
  services: Service[] = [];
  readonly disk: SimDisk;
  readonly log = new Logger('sim', 'error', silentOut);
  consoleCommands = new ConsoleRegistry();
  /** Fresh per incarnation, as a restarted process's would be (services register collectors). */
  metrics = new NodeMetrics('sim');
  private handlers = new Map<number, RequestHandler>();
  private peerHandlers = new Map<number, PeerMessageHandler>();
  private links = new Set<SimLinkEnd>();
  /** Per group: the last term this node was seen in (terms never go back, across restarts too). */
  readonly lastTerms = new Map<GroupId, number>();
  /** Per group: the term whose leader completeness was checked (a leader is checked once its term is durable). */
  readonly leaderCheckedTerms = new Map<GroupId, number>();
  readonly clockRate: number;
  readonly clockOffsetMs: number;

  constructor(
    private readonly cluster: SimCluster,
    readonly idx: number,
    readonly nodeId: NodeId,
  ) {
    const p = cluster.prng;
    this.clockRate = 1 + cluster.opts.clockSkew * (2 * p.next() - 1);
    this.clockOffsetMs = p.int(0, 100_000);
    this.disk = new SimDisk(cluster.world, new Xoshiro128(p.int(0, 0x7fffffff)), { fsyncMsMax: cluster.opts.fsyncMsMax, variant: cluster.opts.diskVariant });
    this.disk.observer = cluster.diskObserver(this);
  }

  get id(): NodeId {
    return this.nodeId;
  }

  get up(): boolean {
    return this.host !== null;
  }

  alive(incarnation: number): boolean {
    return this.host !== null && incarnation === this.incarnation;
  }

  get group0(): GroupRunner {
    assert(this.host !== null, `${this.id} is up`);
    return this.host.group0;
  }

  /** Boots this node from its disk, wired as server/main.ts wires a node. */
  start(): void {
    assert(this.host === null, `${this.id} already runs`);
    const c = this.cluster;
    this.incarnation++;
    this.handlers = new Map();
    this.peerHandlers = new Map();
    this.consoleCommands = new ConsoleRegistry();
    this.metrics = new NodeMetrics(this.id);
    const time = new NodeTime(c.world, this, this.incarnation, this.clockRate, this.clockOffsetMs);
    this.time = time;
    const observer = c.raftObserver(this);
    const host = new GroupHost({
      nodeId: this.nodeId,
      storage: this.disk.open(time),
      recovered: this.disk.recover(),
      dropped: this.disk.droppedGroups(),
      sendToPeer: (peer, batch) => c.net.send(this, peer, batch),
      clock: time,
      scheduler: time,
      log: this.log,
      notLeader: (what, leader) => this.notLeader(what, leader),
      fatal: (message) => c.world.fail(new Error(`${this.id} fatal: ${message}`)),
      seed: c.prng.int(0, 0x7fffffff),
      // Drawn from the seed: distinct per node and per boot, like main.ts's random nonce.
      bootNonce: Uint8Array.from({ length: readContextNonceBytes }, () => c.prng.int(0, 255)),
      observe: observer,
      ...(c.opts.snapshotEntries === undefined ? {} : { snapshotEntriesThreshold: c.opts.snapshotEntries }),
      ...(c.opts.snapshotChunkBytes === undefined ? {} : { snapshotChunkBytes: c.opts.snapshotChunkBytes }),
    });
    this.host = host;
    const list = c.opts.services(this);
    this.services = list;
    const sm = new Group0StateMachine();
    registerServices(list, sm);
    host.ensure(group0Id, sm, { voters: c.nodes.map((n) => n.nodeId), learners: [] });
    for (const service of list) {
      service.start(serviceContext(service, { node: this, groups: host, clock: time, scheduler: time, log: this.log }));
    }
  }

  /** Power loss: the process and its timers are gone, unsynced writes partly lost, client links reset. */
  crash(): void {
    if (this.host === null) return;
    this.cluster.stats.snapshotsReassembled += this.host.snapshotTransfers.received;
    this.cluster.stats.readysInFlightMax = Math.max(this.cluster.stats.readysInFlightMax, readysInFlightMax(this.host));
    this.host = null;
    this.time = null;
    this.services = [];
    this.disk.crash();
    for (const link of this.links) link.serverGone();
    this.links.clear();
  }

  // ---- ServiceNode (as DsyncNode behaves) ----

  notLeader(what: string, leader: NodeId | ''): DsyncError {
    if (leader === '') return new DsyncError(ErrorCode.UNAVAILABLE, `no leader is known right now for ${what}; retry shortly`);
    return new DsyncError(ErrorCode.NOT_LEADER, `${this.nodeId} is not the leader for ${what}; the leader is ${leader}`,
      { leaderId: leader, leaderAddress: this.addressOf(leader) });
  }

  addressOf(id: NodeId | ''): string {
    return id === '' ? '' : `sim://${id}`;
  }

  /** As DsyncNode: DsyncErrors pass; anything else is a programmer error, which fails the run here. */
  asDsyncError(err: unknown): DsyncError {
    if (err instanceof DsyncError) return err;
    this.cluster.world.fail(err);
    return new DsyncError(ErrorCode.INTERNAL, `internal error: ${err instanceof Error ? err.message : String(err)}`);
  }

  handle(opcode: number, handler: RequestHandler): void {
    if (this.handlers.has(opcode)) throw new Error(`handler for ${opcodeName(opcode)} registered twice`);
    this.handlers.set(opcode, handler);
  }

  /** A client request frame arriving on `link` (DsyncNode.dispatch). Runs in this node's (pausable) time. */
  dispatch(link: SimLinkEnd, opcode: number, requestId: number, payload: Uint8Array): void {
    const time = this.time;
    if (time === null) return;
    this.links.add(link);
    time.gated(() => {
      if (link.closed) return;
      const handler = this.handlers.get(opcode);
      if (handler === undefined) {
        link.replyError(requestId, opcode, new DsyncError(ErrorCode.UNKNOWN_OPCODE, `this node has no handler for ${opcodeName(opcode)}`));
        return;
      }
      try {
        handler({ conn: link, requestId, opcode }, payload);
      } catch (err) {
        if (err instanceof DsyncError) link.replyError(requestId, opcode, err);
        else throw err;
      }
    })();
  }

  sendPeer(to: NodeId, opcode: number, payload: Uint8Array): boolean {
    if (this.host === null) return false;
    this.cluster.net.send(this, to, payload, opcode);
    return true;
  }

  handlePeerPush(opcode: number, handler: PeerMessageHandler): void {
    if (this.peerHandlers.has(opcode)) throw new Error(`peer push handler for ${opcodeName(opcode)} registered twice`);
    this.peerHandlers.set(opcode, handler);
  }

  /** Every simulated node is a voter; reachable unless the network blocks the link (as a peer link would be down). */
  members(): readonly ServiceMember[] {
    return this.cluster.nodes.map((n) => ({ id: n.nodeId, voter: true, connected: n === this || (n.up && !this.cluster.net.blocked[this.idx]![n.idx]) }));
  }

  /** A service's peer message arriving (DsyncNode.dispatch of a peer Push); malformed ones fail the run. */
  receivePeer(from: NodeId, opcode: number, payload: Uint8Array): void {
    const handler = this.peerHandlers.get(opcode);
    if (handler === undefined) return; // the service is not running on this incarnation yet
    const malformed = handler(from, payload);
    if (malformed !== null) this.cluster.world.fail(new Error(`${this.id}: malformed peer message from ${from}: ${malformed.message}`));
  }

  forgetLink(link: SimLinkEnd): void {
    this.links.delete(link);
  }
}

// ---------------------------------------------------------------- the cluster

export class SimCluster {
  readonly world = new SimWorld();
  readonly prng: Xoshiro128;
  /** Group 0's checker. */
  readonly checker = new RaftSafetyChecker();
  /** The other groups' checkers (opts.checkAllGroups). */
  readonly groupCheckers = new Map<GroupId, RaftSafetyChecker>();
  readonly nodes: SimNode[] = [];
  readonly net: SimNet;
  readonly stats: SimStats = {
    batchesSent: 0, batchesDelivered: 0, batchesDropped: 0, batchesDuplicated: 0, crashes: 0, restarts: 0, tornWrites: 0,
    snapshotsInstalled: 0, snapshotsSaved: 0, pauses: 0, snapshotsReassembled: 0, readysInFlightMax: 0,
  };
  readonly trace: string[] = [];
  traceEnabled = false;
  /** Extra checks layered on top (the lock simulation's), told about every Ready of group 0. */
  readonly readyHooks: ((node: SimNode, raft: Raft, rd: Ready) => void)[] = [];
  private readonly nodesById = new Map<string, SimNode>();

  constructor(readonly opts: SimClusterOptions) {
    assert(opts.nodeCount >= 1 && opts.nodeCount <= 9, 'node count');
    this.prng = new Xoshiro128(opts.seed);
    for (let i = 0; i < opts.nodeCount; i++) {
      const node = new SimNode(this, i, nodeId(`n${i + 1}`));
      this.nodes.push(node);
      this.nodesById.set(node.id, node);
    }
    this.net = new SimNet(this, { ...opts.network }, opts.nodeCount);
    for (const node of this.nodes) node.start();
  }

  get nowMs(): number {
    return this.world.nowMs;
  }

  /** The counters, with the disks' snapshot count brought up to date. */
  statsNow(): SimStats {
    this.stats.snapshotsSaved = this.nodes.reduce((a, n) => a + n.disk.stats.snapshotsSaved, 0);
    const live = this.nodes.reduce((a, n) => a + (n.host?.snapshotTransfers.received ?? 0), 0);
    const inFlight = this.nodes.reduce((a, n) => Math.max(a, n.host === null ? 0 : readysInFlightMax(n.host)), this.stats.readysInFlightMax);
    return { ...this.stats, snapshotsReassembled: this.stats.snapshotsReassembled + live, readysInFlightMax: inFlight };
  }

  node(idx: number): SimNode {
    const n = this.nodes[idx];
    assert(n !== undefined, `no node ${idx}`);
    return n;
  }

  byId(id: string): SimNode {
    const n = this.nodesById.get(id);
    assert(n !== undefined, `no node ${id}`);
    return n;
  }

  note(line: string): void {
    if (this.traceEnabled) this.trace.push(`${String(Math.round(this.world.nowMs)).padStart(7)}ms ${line}`);
  }

  // ---- faults ----

  crash(idx: number): void {
    const node = this.node(idx);
    if (!node.up) return;
    this.stats.crashes++;
    const tornBefore = node.disk.stats.tornWrites;
    node.crash();
    this.stats.tornWrites += node.disk.stats.tornWrites - tornBefore;
    this.note(`crash ${node.id}${node.disk.stats.tornWrites > tornBefore ? ' (unsynced writes lost or torn)' : ''}`);
    this.checkCommittedDurable();
  }

  restart(idx: number): void {
    const node = this.node(idx);
    if (node.up) return;
    this.stats.restarts++;
    const hs = node.disk.group(group0Id)?.hardState;
    this.note(`restart ${node.id} (term ${hs?.term ?? 0}, vote '${hs?.vote ?? ''}', last ${node.disk.lastIndex(group0Id)})`);
    node.leaderCheckedTerms.clear();
    for (const group of node.lastTerms.keys()) node.lastTerms.set(group, node.disk.group(group)?.hardState?.term ?? 0);
    node.start();
  }

  /** The node freezes for `ms` (GC pause, stopped VM): timers, messages and disk answers wait. */
  pause(idx: number, ms: number): void {
    const node = this.node(idx);
    this.stats.pauses++;
    this.note(`pause ${node.id} ${ms}ms`);
    node.pausedUntilMs = Math.max(node.pausedUntilMs, this.world.nowMs + ms);
  }

  isolate(idx: number): void {
    this.note(`isolate ${this.node(idx).id}`);
    for (let j = 0; j < this.nodes.length; j++) {
      if (j === idx) continue;
      this.net.blocked[idx]![j] = true;
      this.net.blocked[j]![idx] = true;
    }
  }

  /** Nodes in different groups cannot talk; nodes not listed are isolated. */
  partition(groups: readonly (readonly number[])[]): void {
    this.note(`partition ${groups.map((g) => g.map((i) => this.node(i).id).join(',')).join(' | ')}`);
    const groupOf = new Array<number>(this.nodes.length).fill(-1);
    groups.forEach((g, gi) => g.forEach((i) => (groupOf[i] = gi)));
    for (let a = 0; a < this.nodes.length; a++) {
      for (let b = 0; b < this.nodes.length; b++) {
        const ga = groupOf[a]!;
        this.net.blocked[a]![b] = a !== b && (ga === -1 || ga !== groupOf[b]);
      }
    }
  }

  blockOneWay(from: number, to: number): void {
    this.note(`block ${this.node(from).id} -> ${this.node(to).id}`);
    this.net.blocked[from]![to] = true;
  }

  heal(): void {
    this.note('heal network');
    for (const row of this.net.blocked) row.fill(false);
  }

  /** Ends every fault: network whole and lossless, no pauses, every node up. */
  healAll(): void {
    this.note('--- heal: liveness phase ---');
    this.heal();
    Object.assign(this.net.opts, { dropProb: 0, dupProb: 0, longDelayProb: 0 });
    for (const node of this.nodes) node.pausedUntilMs = 0;
    for (let i = 0; i < this.nodes.length; i++) this.restart(i);
  }

  // ---- views ----

  /** The up replica leading group 0 with the highest term, if any. */
  leader(): SimNode | null {
    let best: SimNode | null = null;
    let bestTerm = -1;
    for (const node of this.nodes) {
      if (!node.up) continue;
      const st = node.group0.raft.status();
      if (st.role === Role.Leader && st.term > bestTerm) {
        best = node;
        bestTerm = st.term;
      }
    }
    return best;
  }

  /** A leader every up replica follows in the same term. */
  stableLeader(): SimNode | null {
    const leader = this.leader();
    if (leader === null) return null;
    const term = leader.group0.raft.status().term;
    for (const node of this.nodes) {
      if (!node.up) continue;
      const st = node.group0.raft.status();
      if (st.leader !== leader.id || st.term !== term) return null;
    }
    return leader;
  }

  // ---- checks ----

  /** What the checker learns from each Ready of a node: commits, leadership, term order, leader completeness. */
  raftObserver(node: SimNode): RaftObserver {
    return {
      afterAdvance: (group: GroupId, raft: Raft, rd: Ready): void => {
        this.world.guard(() => {
          // Counted in every group, checked or not (a queue partition's install is one too).
          if (rd.snapshot !== null) {
            this.stats.snapshotsInstalled++;
            this.note(`${node.id} installed snapshot ${rd.snapshot.meta.index} of group ${group}`);
          }
          const checker = this.checkerFor(group);
          if (checker === null) return;
          const st = raft.status();
          const lastTerm = node.lastTerms.get(group) ?? 0;
          if (st.term < lastTerm) checker.fail('term-monotonic', `${node.id} went from term ${lastTerm} to ${st.term} in group ${group}`);
          node.lastTerms.set(group, st.term);
          for (const e of rd.committedEntries) checker.onCommitted(node.id, e, st.term);
          if (rd.softState !== null && this.traceEnabled) this.note(`${node.id} role ${st.role} term ${st.term} leader '${st.leader}'`);
          if (st.role === Role.Leader) {
            checker.onLeader(node.id, st.term);
            const disk = node.disk.group(group);
            if (node.leaderCheckedTerms.get(group) !== st.term && disk?.hardState?.term === st.term) {
              node.leaderCheckedTerms.set(group, st.term);
              const snapIndex = disk.snapshot?.meta.index ?? 0;
              const head = disk.entries[0]?.index ?? snapIndex + 1;
              checker.checkLeaderCompleteness(node.id, st.term, snapIndex, node.disk.lastIndex(group), (i) => disk.entries[i - head]);
            }
          }
          if (group === group0Id) for (const hook of this.readyHooks) hook(node, raft, rd);
        });
      },
    };
  }

  /** The checker's view of what reaches each disk. */
  diskObserver(node: SimNode): DiskObserver {
    return {
      onDurableEntry: (group, entry: Entry, prevTerm, nodeTerm, overwritten) => {
        const checker = this.checkerFor(group);
        if (checker === null) return;
        if (entry.term < prevTerm) checker.fail('log-terms-monotonic', `${node.id} entry ${entry.index} term ${entry.term} after term ${prevTerm} in group ${group}`);
        checker.onPersistedEntry(node.id, entry, prevTerm, nodeTerm, overwritten);
      },
      onDurableHardState: (group, hs: HardState, before, lastIndex) => {
        const checker = this.checkerFor(group);
        if (checker === null) return;
        if (before !== null) {
          if (hs.term < before.term) checker.fail('hardstate', `${node.id} persisted term ${hs.term} after ${before.term} in group ${group}`);
          if (hs.term === before.term && before.vote !== '' && hs.vote !== before.vote) {
            checker.fail('vote-safety', `${node.id} persisted vote ${hs.vote || "''"} after ${before.vote} in term ${hs.term} in group ${group}`);
          }
        }
        if (hs.commit > lastIndex) checker.fail('ready-contract', `${node.id} persisted commit ${hs.commit} beyond its durable log end ${lastIndex} in group ${group}`);
      },
    };
  }

  /** Every batch on the wire: granted votes (vote safety) and acks backed by the sender's durable disk. */
  onWire(from: SimNode, batch: Uint8Array): void {
    const decoded = schema.RaftBatch.decode(batch);
    for (const w of decoded.messages) {
      const { group, message } = fromWire(w);
      const checker = this.checkerFor(group);
      if (checker === null) continue;
      this.checkMessage(checker, group, from, message);
    }
  }

  /** The checker of `group`'s invariants, or null when this cluster does not check that group. */
  checkerFor(group: GroupId): RaftSafetyChecker | null {
    if (group === group0Id) return this.checker;
    if (this.opts.checkAllGroups !== true) return null;
    let c = this.groupCheckers.get(group);
    if (c === undefined) {
      c = new RaftSafetyChecker();
      this.groupCheckers.set(group, c);
    }
    return c;
  }

  private checkMessage(checker: RaftSafetyChecker, group: GroupId, from: SimNode, m: Message): void {
    if (m.type === MessageType.VoteResp && !m.reject) checker.onVoteGranted(m.from, m.term, m.to);
    if (!this.opts.checkAckDurability) return;
    if (m.type === MessageType.AppResp && !m.reject && m.index > from.disk.lastIndex(group)) {
      checker.fail('ack-durability', `${from.id} acked index ${m.index} to ${m.to} with only ${from.disk.lastIndex(group)} durable in group ${group}`);
    }
    if (m.type === MessageType.VoteResp && !m.reject) {
      const hs = from.disk.group(group)?.hardState ?? { term: 0, vote: '' };
      if (hs.term < m.term || (hs.term === m.term && hs.vote !== m.to)) {
        checker.fail('ack-durability', `${from.id} granted its term-${m.term} vote to ${m.to} with term ${hs.term} vote '${hs.vote}' durable in group ${group}`);
      }
    }
  }

  /** Every committed entry is on a majority of disks (in the log or under a snapshot), in every checked group. */
  checkCommittedDurable(): void {
    this.checkGroupCommittedDurable(group0Id, this.checker, this.nodes.length);
    for (const [group, checker] of this.groupCheckers) {
      // Static replica sets: the disks that ever held the group are its replicas.
      const replicas = this.nodes.filter((n) => n.disk.group(group) !== undefined).length;
      this.checkGroupCommittedDurable(group, checker, replicas);
    }
  }

  private checkGroupCommittedDurable(group: GroupId, checker: RaftSafetyChecker, replicas: number): void {
    const quorum = Math.floor(replicas / 2) + 1;
    for (const [index, key] of checker.committedKeys()) {
      let copies = 0;
      for (const node of this.nodes) {
        const g = node.disk.group(group);
        if (g === undefined) continue;
        const snapIndex = g.snapshot?.meta.index ?? 0;
        if (index <= snapIndex) {
          copies++;
          continue;
        }
        const head = g.entries[0]?.index ?? snapIndex + 1;
        const e = g.entries[index - head];
        if (e !== undefined && entryKey(e) === key) copies++;
      }
      if (copies < quorum) {
        checker.fail('committed-never-lost', `committed "${key}" at ${index} of group ${group} is durable on only ${copies} of ${replicas} disks`);
      }
    }
  }
}

// ---------------------------------------------------------------- client links

/** What a simulated client hears on its link. */
export interface LinkListener {
  onReply(requestId: number, opcode: number, payload: Uint8Array): void;
  onError(requestId: number, opcode: number, err: DsyncError): void;
  onPush(opcode: number, requestId: number, payload: Uint8Array): void;
  /** The connection broke (the node crashed); requests on it get no answer. */
  onClosed(): void;
}

/**
 * A client connection to one node: frames take a seeded delay each way, in order
 * of sending per direction is not promised (a reset link drops what is in flight).
 */
export class SimLink implements SimLinkEnd {
  closed = false;
  private readonly closeFns = new Set<() => void>();

  constructor(
    private readonly cluster: SimCluster,
    readonly node: SimNode,
    private readonly listener: LinkListener,
    private readonly delayMsMax: number,
  ) {}

  private later(fn: () => void): void {
    this.cluster.world.at(this.cluster.prng.int(0, this.delayMsMax), () => {
      if (!this.closed) fn();
    });
  }

  /** Client side: send a request frame. */
  request(opcode: number, requestId: number, payload: Uint8Array): void {
    if (this.closed) return;
    this.later(() => this.node.dispatch(this, opcode, requestId, payload));
  }

  /** Client side: hang up (the server sees the connection close). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.node.forgetLink(this);
    const fns = [...this.closeFns];
    this.closeFns.clear();
    const time = this.node.time;
    if (time !== null) time.defer(() => fns.forEach((fn) => fn()));
  }

  // ---- server side (ClientLink) ----

  reply(requestId: number, opcode: number, payload: Uint8Array): void {
    const copy = payload.slice();
    this.later(() => this.listener.onReply(requestId, opcode, copy));
  }

  replyError(requestId: number, opcode: number, err: DsyncError): void {
    this.later(() => this.listener.onError(requestId, opcode, err));
  }

  push(opcode: number, requestId: number, payload: Uint8Array): void {
    const copy = payload.slice();
    this.later(() => this.listener.onPush(opcode, requestId, copy));
  }

  onClose(fn: () => void): () => void {
    this.closeFns.add(fn);
    return () => this.closeFns.delete(fn);
  }

  serverGone(): void {
    if (this.closed) return;
    this.closed = true;
    this.closeFns.clear();
    this.cluster.world.at(this.cluster.prng.int(0, this.delayMsMax), () => this.listener.onClosed());
  }
}
