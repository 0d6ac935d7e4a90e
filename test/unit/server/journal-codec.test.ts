// Checks the journal's hand codec (server/services/journal/codec.ts) against protobufjs:
// the group 0 entry built from a JournalAppend equals frameEntry of what protobufjs decodes,
// for blobs around every varint length boundary and for layouts the fast path hands back
// (unknown fields, a repeated data field, an empty payload); malformed payloads are the same
// BAD_PAYLOAD ProtocolError as before; a JournalAppendReply is byte for byte protobufjs'.

import t from 'tap';
import { ErrorCode, ProtocolError } from '../../../protocol/errors.js';
import { schema } from '../../../protocol/index.js';
import { EntryKind, frameEntry } from '../../../server/raft/group0.js';
import { encodeJournalAppendReply, journalEntryFromAppend } from '../../../server/services/journal/codec.js';

function blob(length: number): Uint8Array {
  const data = new Uint8Array(length);
  for (let i = 0; i < length; i++) data[i] = (i * 31 + 7) & 0xff;
  return data;
}

function viaProtobufjs(payload: Uint8Array): Uint8Array {
  return frameEntry(EntryKind.Journal, schema.JournalAppend.decode(payload).data);
}

t.test('an append as protobufjs writes it becomes the kind byte then the blob', async (t) => {
  for (const length of [0, 1, 64, 127, 128, 129, 16_383, 16_384, 70_000, 2_097_152]) {
    const payload = schema.JournalAppend.encode({ data: blob(length) }).finish();
    const entry = journalEntryFromAppend(EntryKind.Journal, payload);
    t.same(entry, viaProtobufjs(payload), `${length}-byte blob`);
    t.equal(entry.length, 1 + length, `${length}-byte blob: one kind byte added`);
  }
  // The blob is copied: the request's bytes (a view of a socket chunk) may be reused.
  const payload = schema.JournalAppend.encode({ data: blob(8) }).finish();
  const entry = journalEntryFromAppend(EntryKind.Journal, payload);
  payload.fill(0);
  t.same(entry, frameEntry(EntryKind.Journal, blob(8)), 'the entry owns its bytes');
});

t.test('other layouts go through protobufjs and mean what they mean there', async (t) => {
  const unknownField = new Uint8Array([0x10, 0x05, 0x0a, 0x02, 9, 8]); // field 2 = 5, then data
  const trailingUnknown = new Uint8Array([0x0a, 0x02, 9, 8, 0x18, 0x01]); // data, then field 3 = 1
  const twice = new Uint8Array([0x0a, 0x01, 1, 0x0a, 0x02, 2, 3]); // data twice: the last one wins
  const longVarint = new Uint8Array([0x0a, 0x82, 0x80, 0x80, 0x80, 0x00, 4, 5]); // length 2 in five bytes
  for (const [what, payload] of [['an unknown field first', unknownField], ['an unknown field after', trailingUnknown],
    ['a repeated data field', twice], ['a length in a five-byte varint', longVarint], ['an empty payload', new Uint8Array(0)]] as const) {
    t.same(journalEntryFromAppend(EntryKind.Journal, payload), viaProtobufjs(payload), what);
  }
});

t.test('a malformed append is a BAD_PAYLOAD protocol error', async (t) => {
  for (const payload of [new Uint8Array([0x0a, 0x05, 1, 2]), new Uint8Array([0x0a]), new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), new Uint8Array([0x0b])]) {
    let thrown: unknown = null;
    try {
      journalEntryFromAppend(EntryKind.Journal, payload);
    } catch (err) {
      thrown = err;
    }
    t.ok(thrown instanceof ProtocolError && thrown.code === ErrorCode.BAD_PAYLOAD, `[${[...payload].join(',')}]: ${String(thrown)}`);
  }
});

t.test('a reply is the bytes protobufjs writes, and reads back', async (t) => {
  const values = [0, 1, 127, 128, 16_383, 16_384, 2 ** 31, 2 ** 32 + 5, 2 ** 40, Number.MAX_SAFE_INTEGER];
  for (const index of values) {
    for (const count of [0, 1, 300, index]) {
      const bytes = encodeJournalAppendReply(index, count);
      t.same([...bytes], [...schema.JournalAppendReply.encode({ index, count }).finish()], `index ${index}, count ${count}`);
      const back = schema.JournalAppendReply.decode(bytes);
      t.same([Number(back.index), Number(back.count)], [index, count], `index ${index}, count ${count} read back`);
    }
  }
});
