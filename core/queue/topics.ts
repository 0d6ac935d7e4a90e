// The topic table group 0 replicates: each topic's settings, its id and where its
// partitions live. Pure and deterministic: every replica applying the same create and
// delete commands, with the same voters at the same log index, reaches the same table.
//
// Decisions:
// - Ids: a topic gets the next id (1, 2, ...) and ids are never reused, also after a
//   delete. Partition p of topic id t is Raft group t x queueTopicPartitionsMax + p, so
//   group ids never collide with group 0 (t >= 1) nor with any earlier topic's groups.
//   Ids stop at queueTopicIdMax (group ids must fit a u32): a create then fails.
// - Placement: computed once, when the create applies, by core/ring over the voters
//   group 0 has at that index (placeBounded over the keys "id/p", so a topic's replicas
//   are spread within loadFactor of the mean), and recorded in the topic: every replica
//   reads the same placement instead of recomputing it later with other members.
//   The first replica of a partition is its preferred leader; each replica set is
//   rotated so preferred leaders spread evenly over the nodes (the set is unchanged).
// - Moves (core/queue/rebalance.ts plans them): a move names the partition's epoch it was
//   planned against (compare and set) and the replica set wanted; applying it makes that
//   the placement, bumps the epoch, and adds the wanted nodes to the partition's hosts:
//   every node that may be in its Raft configuration, which is the set that hosts its
//   group. The partition's leader walks the group there by membership change, then a
//   settle naming the epoch shrinks the hosts to the placement; the nodes that left drop
//   the group and are remembered as retired: group ids are never reused on a node (the
//   WAL's tombstone), so a partition never moves back to a node it left. A partition's
//   Raft group is bootstrapped with its origin (first) replica set on every node that
//   ever hosts it, so a new replica that replays the log from index 1 derives the same
//   configuration as the others.
// - Dead letters: creating NAME also creates NAME.dlq (next id, same partitions and
//   replicas, never dead-letters itself); deleting NAME deletes both. ".dlq" names are
//   reserved: a user cannot create or delete one directly.
// - Names: [A-Za-z0-9][A-Za-z0-9._-]*, at most queueTopicNameCharsMax characters.

import { assertNever } from '../assert.js';
import { queuePartitionRetiredMax, queueTopicIdMax, queueTopicNameCharsMax, queueTopicPartitionsDefault, queueTopicPartitionsMax, queueTopicsMax,
  ringReplicasDefault } from '../constants.js';
import type { NodeId } from '../ids.js';
import { Ring, type Hash32 } from '../ring/index.js';
import { checkPartitionConfig, defaultPartitionConfig, type PartitionConfig, type RetentionConfig } from './partition.js';

export const deadLetterSuffix = '.dlq';
const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** What a create asks for; absent fields take the defaults. */
export interface TopicSpec {
  readonly name: string;
  readonly partitions?: number;
  readonly replicas?: number;
  readonly maxDeliveries?: number;
  readonly ackDeadlineMs?: number;
  readonly retention?: RetentionConfig;
}

export interface TopicRecord {
  readonly name: string;
  readonly id: number;
  readonly partitions: number;
  /** Replicas per partition as created (at most the voters then). */
  readonly replicas: number;
  readonly maxDeliveries: number;
  readonly ackDeadlineMs: number;
  readonly retention: RetentionConfig;
  /** NAME.dlq for a topic, '' for a dead-letter topic. */
  readonly deadLetterTopic: string;
  /** placement[p]: partition p's replica set, the first its preferred leader. */
  readonly placement: readonly (readonly NodeId[])[];
  /** The group 0 log index that created it. */
  readonly createdIndex: number;
  /** epochs[p]: bumped by every move of partition p (a move or settle names the epoch it expects). */
  readonly epochs: readonly number[];
  /** hosts[p]: placement[p] plus, while a move is under way, the replicas it moves away from (sorted). */
  readonly hosts: readonly (readonly NodeId[])[];
  /** origin[p]: the replica set partition p's group was created with (its bootstrap configuration). */
  readonly origin: readonly (readonly NodeId[])[];
  /** retired[p]: nodes partition p left (never placed on again), oldest first. */
  readonly retired: readonly (readonly NodeId[])[];
}

/** Whether partition p of `t` has a move under way (some host is not in its placement). */
export function isMoving(t: TopicRecord, p: number): boolean {
  return (t.hosts[p]?.length ?? 0) !== (t.placement[p]?.length ?? 0);
}

export interface TopicTableSnapshot {
  readonly nextId: number;
  readonly topics: readonly TopicRecord[];
}

export type TopicErrorCode = 'BAD_REQUEST' | 'NOT_FOUND' | 'ALREADY_EXISTS' | 'TOO_MANY_REQUESTS' | 'STALE_REQUEST';

export type TopicResult =
  | { readonly kind: 'created'; readonly topic: TopicRecord; readonly deadLetter: TopicRecord }
  /** A create of a topic that exists with exactly these settings (a repeated create, e.g. a client's retry): nothing changed. */
  | { readonly kind: 'exists'; readonly topic: TopicRecord }
  | { readonly kind: 'deleted'; readonly topics: readonly TopicRecord[] }
  /** A move or settle applied: the topic as it is now. */
  | { readonly kind: 'moved' | 'settled'; readonly topic: TopicRecord }
  | { readonly kind: 'error'; readonly code: TopicErrorCode; readonly message: string };

export type TopicCommand =
  | { readonly kind: 'create'; readonly spec: TopicSpec }
  | { readonly kind: 'delete'; readonly name: string }
  /** Partition `partition` of `name` is to live on `replicas` (first the preferred leader), if its epoch is still `epoch`. */
  | { readonly kind: 'move'; readonly name: string; readonly partition: number; readonly epoch: number; readonly replicas: readonly NodeId[] }
  /** The move of epoch `epoch` is done: the partition's group has exactly its placement as voters. */
  | { readonly kind: 'settle'; readonly name: string; readonly partition: number; readonly epoch: number };

const fail = (code: TopicErrorCode, message: string): TopicResult => ({ kind: 'error', code, message });

/** Partition p of topic `topicId`'s Raft group id. */
export function partitionGroupId(topicId: number, p: number): number {
  return topicId * queueTopicPartitionsMax + p;
}

/** Why `name` cannot name a topic a user creates, or null. */
export function topicNameError(name: unknown): string | null {
  if (typeof name !== 'string' || name.length === 0 || name.length > queueTopicNameCharsMax || !namePattern.test(name)) {
    return `a topic name is 1 to ${queueTopicNameCharsMax} characters of A-Z a-z 0-9 . _ - starting with a letter or digit (got ${JSON.stringify(name)})`;
  }
  if (name.endsWith(deadLetterSuffix)) return `topic names ending in ${deadLetterSuffix} are reserved for dead-letter topics`;
  return null;
}

/** The partition settings of a topic, as its partitions' state machines take them. */
export function partitionConfigOf(t: TopicRecord): PartitionConfig {
  return { ...defaultPartitionConfig, maxDeliveries: t.maxDeliveries, ackDeadlineMs: t.ackDeadlineMs, retention: { ...t.retention } };
}

export class TopicTable {
  private readonly topics = new Map<string, TopicRecord>();
  private nextId = 1;

  constructor(private readonly hash: Hash32) {}

  get(name: string): TopicRecord | undefined {
    return this.topics.get(name);
  }

  /** Every topic, by name. */
  list(): TopicRecord[] {
    return [...this.topics.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  get size(): number {
    return this.topics.size;
  }

  /** The id the next topic gets (ids are never reused). */
  get nextTopicId(): number {
    return this.nextId;
  }

  apply(cmd: TopicCommand, voters: readonly NodeId[], index: number): TopicResult {
    switch (cmd.kind) {
      case 'create': return this.create(cmd.spec, voters, index);
      case 'delete': return this.delete(cmd.name);
      case 'move': return this.move(cmd.name, cmd.partition, cmd.epoch, cmd.replicas);
      case 'settle': return this.settle(cmd.name, cmd.partition, cmd.epoch);
      default: return assertNever(cmd, 'topic command');
    }
  }

  private create(spec: TopicSpec, voters: readonly NodeId[], index: number): TopicResult {
    const badName = topicNameError(spec.name);
    if (badName !== null) return fail('BAD_REQUEST', badName);
    const partitions = spec.partitions ?? queueTopicPartitionsDefault;
    if (!Number.isSafeInteger(partitions) || partitions < 1 || partitions > queueTopicPartitionsMax) {
      return fail('BAD_REQUEST', `partitions must be an integer in [1, ${queueTopicPartitionsMax}] (got ${partitions})`);
    }
    if (voters.length === 0) return fail('BAD_REQUEST', 'the cluster has no voters to place partitions on');
    const replicas = spec.replicas ?? Math.min(ringReplicasDefault, voters.length);
    if (!Number.isSafeInteger(replicas) || replicas < 1 || replicas > voters.length) {
      return fail('BAD_REQUEST', `replicas must be an integer in [1, ${voters.length}] (the cluster has ${voters.length} voters; got ${replicas})`);
    }
    const config: PartitionConfig = {
      ...defaultPartitionConfig,
      maxDeliveries: spec.maxDeliveries ?? defaultPartitionConfig.maxDeliveries,
      ackDeadlineMs: spec.ackDeadlineMs ?? defaultPartitionConfig.ackDeadlineMs,
      retention: spec.retention ?? defaultPartitionConfig.retention,
    };
    const badConfig = checkPartitionConfig(config);
    if (badConfig !== null) return fail('BAD_REQUEST', badConfig);
    const existing = this.topics.get(spec.name);
    if (existing !== undefined) {
      // As SQS's CreateQueue: the same settings again answer the existing topic, so a create repeated after a lost answer succeeds.
      const differs = [
        existing.partitions !== partitions ? `partitions ${existing.partitions} (asked ${partitions})` : '',
        existing.replicas !== replicas ? `replicas ${existing.replicas} (asked ${replicas})` : '',
        existing.maxDeliveries !== config.maxDeliveries ? `maxDeliveries ${existing.maxDeliveries} (asked ${config.maxDeliveries})` : '',
        existing.ackDeadlineMs !== config.ackDeadlineMs ? `ackDeadlineMs ${existing.ackDeadlineMs} (asked ${config.ackDeadlineMs})` : '',
        JSON.stringify(existing.retention) !== JSON.stringify({ ...config.retention }) ? 'other retention' : '',
      ].filter((d) => d !== '');
      if (differs.length > 0 || existing.deadLetterTopic === '') {
        return fail('ALREADY_EXISTS', `topic ${spec.name} exists already${differs.length > 0 ? ` with ${differs.join(', ')}` : ''}`);
      }
      return { kind: 'exists', topic: existing };
    }
    if (this.topics.size + 2 > queueTopicsMax) return fail('TOO_MANY_REQUESTS', `the cluster holds ${this.topics.size} topics (at most ${queueTopicsMax}, dead-letter topics included)`);
    if (this.nextId + 1 > queueTopicIdMax) return fail('TOO_MANY_REQUESTS', `topic ids are exhausted (${queueTopicIdMax} topics were ever created)`);

    const ring = new Ring(this.hash, { nodes: voters });
    // Preferred leaders (first replicas) spread over the nodes: each partition's replica set
    // is rotated to start at its member that is preferred leader of the fewest partitions so
    // far (all topics, then this one; ties by position in the set), deterministically.
    const firsts = new Map<NodeId, number>();
    for (const t of this.topics.values()) for (const r of t.placement) if (r[0] !== undefined) firsts.set(r[0], (firsts.get(r[0]) ?? 0) + 1);
    const place = (id: number): NodeId[][] => ring.placeBounded(Array.from({ length: partitions }, (_, p) => `${id}/${p}`), replicas).map((reps) => {
      let best = 0;
      reps.forEach((n, i) => { if ((firsts.get(n) ?? 0) < (firsts.get(reps[best] as NodeId) ?? 0)) best = i; });
      const rotated = [...reps.slice(best), ...reps.slice(0, best)];
      const first = rotated[0] as NodeId;
      firsts.set(first, (firsts.get(first) ?? 0) + 1);
      return rotated;
    });
    const id = this.nextId;
    const dlqName = spec.name + deadLetterSuffix;
    const moves = (placement: readonly (readonly NodeId[])[]): Pick<TopicRecord, 'epochs' | 'hosts' | 'origin' | 'retired'> => ({
      epochs: placement.map(() => 0), hosts: placement.map((r) => [...r].sort()), origin: placement.map((r) => [...r].sort()), retired: placement.map(() => []),
    });
    const topicPlacement = place(id);
    const deadLetterPlacement = place(id + 1);
    const topic: TopicRecord = {
      name: spec.name, id, partitions, replicas, maxDeliveries: config.maxDeliveries, ackDeadlineMs: config.ackDeadlineMs,
      retention: { ...config.retention }, deadLetterTopic: dlqName, placement: topicPlacement, createdIndex: index, ...moves(topicPlacement),
    };
    const deadLetter: TopicRecord = {
      name: dlqName, id: id + 1, partitions, replicas, maxDeliveries: 0, ackDeadlineMs: config.ackDeadlineMs,
      retention: { ...config.retention }, deadLetterTopic: '', placement: deadLetterPlacement, createdIndex: index, ...moves(deadLetterPlacement),
    };
    this.nextId = id + 2;
    this.topics.set(topic.name, topic);
    this.topics.set(deadLetter.name, deadLetter);
    return { kind: 'created', topic, deadLetter };
  }

  private delete(name: string): TopicResult {
    if (typeof name !== 'string' || name === '') return fail('BAD_REQUEST', 'delete needs a topic name');
    if (name.endsWith(deadLetterSuffix) && this.topics.get(name)?.deadLetterTopic === '') {
      return fail('BAD_REQUEST', `${name} is a dead-letter topic; delete ${name.slice(0, -deadLetterSuffix.length)} to delete it`);
    }
    const t = this.topics.get(name);
    if (t === undefined) return fail('NOT_FOUND', `topic ${name} does not exist`);
    const gone: TopicRecord[] = [t];
    this.topics.delete(name);
    const dlq = this.topics.get(t.deadLetterTopic);
    if (dlq !== undefined) {
      gone.push(dlq);
      this.topics.delete(dlq.name);
    }
    return { kind: 'deleted', topics: gone };
  }

  private move(name: string, p: number, epoch: number, replicas: readonly NodeId[]): TopicResult {
    const t = this.topics.get(name);
    if (t === undefined) return fail('NOT_FOUND', `topic ${name} does not exist`);
    if (!Number.isSafeInteger(p) || p < 0 || p >= t.partitions) return fail('BAD_REQUEST', `topic ${name} has no partition ${p}`);
    if (t.epochs[p] !== epoch) return fail('STALE_REQUEST', `partition ${p} of ${name} is at epoch ${t.epochs[p]}, not ${epoch}`);
    if (replicas.length !== t.replicas || new Set(replicas).size !== replicas.length || replicas.some((r) => typeof r !== 'string' || r === '')) {
      return fail('BAD_REQUEST', `a move of ${name} places each partition on ${t.replicas} distinct nodes (got ${replicas.join(',')})`);
    }
    const retired = t.retired[p] ?? [];
    const back = replicas.find((r) => retired.includes(r));
    if (back !== undefined) return fail('BAD_REQUEST', `partition ${p} of ${name} left ${back} before; it cannot move back (group ids are not reused on a node)`);
    const hosts = [...new Set([...(t.hosts[p] ?? []), ...replicas])].sort();
    const next: TopicRecord = {
      ...t,
      placement: t.placement.map((r, i) => (i === p ? [...replicas] : r)),
      epochs: t.epochs.map((e, i) => (i === p ? e + 1 : e)),
      hosts: t.hosts.map((h, i) => (i === p ? hosts : h)),
    };
    this.topics.set(name, next);
    return { kind: 'moved', topic: next };
  }

  private settle(name: string, p: number, epoch: number): TopicResult {
    const t = this.topics.get(name);
    if (t === undefined) return fail('NOT_FOUND', `topic ${name} does not exist`);
    if (!Number.isSafeInteger(p) || p < 0 || p >= t.partitions) return fail('BAD_REQUEST', `topic ${name} has no partition ${p}`);
    if (t.epochs[p] !== epoch) return fail('STALE_REQUEST', `partition ${p} of ${name} is at epoch ${t.epochs[p]}, not ${epoch}`);
    if (!isMoving(t, p)) return fail('STALE_REQUEST', `partition ${p} of ${name} has no move under way`);
    const placement = t.placement[p] ?? [];
    const leaving = (t.hosts[p] ?? []).filter((n) => !placement.includes(n));
    const retired = [...(t.retired[p] ?? []).filter((n) => !leaving.includes(n)), ...leaving];
    const next: TopicRecord = {
      ...t,
      hosts: t.hosts.map((h, i) => (i === p ? [...placement].sort() : h)),
      retired: t.retired.map((r, i) => (i === p ? retired.slice(-queuePartitionRetiredMax) : r)),
    };
    this.topics.set(name, next);
    return { kind: 'settled', topic: next };
  }

  toSnapshot(): TopicTableSnapshot {
    return { nextId: this.nextId, topics: this.list().map(copyTopic) };
  }

  restore(snap: TopicTableSnapshot): void {
    this.topics.clear();
    this.nextId = snap.nextId;
    for (const t of snap.topics) this.topics.set(t.name, copyTopic(t));
  }
}

/**
 * A deep copy; a record from a snapshot taken before partitions moved (no epochs, hosts,
 * origin, retired) gets them from its placement, which no move had changed then.
 */
function copyTopic(t: TopicRecord): TopicRecord {
  const placement = t.placement.map((r) => [...r]);
  const old = t as Partial<Pick<TopicRecord, 'epochs' | 'hosts' | 'origin' | 'retired'>>;
  return {
    ...t, retention: { ...t.retention }, placement,
    epochs: old.epochs !== undefined ? [...old.epochs] : placement.map(() => 0),
    hosts: old.hosts !== undefined ? old.hosts.map((r) => [...r]) : placement.map((r) => [...r].sort()),
    origin: old.origin !== undefined ? old.origin.map((r) => [...r]) : placement.map((r) => [...r].sort()),
    retired: old.retired !== undefined ? old.retired.map((r) => [...r]) : placement.map(() => []),
  };
}
