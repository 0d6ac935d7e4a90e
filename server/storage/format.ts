// The on-disk byte layout of WAL records, segment names and snapshot files, in one
// place, shared by the main thread (encode), the worker (framing) and recovery (decode).
//
// All integers are LITTLE-ENDIAN. u64 values are JS safe integers (< 2^53) stored
// as lo u32 then hi u32.
//
// Record = 24-byte header + body:
//   0  u32 bodyBytes     bytes after the header
//   4  u32 crc32         zlib.crc32 over bytes [8, 24 + bodyBytes): type..end of body
//   8  u8  type          RecordType
//   9  u8  flags         0 (reserved)
//   10 u16 reserved      0
//   12 u32 group         GroupId
//   16 u64 seq           write sequence, +1 per record, never reused
// HardState body: u64 term, u64 commit, u16 voteBytes, vote UTF-8
// Entries body:   u64 firstIndex, u32 count, then per entry: u64 term, u8 type, u32 dataBytes, data
//
// Snapshot file `snap-<group>.snap` (written as `.tmp`, fsynced, renamed):
//   0  u32 magic 'DSN1'   4 u32 crc32 over [8, end)
//   8  u32 group  12 u64 floorSeq  20 u64 index  28 u64 term
//   36 u16 voters, each u16 len + UTF-8; u16 learners, each u16 len + UTF-8; u32 dataBytes, data
// floorSeq: entry records of this group with seq < floorSeq are ignored on replay
// (they predate a snapshot that replaced the whole log); 0 when none.

import { crc32 } from 'node:zlib';
import { assert } from '../../core/assert.js';
import {
  walNodeIdBytesMax,
  walRecordBytesMax,
  walSnapshotDataBytesMax,
  walSnapshotMembersMax,
} from '../../core/constants.js';
import type { GroupId, LogIndex, NodeId, Term } from '../../core/ids.js';
import { groupId, logIndex, nodeId, term } from '../../core/ids.js';
import type { ConfState, Entry, HardState, Snapshot } from '../../core/raft/types.js';
import { EntryType } from '../../core/raft/types.js';

export const recordHeaderBytes = 24;
export const hardStateFixedBytes = 8 + 8 + 2;
export const entriesFixedBytes = 8 + 4;
export const entryFixedBytes = 8 + 1 + 4;
export const snapshotMagic = 0x314e5344; // 'DSN1' little-endian
export const snapshotHeaderBytes = 36;
const twoTo32 = 0x1_0000_0000;
const seqDigits = 20;
const groupDigits = 10;

assert(recordHeaderBytes + hardStateFixedBytes + walNodeIdBytesMax <= walRecordBytesMax, 'a hard state fits a record');

export const enum RecordType {
  HardState = 1,
  Entries = 2,
  /** The group was dropped: recovery forgets it and its snapshot file; nothing of it follows. */
  Tombstone = 3,
}

export function isRecordType(t: number): t is RecordType {
  return t === RecordType.HardState || t === RecordType.Entries || t === RecordType.Tombstone;
}

export const tombstoneRecordBytes = recordHeaderBytes;

export function writeU64(view: DataView, offset: number, n: number): void {
  assert(Number.isSafeInteger(n) && n >= 0, `u64 out of range: ${n}`);
  view.setUint32(offset, n >>> 0, true);
  view.setUint32(offset + 4, Math.floor(n / twoTo32), true);
}

export function readU64(view: DataView, offset: number): number {
  const lo = view.getUint32(offset, true);
  const hi = view.getUint32(offset + 4, true);
  return hi * twoTo32 + lo;
}

export function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

// --- segment naming and rolling (the main thread and the worker apply the same rule) ---

export function segmentFileName(firstSeq: number): string {
  assert(Number.isSafeInteger(firstSeq) && firstSeq >= 1, 'segment first seq');
  return `wal-${String(firstSeq).padStart(seqDigits, '0')}.log`;
}

/** The first seq of a segment file name, or null when the name is not a segment. */
export function parseSegmentFileName(name: string): number | null {
  const m = /^wal-(\d{20})\.log$/.exec(name);
  if (m === null || m[1] === undefined) return null;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) && n >= 1 ? n : null;
}

/** True when a record of recordBytes must start a new segment rather than go into one holding segmentBytes. */
export function segmentRollNeeded(segmentBytes: number, recordBytes: number, segmentBytesMax: number): boolean {
  assert(recordBytes >= recordHeaderBytes && recordBytes <= segmentBytesMax, 'record fits a segment');
  return segmentBytes > 0 && segmentBytes + recordBytes > segmentBytesMax;
}

export function snapshotFileName(group: GroupId): string {
  return `snap-${String(group).padStart(groupDigits, '0')}.snap`;
}

export function parseSnapshotFileName(name: string): GroupId | null {
  const m = /^snap-(\d{10})\.snap$/.exec(name);
  if (m === null || m[1] === undefined) return null;
  return groupId(Number(m[1]));
}

export const snapshotTempSuffix = '.tmp';

/**
 * The smallest unit a disk writes (a sector): a write lost in a crash leaves whole
 * sectors, aligned in the file, reading back as zeros. 512 is the smallest in use
 * (etcd's WAL uses the same figure to tell a torn record from a damaged one).
 */
export const tornSectorBytes = 512;

// --- record encoding (main thread) ---

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: true });

export function encodeNodeId(id: string): Uint8Array {
  const bytes = textEncoder.encode(id);
  assert(bytes.length <= walNodeIdBytesMax, `node id longer than ${walNodeIdBytesMax} bytes`);
  return bytes;
}

function writeHeader(view: DataView, type: RecordType, group: GroupId, seq: number, bodyBytes: number): void {
  assert(Number.isInteger(group) && group >= 0 && group < twoTo32, 'group id is a u32');
  view.setUint32(0, bodyBytes, true);
  view.setUint8(8, type);
  view.setUint8(9, 0);
  view.setUint16(10, 0, true);
  view.setUint32(12, group, true);
  writeU64(view, 16, seq);
}

function sealRecord(out: Uint8Array, view: DataView, totalBytes: number): void {
  view.setUint32(4, crc32(out.subarray(8, totalBytes)), true);
}

export function hardStateRecordBytes(voteBytes: Uint8Array): number {
  return recordHeaderBytes + hardStateFixedBytes + voteBytes.length;
}

/** Encodes a hard-state record into out[0..); returns its length. */
export function encodeHardStateRecord(
  out: Uint8Array,
  group: GroupId,
  seq: number,
  hs: HardState,
  voteBytes: Uint8Array,
): number {
  const total = hardStateRecordBytes(voteBytes);
  assert(out.length >= total, 'scratch buffer holds the record');
  const view = viewOf(out);
  writeHeader(view, RecordType.HardState, group, seq, total - recordHeaderBytes);
  writeU64(view, 24, hs.term);
  writeU64(view, 32, hs.commit);
  view.setUint16(40, voteBytes.length, true);
  out.set(voteBytes, 42);
  sealRecord(out, view, total);
  return total;
}

/** Encodes a tombstone record (header only) into out[0..); returns its length. */
export function encodeTombstoneRecord(out: Uint8Array, group: GroupId, seq: number): number {
  assert(out.length >= tombstoneRecordBytes, 'scratch buffer holds the record');
  const view = viewOf(out);
  writeHeader(view, RecordType.Tombstone, group, seq, 0);
  sealRecord(out, view, tombstoneRecordBytes);
  return tombstoneRecordBytes;
}

export function entryBytes(e: Entry): number {
  return entryFixedBytes + e.data.length;
}

/** Encodes entries[from, to) as one record into out[0..); returns its length. */
export function encodeEntriesRecord(
  out: Uint8Array,
  group: GroupId,
  seq: number,
  entries: readonly Entry[],
  from: number,
  to: number,
): number {
  assert(to > from, 'an entries record holds at least one entry');
  const first = entries[from];
  assert(first !== undefined, 'entries range in bounds');
  const view = viewOf(out);
  let off = recordHeaderBytes;
  writeU64(view, off, first.index);
  view.setUint32(off + 8, to - from, true);
  off += entriesFixedBytes;
  for (let k = from; k < to; k++) {
    const e = entries[k];
    assert(e !== undefined, 'entries range in bounds');
    assert(off + entryFixedBytes + e.data.length <= out.length, 'scratch buffer holds the record');
    writeU64(view, off, e.term);
    view.setUint8(off + 8, e.type);
    view.setUint32(off + 9, e.data.length, true);
    out.set(e.data, off + entryFixedBytes);
    off += entryFixedBytes + e.data.length;
  }
  writeHeader(view, RecordType.Entries, group, seq, off - recordHeaderBytes);
  sealRecord(out, view, off);
  return off;
}

// --- record decoding (recovery) ---

export interface RecordHeader {
  readonly bodyBytes: number;
  readonly type: RecordType;
  readonly group: GroupId;
  readonly seq: number;
}

export type RecordCheck =
  | { readonly ok: true; readonly header: RecordHeader; readonly totalBytes: number }
  | { readonly ok: false; readonly reason: string };

/** Validates the record at buf[offset..): complete, sane header, CRC matching. */
export function checkRecordAt(buf: Uint8Array, offset: number): RecordCheck {
  const remaining = buf.length - offset;
  if (remaining < recordHeaderBytes) return { ok: false, reason: 'incomplete record header' };
  const view = new DataView(buf.buffer, buf.byteOffset + offset, remaining);
  const bodyBytes = view.getUint32(0, true);
  if (recordHeaderBytes + bodyBytes > walRecordBytesMax) return { ok: false, reason: `record length ${bodyBytes} over the limit` };
  const totalBytes = recordHeaderBytes + bodyBytes;
  if (totalBytes > remaining) return { ok: false, reason: 'incomplete record body' };
  const type = view.getUint8(8);
  if (!isRecordType(type) || view.getUint8(9) !== 0 || view.getUint16(10, true) !== 0) {
    return { ok: false, reason: `bad record type/flags ${type}` };
  }
  const crcStored = view.getUint32(4, true);
  const crcActual = crc32(buf.subarray(offset + 8, offset + totalBytes));
  if (crcStored !== crcActual) return { ok: false, reason: 'CRC mismatch' };
  const header: RecordHeader = { bodyBytes, type, group: groupId(view.getUint32(12, true)), seq: readU64(view, 16) };
  return { ok: true, header, totalBytes };
}

/** Body decoding; the CRC has already been checked, so a malformed body is a writer bug. */
export function decodeHardStateBody(body: Uint8Array): HardState {
  const view = viewOf(body);
  assert(body.length >= hardStateFixedBytes, 'hard state body length');
  const voteLen = view.getUint16(16, true);
  assert(body.length === hardStateFixedBytes + voteLen, 'hard state body length matches vote');
  const vote = voteLen === 0 ? '' : nodeId(textDecoder.decode(body.subarray(18, 18 + voteLen)));
  return { term: term(readU64(view, 0)), commit: logIndex(readU64(view, 8)), vote };
}

export function decodeEntriesBody(body: Uint8Array): Entry[] {
  const view = viewOf(body);
  assert(body.length >= entriesFixedBytes, 'entries body length');
  const firstIndex = readU64(view, 0);
  const count = view.getUint32(8, true);
  assert(count >= 1 && firstIndex >= 1, 'entries record holds entries');
  const out: Entry[] = [];
  let off = entriesFixedBytes;
  for (let k = 0; k < count; k++) {
    assert(off + entryFixedBytes <= body.length, 'entry header in bounds');
    const t = readU64(view, off);
    const type = view.getUint8(off + 8);
    const len = view.getUint32(off + 9, true);
    assert(type === EntryType.Normal || type === EntryType.ConfChange, `entry type ${type}`);
    const start = off + entryFixedBytes;
    assert(start + len <= body.length, 'entry data in bounds');
    // Copy: do not keep a whole segment buffer alive through one entry's view.
    out.push({ term: term(t), index: logIndex(firstIndex + k), type, data: body.slice(start, start + len) });
    off = start + len;
  }
  assert(off === body.length, 'entries body fully consumed');
  return out;
}

// --- snapshot files ---

export interface SnapshotFile {
  readonly group: GroupId;
  readonly floorSeq: number;
  readonly snapshot: Snapshot;
}

function membersBytes(ids: readonly NodeId[]): Uint8Array[] {
  return ids.map((id) => encodeNodeId(id));
}

export function encodeSnapshotFile(file: SnapshotFile): Uint8Array {
  const { snapshot } = file;
  const conf = snapshot.meta.conf;
  assert(conf.voters.length + conf.learners.length <= walSnapshotMembersMax, 'snapshot membership size');
  assert(snapshot.data.length <= walSnapshotDataBytesMax, 'snapshot data size');
  const voters = membersBytes(conf.voters);
  const learners = membersBytes(conf.learners);
  const confBytes = 2 + 2 + [...voters, ...learners].reduce((n, b) => n + 2 + b.length, 0);
  const total = snapshotHeaderBytes + confBytes + 4 + snapshot.data.length;
  const out = new Uint8Array(total);
  const view = viewOf(out);
  view.setUint32(0, snapshotMagic, true);
  view.setUint32(8, file.group, true);
  writeU64(view, 12, file.floorSeq);
  writeU64(view, 20, snapshot.meta.index);
  writeU64(view, 28, snapshot.meta.term);
  let off = snapshotHeaderBytes;
  for (const list of [voters, learners]) {
    view.setUint16(off, list.length, true);
    off += 2;
    for (const b of list) {
      view.setUint16(off, b.length, true);
      out.set(b, off + 2);
      off += 2 + b.length;
    }
  }
  view.setUint32(off, snapshot.data.length, true);
  out.set(snapshot.data, off + 4);
  assert(off + 4 + snapshot.data.length === total, 'snapshot layout');
  view.setUint32(4, crc32(out.subarray(8)), true);
  return out;
}

export type SnapshotDecode =
  | { readonly ok: true; readonly file: SnapshotFile }
  | { readonly ok: false; readonly offset: number; readonly reason: string };

export function decodeSnapshotFile(buf: Uint8Array): SnapshotDecode {
  if (buf.length < snapshotHeaderBytes + 8) return { ok: false, offset: 0, reason: 'snapshot file too short' };
  const view = viewOf(buf);
  if (view.getUint32(0, true) !== snapshotMagic) return { ok: false, offset: 0, reason: 'bad snapshot magic' };
  if (view.getUint32(4, true) !== crc32(buf.subarray(8))) return { ok: false, offset: 4, reason: 'snapshot CRC mismatch' };
  // CRC matched: from here a malformed layout is a writer bug, hence assertions.
  let off = snapshotHeaderBytes;
  const lists: NodeId[][] = [];
  for (let l = 0; l < 2; l++) {
    const n = view.getUint16(off, true);
    off += 2;
    const ids: NodeId[] = [];
    for (let k = 0; k < n; k++) {
      const len = view.getUint16(off, true);
      assert(off + 2 + len <= buf.length, 'snapshot member in bounds');
      ids.push(nodeId(textDecoder.decode(buf.subarray(off + 2, off + 2 + len))));
      off += 2 + len;
    }
    lists.push(ids);
  }
  const dataLen = view.getUint32(off, true);
  assert(off + 4 + dataLen === buf.length, 'snapshot data fills the file');
  const conf: ConfState = { voters: lists[0] ?? [], learners: lists[1] ?? [] };
  const index: LogIndex = logIndex(readU64(view, 20));
  const t: Term = term(readU64(view, 28));
  return {
    ok: true,
    file: {
      group: groupId(view.getUint32(8, true)),
      floorSeq: readU64(view, 12),
      snapshot: { meta: { index, term: t, conf }, data: buf.slice(off + 4) },
    },
  };
}
