// The queue service on the seam (opcodes 200-299): topics in group 0 (TopicsMachine,
// over core/queue/topics), and every partition its own Raft group (PartitionMachine)
// on the replicas the ring picked when the topic was created.
//
// - Groups: whenever the topic table changes (an entry applied, a snapshot restored,
//   a restart replaying group 0), each node ensures the groups of the partitions it
//   hosts (a replica, or one a move under way is leaving) and drops the others it has:
//   deleted topics, and partitions that moved away (deferred: never inside an apply).
// - Moves (core/queue/rebalance.ts): every queueRebalanceCheckMs group 0's leader plans
//   moves (a node joined or left the voters, or was not heard for nodeDownMs) and
//   proposes them, each a compare and set on the partition's epoch; each partition's
//   leader takes the next membership step towards its placement (add learner, promote
//   once caught up, remove, never below a quorum of live voters), and once its group's
//   voters are the placement tells group 0's leader (QueueMoveDone), which proposes the
//   settle: the nodes left behind then drop the group and reclaim its storage. A removed
//   leader cannot commit (the new configuration's majority does not include it) and steps
//   down when its removal applies; clients follow NOT_LEADER to the partition's leader or,
//   from a node that no longer hosts it, to its placement's preferred replica.
// - Requests about a partition go to its leader; a replica that is not the leader
//   answers NOT_LEADER naming the leader (UNAVAILABLE when unknown), a node that is not
//   a replica names the partition's preferred leader (its first replica).
// - Batching: publishes, settles and consumerGone for one partition arriving in one
//   turn go into one entry (up to queueEntryCommandsMax commands and
//   queueEntryBatchBytesMax message bytes; a larger publish goes alone), stamped with the
//   leader's wall clock (deadlines are absolute wall-clock ms: core/queue/partition.ts).
//   While the partition's runner persists a Ready, requests collect until it is done
//   (they could not leave before it anyway): one entry per Ready, not one per turn.
//   Each request is answered once its entry committed and applied (durable on a majority).
// - Fetch is proposed only when the leader's applied state has something for the group
//   (new offsets inside the unacked window, or a redelivery that is ready), so an empty
//   long poll costs no entry: it parks (at most queueParkedFetchesMax per node) and is
//   proposed when an append (or an expiry) applies or a redelivery's ready time comes,
//   and answered empty when its wait ends. A proposed fetch that still delivers nothing
//   (another consumer was faster) is answered empty: its seq is spent.
// - Deadlines: the leader keeps one timer per partition, at partition.nextDeadlineMs(),
//   and proposes expireDeadlines when it fires.
// - A client connection that closes: consumerGone for every consumer id it used on the
//   partitions this node leads, so their deliveries come back at once.
// - Dead letters wait in the source partition's replicated outbox (core/queue/partition.ts).
//   Its leader appends the oldest outbox batch to partition p of the topic's NAME.dlq
//   (deadLetterMessage()), through the same batching path when this node leads that
//   partition, else forwarded to its leader over the peer link (QueueForward /
//   QueueForwardReply), as producer dsync-dlq/<source group> with the batch's outbox
//   sequence numbers, then proposes deadLettersForwarded. One batch at a time, so the
//   producer's sequence only grows: a resend (a retry, or a new leader starting over
//   after the old one died between the append and its confirmation) lands once.
//   Transient refusals are retried for as long as this node leads; a permanent one (the
//   dead-letter topic is gone, the message no longer fits) drops the batch, logged and
//   counted (deadLettersNotForwarded).

import { assert, assertNever } from '../../../core/assert.js';
import {
  queueAckBatchCountMax, queueAppendBatchCountMax, queueDeadLetterRetryMs, queueEntryBatchBytesMax,
  queueDeadLetterForwardTimeoutMs, queueEntriesInFlightMax, queueEntryCommandsMax, queueFetchCountMax, queueFetchWaitMsMax, queueMessageBytesMax, queueParkedFetchesMax,
  queuePendingRequestsPerPartitionMax, queuePreferredLeaderCheckMs, queueRetentionCheckMs, overloadRetryAfterMs,
  queueMoveCatchUpEntriesMax, queueMovePeerLiveMs, queueMovesInFlightMax, queueNodeDownMsDefault, queuePartitionRetiredMax, queueRebalanceCheckMs,
} from '../../../core/constants.js';
import { consumerGroup, consumerId, type ConsumerGroup, type ConsumerId, deliveryId, groupId, type GroupId, type NodeId, offset, partitionId, producerId } from '../../../core/ids.js';
import type { Message, QueueCommand, QueueResult, StoredMessage } from '../../../core/queue/commands.js';
import { deadLetterInfo, deadLetterMessage, redriveAppend } from '../../../core/queue/deadletter.js';
import { messageBytes } from '../../../core/queue/store.js';
import type { PartitionCanary } from '../../../core/queue/partition.js';
import { isMoving, partitionConfigOf, partitionGroupId, type TopicCommand, type TopicRecord, type TopicResult, TopicTable,
  type TopicSpec, type TopicTableSnapshot } from '../../../core/queue/topics.js';
import { nextMoveStep, planMoves, type MoveStep } from '../../../core/queue/rebalance.js';
import { ConfChangeType } from '../../../core/raft/types.js';
import type { Entry } from '../../../core/raft/types.js';
import type { Hash32 } from '../../../core/ring/index.js';
import { Ring } from '../../../core/ring/index.js';
import { DsyncError, ErrorCode, isErrorCode } from '../../../protocol/errors.js';
import { Opcode } from '../../../protocol/frame.js';
import { schema, wireNumber } from '../../../protocol/index.js';
import { decodePayload } from '../../node/node.js';
import { EntryKind, frameEntry, type SubMachine } from '../../raft/group0.js';
import type { GroupRunner } from '../../raft/runner.js';
import type { Cancel } from '../../runtime.js';
import type { ClientLink, RequestContext, Service, ServiceContext, ServiceNode } from '../service.js';
import { decodePublishRequest, decodeTopicCommand, encodePublishReply, encodeQueueEntry, encodeTopicCommand, type EntryCommand, type Fencing, fromWireMessage,
  type PublishFields, specOf, toWireMessage } from './codec.js';
import { type CommandOutcome, PartitionMachine, type PartitionListener } from './partition.js';
import type { PartitionStorageFactory } from './storage.js';
import { answerPull, type CatchUpCounts, PartitionCatchUp } from './catchup.js';
import { allSnapshotFormats, type SnapshotFormats } from '../../node/version.js';

/** Group 0's topic sub-machine: the table, and a listener told after every change. */
export class TopicsMachine implements SubMachine {
  readonly table: TopicTable;
  onChange: () => void = () => {};

  constructor(hash: Hash32, private readonly voters: () => readonly NodeId[]) {
    this.table = new TopicTable(hash);
  }

  apply(entry: Entry, body: Uint8Array): TopicResult {
    const result = this.table.apply(decodeTopicCommand(body), this.voters(), entry.index);
    if (result.kind !== 'error') this.onChange();
    return result;
  }

  snapshot(): TopicTableSnapshot {
    return this.table.toSnapshot();
  }

  restore(state: unknown): void {
    this.table.restore(state as TopicTableSnapshot);
    this.onChange();
  }
}

export interface QueueServiceOptions {
  /** xxhash32 (xxhash-wasm's h32Raw, seed 0): the ring's hash and the client's key -> partition hash. */
  readonly hash: Hash32;
  /** Group 0's voters as of the entry being applied (the members table). */
  readonly voters: () => readonly NodeId[];
  readonly storage: PartitionStorageFactory;
  /** Wall-clock ms stamped into entries (default Date.now; the simulator passes its clock). */
  readonly wallClockMs?: () => number;
  /**
   * This node's defaults for a create that does not say (QUEUE_REPLICAS, MESSAGE_RETENTION_PERIOD),
   * filled in before the entry is proposed so every replica applies the same topic.
   */
  readonly topicDefaults?: { readonly replicas: number; readonly retentionMs: number };
  /** A deliberate bug for a checker's canary (server/node/canary.ts, test/sim/queues-canary.test.ts); never set otherwise. */
  readonly canary?: QueueCanary;
  /** A partition's incoming store failed on disk (catchup.ts): stop the node (default: only logged). */
  readonly fatal?: (message: string) => void;
  /** QUEUE_NODE_DOWN_MS: a voter group 0's leader has not heard from this long gets its partition replicas rebuilt on spare nodes. */
  readonly nodeDownMs?: number;
  /** Which partition snapshot formats to write and read (the cluster version; absent: every format). */
  readonly snapshotFormats?: SnapshotFormats;
}

/**
 * The queue canaries: the partition's own (core/queue/partition.ts) and
 * 'ack-before-majority': a publish is answered as soon as its entry is proposed, with
 * the offsets it would get, before the entry is durable on a majority (let alone applied).
 */
export type QueueCanary = PartitionCanary | 'ack-before-majority';

interface ForwardReply {
  readonly code: string;
  readonly message: string;
  readonly leaderId: string;
}

interface Pending {
  readonly make: (nowMs: number) => EntryCommand;
  readonly bytes: number;
  /** Canary 'ack-before-majority' only: messages this publish appends, answered at proposal. */
  readonly early?: number;
  resolve(outcome: CommandOutcome): void;
  reject(err: DsyncError): void;
}

interface ParkedFetch {
  readonly hosted: Hosted;
  readonly ctx: RequestContext;
  readonly req: FetchArgs;
  readonly waitEndMs: number;
  timer: Cancel | null;
  done: boolean;
  unsubscribe: () => void;
}

interface FetchArgs {
  readonly group: ConsumerGroup;
  readonly consumer: ConsumerId;
  readonly seq: number;
  readonly max: number;
  readonly ackDeadlineMs: number;
}

/** A partition this node is a replica of. */
interface Hosted {
  /** Group 0's record of the topic, replaced whenever the table changes (moves change placement). */
  topic: TopicRecord;
  readonly index: number;
  readonly group: GroupId;
  readonly machine: PartitionMachine;
  readonly runner: GroupRunner;
  /** Streams in the bodies of a snapshot this replica is about to install (catchup.ts). */
  readonly catchUp: PartitionCatchUp;
  isLeader: boolean;
  readonly pending: Pending[];
  pendingBytes: number;
  flushScheduled: boolean;
  /** Entries proposed and not yet answered (applied, or failed): at most queueEntriesInFlightMax before requests wait. */
  entriesInFlight: number;
  /** A flush waits for an entry in flight to be answered. */
  flushAfterEntry: boolean;
  readonly parked: Set<ParkedFetch>;
  wakeScheduled: boolean;
  deadlineTimer: Cancel | null;
  deadlineAtMs: number;
  expiring: boolean;
  /** An enforceRetention proposal is in flight. */
  retaining: boolean;
  /** Leader only: an outbox batch is on its way to the dead-letter partition. */
  outboxSending: boolean;
  /** Bumped on every leadership change: answers for an older epoch's outbox batch are ignored. */
  outboxEpoch: number;
  /** Canary 'ack-before-majority' only: the offset after the last message this leader answered for. */
  predictedEnd: number;
  /** Leader only: the consumer ids each client connection used here (consumerGone on close). */
  readonly links: Map<ClientLink, { readonly consumers: Set<ConsumerId>; readonly unsubscribe: () => void }>;
  /** Leader only: a membership step of a move is proposed and not applied yet. */
  moveStepping: boolean;
  stopped: boolean;
}


export class QueueService implements Service {
  readonly name = 'queues';
  readonly opcodes = { min: Opcode.TopicCreate, max: 299 };
  readonly topics: TopicsMachine;
  readonly group0: { kind: EntryKind; machine: SubMachine };
  private ctx: ServiceContext | null = null;
  private readonly hosted = new Map<GroupId, Hosted>();
  private parkedCount = 0;
  private reconcileScheduled = false;
  private readonly dutyTimers: Cancel[] = [];
  private stopped = false;
  private readonly wallClockMs: () => number;
  /** Dead letters dropped after a permanent refusal (see pumpOutbox). */
  deadLettersNotForwarded = 0;
  /** Dead-letter forwards to other nodes waiting for their answer, by id. */
  private readonly forwards = new Map<number, (reply: ForwardReply) => void>();
  private nextForwardId = 1;
  /** Group 0 leader only: moves and settles proposed and not applied yet (one planning round at a time). */
  private movesProposing = 0;
  private readonly settlesProposing = new Set<string>();
  /** When this node was last seen becoming group 0's leader (null: it is not): nobody counts as down before nodeDownMs of it. */
  private group0LeaderSinceMs: number | null = null;
  /** Groups of partitions this node left that it dropped in this process (a restart may still have them from its WAL). */
  private readonly droppedHere = new Set<GroupId>();
  /** dsync_queue_partition_moves_total: moves this node proposed as group 0's leader, membership steps it took as a partition leader, settles it proposed. */
  readonly moveCounts = { planned: 0, steps: 0, settled: 0 };
  /** Streamed catch-ups: snapshots installed after streaming their bodies in, chunks and bytes in and out. */
  readonly catchUpCounts: CatchUpCounts = { admitted: 0, chunksIn: 0, bytesIn: 0, chunksOut: 0, bytesOut: 0 };

  constructor(private readonly opts: QueueServiceOptions) {
    this.topics = new TopicsMachine(opts.hash, opts.voters);
    this.group0 = { kind: EntryKind.Topics, machine: this.topics };
    this.topics.onChange = () => this.scheduleReconcile();
    this.wallClockMs = opts.wallClockMs ?? (() => Date.now());
  }

  start(ctx: ServiceContext): void {
    this.ctx = ctx;
    // Dead letters for a partition led elsewhere travel on the services' peer seam.
    ctx.peers.handle(Opcode.QueueForward, (from, payload) => {
      this.forwarded(from, payload);
      return null;
    });
    ctx.peers.handle(Opcode.QueueForwardReply, (_from, payload) => {
      let r: ReturnType<typeof schema.QueueForwardReply.decode>;
      try {
        r = schema.QueueForwardReply.decode(payload);
      } catch {
        return null;
      }
      const done = this.forwards.get(wireNumber(r.id));
      if (done === undefined) return null;
      this.forwards.delete(wireNumber(r.id));
      done({ code: r.code, message: r.message, leaderId: r.leaderId });
      return null;
    });
    this.registerHandlers();
    this.registerConsole();
    this.registerMetrics(ctx);
    this.scheduleReconcile();
    this.dutyTimers.push(ctx.scheduler.every(queuePreferredLeaderCheckMs, () => this.preferLeaders()));
    this.dutyTimers.push(ctx.scheduler.every(queueRetentionCheckMs, () => this.enforceRetention()));
    this.dutyTimers.push(ctx.scheduler.every(queueRebalanceCheckMs, () => this.rebalance()));
    // Streamed catch-up (catchup.ts): pulls served from this node's segment files, chunks imported by the replica installing.
    ctx.peers.handle(Opcode.QueueCatchUpPull, (from, payload) => {
      let pull: ReturnType<typeof schema.QueueCatchUpPull.decode>;
      try {
        pull = schema.QueueCatchUpPull.decode(payload);
      } catch {
        return null;
      }
      const h = this.hosted.get(groupId(Number(pull.group)));
      answerPull(pull, h === undefined || h.stopped ? null : (at, upTo) => h.machine.exportChunk(at, upTo),
        (chunk) => ctx.peers.send(from, Opcode.QueueCatchUpChunk, schema.QueueCatchUpChunk.encode(chunk).finish()), this.catchUpCounts);
      return null;
    });
    ctx.peers.handle(Opcode.QueueCatchUpChunk, (_from, payload) => {
      let chunk: ReturnType<typeof schema.QueueCatchUpChunk.decode>;
      try {
        chunk = schema.QueueCatchUpChunk.decode(payload);
      } catch {
        return null;
      }
      this.hosted.get(groupId(Number(chunk.group)))?.catchUp.chunk(chunk);
      return null;
    });
    ctx.peers.handle(Opcode.QueueMoveDone, (from, payload) => {
      let done: ReturnType<typeof schema.QueueMoveDone.decode>;
      try {
        done = schema.QueueMoveDone.decode(payload);
      } catch {
        this.node.log.warn('undecodable queue move report', { from });
        return null;
      }
      this.proposeSettle(done.topic, done.partition, Number(done.epoch));
      return null;
    });
  }

  // ------------------------------------------------------------------ moves

  /** Every queueRebalanceCheckMs: plan moves on group 0's leader, step moves on partition leaders. */
  private rebalance(): void {
    if (this.stopped) return;
    const group0 = this.context.groups.group0;
    const nowMs = this.context.clock.nowMs();
    if (!group0.isLeader) this.group0LeaderSinceMs = null;
    else {
      this.group0LeaderSinceMs ??= nowMs;
      this.planMoves(nowMs - this.group0LeaderSinceMs);
    }
    for (const h of this.hosted.values()) if (h.isLeader && !h.stopped && !h.moveStepping) this.stepMove(h);
  }

  private planMoves(leaderForMs: number): void {
    if (this.movesProposing > 0) return;
    const self = this.node.nodeId;
    const nodeDownMs = this.opts.nodeDownMs ?? queueNodeDownMsDefault;
    const voters = this.opts.voters();
    // A new leader has heard nobody for long: it counts no one as down before nodeDownMs of its own.
    const down = new Set(leaderForMs < nodeDownMs ? [] : voters.filter((v) => v !== self && this.context.groups.sinceHeardMs(v) > nodeDownMs));
    const moves = planMoves({ topics: this.topics.table.list(), voters, down, movesMax: queueMovesInFlightMax, retiredMax: queuePartitionRetiredMax });
    for (const m of moves) {
      this.movesProposing++;
      this.moveCounts.planned++;
      this.node.log.info('moving a queue partition', { topic: m.topic, partition: m.partition, epoch: m.epoch, to: m.replicas.join(','), reason: m.reason,
        down: [...down].join(',') });
      this.context.groups.group0.propose(frameEntry(EntryKind.Topics, encodeTopicCommand({ kind: 'move', name: m.topic, partition: m.partition,
        epoch: m.epoch, replicas: m.replicas }))).then((r) => {
        const result = r as TopicResult;
        if (result.kind === 'error') this.node.log.debug('move not applied', { topic: m.topic, partition: m.partition, code: result.code, err: result.message });
      }, (err: unknown) => this.node.log.debug('move proposal failed', { topic: m.topic, partition: m.partition, err: String(err) }))
        .finally(() => { this.movesProposing--; });
    }
  }

  /** Partition leader: the next membership step of its group towards the placement group 0 wants. */
  private stepMove(h: Hosted): void {
    const wanted = h.topic.placement[h.index] ?? [];
    const raft = h.runner.raft;
    const status = raft.status();
    if (!status.conf.voters.includes(this.node.nodeId)) return;
    const members = [...status.conf.voters, ...status.conf.learners];
    const match = new Map<NodeId, number>();
    for (const m of members) match.set(m, Number(raft.progressOf(m)?.match ?? 0));
    const live = new Set(members.filter((m) => m === this.node.nodeId || this.context.groups.sinceHeardMs(m) < queueMovePeerLiveMs));
    const step: MoveStep = nextMoveStep({ self: this.node.nodeId, voters: status.conf.voters, learners: status.conf.learners,
      lastIndex: Number(status.lastIndex), match, live }, wanted, queueMoveCatchUpEntriesMax);
    switch (step.kind) {
      case 'wait': return;
      case 'settled':
        if (isMoving(h.topic, h.index)) this.reportSettled(h);
        return;
      case 'transferLeadership':
        this.node.log.info('handing a moving partition\'s leadership over before leaving it', { topic: h.topic.name, partition: h.index, to: step.to });
        h.runner.transferLeadership(step.to);
        return;
      case 'addLearner':
      case 'promote':
      case 'remove': {
        const type = step.kind === 'addLearner' ? ConfChangeType.AddLearner : step.kind === 'promote' ? ConfChangeType.AddVoter : ConfChangeType.Remove;
        h.moveStepping = true;
        this.moveCounts.steps++;
        this.node.log.info('queue partition membership step', { topic: h.topic.name, partition: h.index, step: step.kind, node: step.node,
          epoch: h.topic.epochs[h.index] ?? 0, voters: status.conf.voters.join(','), learners: status.conf.learners.join(','), wanted: wanted.join(',') });
        h.runner.proposeConfChange({ type, node: step.node }).then(() => {
          // Applied: the next step need not wait for the next round (a learner's catch-up usually does).
          h.moveStepping = false;
          if (h.isLeader && !h.stopped && !this.stopped) this.stepMove(h);
        }, (err: unknown) => {
          h.moveStepping = false;
          this.node.log.debug('partition membership step failed', { topic: h.topic.name, partition: h.index, step: step.kind, err: String(err) });
        });
        return;
      }
      default: assertNever(step, 'move step');
    }
  }

  /** The partition's group has its placement as voters: group 0's leader settles the move (resent every round until applied). */
  private reportSettled(h: Hosted): void {
    const epoch = h.topic.epochs[h.index] ?? 0;
    const group0 = this.context.groups.group0;
    if (group0.isLeader) {
      this.proposeSettle(h.topic.name, h.index, epoch);
      return;
    }
    if (group0.leader === '' || group0.leader === this.node.nodeId) return;
    this.context.peers.send(group0.leader, Opcode.QueueMoveDone, schema.QueueMoveDone.encode({ topic: h.topic.name, partition: h.index, epoch }).finish());
  }

  /** Group 0 leader: settles a move its partition's leader reported done, if the table still has it under way at that epoch. */
  private proposeSettle(topic: string, partition: number, epoch: number): void {
    const group0 = this.context.groups.group0;
    const t = this.topics.table.get(topic);
    if (!group0.isLeader || t === undefined || t.epochs[partition] !== epoch || !isMoving(t, partition)) return;
    const key = `${topic}/${partition}/${epoch}`;
    if (this.settlesProposing.has(key)) return;
    this.settlesProposing.add(key);
    group0.propose(frameEntry(EntryKind.Topics, encodeTopicCommand({ kind: 'settle', name: topic, partition, epoch }))).then((r) => {
      const result = r as TopicResult;
      if (result.kind === 'settled') {
        this.moveCounts.settled++;
        this.node.log.info('queue partition move settled', { topic, partition, epoch, replicas: (result.topic.placement[partition] ?? []).join(',') });
      }
    }, (err: unknown) => this.node.log.debug('settle proposal failed', { topic, partition, err: String(err) }))
      .finally(() => this.settlesProposing.delete(key));
  }

  /**
   * Leaders spread over the nodes: a leader that is not its partition's preferred (first)
   * replica hands leadership to it once that replica has the whole log (so a node that
   * restarts gets its partitions back once it caught up, never while it lags).
   */
  private preferLeaders(): void {
    for (const h of this.hosted.values()) {
      if (!h.isLeader || h.stopped) continue;
      const preferred = h.topic.placement[h.index]?.[0];
      if (preferred === undefined || preferred === this.node.nodeId) continue;
      const progress = h.runner.raft.progressOf(preferred);
      if (progress === null || progress.match < h.runner.raft.status().lastIndex) continue;
      this.node.log.info('handing partition leadership to its preferred replica', { topic: h.topic.name, partition: h.index, to: preferred });
      h.runner.transferLeadership(preferred);
    }
  }

  /** Leaders of partitions whose topic has an age limit propose enforceRetention (size limits apply on append). */
  private enforceRetention(): void {
    for (const h of this.hosted.values()) {
      if (!h.isLeader || h.stopped || h.topic.retention.maxAgeMs === 0 || h.retaining) continue;
      h.retaining = true;
      this.enqueue(h, (nowMs) => ({ cmd: { kind: 'enforceRetention', nowMs } }), 0)
        .catch((err: unknown) => this.node.log.debug('retention proposal failed', { err: String(err) }))
        .finally(() => { h.retaining = false; });
    }
  }

  stop(): void {
    this.stopped = true;
    for (const cancel of this.dutyTimers.splice(0)) cancel();
    for (const h of [...this.hosted.values()]) this.unhost(h, false, 'node is shutting down');
  }

  private get context(): ServiceContext {
    assert(this.ctx !== null, 'queue service used before start');
    return this.ctx;
  }

  private get node(): ServiceNode {
    return this.context.node;
  }

  // ------------------------------------------------------------------ partition groups

  private scheduleReconcile(): void {
    if (this.reconcileScheduled || this.ctx === null || this.stopped) return;
    this.reconcileScheduled = true;
    this.ctx.scheduler.defer(() => {
      this.reconcileScheduled = false;
      this.reconcile();
    });
  }

  /** Hosts the partitions this node is a host of, drops those of deleted topics and those that moved away. */
  private reconcile(): void {
    if (this.stopped) return;
    const self = this.node.nodeId;
    const wanted = new Map<GroupId, { topic: TopicRecord; index: number }>();
    const left: GroupId[] = [];
    for (const t of this.topics.table.list()) {
      t.hosts.forEach((hosts, p) => {
        const group = groupId(partitionGroupId(t.id, p));
        // A group dropped here before (its tombstone) is never hosted again, also while a restart
        // replays group 0 through the states before the settle that moved it away.
        if (hosts.includes(self) && !this.context.groups.isDropped(group)) wanted.set(group, { topic: t, index: p });
        else if ((t.retired[p] ?? []).includes(self)) left.push(group);
      });
    }
    for (const h of [...this.hosted.values()]) {
      const now = wanted.get(h.group);
      if (now !== undefined) {
        h.topic = now.topic;
        continue;
      }
      const moved = this.topics.table.get(h.topic.name)?.id === h.topic.id;
      this.unhost(h, true, moved ? `partition ${h.index} of ${h.topic.name} moved to ${(this.topics.table.get(h.topic.name)?.placement[h.index] ?? []).join(',')}`
        : `topic ${h.topic.name} was deleted`);
      this.droppedHere.add(h.group);
    }
    // A partition that moved away while this node was down: its group may still be in the WAL, its files on disk.
    for (const group of left) {
      if (this.droppedHere.has(group) || this.hosted.has(group) || this.context.groups.isDropped(group)) continue;
      this.droppedHere.add(group);
      this.context.groups.drop(group);
      this.opts.storage(group).destroy();
    }
    for (const [group, { topic, index }] of wanted) {
      if (this.hosted.has(group)) continue;
      this.host(group, topic, index);
    }
    // A move just applied: its partition's leader takes the first step now rather than at the next round.
    for (const h of this.hosted.values()) if (h.isLeader && !h.stopped && !h.moveStepping && isMoving(h.topic, h.index)) this.stepMove(h);
  }

  private host(group: GroupId, topic: TopicRecord, index: number): void {
    // The runner calls the listener only on later turns (apply, leadership), after `hosted` is set.
    let hosted: Hosted | null = null;
    const storage = this.opts.storage(group);
    const catchUp = new PartitionCatchUp({ group, storage, clock: this.context.clock, scheduler: this.context.scheduler, log: this.node.log,
      sendPull: (to, pull) => this.context.peers.send(to, Opcode.QueueCatchUpPull, schema.QueueCatchUpPull.encode(pull).finish()),
      fatal: (message) => this.opts.fatal?.(message) }, this.catchUpCounts);
    const listener: PartitionListener = {
      applied: (_m, _entry, commands, outcomes) => { if (hosted !== null) this.applied(hosted, commands, outcomes); },
      leaderChanged: (_m, isLeader) => { if (hosted !== null) this.leaderChanged(hosted, isLeader); },
      admitSnapshot: (_m, range, from, retry) => catchUp.admit(range, from, retry),
    };
    const canary = this.opts.canary;
    const machine = new PartitionMachine(topic.name, index, partitionConfigOf(topic), storage, listener,
      canary === undefined || canary === 'ack-before-majority' ? {} : { canary }, this.opts.snapshotFormats ?? allSnapshotFormats);
    const replicas = topic.placement[index] ?? [];
    // Every host bootstraps with the group's first configuration: a new replica replaying the log from index 1 then derives the others'.
    const runner = this.context.groups.ensure(group, machine, { voters: [...(topic.origin[index] ?? replicas)].sort(), learners: [] });
    hosted = { topic, index, group, machine, runner, catchUp, isLeader: false, pending: [], pendingBytes: 0, flushScheduled: false, entriesInFlight: 0, flushAfterEntry: false, parked: new Set(),
      wakeScheduled: false, deadlineTimer: null, deadlineAtMs: Infinity, expiring: false, retaining: false, outboxSending: false, outboxEpoch: 0,
      predictedEnd: 0, links: new Map(), moveStepping: false, stopped: false };
    this.hosted.set(group, hosted);
    this.node.log.info('hosting queue partition', { topic: topic.name, partition: index, group, replicas: replicas.join(',') });
  }

  private unhost(h: Hosted, destroy: boolean, why: string): void {
    h.stopped = true;
    this.hosted.delete(h.group);
    this.loseLeadership(h, new DsyncError(ErrorCode.UNAVAILABLE, why));
    if (destroy) {
      this.context.groups.drop(h.group);
      this.node.log.info('dropped queue partition', { topic: h.topic.name, partition: h.index, group: h.group });
    }
    h.catchUp.stop();
    h.machine.close(destroy);
  }

  private leaderChanged(h: Hosted, isLeader: boolean): void {
    if (h.stopped) return;
    const was = h.isLeader;
    h.isLeader = isLeader;
    h.outboxEpoch++;
    h.outboxSending = false;
    if (isLeader && !was) {
      this.rearmDeadline(h);
      this.pumpOutbox(h);
    }
    if (!isLeader && was) this.loseLeadership(h, this.notLeader(h));
  }

  /** Answers everything waiting on this leader (the client retries at the next one). */
  private loseLeadership(h: Hosted, err: DsyncError): void {
    h.deadlineTimer?.();
    h.deadlineTimer = null;
    h.deadlineAtMs = Infinity;
    for (const p of h.pending.splice(0)) p.reject(err);
    h.pendingBytes = 0;
    for (const f of [...h.parked]) this.finishFetch(f, null, err);
    for (const l of h.links.values()) l.unsubscribe();
    h.links.clear();
  }

  private notLeader(h: Hosted): DsyncError {
    // No leader known here (e.g. this replica was removed by a move and hears nobody): name the
    // placement's preferred replica rather than answer UNAVAILABLE, so clients move on.
    const preferred = h.topic.placement[h.index]?.[0] ?? '';
    const hint = h.runner.leader !== '' ? h.runner.leader : preferred !== this.node.nodeId ? preferred : '';
    return this.node.notLeader(`partition ${h.index} of topic ${h.topic.name}`, hint);
  }

  /** After every applied entry, on every replica. */
  private applied(h: Hosted, commands: readonly EntryCommand[], outcomes: readonly CommandOutcome[]): void {
    if (!h.isLeader || h.stopped) return;
    let appended = false;
    for (const o of outcomes) if (!o.duplicate) this.countOutcome(h.topic.name, o);
    for (const c of commands) {
      const kind = c.cmd.kind;
      if (kind === 'append' || kind === 'expireDeadlines' || kind === 'consumerGone' || kind === 'nack') appended = true;
    }
    this.rearmDeadline(h);
    this.pumpOutbox(h);
    if (appended && h.parked.size > 0) this.scheduleWake(h);
  }

  // ------------------------------------------------------------------ proposing (batched per turn)

  private enqueue(h: Hosted, make: (nowMs: number) => EntryCommand, bytes: number, early?: number): Promise<CommandOutcome> {
    return new Promise((resolve, reject) => {
      this.submit(h, early === undefined ? { make, bytes, resolve, reject } : { make, bytes, early, resolve, reject });
    });
  }

  /** Queues a request for the partition's next entry; refused at once (reject) when this node does not lead it or too many wait. */
  private submit(h: Hosted, p: Pending): void {
    if (!h.isLeader || h.stopped) {
      p.reject(this.notLeader(h));
      return;
    }
    if (h.pending.length >= queuePendingRequestsPerPartitionMax) {
      p.reject(new DsyncError(ErrorCode.TOO_MANY_REQUESTS,
        `partition ${h.index} of ${h.topic.name} has ${h.pending.length} requests waiting for its next entry; retry shortly`, { retryAfterMs: overloadRetryAfterMs }));
      return;
    }
    h.pending.push(p);
    h.pendingBytes += p.bytes;
    if (!h.flushScheduled) {
      h.flushScheduled = true;
      this.context.scheduler.defer(() => this.flush(h));
    }
  }

  private flush(h: Hosted): void {
    // While the partition's previous Ready is being persisted, whatever is proposed now
    // waits for it anyway (the runner takes one Ready at a time): hold the requests and
    // propose them once it is done, as one entry rather than one per turn.
    if (!h.stopped && h.runner.persisting) {
      h.runner.whenReadyDone(() => this.flush(h));
      return;
    }
    if (!h.stopped && h.entriesInFlight >= queueEntriesInFlightMax) {
      h.flushAfterEntry = true;
      return;
    }
    h.flushScheduled = false;
    if (h.pending.length === 0) return;
    const nowMs = this.wallClockMs();
    while (h.pending.length > 0) {
      const batch: Pending[] = [];
      let bytes = 0;
      while (h.pending.length > 0 && batch.length < queueEntryCommandsMax) {
        const next = h.pending[0] as Pending;
        if (batch.length > 0 && bytes + next.bytes > queueEntryBatchBytesMax) break;
        batch.push(h.pending.shift() as Pending);
        bytes += next.bytes;
      }
      h.pendingBytes -= bytes;
      const commands = batch.map((p) => p.make(nowMs));
      if (this.opts.canary === 'ack-before-majority') this.answerEarly(h, batch, nowMs);
      h.entriesInFlight++;
      h.runner.propose(encodeQueueEntry(commands)).then((outcomes) => {
        const list = outcomes as CommandOutcome[];
        assert(list.length === batch.length, 'one outcome per command');
        batch.forEach((p, i) => p.resolve(list[i] as CommandOutcome));
      }, (err: unknown) => {
        const e = this.node.asDsyncError(err);
        for (const p of batch) p.reject(e);
      }).finally(() => {
        h.entriesInFlight--;
        if (h.flushAfterEntry) {
          h.flushAfterEntry = false;
          this.flush(h);
        }
      });
    }
    assert(h.pendingBytes === 0, 'every pending byte went into an entry');
  }

  /**
   * The deliberate bug of canary 'ack-before-majority': publishes are answered now, as
   * appended at the offsets they would get if this entry and every one this leader
   * proposed before it commit (the later real outcome is ignored: already resolved).
   */
  private answerEarly(h: Hosted, batch: readonly Pending[], nowMs: number): void {
    h.predictedEnd = Math.max(h.predictedEnd, h.machine.partition.logEndOffset);
    for (const p of batch) {
      if (p.early === undefined) continue;
      p.resolve({ result: { kind: 'appended', baseOffset: offset(h.predictedEnd), count: p.early, timestampMs: nowMs }, duplicate: false, events: [] });
      h.predictedEnd += p.early;
    }
  }

  // ------------------------------------------------------------------ deadlines

  private rearmDeadline(h: Hosted): void {
    if (!h.isLeader || h.stopped || h.expiring) return;
    const at = h.machine.partition.nextDeadlineMs();
    if (at === h.deadlineAtMs) return;
    h.deadlineTimer?.();
    h.deadlineTimer = null;
    h.deadlineAtMs = at;
    if (at === Infinity) return;
    h.deadlineTimer = this.context.scheduler.after(Math.max(0, at - this.wallClockMs()) + 1, () => {
      h.deadlineTimer = null;
      h.deadlineAtMs = Infinity;
      if (!h.isLeader || h.stopped) return;
      h.expiring = true;
      this.enqueue(h, (nowMs) => ({ cmd: { kind: 'expireDeadlines', nowMs } }), 0)
        .then((o) => {
          if (o.result.kind === 'expired' && o.result.count > 0) this.node.log.debug('deliveries expired', { topic: h.topic.name, partition: h.index, count: o.result.count });
        }, (err: unknown) => this.node.log.debug('expiry proposal failed', { err: String(err) }))
        .finally(() => {
          h.expiring = false;
          this.rearmDeadline(h);
        });
    });
  }

  // ------------------------------------------------------------------ dead letters

  /**
   * Leader only: appends the outbox's oldest batch to the dead-letter partition, then proposes
   * deadLettersForwarded for it, then the next batch (see the header).
   */
  private pumpOutbox(h: Hosted): void {
    if (!h.isLeader || h.stopped || this.stopped || h.outboxSending) return;
    const part = h.machine.partition;
    const batch = part.deadLetterHead();
    if (batch === null) return;
    h.outboxSending = true;
    const epoch = h.outboxEpoch;
    const current = (): boolean => epoch === h.outboxEpoch && h.isLeader && !h.stopped && !this.stopped;
    const again = (delayMs: number): void => {
      this.context.scheduler.after(delayMs, () => {
        if (!current()) return;
        h.outboxSending = false;
        this.pumpOutbox(h);
      });
    };
    const confirm = (dropped: string): void => {
      if (!current()) return;
      if (dropped !== '') {
        this.deadLettersNotForwarded += batch.letters.length;
        this.node.log.warn('dead letters dropped', { topic: h.topic.name, partition: h.index, count: batch.letters.length, why: dropped });
      }
      this.enqueue(h, (nowMs) => ({ cmd: { kind: 'deadLettersForwarded', nowMs, firstSeq: batch.firstSeq } }), 0)
        .then(() => again(0), (err: unknown) => {
          this.node.log.debug('dead-letter confirmation failed', { err: String(err) });
          again(queueDeadLetterRetryMs);
        });
    };
    const dlq = this.topics.table.get(h.topic.deadLetterTopic);
    if (dlq === undefined) {
      confirm(`the dead-letter topic ${h.topic.deadLetterTopic === '' ? '(none: this is one)' : h.topic.deadLetterTopic} does not exist`);
      return;
    }
    const messages = batch.letters.map((l) => deadLetterMessage(l, part.readMessage(l.offset), h.index as never));
    const send = (attempt: number, towards: NodeId | ''): void => {
      if (!current()) return;
      this.publishDeadLetters(h, dlq, producerId(`dsync-dlq/${h.group}`), batch.firstSeq, messages, attempt, towards, (code, message, leaderId) => {
        if (!current()) return;
        // STALE_REQUEST: the producer's sequence is past this batch, which only an earlier send of it can have done.
        if (code === '' || code === ErrorCode.STALE_REQUEST) { confirm(''); return; }
        if (code === ErrorCode.BAD_REQUEST || code === ErrorCode.MESSAGE_TOO_LARGE || code === ErrorCode.NOT_FOUND) { confirm(`${code}: ${message}`); return; }
        const delayMs = code === ErrorCode.NOT_LEADER && leaderId !== '' ? 0 : queueDeadLetterRetryMs;
        this.context.scheduler.after(delayMs, () => send(attempt + 1, leaderId as NodeId | ''));
      });
    };
    send(1, '');
  }

  /**
   * One append of dead letters to the dead-letter partition: through this node's batching
   * when it leads that partition, else forwarded to its leader over the peer link
   * (QueueForward, answered by QueueForwardReply). `done` gets the error code ('' when
   * appended) and the leader to try next, if known; a forward unanswered in time is TIMEOUT.
   */
  private publishDeadLetters(source: Hosted, dlq: TopicRecord, producer: ReturnType<typeof producerId>, firstSeq: number,
    messages: readonly Message[], attempt: number, towards: NodeId | '', done: (code: string, message: string, leaderId: string) => void): void {
    const local = this.hosted.get(groupId(partitionGroupId(dlq.id, source.index)));
    if (local !== undefined && local.isLeader && !local.stopped) {
      const bytes = messages.reduce((n, m) => n + messageBytes(m), 0);
      this.enqueue(local, (nowMs) => ({ cmd: { kind: 'append', nowMs, producer, firstSeq, messages } }), bytes).then((o) => {
        if (o.result.kind === 'error') done(o.result.code, o.result.message, '');
        else done('', '', '');
      }, (err: unknown) => {
        const e = this.node.asDsyncError(err);
        done(e.code, e.message, e.leaderId);
      });
      return;
    }
    const replicas = dlq.placement[source.index] ?? [];
    const others = replicas.filter((r) => r !== this.node.nodeId);
    let target: NodeId | '' = towards !== '' && towards !== this.node.nodeId ? towards : (local?.runner.leader ?? '');
    if (target === '' || target === this.node.nodeId) target = others[attempt % Math.max(1, others.length)] ?? '';
    if (target === '') {
      // Nobody else to ask: try again here later (this node may become its leader).
      done(ErrorCode.UNAVAILABLE, 'no replica of the dead-letter partition to ask', '');
      return;
    }
    const id = this.nextForwardId++;
    const timer = this.context.scheduler.after(queueDeadLetterForwardTimeoutMs, () => {
      if (this.forwards.delete(id)) done(ErrorCode.TIMEOUT, `${target} did not answer`, '');
    });
    this.forwards.set(id, (reply) => {
      timer();
      done(reply.code, reply.message, reply.leaderId);
    });
    this.context.peers.send(target, Opcode.QueueForward, schema.QueueForward.encode({ id, publish: {
      topic: dlq.name, partition: source.index, producer, firstSeq, messages: messages.map(toWireMessage) } }).finish());
  }

  /** A QueueForward from a peer: append it if this node leads that partition, and answer. */
  private forwarded(from: NodeId, payload: Uint8Array): void {
    let f: ReturnType<typeof schema.QueueForward.decode>;
    try {
      f = schema.QueueForward.decode(payload);
    } catch (err) {
      this.node.log.warn('undecodable queue forward', { from, err: String(err) });
      return;
    }
    const answer = (code: string, message: string, leaderId: string): void => {
      this.context.peers.send(from, Opcode.QueueForwardReply, schema.QueueForwardReply.encode({ id: f.id, code, message, leaderId }).finish());
    };
    const req = f.publish;
    if (req === null || req === undefined) { answer(ErrorCode.BAD_REQUEST, 'a forward carries a publish', ''); return; }
    let h: Hosted;
    try {
      h = this.leaderOf(req.topic ?? '', req.partition ?? 0);
    } catch (err) {
      const e = this.node.asDsyncError(err);
      answer(e.code, e.message, e.leaderId);
      return;
    }
    const messages = (req.messages ?? []).map((w) => fromWireMessage(w));
    const producer = producerId(req.producer ?? '');
    const firstSeq = wireNumber(req.firstSeq);
    const bytes = messages.reduce((n, m) => n + messageBytes(m), 0);
    this.enqueue(h, (nowMs) => ({ cmd: { kind: 'append', nowMs, producer, firstSeq, messages } }), bytes).then((o) => {
      if (o.result.kind === 'error') answer(o.result.code, o.result.message, '');
      else answer('', '', '');
    }, (err: unknown) => {
      const e = this.node.asDsyncError(err);
      answer(e.code, e.message, e.leaderId);
    });
  }

  // ------------------------------------------------------------------ requests

  /** The hosted leader replica of a partition, or the error to answer with. */
  private leaderOf(topicName: string, partition: number): Hosted {
    const t = this.knownTopic(topicName);
    if (!Number.isSafeInteger(partition) || partition < 0 || partition >= t.partitions) {
      throw new DsyncError(ErrorCode.BAD_REQUEST, `topic ${topicName} has partitions 0..${t.partitions - 1}; there is no partition ${partition}`);
    }
    const h = this.hosted.get(groupId(partitionGroupId(t.id, partition)));
    if (h === undefined) {
      const preferred = t.placement[partition]?.[0] ?? '';
      if (preferred === this.node.nodeId) throw new DsyncError(ErrorCode.UNAVAILABLE, `partition ${partition} of ${topicName} is starting here; retry shortly`);
      throw this.node.notLeader(`partition ${partition} of topic ${topicName}`, preferred);
    }
    if (!h.isLeader) throw this.notLeader(h);
    return h;
  }

  /** A topic in this node's applied table, or the error to answer with. */
  private knownTopic(topicName: string): TopicRecord {
    const t = this.topics.table.get(topicName);
    if (t !== undefined) return t;
    // Only group 0's leader knows a topic does not exist; another node may not have applied its creation yet.
    const group0 = this.context.groups.group0;
    if (group0.isLeader) throw new DsyncError(ErrorCode.NOT_FOUND, `topic ${topicName} does not exist`);
    throw new DsyncError(ErrorCode.UNAVAILABLE, `topic ${topicName} is not known on ${this.node.nodeId} (yet); retry shortly`,
      { retryAfterMs: overloadRetryAfterMs });
  }

  private trackConsumer(h: Hosted, link: ClientLink, consumer: ConsumerId): void {
    if (link.closed) return;
    let l = h.links.get(link);
    if (l === undefined) {
      const consumers = new Set<ConsumerId>();
      const unsubscribe = link.onClose(() => {
        h.links.delete(link);
        if (!h.isLeader || h.stopped) return;
        for (const c of consumers) {
          this.enqueue(h, (nowMs) => ({ cmd: { kind: 'consumerGone', nowMs, consumer: c } }), 0)
            .catch((err: unknown) => this.node.log.debug('consumerGone not applied (deadlines redeliver instead)', { err: String(err) }));
        }
      });
      l = { consumers, unsubscribe };
      h.links.set(link, l);
    }
    l.consumers.add(consumer);
  }

  private registerHandlers(): void {
    const c = this.context;
    c.handle(Opcode.TopicCreate, (rc, payload) => {
      const req = decodePayload((b) => schema.TopicRequest.decode(b), payload, 'topic create');
      this.topicCommand(rc, { kind: 'create', spec: this.withDefaults(specOf(req)) });
    }, 'admin');
    c.handle(Opcode.TopicDelete, (rc, payload) => {
      const req = decodePayload((b) => schema.TopicRequest.decode(b), payload, 'topic delete');
      this.topicCommand(rc, { kind: 'delete', name: req.name });
    }, 'admin');
    c.handle(Opcode.TopicInfo, (rc, payload) => {
      this.topicStateReply(rc, decodePayload((b) => schema.TopicRequest.decode(b), payload, 'topic info').name);
    }, 'read');
    c.handle(Opcode.TopicList, (rc) => {
      this.linearizable(rc, () => schema.TopicListReply.encode({ topics: this.topics.table.list().map((t) => this.topicState(t)) }).finish());
    }, 'read');
    c.handle(Opcode.PartitionMap, (rc, payload) => {
      const req = decodePayload((b) => schema.PartitionMapRequest.decode(b), payload, 'partition map');
      if (req.local) rc.conn.reply(rc.requestId, rc.opcode, schema.TopicState.encode(this.topicState(this.knownTopic(req.topic))).finish());
      else this.topicStateReply(rc, req.topic);
    }, 'read');
    c.handle(Opcode.Publish, (rc, payload) => this.publish(rc, decodePayload(decodePublishRequest, payload, 'publish')));
    c.handle(Opcode.Fetch, (rc, payload) => this.fetch(rc, decodePayload((b) => schema.FetchRequest.decode(b), payload, 'fetch')));
    c.handle(Opcode.Ring, (rc) => rc.conn.reply(rc.requestId, rc.opcode, schema.RingReply.encode(this.ringReply()).finish()), 'read');
    for (const op of [Opcode.Ack, Opcode.Nack, Opcode.Extend]) {
      c.handle(op, (rc, payload) => this.settle(rc, decodePayload((b) => schema.SettleRequest.decode(b), payload, 'settle')));
    }
    c.handle(Opcode.Replay, (rc, payload) => this.replay(rc, decodePayload((b) => schema.ReplayRequest.decode(b), payload, 'replay')));
    c.handle(Opcode.Redrive, (rc, payload) => this.redrive(rc, decodePayload((b) => schema.RedriveRequest.decode(b), payload, 'redrive')));
  }

  private withDefaults(spec: TopicSpec): TopicSpec {
    const d = this.opts.topicDefaults;
    if (d === undefined) return spec;
    return {
      ...spec,
      // Never more than the voters: a cluster smaller than the setting still takes topics.
      ...(spec.replicas === undefined ? { replicas: Math.max(1, Math.min(d.replicas, this.opts.voters().length)) } : {}),
      ...(spec.retention === undefined && d.retentionMs > 0 ? { retention: { maxAgeMs: d.retentionMs, maxBytes: 0, dropUnacked: false } } : {}),
    };
  }

  /** Topic info and the partition map are one answer: the topic's state, read linearizably. */
  private topicStateReply(rc: RequestContext, name: string): void {
    this.linearizable(rc, () => {
      const t = this.topics.table.get(name);
      if (t === undefined) throw new DsyncError(ErrorCode.NOT_FOUND, `topic ${name} does not exist`);
      return schema.TopicState.encode(this.topicState(t)).finish();
    });
  }

  private topicCommand(rc: RequestContext, cmd: TopicCommand): void {
    const group0 = this.context.groups.group0;
    if (!group0.isLeader) throw this.node.notLeader('topics (group 0)', group0.leader);
    group0.propose(frameEntry(EntryKind.Topics, encodeTopicCommand(cmd))).then((r) => {
      const result = r as TopicResult;
      if (result.kind === 'error') {
        rc.conn.replyError(rc.requestId, rc.opcode, new DsyncError(result.code, result.message));
      } else if (result.kind !== 'deleted') {
        rc.conn.reply(rc.requestId, rc.opcode, schema.TopicState.encode(this.topicState(result.topic)).finish());
      } else {
        rc.conn.reply(rc.requestId, rc.opcode, schema.TopicListReply.encode({ topics: result.topics.map((t) => this.topicState(t)) }).finish());
      }
    }, (err: unknown) => rc.conn.replyError(rc.requestId, rc.opcode, this.node.asDsyncError(err)));
  }

  /** Answers with group 0's state after a ReadIndex barrier (never stale); a follower answers NOT_LEADER. */
  private linearizable(rc: RequestContext, render: () => Uint8Array): void {
    const group0 = this.context.groups.group0;
    if (!group0.isLeader) throw this.node.notLeader('topics (group 0)', group0.leader);
    group0.readBarrier().then(() => rc.conn.reply(rc.requestId, rc.opcode, render()))
      .catch((err: unknown) => rc.conn.replyError(rc.requestId, rc.opcode, this.node.asDsyncError(err)));
  }

  private topicState(t: TopicRecord): ReturnType<typeof schema.TopicState.create> {
    return schema.TopicState.create({
      name: t.name, id: t.id, partitions: t.partitions, replicas: t.replicas, maxDeliveries: t.maxDeliveries, ackDeadlineMs: t.ackDeadlineMs,
      retention: { maxAgeMs: t.retention.maxAgeMs, maxBytes: t.retention.maxBytes, dropUnacked: t.retention.dropUnacked },
      deadLetterTopic: t.deadLetterTopic, createdIndex: t.createdIndex,
      partitionList: t.placement.map((replicas, p) => {
        const gid = partitionGroupId(t.id, p);
        const h = this.hosted.get(groupId(gid));
        const leader = h !== undefined ? h.runner.leader : (replicas[0] ?? '');
        const address = leader === '' || leader === this.node.nodeId ? '' : this.node.addressOf(leader);
        const out = schema.TopicPartition.create({ index: p, groupId: gid, replicas: [...replicas], leaderId: leader, leaderAddress: address,
          epoch: t.epochs[p] ?? 0, hosts: isMoving(t, p) ? [...(t.hosts[p] ?? [])] : [] });
        if (h !== undefined) {
          const part = h.machine.partition;
          out.hosted = true;
          out.logStart = part.logStartOffset;
          out.logEnd = part.logEndOffset;
          out.groups = part.listGroups().map((g) => {
            const info = part.groupInfo(g);
            return { group: g, cursor: info?.cursor ?? 0, lag: info?.lag ?? 0, inFlight: info?.inFlight ?? 0, pending: info?.pending ?? 0 };
          });
        }
        return out;
      }),
    });
  }

  private publish(rc: RequestContext, req: PublishFields): void {
    const messages = req.messages;
    if (messages.length === 0 || messages.length > queueAppendBatchCountMax) {
      throw new DsyncError(ErrorCode.BAD_REQUEST, `a publish carries 1 to ${queueAppendBatchCountMax} messages (got ${messages.length})`);
    }
    let bytes = 0;
    for (let i = 0; i < messages.length; i++) {
      const size = messageBytes(messages[i] as Message);
      if (size > queueMessageBytesMax) throw new DsyncError(ErrorCode.MESSAGE_TOO_LARGE, `message ${i} has ${size} bytes; the limit is ${queueMessageBytesMax}`);
      bytes += size;
    }
    const firstSeq = req.firstSeq;
    if (req.producer !== '' && firstSeq < 1) throw new DsyncError(ErrorCode.BAD_REQUEST, 'a producer\'s publish needs first_seq >= 1');
    const h = this.leaderOf(req.topic, req.partition);
    const fencing = fencingOf(req.fencing);
    const producer = req.producer === '' ? undefined : producerId(req.producer);
    const partition = req.partition;
    // Answered from the pending request's own callbacks: no promise and reaction per publish.
    this.submit(h, {
      make: (nowMs) => {
        const cmd: QueueCommand = producer === undefined ? { kind: 'append', nowMs, messages } : { kind: 'append', nowMs, messages, producer, firstSeq };
        return fencing === undefined ? { cmd } : { cmd, fencing };
      },
      bytes,
      ...(this.opts.canary === 'ack-before-majority' ? { early: messages.length } : {}),
      resolve: (o) => {
        const r = o.result;
        if (r.kind === 'error') rc.conn.replyError(rc.requestId, rc.opcode, queueError(r.code, r.message));
        else {
          assert(r.kind === 'appended', 'an append answers appended or an error');
          rc.conn.reply(rc.requestId, rc.opcode, encodePublishReply(partition, r.baseOffset, r.count, r.timestampMs));
        }
      },
      reject: (err) => rc.conn.replyError(rc.requestId, rc.opcode, err),
    });
  }

  /** Replies with render(result), or the result's error, or the proposal's failure. */
  private answer(rc: RequestContext, p: Promise<CommandOutcome>, render: (r: Exclude<QueueResult, { kind: 'error' }>) => Uint8Array): void {
    p.then((o) => {
      if (o.result.kind === 'error') rc.conn.replyError(rc.requestId, rc.opcode, queueError(o.result.code, o.result.message));
      else rc.conn.reply(rc.requestId, rc.opcode, render(o.result));
    }, (err: unknown) => rc.conn.replyError(rc.requestId, rc.opcode, this.node.asDsyncError(err)));
  }

  // ------------------------------------------------------------------ fetch (long poll)

  private fetch(rc: RequestContext, req: ReturnType<typeof schema.FetchRequest.decode>): void {
    if (req.group === '' || req.consumer === '') throw new DsyncError(ErrorCode.BAD_REQUEST, 'a fetch names its group and consumer');
    if (wireNumber(req.seq) < 1) throw new DsyncError(ErrorCode.BAD_REQUEST, 'a fetch needs seq >= 1');
    if (req.max < 1 || req.max > queueFetchCountMax) throw new DsyncError(ErrorCode.BAD_REQUEST, `max must be in [1, ${queueFetchCountMax}] (got ${req.max})`);
    if (req.waitMs > queueFetchWaitMsMax) throw new DsyncError(ErrorCode.BAD_REQUEST, `waitMs must be at most ${queueFetchWaitMsMax} (got ${req.waitMs})`);
    const h = this.leaderOf(req.topic, req.partition);
    const args: FetchArgs = {
      group: consumerGroup(req.group), consumer: consumerId(req.consumer), seq: wireNumber(req.seq),
      max: req.maxInFlight > 0 ? Math.min(req.max, req.maxInFlight) : req.max, ackDeadlineMs: req.ackDeadlineMs,
    };
    this.trackConsumer(h, rc.conn, args.consumer);
    if (this.deliverable(h, args.group)) {
      this.proposeFetch(h, rc, args);
      return;
    }
    if (req.waitMs === 0) {
      rc.conn.reply(rc.requestId, rc.opcode, schema.FetchReply.encode({ partition: h.index, messages: [] }).finish());
      return;
    }
    if (this.parkedCount >= queueParkedFetchesMax) {
      throw new DsyncError(ErrorCode.TOO_MANY_REQUESTS, `${queueParkedFetchesMax} fetches are already waiting on this node; retry shortly`,
        { retryAfterMs: overloadRetryAfterMs });
    }
    const f: ParkedFetch = { hosted: h, ctx: rc, req: args, waitEndMs: this.context.clock.nowMs() + req.waitMs, timer: null, done: false, unsubscribe: () => {} };
    h.parked.add(f);
    this.parkedCount++;
    f.unsubscribe = rc.conn.onClose(() => this.finishFetch(f, null, null));
    this.armFetch(f);
  }

  /** Whether the leader's applied state has anything a fetch of `group` would get now. */
  private deliverable(h: Hosted, group: ConsumerGroup): boolean {
    const part = h.machine.partition;
    const g = part.groupInfo(group);
    if (g === null) return part.logEndOffset > part.logStartOffset;
    if (g.next < part.logEndOffset && g.next - g.cursor < part.config.unackedPerGroupMax) return true;
    return part.nextRedeliveryMs(group) <= this.wallClockMs();
  }

  /** Wakes the parked fetch at its wait end, or sooner when one of its group's redeliveries becomes ready. */
  private armFetch(f: ParkedFetch): void {
    f.timer?.();
    const now = this.context.clock.nowMs();
    const readyInMs = f.hosted.machine.partition.nextRedeliveryMs(f.req.group) - this.wallClockMs();
    const inMs = Math.max(0, Math.min(f.waitEndMs - now, readyInMs + 1));
    f.timer = this.context.scheduler.after(inMs, () => {
      f.timer = null;
      if (f.done) return;
      if (this.deliverable(f.hosted, f.req.group)) this.unparkAndPropose(f);
      else if (this.context.clock.nowMs() >= f.waitEndMs) this.finishFetch(f, schema.FetchReply.encode({ partition: f.hosted.index, messages: [] }).finish(), null);
      else this.armFetch(f);
    });
  }

  private scheduleWake(h: Hosted): void {
    if (h.wakeScheduled) return;
    h.wakeScheduled = true;
    this.context.scheduler.defer(() => {
      h.wakeScheduled = false;
      if (!h.isLeader || h.stopped) return;
      // Oldest first; each proposed fetch may take what the next would have got (it then answers empty).
      for (const f of [...h.parked]) if (this.deliverable(h, f.req.group)) this.unparkAndPropose(f);
    });
  }

  private unparkAndPropose(f: ParkedFetch): void {
    this.release(f);
    this.proposeFetch(f.hosted, f.ctx, f.req);
  }

  private release(f: ParkedFetch): void {
    if (f.done) return;
    f.done = true;
    f.timer?.();
    f.timer = null;
    f.unsubscribe();
    if (f.hosted.parked.delete(f)) this.parkedCount--;
    assert(this.parkedCount >= 0, 'parked fetches counted');
  }

  private finishFetch(f: ParkedFetch, reply: Uint8Array | null, err: DsyncError | null): void {
    if (f.done) return;
    this.release(f);
    if (f.ctx.conn.closed) return;
    if (reply !== null) f.ctx.conn.reply(f.ctx.requestId, f.ctx.opcode, reply);
    else if (err !== null) f.ctx.conn.replyError(f.ctx.requestId, f.ctx.opcode, err);
  }

  private proposeFetch(h: Hosted, rc: RequestContext, a: FetchArgs): void {
    const p = this.enqueue(h, (nowMs) => ({ cmd: a.ackDeadlineMs === 0
      ? { kind: 'fetch', nowMs, group: a.group, consumer: a.consumer, seq: a.seq, max: a.max }
      : { kind: 'fetch', nowMs, group: a.group, consumer: a.consumer, seq: a.seq, max: a.max, ackDeadlineMs: a.ackDeadlineMs } }), 0);
    this.answer(rc, p, (r) => {
      assert(r.kind === 'delivered', 'a fetch answers delivered or an error');
      return schema.FetchReply.encode({ partition: h.index, messages: r.deliveries.map((d) => {
        const m = h.machine.read(d.offset);
        return { delivery: d.delivery, attempt: d.attempt, offset: d.offset, deadlineMs: d.deadlineMs, timestampMs: m.timestampMs, message: toWireMessage(m) };
      }) }).finish();
    });
  }

  // ------------------------------------------------------------------ ack, nack, extend

  private settle(rc: RequestContext, req: ReturnType<typeof schema.SettleRequest.decode>): void {
    if (req.group === '' || req.consumer === '') throw new DsyncError(ErrorCode.BAD_REQUEST, 'a settle names its group and consumer');
    if (req.items.length === 0 || req.items.length > queueAckBatchCountMax) {
      throw new DsyncError(ErrorCode.BAD_REQUEST, `a settle carries 1 to ${queueAckBatchCountMax} items (got ${req.items.length})`);
    }
    const firstSeq = wireNumber(req.firstSeq);
    if (firstSeq < 1) throw new DsyncError(ErrorCode.BAD_REQUEST, 'a settle needs first_seq >= 1');
    const h = this.leaderOf(req.topic, req.partition);
    const base = { group: consumerGroup(req.group), consumer: consumerId(req.consumer) };
    const fencing = fencingOf(req.fencing);
    const wrap = (cmd: QueueCommand): EntryCommand => (fencing === undefined ? { cmd } : { cmd, fencing });
    this.trackConsumer(h, rc.conn, base.consumer);
    const items = req.items.map((i) => ({ delivery: deliveryId(wireNumber(i.delivery)), attempt: i.attempt ?? 0, delayMs: i.delayMs ?? 0, hasDelay: i.hasDelay === true }));
    type Status = { code: string; message: string; atMs: number };
    let answers: Promise<Status[]>;
    const statusOf = (o: CommandOutcome): Status => {
      const r = o.result;
      if (r.kind === 'error') return { code: r.code, message: r.message, atMs: 0 };
      if (r.kind === 'nacked') return { code: '', message: '', atMs: r.redeliverAtMs };
      if (r.kind === 'extended') return { code: '', message: '', atMs: r.deadlineMs };
      return { code: '', message: '', atMs: 0 };
    };
    if (rc.opcode === Opcode.Ack) {
      answers = this.enqueue(h, (nowMs) => wrap({ kind: 'ack', nowMs, ...base, seq: firstSeq, items: items.map((i) => ({ delivery: i.delivery, attempt: i.attempt })) }), 0)
        .then((o) => {
          const r = o.result;
          if (r.kind !== 'acked') return items.map(() => statusOf(o));
          return r.statuses.map((s, i): Status => (s === 'OK' ? { code: '', message: '', atMs: 0 }
            : { code: s, message: settleMessage(s, items[i]?.delivery ?? 0, items[i]?.attempt ?? 0), atMs: 0 }));
        });
    } else {
      const nack = rc.opcode === Opcode.Nack;
      answers = Promise.all(items.map((i, k) => this.enqueue(h, (nowMs) => wrap(nack
        ? (i.hasDelay ? { kind: 'nack', nowMs, ...base, seq: firstSeq + k, delivery: i.delivery, attempt: i.attempt, delayMs: i.delayMs }
          : { kind: 'nack', nowMs, ...base, seq: firstSeq + k, delivery: i.delivery, attempt: i.attempt })
        : { kind: 'extend', nowMs, ...base, seq: firstSeq + k, delivery: i.delivery, attempt: i.attempt }), 0).then(statusOf)));
    }
    answers.then((statuses) => rc.conn.reply(rc.requestId, rc.opcode, schema.SettleReply.encode({ statuses }).finish()),
      (err: unknown) => rc.conn.replyError(rc.requestId, rc.opcode, this.node.asDsyncError(err)));
  }

  // ------------------------------------------------------------------ metrics

  /** What the partitions this node led applied, per topic and event, for dsync_queue_messages_total. */
  private readonly eventCounts = new Map<string, Map<QueueEventName, number>>();

  private countOutcome(topic: string, o: CommandOutcome): void {
    let counts = this.eventCounts.get(topic);
    if (counts === undefined) {
      counts = new Map();
      this.eventCounts.set(topic, counts);
    }
    const r = o.result;
    switch (r.kind) {
      case 'appended': addCount(counts, 'published', r.count); break;
      case 'delivered': {
        let redelivered = 0;
        for (const d of r.deliveries) if (d.attempt > 1) redelivered++;
        addCount(counts, 'delivered', r.deliveries.length);
        addCount(counts, 'redelivered', redelivered);
        break;
      }
      case 'acked': {
        let acked = 0;
        for (const st of r.statuses) if (st === 'OK') acked++;
        addCount(counts, 'acked', acked);
        break;
      }
      case 'nacked': addCount(counts, 'nacked', 1); break;
      case 'expired': addCount(counts, 'deadline_expired', r.count); break;
      default: break;
    }
    let deadLettered = 0;
    for (const e of o.events) if (e.kind === 'deadLettered') deadLettered++;
    addCount(counts, 'dead_lettered', deadLettered);
  }

  /**
   * Placement, offsets and lag for /metrics (and the status page, which reads the same
   * registry), read at scrape time from group 0's topic table and the partitions hosted
   * here. Series are per topic and partition, bounded by queueTopicsMax x partitions.
   */
  private registerMetrics(ctx: ServiceContext): void {
    const m = ctx.node.metrics;
    const hostedParts = (): { topic: string; partition: number; h: Hosted }[] => this.topics.table.list().flatMap((t) =>
      t.placement.flatMap((_replicas, p) => {
        const h = this.hosted.get(groupId(partitionGroupId(t.id, p)));
        return h === undefined ? [] : [{ topic: t.name, partition: p, h }];
      }));
    m.gauge('dsync_queue_partition_info', 'Every partition of every topic (1): its Raft group, replicas (the first preferred) and the leader this node knows',
      ['topic', 'partition', 'group', 'replicas', 'leader'], () => this.topics.table.list().flatMap((t) => this.topicState(t).partitionList.map((p) =>
        [{ topic: t.name, partition: p.index ?? 0, group: p.groupId ?? 0, replicas: (p.replicas ?? []).join(','), leader: p.leaderId ?? '' }, 1] as
          [Record<'topic' | 'partition' | 'group' | 'replicas' | 'leader', string | number>, number])));
    m.gauge('dsync_queue_log_end_offset', 'Offset after the last message of each partition hosted here (grows with every publish)', ['topic', 'partition'],
      () => hostedParts().map(({ topic, partition, h }) => [{ topic, partition }, h.machine.partition.logEndOffset]));
    m.gauge('dsync_queue_backlog_bytes', 'Bytes of messages each partition hosted here retains (key, value and headers)', ['topic', 'partition'],
      () => hostedParts().map(({ topic, partition, h }) => [{ topic, partition }, h.machine.partition.retainedBytes]));
    m.gauge('dsync_queue_log_start_offset', 'First retained offset of each partition hosted here', ['topic', 'partition'],
      () => hostedParts().map(({ topic, partition, h }) => [{ topic, partition }, h.machine.partition.logStartOffset]));
    const perGroup = (pick: (info: { lag: number; inFlight: number }) => number) => (): [Record<'topic' | 'partition' | 'group', string | number>, number][] =>
      hostedParts().flatMap(({ topic, partition, h }) => h.machine.partition.listGroups().map((g) => {
        const info = h.machine.partition.groupInfo(g);
        return [{ topic, partition, group: g }, info === null ? 0 : pick(info)] as [Record<'topic' | 'partition' | 'group', string | number>, number];
      }));
    m.gauge('dsync_queue_lag', 'Messages a consumer group has not yet been handed, per partition hosted here', ['topic', 'partition', 'group'], perGroup((i) => i.lag));
    m.gauge('dsync_queue_in_flight', 'Deliveries handed out and not yet settled, per partition hosted here', ['topic', 'partition', 'group'], perGroup((i) => i.inFlight));
    m.gauge('dsync_queue_dead_letters_pending', 'Dead letters waiting in the replicated outbox of each partition hosted here for the dead-letter topic to take them',
      ['topic', 'partition'], () => hostedParts().map(({ topic, partition, h }) => [{ topic, partition }, h.machine.partition.deadLettersPending]));
    m.counterFrom('dsync_queue_partition_moves_total', 'Partition moves: planned (proposed by this node as group 0\'s leader), step (membership changes '
      + 'this node proposed as a partition\'s leader: learner, promotion, removal), settled (moves whose end this node proposed as group 0\'s leader)',
    ['event'], () => [[{ event: 'planned' }, this.moveCounts.planned], [{ event: 'step' }, this.moveCounts.steps], [{ event: 'settled' }, this.moveCounts.settled]]);
    m.counterFrom('dsync_queue_catchup_total', 'Streamed catch-up of partition snapshots\' bodies: snapshots installed after streaming in (installed), '
      + 'record chunks received and sent (chunks_in, chunks_out) and their bytes (bytes_in, bytes_out)', ['event'], () => {
      const c = this.catchUpCounts;
      return [[{ event: 'installed' }, c.admitted], [{ event: 'chunks_in' }, c.chunksIn], [{ event: 'bytes_in' }, c.bytesIn],
        [{ event: 'chunks_out' }, c.chunksOut], [{ event: 'bytes_out' }, c.bytesOut]];
    });
    m.counterFrom('dsync_queue_dead_letters_dropped_total', 'Dead letters this node dropped after the dead-letter topic refused them for good (it was deleted, or the message no longer fits)',
      [], () => [[{}, this.deadLettersNotForwarded]]);
    m.counterFrom('dsync_queue_messages_total', 'Message events applied by partitions this node led: published, delivered, redelivered, acked, nacked, '
      + 'deadline_expired, dead_lettered (sum over nodes: each entry counts on its leader only)', ['topic', 'event'], () => {
      const live = new Set(this.topics.table.list().map((t) => t.name));
      const out: [{ topic: string; event: string }, number][] = [];
      for (const [topic, counts] of this.eventCounts) {
        // A deleted topic's series end with it (the map stays bounded by the live topics).
        if (!live.has(topic)) {
          this.eventCounts.delete(topic);
          continue;
        }
        for (const [event, n] of counts) out.push([{ topic, event }, n]);
      }
      return out;
    });
    m.gauge('dsync_ring_share', 'Share of the consistent-hash ring each voter of group 0 owns (0-1)', ['member'], () => {
      const voters = this.opts.voters();
      if (voters.length === 0) return [];
      const shares = new Ring(this.opts.hash, { nodes: voters }).shares();
      return voters.map((v) => [{ member: v }, shares.get(v) ?? 0]);
    });
  }

  // ------------------------------------------------------------------ replay, redrive

  private replay(rc: RequestContext, req: ReturnType<typeof schema.ReplayRequest.decode>): void {
    if (req.group === '') throw new DsyncError(ErrorCode.BAD_REQUEST, 'a replay names its group');
    const at = req.byTime ? req.timestampMs : wireNumber(req.offset);
    if (!Number.isSafeInteger(at) || at < 0) {
      throw new DsyncError(ErrorCode.BAD_REQUEST, `replay from ${req.byTime ? 'a timestampMs' : 'an offset'} that is a non-negative integer (got ${at})`);
    }
    const h = this.leaderOf(req.topic, req.partition);
    const group = consumerGroup(req.group);
    const from = req.byTime ? { timestampMs: at } : { offset: offset(at) };
    this.answer(rc, this.enqueue(h, (nowMs) => ({ cmd: { kind: 'replay', nowMs, group, from } }), 0), (r) => {
      assert(r.kind === 'replayed', 'a replay answers replayed or an error');
      return schema.ReplayReply.encode({ offset: r.offset }).finish();
    });
  }

  private redrive(rc: RequestContext, req: ReturnType<typeof schema.RedriveRequest.decode>): void {
    const t = this.topics.table.get(req.topic);
    if (t !== undefined && t.deadLetterTopic === '') throw new DsyncError(ErrorCode.BAD_REQUEST, `${req.topic} is a dead-letter topic; redrive names its source topic`);
    if (req.messages.length === 0 || req.messages.length > queueAppendBatchCountMax) {
      throw new DsyncError(ErrorCode.BAD_REQUEST, `a redrive carries 1 to ${queueAppendBatchCountMax} dead letters (got ${req.messages.length})`);
    }
    const firstDlqOffset = wireNumber(req.firstDlqOffset);
    if (!Number.isSafeInteger(firstDlqOffset) || firstDlqOffset < 0) throw new DsyncError(ErrorCode.BAD_REQUEST, 'first_dlq_offset must be a safe integer');
    let bytes = 0;
    const letters: StoredMessage[] = req.messages.map((w, i) => {
      const m = fromWireMessage(w);
      const info = deadLetterInfo(m);
      if (info === null) throw new DsyncError(ErrorCode.BAD_REQUEST, `message ${i} is not a dead letter (no dsync-dlq-* headers)`);
      if (info.partition !== req.partition) {
        throw new DsyncError(ErrorCode.BAD_REQUEST, `message ${i} is a dead letter of partition ${info.partition}, not of partition ${req.partition}`);
      }
      const size = messageBytes(m);
      if (size > queueMessageBytesMax) throw new DsyncError(ErrorCode.MESSAGE_TOO_LARGE, `message ${i} has ${size} bytes; the limit is ${queueMessageBytesMax}`);
      bytes += size;
      return { ...m, offset: offset(firstDlqOffset + i), timestampMs: 0 };
    });
    const h = this.leaderOf(req.topic, req.partition);
    this.answer(rc, this.enqueue(h, (nowMs) => ({ cmd: redriveAppend(req.topic, partitionId(req.partition), letters, nowMs) }), bytes), (r) => {
      assert(r.kind === 'appended', 'a redrive answers appended or an error');
      return schema.PublishReply.encode({ partition: req.partition, baseOffset: r.baseOffset, count: r.count, timestampMs: r.timestampMs }).finish();
    });
  }

  // ------------------------------------------------------------------ console

  private registerConsole(): void {
    const c = this.node.consoleCommands;
    c.register({
      name: 'topics', usage: 'topics', help: 'every topic with its partitions, replicas and settings (this node\'s applied group 0 state)',
      run: () => {
        const list = this.topics.table.list();
        if (list.length === 0) return '(no topics)';
        return list.map((t) => `${t.name} id=${t.id} partitions=${t.partitions} replicas=${t.replicas} maxDeliveries=${t.maxDeliveries} ackDeadlineMs=${t.ackDeadlineMs}${t.deadLetterTopic === '' ? ' (dead letters)' : ` dlq=${t.deadLetterTopic}`}`).join('\n');
      },
    });
    c.register({
      name: 'topic', usage: 'topic NAME', help: 'one topic: per partition the group, replicas, leader and (where hosted here) offsets and group lag',
      run: (args) => {
        const name = args[0];
        if (name === undefined) return 'usage: topic NAME';
        const t = this.topics.table.get(name);
        if (t === undefined) return `topic ${name} does not exist`;
        const s = this.topicState(t);
        return [`topic ${t.name} id=${t.id} partitions=${t.partitions} replicas=${t.replicas} maxDeliveries=${t.maxDeliveries} ackDeadlineMs=${t.ackDeadlineMs}`,
          ...s.partitionList.map((p) => `  p${p.index} group=${p.groupId} replicas=${(p.replicas ?? []).join(',')} leader=${p.leaderId === '' ? '-' : p.leaderId}`
            + (p.hosted === true ? ` offsets=[${Number(p.logStart)},${Number(p.logEnd)}) ${(p.groups ?? []).map((g) => `${g.group}:lag=${Number(g.lag)},inflight=${g.inFlight}`).join(' ')}` : ''))].join('\n');
      },
    });
    c.register({
      name: 'ring', usage: 'ring', help: 'the consistent-hash ring over group 0\'s voters: each member\'s share of the hash space and the partitions it hosts',
      run: () => {
        const r = this.ringReply();
        if (r.members.length === 0) return '(no voters)';
        return `${r.members.length} members x ${r.vnodesPerNode} virtual nodes\n` + r.members.map((m) =>
          `${m.id} share=${(m.share * 100).toFixed(1)}% partition-replicas=${m.partitionReplicas}`).join('\n');
      },
    });
  }

  /** The ring over group 0's voters as this node knows them: the Ring request and the console's `ring`. */
  private ringReply(): { vnodesPerNode: number; members: { id: string; share: number; partitionReplicas: number }[] } {
    const voters = this.opts.voters();
    if (voters.length === 0) return { vnodesPerNode: 0, members: [] };
    const ring = new Ring(this.opts.hash, { nodes: voters });
    const shares = ring.shares();
    const hostedBy = new Map<string, number>();
    for (const t of this.topics.table.list()) for (const r of t.placement) for (const n of r) hostedBy.set(n, (hostedBy.get(n) ?? 0) + 1);
    return { vnodesPerNode: ring.vnodesPerNode, members: voters.map((v) => ({ id: v, share: shares.get(v) ?? 0, partitionReplicas: hostedBy.get(v) ?? 0 })) };
  }
}

type QueueEventName = 'published' | 'delivered' | 'redelivered' | 'acked' | 'nacked' | 'deadline_expired' | 'dead_lettered';

function fencingOf(f: { lock?: string | null; token?: number | null } | null | undefined): Fencing | undefined {
  if (f === null || f === undefined || (f.lock ?? '') === '') return undefined;
  return { lock: f.lock ?? '', token: Number(f.token ?? 0) };
}

function addCount(counts: Map<QueueEventName, number>, event: QueueEventName, n: number): void {
  if (n > 0) counts.set(event, (counts.get(event) ?? 0) + n);
}

function queueError(code: string, message: string): DsyncError {
  return new DsyncError(isErrorCode(code) ? code : ErrorCode.INTERNAL, message);
}

function settleMessage(code: string, delivery: number, attempt: number): string {
  switch (code) {
    case 'NOT_FOUND': return `delivery ${delivery} is not outstanding in this group (unknown, acked, dead-lettered or replayed past)`;
    case 'LATE_ACK': return `delivery ${delivery} attempt ${attempt} was already handed out again`;
    default: return `delivery ${delivery} has no attempt ${attempt}`;
  }
}

