// The on-disk byte layout of queue segment records (queue-store.ts), in one place:
// the store encodes on append and checks on every read, recovery scan and import.
//
// Little-endian; u64 values are JS safe integers stored lo u32 then hi u32 (format.ts).
// Record = 24-byte header + body:
//   0  u32 bodyBytes    bytes after the header
//   4  u32 crc32        zlib.crc32 over bytes [8, 24 + bodyBytes): offset..end of body
//   8  u64 offset       the message's offset in its partition
//   16 u64 timestampMs  the appending leader's clock
// Body:
//   0  u8  flags        bit 0: a redrive group follows the headers; other bits 0
//   1  u8  reserved     0
//   2  u16 headerCount
//   4  u32 keyBytes     8 u32 valueBytes     12 key, then value
//   then headerCount x (u16 nameBytes, name UTF-8, u32 valueBytes, value)
//   then, with flag bit 0: u16 groupBytes, group UTF-8
// A record's size (messageBytes() in core/queue/store.ts) is read off the lengths:
// key + value + every header's name and value; nothing is decoded to answer it.
// Segment file `q-<offset of its first record, 20 digits>.seg`: records back to back,
// offsets contiguous, timestamps non-decreasing.

import { isUtf8 } from 'node:buffer';
import { crc32 } from 'node:zlib';
import { assert } from '../../core/assert.js';
import { queueStoreRecordBytesMax } from '../../core/constants.js';
import type { ConsumerGroup, Offset } from '../../core/ids.js';
import { consumerGroup, offset } from '../../core/ids.js';
import { utf8Bytes } from '../../core/locks/table.js';
import type { Header, Message, StoredMessage } from '../../core/queue/commands.js';
import { readU64, writeU64 } from './format.js';

export const queueRecordHeaderBytes = 24;
export const queueRecordBodyFixedBytes = 12;
const flagOnlyGroup = 1;
const offsetDigits = 20;

export function queueSegmentFileName(firstOffset: number): string {
  assert(Number.isSafeInteger(firstOffset) && firstOffset >= 0, 'segment first offset');
  return `q-${String(firstOffset).padStart(offsetDigits, '0')}.seg`;
}

/** The first offset a segment file name carries, or null when the name is not a segment's. */
export function parseQueueSegmentFileName(name: string): number | null {
  const m = /^q-(\d{20})\.seg$/.exec(name);
  if (m === null || m[1] === undefined) return null;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) ? n : null;
}

const textEncoder = new TextEncoder();
// ignoreBOM: a header or group name may begin with U+FEFF, and must read back as written.
const textDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Bytes the record of `m` takes on disk. */
export function queueRecordBytes(m: Message): number {
  let n = queueRecordHeaderBytes + queueRecordBodyFixedBytes + m.key.length + m.value.length;
  for (const h of m.headers) n += 2 + utf8Bytes(h.name) + 4 + h.value.length;
  if (m.onlyGroup !== undefined) n += 2 + utf8Bytes(m.onlyGroup);
  return n;
}

function putString(out: Uint8Array, view: DataView, pos: number, s: string): number {
  const { read, written } = textEncoder.encodeInto(s, out.subarray(pos + 2));
  assert(read === s.length && written <= 0xffff, 'string fits its u16 length and the record');
  view.setUint16(pos, written, true);
  return pos + 2 + written;
}

/** Encodes the record of `m` at out[pos..); returns its length (queueRecordBytes(m)). */
export function encodeQueueRecord(out: Uint8Array, view: DataView, pos: number, at: number, timestampMs: number, m: Message, recordBytes: number): number {
  assert(pos + recordBytes <= out.length, 'the buffer holds the record');
  assert(m.headers.length <= 0xffff, 'header count fits a u16');
  const body = pos + queueRecordHeaderBytes;
  view.setUint8(body, m.onlyGroup !== undefined ? flagOnlyGroup : 0);
  view.setUint8(body + 1, 0);
  view.setUint16(body + 2, m.headers.length, true);
  view.setUint32(body + 4, m.key.length, true);
  view.setUint32(body + 8, m.value.length, true);
  let p = body + queueRecordBodyFixedBytes;
  out.set(m.key, p);
  p += m.key.length;
  out.set(m.value, p);
  p += m.value.length;
  for (const h of m.headers) {
    p = putString(out, view, p, h.name);
    view.setUint32(p, h.value.length, true);
    out.set(h.value, p + 4);
    p += 4 + h.value.length;
  }
  if (m.onlyGroup !== undefined) p = putString(out, view, p, m.onlyGroup);
  const total = p - pos;
  assert(total === recordBytes, `record layout: wrote ${total} bytes, expected ${recordBytes}`);
  view.setUint32(pos, total - queueRecordHeaderBytes, true);
  writeU64(view, pos + 8, at);
  writeU64(view, pos + 16, timestampMs);
  view.setUint32(pos + 4, crc32(out.subarray(pos + 8, pos + total)), true);
  return total;
}

export type QueueRecordCheck =
  | { readonly ok: true; readonly recordBytes: number; readonly offset: number; readonly timestampMs: number; readonly size: number }
  | { readonly ok: false; readonly reason: string };

/** Bytes the record at buf[pos..] says it takes (its header must be in buf), or -1 when over the limit. */
export function queueRecordLengthAt(view: DataView, pos: number): number {
  const total = queueRecordHeaderBytes + view.getUint32(pos, true);
  return total > queueStoreRecordBytesMax ? -1 : total;
}

/**
 * Validates the record at buf[pos..end): complete, within the size limit, CRC
 * matching, the body's lengths adding up exactly, names valid UTF-8. Never throws:
 * the bytes may come from a damaged disk or a peer.
 */
export function checkQueueRecord(buf: Uint8Array, view: DataView, pos: number, end: number): QueueRecordCheck {
  assert(pos >= 0 && end <= buf.length && view.buffer === buf.buffer && view.byteOffset === buf.byteOffset, 'view matches buffer');
  if (end - pos < queueRecordHeaderBytes) return { ok: false, reason: 'incomplete record header' };
  const total = queueRecordLengthAt(view, pos);
  if (total < 0) return { ok: false, reason: `record length ${view.getUint32(pos, true)} over the limit` };
  if (total < queueRecordHeaderBytes + queueRecordBodyFixedBytes) return { ok: false, reason: `record length ${total} below the minimum` };
  if (end - pos < total) return { ok: false, reason: 'incomplete record body' };
  if (view.getUint32(pos + 4, true) !== crc32(buf.subarray(pos + 8, pos + total))) return { ok: false, reason: 'CRC mismatch' };
  const at = readU64(view, pos + 8);
  const timestampMs = readU64(view, pos + 16);
  if (!Number.isSafeInteger(at) || !Number.isSafeInteger(timestampMs)) return { ok: false, reason: 'offset or timestamp beyond 2^53' };
  const body = pos + queueRecordHeaderBytes;
  const stop = pos + total;
  const flags = view.getUint8(body);
  if ((flags & ~flagOnlyGroup) !== 0 || view.getUint8(body + 1) !== 0) return { ok: false, reason: `bad record flags ${flags}` };
  const headerCount = view.getUint16(body + 2, true);
  const keyBytes = view.getUint32(body + 4, true);
  const valueBytes = view.getUint32(body + 8, true);
  let p = body + queueRecordBodyFixedBytes + keyBytes + valueBytes;
  let size = keyBytes + valueBytes;
  // Bounded by headerCount (u16) and by the record: p only moves forward.
  for (let h = 0; h < headerCount; h++) {
    if (p + 2 > stop) return { ok: false, reason: 'header name length past the record' };
    const nameBytes = view.getUint16(p, true);
    if (p + 2 + nameBytes + 4 > stop) return { ok: false, reason: 'header past the record' };
    if (!isUtf8(buf.subarray(p + 2, p + 2 + nameBytes))) return { ok: false, reason: 'header name is not UTF-8' };
    const hValueBytes = view.getUint32(p + 2 + nameBytes, true);
    p += 2 + nameBytes + 4 + hValueBytes;
    size += nameBytes + hValueBytes;
  }
  if ((flags & flagOnlyGroup) !== 0) {
    if (p + 2 > stop) return { ok: false, reason: 'group length past the record' };
    const groupBytes = view.getUint16(p, true);
    if (p + 2 + groupBytes > stop || !isUtf8(buf.subarray(p + 2, p + 2 + groupBytes))) return { ok: false, reason: 'bad redrive group' };
    p += 2 + groupBytes;
  }
  if (p !== stop) return { ok: false, reason: `record body lengths add up to ${p - pos} bytes, record has ${total}` };
  return { ok: true, recordBytes: total, offset: at, timestampMs, size };
}

/** The message of a record that checkQueueRecord() accepted; bytes are copied out of buf. */
export function decodeQueueRecord(buf: Uint8Array, view: DataView, pos: number): StoredMessage {
  const body = pos + queueRecordHeaderBytes;
  const flags = view.getUint8(body);
  const headerCount = view.getUint16(body + 2, true);
  const keyBytes = view.getUint32(body + 4, true);
  const valueBytes = view.getUint32(body + 8, true);
  let p = body + queueRecordBodyFixedBytes;
  const key = buf.slice(p, p + keyBytes);
  p += keyBytes;
  const value = buf.slice(p, p + valueBytes);
  p += valueBytes;
  const headers: Header[] = [];
  for (let h = 0; h < headerCount; h++) {
    const nameBytes = view.getUint16(p, true);
    const name = textDecoder.decode(buf.subarray(p + 2, p + 2 + nameBytes));
    const hValueBytes = view.getUint32(p + 2 + nameBytes, true);
    const start = p + 2 + nameBytes + 4;
    headers.push({ name, value: buf.slice(start, start + hValueBytes) });
    p = start + hValueBytes;
  }
  let onlyGroup: ConsumerGroup | undefined;
  if ((flags & flagOnlyGroup) !== 0) {
    const groupBytes = view.getUint16(p, true);
    onlyGroup = consumerGroup(textDecoder.decode(buf.subarray(p + 2, p + 2 + groupBytes)));
    p += 2 + groupBytes;
  }
  assert(p - pos === queueRecordHeaderBytes + view.getUint32(pos, true), 'decoded the whole record');
  const at: Offset = offset(readU64(view, pos + 8));
  return { offset: at, timestampMs: readU64(view, pos + 16), key, value, headers, ...(onlyGroup !== undefined ? { onlyGroup } : {}) };
}
