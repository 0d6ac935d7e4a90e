// One Raft replica (etcd-raft style): tick()/step()/propose()/readIndex() in,
// ready() out; persisted(n) and appliedTo(i) report what the caller made durable and applied.
// Pre-vote, check-quorum, ReadIndex, snapshots, learners, single-server
// membership changes and leadership transfer. No I/O, clock or randomness.
//
// Contract for the code that drives a replica (server group runner, simulator):
// - ready() hands out, once each, what is new since the last ready(): entries to
//   append (overwriting any stored suffix from rd.entries[0].index on), the hard
//   state if it changed, the leader's snapshot, messages, committed entries to
//   apply, read states. Each Ready has a number (1, 2, ...). ready() may be called
//   again before earlier Readys are persisted (pipelined storage writes); entries
//   are handed out again only when a truncation replaced them.
// - Persist each Ready in order (rd.snapshot replacing log and state machine,
//   then rd.entries, then rd.hardState), and report persisted(rd.number) once it
//   and every Ready before it are durable. Completions are reported in order;
//   persisted(n) covers all Readys up to n.
// - rd.messages leave only once rd is durable, with one exception: App and
//   Heartbeat messages whose term is already durable may leave at once (the
//   leader writes its disk in parallel with replicating). A follower's AppResp
//   or a vote is thus never sent before what it acknowledges is on its disk.
// - A leader counts its own log toward commit only up to what persisted() made
//   stable (ack-after-persist), so commit needs a majority of fsyncs.
// - committedEntries are committed AND durable here (index <= the stable log
//   end), so they may be applied at once, in order, before the Ready they came in
//   is persisted; report appliedTo(index) after applying them (a snapshot: its
//   index, after installing it). At most raftReadyCommittedEntriesMax per Ready.
//   Serve reads in rd.readStates once applied >= index.
// - A leader's Ready that hands out committed entries holds back a broadcast that
//   would carry only the commit index (hasReady() stays true): call ready() again
//   after applying them, once what the application proposed meanwhile is in, and
//   the commit rides with those entries instead of an empty append per follower.
// - A Ready with a snapshot: persist it only after every earlier Ready is
//   durable, and persist nothing after it until it is durable (the WAL drops
//   earlier records of the group when it takes the snapshot).
// - advance() is the one-Ready-at-a-time shorthand: persisted(last number) and
//   appliedTo(everything handed out).
// - Membership: a ConfChange entry takes effect inside the appliedTo() that
//   covers it (i.e. once the caller applied it). status()
//   shows the configuration in force. PersistedState.conf is the bootstrap
//   configuration (index 0); a joining node starts with the configuration it is
//   being added with. Changes are replayed from the log after restart.
// - Restart: new Raft(config, {hardState, snapshot, entries, conf}) with
//   everything persisted; applied restarts at the snapshot index (0 without
//   one), so committed entries after it are handed out again: rebuild the state
//   machine from the snapshot and re-apply them.
// - compact(index, data): the caller snapshotted its state at index <= applied
//   and persists that snapshot itself; the log before it can be dropped from
//   storage. The snapshot is what lagging followers receive.
// - ReadIndex contexts must be unique (include the node id); a duplicate or
//   a read lost with a leader change is never answered: callers time out.
// - Quiescence (CockroachDB's, for idle groups): maybeQuiesce() on a leader whose
//   every follower has the whole log, with nothing pending, sends each a quiesce
//   heartbeat (context quiesceContext, commit = last index) and stops ticking. A
//   follower that has exactly that log quiesces on it without answering; one that
//   does not answers it as a heartbeat, which wakes the leader. While quiesced,
//   tick() does nothing; any other message, proposal, read or transfer wakes the
//   replica. Nothing in here notices a dead leader while quiesced: the caller
//   must (node liveness) and call wake() with the ticks since it last heard it.

import { assert } from '../assert.js';
import { logIndex, term as toTerm } from '../ids.js';
import type { LogIndex, NodeId } from '../ids.js';
import { raftReadRequestsPendingMax, raftReadyCommittedEntriesMax } from '../constants.js';
import { applyConfChange, decodeConfChange, encodeConfChange } from './confchange.js';
import { RaftLog, termUnavailable } from './log.js';
import { bytesEqual, newMessage, noEntries } from './message.js';
import type { MessageFields } from './message.js';
import { Progress, ProgressState } from './progress.js';
import type { ProgressStatus } from './progress.js';
import { committedIndex, majority, voteResult, VoteResult } from './quorum.js';
import { ReadOnlyQueue } from './readonly.js';
import { EntryType, MessageType, Role } from './types.js';
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
  RaftStatus,
  ReadState,
  Ready,
  Snapshot,
  SoftState,
} from './types.js';

/** Vote/PreVote context marking an election started by TimeoutNow: voters ignore their leader lease. */
export const campaignTransferContext: Uint8Array = new TextEncoder().encode('CampaignTransfer');
/** Heartbeat context marking a leader's quiesce notice: a caught-up follower quiesces on it instead of answering. */
export const quiesceContext: Uint8Array = new TextEncoder().encode('Quiesce');

/** A Ready handed out and not yet reported persisted. */
interface ReadyInProgress {
  readonly number: number;
  readonly entriesLast: number;
  readonly entriesLastTerm: number;
  readonly snapshot: Snapshot | null;
}

interface PendingRead {
  readonly from: NodeId;
  readonly context: Uint8Array;
}

export class Raft implements RaftNode {
  readonly id: NodeId;
  private readonly cfg: RaftConfig;

  private term = 0;
  private vote: NodeId | '' = '';
  private lead: NodeId | '' = '';
  private role: Role = Role.Follower;
  private readonly log: RaftLog;

  // Membership, as of the last applied conf change (or snapshot / bootstrap).
  private voters: NodeId[] = [];
  private learners: NodeId[] = [];
  /** Everyone but us, sorted: the fan-out order for broadcasts (deterministic). */
  private peers: NodeId[] = [];
  /** Index of the entry (or snapshot) that established the current configuration. */
  private confIndex = 0;
  /** Configurations by the index they took effect at, for snapshot metadata. */
  private confHistory: { index: number; conf: ConfState }[] = [];
  private readonly progress = new Map<NodeId, Progress>();
  private matchScratch: Float64Array = new Float64Array(0);

  private readonly votes = new Map<NodeId, boolean>();
  private msgs: Message[] = [];
  private readStates: ReadState[] = [];
  private readonly readOnly = new ReadOnlyQueue(raftReadRequestsPendingMax);
  /** Reads that arrived before this leader committed an entry of its term. */
  private pendingReads: PendingRead[] = [];

  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  private leadTransferee: NodeId | '' = '';
  /** Index of the newest conf change entry; another may be proposed once it is applied. */
  private pendingConfIndex = 0;
  /** Leader: new entries or commit to send; flushed once per ready() so proposals batch. */
  private bcastPending = false;
  /** Leader: a commit-only broadcast was held back by one Ready (see ready()). */
  private commitBcastHeld = false;
  /** The latest snapshot (ours or the leader's), sent to followers that fell behind compaction. */
  private snapshot: Snapshot | null;

  /** No ticks, no heartbeats until something happens (see the contract above). */
  private quiescent = false;

  private prevHard: HardState;
  private prevSoft: SoftState;
  /** Readys handed out, oldest first, until persisted() reports them durable. */
  private readonly unpersisted: ReadyInProgress[] = [];
  /** Number of the last Ready handed out (Ready.number). */
  private readyNumber = 0;

  private stepRole: (m: Message) => void;
  private tickRole: () => void;
  private readonly stepFollowerFn = (m: Message): void => this.stepFollower(m);
  private readonly stepCandidateFn = (m: Message): void => this.stepCandidate(m);
  private readonly stepLeaderFn = (m: Message): void => this.stepLeader(m);
  private readonly tickElectionFn = (): void => this.tickElection();
  private readonly tickHeartbeatFn = (): void => this.tickHeartbeat();

  constructor(config: RaftConfig, persisted: PersistedState) {
    assert(config.electionTicks > config.heartbeatTicks && config.heartbeatTicks > 0, 'election ticks must exceed heartbeat ticks');
    assert(config.electionTicksMax === undefined || config.electionTicksMax > config.electionTicks, 'the election timeout range must be non-empty');
    assert(config.maxEntriesPerMsg >= 1 && config.maxInflightMsgs >= 1, 'batch and inflight bounds must be positive');
    assert(config.maxBytesPerMsg === undefined || config.maxBytesPerMsg > 0, 'a byte bound per message is positive');
    this.cfg = config;
    this.id = config.id;
    const hs = persisted.hardState;
    this.snapshot = persisted.snapshot;
    this.log = new RaftLog(persisted.snapshot, persisted.entries, hs.commit);
    this.term = hs.term;
    this.vote = hs.vote;
    const conf = persisted.snapshot !== null ? persisted.snapshot.meta.conf : persisted.conf;
    this.confHistory.push({ index: this.log.snapIndex, conf });
    this.setConf(conf, this.log.snapIndex);
    this.prevHard = { term: hs.term, vote: hs.vote, commit: hs.commit };
    this.prevSoft = { leader: '', role: Role.Follower };
    this.stepRole = this.stepFollowerFn;
    this.tickRole = this.tickElectionFn;
    this.becomeFollower(this.term, '');
    assert(this.term === hs.term && this.vote === hs.vote, 'restart must keep term and vote');
  }

  // ---------------------------------------------------------------- inputs

  tick(): void {
    if (this.quiescent) return;
    this.tickRole();
  }

  step(m: Message): void {
    assert(m.to === this.id, `message for ${m.to} stepped into ${this.id}`);
    assert(m.from !== this.id, 'message from ourselves');
    if (m.type === MessageType.Heartbeat && bytesEqual(m.context, quiesceContext) && this.quiesceOn(m)) return;
    // A late answer to a plain heartbeat sent just before quiescing (it may share a batch
    // with the notice) says nothing a quiesced leader needs; waking on it would cost another
    // quiesce round. An answer to the notice (context quiesceContext) does wake it.
    if (this.quiescent && m.type === MessageType.HeartbeatResp && m.term === this.term && m.context.length === 0) return;
    if (this.quiescent) this.wake(0);
    if (m.term > this.term) {
      if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
        const force = bytesEqual(m.context, campaignTransferContext);
        const inLease = this.cfg.checkQuorum && this.lead !== '' && this.electionElapsed < this.cfg.electionTicks;
        // Leader stickiness: a replica that heard from a live leader recently ignores (pre)votes.
        if (!force && inLease) return;
      }
      if (m.type === MessageType.PreVote) {
        // A pre-vote never changes our term.
      } else if (m.type === MessageType.PreVoteResp && !m.reject) {
        // The term in a granted pre-vote response is the one we will campaign in.
      } else if (m.type === MessageType.App || m.type === MessageType.Heartbeat || m.type === MessageType.Snap) {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, '');
      }
    } else if (m.term < this.term) {
      if ((this.cfg.checkQuorum || this.cfg.preVote) && (m.type === MessageType.Heartbeat || m.type === MessageType.App)) {
        // A stale leader (maybe partitioned, its term never bumped thanks to
        // pre-vote) learns our term from this and steps down.
        this.send(MessageType.AppResp, m.from, this.term, {});
      } else if (m.type === MessageType.PreVote) {
        this.send(MessageType.PreVoteResp, m.from, this.term, { reject: true });
      } else if (m.type === MessageType.Vote) {
        // Tell a stale candidate our term. Otherwise a voter that does not count
        // it as a voter (an older configuration) and never messages it can stay
        // terms ahead forever while rejecting it (membership sim, SEED=992).
        this.send(MessageType.VoteResp, m.from, this.term, { reject: true });
      }
      return;
    }

    if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
      this.handleVoteRequest(m);
      return;
    }
    this.stepRole(m);
  }

  propose(data: Uint8Array): ProposeOutcome {
    if (this.quiescent) this.wake(0);
    const refused = this.refuseProposal();
    if (refused !== null) return refused;
    const e = this.appendLeaderEntry(EntryType.Normal, data);
    return { ok: true, index: e.index, term: e.term };
  }

  proposeConfChange(change: ConfChange): ProposeOutcome {
    if (this.quiescent) this.wake(0);
    const refused = this.refuseProposal();
    if (refused !== null) return refused;
    if (this.pendingConfIndex > this.log.applied) {
      return { ok: false, reason: 'conf-change-pending', leader: this.lead };
    }
    const e = this.appendLeaderEntry(EntryType.ConfChange, encodeConfChange(change));
    this.pendingConfIndex = e.index;
    return { ok: true, index: e.index, term: e.term };
  }

  readIndex(context: Uint8Array): boolean {
    if (this.quiescent) this.wake(0);
    if (this.role === Role.Leader) {
      this.leaderReadIndex(this.id, context);
      return true;
    }
    if (this.lead === '') return false;
    this.send(MessageType.ReadIndex, this.lead, this.term, { context });
    return true;
  }

  transferLeadership(to: NodeId): void {
    if (this.role !== Role.Leader || to === this.id) return;
    if (this.quiescent) this.wake(0);
    const pr = this.progress.get(to);
    if (pr === undefined || pr.isLearner) return;
    if (this.leadTransferee !== '') {
      if (this.leadTransferee === to) return;
      this.leadTransferee = '';
    }
    this.leadTransferee = to;
    // The transfer is aborted if it has not finished within one election timeout.
    this.electionElapsed = 0;
    if (pr.match === this.log.lastIndex()) this.send(MessageType.TimeoutNow, to, this.term, {});
    else this.sendAppend(to, true);
  }

  get quiesced(): boolean {
    return this.quiescent;
  }

  /**
   * Leader: quiesces when nothing is in motion (every follower and learner acknowledged the
   * whole log, which is committed and applied; no read, transfer, conf change or output
   * pending) and sends each follower a quiesce heartbeat. Returns whether it is quiesced.
   */
  maybeQuiesce(): boolean {
    if (this.quiescent) return true;
    if (this.role !== Role.Leader || this.unpersisted.length > 0 || this.hasReady()) return false;
    const last = this.log.lastIndex();
    if (this.leadTransferee !== '' || this.pendingReads.length > 0 || this.readOnly.size > 0) return false;
    if (this.log.committed !== last || this.log.applied !== last || this.log.hasUnpersisted() || this.pendingConfIndex > this.log.applied) return false;
    for (const id of this.peers) {
      const pr = this.progress.get(id) as Progress;
      if (pr.match !== last || pr.state !== ProgressState.Replicate) return false;
    }
    this.quiescent = true;
    for (const id of this.peers) this.send(MessageType.Heartbeat, id, this.term, { commit: last, context: quiesceContext });
    return true;
  }

  /**
   * Ends quiescence. `silentTicks`: how long the caller has not heard from this replica's
   * leader (its node liveness); a follower counts that much of its election timeout as
   * passed, so it campaigns when it would have without quiescence, and no longer treats
   * the leader as live when asked for a (pre-)vote. A leader restarts its check-quorum
   * window with every follower counted active (they were, when it quiesced).
   */
  wake(silentTicks: number): void {
    if (!this.quiescent) return;
    this.quiescent = false;
    if (this.role === Role.Leader) {
      this.electionElapsed = 0;
      this.heartbeatElapsed = 0;
      for (const pr of this.progress.values()) pr.recentActive = true;
    } else {
      this.electionElapsed = Math.max(this.electionElapsed, silentTicks);
    }
  }

  /** The leader this replica knows of ('' when none); status().leader without the copy. */
  get leaderId(): NodeId | '' {
    return this.lead;
  }

  /** The voters in force (this replica included when it is one); do not modify. */
  get voterIds(): readonly NodeId[] {
    return this.voters;
  }

  /** The other members of the group (voters and learners), sorted; do not modify. */
  get peerIds(): readonly NodeId[] {
    return this.peers;
  }

  compact(index: LogIndex, data: Uint8Array): void {
    assert(index <= this.log.applied, `compact at ${index} beyond applied ${this.log.applied}`);
    if (index <= this.log.snapIndex) return;
    const conf = this.confAt(index);
    const t = this.log.term(index);
    assert(t !== termUnavailable, 'compact index has no term');
    this.log.compact(index);
    this.snapshot = { meta: { index, term: toTerm(t), conf }, data };
    // Keep the configuration in force at the snapshot and everything after.
    let keepFrom = 0;
    for (let i = 0; i < this.confHistory.length; i++) {
      if ((this.confHistory[i] as { index: number }).index <= index) keepFrom = i;
    }
    this.confHistory = this.confHistory.slice(keepFrom);
    assert(this.log.firstIndex() === index + 1, 'compaction left the wrong first index');
  }

  // ---------------------------------------------------------------- outputs

  hasReady(): boolean {
    return (
      this.bcastPending ||
      this.msgs.length > 0 ||
      this.readStates.length > 0 ||
      this.log.hasUnstable() ||
      this.log.hasNextCommitted() ||
      this.hardStateChanged() ||
      this.softStateChanged()
    );
  }

  /** Readys handed out and not yet reported persisted (see the contract at the top). */
  get readysInFlight(): number {
    return this.unpersisted.length;
  }

  ready(): Ready {
    if (this.bcastPending) {
      // When all there is to send is the commit index and this Ready hands the leader
      // committed entries, the broadcast waits one Ready (bcastPending keeps hasReady()
      // true): what the application proposes on applying them then carries the commit,
      // instead of an empty append now and each follower's answer to it. Held once only.
      if (!this.commitBcastHeld && this.role === Role.Leader && this.log.hasNextCommitted() && this.onlyCommitToSend()) {
        this.commitBcastHeld = true;
      } else {
        this.bcastPending = false;
        this.commitBcastHeld = false;
        this.bcastAppend();
      }
    }
    const hardState = this.hardStateChanged() ? this.hardState() : null;
    const softState = this.softStateChanged() ? this.softState() : null;
    const entries = this.log.unstableEntries();
    const snapshot = this.log.snapshotInProgress ? null : this.log.pendingSnapshot;
    const committedEntries = this.log.nextCommitted(raftReadyCommittedEntriesMax);
    const lastEntry = entries[entries.length - 1];
    const lastCommitted = committedEntries[committedEntries.length - 1];
    const applying = lastCommitted !== undefined ? lastCommitted.index : Math.max(this.log.applying, this.log.snapIndex);
    assert(applying <= this.log.committed && applying <= this.log.stableLast, 'handing out uncommitted or unpersisted entries');
    const number = ++this.readyNumber;
    this.unpersisted.push({
      number,
      entriesLast: lastEntry !== undefined ? lastEntry.index : 0,
      entriesLastTerm: lastEntry !== undefined ? lastEntry.term : 0,
      snapshot,
    });
    this.log.markInProgress();
    this.log.applying = applying;
    if (hardState !== null) this.prevHard = hardState;
    if (softState !== null) this.prevSoft = softState;
    const messages = this.msgs;
    this.msgs = [];
    const readStates = this.readStates;
    this.readStates = [];
    return { number, hardState, entries, snapshot, messages, committedEntries, readStates, softState };
  }

  /**
   * The caller made Ready `number`, and every Ready before it, durable (in order). Its
   * entries become stable unless the log changed under them, a leader counts its own log
   * toward commit up to what is stable, and committed entries up to it may be handed out.
   */
  persisted(number: number): void {
    const first = this.unpersisted[0];
    assert(first !== undefined && number >= first.number && number < this.readyNumber + 1, `persisted(${number}) names no Ready in flight`);
    let k = 0;
    for (; k < this.unpersisted.length; k++) {
      const p = this.unpersisted[k] as ReadyInProgress;
      if (p.number > number) break;
      if (p.snapshot !== null && this.log.pendingSnapshot === p.snapshot) {
        this.log.pendingSnapshot = null;
        this.log.snapshotInProgress = false;
      }
      if (p.entriesLast > 0) this.log.stableTo(p.entriesLast, p.entriesLastTerm);
    }
    this.unpersisted.splice(0, k);
    if (this.role === Role.Leader) {
      const self = this.progress.get(this.id);
      assert(self !== undefined, 'leader without its own progress');
      self.maybeUpdate(this.log.stableLast);
      if (this.maybeCommit()) this.onLeaderCommitAdvanced();
    }
  }

  /**
   * The caller applied the committed entries handed out up to `index` (and a snapshot's
   * state up to it): conf changes among them take effect, and the log may be compacted up to it.
   */
  appliedTo(index: number): void {
    assert(index <= this.log.applying, `appliedTo(${index}) beyond what was handed out (${this.log.applying})`);
    if (index <= this.log.applied) return;
    // Entries at or below the snapshot index are covered by its configuration.
    for (let i = Math.max(this.log.applied, this.log.snapIndex) + 1; i <= index; i++) {
      const e = this.log.entry(i);
      if (e.type === EntryType.ConfChange && e.index > this.confIndex) this.applyConfEntry(e);
    }
    this.log.applied = index;
    assert(this.log.applied <= this.log.committed, 'applied beyond commit');
  }

  /**
   * One Ready at a time: the last ready() was persisted, sent and applied. Same as
   * persisted(rd.number) then appliedTo() everything handed out.
   */
  advance(): void {
    assert(this.unpersisted.length > 0, 'advance() without ready()');
    this.persisted(this.readyNumber);
    this.appliedTo(Math.max(this.log.applying, this.log.snapIndex));
  }

  status(): RaftStatus {
    return {
      id: this.id,
      term: toTerm(this.term),
      role: this.role,
      leader: this.lead,
      commit: logIndex(this.log.committed),
      applied: logIndex(this.log.applied),
      firstIndex: logIndex(this.log.firstIndex()),
      lastIndex: logIndex(this.log.lastIndex()),
      conf: { voters: [...this.voters], learners: [...this.learners] },
    };
  }

  /**
   * Leader only: a copy of what it tracks for member `id` (flow-control state,
   * match, next); null on a non-leader or for a non-member. Read-only, so
   * tests and status pages can look without reaching into the replica.
   */
  progressOf(id: NodeId): ProgressStatus | null {
    if (this.role !== Role.Leader) return null;
    const pr = this.progress.get(id);
    if (pr === undefined) return null;
    return { state: pr.state, match: logIndex(pr.match), next: logIndex(pr.next), paused: pr.isPaused() };
  }

  // ---------------------------------------------------------------- roles

  private reset(t: number): void {
    if (t !== this.term) {
      assert(t > this.term, 'terms never go backwards');
      this.term = t;
      this.vote = '';
    }
    this.lead = '';
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.quiescent = false;
    const electionTicksMax = this.cfg.electionTicksMax ?? 2 * this.cfg.electionTicks;
    this.randomizedElectionTimeout = this.cfg.electionTicks + this.cfg.prng.int(0, electionTicksMax - this.cfg.electionTicks - 1);
    assert(
      this.randomizedElectionTimeout >= this.cfg.electionTicks && this.randomizedElectionTimeout < electionTicksMax,
      'randomized election timeout out of range',
    );
    this.leadTransferee = '';
    this.votes.clear();
    const next = this.log.lastIndex() + 1;
    for (const id of this.progress.keys()) {
      const old = this.progress.get(id) as Progress;
      const pr = new Progress(next, this.cfg.maxInflightMsgs, old.isLearner);
      if (id === this.id) pr.match = this.log.stableLast;
      this.progress.set(id, pr);
    }
    this.pendingConfIndex = 0;
    this.readOnly.reset();
    this.pendingReads = [];
    this.bcastPending = false;
    this.commitBcastHeld = false;
  }

  private becomeFollower(t: number, lead: NodeId | ''): void {
    this.reset(t);
    this.lead = lead;
    this.role = Role.Follower;
    this.stepRole = this.stepFollowerFn;
    this.tickRole = this.tickElectionFn;
  }

  private becomePreCandidate(): void {
    assert(this.role !== Role.Leader, 'leader cannot become pre-candidate');
    // Neither term nor vote change: a lost pre-election leaves no trace.
    this.votes.clear();
    this.lead = '';
    this.role = Role.PreCandidate;
    this.stepRole = this.stepCandidateFn;
    this.tickRole = this.tickElectionFn;
  }

  private becomeCandidate(): void {
    assert(this.role !== Role.Leader, 'leader cannot become candidate');
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = Role.Candidate;
    this.stepRole = this.stepCandidateFn;
    this.tickRole = this.tickElectionFn;
  }

  private becomeLeader(): void {
    assert(this.role === Role.Candidate, 'only a candidate becomes leader');
    this.reset(this.term);
    this.lead = this.id;
    this.role = Role.Leader;
    this.stepRole = this.stepLeaderFn;
    this.tickRole = this.tickHeartbeatFn;
    const self = this.progress.get(this.id);
    assert(self !== undefined, 'leader must be in its configuration');
    self.becomeReplicate();
    self.recentActive = true;
    // Conservatively, any conf change in the uncommitted tail is pending.
    this.pendingConfIndex = this.log.lastIndex();
    // The no-op: lets us commit (and learn the commit of) earlier terms' entries.
    this.appendLeaderEntry(EntryType.Normal, new Uint8Array(0));
  }

  private promotable(): boolean {
    return this.voters.includes(this.id);
  }

  private hasUnappliedConfChanges(): boolean {
    const lo = Math.max(this.log.applied, this.log.snapIndex) + 1;
    for (let i = lo; i <= this.log.committed; i++) {
      if (this.log.entry(i).type === EntryType.ConfChange) return true;
    }
    return false;
  }

  /** Start an election (or pre-election) if we may. */
  private hup(transfer: boolean): void {
    if (this.role === Role.Leader) return;
    if (!this.promotable()) return;
    if (this.hasUnappliedConfChanges()) return;
    if (transfer || !this.cfg.preVote) this.campaign(false, transfer);
    else this.campaign(true, false);
  }

  private campaign(pre: boolean, transfer: boolean): void {
    let voteType: MessageType;
    let voteTerm: number;
    if (pre) {
      this.becomePreCandidate();
      voteType = MessageType.PreVote;
      voteTerm = this.term + 1;
    } else {
      this.becomeCandidate();
      voteType = MessageType.Vote;
      voteTerm = this.term;
    }
    if (this.poll(this.id, true) === VoteResult.Won) {
      // Single voter: we won already.
      if (pre) this.campaign(false, transfer);
      else this.becomeLeader();
      return;
    }
    const fields: MessageFields = {
      index: this.log.lastIndex(),
      logTerm: this.log.lastTerm(),
      ...(transfer ? { context: campaignTransferContext } : {}),
    };
    for (const v of this.voters) {
      if (v !== this.id) this.send(voteType, v, voteTerm, fields);
    }
  }

  private poll(from: NodeId, granted: boolean): VoteResult {
    if (!this.votes.has(from)) this.votes.set(from, granted);
    let yes = 0;
    let no = 0;
    for (const v of this.voters) {
      const g = this.votes.get(v);
      if (g === true) yes++;
      else if (g === false) no++;
    }
    return voteResult(this.voters.length, yes, no);
  }

  private handleVoteRequest(m: Message): void {
    assert(m.term >= this.term, 'stale vote requests are answered earlier');
    const respType = m.type === MessageType.Vote ? MessageType.VoteResp : MessageType.PreVoteResp;
    const canVote =
      this.vote === m.from ||
      (this.vote === '' && this.lead === '') ||
      (m.type === MessageType.PreVote && m.term > this.term);
    if (canVote && this.log.isAtLeastAsRecent(m.index, m.logTerm)) {
      // Answer in the requested term so a pre-candidate does not drop it as stale.
      this.send(respType, m.from, m.term, {});
      if (m.type === MessageType.Vote) {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send(respType, m.from, this.term, { reject: true });
    }
  }

  // ---------------------------------------------------------------- ticks

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.hup(false);
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.cfg.electionTicks) {
      this.electionElapsed = 0;
      if (this.cfg.checkQuorum && !this.quorumActive()) {
        this.becomeFollower(this.term, '');
        return;
      }
      if (this.leadTransferee !== '') this.leadTransferee = '';
    }
    assert(this.role === Role.Leader, 'heartbeat tick on a non-leader');
    for (const id of this.peers) {
      const pr = this.progress.get(id) as Progress;
      // A snapshot that was never acknowledged (lost, or the follower crashed): probe again.
      if (pr.state === ProgressState.Snapshot && ++pr.snapshotElapsedTicks >= this.cfg.electionTicks) pr.becomeProbe();
    }
    if (this.heartbeatElapsed >= this.cfg.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.bcastHeartbeat(this.readOnly.lastContext());
    }
  }

  /** Check-quorum: did a majority of voters talk to us since the last check? Resets the marks. */
  private quorumActive(): boolean {
    let active = 0;
    for (const v of this.voters) {
      const pr = this.progress.get(v);
      if (v === this.id || (pr !== undefined && pr.recentActive)) active++;
    }
    for (const id of this.peers) (this.progress.get(id) as Progress).recentActive = false;
    return active >= majority(this.voters.length);
  }

  // ---------------------------------------------------------------- followers and candidates

  /**
   * A quiesce heartbeat: quiesce on it (and answer nothing) when it is from our leader in
   * our term and our log ends exactly at its commit, which the leader only sends once we
   * acknowledged that whole log, so ours is its. Otherwise it is stepped as a heartbeat.
   */
  private quiesceOn(m: Message): boolean {
    if (m.term !== this.term || this.role !== Role.Follower || this.lead !== m.from) return false;
    if (m.commit !== this.log.lastIndex() || this.log.hasUnpersisted()) return false;
    this.log.commitTo(m.commit);
    this.electionElapsed = 0;
    this.quiescent = true;
    return true;
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case MessageType.App:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleAppend(m);
        return;
      case MessageType.Heartbeat:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleHeartbeat(m);
        return;
      case MessageType.Snap:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleSnapshot(m);
        return;
      case MessageType.TimeoutNow:
        // Leadership transfer: campaign now, skipping pre-vote and others' leases.
        this.hup(true);
        return;
      case MessageType.ReadIndexResp:
        this.readStates.push({ index: m.index, context: m.context });
        return;
      case MessageType.ReadIndex:
      case MessageType.AppResp:
      case MessageType.HeartbeatResp:
      case MessageType.PreVoteResp:
      case MessageType.VoteResp:
      case MessageType.PreVote:
      case MessageType.Vote:
        return;
    }
  }

  private stepCandidate(m: Message): void {
    switch (m.type) {
      case MessageType.App:
        this.becomeFollower(m.term, m.from);
        this.handleAppend(m);
        return;
      case MessageType.Heartbeat:
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        return;
      case MessageType.Snap:
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        return;
      case MessageType.PreVoteResp:
      case MessageType.VoteResp: {
        const expected = this.role === Role.PreCandidate ? MessageType.PreVoteResp : MessageType.VoteResp;
        if (m.type !== expected) return;
        const result = this.poll(m.from, !m.reject);
        if (result === VoteResult.Won) {
          if (this.role === Role.PreCandidate) this.campaign(false, false);
          else this.becomeLeader();
        } else if (result === VoteResult.Lost) {
          this.becomeFollower(this.term, '');
        }
        return;
      }
      case MessageType.TimeoutNow:
      case MessageType.ReadIndex:
      case MessageType.ReadIndexResp:
      case MessageType.AppResp:
      case MessageType.HeartbeatResp:
      case MessageType.PreVote:
      case MessageType.Vote:
        return;
    }
  }

  private handleAppend(m: Message): void {
    if (m.index < this.log.committed) {
      this.send(MessageType.AppResp, m.from, this.term, { index: this.log.committed });
      return;
    }
    const lastNew = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew >= 0) {
      this.send(MessageType.AppResp, m.from, this.term, { index: lastNew });
      return;
    }
    // Reject with a hint: the largest index <= min(prevIndex, our last) whose
    // term is <= prevLogTerm. The leader skips every index in between.
    const probe = Math.min(m.index, this.log.lastIndex());
    const [hint, hintTerm] = this.log.findConflictByTerm(probe, m.logTerm);
    this.send(MessageType.AppResp, m.from, this.term, {
      index: m.index,
      reject: true,
      rejectHint: hint,
      rejectHintTerm: hintTerm,
    });
  }

  private handleHeartbeat(m: Message): void {
    // The leader sends min(our match, its commit), so this never exceeds our log.
    this.log.commitTo(m.commit);
    this.send(MessageType.HeartbeatResp, m.from, this.term, { context: m.context });
  }

  private handleSnapshot(m: Message): void {
    const s = m.snapshot;
    assert(s !== null, 'Snap message without a snapshot');
    if (this.restore(s)) {
      this.send(MessageType.AppResp, m.from, this.term, { index: this.log.lastIndex() });
    } else {
      this.send(MessageType.AppResp, m.from, this.term, { index: this.log.committed });
    }
  }

  private restore(s: Snapshot): boolean {
    if (s.meta.index <= this.log.committed) return false;
    if (this.log.matchTerm(s.meta.index, s.meta.term)) {
      // We have the snapshot's last entry: just fast-forward commit.
      this.log.commitTo(s.meta.index);
      return false;
    }
    this.log.restore(s);
    this.snapshot = s;
    this.confHistory = [{ index: s.meta.index, conf: s.meta.conf }];
    this.setConf(s.meta.conf, s.meta.index);
    return true;
  }

  // ---------------------------------------------------------------- leader

  private stepLeader(m: Message): void {
    switch (m.type) {
      case MessageType.AppResp:
        this.handleAppendResp(m);
        return;
      case MessageType.HeartbeatResp:
        this.handleHeartbeatResp(m);
        return;
      case MessageType.ReadIndex:
        this.leaderReadIndex(m.from, m.context);
        return;
      case MessageType.App:
      case MessageType.Heartbeat:
      case MessageType.Snap:
        // Two leaders in one term would break election safety.
        assert(false, `leader ${this.id} got ${m.type} from ${m.from} in its own term ${this.term}`);
        return;
      case MessageType.TimeoutNow:
      case MessageType.ReadIndexResp:
      case MessageType.PreVoteResp:
      case MessageType.VoteResp:
      case MessageType.PreVote:
      case MessageType.Vote:
        return;
    }
  }

  private refuseProposal(): ProposeOutcome | null {
    if (this.role !== Role.Leader) return { ok: false, reason: 'not-leader', leader: this.lead };
    if (this.leadTransferee !== '') return { ok: false, reason: 'transferring', leader: this.lead };
    return null;
  }

  private appendLeaderEntry(type: EntryType, data: Uint8Array): Entry {
    assert(this.role === Role.Leader, 'only a leader appends its own entries');
    const e: Entry = { term: toTerm(this.term), index: logIndex(this.log.lastIndex() + 1), type, data };
    this.log.push(e);
    this.bcastPending = true;
    return e;
  }

  /** Recomputes commit from voters' matches; only entries of our own term commit by counting (§5.4.2). */
  private maybeCommit(): boolean {
    let i = 0;
    for (const v of this.voters) {
      const pr = this.progress.get(v);
      assert(pr !== undefined, `voter ${v} without progress`);
      this.matchScratch[i++] = pr.match;
    }
    const mci = committedIndex(this.matchScratch);
    if (mci > this.log.committed && this.log.term(mci) === this.term) {
      this.log.commitTo(mci);
      return true;
    }
    return false;
  }

  private committedEntryInCurrentTerm(): boolean {
    return this.log.term(this.log.committed) === this.term;
  }

  private onLeaderCommitAdvanced(): void {
    this.bcastPending = true;
    if (this.pendingReads.length > 0 && this.committedEntryInCurrentTerm()) {
      const reads = this.pendingReads;
      this.pendingReads = [];
      for (const r of reads) this.leaderReadIndex(r.from, r.context);
    }
  }

  private handleAppendResp(m: Message): void {
    const pr = this.progress.get(m.from);
    if (pr === undefined) return;
    pr.recentActive = true;
    if (m.reject) {
      let next = m.rejectHint as number;
      if (m.rejectHintTerm > 0) next = this.log.findConflictByTerm(Math.min(next, this.log.lastIndex()), m.rejectHintTerm)[0];
      if (pr.maybeDecrTo(m.index, next)) {
        if (pr.state === ProgressState.Replicate) pr.becomeProbe();
        this.sendAppend(m.from, true);
      }
      return;
    }
    const wasPaused = pr.isPaused();
    // A probing follower that acks exactly the match we know (a delayed or
    // duplicated ack, or the answer to an empty probe) has shown that next =
    // match + 1 is safe: replicate from there now, as etcd does, instead of
    // staying paused until the outstanding probe is answered or a heartbeat
    // response arrives.
    const probeConfirmed = pr.state === ProgressState.Probe && m.index === pr.match;
    if (!pr.maybeUpdate(m.index) && !probeConfirmed) return;
    switch (pr.state) {
      case ProgressState.Probe:
        pr.becomeReplicate();
        break;
      case ProgressState.Snapshot:
        if (pr.match + 1 >= this.log.firstIndex()) {
          pr.becomeProbe();
          pr.becomeReplicate();
        }
        break;
      case ProgressState.Replicate:
        pr.inflights.freeLE(m.index);
        break;
    }
    if (this.maybeCommit()) this.onLeaderCommitAdvanced();
    else if (wasPaused) this.sendAppend(m.from, true);
    // Fill the pipeline while there is room and something to send.
    while (this.sendAppend(m.from, false)) {
      // each call sends one batch
    }
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) {
      this.send(MessageType.TimeoutNow, m.from, this.term, {});
    }
  }

  private handleHeartbeatResp(m: Message): void {
    const pr = this.progress.get(m.from);
    if (pr === undefined) return;
    pr.recentActive = true;
    pr.probeSent = false;
    // If every append in the window was lost, free one so replication restarts.
    if (pr.state === ProgressState.Replicate && pr.inflights.full()) pr.inflights.freeFirstOne();
    // A probing follower is probed even when it looks caught up: the answer
    // (an ack at match for an empty append) is what takes it back to Replicate
    // in handleAppendResp. Snapshot state is paused, so nothing goes out there.
    if (pr.match < this.log.lastIndex() || pr.state === ProgressState.Probe) this.sendAppend(m.from, true);
    if (m.context.length === 0) return;
    const acks = this.readOnly.recvAck(m.from, m.context);
    if (acks === null) return;
    let voterAcks = 0;
    for (const v of this.voters) if (acks.has(v)) voterAcks++;
    if (voterAcks < majority(this.voters.length)) return;
    for (const req of this.readOnly.advance(m.context)) this.answerRead(req.from, req.index, req.context);
  }

  private leaderReadIndex(from: NodeId, context: Uint8Array): void {
    if (this.voters.length === 1) {
      this.answerRead(from, this.log.committed, context);
      return;
    }
    if (!this.committedEntryInCurrentTerm()) {
      // Our commit index may lag what earlier leaders committed until our no-op commits.
      if (this.pendingReads.length < raftReadRequestsPendingMax) this.pendingReads.push({ from, context });
      return;
    }
    if (!this.readOnly.add(this.log.committed, from, context)) return;
    this.readOnly.recvAck(this.id, context);
    this.bcastHeartbeat(context);
  }

  private answerRead(from: NodeId, index: number, context: Uint8Array): void {
    if (from === this.id) this.readStates.push({ index: logIndex(index), context });
    else this.send(MessageType.ReadIndexResp, from, this.term, { index, context });
  }

  /** Whether every peer is replicating and has every entry sent already (a broadcast would carry only the commit). */
  private onlyCommitToSend(): boolean {
    const last = this.log.lastIndex();
    for (const id of this.peers) {
      const pr = this.progress.get(id);
      if (pr === undefined || pr.state !== ProgressState.Replicate || pr.next <= last) return false;
    }
    return true;
  }

  /** Sends new entries (or at least the commit index) to every peer, filling each pipeline. */
  private bcastAppend(): void {
    for (const id of this.peers) {
      if (!this.sendAppend(id, true)) continue;
      while (this.sendAppend(id, false)) {
        // each call sends one batch until the window is full or nothing is left
      }
    }
  }

  private bcastHeartbeat(context: Uint8Array | null): void {
    for (const id of this.peers) {
      const pr = this.progress.get(id) as Progress;
      this.send(MessageType.Heartbeat, id, this.term, {
        commit: Math.min(pr.match, this.log.committed),
        ...(context !== null ? { context } : {}),
      });
    }
  }

  /**
   * Sends the next batch of entries to `to` (or a snapshot if they are
   * compacted). Returns whether a message went out. With sendIfEmpty false,
   * nothing is sent when there are no new entries.
   */
  private sendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.progress.get(to);
    assert(pr !== undefined, `no progress for ${to}`);
    if (pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const last = this.log.lastIndex();
    assert(prevIndex <= last, `next ${pr.next} beyond last ${last} for ${to}`);
    const prevTerm = this.log.term(prevIndex);
    if (prevTerm === termUnavailable) return this.sendSnapshot(to, pr);
    const entries = pr.next <= last ? this.log.slice(pr.next, last + 1, this.cfg.maxEntriesPerMsg, this.cfg.maxBytesPerMsg ?? Infinity) : noEntries;
    if (entries.length === 0 && !sendIfEmpty) return false;
    this.send(MessageType.App, to, this.term, { index: prevIndex, logTerm: prevTerm, entries, commit: this.log.committed });
    const lastSent = entries[entries.length - 1];
    if (lastSent !== undefined) pr.sentEntries(entries.length, lastSent.index);
    return true;
  }

  private sendSnapshot(to: NodeId, pr: Progress): boolean {
    const s = this.snapshot;
    assert(s !== null && s.meta.index === this.log.snapIndex, 'log compacted without a matching snapshot');
    pr.becomeSnapshot(s.meta.index);
    this.send(MessageType.Snap, to, this.term, { snapshot: s });
    return true;
  }

  // ---------------------------------------------------------------- membership

  private applyConfEntry(e: Entry): void {
    const cc = decodeConfChange(e.data);
    const conf = applyConfChange({ voters: this.voters, learners: this.learners }, cc);
    this.confHistory.push({ index: e.index, conf });
    this.setConf(conf, e.index);
  }

  private setConf(conf: ConfState, index: number): void {
    assert(index >= this.confIndex, 'configurations apply in log order');
    this.voters = [...conf.voters].sort();
    this.learners = [...conf.learners].sort();
    this.confIndex = index;
    const members = new Set<NodeId>([...this.voters, ...this.learners]);
    assert(members.size === this.voters.length + this.learners.length, 'voter and learner sets overlap');
    this.peers = [...members].filter((id) => id !== this.id).sort();
    for (const id of [...this.progress.keys()]) if (!members.has(id)) this.progress.delete(id);
    for (const id of members) {
      const isLearner = !this.voters.includes(id);
      const pr = this.progress.get(id);
      if (pr === undefined) {
        const fresh = new Progress(this.log.lastIndex() + 1, this.cfg.maxInflightMsgs, isLearner);
        fresh.recentActive = true;
        if (id === this.id) fresh.match = this.log.stableLast;
        this.progress.set(id, fresh);
      } else {
        pr.isLearner = isLearner;
      }
    }
    this.matchScratch = new Float64Array(this.voters.length);
    if (this.role !== Role.Leader) return;
    if (!this.voters.includes(this.id)) {
      // Removed (or demoted) leader steps down once the change is applied.
      this.becomeFollower(this.term, '');
      return;
    }
    if (this.leadTransferee !== '' && !this.voters.includes(this.leadTransferee)) this.leadTransferee = '';
    if (this.maybeCommit()) this.onLeaderCommitAdvanced();
  }

  private confAt(index: number): ConfState {
    let conf: ConfState | null = null;
    for (const h of this.confHistory) if (h.index <= index) conf = h.conf;
    assert(conf !== null, `no configuration known at ${index}`);
    return conf;
  }

  // ---------------------------------------------------------------- plumbing

  private send(type: MessageType, to: NodeId, t: number, f: MessageFields): void {
    this.msgs.push(newMessage(type, this.id, to, t, f));
  }

  private hardState(): HardState {
    return { term: toTerm(this.term), vote: this.vote, commit: logIndex(this.log.committed) };
  }

  private softState(): SoftState {
    return { leader: this.lead, role: this.role };
  }

  private hardStateChanged(): boolean {
    const h = this.prevHard;
    return h.term !== this.term || h.vote !== this.vote || h.commit !== this.log.committed;
  }

  private softStateChanged(): boolean {
    return this.prevSoft.leader !== this.lead || this.prevSoft.role !== this.role;
  }
}
