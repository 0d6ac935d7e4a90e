// JournalAppend read and JournalAppendReply written by hand: the same bytes protobufjs reads
// and writes (test/unit/server/journal-codec.test.ts compares them), without its Reader and
// Writer objects, a Long per uint64 field, and the copy of the blob that framing it as a
// group 0 entry took. One append is one proposal, so this is per proposal on the leader.
// Anything but the one layout protobufjs writes for a request goes through protobufjs.

import { schema } from '../../../protocol/index.js';
import { decodePayload } from '../../node/node.js';
import { type EntryKind, frameEntry } from '../../raft/group0.js';
import { putVarint, varintBytes } from '../../../protocol/varint.js';

/** JournalAppend's only field: data = 1, length-delimited (wire type 2). */
const dataTag = (1 << 3) | 2;
/** JournalAppendReply: index = 1 and count = 2, varints (wire type 0). */
const indexTag = 1 << 3;
const countTag = 2 << 3;
/** A varint of a length below frameBytesMax takes at most this many bytes. */
const lengthVarintBytesMax = 4;

/**
 * The group 0 entry of kind `kind` carrying a JournalAppend's data: one allocation, the kind
 * byte then the data copied out of the request. Throws BAD_PAYLOAD (as decodePayload does)
 * when the payload is not a JournalAppend.
 */
export function journalEntryFromAppend(kind: EntryKind, payload: Uint8Array): Uint8Array {
  if (payload.length === 0) return frameEntry(kind, payload);
  if (payload[0] === dataTag) {
    // The one field, once, spanning the payload: what every protobuf writer sends.
    let length = 0;
    let at = 1;
    for (let shift = 0; at < payload.length && at <= lengthVarintBytesMax; shift += 7) {
      const b = payload[at++] as number;
      length += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) {
        if (at + length !== payload.length) break;
        return frameEntry(kind, payload.subarray(at));
      }
    }
  }
  // Unknown fields, a repeated data field, a malformed varint: protobufjs decides.
  const req = decodePayload((b) => schema.JournalAppend.decode(b), payload, 'journal append');
  return frameEntry(kind, req.data);
}

/** JournalAppendReply { index, count }, each left out when 0 (proto3, as protobufjs writes it). */
export function encodeJournalAppendReply(index: number, count: number): Uint8Array {
  // A slice of Node's buffer pool: the reply lives until its frame is written, and a Uint8Array of its own costs an ArrayBuffer each.
  const out = Buffer.allocUnsafe((index === 0 ? 0 : 1 + varintBytes(index)) + (count === 0 ? 0 : 1 + varintBytes(count)));
  let at = 0;
  if (index !== 0) {
    out[at++] = indexTag;
    at = putVarint(out, at, index);
  }
  if (count !== 0) {
    out[at++] = countTag;
    at = putVarint(out, at, count);
  }
  return out;
}
