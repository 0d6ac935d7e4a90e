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
// - Dead letters: creating NAME also creates NAME.dlq (next id, same partitions and
//   replicas, never dead-letters itself); deleting NAME deletes both. ".dlq" names are
//   reserved: a user cannot create or delete one directly.
// - Names: [A-Za-z0-9][A-Za-z0-9._-]*, at most queueTopicNameCharsMax characters.

import { assertNever } from '../assert.js';
import { queueTopicIdMax, queueTopicNameCharsMax, queueTopicPartitionsDefault, queueTopicPartitionsMax, queueTopicsMax,
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
}

export interface TopicTableSnapshot {
  readonly nextId: number;
  readonly topics: readonly TopicRecord[];
}

export type TopicErrorCode = 'BAD_REQUEST' | 'NOT_FOUND' | 'ALREADY_EXISTS' | 'TOO_MANY_REQUESTS';

export type TopicResult =
  | { readonly kind: 'created'; readonly topic: TopicRecord; readonly deadLetter: TopicRecord }
  /** A create of a topic that exists with exactly these settings (a repeated create, e.g. a client's retry): nothing changed. */
  | { readonly kind: 'exists'; readonly topic: TopicRecord }
  | { readonly kind: 'deleted'; readonly topics: readonly TopicRecord[] }
  | { readonly kind: 'error'; readonly code: TopicErrorCode; readonly message: string };

export type TopicCommand =
  | { readonly kind: 'create'; readonly spec: TopicSpec }
  | { readonly kind: 'delete'; readonly name: string };

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
    const topic: TopicRecord = {
      name: spec.name, id, partitions, replicas, maxDeliveries: config.maxDeliveries, ackDeadlineMs: config.ackDeadlineMs,
      retention: { ...config.retention }, deadLetterTopic: dlqName, placement: place(id), createdIndex: index,
    };
    const deadLetter: TopicRecord = {
      name: dlqName, id: id + 1, partitions, replicas, maxDeliveries: 0, ackDeadlineMs: config.ackDeadlineMs,
      retention: { ...config.retention }, deadLetterTopic: '', placement: place(id + 1), createdIndex: index,
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

  toSnapshot(): TopicTableSnapshot {
    return { nextId: this.nextId, topics: this.list().map((t) => ({ ...t, retention: { ...t.retention }, placement: t.placement.map((r) => [...r]) })) };
  }

  restore(snap: TopicTableSnapshot): void {
    this.topics.clear();
    this.nextId = snap.nextId;
    for (const t of snap.topics) this.topics.set(t.name, { ...t, retention: { ...t.retention }, placement: t.placement.map((r) => [...r]) });
  }
}
