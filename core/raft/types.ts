// The public shape of one Raft replica (etcd-raft style): inputs are tick(),
// step(msg), propose(data), readIndex(ctx); output is a Ready value the caller
// persists (hardState, entries, snapshot) BEFORE sending most of its messages,
// reporting it with persisted(number); it applies committedEntries and reports
// appliedTo(index). Several Readys may be in flight (see raft.ts). No I/O, clock or randomness.

import type { LogIndex, NodeId, Term } from '../ids.js';
import type { Prng } from '../prng.js';

export const enum EntryType {
  Normal = 0,
  /** data is an encoded ConfChange (see encodeConfChange in confchange.ts). */
  ConfChange = 1,
}

export interface Entry {
  readonly term: Term;
  readonly index: LogIndex;
  readonly type: EntryType;
  /** Opaque payload; empty for the no-op a new leader appends. */
  readonly data: Uint8Array;
}

export interface HardState {
  readonly term: Term;
  /** '' when this replica has not voted in `term`. */
  readonly vote: NodeId | '';
  readonly commit: LogIndex;
}

export interface ConfState {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

export interface SnapshotMeta {
  readonly index: LogIndex;
  readonly term: Term;
  readonly conf: ConfState;
}

export interface Snapshot {
  readonly meta: SnapshotMeta;
  /** The application state machine's serialized state at meta.index. */
  readonly data: Uint8Array;
}

export const enum ConfChangeType {
  AddLearner = 0,
  /** Promote a learner (or add directly) as a voter. */
  AddVoter = 1,
  Remove = 2,
}

export interface ConfChange {
  readonly type: ConfChangeType;
  readonly node: NodeId;
  /**
   * Opaque bytes the application replicates with the change (etcd's ConfChange.Context):
   * dsync carries the member's addresses here, so one entry changes both the
   * configuration and the address book. Absent when empty.
   */
  readonly context?: Uint8Array;
}

export const enum MessageType {
  PreVote = 0,
  PreVoteResp = 1,
  Vote = 2,
  VoteResp = 3,
  App = 4,
  AppResp = 5,
  Heartbeat = 6,
  HeartbeatResp = 7,
  Snap = 8,
  /** Leader -> target of a leadership transfer: start an election now. */
  TimeoutNow = 9,
  /** Follower -> leader: forward a ReadIndex request (context identifies it). */
  ReadIndex = 10,
  ReadIndexResp = 11,
}

/**
 * Every MessageType's name, keyed by the enum, so adding a type without a name is a compile
 * error (a const enum has no reverse map); metrics label their counters with these.
 */
export const messageTypeNames = {
  [MessageType.PreVote]: 'PreVote',
  [MessageType.PreVoteResp]: 'PreVoteResp',
  [MessageType.Vote]: 'Vote',
  [MessageType.VoteResp]: 'VoteResp',
  [MessageType.App]: 'App',
  [MessageType.AppResp]: 'AppResp',
  [MessageType.Heartbeat]: 'Heartbeat',
  [MessageType.HeartbeatResp]: 'HeartbeatResp',
  [MessageType.Snap]: 'Snap',
  [MessageType.TimeoutNow]: 'TimeoutNow',
  [MessageType.ReadIndex]: 'ReadIndex',
  [MessageType.ReadIndexResp]: 'ReadIndexResp',
} as const satisfies { readonly [T in MessageType]: string };

export interface Message {
  readonly type: MessageType;
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: Term;
  /** App: term of the entry at `index` (prevLogTerm). Vote: last log term. */
  readonly logTerm: Term;
  /** App: prevLogIndex. AppResp: last index matched (or rejected index). Vote: last log index. */
  readonly index: LogIndex;
  readonly entries: readonly Entry[];
  readonly commit: LogIndex;
  readonly reject: boolean;
  /** AppResp rejecting: the follower's hint for fast backtracking (its last index, or conflict start). */
  readonly rejectHint: LogIndex;
  /** AppResp rejecting: term of the conflicting entry at rejectHint (0 if none). */
  readonly rejectHintTerm: Term;
  readonly snapshot: Snapshot | null;
  /** ReadIndex / heartbeat context (identifies a read request); empty when unused. */
  readonly context: Uint8Array;
}

export const enum Role {
  Follower = 0,
  PreCandidate = 1,
  Candidate = 2,
  Leader = 3,
}

export interface SoftState {
  readonly leader: NodeId | '';
  readonly role: Role;
}

export interface ReadState {
  /** Linearizable reads for `context` may be served once applied index >= index. */
  readonly index: LogIndex;
  readonly context: Uint8Array;
}

export interface Ready {
  /** 1, 2, ... per replica (restarting at 1 with the process): what persisted() names. */
  readonly number: number;
  /** Present when term/vote/commit changed since the last advance(); persist it. */
  readonly hardState: HardState | null;
  /** Entries to append to stable storage (may overwrite a conflicting suffix from entries[0].index on). */
  readonly entries: readonly Entry[];
  /** Snapshot to persist and install in the state machine before applying committedEntries. */
  readonly snapshot: Snapshot | null;
  /** Messages to send only AFTER hardState/entries/snapshot above are durable. */
  readonly messages: readonly Message[];
  /** Entries now committed and not yet handed out; apply them in order. */
  readonly committedEntries: readonly Entry[];
  readonly readStates: readonly ReadState[];
  /** Present when leader or role changed. */
  readonly softState: SoftState | null;
}

export interface RaftConfig {
  readonly id: NodeId;
  /** Ticks; the randomized timeout is drawn from [electionTicks, electionTicksMax). */
  readonly electionTicks: number;
  /** Exclusive upper bound of the randomized election timeout, in ticks (default 2 * electionTicks). */
  readonly electionTicksMax?: number;
  readonly heartbeatTicks: number;
  readonly prng: Prng;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  readonly maxEntriesPerMsg: number;
  /** Entry data bytes per append message (one entry always goes, whatever its size); absent: no byte bound. */
  readonly maxBytesPerMsg?: number;
  readonly maxInflightMsgs: number;
}

/** Everything a replica persisted; the input to restart. */
export interface PersistedState {
  readonly hardState: HardState;
  readonly snapshot: Snapshot | null;
  /** Entries after the snapshot, in order, contiguous. */
  readonly entries: readonly Entry[];
  /** Membership when there is no snapshot (the bootstrap configuration). */
  readonly conf: ConfState;
}

export type ProposeOutcome =
  | { readonly ok: true; readonly index: LogIndex; readonly term: Term }
  /** not-leader: propose on the leader (leader is '' when unknown). */
  | { readonly ok: false; readonly reason: 'not-leader'; readonly leader: NodeId | '' }
  /** A leadership transfer is in progress; retry shortly. */
  | { readonly ok: false; readonly reason: 'transferring'; readonly leader: NodeId | '' }
  /** Only one membership change may be uncommitted at a time. */
  | { readonly ok: false; readonly reason: 'conf-change-pending'; readonly leader: NodeId | '' };

export interface RaftStatus {
  readonly id: NodeId;
  readonly term: Term;
  readonly role: Role;
  readonly leader: NodeId | '';
  readonly commit: LogIndex;
  readonly applied: LogIndex;
  readonly firstIndex: LogIndex;
  readonly lastIndex: LogIndex;
  readonly conf: ConfState;
}

/**
 * The replica itself (implemented in raft.ts as `class Raft implements RaftNode`,
 * constructed with `new Raft(config: RaftConfig, persisted: PersistedState)`).
 */
export interface RaftNode {
  tick(): void;
  step(msg: Message): void;
  /** Leader only: appends `data` and returns the index/term it was given. */
  propose(data: Uint8Array): ProposeOutcome;
  proposeConfChange(change: ConfChange): ProposeOutcome;
  /** Ask for a linearizable read point; answered later as a ReadState with the same context. Returns false when no leader is known. */
  readIndex(context: Uint8Array): boolean;
  transferLeadership(to: NodeId): void;
  hasReady(): boolean;
  /** The next Ready; may be called again before the earlier ones are persisted (see raft.ts). */
  ready(): Ready;
  /** Ready `number` and every one before it are durable (reported in order). */
  persisted(number: number): void;
  /** The committed entries handed out up to `index` are applied. */
  appliedTo(index: number): void;
  /** One Ready at a time: the last ready() was persisted, sent and applied (persisted + appliedTo). */
  advance(): void;
  /** The application took a snapshot of its state at `index` (<= applied): discard the log up to it. */
  compact(index: LogIndex, data: Uint8Array): void;
  status(): RaftStatus;
}
