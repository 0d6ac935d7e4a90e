// Drives Raft groups over the real transport and WAL: ticks from one timer (idle
// groups quiesce and are not ticked; a quiesced follower wakes when its leader's node
// falls silent), peer messages batched per peer per turn across groups, heartbeats
// coalesced per peer per heartbeat interval (that batch is also the node's liveness
// signal, sent even when every group is quiet), persist-then-send,
// committed entries applied to each group's state machine, waiting proposers
// and linearizable readers answered. One GroupHost per node, one GroupRunner
// per group.

import { assert } from '../../core/assert.js';
import { appendEntriesBytesMax, appendEntriesCountMax, electionTimeoutHeartbeatsMin, electionTimeoutTicksMax, electionTimeoutTicksMin, frameBytesMax, heartbeatIntervalTicks,
  inflightAppendsMax, overloadRetryAfterMs, raftBatchBytesMax, raftReadysInFlightMax,
  proposalsPendingMax, raftReadRequestsPendingMax, raftSnapshotAssemblyIdleMsMax, raftSnapshotChunkBytes, raftSnapshotSendQueueBytes, raftSnapshotTransferBytesMax, raftReadTimeoutTicks, raftTickMs, readContextBytes, readContextNonceBytes, snapshotEntriesThreshold } from '../../core/constants.js';
import { type GroupId, type LogIndex, type NodeId, type Term, logIndex, term } from '../../core/ids.js';
import { Xoshiro128 } from '../../core/prng.js';
import { Raft } from '../../core/raft/raft.js';
import { decodeConfChange } from '../../core/raft/confchange.js';
import { type ConfChange, type ConfState, type Entry, EntryType, type HardState, type Message, MessageType, messageTypeNames, type Ready, Role, type Snapshot } from '../../core/raft/types.js';
import { DsyncError, ErrorCode, ProtocolError } from '../../protocol/errors.js';
import { schema } from '../../protocol/index.js';
import type { dsync } from '../../protocol/generated/dsync.js';
import type { GroupStatusView } from '../node/node.js';
import { latencyTrace } from '../node/latency-trace.js';
import type { Logger } from '../node/log.js';
import type { Cancel, MonotonicClock, Scheduler } from '../runtime.js';
import type { RecoveredGroup, SaveSnapshotOptions } from '../storage/wal.js';
import { toPersistedState } from '../storage/wal.js';
import { entryBytes } from '../storage/format.js';
import { wireNumber } from '../../protocol/wire-number.js';
import { checkWire, coalescible, fromWire, heartbeatFromWire, heartbeatToWire, toWire } from './codec.js';

/** Labels of GroupHost.traffic.sentByType: every MessageType at its value, then Apps that carry no entries (commit or probe only). */
export const raftMessageTypeNames: readonly (typeof messageTypeNames[MessageType] | 'AppEmpty')[] = [
  ...Array.from({ length: Object.keys(messageTypeNames).length }, (_, type) => {
    const name = (messageTypeNames as Partial<Record<number, typeof messageTypeNames[MessageType]>>)[type];
    assert(name !== undefined, `MessageType values are 0..n-1; ${type} has no name`);
    return name;
  }), 'AppEmpty'];
const emptyAppTypeSlot = raftMessageTypeNames.length - 1;

/** What a Raft group replicates: deterministic apply, plus snapshot/restore for compaction. */
export interface StateMachine {
  /** Applies one committed entry (never the leader's empty no-op); returns the proposer's answer. */
  apply(entry: Entry): unknown;
  /** Applies one committed ConfChange entry (Raft's configuration changes in the same turn); returns the proposer's answer. */
  applyConfChange?(entry: Entry, change: ConfChange): unknown;
  snapshot(): Uint8Array;
  /**
   * Optional: the state as of now, written in bounded slices on later turns (maybeCompact
   * runs one slice per turn), so a large state never stalls the event loop in one piece.
   * Entries applied meanwhile must not show in it.
   */
  beginSnapshot?(): SnapshotJob;
  restore(data: Uint8Array): void;
  /** Leadership of this replica changed (e.g. restart lease clocks on becoming leader). */
  onLeaderChange?(isLeader: boolean, leader: NodeId | ''): void;
  /**
   * For a snapshot that describes state kept outside it (a queue partition's message store),
   * called right after snapshot() (or a job's last step): the runner saves it once `ready` resolves (that
   * outside state is durable), then calls saved() (what is below it may be reclaimed).
   */
  persistSnapshot?(): { ready: Promise<void>; saved(): void };
  /**
   * A leader's snapshot, before Raft sees it: false holds it back (dropped; the machine first
   * fetches the outside state it needs, then calls `retry`, which steps it again; Raft also
   * resends it). Asked only for a snapshot past this replica's commit index.
   */
  admitSnapshot?(snapshot: Snapshot, from: NodeId, retry: () => void): boolean;
}

/** A snapshot being written in slices (StateMachine.beginSnapshot). */
export interface SnapshotJob {
  /** Writes one bounded slice; the snapshot's bytes once the last one is written, else null. */
  step(): Uint8Array | null;
  /** No longer wanted (the state was replaced by a leader's snapshot, the group stopped). */
  abort(): void;
}

/**
 * How a proposal ended, told once: applied here (with the state machine's answer) or failed.
 * Called inside the runner's apply or failure paths, so it may hand the answer on (a reply)
 * but must not call back into the runner.
 */
export interface ProposalOutcome {
  applied(result: unknown): void;
  failed(err: DsyncError): void;
}

interface ProposalWaiter {
  readonly term: number;
  readonly outcome: ProposalOutcome;
}

interface ReadWaiter {
  /** The runner's tick count when the read was asked: unanswered for raftReadTimeoutTicks, it fails. */
  readonly issuedTick: number;
  index: number;
  resolve(): void;
  reject(err: DsyncError): void;
}

/**
 * A ReadIndex context is this boot's nonce then a big-endian u64 read counter
 * (readContextBytes in all). The counter restarts at 1 each boot; the nonce keeps a
 * leader from taking a new read for one of the previous process's (a duplicate, or
 * one answered at an older index). The runner keys its waiters by the counter alone.
 */
function encodeReadContext(nonce: Uint8Array, counter: number): Uint8Array {
  assert(Number.isSafeInteger(counter) && counter > 0, 'read counter is a positive safe integer');
  const ctx = new Uint8Array(readContextBytes);
  ctx.set(nonce, 0);
  const view = new DataView(ctx.buffer);
  view.setUint32(readContextNonceBytes, Math.floor(counter / 0x1_0000_0000));
  view.setUint32(readContextNonceBytes + 4, counter >>> 0);
  return ctx;
}

/** The counter of a context this boot issued, or 0 for anything else (another boot's, another node's). */
function decodeReadContext(nonce: Uint8Array, ctx: Uint8Array): number {
  if (ctx.length !== readContextBytes) return 0;
  for (let i = 0; i < readContextNonceBytes; i++) if (ctx[i] !== nonce[i]) return 0;
  const view = new DataView(ctx.buffer, ctx.byteOffset, ctx.byteLength);
  return view.getUint32(readContextNonceBytes) * 0x1_0000_0000 + view.getUint32(readContextNonceBytes + 4);
}

const roleNames: Record<Role, string> = { [Role.Follower]: 'follower', [Role.PreCandidate]: 'pre-candidate',
  [Role.Candidate]: 'candidate', [Role.Leader]: 'leader' };

/** A Ready handed to the WAL whose messages and completion wait for its write to be durable. */
interface ReadyFlight {
  readonly rd: Ready;
  /** The WAL seq that must be durable: its own write's, or the last earlier one when it wrote nothing. */
  readonly seq: number;
  /** Messages that leave once seq is durable. */
  readonly later: readonly Message[];
  /** The hard state it wrote (term and vote durable with it), or null. */
  readonly written: HardState | null;
}

export class GroupRunner {
  readonly raft: Raft;
  /** Readys handed to the WAL and not yet durable, oldest first (at most raftReadysInFlightMax). */
  private readonly flights: ReadyFlight[] = [];
  /** A whenDurable() for the oldest flight is pending (one at a time per group). */
  private watchingDurable = false;
  /** A Ready with a snapshot is being persisted: nothing else is taken before it is done. */
  private snapshotInFlight = false;
  /** Most Readys in flight at once since start (tests check that the pipeline is used). */
  private flightsMaxSeen = 0;
  private scheduled = false;
  /** Ticks since this runner started (read timeouts count in them). */
  private ticks = 0;
  private stopped = false;
  private readonly proposals = new Map<number, ProposalWaiter>();
  /** Waiting reads by their context's counter (see encodeReadContext). */
  private readonly reads = new Map<number, ReadWaiter>();
  /** Reads whose read index is known, waiting for apply to catch up. */
  private readonly readsAwaitingApply: ReadWaiter[] = [];
  private nextReadId = 1;
  /** WAL bytes this group's accepted proposals hold in GroupHost's reservation until their Ready is appended. */
  private walBytesReserved = 0;
  private appliedIndex = 0;
  private appliedTerm = 0;
  private snapshotIndex = 0;
  /** A snapshot being written in slices, with the index, term and configuration it stands for. */
  private snapshotJob: { readonly job: SnapshotJob; readonly index: LogIndex; readonly term: Term; readonly conf: ConfState } | null = null;
  private readonly snapshotStepBound = (): void => this.snapshotStep();
  /** Highest term known to be on disk here: messages of this term may leave before a Ready's fsync. */
  private durableTerm: number;
  /** Term and vote of the last hard state handed to the WAL (a change to either is always written). */
  private writtenTerm: number;
  private writtenVote: string;
  private leaderId: NodeId | '' = '';
  private role: Role = Role.Follower;
  /** Counted for /metrics (dsync_raft_*_total): proposals accepted here, leaders seen, terms passed. */
  readonly counts = { proposals: 0, leaderChanges: 0, terms: 0, snapshotsInstalled: 0 };
  /** The term when `counts.terms` was last brought up to date (at start: the recovered term). */
  private termCounted = 0;
  /**
   * The latest commit-only hard state, not written yet. Raft's commit index is volatile
   * (a restart recomputes it from the leader), so such a hard state is not worth a write
   * of its own: it rides with the next batch that is written anyway (etcd's MustSync is
   * false for it too). Writing it alone cost an fsync per entry on every replica, which
   * the next entry's fsync queued behind: two fsyncs per request at one in flight.
   */
  private unwrittenHardState: HardState | null = null;
  /** One-shot callbacks for the end of the Ready being persisted (whenReadyDone). */
  private readyDoneCallbacks: (() => void)[] = [];

  constructor(readonly group: GroupId, private readonly host: GroupHost, private readonly sm: StateMachine,
    recovered: RecoveredGroup | undefined, bootstrap: ConfState, seed: number) {
    const persisted = toPersistedState(recovered, bootstrap);
    this.durableTerm = persisted.hardState.term;
    this.writtenTerm = persisted.hardState.term;
    this.writtenVote = persisted.hardState.vote;
    if (persisted.snapshot !== null) {
      sm.restore(persisted.snapshot.data);
      this.appliedIndex = persisted.snapshot.meta.index;
      this.appliedTerm = persisted.snapshot.meta.term;
      this.snapshotIndex = this.appliedIndex;
    }
    this.raft = new Raft({
      id: host.nodeId,
      electionTicks: host.timing.electionTicksMin,
      electionTicksMax: host.timing.electionTicksMax,
      heartbeatTicks: host.timing.heartbeatTicks,
      prng: new Xoshiro128(seed),
      preVote: true,
      checkQuorum: true,
      maxEntriesPerMsg: appendEntriesCountMax,
      maxBytesPerMsg: appendEntriesBytesMax,
      maxInflightMsgs: inflightAppendsMax,
    }, persisted);
    this.termCounted = Number(persisted.hardState.term);
    this.schedule();
  }

  get isLeader(): boolean {
    return this.role === Role.Leader;
  }

  get leader(): NodeId | '' {
    return this.leaderId;
  }

  get applied(): number {
    return this.appliedIndex;
  }

  /**
   * Proposes `data`; resolves with the state machine's answer once applied here. Leader only.
   * Overload (proposalsPendingMax waiting, or no WAL room) answers UNAVAILABLE with a retry hint.
   */
  propose(data: Uint8Array): Promise<unknown> {
    return new Promise((resolve, reject) => this.proposeFor(data, { applied: resolve, failed: reject }));
  }

  /**
   * propose() told through `outcome` instead of a promise (a proposer that answers each
   * proposal with one reply saves the promise, its reactions and a microtask per proposal).
   * A refusal is told before this returns.
   */
  proposeFor(data: Uint8Array, outcome: ProposalOutcome): void {
    if (this.stopped) {
      outcome.failed(new DsyncError(ErrorCode.UNAVAILABLE, 'node is shutting down'));
      return;
    }
    if (this.proposals.size >= proposalsPendingMax) {
      outcome.failed(new DsyncError(ErrorCode.UNAVAILABLE,
        `group ${this.group} has ${this.proposals.size} proposals waiting to commit; retry shortly`, { retryAfterMs: overloadRetryAfterMs }));
      return;
    }
    const bytes = entryBytes({ term: term(0), index: logIndex(0), type: EntryType.Normal, data });
    if (!this.host.reserveWal(bytes)) {
      outcome.failed(new DsyncError(ErrorCode.UNAVAILABLE,
        'the write-ahead log is behind (too many bytes queued for the disk); retry shortly', { retryAfterMs: overloadRetryAfterMs }));
      return;
    }
    const proposed = this.raft.propose(data);
    if (!proposed.ok) {
      this.host.releaseWal(bytes);
      outcome.failed(proposed.reason === 'not-leader' ? this.host.notLeader(this.group)
        : new DsyncError(ErrorCode.UNAVAILABLE, `group ${this.group} cannot take proposals right now (${proposed.reason}); retry shortly`));
      return;
    }
    this.walBytesReserved += bytes;
    latencyTrace?.mark('propose', proposed.index, this.group);
    this.counts.proposals++;
    this.host.noteAwake(this);
    this.schedule();
    this.proposals.set(proposed.index, { term: proposed.term, outcome });
  }

  /**
   * Proposes a membership change; resolves with the state machine's answer once applied
   * here. Leader only; one change at a time (another pending answers UNAVAILABLE, retry).
   */
  proposeConfChange(change: ConfChange): Promise<unknown> {
    if (this.stopped) return Promise.reject(new DsyncError(ErrorCode.UNAVAILABLE, 'node is shutting down'));
    const outcome = this.raft.proposeConfChange(change);
    if (!outcome.ok) {
      if (outcome.reason === 'not-leader') return Promise.reject(this.host.notLeader(this.group));
      return Promise.reject(new DsyncError(ErrorCode.UNAVAILABLE,
        `group ${this.group} cannot take a membership change right now (${outcome.reason}); retry shortly`, { retryAfterMs: overloadRetryAfterMs }));
    }
    this.host.noteAwake(this);
    this.schedule();
    return new Promise((resolve, reject) => {
      this.proposals.set(outcome.index, { term: outcome.term, outcome: { applied: resolve, failed: reject } });
    });
  }

  /** Leader only: hands leadership to voter `to` (Raft's TimeoutNow); a no-op otherwise. */
  transferLeadership(to: NodeId): void {
    if (this.stopped) return;
    this.raft.transferLeadership(to);
    this.host.noteAwake(this);
    this.schedule();
  }

  /**
   * Whether a Ready is being persisted now. A proposer that batches (the queue service)
   * may hold what arrives meanwhile and propose it together when the oldest one is done
   * (whenReadyDone): one entry per fsync instead of one per turn.
   */
  get persisting(): boolean {
    return this.flights.length > 0 || this.snapshotInFlight;
  }

  /** Readys in flight now, and the most at once since start (the simulator checks the pipeline is used). */
  get pipeline(): { readonly inFlight: number; readonly maxSeen: number } {
    return { inFlight: this.flights.length, maxSeen: this.flightsMaxSeen };
  }

  /**
   * Calls `fn` once the oldest Ready being persisted is done, before the next Ready is
   * taken (so what fn proposes goes into it); at once when none is. Dropped if the runner
   * stops first (its proposers' waiters fail then anyway).
   */
  whenReadyDone(fn: () => void): void {
    if (!this.persisting) {
      fn();
      return;
    }
    this.readyDoneCallbacks.push(fn);
  }

  /** Resolves once this replica has applied everything committed before the call (ReadIndex). */
  readBarrier(): Promise<void> {
    if (this.reads.size >= raftReadRequestsPendingMax) {
      return Promise.reject(new DsyncError(ErrorCode.UNAVAILABLE, 'too many linearizable reads pending; retry shortly'));
    }
    const key = this.nextReadId++;
    const asked = this.raft.readIndex(encodeReadContext(this.host.env.bootNonce, key));
    this.host.noteAwake(this);
    if (!asked) return Promise.reject(this.host.notLeader(this.group));
    this.schedule();
    return new Promise((resolve, reject) => {
      this.reads.set(key, { issuedTick: this.ticks, index: 0, resolve, reject });
    });
  }

  step(received: Message): void {
    if (this.stopped) return;
    const message = received;
    // A leader's heartbeat commits at most what this replica acknowledged (min(match, commit)),
    // so a commit past its log means the log it acknowledged is gone: its data directory was
    // wiped or lost. Raft cannot make that safe (its votes and acks are forgotten); stop and say so.
    if (message.type === MessageType.Heartbeat && message.commit > this.appliedIndex) {
      const last = this.raft.status().lastIndex;
      if (message.commit > last) {
        this.host.fatal(`group ${this.group}: leader ${message.from} commits up to ${message.commit}, which this replica acknowledged, `
          + `but its log ends at ${last}: its data directory was wiped or lost. A node that lost its data must rejoin under a new id `
          + '(dsync cluster remove OLD_ID, then dsync node --join with a new id)');
        this.stop('the replica lost its log');
        return;
      }
    }
    const snap = message.type === MessageType.Snap ? message.snapshot : null;
    if (snap !== null && this.sm.admitSnapshot !== undefined && snap.meta.index > this.raft.status().commit
      && !this.sm.admitSnapshot(snap, message.from, () => this.step(message))) return;
    const leader = this.raft.leaderId;
    // Quiesced, a follower's election clock stood still; woken by someone else's message (a
    // peer's pre-vote), it counts its leader's node's silence instead, as it would have
    // counted missed heartbeats: it grants once the leader is gone that long, not an
    // election timeout after the first pre-vote.
    if (this.raft.quiesced && message.from !== leader && leader !== '' && leader !== this.host.nodeId) {
      this.raft.wake(this.host.silentTicks(leader));
    }
    this.raft.step(message);
    this.host.noteAwake(this);
    this.schedule();
  }

  tick(): void {
    if (this.stopped) return;
    this.ticks++;
    this.expireReads();
    this.raft.tick();
    // A leader with nothing in flight here (the core checks its followers) quiesces, unless it
    // no longer hears a quorum: it must stay awake for check-quorum to depose it.
    if (this.role === Role.Leader && !this.persisting && this.proposals.size === 0 && this.reads.size === 0
      && this.readsAwaitingApply.length === 0 && this.host.hearsQuorum(this.raft.voterIds)) this.raft.maybeQuiesce();
    this.schedule();
  }

  /** Nothing for the tick timer to do: the replica is quiesced and no read waits for its timeout here. */
  get sleeping(): boolean {
    return this.stopped || (this.raft.quiesced && this.reads.size === 0 && this.readsAwaitingApply.length === 0);
  }

  /** Ends quiescence: `silentTicks` since this node last heard from the group's leader (see Raft.wake). */
  wake(silentTicks: number): void {
    if (this.stopped) return;
    this.raft.wake(silentTicks);
    this.host.noteAwake(this);
    this.schedule();
  }

  /**
   * Fails reads whose ReadIndex got no answer in raftReadTimeoutTicks. Raft messages are
   * unreliable (a follower's forwarded ReadIndex, or the leader's answer, may be dropped)
   * and nothing resends them; without this the read, and the client request behind it,
   * would wait forever. Reads are kept in issue order, so the scan stops at the first young one.
   */
  private expireReads(): void {
    for (const [key, w] of this.reads) {
      if (this.ticks - w.issuedTick < this.host.timing.readTimeoutTicks) break;
      this.reads.delete(key);
      w.reject(new DsyncError(ErrorCode.UNAVAILABLE,
        `group ${this.group}: the read got no ReadIndex answer within ${this.host.timing.readTimeoutTicks * raftTickMs} ms; retry`));
    }
  }

  status(): GroupStatusView {
    const s = this.raft.status();
    return schema.GroupStatus.create({
      group: this.group, leaderId: s.leader, term: s.term, commit: s.commit, applied: this.appliedIndex, lastIndex: s.lastIndex,
      role: roleNames[s.role], voters: [...s.conf.voters], learners: [...s.conf.learners], quiesced: this.raft.quiesced,
    });
  }

  /**
   * Graceful shutdown: writes the commit-only hard state kept back (unwrittenHardState),
   * so a clean restart applies everything this replica knew committed without waiting
   * for a leader. Not needed for safety; the WAL's close() then makes it durable.
   */
  writeKeptHardState(): void {
    if (this.stopped || this.unwrittenHardState === null || this.snapshotInFlight) return;
    const hs = this.unwrittenHardState;
    this.unwrittenHardState = null;
    try {
      this.host.storage.append(this.group, hs, []);
    } catch (err) {
      // A failed WAL already stopped this node's writes; the commit index is recomputed anyway.
      this.host.log.warn('the commit index was not written at shutdown', { group: this.group, err: String(err) });
    }
  }

  /** Stops driving this replica: no ticks, no steps, waiters fail with `reason` (UNAVAILABLE). */
  stop(reason = 'node is shutting down'): void {
    this.stopped = true;
    this.abortSnapshotJob();
    this.readyDoneCallbacks = [];
    this.releaseWalReservation(null);
    this.failWaiters(new DsyncError(ErrorCode.UNAVAILABLE, reason));
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  /** Hands back the reservation of entries now queued in the WAL (all of it with null: they never will be). */
  private releaseWalReservation(appended: readonly Entry[] | null): void {
    if (this.walBytesReserved === 0) return;
    let bytes = this.walBytesReserved;
    if (appended !== null) {
      bytes = Math.min(bytes, entriesBytes(appended));
    }
    this.walBytesReserved -= bytes;
    this.host.releaseWal(bytes);
    assert(this.walBytesReserved >= 0, 'WAL reservation accounting');
  }

  private schedule(): void {
    if (this.scheduled || this.stopped || this.snapshotInFlight || this.flights.length >= raftReadysInFlightMax) return;
    this.scheduled = true;
    this.host.requestReady(this);
  }

  /** The host's ready pass (GroupHost.readyPass) takes this runner's next Ready. */
  runReady(): void {
    this.scheduled = false;
    this.processReady();
  }

  /**
   * Takes the next Ready while earlier ones are still being persisted (pipelined writes,
   * at most raftReadysInFlightMax in flight): its committed entries, durable here already
   * (the core hands out no others), are applied now; its entries and hard state go to the
   * WAL; its messages leave once its write (and so every earlier one) is durable, except
   * App/Heartbeat messages whose term is durable here, which leave at once (etcd's: the
   * leader writes its disk in parallel with replicating; the core counts its own log
   * toward commit only once persisted, so a commit still needs a majority of fsyncs).
   * Completions are taken strictly in WAL order (completeFlights).
   */
  private processReady(): void {
    if (this.stopped || this.snapshotInFlight || this.flights.length >= raftReadysInFlightMax || !this.raft.hasReady()) return;
    const rd = this.raft.ready();
    this.host.traffic.readys++;
    if (rd.snapshot !== null) {
      void this.processSnapshotReady(rd);
      return;
    }
    if (latencyTrace !== null) traceReady(this.group, rd);
    this.applyReady(rd);
    if (rd.softState !== null) this.onSoftState(rd.softState.leader, rd.softState.role);
    this.host.env.observe?.afterAdvance(this.group, this.raft, rd);
    const wal = this.host.storage;
    const hs = rd.hardState;
    // The commit index is volatile state in Raft (a restart recomputes it): a hard state
    // whose only change is the commit index is not written on its own but rides with the
    // next write. Term and vote changes are always written.
    const termOrVoteChanged = hs !== null && (hs.term !== this.writtenTerm || hs.vote !== this.writtenVote);
    let seq = 0;
    let written: HardState | null = null;
    if (rd.entries.length > 0 || termOrVoteChanged) {
      written = hs ?? this.unwrittenHardState;
      this.unwrittenHardState = null;
      try {
        seq = wal.append(this.group, written, rd.entries);
        latencyTrace?.mark('walQueued', rd.entries[rd.entries.length - 1]?.index ?? 0, seq);
      } catch (err) {
        // Without durable storage this replica must not say anything more: stop the node.
        this.host.fatal(`group ${this.group} could not persist its log: ${(err as Error).message}`);
        return;
      }
      this.releaseWalReservation(rd.entries);
      if (written !== null) {
        this.writtenTerm = written.term;
        this.writtenVote = written.vote;
      }
    } else {
      if (hs !== null) this.unwrittenHardState = hs;
      // Nothing to write, but its messages may acknowledge what earlier Readys write.
      seq = this.flights[this.flights.length - 1]?.seq ?? 0;
    }
    if (this.flights.length === 0 && seq <= wal.durable) {
      // Nothing outstanding: all of it is durable already.
      this.finishReady(rd, rd.messages, written);
    } else {
      let later: readonly Message[] = rd.messages;
      if (rd.messages.length > 0) {
        const early: Message[] = [];
        const rest: Message[] = [];
        for (const m of rd.messages) {
          if ((m.type === MessageType.App || m.type === MessageType.Heartbeat) && m.term <= this.durableTerm) early.push(m);
          else rest.push(m);
        }
        this.host.send(this.group, early);
        later = rest;
      }
      this.flights.push({ rd, seq, later, written });
      if (this.flights.length > this.flightsMaxSeen) this.flightsMaxSeen = this.flights.length;
      this.watchDurable();
    }
    this.maybeCompact();
    if (this.raft.hasReady()) this.schedule();
  }

  /** Waits (one whenDurable at a time) for the oldest flight's write, then completes what is durable. */
  private watchDurable(): void {
    const head = this.flights[0];
    if (this.watchingDurable || head === undefined || this.stopped) return;
    this.watchingDurable = true;
    this.host.storage.whenDurable(head.seq).then(() => {
      this.watchingDurable = false;
      this.completeFlights();
    }, (err: unknown) => {
      this.watchingDurable = false;
      this.host.fatal(`group ${this.group} could not persist its log: ${(err as Error).message}`);
    });
  }

  /** Completes, in order, every flight whose write is durable; then watches the next. */
  private completeFlights(): void {
    if (this.stopped) return;
    const durable = this.host.storage.durable;
    let done = 0;
    while (done < this.flights.length && (this.flights[done] as ReadyFlight).seq <= durable) done++;
    if (done === 0) {
      this.watchDurable();
      return;
    }
    const completed = this.flights.splice(0, done);
    for (const f of completed) this.finishReady(f.rd, f.later, f.written);
    this.runReadyDoneCallbacks();
    this.watchDurable();
    this.schedule();
  }

  /** Ready rd (and every one before it) is durable: send what waited for that, tell the core. */
  private finishReady(rd: Ready, later: readonly Message[], written: HardState | null): void {
    if (written !== null) this.durableTerm = Math.max(this.durableTerm, written.term);
    if (latencyTrace !== null && rd.entries.length > 0) latencyTrace.mark('flightDone', rd.entries[rd.entries.length - 1]?.index ?? 0, this.group);
    this.host.send(this.group, later);
    this.raft.persisted(rd.number);
  }

  private runReadyDoneCallbacks(): void {
    if (this.readyDoneCallbacks.length === 0) return;
    const callbacks = this.readyDoneCallbacks;
    this.readyDoneCallbacks = [];
    for (const fn of callbacks) fn();
  }

  /**
   * A Ready with the leader's snapshot, alone: every earlier Ready durable first, the
   * snapshot (which makes the WAL ignore the group's earlier records) durable before
   * anything after it is written, then the state machine replaced.
   */
  private async processSnapshotReady(rd: Ready): Promise<void> {
    // Entries may follow the snapshot (an append stepped after it in the same turn); nothing is committed past it yet.
    assert(rd.snapshot !== null && rd.committedEntries.length === 0, 'a snapshot Ready hands out no committed entries');
    this.snapshotInFlight = true;
    const wal = this.host.storage;
    const hs = rd.hardState;
    try {
      const last = this.flights[this.flights.length - 1];
      if (last !== undefined) {
        await wal.whenDurable(last.seq);
        if (this.stopped) return;
        this.completeFlights();
      }
      await wal.saveSnapshot(this.group, rd.snapshot, { replacesLog: true });
      // Dropped meanwhile: its tombstone may be queued, and nothing may follow it.
      if (this.stopped) return;
      const written = hs ?? this.unwrittenHardState;
      this.unwrittenHardState = null;
      if (written !== null || rd.entries.length > 0) {
        const seq = wal.append(this.group, written, rd.entries);
        this.releaseWalReservation(rd.entries);
        if (written !== null) {
          this.writtenTerm = written.term;
          this.writtenVote = written.vote;
        }
        if (seq > wal.durable) await wal.whenDurable(seq);
        if (written !== null) this.durableTerm = Math.max(this.durableTerm, written.term);
      }
    } catch (err) {
      this.host.fatal(`group ${this.group} could not persist its log: ${(err as Error).message}`);
      return;
    }
    if (this.stopped) return;
    assert(this.flights.length === 0, 'nothing was taken while the snapshot was persisted');
    this.host.send(this.group, rd.messages);
    this.applyReady(rd);
    if (rd.softState !== null) this.onSoftState(rd.softState.leader, rd.softState.role);
    this.raft.persisted(rd.number);
    this.host.env.observe?.afterAdvance(this.group, this.raft, rd);
    this.snapshotInFlight = false;
    this.maybeCompact();
    this.runReadyDoneCallbacks();
    if (this.raft.hasReady()) this.schedule();
  }

  /** Installs the Ready's snapshot, applies its committed entries, serves its reads. */
  private applyReady(rd: Ready): void {
    if (rd.snapshot !== null) {
      // The state it was writing is gone; it would also be older than this one.
      this.abortSnapshotJob();
      this.sm.restore(rd.snapshot.data);
      this.counts.snapshotsInstalled++;
      this.appliedIndex = rd.snapshot.meta.index;
      this.appliedTerm = rd.snapshot.meta.term;
      this.snapshotIndex = this.appliedIndex;
      this.rejectProposalsUpTo(this.appliedIndex);
    }
    for (const entry of rd.committedEntries) this.applyEntry(entry);
    this.raft.appliedTo(logIndex(this.appliedIndex));
    for (const rs of rd.readStates) {
      const key = decodeReadContext(this.host.env.bootNonce, rs.context);
      const waiter = this.reads.get(key);
      if (waiter === undefined) continue;
      this.reads.delete(key);
      waiter.index = rs.index;
      if (this.appliedIndex >= rs.index) waiter.resolve();
      else this.readsAwaitingApply.push(waiter);
    }
    this.releaseReads();
  }

  private applyEntry(entry: Entry): void {
    assert(entry.index === this.appliedIndex + 1, `group ${this.group} applies ${entry.index} after ${this.appliedIndex}`);
    this.appliedIndex = entry.index;
    this.appliedTerm = entry.term;
    let result: unknown = undefined;
    if (entry.type === EntryType.Normal && entry.data.length > 0) result = this.sm.apply(entry);
    else if (entry.type === EntryType.ConfChange && this.sm.applyConfChange !== undefined) result = this.sm.applyConfChange(entry, decodeConfChange(entry.data));
    const waiter = this.proposals.get(entry.index);
    if (waiter === undefined) return;
    this.proposals.delete(entry.index);
    this.host.noteAnswered();
    if (waiter.term === entry.term) waiter.outcome.applied(result);
    else waiter.outcome.failed(new DsyncError(ErrorCode.UNAVAILABLE, 'leadership changed before the request committed; retry'));
  }

  private rejectProposalsUpTo(index: number): void {
    for (const [i, w] of this.proposals) {
      if (i <= index) {
        this.proposals.delete(i);
        w.outcome.failed(new DsyncError(ErrorCode.UNAVAILABLE, 'the log was replaced by a snapshot before the request was applied; retry'));
      }
    }
  }

  private releaseReads(): void {
    if (this.readsAwaitingApply.length === 0) return;
    let kept = 0;
    for (const w of this.readsAwaitingApply) {
      if (this.appliedIndex >= w.index) w.resolve();
      else this.readsAwaitingApply[kept++] = w;
    }
    this.readsAwaitingApply.length = kept;
  }

  private onSoftState(leader: NodeId | '', role: Role): void {
    const wasLeader = this.role === Role.Leader;
    const leaderChanged = leader !== this.leaderId;
    this.leaderId = leader;
    this.role = role;
    if (wasLeader && role !== Role.Leader) {
      this.releaseWalReservation(null);
      // Proposals may still commit under the next leader; clients retry them with the same
      // client id + sequence, which the state machine applies once.
      if (this.hasWaiters) this.failWaiters(new DsyncError(ErrorCode.UNAVAILABLE, 'this node lost leadership before the request committed; retry'));
    } else if (leaderChanged && this.hasReadWaiters) {
      this.failReads(new DsyncError(ErrorCode.UNAVAILABLE, 'the leader changed during a read; retry'));
    }
    // Every term is one election round (won or not); a term skipped between two soft-state changes is counted at the second.
    const termNow = Number(this.raft.status().term);
    if (termNow > this.termCounted) this.counts.terms += termNow - this.termCounted;
    this.termCounted = Math.max(this.termCounted, termNow);
    if (leaderChanged && leader !== '') this.counts.leaderChanges++;
    if (leaderChanged || wasLeader !== (role === Role.Leader)) {
      this.host.log.info('raft leadership', { group: this.group, leader, role: roleNames[role], term: this.raft.status().term });
      this.sm.onLeaderChange?.(role === Role.Leader, leader);
    }
  }

  private failWaiters(err: DsyncError): void {
    for (const w of this.proposals.values()) w.outcome.failed(err);
    this.proposals.clear();
    this.failReads(err);
  }

  /** Whether a leader change has anyone to tell: the error (with its stack) is built only then. */
  private get hasWaiters(): boolean {
    return this.proposals.size > 0 || this.hasReadWaiters;
  }

  private get hasReadWaiters(): boolean {
    return this.reads.size > 0 || this.readsAwaitingApply.length > 0;
  }

  private failReads(err: DsyncError): void {
    for (const w of this.reads.values()) w.reject(err);
    this.reads.clear();
    for (const w of this.readsAwaitingApply) w.reject(err);
    this.readsAwaitingApply.length = 0;
  }

  private maybeCompact(): void {
    if (this.snapshotJob !== null) return;
    if (this.appliedIndex - this.snapshotIndex < (this.host.env.snapshotEntriesThreshold ?? snapshotEntriesThreshold)) return;
    const index = logIndex(this.appliedIndex);
    const snapTerm = term(this.appliedTerm);
    const conf = this.raft.status().conf;
    if (this.sm.beginSnapshot === undefined) {
      this.compact(index, snapTerm, conf, this.sm.snapshot());
      return;
    }
    this.snapshotJob = { job: this.sm.beginSnapshot(), index, term: snapTerm, conf };
    this.host.env.scheduler.defer(this.snapshotStepBound);
  }

  /** One slice of the snapshot being written; the next one on a later turn (entries apply in between). */
  private snapshotStep(): void {
    const s = this.snapshotJob;
    if (s === null || this.stopped) return;
    const data = s.job.step();
    if (data === null) {
      this.host.env.scheduler.defer(this.snapshotStepBound);
      return;
    }
    this.snapshotJob = null;
    this.compact(s.index, s.term, s.conf, data);
    this.maybeCompact();
  }

  private abortSnapshotJob(): void {
    this.snapshotJob?.job.abort();
    this.snapshotJob = null;
  }

  private compact(index: LogIndex, snapTerm: Term, conf: ConfState, data: Uint8Array): void {
    this.raft.compact(index, data);
    this.snapshotIndex = index;
    const snapshot = { meta: { index, term: snapTerm, conf }, data };
    const persist = this.sm.persistSnapshot?.() ?? null;
    const save = (): Promise<void> => this.host.storage.saveSnapshot(this.group, snapshot);
    (persist === null ? save() : persist.ready.then(save).then(() => persist.saved())).catch((err: unknown) => {
      this.host.log.error('snapshot save failed', { group: this.group, err: String(err) });
    });
  }
}

/** The runner's view of the WAL (server/storage/wal.ts); test/sim passes a simulated disk. */
export interface RaftStorage {
  /** Queues entries, then the hard state that may commit them; returns the batch's sequence number. */
  append(group: GroupId, hardState: HardState | null, entries: readonly Entry[]): number;
  /** Highest sequence number known durable. */
  readonly durable: number;
  /** Whether `bytes` more of proposed entries fit while leaving room for what Raft must persist. */
  hasRoomFor(bytes: number): boolean;
  whenDurable(seq: number): Promise<void>;
  /** Optional: starts writing what was appended so far now, instead of at the end of the current task. */
  wakeWorker?(): void;
  saveSnapshot(group: GroupId, snapshot: Snapshot, opts?: SaveSnapshotOptions): Promise<void>;
  /** Forgets the group for good (a tombstone): a restart does not recover it; its records are reclaimed. */
  dropGroup(group: GroupId): Promise<void>;
  close(): Promise<void>;
}

/** Everything a GroupHost needs from its node: the real node (server/main.ts) or a simulated one. */
export interface GroupHostEnv {
  readonly nodeId: NodeId;
  readonly storage: RaftStorage;
  readonly recovered: ReadonlyMap<GroupId, RecoveredGroup>;
  /** Groups dropped from this node before this start (the WAL's tombstones): never hosted again. */
  readonly dropped?: ReadonlySet<GroupId>;
  /** Sends one encoded RaftBatch to a peer (best effort: Raft retries what is lost). */
  sendToPeer(peer: NodeId, batch: Uint8Array): void;
  /** Bytes waiting in the link to `peer` (snapshot chunks are paced by it; absent: always room). */
  peerQueuedBytes?(peer: NodeId): number;
  readonly clock: MonotonicClock;
  readonly scheduler: Scheduler;
  readonly log: Logger;
  /** NOT_LEADER naming `leader` (UNAVAILABLE when none is known) for a request about `what`. */
  notLeader(what: string, leader: NodeId | ''): DsyncError;
  /** This replica cannot go on safely (storage failed): stop the node, never keep voting. */
  fatal(message: string): void;
  /** Spreads election timeouts; distinct per node and per process (a restart draws anew). */
  readonly seed: number;
  /**
   * readContextNonceBytes bytes, distinct per node and per boot (random on a node; the
   * simulator draws them from its seed): prefixes every ReadIndex context this process issues.
   */
  readonly bootNonce: Uint8Array;
  /** test/sim only: sees every Ready once handed out and applied (the safety checker's view of a replica). */
  readonly observe?: RaftObserver;
  /** Compact after this many applied entries instead of snapshotEntriesThreshold (the node setting snapshot-entries; small in test/sim). */
  readonly snapshotEntriesThreshold?: number;
  /** test/sim only: cut snapshot messages into chunks of this many bytes (default raftSnapshotChunkBytes). */
  readonly snapshotChunkBytes?: number;
  /** This node's election timeout range and heartbeat interval, in ticks (the node's settings; default core/constants.ts). */
  readonly timing?: RaftTimingTicks;
}

/** Raft timing of every group on a node, in ticks of raftTickMs. */
export interface RaftTimingTicks {
  readonly electionTicksMin: number;
  /** Exclusive: randomized timeouts are drawn from [electionTicksMin, electionTicksMax). */
  readonly electionTicksMax: number;
  readonly heartbeatTicks: number;
}

/** The defaults: today's constants. */
export const defaultRaftTiming: RaftTimingTicks = { electionTicksMin: electionTimeoutTicksMin, electionTicksMax: electionTimeoutTicksMax,
  heartbeatTicks: heartbeatIntervalTicks };

/** Watches a group's replica without changing it (test/sim feeds its checkers from here). */
export interface RaftObserver {
  /**
   * After a Ready was handed out and its committed entries applied (its write may still be
   * in flight; a snapshot Ready: after it was persisted and installed).
   */
  afterAdvance(group: GroupId, raft: Raft, rd: Ready): void;
}

/** Groups hosted on a node, as services see them (ARCHITECTURE.md, "Layout"). */
export interface GroupRegistry {
  readonly group0: GroupRunner;
  /** The replica of `group`, started (or restarted from the WAL) if not hosted yet. */
  ensure(group: GroupId, sm: StateMachine, bootstrap: ConfState): GroupRunner;
  /**
   * Stops hosting `group` for good: its waiters fail with UNAVAILABLE, and a tombstone in
   * the WAL makes a restart forget it and lets compaction reclaim its records. Group ids
   * are never reused: ensure() of a dropped group is a bug.
   */
  drop(group: GroupId): void;
  /** Whether `group` was dropped from this node, in this process or before (its tombstone). */
  isDropped(group: GroupId): boolean;
  /** The leader this node believes `group` has ('' when unknown or not hosted). */
  leaderOf(group: GroupId): NodeId | '';
  /** Milliseconds since `peer`'s last Raft batch arrived here (Infinity: never): liveness as this node sees it. */
  sinceHeardMs(peer: NodeId): number;
}

/** Per node: the WAL, the tick timer, and the peer message batching shared by every group. */
export class GroupHost implements GroupRegistry {
  readonly groups = new Map<GroupId, GroupRunner>();
  /** The groups the tick timer ticks: all but the quiesced ones (GroupRunner.sleeping). */
  private readonly awake = new Set<GroupRunner>();
  /** Ticks of this host's timer: every heartbeatTicks-th one sends the coalesced heartbeats. */
  private hostTicks = 0;
  /** Every node that is a member of a group hosted here, recomputed each heartbeat interval. */
  private peersOfGroups: NodeId[] = [];
  private readonly outbox = new Map<NodeId, ReturnType<typeof toWire>[]>();
  /** Heartbeats and responses waiting for the next heartbeat interval, per peer (see RaftBatch in dsync.proto). */
  private readonly heartbeats = new Map<NodeId, ReturnType<typeof heartbeatToWire>[]>();
  /** hostTicks when each peer was last sent a batch: an idle peer gets an empty one (liveness) every livenessTicks. */
  private readonly sentAtTick = new Map<NodeId, number>();
  /** Ticks between liveness batches to a peer nothing else was sent to: electionTimeoutHeartbeatsMin per shortest election timeout. */
  private readonly livenessTicks: number;
  private flushScheduled = false;
  /** Runners with a Ready to take in the next ready pass, in the order they asked. */
  private readonly readyQueue = new Set<GroupRunner>();
  private readyPassScheduled = false;
  /** A ready pass is running: what it sends is flushed at its end, in the same turn. */
  private inReadyPass = false;
  /** The ready pass answered a proposer (its reply goes out in the next turn); see readyPass. */
  private answeredInPass = false;
  /** Something other than an App without entries (news of a commit) was queued for a peer since the last flush. */
  private outboxUrgent = false;
  /** A flush two turns from now is pending (readyPass); a send outside a pass still flushes in a microtask. */
  private flushLaterScheduled = false;
  private readonly flushLaterBound = (): void => this.env.scheduler.defer(() => {
    this.flushLaterScheduled = false;
    this.flush();
  });
  private readonly readyPassBound = (): void => this.readyPass();
  private readonly stopTicks: Cancel;
  private group0Runner: GroupRunner | null = null;
  /** Groups drop() stopped on this node (their ids are never reused). */
  private readonly droppedGroups = new Set<GroupId>();
  /** Entry bytes accepted as proposals (any group) but not yet appended to the shared WAL. */
  private walBytesReserved = 0;
  /** hostTicks when each peer's last well-formed Raft batch arrived: what quiesced followers count their leader's silence in. */
  private readonly heardAtTick = new Map<NodeId, number>();
  /** When each peer's last well-formed Raft batch arrived (clock.nowMs): liveness for membership checks. */
  private readonly heardAtMs = new Map<NodeId, number>();
  readonly log: Logger;
  readonly nodeId: NodeId;
  readonly storage: RaftStorage;
  /** Every group's timing, and how long a linearizable read waits for its ReadIndex answer (two longest election timeouts). */
  readonly timing: RaftTimingTicks & { readonly readTimeoutTicks: number };
  private readonly flushBound = (): void => this.flush();
  /** Snapshot messages on their way to each peer in chunks, oldest first (one per group). */
  private readonly snapshotSends = new Map<NodeId, SnapshotSend[]>();
  /** Snapshot messages being reassembled, by sender and group. */
  private readonly snapshotAssemblies = new Map<string, SnapshotAssembly>();
  /** Snapshot messages sent in chunks and reassembled here, since start (tests and /metrics). */
  readonly snapshotTransfers = { sent: 0, received: 0, discarded: 0 };
  /** Raft messages and peer frames this node sent and received, and Readys its groups took, since start (/metrics: work per entry). */
  readonly traffic = { messagesSent: 0, framesSent: 0, messagesReceived: 0, framesReceived: 0, readys: 0,
    /** Raft messages the cores handed to send, by MessageType (index raftMessageTypeNames.length - 1: Apps without entries). */
    sentByType: new Float64Array(raftMessageTypeNames.length) };

  constructor(readonly env: GroupHostEnv) {
    assert(env.bootNonce.length === readContextNonceBytes, `the boot nonce is ${readContextNonceBytes} bytes`);
    const timing = env.timing ?? defaultRaftTiming;
    assert(timing.heartbeatTicks > 0 && timing.electionTicksMin > timing.heartbeatTicks && timing.electionTicksMax > timing.electionTicksMin,
      'raft timing: heartbeat < election timeout min < max');
    this.timing = { ...timing, readTimeoutTicks: Math.max(raftReadTimeoutTicks, 2 * timing.electionTicksMax) };
    this.log = env.log;
    this.nodeId = env.nodeId;
    this.storage = env.storage;
    latencyTrace?.mark('node', 0, env.nodeId);
    for (const g of env.dropped ?? []) this.droppedGroups.add(g);
    this.livenessTicks = Math.max(this.timing.heartbeatTicks, Math.floor(this.timing.electionTicksMin / electionTimeoutHeartbeatsMin));
    this.stopTicks = env.scheduler.every(raftTickMs, () => this.tick());
  }

  /**
   * The node's one timer: ticks the groups that are awake, wakes quiesced followers whose
   * leader's node fell silent, and every heartbeat interval sends each peer one batch with
   * every group's heartbeats (empty when all are quiet: it is this node's liveness signal).
   */
  private tick(): void {
    this.hostTicks++;
    for (const g of this.awake) {
      g.tick();
      if (g.sleeping) this.awake.delete(g);
    }
    if (this.hostTicks % this.timing.heartbeatTicks === 0) {
      this.peersOfGroups = this.computePeersOfGroups();
      this.flushHeartbeats();
    }
    this.wakeQuiescedGroupsOfSilentPeers();
    if (this.snapshotSends.size > 0) this.pumpSnapshotSends();
    if (this.snapshotAssemblies.size > 0) this.dropStaleAssemblies();
  }

  /**
   * This host's ticks since `peer`'s node was last heard, at most the longest election
   * timeout. In ticks, not milliseconds: an awake follower's election clock counts its own
   * ticks, which run late when the process is starved of CPU; measured on the wall clock, a
   * loaded machine's late timers read as silence and quiesced groups changed leaders.
   */
  silentTicks(peer: NodeId): number {
    const at = this.heardAtTick.get(peer);
    return at === undefined ? this.timing.electionTicksMax : Math.min(this.timing.electionTicksMax, this.hostTicks - at);
  }

  /**
   * `runner` has a Ready to take: every group's Ready of a turn is taken in one deferred pass
   * (readyPass), so their WAL records share one worker wake-up and one fdatasync, and what
   * they send leaves at the end of that pass, one batch per peer, without a turn of its own.
   */
  requestReady(runner: GroupRunner): void {
    this.readyQueue.add(runner);
    if (this.readyPassScheduled) return;
    this.readyPassScheduled = true;
    this.env.scheduler.defer(this.readyPassBound);
  }

  private readyPass(): void {
    this.readyPassScheduled = false;
    const runners = [...this.readyQueue];
    this.readyQueue.clear();
    this.inReadyPass = true;
    try {
      // A runner with more to take asks again (requestReady): that goes to the next pass.
      for (const r of runners) r.runReady();
    } finally {
      this.inReadyPass = false;
    }
    // The leader's own fdatasync first, then its socket writes (which may hand the CPU to the
    // followers they wake): otherwise the WAL's wake-up waits for the end of this task.
    this.storage.wakeWorker?.();
    // A pass right after an answering one (the same Ready's held commit broadcast, say)
    // must not send that news early either: with only news queued, the pending flush does.
    if ((this.answeredInPass || this.flushLaterScheduled) && !this.outboxUrgent) {
      // All that is queued is news of a commit (Apps without entries, a new commit index):
      // the replies to the proposers that commit answered go first. They are written a turn
      // from now (the client connection's writer); these two turns from now, as before this
      // pass flushed at its end. Written first, they cost the replies a scheduler wake-up of
      // the followers on a loaded machine (bench:latency, apply -> reply p50 +60-120 us).
      this.answeredInPass = false;
      if (!this.flushLaterScheduled) {
        this.flushLaterScheduled = true;
        this.env.scheduler.defer(this.flushLaterBound);
      }
      return;
    }
    this.answeredInPass = false;
    this.flush();
  }

  /** A proposer was answered in the current ready pass. */
  noteAnswered(): void {
    if (this.inReadyPass) this.answeredInPass = true;
  }

  /** A runner got input (a message, proposal, read, transfer): tick it again unless it stayed quiesced. */
  noteAwake(runner: GroupRunner): void {
    if (!runner.sleeping) this.awake.add(runner);
  }

  /**
   * A quiesced follower hears no heartbeats, so its leader's death shows only as the
   * leader's node going silent: this node hears from every peer of its groups at least every
   * livenessTicks (an empty batch when nothing else goes there). After the shortest election
   * timeout of silence, such followers wake counting that silence as election time passed,
   * so they campaign (pre-vote first) when they would have without quiescence.
   */
  private wakeQuiescedGroupsOfSilentPeers(): void {
    const silentTicksMin = this.timing.electionTicksMin;
    let anySilent = false;
    for (const p of this.peersOfGroups) {
      if (this.silentTicks(p) >= silentTicksMin) {
        anySilent = true;
        break;
      }
    }
    if (!anySilent) return;
    for (const g of this.groups.values()) {
      if (!g.raft.quiesced) continue;
      const leader = g.raft.leaderId;
      if (leader === this.nodeId) {
        // A quiesced leader does not tick, so check-quorum cannot see that it was cut off from
        // its followers: it would go on calling itself leader (status, clients' redirects)
        // while the others elect. Awake, it heartbeats and steps down an election later.
        if (!this.hearsQuorum(g.raft.voterIds)) g.wake(0);
        continue;
      }
      if (leader === '') continue;
      const silent = this.silentTicks(leader);
      if (silent >= silentTicksMin) g.wake(silent);
    }
  }

  /** Whether this node and the voters it heard from within the shortest election timeout make a majority of `voters`. */
  hearsQuorum(voters: readonly NodeId[]): boolean {
    const silentTicksMin = this.timing.electionTicksMin;
    let heard = 0;
    for (const v of voters) if (v === this.nodeId || this.silentTicks(v) < silentTicksMin) heard++;
    return heard > voters.length / 2;
  }

  private computePeersOfGroups(): NodeId[] {
    const peers = new Set<NodeId>();
    for (const g of this.groups.values()) for (const p of g.raft.peerIds) peers.add(p);
    return [...peers].sort();
  }

  /**
   * One RaftBatch of coalesced heartbeats to every peer that has some queued, and an empty
   * one to each peer of a hosted group that was sent nothing for livenessTicks: a quiesced
   * follower's only sign that its leader's node lives.
   */
  private flushHeartbeats(): void {
    for (const peer of this.peersOfGroups) {
      if (!this.heartbeats.has(peer) && this.hostTicks - (this.sentAtTick.get(peer) ?? 0) >= this.livenessTicks) this.heartbeats.set(peer, []);
    }
    for (const [peer, heartbeats] of this.heartbeats) {
      this.traffic.messagesSent += heartbeats.length;
      this.traffic.framesSent++;
      this.env.sendToPeer(peer, schema.RaftBatch.encode({ messages: [], heartbeats }).finish());
      this.sentAtTick.set(peer, this.hostTicks);
    }
    this.heartbeats.clear();
  }

  get group0(): GroupRunner {
    assert(this.group0Runner !== null, 'group 0 is started before services use it');
    return this.group0Runner;
  }

  ensure(group: GroupId, sm: StateMachine, bootstrap: ConfState): GroupRunner {
    const existing = this.groups.get(group);
    if (existing !== undefined) return existing;
    assert(!this.droppedGroups.has(group), `group ${group} was dropped; group ids are never reused`);
    // The seed only spreads election timeouts; distinct per node and group is all it needs.
    let seed = group * 7919;
    for (const ch of this.nodeId) seed = (Math.imul(seed, 31) + ch.charCodeAt(0)) >>> 0;
    const runner = new GroupRunner(group, this, sm, this.env.recovered.get(group), bootstrap, seed ^ this.env.seed);
    this.groups.set(group, runner);
    this.awake.add(runner);
    if (group === 0) this.group0Runner = runner;
    return runner;
  }

  drop(group: GroupId): void {
    assert(group !== 0, 'group 0 is never dropped');
    assert(!this.droppedGroups.has(group), `group ${group} dropped twice`);
    this.droppedGroups.add(group);
    const runner = this.groups.get(group);
    if (runner !== undefined) {
      runner.stop('the group was dropped from this node');
      this.groups.delete(group);
      this.awake.delete(runner);
    }
    if (runner === undefined && !this.env.recovered.has(group)) return;
    this.storage.dropGroup(group).catch((err: unknown) => {
      this.env.fatal(`group ${group}: could not write its tombstone: ${(err as Error).message}`);
    });
  }

  leaderOf(group: GroupId): NodeId | '' {
    return this.groups.get(group)?.leader ?? '';
  }

  isDropped(group: GroupId): boolean {
    return this.droppedGroups.has(group);
  }

  /** Milliseconds since `peer`'s last Raft batch arrived (Infinity: never). */
  sinceHeardMs(peer: NodeId): number {
    const at = this.heardAtMs.get(peer);
    return at === undefined ? Number.POSITIVE_INFINITY : this.env.clock.nowMs() - at;
  }

  notLeader(group: GroupId): DsyncError {
    return this.env.notLeader(`group ${group}`, this.leaderOf(group));
  }

  send(group: GroupId, messages: readonly Message[]): void {
    if (messages.length === 0) return;
    let queued = false;
    const byType = this.traffic.sentByType;
    for (const m of messages) {
      const slot = m.type === MessageType.App && m.entries.length === 0 ? emptyAppTypeSlot : m.type;
      byType[slot] = (byType[slot] as number) + 1;
      if (coalescible(m)) {
        let beats = this.heartbeats.get(m.to);
        if (beats === undefined) {
          beats = [];
          this.heartbeats.set(m.to, beats);
        }
        beats.push(heartbeatToWire(group, m));
        continue;
      }
      queued = true;
      if (m.type !== MessageType.App || m.entries.length > 0) this.outboxUrgent = true;
      if (latencyTrace !== null) traceSent(group, m);
      let queue = this.outbox.get(m.to);
      if (queue === undefined) {
        queue = [];
        this.outbox.set(m.to, queue);
      }
      queue.push(toWire(group, m));
    }
    if (queued && !this.flushScheduled && !this.inReadyPass) {
      // Outside a ready pass these are acknowledgements of writes that just became durable
      // (completeFlights, run for every group whose write that fdatasync covered, in one
      // microtask run): they leave together as soon as those completions are done, not a
      // turn later.
      this.flushScheduled = true;
      queueMicrotask(this.flushBound);
    }
  }

  async stop(): Promise<void> {
    this.stopTicks();
    for (const g of this.groups.values()) g.writeKeptHardState();
    for (const g of this.groups.values()) g.stop();
    this.flush();
    await this.storage.close();
  }

  fatal(message: string): void {
    this.env.fatal(message);
  }

  /** Takes `bytes` of WAL room for a proposal; false (nothing taken) when the WAL is too far behind. */
  reserveWal(bytes: number): boolean {
    if (!this.storage.hasRoomFor(this.walBytesReserved + bytes)) return false;
    this.walBytesReserved += bytes;
    return true;
  }

  releaseWal(bytes: number): void {
    assert(bytes >= 0 && bytes <= this.walBytesReserved, `release ${bytes} of ${this.walBytesReserved} reserved WAL bytes`);
    this.walBytesReserved -= bytes;
  }

  /**
   * One RaftBatch frame per peer per turn, cut into several when the entries and snapshots
   * it carries pass raftBatchBytesMax. A single message too large for any frame (a snapshot
   * beyond frameBytesMax) is dropped and logged, never sent: Raft sends it again, and the
   * frame writer would refuse it.
   */
  private flush(): void {
    this.flushScheduled = false;
    this.outboxUrgent = false;
    latencyTrace?.mark('hostFlush');
    for (const [peer, messages] of this.outbox) {
      if (messages.length === 0) continue;
      this.sentAtTick.set(peer, this.hostTicks);
      let batch: ReturnType<typeof toWire>[] = [];
      let bytes = 0;
      for (const m of messages) {
        const size = wireBytesEstimate(m);
        if (m.snapshot !== null && m.snapshot !== undefined && size > this.snapshotChunkBytes) {
          this.startSnapshotSend(peer, m);
          continue;
        }
        if (size > frameBytesMax - raftFrameSlackBytes) {
          this.log.warn('a raft message is too large for a peer frame; not sent', { peer, group: m.group ?? 0, bytes: size });
          continue;
        }
        if (batch.length > 0 && bytes + size > raftBatchBytesMax) {
          this.sendBatch(peer, batch);
          batch = [];
          bytes = 0;
        }
        batch.push(m);
        bytes += size;
      }
      if (batch.length > 0) this.sendBatch(peer, batch);
      messages.length = 0;
    }
    if (this.snapshotSends.size > 0) this.pumpSnapshotSends();
  }

  private sendBatch(peer: NodeId, batch: ReturnType<typeof toWire>[]): void {
    this.traffic.messagesSent += batch.length;
    this.traffic.framesSent++;
    this.env.sendToPeer(peer, schema.RaftBatch.encode({ messages: batch }).finish());
  }

  private get snapshotChunkBytes(): number {
    return this.env.snapshotChunkBytes ?? raftSnapshotChunkBytes;
  }

  /**
   * Queues a snapshot message for `peer` in chunks. Raft sends the same snapshot again when
   * a transfer takes longer than its patience (it probes after an election timeout): that
   * one joins the transfer under way instead of restarting it, so a big snapshot over a slow
   * link still finishes. A newer snapshot of the group replaces an older transfer.
   */
  private startSnapshotSend(peer: NodeId, m: ReturnType<typeof toWire>): void {
    const group = m.group ?? 0;
    const index = wireNumber(m.snapshot?.index);
    const snapTerm = wireNumber(m.snapshot?.term);
    let sends = this.snapshotSends.get(peer);
    if (sends === undefined) {
      sends = [];
      this.snapshotSends.set(peer, sends);
    }
    const at = sends.findIndex((s) => s.group === group);
    const existing = at < 0 ? undefined : sends[at];
    if (existing !== undefined && existing.index === index && existing.term === snapTerm) return;
    const bytes = schema.RaftMessage.encode(m).finish();
    if (bytes.length > raftSnapshotTransferBytesMax) {
      this.log.warn('a raft snapshot is too large to transfer; not sent', { peer, group, bytes: bytes.length, limit: raftSnapshotTransferBytesMax });
      return;
    }
    const send: SnapshotSend = { group, index, term: snapTerm, bytes, offset: 0 };
    if (at >= 0) sends[at] = send;
    else sends.push(send);
    this.log.info('sending a raft snapshot in chunks', { peer, group, index, bytes: bytes.length });
  }

  /** A transfer whose sender went quiet (it died, or the link broke) must not hold its buffer for good. */
  private dropStaleAssemblies(): void {
    const nowMs = this.env.clock.nowMs();
    for (const [key, a] of this.snapshotAssemblies) {
      if (nowMs - a.lastChunkAtMs < raftSnapshotAssemblyIdleMsMax) continue;
      this.snapshotAssemblies.delete(key);
      this.snapshotTransfers.discarded++;
    }
  }

  /** Hands snapshot chunks to each peer's link while its write queue has room (one transfer at a time per peer). */
  private pumpSnapshotSends(): void {
    const chunkBytes = this.snapshotChunkBytes;
    for (const [peer, sends] of this.snapshotSends) {
      // Without a queue to watch (the simulator), a few chunks per call keep a transfer from flooding one turn.
      let budget = this.env.peerQueuedBytes === undefined ? 4 : Number.POSITIVE_INFINITY;
      while (sends.length > 0 && budget-- > 0 && (this.env.peerQueuedBytes?.(peer) ?? 0) < raftSnapshotSendQueueBytes) {
        const s = sends[0] as SnapshotSend;
        const data = s.bytes.subarray(s.offset, Math.min(s.bytes.length, s.offset + chunkBytes));
        this.env.sendToPeer(peer, schema.RaftBatch.encode({ chunks: [{ group: s.group, index: s.index, term: s.term, total: s.bytes.length, offset: s.offset, data }] }).finish());
        s.offset += data.length;
        if (s.offset >= s.bytes.length) {
          sends.shift();
          this.snapshotTransfers.sent++;
        }
      }
      if (sends.length === 0) this.snapshotSends.delete(peer);
    }
  }

  /**
   * One chunk of a snapshot message from `from`. Chunks of one transfer arrive in order over
   * the link; anything else (a gap after a reconnect, another snapshot) discards the assembly,
   * and Raft's own retry of the snapshot starts a new one. The whole message goes through the
   * same checks as any other before it is stepped.
   */
  private receiveChunk(from: NodeId, c: dsync.RaftMessageChunk.$Properties): ProtocolError | null {
    const bad = (why: string): ProtocolError => new ProtocolError(ErrorCode.BAD_PAYLOAD, `malformed raft snapshot chunk from ${from}: ${why}`, true);
    const group = wireNumber(c.group);
    const index = wireNumber(c.index);
    const snapTerm = wireNumber(c.term);
    const total = wireNumber(c.total);
    const offset = wireNumber(c.offset);
    const data = c.data ?? new Uint8Array(0);
    for (const v of [group, index, snapTerm, total, offset]) if (!Number.isSafeInteger(v) || v < 0) return bad(`field ${v} is not a non-negative safe integer`);
    if (total > raftSnapshotTransferBytesMax) return bad(`a message of ${total} bytes (limit ${raftSnapshotTransferBytesMax})`);
    if (data.length === 0 || offset + data.length > total) return bad(`chunk [${offset}, ${offset + data.length}) of a ${total}-byte message`);
    // Only for a group hosted here: anything else would be dropped once whole anyway.
    if (!this.groups.has(group as GroupId)) return null;
    const key = `${from}\u0000${group}`;
    let a = this.snapshotAssemblies.get(key);
    if (offset === 0) {
      if (a !== undefined) this.snapshotTransfers.discarded++;
      a = { index, term: snapTerm, bytes: new Uint8Array(total), received: 0, lastChunkAtMs: 0 };
      this.snapshotAssemblies.set(key, a);
    } else if (a === undefined || a.index !== index || a.term !== snapTerm || a.bytes.length !== total || a.received !== offset) {
      if (a !== undefined) {
        this.snapshotAssemblies.delete(key);
        this.snapshotTransfers.discarded++;
      }
      return null;
    }
    a.bytes.set(data, offset);
    a.received += data.length;
    a.lastChunkAtMs = this.env.clock.nowMs();
    if (a.received < total) return null;
    this.snapshotAssemblies.delete(key);
    let w: ReturnType<typeof schema.RaftMessage.decode>;
    try {
      w = schema.RaftMessage.decode(a.bytes);
    } catch (err) {
      return bad(`the reassembled message does not decode: ${(err as Error).message}`);
    }
    const malformed = checkWire(w, from, this.nodeId);
    if (malformed !== null) return malformed;
    if (w.type !== MessageType.Snap || wireNumber(w.group) !== group || wireNumber(w.snapshot?.index) !== index || wireNumber(w.snapshot?.term) !== snapTerm) {
      return bad('the reassembled message is not the snapshot its chunks named');
    }
    this.snapshotTransfers.received++;
    const m = fromWire(w);
    this.groups.get(m.group)?.step(m.message);
    return null;
  }

  /**
   * One RaftBatch pushed by `from` over its peer link. The whole batch is checked before
   * any of it is stepped; a malformed one is returned (and nothing stepped) so the caller
   * closes that link: a peer that sends it is broken or hostile, never worth a crash.
   */
  receive(from: NodeId, payload: Uint8Array): ProtocolError | null {
    let batch: ReturnType<typeof schema.RaftBatch.decode>;
    try {
      batch = schema.RaftBatch.decode(payload);
    } catch (err) {
      return new ProtocolError(ErrorCode.BAD_PAYLOAD, `undecodable raft batch from ${from}: ${(err as Error).message}`, true);
    }
    this.traffic.framesReceived++;
    this.traffic.messagesReceived += batch.messages.length + batch.heartbeats.length;
    for (const w of batch.messages) {
      const malformed = checkWire(w, from, this.nodeId);
      if (malformed !== null) return malformed;
    }
    const heartbeats: { group: GroupId; message: Message }[] = [];
    for (const h of batch.heartbeats) {
      const hb = heartbeatFromWire(h, from, this.nodeId);
      if (hb instanceof ProtocolError) return hb;
      heartbeats.push(hb);
    }
    this.heardAtMs.set(from, this.env.clock.nowMs());
    this.heardAtTick.set(from, this.hostTicks);
    for (const c of batch.chunks) {
      const malformed = this.receiveChunk(from, c);
      if (malformed !== null) return malformed;
    }
    for (const { group, message } of heartbeats) this.groups.get(group)?.step(message);
    for (const w of batch.messages) {
      const { group, message } = fromWire(w);
      if (latencyTrace !== null) traceReceived(group, message);
      const runner = this.groups.get(group);
      if (runner === undefined) continue;
      if (message.entries.length > 0 && !this.storage.hasRoomFor(this.walBytesReserved + entriesBytes(message.entries))) {
        // The WAL is behind: drop the append unanswered (the leader resends it) rather than overflow the WAL.
        this.log.debug('dropping a raft append while the WAL is behind', { peer: from, group, entries: message.entries.length });
        continue;
      }
      runner.step(message);
    }
    return null;
  }
}

/** A snapshot message on its way to one peer in chunks. */
interface SnapshotSend {
  readonly group: number;
  readonly index: number;
  readonly term: number;
  /** The encoded RaftMessage. */
  readonly bytes: Uint8Array;
  /** Bytes handed to the link so far. */
  offset: number;
}

interface SnapshotAssembly {
  readonly index: number;
  readonly term: number;
  readonly bytes: Uint8Array;
  received: number;
  /** clock.nowMs of the last chunk: an assembly idle for raftSnapshotAssemblyIdleMsMax is dropped. */
  lastChunkAtMs: number;
}

/** Room left in a peer frame for a RaftBatch's envelope beyond the estimates below. */
const raftFrameSlackBytes = 64 * 1024;

/** An upper estimate of a wire message's encoded size: its entries' and snapshot's bytes plus fixed fields. */
function wireBytesEstimate(m: ReturnType<typeof toWire>): number {
  let bytes = 128 + (m.context?.length ?? 0);
  for (const e of m.entries ?? []) bytes += 48 + (e.data?.length ?? 0);
  const s = m.snapshot;
  if (s !== null && s !== undefined) bytes += 128 + (s.data?.length ?? 0) + 72 * ((s.voters?.length ?? 0) + (s.learners?.length ?? 0));
  return bytes;
}

function entriesBytes(entries: readonly Entry[]): number {
  let bytes = 0;
  for (const e of entries) bytes += entryBytes(e);
  return bytes;
}

/** bench:latency's steps (DSYNC_LATENCY_TRACE): group 0's entries through a Ready. */
function traceReady(group: GroupId, rd: Ready): void {
  if (group !== 0 || latencyTrace === null) return;
  const last = rd.entries[rd.entries.length - 1];
  if (last !== undefined) latencyTrace.mark('ready', last.index);
  const applied = rd.committedEntries[rd.committedEntries.length - 1];
  if (applied !== undefined) latencyTrace.mark('apply', applied.index);
}

function traceSent(group: GroupId, m: Message): void {
  if (group !== 0 || latencyTrace === null) return;
  const last = m.entries[m.entries.length - 1];
  if (m.type === MessageType.App && last !== undefined) latencyTrace.mark('appQueued', last.index, m.to);
  else if (m.type === MessageType.AppResp) latencyTrace.mark('respQueued', m.index, m.to);
}

function traceReceived(group: GroupId, m: Message): void {
  if (group !== 0 || latencyTrace === null) return;
  const last = m.entries[m.entries.length - 1];
  if (m.type === MessageType.App && last !== undefined) latencyTrace.mark('appRecv', last.index, m.from);
  else if (m.type === MessageType.AppResp) latencyTrace.mark('respRecv', m.index, m.from);
}
