// One write-ahead log per node for every Raft group. append() encodes records into a
// SharedArrayBuffer ring and returns at once; a worker thread group-commits them
// (one write + one fdatasync per batch); durability comes back via Atomics.waitAsync.

import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { RingBuffer } from 'ringbuf.js';
import { assert } from '../../core/assert.js';
import {
  walDurableWaitersMax,
  walPendingBytesMax,
  walProposalHeadroomBytes,
  walRecordBytesMax,
  walRingBytes,
  walSegmentBytesMax,
} from '../../core/constants.js';
import type { GroupId } from '../../core/ids.js';
import { logIndex, term } from '../../core/ids.js';
import type { ConfState, Entry, HardState, PersistedState, Snapshot } from '../../core/raft/types.js';
import { latencyTrace } from '../node/latency-trace.js';
import { WalClosedError, WalFailedError, WalOverloadError } from './errors.js';
import {
  encodeEntriesRecord,
  encodeHardStateRecord,
  encodeNodeId,
  encodeSnapshotFile,
  encodeTombstoneRecord,
  entriesFixedBytes,
  entryBytes,
  hardStateRecordBytes,
  recordHeaderBytes,
  segmentFileName,
  segmentRollNeeded,
  snapshotFileName,
  snapshotTempSuffix,
} from './format.js';
import type { RecoveredGroup, SegmentMeta, SnapshotState } from './recovery.js';
import { recoverDir } from './recovery.js';
import {
  ctrlFailed,
  ctrlSlots,
  ctrlStop,
  ctrlWake,
  seqDurable,
  seqSlots,
  statBatches,
  statBytes,
  statDirFsyncs,
  fsyncBucketsNs,
  statFsyncBucketFirst,
  statFsyncNsMax,
  statFsyncNsTotal,
  statFsyncs,
  statLastBatchBytes,
  statLastBatchRecords,
  statRecords,
  type WalWorkerData,
} from './shared.js';

export { WalClosedError, WalCorruptionError, WalFailedError, WalOverloadError } from './errors.js';
export type { RecoveredGroup } from './recovery.js';

export interface WalOptions {
  /** Segment roll size; default walSegmentBytesMax. Smaller values are for tests. */
  readonly segmentBytesMax?: number;
  /**
   * Ring capacity; default walRingBytes. Must hold one maximal record. It bounds a batch,
   * so open() also takes it as the most a crash can tear (recovery.ts): reopen a
   * directory with a ring at least as large as the one that wrote it.
   */
  readonly ringBytes?: number;
}

export interface SaveSnapshotOptions {
  /**
   * true for a snapshot that came in a Ready (installed from the leader): it replaces
   * the whole log, so entries written before this call are dropped even above its
   * index. false (default) for local compaction: entries above the index are kept.
   */
  readonly replacesLog?: boolean;
}

export interface WalMetrics {
  readonly appends: number;
  readonly recordsWritten: number;
  readonly bytesWritten: number;
  /** fdatasync calls on segment files (the group commits). */
  readonly fsyncs: number;
  readonly dirFsyncs: number;
  readonly batches: number;
  readonly lastBatchRecords: number;
  readonly lastBatchBytes: number;
  readonly fsyncNsTotal: number;
  readonly fsyncNsMax: number;
  /** fdatasyncs per latency bucket of fsyncBucketsNs (not cumulative); slower than the last bound: fsyncs minus their sum. */
  readonly fsyncBucketCounts: readonly number[];
  readonly durableSeq: number;
  readonly lastSeq: number;
  readonly pendingBytes: number;
  readonly segments: number;
  readonly segmentsDeleted: number;
  /** Groups whose recovered commit open() moved inside the recovered log (see recovery.ts). */
  readonly recoveryCommitsClamped: number;
  /** Bytes open() cut off the end of the last segment (a torn tail). */
  readonly recoveryCutBytes: number;
}

export interface WalOpenResult {
  readonly wal: Wal;
  readonly recovered: Map<GroupId, RecoveredGroup>;
  /** Groups the log has a tombstone for: dropped from this node for good. */
  readonly dropped: ReadonlySet<GroupId>;
}

interface GroupMeta {
  /** Last log index written (0 when none). */
  lastIndex: number;
  hardState: HardState | null;
  hardStateSeq: number;
  /** Snapshot as requested (may not be durable yet): validates appends. */
  snapshot: SnapshotState | null;
  /** Snapshot known durable: decides segment deletion. */
  durableSnapshot: SnapshotState | null;
  /** Serializes saveSnapshot calls of this group. */
  snapshotChain: Promise<void>;
}

interface Waiter {
  readonly seq: number;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

type WaitAsyncResult = { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> };
interface AtomicsWaitAsync {
  waitAsync(typedArray: BigInt64Array, index: number, value: bigint): WaitAsyncResult;
}
// lib ES2023 lacks the type; Node 20 has the function.
const atomicsWaitAsync = (Atomics as unknown as AtomicsWaitAsync).waitAsync;
assert(typeof atomicsWaitAsync === 'function', 'Atomics.waitAsync is available (Node >= 20)');

/**
 * Builds Raft's restart input from a recovered group (bootstrapConf when there is no
 * snapshot). A group with a snapshot but no hard state (a crash between the snapshot's
 * rename and the first hard state after it) restarts with commit at the snapshot index.
 */
export function toPersistedState(rec: RecoveredGroup | undefined, bootstrapConf: ConfState): PersistedState {
  const snapIndex = rec?.snapshot?.meta.index ?? logIndex(0);
  const hardState: HardState = rec?.hardState ?? { term: term(0), vote: '', commit: snapIndex };
  const entries = rec?.entries ?? [];
  const lastIndex = entries[entries.length - 1]?.index ?? snapIndex;
  assert(hardState.commit >= snapIndex && hardState.commit <= lastIndex, 'recovery keeps commit inside the log');
  return { hardState, snapshot: rec?.snapshot ?? null, entries, conf: rec?.snapshot?.meta.conf ?? bootstrapConf };
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export class Wal {
  readonly dir: string;
  private readonly segmentBytesMax: number;
  private readonly ring: RingBuffer;
  private readonly ctrl: Int32Array;
  private readonly seqs: BigInt64Array;
  private readonly worker: Worker;
  private readonly workerExit: Promise<void>;
  private readonly scratch: Uint8Array;
  private readonly groups = new Map<GroupId, GroupMeta>();
  private readonly segments: SegmentMeta[];
  private readonly pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private nextSeq: number;
  private durableSeq: number;
  private appends = 0;
  private segmentsDeleted = 0;
  private readonly recoveryCommitsClamped: number;
  private readonly recoveryCutBytes: number;
  private readonly waiters: Waiter[] = [];
  private readonly listeners = new Set<(durableSeq: number) => void>();
  private watching = false;
  private wakeScheduled = false;
  private workerRefed = false;
  private compacting: Promise<void> | null = null;
  private compactAgain = false;
  private readonly snapshotSaves = new Set<Promise<void>>();
  private closing: Promise<void> | null = null;
  private failure: WalFailedError | null = null;
  private voteCache: { vote: string; bytes: Uint8Array } = { vote: '', bytes: new Uint8Array(0) };
  /** Groups dropped (tombstone queued): nothing more may be written for them. */
  private readonly closedGroups = new Set<GroupId>();
  /** Dropped groups whose tombstone is durable and snapshot file gone: their records pin no segment. */
  private readonly reclaimableGroups = new Set<GroupId>();

  /** Replays `dir` (creating it if needed) and starts the writer. */
  static async open(dir: string, opts: WalOptions = {}): Promise<WalOpenResult> {
    const rec = recoverDir(dir, { tornBytesMax: opts.ringBytes ?? walRingBytes });
    const wal = new Wal(dir, opts, rec);
    return { wal, recovered: rec.groups, dropped: rec.dropped };
  }

  private constructor(dir: string, opts: WalOptions, rec: ReturnType<typeof recoverDir>) {
    this.dir = dir;
    this.segmentBytesMax = opts.segmentBytesMax ?? walSegmentBytesMax;
    const ringBytes = opts.ringBytes ?? walRingBytes;
    assert(this.segmentBytesMax >= walRecordBytesMax, 'a segment holds a maximal record');
    assert(ringBytes >= walRecordBytesMax, 'the ring holds a maximal record');
    const ringSab = RingBuffer.getStorageForCapacity(ringBytes, Uint8Array);
    const ctrlSab = new SharedArrayBuffer(ctrlSlots * 4);
    const seqSab = new SharedArrayBuffer(seqSlots * 8);
    this.ring = new RingBuffer(ringSab, Uint8Array);
    assert(this.ring.capacity() === ringBytes, 'ring capacity as requested');
    this.ctrl = new Int32Array(ctrlSab);
    this.seqs = new BigInt64Array(seqSab);
    this.scratch = new Uint8Array(walRecordBytesMax);
    this.segments = rec.segments;
    this.recoveryCommitsClamped = rec.commitsClamped.length;
    this.recoveryCutBytes = rec.truncated === null ? 0 : rec.truncated.fromBytes - rec.truncated.toBytes;
    this.nextSeq = rec.lastSeq + 1;
    this.durableSeq = rec.lastSeq;
    Atomics.store(this.seqs, seqDurable, BigInt(rec.lastSeq));
    for (const group of rec.dropped) {
      this.closedGroups.add(group);
      this.reclaimableGroups.add(group);
    }
    for (const [group, g] of rec.groups) {
      const snap = rec.snapshots.get(group) ?? null;
      const last = g.entries[g.entries.length - 1];
      this.groups.set(group, {
        lastIndex: last?.index ?? snap?.index ?? 0,
        hardState: g.hardState,
        hardStateSeq: rec.hardStateSeqs.get(group) ?? 0,
        snapshot: snap,
        durableSnapshot: snap,
        snapshotChain: Promise.resolve(),
      });
    }
    const workerData: WalWorkerData = {
      dir,
      ringSab,
      ctrlSab,
      seqSab,
      segmentBytesMax: this.segmentBytesMax,
      durableSeqStart: rec.lastSeq,
    };
    // Plain node for the writer: no test-runner loaders or hooks inherited from the parent.
    this.worker = new Worker(new URL('./wal-worker.js', import.meta.url), { workerData, execArgv: [] });
    this.worker.unref();
    this.worker.on('message', (msg: unknown) => {
      const text = typeof msg === 'object' && msg !== null && 'failed' in msg ? String(msg.failed) : 'unknown';
      this.fail(new WalFailedError(`WAL writer failed: ${text}`));
    });
    this.worker.on('error', (err: Error) => this.fail(new WalFailedError(`WAL writer crashed: ${err.message}`)));
    this.workerExit = new Promise<void>((resolve) => {
      this.worker.once('exit', (code: number) => {
        if (this.closing === null || code !== 0) this.fail(new WalFailedError(`WAL writer exited (code ${code})`));
        resolve();
      });
    });
  }

  /**
   * Queues entries (which overwrite the group's log from entries[0].index on), then
   * hardState (if any), for the disk. Never blocks, never awaits. Returns the write
   * seq of the last record: durable once whenDurable(seq) resolves / onDurable reports >= seq.
   * Throws WalOverloadError (nothing queued) when walPendingBytesMax would be exceeded.
   *
   * Entries go before the hard state (as in etcd's WAL.Save): a crash can leave any
   * prefix of the records on disk, and a hard state whose commit names entries that
   * were lost behind it would make the group unable to restart.
   */
  /**
   * Whether `bytes` more of proposed entries may be queued: leaves walProposalHeadroomBytes
   * of walPendingBytesMax for hard states and a follower's appends (the runner refuses
   * proposals instead of letting append() throw WalOverloadError).
   */
  hasRoomFor(bytes: number): boolean {
    assert(bytes >= 0, 'room asked for a non-negative size');
    return this.pendingBytes + bytes <= walPendingBytesMax - walProposalHeadroomBytes;
  }

  append(group: GroupId, hardState: HardState | null, entries: readonly Entry[]): number {
    this.assertWritable();
    assert(hardState !== null || entries.length > 0, 'append writes something');
    assert(!this.closedGroups.has(group), `group ${group} was dropped; group ids are never reused`);
    const g = this.groupMeta(group);
    let total = 0;
    let voteBytes: Uint8Array | null = null;
    if (hardState !== null) {
      voteBytes = this.voteBytes(hardState.vote);
      total += hardStateRecordBytes(voteBytes);
    }
    const first = entries[0];
    if (first !== undefined) {
      assert(first.index >= 1 && first.index > (g.snapshot?.index ?? 0), `group ${group}: entries from ${first.index} start after the snapshot`);
      assert(first.index <= g.lastIndex + 1, `group ${group}: entries from ${first.index} leave a gap after ${g.lastIndex}`);
      for (let k = 0; k < entries.length; k++) {
        const e = entries[k];
        assert(e !== undefined && e.index === first.index + k, 'entries are contiguous');
        assert(recordHeaderBytes + entriesFixedBytes + entryBytes(e) <= walRecordBytesMax, 'one entry fits a WAL record');
        total += entryBytes(e);
      }
      total += recordHeaderBytes + entriesFixedBytes; // at least one entries record; splits add a header each
    }
    if (this.pendingBytes + total > walPendingBytesMax && (this.pending.length > 0 || this.ring.available_write() < total)) {
      throw new WalOverloadError(`WAL queue holds ${this.pendingBytes} bytes; limit ${walPendingBytesMax}`);
    }
    let seq = 0;
    if (first !== undefined) {
      // Split into records of at most walRecordBytesMax; each continues where the last ended.
      let from = 0;
      while (from < entries.length) {
        let size = recordHeaderBytes + entriesFixedBytes;
        let to = from;
        while (to < entries.length) {
          const e = entries[to];
          assert(e !== undefined, 'entry in bounds');
          if (size + entryBytes(e) > walRecordBytesMax) break;
          size += entryBytes(e);
          to++;
        }
        assert(to > from, 'a record takes at least one entry');
        seq = this.nextSeq++;
        const len = encodeEntriesRecord(this.scratch, group, seq, entries, from, to);
        assert(len === size, 'encoded size as computed');
        const lastInRecord = entries[to - 1];
        assert(lastInRecord !== undefined, 'entry in bounds');
        this.enqueue(len, group, seq, lastInRecord.index);
        from = to;
      }
      const last = entries[entries.length - 1];
      assert(last !== undefined, 'non-empty entries');
      g.lastIndex = last.index;
    }
    if (hardState !== null && voteBytes !== null) {
      seq = this.nextSeq++;
      const len = encodeHardStateRecord(this.scratch, group, seq, hardState, voteBytes);
      this.enqueue(len, group, seq, 0);
      g.hardState = hardState;
      g.hardStateSeq = seq;
    }
    assert(seq > 0 && seq === this.nextSeq - 1, 'append returns the seq of its last record');
    this.appends++;
    this.scheduleWake();
    this.refWorker();
    return seq;
  }

  /** Resolves once every record with seq <= `seq` is written and fdatasynced. */
  whenDurable(seq: number): Promise<void> {
    assert(Number.isSafeInteger(seq) && seq >= 0 && seq < this.nextSeq, `whenDurable(${seq}) names an appended seq`);
    if (seq <= this.durableSeq) return Promise.resolve();
    if (this.failure !== null) return Promise.reject(this.failure);
    assert(this.waiters.length < walDurableWaitersMax, 'durable waiters bounded');
    return new Promise<void>((resolve, reject) => {
      // Keep waiters sorted by seq; callers usually ask for the newest seq, so scan from the end.
      let i = this.waiters.length;
      while (i > 0 && (this.waiters[i - 1]?.seq ?? 0) > seq) i--;
      this.waiters.splice(i, 0, { seq, resolve, reject });
      this.watchDurable();
    });
  }

  /** Calls cb(durableSeq) each time the durable seq advances. Returns an unsubscribe function. */
  onDurable(cb: (durableSeq: number) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  /** Highest seq known durable. */
  get durable(): number {
    return this.durableSeq;
  }

  /** Seq of the last record appended (0 when none). */
  get lastSeq(): number {
    return this.nextSeq - 1;
  }

  /** True while records wait in JS memory for ring space: a good moment to stop proposing. */
  get backpressured(): boolean {
    return this.pending.length > 0;
  }

  /**
   * Writes the group's snapshot atomically (temp file, fsync, rename, fsync dir), then
   * lets the WAL forget that group's entries <= snapshot index and deletes segments
   * that hold nothing any group still needs. Calls for one group are serialized.
   */
  saveSnapshot(group: GroupId, snapshot: Snapshot, opts: SaveSnapshotOptions = {}): Promise<void> {
    this.assertWritable();
    assert(!this.closedGroups.has(group), `group ${group} was dropped; group ids are never reused`);
    const g = this.groupMeta(group);
    const index = snapshot.meta.index;
    assert(index >= (g.snapshot?.index ?? 0), `group ${group}: snapshot ${index} older than ${g.snapshot?.index ?? 0}`);
    const replacesLog = opts.replacesLog ?? false;
    if (!replacesLog) assert(index <= g.lastIndex, `group ${group}: compaction at ${index} beyond last index ${g.lastIndex}`);
    // Records appended from now on are not affected by a log-replacing snapshot.
    const state: SnapshotState = { index, term: snapshot.meta.term, floorSeq: replacesLog ? this.nextSeq : (g.snapshot?.floorSeq ?? 0) };
    g.snapshot = state;
    if (replacesLog) g.lastIndex = index;
    const bytes = encodeSnapshotFile({ group, floorSeq: state.floorSeq, snapshot });
    const run = g.snapshotChain.then(async () => {
      const final = path.join(this.dir, snapshotFileName(group));
      const temp = final + snapshotTempSuffix;
      const fh = await fsp.open(temp, 'w');
      try {
        await fh.writeFile(bytes);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fsp.rename(temp, final);
      await fsyncDir(this.dir);
      g.durableSnapshot = state;
      await this.compactSegments();
    });
    g.snapshotChain = run.catch(() => undefined);
    this.snapshotSaves.add(run);
    void run.finally(() => this.snapshotSaves.delete(run)).catch(() => undefined);
    return run;
  }

  /**
   * Forgets `group` for good (a deleted queue partition, a replica moved away): queues a
   * tombstone record; once it is durable and the group's snapshot saves have settled,
   * unlinks its snapshot file, and from then on its records pin no segment, so
   * compaction reclaims them. A restart that replays the tombstone forgets the group
   * (and finishes the unlink if a crash came between). Group ids are never reused:
   * writing for a dropped group afterwards is a bug (asserted). Resolves once reclaimable.
   */
  dropGroup(group: GroupId): Promise<void> {
    this.assertWritable();
    assert(!this.closedGroups.has(group), `group ${group} dropped twice`);
    this.closedGroups.add(group);
    const snapshotsSettled = this.groups.get(group)?.snapshotChain ?? Promise.resolve();
    const seq = this.nextSeq++;
    const len = encodeTombstoneRecord(this.scratch, group, seq);
    this.enqueue(len, group, seq, 0);
    this.appends++;
    this.scheduleWake();
    this.refWorker();
    const run = (async () => {
      await this.whenDurable(seq);
      await snapshotsSettled;
      try {
        await fsp.unlink(path.join(this.dir, snapshotFileName(group)));
        await fsyncDir(this.dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      this.groups.delete(group);
      this.reclaimableGroups.add(group);
      await this.compactSegments();
    })();
    this.snapshotSaves.add(run);
    void run.finally(() => this.snapshotSaves.delete(run)).catch(() => undefined);
    return run;
  }

  /** Groups with a write or snapshot in the log and not dropped (tests, tools). */
  get liveGroups(): GroupId[] {
    return [...this.groups.keys()].filter((g) => !this.closedGroups.has(g));
  }

  metrics(): WalMetrics {
    const n = (slot: number): number => Number(Atomics.load(this.seqs, slot));
    return {
      appends: this.appends,
      recordsWritten: n(statRecords),
      bytesWritten: n(statBytes),
      fsyncs: n(statFsyncs),
      dirFsyncs: n(statDirFsyncs),
      batches: n(statBatches),
      lastBatchRecords: n(statLastBatchRecords),
      lastBatchBytes: n(statLastBatchBytes),
      fsyncNsTotal: n(statFsyncNsTotal),
      fsyncNsMax: n(statFsyncNsMax),
      fsyncBucketCounts: fsyncBucketsNs.map((_, i) => n(statFsyncBucketFirst + i)),
      durableSeq: this.durableSeq,
      lastSeq: this.nextSeq - 1,
      pendingBytes: this.pendingBytes,
      segments: this.segments.length,
      segmentsDeleted: this.segmentsDeleted,
      recoveryCommitsClamped: this.recoveryCommitsClamped,
      recoveryCutBytes: this.recoveryCutBytes,
    };
  }

  /** Waits for everything appended to be durable and for snapshot saves, then stops the writer. */
  close(): Promise<void> {
    if (this.closing !== null) return this.closing;
    this.closing = (async () => {
      try {
        await Promise.allSettled([...this.snapshotSaves]);
        if (this.failure === null) await this.whenDurable(this.nextSeq - 1);
      } finally {
        Atomics.store(this.ctrl, ctrlStop, 1);
        Atomics.store(this.ctrl, ctrlWake, 1);
        Atomics.notify(this.ctrl, ctrlWake);
        this.worker.ref();
        await this.workerExit;
      }
      if (this.failure !== null) throw this.failure;
    })();
    return this.closing;
  }

  // --- internals ---

  private assertWritable(): void {
    if (this.failure !== null) throw this.failure;
    if (this.closing !== null) throw new WalClosedError('WAL is closed');
  }

  private groupMeta(group: GroupId): GroupMeta {
    let g = this.groups.get(group);
    if (g === undefined) {
      g = { lastIndex: 0, hardState: null, hardStateSeq: 0, snapshot: null, durableSnapshot: null, snapshotChain: Promise.resolve() };
      this.groups.set(group, g);
    }
    return g;
  }

  private voteBytes(vote: string): Uint8Array {
    if (this.voteCache.vote !== vote) this.voteCache = { vote, bytes: encodeNodeId(vote) };
    return this.voteCache.bytes;
  }

  /** Moves scratch[0, len) toward the worker and records which segment it lands in. */
  private enqueue(len: number, group: GroupId, seq: number, maxEntryIndex: number): void {
    let seg = this.segments[this.segments.length - 1];
    if (seg === undefined || !seg.open || segmentRollNeeded(seg.bytes, len, this.segmentBytesMax)) {
      if (seg !== undefined) seg.open = false;
      seg = { firstSeq: seq, lastSeq: seq, bytes: 0, open: true, groups: new Map() };
      this.segments.push(seg);
    }
    seg.bytes += len;
    seg.lastSeq = seq;
    if (maxEntryIndex > 0) {
      const info = seg.groups.get(group);
      if (info === undefined) seg.groups.set(group, { maxEntryIndex, lastEntriesSeq: seq });
      else {
        info.maxEntryIndex = Math.max(info.maxEntryIndex, maxEntryIndex);
        info.lastEntriesSeq = seq;
      }
    } else if (!seg.groups.has(group)) {
      seg.groups.set(group, { maxEntryIndex: 0, lastEntriesSeq: 0 });
    }
    if (this.pending.length === 0 && this.ring.available_write() >= len) {
      const wrote = this.ring.push(this.scratch, len, 0);
      assert(wrote === len, 'ring took the whole record');
    } else {
      this.pending.push(this.scratch.slice(0, len));
      this.pendingBytes += len;
    }
  }

  /** Moves queued records into the ring, in order, as far as space allows. */
  private flushPending(): void {
    let moved = false;
    // Bounded by pending.length.
    while (this.pending.length > 0) {
      const rec = this.pending[0];
      assert(rec !== undefined, 'pending head');
      if (this.ring.available_write() < rec.length) break;
      const wrote = this.ring.push(rec, rec.length, 0);
      assert(wrote === rec.length, 'ring took the whole record');
      this.pending.shift();
      this.pendingBytes -= rec.length;
      moved = true;
    }
    assert(this.pendingBytes >= 0 && (this.pending.length > 0 || this.pendingBytes === 0), 'pending bytes accounting');
    if (moved) this.scheduleWake();
  }

  /** One wake per event-loop turn: every record appended in the turn shares a batch. */
  private scheduleWake(): void {
    if (this.wakeScheduled) return;
    this.wakeScheduled = true;
    queueMicrotask(() => this.wakeWorker());
  }

  /** Wakes the writer now for what was appended so far (else at the end of the task); a no-op when nothing waits. */
  wakeWorker(): void {
    if (!this.wakeScheduled) return;
    this.wakeScheduled = false;
    latencyTrace?.mark('walWake');
    Atomics.store(this.ctrl, ctrlWake, 1);
    Atomics.notify(this.ctrl, ctrlWake);
    this.watchDurable();
  }

  /** The worker keeps the process alive only while records are outstanding. */
  private refWorker(): void {
    if (!this.workerRefed) {
      this.worker.ref();
      this.workerRefed = true;
    }
  }

  private watchDurable(): void {
    if (this.watching || this.failure !== null) return;
    if (this.durableSeq >= this.nextSeq - 1 && this.waiters.length === 0) return;
    const seen = Atomics.load(this.seqs, seqDurable);
    if (Number(seen) !== this.durableSeq || Atomics.load(this.ctrl, ctrlFailed) === 1) {
      queueMicrotask(() => this.pollDurable());
      return;
    }
    this.watching = true;
    const r = atomicsWaitAsync(this.seqs, seqDurable, seen);
    if (r.async) {
      void r.value.then(() => {
        this.watching = false;
        this.pollDurable();
      });
    } else {
      this.watching = false;
      queueMicrotask(() => this.pollDurable());
    }
  }

  private pollDurable(): void {
    // The worker's 'message' (with the cause) and 'exit' events follow; they call fail().
    if (Atomics.load(this.ctrl, ctrlFailed) === 1 || this.failure !== null) return;
    const d = Number(Atomics.load(this.seqs, seqDurable));
    if (d > this.durableSeq) {
      assert(d < this.nextSeq, 'durable seq never passes the appended seq');
      latencyTrace?.mark('durableSeen', d);
      this.durableSeq = d;
      // Resolve in seq order; bounded by the number of waiters.
      let k = 0;
      while (k < this.waiters.length && (this.waiters[k]?.seq ?? Infinity) <= d) k++;
      const done = this.waiters.splice(0, k);
      for (const w of done) w.resolve();
      for (const cb of this.listeners) cb(d);
    }
    this.flushPending();
    if (this.durableSeq >= this.nextSeq - 1 && this.workerRefed && this.closing === null) {
      this.worker.unref();
      this.workerRefed = false;
    }
    this.watchDurable();
  }

  private fail(err: WalFailedError): void {
    if (this.failure !== null) return;
    this.failure = err;
    const waiters = this.waiters.splice(0);
    for (const w of waiters) w.reject(err);
  }

  /**
   * Why a segment must stay: entries some group still needs (entryPinned), or the
   * latest hard state of some groups (hardStateGroups), which a re-write can move on.
   */
  private segmentPins(seg: SegmentMeta): { entryPinned: boolean; hardStateGroups: GroupId[] } {
    const hardStateGroups: GroupId[] = [];
    for (const [group, info] of seg.groups) {
      if (this.reclaimableGroups.has(group)) continue;
      const g = this.groups.get(group);
      if (g === undefined) return { entryPinned: true, hardStateGroups };
      if (g.hardStateSeq >= seg.firstSeq && g.hardStateSeq <= seg.lastSeq) hardStateGroups.push(group);
      if (info.maxEntryIndex === 0) continue;
      const snap = g.durableSnapshot;
      if (snap === null) return { entryPinned: true, hardStateGroups };
      if (info.maxEntryIndex > snap.index && info.lastEntriesSeq >= snap.floorSeq) return { entryPinned: true, hardStateGroups };
    }
    return { entryPinned: false, hardStateGroups };
  }

  /**
   * Deletes the oldest segments while they are obsolete; prefix only (so replay never
   * sees a hole), one dir fsync per unlink. A segment held only by groups' latest hard
   * states gets those re-written into the current segment first.
   */
  private compactSegments(): Promise<void> {
    if (this.compacting !== null) {
      this.compactAgain = true;
      return this.compacting;
    }
    this.compacting = (async () => {
      do {
        this.compactAgain = false;
        // Bounded by the number of segments: each pass deletes one or stops.
        for (;;) {
          const seg = this.segments[0];
          if (seg === undefined || this.segments.length < 2 || seg.open || seg.lastSeq > this.durableSeq) break;
          const pins = this.segmentPins(seg);
          if (pins.entryPinned) break;
          if (pins.hardStateGroups.length > 0) {
            if (this.closing !== null || this.failure !== null) break;
            let seq = 0;
            for (const group of pins.hardStateGroups) {
              const hs = this.groups.get(group)?.hardState;
              assert(hs !== undefined && hs !== null, 'a pinning hard state is known');
              seq = this.append(group, hs, []);
            }
            await this.whenDurable(seq);
            assert(this.segmentPins(seg).hardStateGroups.length === 0, 'hard states moved to a newer segment');
            continue;
          }
          await fsp.unlink(path.join(this.dir, segmentFileName(seg.firstSeq)));
          await fsyncDir(this.dir);
          assert(this.segments[0] === seg, 'segments deleted in order');
          this.segments.shift();
          this.segmentsDeleted++;
        }
      } while (this.compactAgain);
    })().finally(() => {
      this.compacting = null;
    });
    return this.compacting;
  }
}

/** For tests and tools: segment file names currently in dir, oldest first. */
export function listSegmentFiles(dir: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((n) => /^wal-\d{20}\.log$/.test(n))
    .sort();
}
