// One queue partition's messages on disk: core/queue's MessageStore as segment files of
// CRC'd records (queue-store-format.ts), so a node's memory does not grow with the
// retained backlog. Memory per store: queueStoreIndexBytesPerMessage (12) bytes per
// retained message (u32 file position, u32 timestamp delta, u32 size, in typed arrays
// per segment; the active segment's arrays grow by doubling, sealed ones are trimmed),
// (segments wholly below the logical front keep theirs until checkpointDurable() deletes
// them: exports serve a lagging replica from them), plus fixed costs: a 64 KiB write buffer, at most 256 KiB of read cache and
// queueStoreReadFilesMax + 1 open files (core/constants.ts).
//
// Durability rule. The Raft WAL is the source of truth; the store is state derived by
// applying committed entries, like the partition's own state, and is made durable the
// same way: at snapshot time. The store writes without fsync. To snapshot, the wiring
// calls sync(), which writes and fdatasyncs everything appended so far and answers the
// checkpoint [firstOffset, nextOffset) - exactly the partition snapshot's [logStart,
// logEnd), so the Raft snapshot already records it. After a crash the node restarts
// from its latest durable snapshot S: open(dir, { checkpoint: S's range }) verifies that
// the files hold that range intact (QueueStoreCorruptionError if not: those bytes were
// synced), cuts everything past S.logEnd (unsynced, perhaps torn), and the entries after
// S, re-applied from the WAL, append the same messages again (apply is deterministic).
// Two consequences:
// - Front truncation is logical at once (reads below the front fail with
//   QueueStoreRangeError) but a segment file is deleted only by checkpointDurable(),
//   once a snapshot whose front is past the whole segment is durable: entries re-applied
//   after a crash may read (dead letters) messages that a later entry dropped, and the
//   restored partition needs its snapshot's logStart to be on disk.
// - Recovery never trusts a byte the checkpoint does not vouch for. Scanning stops at
//   the first bad record (CRC, length, offset, layout) or a gap between segments. Below
//   the checkpoint's nextOffset that is corruption: refuse and change nothing. At or
//   above it, it is a torn unsynced tail: cut the file there, delete later segments
//   (the page cache writes segments back in any order, so the damage need not be at
//   the end of the last file). Without a checkpoint (a store of its own, tests), the
//   longest valid prefix is recovered.
// Reads are synchronous (MessageStore is): fs.readSync through a small LRU of
// read-ahead blocks. A lagging replica gets the store as exportChunk() chunks of whole
// records (at most queueStoreChunkBytesMax each; from the first file still here, below
// the logical front too) that importChunk() verifies and appends into a store created
// empty at the snapshot's logStart (services/queues/catchup.ts streams them).

import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { assert } from '../../core/assert.js';
import {
  queueSegmentBytesMax,
  queueStoreChunkBytesMax,
  queueStoreReadBlockBytes,
  queueStoreReadCacheBytesMax,
  queueStoreReadFilesMax,
  queueStoreRecordBytesMax,
  queueStoreScanBufferBytes,
  queueStoreWriteBufferBytes,
} from '../../core/constants.js';
import type { Offset } from '../../core/ids.js';
import { offset } from '../../core/ids.js';
import type { Message, StoredMessage } from '../../core/queue/commands.js';
import { messageBytes } from '../../core/queue/store.js';
import type { MessageStore } from '../../core/queue/store.js';
import {
  checkQueueRecord,
  decodeQueueRecord,
  encodeQueueRecord,
  parseQueueSegmentFileName,
  queueRecordBytes,
  queueRecordHeaderBytes,
  queueRecordLengthAt,
  queueSegmentFileName,
} from './queue-store-format.js';

// ------------------------------------------------------------------ typed errors

/** Bytes the checkpoint vouches for are damaged or missing: refuse to start this partition. */
export class QueueStoreCorruptionError extends Error {
  override name = 'QueueStoreCorruptionError';
  readonly code = 'QUEUE_STORE_CORRUPT';
  constructor(
    readonly file: string,
    readonly position: number,
    readonly reason: string,
  ) {
    super(`queue store corruption in ${file} at byte ${position}: ${reason}`);
  }
}

/** A read or export of an offset the store does not retain (below the front, or not yet appended). */
export class QueueStoreRangeError extends Error {
  override name = 'QueueStoreRangeError';
  readonly code = 'QUEUE_OFFSET_NOT_RETAINED';
  constructor(
    readonly offset: number,
    readonly firstOffset: number,
    readonly nextOffset: number,
  ) {
    super(`offset ${offset} is not retained (the store holds [${firstOffset}, ${nextOffset}))`);
  }
}

/** An import chunk is malformed or out of order: discard the import and start it again. */
export class QueueStoreChunkError extends Error {
  override name = 'QueueStoreChunkError';
  readonly code = 'QUEUE_STORE_BAD_CHUNK';
}

/** A write or fsync failed: nothing more can be trusted to reach the disk; restart the node (never retried). */
export class QueueStoreFailedError extends Error {
  override name = 'QueueStoreFailedError';
  readonly code = 'QUEUE_STORE_FAILED';
}

// ------------------------------------------------------------------ public shapes

/** What a Raft snapshot records of the store: it holds [firstOffset, nextOffset), synced. */
export interface QueueStoreCheckpoint {
  readonly firstOffset: Offset;
  readonly nextOffset: Offset;
}

/** Whole records [firstOffset, firstOffset + count), as they lie in a segment file. */
export interface QueueStoreChunk {
  readonly firstOffset: Offset;
  readonly count: number;
  readonly records: Uint8Array;
}

export interface QueueStoreOptions {
  /** Segment roll size; default queueSegmentBytesMax. Smaller values are for tests. */
  readonly segmentBytesMax?: number;
  /** Export chunk size; default queueStoreChunkBytesMax. A chunk holds at least one record: a larger record goes alone. */
  readonly chunkBytesMax?: number;
}

export interface QueueStoreOpenOptions extends QueueStoreOptions {
  /** The range the latest durable Raft snapshot recorded (sync()'s answer then); absent: trust the longest valid prefix. */
  readonly checkpoint?: QueueStoreCheckpoint;
}

/** What open() found and repaired. */
export interface QueueStoreRecovery {
  /** The first bad record or gap, where the files were cut (null when none). */
  readonly cut: { readonly file: string; readonly position: number; readonly offset: number; readonly reason: string } | null;
  /** Valid records dropped because they lay past the checkpoint's nextOffset. */
  readonly recordsPastCheckpoint: number;
  /** Segment files deleted (wholly below the front, after the cut, or wholly past the checkpoint). */
  readonly segmentsDeleted: number;
}

interface Segment {
  /** Offset of record 0 (the file name's). */
  readonly base: number;
  readonly file: string;
  count: number;
  /** Bytes of records, including those still in the write buffer (active segment only). */
  bytes: number;
  /** Timestamp of record 0; timestamps[k] are ms after it. -1 while empty. */
  baseTimestampMs: number;
  positions: Uint32Array;
  timestampDeltas: Uint32Array;
  sizes: Uint32Array;
  /** Open descriptor or -1. */
  fd: number;
  /** Written since the last sync() began. */
  dirty: boolean;
}

interface CacheBlock {
  seg: Segment | null;
  start: number;
  length: number;
  readonly buf: Uint8Array;
  readonly view: DataView;
}

const u32Max = 0xffff_ffff;
const indexCapacityMin = 1024;
const emptyIndex = new Uint32Array(0);

function grow(a: Uint32Array, capacity: number): Uint32Array {
  const out = new Uint32Array(capacity);
  out.set(a);
  return out;
}

function fsyncPathSync(p: string): void {
  const fd = fs.openSync(p, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

async function fsyncPath(p: string, data: boolean): Promise<void> {
  const fh = await fsp.open(p, 'r');
  try {
    if (data) await fh.datasync();
    else await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Reads exactly `length` bytes at `position` into out[at..]; answers how many the file had. */
function readFully(fd: number, out: Uint8Array, at: number, length: number, position: number): number {
  let done = 0;
  // Bounded: every pass reads at least one byte or leaves.
  while (done < length) {
    const n = fs.readSync(fd, out, at + done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

function listSegments(dir: string): { base: number; file: string }[] {
  return fs
    .readdirSync(dir)
    .map((name) => ({ base: parseQueueSegmentFileName(name), file: path.join(dir, name) }))
    .filter((s): s is { base: number; file: string } => s.base !== null)
    .sort((a, b) => a.base - b.base);
}

export class QueueStore implements MessageStore {
  private readonly segments: Segment[] = [];
  /** Logical front: offsets below it are gone for readers, their files wait for checkpointDurable(). */
  private first: number;
  private next: number;
  private total = 0;
  private lastTimestampMs = 0;
  // Allocated at the first append (prepare): a node hosts hundreds of partitions, and the
  // many that never take a message (most dead-letter partitions) need not hold 64 KiB each.
  private writeBuf = new Uint8Array(0);
  private writeView = new DataView(this.writeBuf.buffer);
  /** Bytes at the end of the active segment still in writeBuf. */
  private buffered = 0;
  private readonly cache: CacheBlock[] = [];
  /** Sealed segments with an open fd, least recently used first. */
  private readonly openForRead: Segment[] = [];
  private dirDirty = false;
  private syncing = false;
  private closed = false;
  private failed: QueueStoreFailedError | null = null;
  private readonly segmentBytesMax: number;
  private readonly chunkBytesMax: number;

  private constructor(
    readonly dir: string,
    start: number,
    opts: QueueStoreOptions,
  ) {
    this.segmentBytesMax = opts.segmentBytesMax ?? queueSegmentBytesMax;
    this.chunkBytesMax = opts.chunkBytesMax ?? queueStoreChunkBytesMax;
    assert(Number.isSafeInteger(this.segmentBytesMax) && this.segmentBytesMax >= 64 && this.segmentBytesMax + queueStoreRecordBytesMax <= u32Max,
      'segment size: positions fit a u32');
    assert(Number.isSafeInteger(this.chunkBytesMax) && this.chunkBytesMax > 0 && this.chunkBytesMax <= queueStoreChunkBytesMax, 'chunk size within the limit');
    assert(Number.isSafeInteger(start) && start >= 0, 'start offset');
    this.first = start;
    this.next = start;
  }

  /** A new empty store at `firstOffset` (a new partition: 0; an import: the snapshot's logStart). Deletes any segments in dir. */
  static create(dir: string, firstOffset: Offset, opts: QueueStoreOptions = {}): QueueStore {
    fs.mkdirSync(dir, { recursive: true });
    const old = listSegments(dir);
    for (const s of old) fs.unlinkSync(s.file);
    if (old.length > 0) fsyncPathSync(dir);
    return new QueueStore(dir, firstOffset, opts);
  }

  /** Opens dir, verifying every record, with the repairs and refusals of the opening comment. */
  static open(dir: string, opts: QueueStoreOpenOptions = {}): { store: QueueStore; recovery: QueueStoreRecovery } {
    fs.mkdirSync(dir, { recursive: true });
    const cp = opts.checkpoint;
    if (cp !== undefined) {
      assert(Number.isSafeInteger(cp.firstOffset) && cp.firstOffset >= 0 && cp.firstOffset <= cp.nextOffset && Number.isSafeInteger(cp.nextOffset),
        'checkpoint range');
    }
    const files = listSegments(dir);
    let deleted = 0;
    const unlink = (file: string): void => {
      fs.unlinkSync(file);
      deleted++;
    };
    // Files whose successor starts at or below the durable front are wholly below it: leftovers of checkpointDurable().
    if (cp !== undefined) {
      while (files.length >= 2 && (files[1]?.base ?? Infinity) <= cp.firstOffset) unlink((files.shift() as { file: string }).file);
    }
    const start = cp !== undefined && (files.length === 0 || (files[0]?.base ?? 0) > cp.firstOffset) ? cp.firstOffset : (files[0]?.base ?? 0);
    const store = new QueueStore(dir, start, opts);

    // Scan: build every segment's index up to the first bad record or gap.
    const scan = new Uint8Array(queueStoreScanBufferBytes);
    const scanView = new DataView(scan.buffer);
    let cut: QueueStoreRecovery['cut'] = null;
    let cutIndex = files.length;
    let expected = start;
    for (let i = 0; i < files.length && cut === null; i++) {
      const f = files[i] as { base: number; file: string };
      if (f.base !== expected) {
        cut = { file: f.file, position: 0, offset: expected, reason: `segment starts at offset ${f.base}, expected ${expected}` };
        cutIndex = i;
        break;
      }
      const seg = store.scanSegment(f.file, f.base, scan, scanView);
      store.segments.push(seg.segment);
      expected = f.base + seg.segment.count;
      if (seg.bad !== null) {
        cut = { file: f.file, position: seg.segment.bytes, offset: expected, reason: seg.bad };
        cutIndex = i + 1;
      }
    }
    const physicalFirst = store.segments[0]?.base ?? start;
    if (cp !== undefined && cp.firstOffset < cp.nextOffset) {
      if (physicalFirst > cp.firstOffset) {
        throw new QueueStoreCorruptionError(files[0]?.file ?? dir, 0, `the checkpoint holds offsets from ${cp.firstOffset}, the files from ${physicalFirst}`);
      }
      if (expected < cp.nextOffset) {
        const where = cut ?? { file: files[files.length - 1]?.file ?? dir, position: store.segments[store.segments.length - 1]?.bytes ?? 0, reason: 'the files end' };
        throw new QueueStoreCorruptionError(where.file, where.position, `${where.reason}; offset ${expected} is below the checkpoint's next offset ${cp.nextOffset}`);
      }
    }
    // From here the files are changed: everything vouched for is intact.
    const touched = new Set<string>();
    if (cut !== null) {
      const last = store.segments[store.segments.length - 1];
      if (last !== undefined && last.file === cut.file) {
        fs.truncateSync(last.file, last.bytes);
        touched.add(last.file);
      }
      for (const f of files.slice(cutIndex)) unlink(f.file);
    }
    let recordsPastCheckpoint = 0;
    if (cp !== undefined) {
      recordsPastCheckpoint = Math.max(0, store.next - cp.nextOffset);
      deleted += store.cutTail(cp.nextOffset, touched);
      store.first = cp.firstOffset;
      // Segments wholly below the durable front (the last one included, when the store is empty).
      while (store.segments.length > 0 && (store.segments[0] as Segment).base + (store.segments[0] as Segment).count <= cp.firstOffset) {
        const s = store.segments.shift() as Segment;
        touched.delete(s.file);
        unlink(s.file);
      }
      if (store.segments.length === 0) {
        store.first = cp.nextOffset;
        store.next = cp.nextOffset;
      }
      assert(store.first === cp.firstOffset && store.next === cp.nextOffset, 'the store holds exactly the checkpoint');
    }
    // An empty last segment (created, nothing written that survived) is dropped; the next append makes it again.
    const tail = store.segments[store.segments.length - 1];
    if (tail !== undefined && tail.count === 0) {
      store.segments.pop();
      touched.delete(tail.file);
      unlink(tail.file);
    }
    for (const f of touched) fsyncPathSync(f);
    if (deleted > 0 || cut !== null) fsyncPathSync(dir);

    store.total = 0;
    for (const s of store.segments) {
      const from = Math.max(0, store.first - s.base);
      for (let k = from; k < s.count; k++) store.total += s.sizes[k] as number;
    }
    const active = store.segments[store.segments.length - 1];
    store.lastTimestampMs = 0;
    if (active !== undefined) {
      active.fd = fs.openSync(active.file, 'r+');
      store.lastTimestampMs = active.baseTimestampMs + (active.timestampDeltas[active.count - 1] as number);
    }
    store.checkInvariants();
    return { store, recovery: { cut, recordsPastCheckpoint, segmentsDeleted: deleted } };
  }

  // ------------------------------------------------------------------ MessageStore

  get firstOffset(): Offset {
    return offset(this.first);
  }

  get nextOffset(): Offset {
    return offset(this.next);
  }

  get bytes(): number {
    return this.total;
  }

  append(at: Offset, timestampMs: number, message: Message): void {
    this.assertWritable();
    assert(at === this.next, `store appends are contiguous: ${at} after ${this.next}`);
    const recordBytes = queueRecordBytes(message);
    assert(recordBytes <= queueStoreRecordBytesMax, `record of ${recordBytes} bytes over queueStoreRecordBytesMax`);
    const size = messageBytes(message);
    const seg = this.prepare(recordBytes, timestampMs);
    if (this.buffered + recordBytes <= this.writeBuf.length) {
      encodeQueueRecord(this.writeBuf, this.writeView, this.buffered, at, timestampMs, message, recordBytes);
      this.buffered += recordBytes;
    } else {
      const out = new Uint8Array(recordBytes);
      encodeQueueRecord(out, new DataView(out.buffer), 0, at, timestampMs, message, recordBytes);
      this.write(seg, out, seg.bytes);
    }
    this.indexRecord(seg, recordBytes, timestampMs, size);
  }

  read(at: Offset): StoredMessage {
    const { seg, k } = this.locate(at);
    const pos = seg.positions[k] as number;
    const len = this.recordEnd(seg, k) - pos;
    const { buf, view, start } = this.bytesAt(seg, pos, len);
    const c = checkQueueRecord(buf, view, start, start + len);
    if (!c.ok) throw new QueueStoreCorruptionError(seg.file, pos, c.reason);
    if (c.offset !== at || c.recordBytes !== len || c.size !== seg.sizes[k]) {
      throw new QueueStoreCorruptionError(seg.file, pos, `record holds offset ${c.offset} (${c.recordBytes} bytes), the index says ${at} (${len} bytes)`);
    }
    const m = decodeQueueRecord(buf, view, start);
    assert(m.offset === at && m.timestampMs === this.timestampOf(seg, k), 'the record read is the one indexed');
    return m;
  }

  timestampAt(at: Offset): number {
    const { seg, k } = this.locate(at);
    return this.timestampOf(seg, k);
  }

  sizeAt(at: Offset): number {
    const { seg, k } = this.locate(at);
    return seg.sizes[k] as number;
  }

  /** Forgets every message below `at` for readers now; files go in checkpointDurable(). */
  truncateBefore(at: Offset): void {
    assert(!this.closed, 'store is open');
    assert(Number.isSafeInteger(at) && at >= this.first && at <= this.next, 'truncation point within the store');
    for (const s of this.segments) {
      const end = s.base + s.count;
      if (end <= this.first) continue;
      if (s.base >= at) break;
      for (let k = Math.max(0, this.first - s.base); k < Math.min(s.count, at - s.base); k++) this.total -= s.sizes[k] as number;
    }
    this.first = at;
    assert(this.total >= 0 && (this.total === 0 || this.first < this.next), 'retained bytes stay consistent');
  }

  // ------------------------------------------------------------------ durability

  /**
   * Writes and fdatasyncs everything appended so far (and the directory, when segments
   * were created); answers the range now on disk. The wiring calls it before saving a
   * Raft snapshot that records this range. Appends may go on while it runs (they are
   * not covered). A failure fails the store for good.
   */
  async sync(): Promise<QueueStoreCheckpoint> {
    this.assertWritable();
    assert(!this.syncing, 'one sync at a time');
    this.flush();
    const cp: QueueStoreCheckpoint = { firstOffset: offset(this.first), nextOffset: offset(this.next) };
    const files = this.segments.filter((s) => s.dirty).map((s) => s.file);
    for (const s of this.segments) s.dirty = false;
    const dir = this.dirDirty;
    this.dirDirty = false;
    this.syncing = true;
    try {
      for (const f of files) await fsyncPath(f, true);
      if (dir) await fsyncPath(this.dir, false);
    } catch (err) {
      throw this.fail(`fsync failed: ${String(err)}`);
    } finally {
      this.syncing = false;
    }
    return cp;
  }

  /**
   * A Raft snapshot recording `cp` is durable: deletes the segment files wholly below
   * cp.firstOffset (never the one appends go to). Answers how many.
   */
  async checkpointDurable(cp: QueueStoreCheckpoint): Promise<number> {
    this.assertWritable();
    assert(!this.syncing, 'no sync in flight while segments are deleted');
    assert(cp.firstOffset <= this.first && cp.nextOffset <= this.next, 'a checkpoint of this store, not ahead of it');
    const doomed: Segment[] = [];
    // Bounded by the segment count.
    while (this.segments.length > 1 && (this.segments[0] as Segment).base + (this.segments[0] as Segment).count <= cp.firstOffset) {
      const s = this.segments.shift() as Segment;
      this.release(s);
      doomed.push(s);
    }
    if (doomed.length === 0) return 0;
    try {
      for (const s of doomed) await fsp.unlink(s.file);
      await fsyncPath(this.dir, false);
    } catch (err) {
      throw this.fail(`deleting segments failed: ${String(err)}`);
    }
    return doomed.length;
  }

  /** Closes every file at once; only when everything appended is synced already (a store handed over to another directory). */
  closeSynced(): QueueStoreCheckpoint {
    assert(!this.syncing && this.buffered === 0 && !this.dirDirty && this.segments.every((s) => !s.dirty), 'nothing unsynced');
    for (const s of this.segments) this.closeFd(s);
    this.openForRead.length = 0;
    this.cache.length = 0;
    this.closed = true;
    return { firstOffset: offset(this.first), nextOffset: offset(this.next) };
  }

  /** Syncs, closes every file and answers the checkpoint a reopen takes. */
  async close(): Promise<QueueStoreCheckpoint> {
    const cp = await this.sync();
    for (const s of this.segments) this.closeFd(s);
    this.openForRead.length = 0;
    this.cache.length = 0;
    this.closed = true;
    return cp;
  }

  // ------------------------------------------------------------------ snapshot streaming

  /**
   * Whole records from `from`, stopping before `upTo`, at a segment's end or before
   * chunkBytesMax bytes (at least one record). The sender loops from the checkpoint's
   * firstOffset with each answer's firstOffset + count until it reaches nextOffset.
   */
  exportChunk(from: Offset, upTo: Offset, bytesMax = this.chunkBytesMax): QueueStoreChunk {
    assert(Number.isSafeInteger(bytesMax) && bytesMax > 0 && bytesMax <= queueStoreChunkBytesMax, 'chunk size within the limit');
    assert(upTo > from && upTo <= this.next, 'export range inside the store');
    if (from < this.exportableFirst) throw new QueueStoreRangeError(from, this.exportableFirst, this.next);
    const { seg, k } = this.locate(from, true);
    const pos = seg.positions[k] as number;
    let end = k;
    let endPos = pos;
    // Bounded by the segment's record count.
    while (end < seg.count && seg.base + end < upTo) {
      const recEnd = this.recordEnd(seg, end);
      if (end > k && recEnd - pos > bytesMax) break;
      endPos = recEnd;
      end++;
    }
    assert(end > k && endPos - pos <= Math.max(bytesMax, queueStoreRecordBytesMax) && endPos - pos <= queueStoreChunkBytesMax,
      'a chunk holds at least one record, within the limit');
    if (seg === this.active() && endPos > seg.bytes - this.buffered) this.flush();
    const records = new Uint8Array(endPos - pos);
    const got = readFully(this.fdFor(seg), records, 0, records.length, pos);
    if (got !== records.length) throw new QueueStoreCorruptionError(seg.file, pos + got, 'segment shorter than its index');
    return { firstOffset: from, count: end - k, records };
  }

  /**
   * The first offset exportChunk() serves: the first one whose segment file is still here.
   * Below the logical front too: retention drops offsets at once for readers, but their
   * files (and index) stay until a snapshot past them is durable, so a replica pulling the
   * range of this node's latest snapshot finds it even after retention moved on.
   */
  get exportableFirst(): number {
    return Math.min(this.first, this.segments[0]?.base ?? this.first);
  }

  /** Appends an exported chunk after verifying every record; a store built so must start at the chunk stream's first offset. */
  importChunk(chunk: QueueStoreChunk): void {
    this.assertWritable();
    if (chunk.firstOffset !== this.next) throw new QueueStoreChunkError(`chunk starts at offset ${chunk.firstOffset}, the store's next is ${this.next}`);
    if (chunk.records.length > queueStoreChunkBytesMax) throw new QueueStoreChunkError(`chunk of ${chunk.records.length} bytes over the limit`);
    const buf = chunk.records;
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    let pos = 0;
    let n = 0;
    // Bounded by the chunk length: every pass consumes a whole record or throws.
    while (pos < buf.length) {
      const c = checkQueueRecord(buf, view, pos, buf.length);
      if (!c.ok) throw new QueueStoreChunkError(`record ${n} of the chunk: ${c.reason}`);
      if (c.offset !== this.next) throw new QueueStoreChunkError(`record ${n} of the chunk holds offset ${c.offset}, expected ${this.next}`);
      if (c.timestampMs < this.lastTimestampMs) throw new QueueStoreChunkError(`record ${n}: timestamp goes back`);
      const seg = this.prepare(c.recordBytes, c.timestampMs);
      const rec = buf.subarray(pos, pos + c.recordBytes);
      if (this.buffered + c.recordBytes <= this.writeBuf.length) {
        this.writeBuf.set(rec, this.buffered);
        this.buffered += c.recordBytes;
      } else {
        this.write(seg, rec, seg.bytes);
      }
      this.indexRecord(seg, c.recordBytes, c.timestampMs, c.size);
      pos += c.recordBytes;
      n++;
    }
    if (n !== chunk.count) throw new QueueStoreChunkError(`chunk says ${chunk.count} records, holds ${n}`);
  }

  /** Segment files on disk (including those below the front awaiting checkpointDurable()). */
  segmentFiles(): string[] {
    return this.segments.map((s) => s.file);
  }

  // ------------------------------------------------------------------ internals

  private assertWritable(): void {
    assert(!this.closed, 'store is open');
    if (this.failed !== null) throw this.failed;
  }

  private fail(reason: string): QueueStoreFailedError {
    this.failed ??= new QueueStoreFailedError(`queue store ${this.dir}: ${reason}`);
    return this.failed;
  }

  private active(): Segment | undefined {
    return this.segments[this.segments.length - 1];
  }

  /** The segment the next record of recordBytes goes to, rolling to a new one when needed. */
  private prepare(recordBytes: number, timestampMs: number): Segment {
    assert(Number.isSafeInteger(timestampMs) && timestampMs >= 0, `timestamp ${timestampMs} is a non-negative integer`);
    assert(timestampMs >= this.lastTimestampMs, 'timestamps never go back within a partition');
    let seg = this.active();
    const roll = seg === undefined
      || (seg.bytes > 0 && seg.bytes + recordBytes > this.segmentBytesMax)
      || (seg.count > 0 && timestampMs - seg.baseTimestampMs > u32Max);
    if (roll) seg = this.roll();
    assert(seg !== undefined, 'an active segment');
    if (this.writeBuf.length === 0) {
      this.writeBuf = new Uint8Array(queueStoreWriteBufferBytes);
      this.writeView = new DataView(this.writeBuf.buffer);
    }
    if (this.buffered + recordBytes > this.writeBuf.length) this.flush();
    return seg;
  }

  private roll(): Segment {
    const prev = this.active();
    this.flush();
    const file = path.join(this.dir, queueSegmentFileName(this.next));
    let fd: number;
    try {
      fd = fs.openSync(file, 'wx+');
    } catch (err) {
      throw this.fail(`creating ${file} failed: ${String(err)}`);
    }
    const seg: Segment = {
      base: this.next, file, count: 0, bytes: 0, baseTimestampMs: -1,
      positions: emptyIndex, timestampDeltas: emptyIndex, sizes: emptyIndex, fd, dirty: true,
    };
    this.segments.push(seg);
    this.dirDirty = true;
    if (prev !== undefined) {
      // Sealed: trim its index to the records it holds.
      prev.positions = prev.positions.slice(0, prev.count);
      prev.timestampDeltas = prev.timestampDeltas.slice(0, prev.count);
      prev.sizes = prev.sizes.slice(0, prev.count);
      if (prev.fd >= 0) this.touchOpen(prev);
    }
    return seg;
  }

  private indexRecord(seg: Segment, recordBytes: number, timestampMs: number, size: number): void {
    assert(seg === this.active(), 'records go to the active segment');
    if (seg.count === seg.positions.length) {
      const capacity = Math.max(indexCapacityMin, seg.count * 2);
      seg.positions = grow(seg.positions, capacity);
      seg.timestampDeltas = grow(seg.timestampDeltas, capacity);
      seg.sizes = grow(seg.sizes, capacity);
    }
    if (seg.count === 0) seg.baseTimestampMs = timestampMs;
    const delta = timestampMs - seg.baseTimestampMs;
    assert(delta >= 0 && delta <= u32Max && seg.bytes <= u32Max && size <= u32Max, 'index entries fit a u32');
    seg.positions[seg.count] = seg.bytes;
    seg.timestampDeltas[seg.count] = delta;
    seg.sizes[seg.count] = size;
    seg.count++;
    seg.bytes += recordBytes;
    seg.dirty = true;
    this.next++;
    this.total += size;
    this.lastTimestampMs = timestampMs;
    assert(seg.base + seg.count === this.next, 'the active segment ends at the next offset');
  }

  private write(seg: Segment, bytes: Uint8Array, position: number): void {
    try {
      let done = 0;
      // Bounded: each pass writes at least one byte (writeSync throws otherwise).
      while (done < bytes.length) done += fs.writeSync(seg.fd, bytes, done, bytes.length - done, position + done);
    } catch (err) {
      throw this.fail(`write to ${seg.file} failed: ${String(err)}`);
    }
  }

  private flush(): void {
    if (this.buffered === 0) return;
    const seg = this.active();
    assert(seg !== undefined && seg.fd >= 0, 'buffered bytes belong to the open active segment');
    this.write(seg, this.writeBuf.subarray(0, this.buffered), seg.bytes - this.buffered);
    this.buffered = 0;
  }

  /** The segment and slot of `at`; belowFront: also offsets under the logical front whose files are still here (exports). */
  private locate(at: Offset, belowFront = false): { seg: Segment; k: number } {
    assert(!this.closed, 'store is open');
    const first = belowFront ? this.exportableFirst : this.first;
    if (!Number.isSafeInteger(at) || at < first || at >= this.next) throw new QueueStoreRangeError(at, first, this.next);
    let lo = 0;
    let hi = this.segments.length - 1;
    // Binary search: the last segment whose base <= at.
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((this.segments[mid] as Segment).base <= at) lo = mid;
      else hi = mid - 1;
    }
    const seg = this.segments[lo];
    assert(seg !== undefined && at >= seg.base && at < seg.base + seg.count, `offset ${at} lies in a segment`);
    return { seg, k: at - seg.base };
  }

  private recordEnd(seg: Segment, k: number): number {
    return k + 1 < seg.count ? (seg.positions[k + 1] as number) : seg.bytes;
  }

  private timestampOf(seg: Segment, k: number): number {
    return seg.baseTimestampMs + (seg.timestampDeltas[k] as number);
  }

  /** The bytes [pos, pos + len) of seg, from the read cache or the file. */
  private bytesAt(seg: Segment, pos: number, len: number): { buf: Uint8Array; view: DataView; start: number } {
    const isActive = seg === this.active();
    if (isActive && pos + len > seg.bytes - this.buffered) this.flush();
    const fileEnd = isActive ? seg.bytes - this.buffered : seg.bytes;
    if (len > queueStoreReadBlockBytes) {
      const buf = new Uint8Array(len);
      const got = readFully(this.fdFor(seg), buf, 0, len, pos);
      if (got !== len) throw new QueueStoreCorruptionError(seg.file, pos + got, 'segment shorter than its index');
      return { buf, view: new DataView(buf.buffer), start: 0 };
    }
    for (let i = this.cache.length - 1; i >= 0; i--) {
      const b = this.cache[i] as CacheBlock;
      if (b.seg === seg && b.start <= pos && pos + len <= b.start + b.length) {
        if (i !== this.cache.length - 1) {
          this.cache.splice(i, 1);
          this.cache.push(b);
        }
        return { buf: b.buf, view: b.view, start: pos - b.start };
      }
    }
    let block: CacheBlock;
    if (this.cache.length < queueStoreReadCacheBytesMax / queueStoreReadBlockBytes) {
      const buf = new Uint8Array(queueStoreReadBlockBytes);
      block = { seg: null, start: 0, length: 0, buf, view: new DataView(buf.buffer) };
    } else {
      block = this.cache.shift() as CacheBlock;
    }
    const want = Math.min(queueStoreReadBlockBytes, fileEnd - pos);
    assert(want >= len, 'the block holds the record');
    const got = readFully(this.fdFor(seg), block.buf, 0, want, pos);
    if (got < len) throw new QueueStoreCorruptionError(seg.file, pos + got, 'segment shorter than its index');
    block.seg = seg;
    block.start = pos;
    block.length = got;
    this.cache.push(block);
    return { buf: block.buf, view: block.view, start: 0 };
  }

  private fdFor(seg: Segment): number {
    if (seg === this.active()) {
      assert(seg.fd >= 0, 'the active segment is open');
      return seg.fd;
    }
    if (seg.fd < 0) seg.fd = fs.openSync(seg.file, 'r');
    this.touchOpen(seg);
    return seg.fd;
  }

  /** Marks a sealed segment's fd most recently used, closing the least recently used past the bound. */
  private touchOpen(seg: Segment): void {
    const i = this.openForRead.indexOf(seg);
    if (i >= 0) this.openForRead.splice(i, 1);
    this.openForRead.push(seg);
    while (this.openForRead.length > queueStoreReadFilesMax) this.closeFd(this.openForRead.shift() as Segment);
  }

  private closeFd(seg: Segment): void {
    if (seg.fd < 0) return;
    fs.closeSync(seg.fd);
    seg.fd = -1;
    const i = this.openForRead.indexOf(seg);
    if (i >= 0) this.openForRead.splice(i, 1);
  }

  /** A segment no reader can reach any more: free its index, blocks and fd (its file stays until checkpointDurable()). */
  private release(seg: Segment): void {
    assert(seg !== this.active(), 'the active segment is never released');
    seg.positions = emptyIndex;
    seg.timestampDeltas = emptyIndex;
    seg.sizes = emptyIndex;
    this.closeFd(seg);
    for (const b of this.cache) {
      if (b.seg === seg) {
        b.seg = null;
        b.length = 0;
      }
    }
  }

  /** open(): drops every record at or past `at` (they are rebuilt by re-applying the WAL); answers the files deleted. */
  private cutTail(at: number, touched: Set<string>): number {
    let deleted = 0;
    // Bounded by the segment count.
    while (this.segments.length > 0 && (this.segments[this.segments.length - 1] as Segment).base >= at && this.next > at) {
      const s = this.segments.pop() as Segment;
      touched.delete(s.file);
      fs.unlinkSync(s.file);
      deleted++;
      this.next = s.base;
    }
    const last = this.active();
    if (last === undefined || this.next <= at) return deleted;
    const keep = at - last.base;
    assert(keep > 0 && keep < last.count, 'the cut lies inside the last segment');
    last.bytes = last.positions[keep] as number;
    last.count = keep;
    last.positions = last.positions.slice(0, keep);
    last.timestampDeltas = last.timestampDeltas.slice(0, keep);
    last.sizes = last.sizes.slice(0, keep);
    fs.truncateSync(last.file, last.bytes);
    touched.add(last.file);
    this.next = at;
    return deleted;
  }

  /** open(): the index of one segment file, up to its first bad record (bad: its reason, or null). */
  private scanSegment(file: string, base: number, scan: Uint8Array, view: DataView): { segment: Segment; bad: string | null } {
    const fd = fs.openSync(file, 'r');
    const segment: Segment = {
      base, file, count: 0, bytes: 0, baseTimestampMs: -1,
      positions: new Uint32Array(indexCapacityMin), timestampDeltas: new Uint32Array(indexCapacityMin), sizes: new Uint32Array(indexCapacityMin),
      fd: -1, dirty: false,
    };
    let bad: string | null = null;
    try {
      const fileBytes = fs.fstatSync(fd).size;
      let bufStart = 0;
      let bufLen = 0;
      let pos = 0;
      let lastTs = this.lastTimestampMs;
      // Bounded by the file length: every pass consumes a whole record or stops.
      while (pos < fileBytes) {
        if (pos + queueRecordHeaderBytes > bufStart + bufLen || pos + queueRecordLengthAt(view, pos - bufStart) > bufStart + bufLen) {
          bufStart = pos;
          bufLen = readFully(fd, scan, 0, Math.min(scan.length, fileBytes - pos), pos);
        }
        const c = checkQueueRecord(scan, view, pos - bufStart, bufLen);
        const expected = base + segment.count;
        bad = !c.ok ? c.reason
          : c.offset !== expected ? `record holds offset ${c.offset}, expected ${expected}`
          : c.timestampMs < lastTs ? `timestamp ${c.timestampMs} before ${lastTs}`
          : segment.count > 0 && c.timestampMs - segment.baseTimestampMs > u32Max ? 'timestamp too far past the segment\'s first'
          : null;
        if (bad !== null || !c.ok) break;
        if (segment.count === segment.positions.length) {
          segment.positions = grow(segment.positions, segment.count * 2);
          segment.timestampDeltas = grow(segment.timestampDeltas, segment.count * 2);
          segment.sizes = grow(segment.sizes, segment.count * 2);
        }
        if (segment.count === 0) segment.baseTimestampMs = c.timestampMs;
        segment.positions[segment.count] = pos;
        segment.timestampDeltas[segment.count] = c.timestampMs - segment.baseTimestampMs;
        segment.sizes[segment.count] = c.size;
        segment.count++;
        lastTs = c.timestampMs;
        pos += c.recordBytes;
      }
      segment.bytes = pos;
      this.lastTimestampMs = lastTs;
    } finally {
      fs.closeSync(fd);
    }
    this.next = base + segment.count;
    segment.positions = segment.positions.slice(0, segment.count);
    segment.timestampDeltas = segment.timestampDeltas.slice(0, segment.count);
    segment.sizes = segment.sizes.slice(0, segment.count);
    return { segment, bad };
  }

  private checkInvariants(): void {
    let expected = this.segments[0]?.base ?? this.next;
    for (const s of this.segments) {
      assert(s.base === expected, 'segments are contiguous');
      expected += s.count;
    }
    assert(expected === this.next, 'the segments end at the next offset');
    assert(this.first <= this.next && (this.segments.length === 0 || (this.segments[0] as Segment).base <= this.first), 'the front lies in the files');
  }
}
