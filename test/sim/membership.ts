// Membership changes under faults: a seeded run that grows a 3-voter cluster
// with learners (fresh joins, catch-up possibly by snapshot), promotes them,
// removes voters (sometimes the leader) and re-adds removed nodes while clients
// propose and the swarm's faults happen; MembershipChecker watches every step.
//
// Checked on top of the simulator's Raft invariants:
// - config-step: consecutive committed configurations differ by at most one voter;
// - conf-consistency: every replica's configuration in force equals the one the
//   committed log defines at its applied index (once past its own join entry);
// - self-voter: a leader is a voter of its own configuration;
// - no-learner-campaign: only voters of their own configuration send (pre)votes;
// - vote-quorum: a new leader holds granted votes (seen on the wire) from a
//   majority of its configuration's voters - learners' votes never count;
// - commit-quorum: whenever a leader's commit index moves, the new committed
//   entry is on the durable disks of a majority of its voters (learner acks
//   never count);
// - removed-leader: once a node's removal is applied on a majority of the new
//   configuration, it never leads a later term (unless added back);
// - committed-never-lost in the configuration (cluster.durableVoters);
// - liveness after heal: a stable leader among the members, every client
//   proposal applied, every member on the same applied index and log.

import { assert } from '../../core/assert.js';
import type { NodeId } from '../../core/ids.js';
import { Xoshiro128 } from '../../core/prng.js';
import { applyConfChange, decodeConfChange } from '../../core/raft/confchange.js';
import { majority } from '../../core/raft/quorum.js';
import { ConfChangeType, EntryType, MessageType, Role } from '../../core/raft/types.js';
import type { ConfChange, ConfState, Message, ProposeOutcome, RaftNode, Ready } from '../../core/raft/types.js';
import { entryKey } from '../checker/raft-invariants.js';
import { Cluster } from './cluster.js';
import { failureOf, seedOutcome } from './common.js';
import type { SeedOutcome } from './common.js';
import type { ClusterObserver, ClusterOptions, RaftFactory, SimNode } from './cluster.js';
import { healAll, profileFor, startFaults } from './swarm.js';
import type { FaultState } from './swarm.js';

// ---------------------------------------------------------------- checker

interface ChainLink {
  readonly index: number;
  readonly conf: ConfState;
  readonly change: ConfChange | null;
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  const s = new Set(a);
  return b.every((x) => s.has(x));
}

function confString(c: ConfState): string {
  return `voters ${c.voters.join(',') || '-'} learners ${c.learners.join(',') || '-'}`;
}

/** Voters in exactly one of a and b. */
export function voterDiff(a: ConfState, b: ConfState): string[] {
  const inA = new Set(a.voters);
  const inB = new Set(b.voters);
  return [...a.voters.filter((v) => !inB.has(v)), ...b.voters.filter((v) => !inA.has(v))];
}

export class MembershipChecker implements ClusterObserver {
  /** Committed configurations in log order, from the bootstrap one (index 0). */
  readonly chain: ChainLink[];
  /** Where a never-before-joined node was first added (its conf checks start there). */
  readonly joinIndex = new Map<NodeId, number>();
  private readonly lastCommit = new Map<NodeId, number>();
  private readonly leaderSeen = new Set<string>();
  /** term -> candidate -> voters that granted (on the wire). */
  private readonly granted = new Map<number, Map<NodeId, Set<NodeId>>>();
  /** Removal entry index -> nodes of the new configuration that applied it. */
  private readonly removalAppliedBy = new Map<number, Set<NodeId>>();
  /** Removed node -> highest term anyone had when its removal was applied on a majority. */
  private readonly removedSinceTerm = new Map<NodeId, number>();
  readonly counts = {
    confChanges: 0,
    removals: 0,
    leaderElections: 0,
    commitChecks: 0,
    removalsEstablished: 0,
    removedLeaders: 0,
    removedVotesDecided: 0,
  };
  /** First time a removed node led a later term (a strict-mode violation). */
  removedLeaderNote = '';
  /** First time a removed node's vote decided a later election (a strict-mode violation). */
  removedVoteNote = '';

  /**
   * strictRemoved: fail as soon as a removed node leads a term after its removal
   * was applied on a majority. The real Raft does not guarantee this (a removed
   * node that missed the commit of its own removal may still campaign with its
   * old configuration and win the votes of the new one; a voter that missed
   * the commit still counts the removed node's vote). Without it these are
   * counted, and what is checked is what safety needs: a new leader's
   * configuration is the newest committed one or the one before it (so its
   * majority overlaps every majority of the newest), and its votes are a
   * majority of it.
   */
  constructor(
    private readonly cluster: Cluster,
    bootstrap: ConfState,
    private readonly strictRemoved = false,
  ) {
    this.chain = [{ index: 0, conf: bootstrap, change: null }];
    for (const v of [...bootstrap.voters, ...bootstrap.learners]) this.joinIndex.set(v, 0);
  }

  latest(): ChainLink {
    const last = this.chain[this.chain.length - 1];
    assert(last !== undefined, 'chain starts with the bootstrap configuration');
    return last;
  }

  confAt(index: number): ConfState {
    let conf: ConfState | null = null;
    for (const link of this.chain) if (link.index <= index) conf = link.conf;
    assert(conf !== null, 'bootstrap configuration at 0');
    return conf;
  }

  private fail(property: string, detail: string): never {
    return this.cluster.checker.fail(property, detail);
  }

  onSend(msg: Message): void {
    if (msg.type === MessageType.Vote || msg.type === MessageType.PreVote) {
      const sender = this.cluster.nodes.find((n) => n.id === msg.from);
      const raft = sender?.raft ?? null;
      if (raft !== null && !raft.status().conf.voters.includes(msg.from)) {
        this.fail('no-learner-campaign', `${msg.from} sent a ${msg.type === MessageType.Vote ? 'vote' : 'pre-vote'} request in term ${msg.term} while not a voter (${confString(raft.status().conf)})`);
      }
    }
    if (msg.type === MessageType.VoteResp && !msg.reject) {
      let byCandidate = this.granted.get(msg.term);
      if (byCandidate === undefined) this.granted.set(msg.term, (byCandidate = new Map()));
      let voters = byCandidate.get(msg.to);
      if (voters === undefined) byCandidate.set(msg.to, (voters = new Set()));
      voters.add(msg.from);
    }
  }

  afterStep(node: SimNode, raft: RaftNode): void {
    this.observe(node, raft);
  }

  afterAdvance(node: SimNode, raft: RaftNode, rd: Ready): void {
    for (const e of rd.committedEntries) {
      if (e.type !== EntryType.ConfChange) continue;
      const last = this.latest();
      if (e.index <= last.index) continue; // already in the chain (state machine safety covers agreement)
      const change = decodeConfChange(e.data);
      const conf = applyConfChange(last.conf, change);
      const diff = voterDiff(last.conf, conf);
      if (diff.length > 1) {
        this.fail('config-step', `conf change at ${e.index} moves voters ${diff.join(',')} at once: ${confString(last.conf)} -> ${confString(conf)}`);
      }
      this.chain.push({ index: e.index, conf, change });
      this.counts.confChanges++;
      if (!this.joinIndex.has(change.node)) this.joinIndex.set(change.node, e.index);
      if (change.type === ConfChangeType.Remove) {
        this.counts.removals++;
        this.removalAppliedBy.set(e.index, new Set());
      } else {
        this.removedSinceTerm.delete(change.node); // added back
      }
      this.cluster.note(`chain ${e.index}: ${confString(conf)}`);
    }
    const st = raft.status();
    const joinedAt = this.joinIndex.get(node.id);
    if (joinedAt !== undefined && st.applied >= joinedAt) {
      const expected = this.confAt(st.applied);
      if (!sameSet(st.conf.voters, expected.voters) || !sameSet(st.conf.learners, expected.learners)) {
        this.fail('conf-consistency', `${node.id} at applied ${st.applied} has ${confString(st.conf)}; the log says ${confString(expected)}`);
      }
    }
    this.trackRemovals(node, st.applied);
    this.observe(node, raft);
  }

  private trackRemovals(node: SimNode, applied: number): void {
    for (const [index, by] of this.removalAppliedBy) {
      if (applied < index) continue;
      const link = this.chain.find((l) => l.index === index);
      assert(link !== undefined && link.change !== null, 'removal in the chain');
      if (!link.conf.voters.includes(node.id)) continue;
      by.add(node.id);
      if (by.size < majority(link.conf.voters.length)) continue;
      this.removalAppliedBy.delete(index);
      const removed = link.change.node;
      if (!this.latest().conf.voters.includes(removed) && !this.latest().conf.learners.includes(removed)) {
        let termMax = 0;
        for (let i = 0; i < this.cluster.nodes.length; i++) termMax = Math.max(termMax, this.cluster.term(i));
        this.removedSinceTerm.set(removed, termMax);
        this.counts.removalsEstablished++;
        this.cluster.note(`removal of ${removed} (index ${index}) applied on a majority; term ${termMax}`);
      }
    }
  }

  private observe(node: SimNode, raft: RaftNode): void {
    const st = raft.status();
    const prevCommit = this.lastCommit.get(node.id) ?? 0;
    this.lastCommit.set(node.id, st.commit);
    if (st.role !== Role.Leader) return;
    const voters = st.conf.voters;
    if (!voters.includes(node.id)) this.fail('self-voter', `${node.id} leads term ${st.term} but is not a voter (${confString(st.conf)})`);
    const key = `${node.id}@${st.term}`;
    if (!this.leaderSeen.has(key)) {
      this.leaderSeen.add(key);
      this.counts.leaderElections++;
      const votes = this.granted.get(st.term)?.get(node.id) ?? new Set<NodeId>();
      const counted = voters.filter((v) => v === node.id || votes.has(v));
      if (counted.length < majority(voters.length)) {
        this.fail('vote-quorum', `${node.id} leads term ${st.term} with votes from ${counted.join(',')} only (voters ${voters.join(',')}; all grants ${[...votes].join(',')})`);
      }
      this.checkRemovedVotes(node.id, st.term, votes);
      this.checkLeaderConf(node.id, st.term, st.conf);
    }
    if (st.commit > prevCommit && st.commit > 0) this.checkCommitQuorum(node, st.commit, voters);
  }

  /** A new leader's configuration is the newest committed one or its predecessor. */
  private checkLeaderConf(leader: NodeId, term: number, conf: ConfState): void {
    const links = this.chain.slice(-2);
    const known = links.some((l) => sameSet(l.conf.voters, conf.voters));
    if (!known) {
      this.fail('leader-conf-stale', `${leader} leads term ${term} with ${confString(conf)}; newest committed: ${links.map((l) => `${l.index}: ${confString(l.conf)}`).join(' / ')}`);
    }
  }

  /**
   * After a removal is applied on a majority, an election in a later term must
   * be won by a majority of the newest configuration (or the one before it)
   * without counting any removed node's vote; a removed node leading at all is
   * recorded, and fails only in strict mode.
   */
  private checkRemovedVotes(leader: NodeId, term: number, granted: ReadonlySet<NodeId>): void {
    const removed = new Set<NodeId>();
    for (const [x, sinceTerm] of this.removedSinceTerm) if (term > sinceTerm) removed.add(x);
    if (removed.size === 0) return;
    const votes = new Set<NodeId>([...granted, leader]);
    for (const x of removed) votes.delete(x);
    const links = this.chain.slice(-2);
    const backed = links.some((l) => l.conf.voters.filter((v) => votes.has(v)).length >= majority(l.conf.voters.length));
    if (!backed) {
      this.counts.removedVotesDecided++;
      const detail = `${leader} leads term ${term} only thanks to removed ${[...removed].join(',')} (votes ${[...votes].join(',')}; ${links.map((l) => confString(l.conf)).join(' / ')})`;
      if (this.removedVoteNote === '') this.removedVoteNote = detail;
      if (this.strictRemoved) this.fail('removed-vote', detail);
    }
    if (removed.has(leader)) {
      this.counts.removedLeaders++;
      const detail = `${leader} leads term ${term} after its removal was applied on a majority (term then ${this.removedSinceTerm.get(leader)}), elected by ${[...votes].join(',')}`;
      if (this.removedLeaderNote === '') this.removedLeaderNote = detail;
      if (this.strictRemoved) this.fail('removed-leader', detail);
    }
  }

  /** The entry at `index` a leader just committed is durable on a majority of its voters. */
  private checkCommitQuorum(leader: SimNode, index: number, voters: readonly NodeId[]): void {
    this.counts.commitChecks++;
    const leaderDisk = leader.disk;
    const leaderSnap = leaderDisk.snapshot?.meta.index ?? 0;
    if (index <= leaderSnap) return;
    const entry = leaderDisk.entries[index - leaderSnap - 1];
    if (entry === undefined) this.fail('commit-quorum', `${leader.id} committed ${index} beyond its durable log`);
    const key = entryKey(entry);
    const holders: NodeId[] = [];
    for (const v of voters) {
      const n = this.cluster.nodes.find((x) => x.id === v);
      assert(n !== undefined, `voter ${v} unknown to the simulator`);
      const snap = n.disk.snapshot?.meta.index ?? 0;
      const e = n.disk.entries[index - snap - 1];
      if (index <= snap || (e !== undefined && entryKey(e) === key)) holders.push(v);
    }
    if (holders.length < majority(voters.length)) {
      this.fail('commit-quorum', `${leader.id} committed "${key}" at ${index} durable only on voters ${holders.join(',') || '-'} of ${voters.join(',')}`);
    }
  }
}

// ---------------------------------------------------------------- faults and clients

function pick<T>(prng: Xoshiro128, items: readonly T[]): T {
  const item = items[prng.int(0, items.length - 1)];
  assert(item !== undefined, 'pick from an empty list');
  return item;
}

/** The up leader with the highest term, as an index (-1 when none). */
export function leaderIdx(c: Cluster): number {
  const l = c.leader();
  return l === null ? -1 : l.idx;
}

/** A client proposing unique payloads to whoever it believes leads, until the server it asked applied each one. */
export class RetryingClient {
  readonly issued: string[] = [];
  private seq = 0;
  private hint: number;
  private current: { payload: string; target: number; sentAtMs: number; attempt: number } | null = null;

  constructor(
    private readonly c: Cluster,
    private readonly name: string,
    private readonly prng: Xoshiro128,
    public budget: number,
    private readonly timeoutMs: number,
    private readonly payloadOf: (seq: number) => string = (seq) => `${name}-${seq}`,
  ) {
    this.hint = prng.int(0, c.nodes.length - 1);
  }

  get done(): boolean {
    return this.current === null && this.budget <= 0;
  }

  describe(): string {
    const cur = this.current;
    return cur === null ? `${this.name}: idle` : `${this.name}: ${cur.payload} -> n${cur.target + 1} attempt ${cur.attempt}`;
  }

  /** Called with each proposal the moment a server accepted it (index in its log). */
  onAccepted: (payload: string, index: number) => void = () => {};
  /** Called when the server it asked applied the payload (the client's acknowledgement). */
  onAcked: (payload: string) => void = () => {};

  step(): void {
    const c = this.c;
    if (this.current === null) {
      if (this.budget <= 0) return;
      this.budget--;
      const payload = this.payloadOf(this.seq++);
      this.issued.push(payload);
      this.current = { payload, target: this.hint, sentAtMs: -Infinity, attempt: 0 };
    }
    const cur = this.current;
    const server = c.node(cur.target);
    if (cur.attempt > 0 && server.raft !== null && server.sm.seen.has(cur.payload)) {
      this.current = null;
      this.onAcked(cur.payload);
      return;
    }
    if (c.nowMs - cur.sentAtMs < this.timeoutMs) return;
    if (cur.attempt > 0) this.hint = this.prng.int(0, c.nodes.length - 1);
    cur.target = this.hint;
    cur.sentAtMs = c.nowMs;
    const attempt = ++cur.attempt;
    c.propose(cur.target, cur.payload, (out: ProposeOutcome) => {
      if (this.current !== cur || cur.attempt !== attempt) return;
      if (out.ok) {
        this.onAccepted(cur.payload, out.index);
        return;
      }
      const idx = out.leader === '' ? -1 : c.nodes.findIndex((x) => x.id === out.leader);
      this.hint = idx >= 0 ? idx : this.prng.int(0, c.nodes.length - 1);
      cur.sentAtMs = -Infinity;
    });
  }
}

export function startClient(c: Cluster, prng: Xoshiro128, client: { step(): void }): void {
  const intervalMs = prng.int(5, 40);
  const loop = (): void => {
    client.step();
    c.schedule(intervalMs, loop);
  };
  c.schedule(prng.int(0, intervalMs), loop);
}

// ---------------------------------------------------------------- the operator

interface Op {
  readonly change: ConfChange;
  readonly index: number;
  readonly sinceMs: number;
}

/**
 * Plays the cluster operator: one membership change at a time, always proposed
 * to the current leader and planned from the committed configuration. Starts a
 * node once its AddLearner committed, decommissions removed nodes (sometimes
 * after they kept running for a while), restarts re-added decommissioned ones.
 */
export class Operator {
  active = true;
  private op: Op | null = null;
  private readonly downAtMs = new Map<number, number>();
  readonly counts = { proposed: 0, addLearner: 0, promote: 0, remove: 0, removeLeader: 0, readd: 0, joins: 0, decommissions: 0 };

  constructor(
    private readonly c: Cluster,
    private readonly checker: MembershipChecker,
    private readonly prng: Xoshiro128,
    private readonly faults: FaultState,
    private readonly electionMs: number,
  ) {}

  private idxOf(id: NodeId): number {
    const i = this.c.nodes.findIndex((n) => n.id === id);
    assert(i >= 0, `unknown node ${id}`);
    return i;
  }

  /** Starts, restarts and decommissions nodes so the machines match the committed configuration. */
  reconcile(decommissionNow: boolean): void {
    const conf = this.checker.latest().conf;
    const members = new Set<NodeId>([...conf.voters, ...conf.learners]);
    for (const node of this.c.nodes) {
      if (members.has(node.id)) {
        this.downAtMs.delete(node.idx);
        if (!node.joined) {
          const at = this.checker.joinIndex.get(node.id);
          assert(at !== undefined, `${node.id} is a member without a join index`);
          this.c.join(node.idx, this.checker.confAt(at));
          this.counts.joins++;
        } else if (this.faults.keepDown.delete(node.idx)) {
          this.c.restart(node.idx);
        }
        continue;
      }
      if (!node.joined || this.faults.keepDown.has(node.idx)) continue;
      let at = this.downAtMs.get(node.idx);
      if (at === undefined) {
        // A removed node keeps running for a while (or for good, until re-added or healed).
        at = this.prng.next() < 0.5 ? this.c.nowMs + this.prng.int(0, 10 * this.electionMs) : Infinity;
        this.downAtMs.set(node.idx, at);
      }
      if (decommissionNow || this.c.nowMs >= at) {
        this.c.crash(node.idx);
        this.faults.keepDown.add(node.idx);
        this.counts.decommissions++;
        this.c.note(`decommission ${node.id}`);
      }
    }
  }

  step(): void {
    this.reconcile(false);
    if (!this.active) return;
    const c = this.c;
    const op = this.op;
    if (op !== null) {
      // Done once it is in the chain (applied somewhere), or lost, or given up on.
      const inChain = this.checker.latest().index >= op.index;
      if (inChain || c.nowMs - op.sinceMs > 6 * this.electionMs) this.op = null;
      else return;
    }
    const li = leaderIdx(c);
    if (li < 0) return;
    const leader = c.node(li);
    if (leader.raft === null) return;
    const latest = this.checker.latest();
    // Plan only from an up-to-date leader (it applied the newest committed configuration).
    if (leader.raft.status().applied < latest.index) return;
    const conf = latest.conf;
    const members = new Set<NodeId>([...conf.voters, ...conf.learners]);
    const choices: Array<() => ConfChange | null> = [];
    const leaderCommit = leader.raft.status().commit;
    for (const l of conf.learners) {
      const n = c.node(this.idxOf(l));
      if (n.raft !== null && n.sm.appliedIndex + 2 >= leaderCommit) {
        choices.push(() => {
          this.counts.promote++;
          return { type: ConfChangeType.AddVoter, node: l };
        });
      }
      if (this.prng.next() < 0.1) choices.push(() => ({ type: ConfChangeType.Remove, node: l }));
    }
    if (conf.voters.length >= 4) {
      choices.push(() => {
        const target = this.prng.next() < 0.35 ? leader.id : pick(this.prng, conf.voters);
        this.counts.remove++;
        if (target === leader.id) this.counts.removeLeader++;
        return { type: ConfChangeType.Remove, node: target };
      });
    }
    const outside = c.nodes.filter((n) => !members.has(n.id));
    if (outside.length > 0 && conf.learners.length === 0) {
      choices.push(() => {
        const n = pick(this.prng, outside);
        this.counts.addLearner++;
        if (n.joined) this.counts.readd++;
        return { type: ConfChangeType.AddLearner, node: n.id };
      });
    }
    if (choices.length === 0) return;
    const change = pick(this.prng, choices)();
    if (change === null) return;
    c.proposeConfChange(li, change, (out) => {
      if (!out.ok) return;
      this.counts.proposed++;
      this.op = { change, index: out.index, sinceMs: c.nowMs };
      c.note(`operator: ${['add learner', 'add voter', 'remove'][change.type]} ${change.node} at ${out.index} via ${leader.id}`);
    });
  }
}

// ---------------------------------------------------------------- one seed

export interface MembershipOptions {
  readonly raftFactory: RaftFactory;
  readonly faultPhaseMs?: number;
  readonly trace?: boolean;
  readonly clusterOverrides?: Partial<ClusterOptions>;
  /** Fail when a removed node leads a later term at all (see MembershipChecker). */
  readonly strictRemoved?: boolean;
}

export interface MembershipResult extends SeedOutcome {
  readonly ops: Operator['counts'];
  readonly checks: MembershipChecker['counts'];
  readonly finalConf: string;
  readonly removedLeaderNote: string;
  readonly removedVoteNote: string;
}

export const membershipNodeCount = 5;
export const membershipInitialVoters = 3;

export function runMembershipSeed(seed: number, opts: MembershipOptions): MembershipResult {
  const profiled = profileFor(seed, opts.raftFactory, 'correct');
  const clusterOpts: ClusterOptions = {
    ...profiled.cluster,
    nodeCount: membershipNodeCount,
    initialVoters: membershipInitialVoters,
    ...opts.clusterOverrides,
  };
  const f = profiled.faults;
  const c = new Cluster(clusterOpts);
  c.traceEnabled = opts.trace === true;
  const bootstrap: ConfState = { voters: c.nodes.slice(0, membershipInitialVoters).map((n) => n.id), learners: [] };
  const checker = new MembershipChecker(c, bootstrap, opts.strictRemoved === true);
  c.observers.push(checker);
  c.durableVoters = () => checker.latest().conf.voters;
  const prng = new Xoshiro128(seed ^ 0x3e3b3e3b);
  const electionMs = clusterOpts.electionTicks * clusterOpts.tickMs;
  const faults: FaultState = { on: true, keepDown: new Set() };
  const operator = new Operator(c, checker, prng, faults, electionMs);
  const opLoop = (): void => {
    operator.step();
    c.schedule(prng.int(10, 60), opLoop);
  };
  c.schedule(prng.int(0, 50), opLoop);
  const clients: RetryingClient[] = [];
  for (let i = 0; i < f.clients; i++) {
    const client = new RetryingClient(c, `c${i}`, prng, f.payloadsPerClient, 4 * electionMs);
    clients.push(client);
    startClient(c, prng, client);
  }
  startFaults(c, prng, f, electionMs, faults);
  const on = (['crash', 'partition', 'oneWay', 'clockJump', 'clockPause'] as const).filter((k) => f[k]);
  const profile =
    `voters=${membershipInitialVoters}/${membershipNodeCount} hb=${clusterOpts.heartbeatTicks} preVote=${clusterOpts.preVote} ` +
    `checkQuorum=${clusterOpts.checkQuorum} drop=${clusterOpts.network.dropProb} dup=${clusterOpts.network.dupProb} ` +
    `compact~${clusterOpts.compactEveryApplied} faults=[${on.join(',')}]/${f.faultIntervalMs}ms clients=${f.clients}x${f.payloadsPerClient}`;

  const result = (property: string, error: string): MembershipResult => ({
    ...seedOutcome(seed, property, error, profile, c),
    ops: operator.counts,
    checks: checker.counts,
    finalConf: confString(checker.latest().conf),
    removedLeaderNote: checker.removedLeaderNote,
    removedVoteNote: checker.removedVoteNote,
  });
  try {
    c.runMs(opts.faultPhaseMs ?? 3_000);
    operator.active = false;
    healAll(c, faults);
    operator.reconcile(true);
    for (const client of clients) client.budget = Math.max(client.budget, 0) + 2;
    const members = (): SimNode[] => {
      const conf = checker.latest().conf;
      return c.nodes.filter((n) => conf.voters.includes(n.id) || conf.learners.includes(n.id));
    };
    const stable = (): boolean => {
      const li = leaderIdx(c);
      if (li < 0) return false;
      const st = c.node(li).raft?.status();
      if (st === undefined || st.leader === '' || !checker.latest().conf.voters.includes(st.leader)) return false;
      return members().every((n) => n.raft !== null && n.raft.status().leader === st.leader && n.raft.status().term === st.term);
    };
    const leaderBoundMs = 30 * electionMs;
    if (!c.runUntil(stable, leaderBoundMs)) {
      return result('liveness', `no stable leader among members within ${leaderBoundMs}ms of healing (${confString(checker.latest().conf)})`);
    }
    const all = (): string[] => clients.flatMap((cl) => cl.issued);
    const converged = (): boolean => {
      operator.reconcile(true);
      if (!clients.every((cl) => cl.done)) return false;
      const ms = members();
      const applied = ms[0]?.sm.appliedIndex ?? -1;
      const payloads = all();
      return ms.every((n) => n.raft !== null && n.sm.appliedIndex === applied && n.raft.status().commit === applied && payloads.every((p) => n.sm.seen.has(p)));
    };
    const convergeBoundMs = 20_000;
    if (!c.runUntil(converged, convergeBoundMs)) {
      const detail = members().map((n) => `${n.id}:applied=${n.sm.appliedIndex},missing=${all().filter((p) => !n.sm.seen.has(p)).length}`);
      return result('liveness', `members not converged ${convergeBoundMs}ms after healing: ${detail.join(' ')}; ${clients.map((cl) => cl.describe()).join('; ')}`);
    }
    const ms = members();
    const reference = ms[0]?.sm.log.join('\n') ?? '';
    for (const n of ms) if (n.sm.log.join('\n') !== reference) return result('state-machine-safety', `${n.id} applied a different sequence`);
    // A proposal still commits in the final configuration.
    const li = leaderIdx(c);
    const probe = `probe-${seed}`;
    if (li < 0 || c.one(probe, ms.length, true, 5_000) === null) return result('liveness', 'a proposal after convergence did not commit on every member');
    return result('', '');
  } catch (err) {
    const failure = failureOf(err);
    return result(failure.property, failure.error);
  }
}

