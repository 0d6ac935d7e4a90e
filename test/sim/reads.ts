// Linearizable ReadIndex reads under faults: clients write registers ("set k=v",
// unique values) through Raft while readers ask leaders and followers for
// ReadIndex reads (unique contexts) and serve them from the local state machine
// once it applied the read index. Every read's invocation and response (virtual
// ms) and the value it saw are checked against the writes' commit order.
//
// Per key, with writes ordered by the log index they committed at:
// - a read sees a committed write (or the initial empty value);
// - it sees nothing older than a write that committed before the read started
//   (committed = first applied anywhere, no later than any acknowledgement);
// - it sees no write that was first proposed after the read completed;
// - reads do not go back in time: a read that starts after another completed
//   sees the same write or a later one.
// The 'local' variant (canary) answers from local applied state at once
// without ReadIndex - the stale follower read - and must be caught.

import { assert } from '../../core/assert.js';
import { Xoshiro128 } from '../../core/prng.js';
import { EntryType } from '../../core/raft/types.js';
import type { RaftNode, Ready } from '../../core/raft/types.js';
import { Cluster } from './cluster.js';
import { failureOf, seedOutcome } from './common.js';
import type { SeedOutcome } from './common.js';
import type { ClusterObserver, ClusterOptions, RaftFactory, SimNode } from './cluster.js';
import { RetryingClient, startClient } from './membership.js';
import { healAll, profileFor, startFaults } from './swarm.js';
import type { FaultState } from './swarm.js';

/** correct: ReadIndex then wait for applied >= index; local: serve local state at once; no-wait: serve on the ReadState without waiting to apply. */
export type ReadVariant = 'correct' | 'local' | 'no-wait';

export const readKeys = ['a', 'b', 'c'] as const;

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** Write payloads are `w:<key>:<unique value>`. */
export function writePayload(key: string, value: string): string {
  return `w:${key}:${value}`;
}

function keyOf(payload: string): string | null {
  if (!payload.startsWith('w:')) return null;
  const end = payload.indexOf(':', 2);
  return end < 0 ? null : payload.slice(2, end);
}

/** The register `key` at a replica: the last applied write to it ('' before any). */
export function registerValue(node: SimNode, key: string): string {
  const log = node.sm.log;
  for (let i = log.length - 1; i >= 0; i--) {
    const p = log[i] as string;
    if (keyOf(p) === key) return p;
  }
  return '';
}

export interface WriteRecord {
  readonly payload: string;
  readonly key: string;
  readonly invokedMs: number;
  /** First log index it committed (applied) at; Infinity while not yet. */
  commitIndex: number;
  commitMs: number;
}

export interface ReadRecord {
  readonly id: string;
  readonly key: string;
  readonly node: number;
  readonly invokedMs: number;
  respondedMs: number;
  value: string;
  readIndex: number;
  appliedAtServe: number;
}

interface PendingRead {
  readonly rec: ReadRecord;
  readonly incarnation: number;
  index: number;
}

/** Serves ReadStates on each node once it applied their index, and records write commits. */
export class ReadHarness implements ClusterObserver {
  readonly writes = new Map<string, WriteRecord>();
  readonly reads: ReadRecord[] = [];
  private readonly pending = new Map<string, PendingRead>();
  private seq = 0;
  readonly counts = { issued: 0, answered: 0, refused: 0, abandoned: 0, onFollower: 0, answeredOnFollower: 0 };

  constructor(
    private readonly c: Cluster,
    private readonly variant: ReadVariant,
  ) {}

  afterAdvance(node: SimNode, _raft: RaftNode, rd: Ready): void {
    for (const e of rd.committedEntries) {
      if (e.type !== EntryType.Normal || e.data.length === 0) continue;
      const w = this.writes.get(decoder.decode(e.data));
      if (w !== undefined && e.index < w.commitIndex) {
        w.commitIndex = e.index;
        if (w.commitMs === Infinity) w.commitMs = this.c.nowMs;
      }
    }
    for (const rs of rd.readStates) {
      const p = this.pending.get(decoder.decode(rs.context));
      if (p === undefined || p.rec.node !== node.idx || p.incarnation !== node.incarnation) continue;
      p.index = rs.index;
      if (this.variant === 'no-wait') this.serve(node, p);
    }
    for (const p of [...this.pending.values()]) {
      if (p.rec.node === node.idx && p.index >= 0 && node.sm.appliedIndex >= p.index && p.incarnation === node.incarnation) this.serve(node, p);
    }
  }

  private serve(node: SimNode, p: PendingRead): void {
    this.pending.delete(p.rec.id);
    p.rec.respondedMs = this.c.nowMs;
    p.rec.value = registerValue(node, p.rec.key);
    p.rec.readIndex = p.index;
    p.rec.appliedAtServe = node.sm.appliedIndex;
    this.reads.push(p.rec);
    this.counts.answered++;
    if (node.raft !== null && node.raft.status().leader !== node.id) this.counts.answeredOnFollower++;
  }

  write(payload: string, key: string): void {
    if (!this.writes.has(payload)) this.writes.set(payload, { payload, key, invokedMs: this.c.nowMs, commitIndex: Infinity, commitMs: Infinity });
  }

  /** Starts a read of `key` on node `idx`; returns its id, or null when the node refused (no leader known). */
  read(idx: number, key: string, reader: string): string | null {
    const node = this.c.node(idx);
    const id = `${reader}-${this.seq++}`;
    const rec: ReadRecord = { id, key, node: idx, invokedMs: this.c.nowMs, respondedMs: -1, value: '', readIndex: -1, appliedAtServe: -1 };
    this.counts.issued++;
    if (node.raft === null) {
      this.counts.refused++;
      return null;
    }
    const st = node.raft.status();
    if (st.leader !== node.id) this.counts.onFollower++;
    const p: PendingRead = { rec, incarnation: node.incarnation, index: -1 };
    if (this.variant === 'local') {
      this.serve(node, p);
      return id;
    }
    this.pending.set(id, p);
    let accepted = true;
    this.c.readIndex(idx, encoder.encode(id), (ok) => {
      accepted = ok;
      if (!ok) this.pending.delete(id);
    });
    if (!accepted) this.counts.refused++;
    return accepted ? id : null;
  }

  isPending(id: string): boolean {
    return this.pending.has(id);
  }

  /** A read not answered in time is dropped; a late answer is never used (the client gave up). */
  abandon(id: string): void {
    if (this.pending.delete(id)) this.counts.abandoned++;
  }

  /** Linearizability per key against the writes' commit order; returns the first violation or ''. */
  check(): string {
    for (const key of readKeys) {
      const writes = [...this.writes.values()].filter((w) => w.key === key);
      const committed = writes.filter((w) => w.commitIndex !== Infinity).sort((a, b) => a.commitIndex - b.commitIndex);
      const pos = new Map<string, number>(committed.map((w, i) => [w.payload, i + 1]));
      const reads = this.reads.filter((r) => r.key === key).sort((a, b) => a.invokedMs - b.invokedMs);
      for (const r of reads) {
        const at = r.value === '' ? 0 : pos.get(r.value);
        if (at === undefined) return `read ${r.id} of ${key} on n${r.node + 1} saw "${r.value}", which never committed`;
        const w = r.value === '' ? null : this.writes.get(r.value);
        if (w !== null && w !== undefined && w.invokedMs > r.respondedMs) {
          return `read ${r.id} of ${key} on n${r.node + 1} [${r.invokedMs}, ${r.respondedMs}]ms saw "${r.value}", proposed later at ${w.invokedMs}ms`;
        }
        let newest = 0;
        for (const cw of committed) if (cw.commitMs < r.invokedMs) newest = Math.max(newest, pos.get(cw.payload) ?? 0);
        if (at < newest) {
          const missed = committed[newest - 1];
          assert(missed !== undefined, 'position in range');
          return (
            `stale read ${r.id} of ${key} on n${r.node + 1} [${r.invokedMs}, ${r.respondedMs}]ms (read index ${r.readIndex}, applied ${r.appliedAtServe}) ` +
            `saw "${r.value || '<empty>'}" but "${missed.payload}" committed at index ${missed.commitIndex} at ${missed.commitMs}ms`
          );
        }
      }
      for (const r1 of reads) {
        for (const r2 of reads) {
          if (r1.respondedMs >= r2.invokedMs) continue;
          const p1 = r1.value === '' ? 0 : (pos.get(r1.value) ?? 0);
          const p2 = r2.value === '' ? 0 : (pos.get(r2.value) ?? 0);
          if (p2 < p1) return `read ${r2.id} (from ${r2.invokedMs}ms) saw older "${r2.value || '<empty>'}" than ${r1.id} (done ${r1.respondedMs}ms) "${r1.value}"`;
        }
      }
    }
    return '';
  }
}

export interface ReadsOptions {
  readonly raftFactory: RaftFactory;
  readonly variant?: ReadVariant;
  readonly faultPhaseMs?: number;
  readonly trace?: boolean;
  readonly clusterOverrides?: Partial<ClusterOptions>;
}

export interface ReadsResult extends SeedOutcome {
  readonly reads: ReadHarness['counts'];
  readonly writesCommitted: number;
}

export function runReadsSeed(seed: number, opts: ReadsOptions): ReadsResult {
  const variant = opts.variant ?? 'correct';
  const profiled = profileFor(seed, opts.raftFactory, 'correct');
  const clusterOpts: ClusterOptions = { ...profiled.cluster, ...opts.clusterOverrides };
  const f = profiled.faults;
  const c = new Cluster(clusterOpts);
  c.traceEnabled = opts.trace === true;
  const h = new ReadHarness(c, variant);
  c.observers.push(h);
  const prng = new Xoshiro128(seed ^ 0x4ead4ead);
  const electionMs = clusterOpts.electionTicks * clusterOpts.tickMs;
  const faults: FaultState = { on: true, keepDown: new Set() };
  const writers: RetryingClient[] = [];
  for (let i = 0; i < Math.max(2, f.clients); i++) {
    const name = `c${i}`;
    const keyFor = (seq: number): string => readKeys[(seq * 7 + i) % readKeys.length] as string;
    const client = new RetryingClient(c, name, prng, f.payloadsPerClient, 4 * electionMs, (seq) => writePayload(keyFor(seq), `${name}-${seq}`));
    const step = client.step.bind(client);
    // Record each write at its first proposal.
    const wrapped = {
      step: (): void => {
        const before = client.issued.length;
        step();
        const p = client.issued[before];
        if (p !== undefined) h.write(p, keyOf(p) ?? '');
      },
    };
    writers.push(client);
    startClient(c, prng, wrapped);
  }
  const readersCount = prng.int(2, 4);
  let readsOn = true;
  for (let i = 0; i < readersCount; i++) {
    let current: { id: string; sinceMs: number } | null = null;
    const loop = (): void => {
      if (current !== null && h.isPending(current.id) && c.nowMs - current.sinceMs < 4 * electionMs) {
        c.schedule(prng.int(5, 30), loop);
        return;
      }
      if (current !== null) h.abandon(current.id);
      current = null;
      if (readsOn) {
        const id = h.read(prng.int(0, c.nodes.length - 1), readKeys[prng.int(0, readKeys.length - 1)] as string, `r${i}`);
        if (id !== null) current = { id, sinceMs: c.nowMs };
      }
      c.schedule(prng.int(5, 30), loop);
    };
    c.schedule(prng.int(0, 30), loop);
  }
  startFaults(c, prng, f, electionMs, faults);
  const profile = `nodes=${clusterOpts.nodeCount} preVote=${clusterOpts.preVote} checkQuorum=${clusterOpts.checkQuorum} drop=${clusterOpts.network.dropProb} readers=${readersCount} variant=${variant}`;
  const result = (property: string, error: string): ReadsResult => ({
    ...seedOutcome(seed, property, error, profile, c),
    reads: h.counts,
    writesCommitted: [...h.writes.values()].filter((w) => w.commitIndex !== Infinity).length,
  });
  try {
    c.runMs(opts.faultPhaseMs ?? 3_000);
    healAll(c, faults);
    for (const w of writers) w.budget = Math.max(w.budget, 0) + 1;
    if (!c.runUntil(() => writers.every((w) => w.done), 20_000)) {
      return result('liveness', `writes not acknowledged after healing: ${writers.map((w) => w.describe()).join('; ')}`);
    }
    // After healing every node answers a read of every key, and sees the last write.
    readsOn = false;
    // Reads lost with a leader change are never answered: retry each a few times.
    for (let idx = 0; idx < c.nodes.length; idx++) {
      for (const key of readKeys) {
        let answered = false;
        for (let attempt = 0; attempt < 10 && !answered; attempt++) {
          let id: string | null = null;
          c.runUntil(() => (id = h.read(idx, key, `final-n${idx + 1}`)) !== null, 30 * electionMs);
          if (id === null) return result('liveness', `n${idx + 1} refuses reads after healing`);
          const asked: string = id;
          answered = c.runUntil(() => !h.isPending(asked), 4 * electionMs);
          if (!answered) h.abandon(asked);
        }
        if (!answered) return result('liveness', `a read of ${key} on n${idx + 1} was not answered in 10 attempts after healing`);
      }
    }
    const violation = h.check();
    if (violation !== '') return result('linearizability', violation);
    return result('', '');
  } catch (err) {
    const failure = failureOf(err);
    return result(failure.property, failure.error);
  }
}
