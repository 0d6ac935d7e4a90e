// The cache hit path's hand-written wire code (server/services/cache/service.ts): a get's
// key read straight off a CacheRequest, and a CacheReply laid out by hand, checked against
// protobufjs' generated codec on keys and values of every length class (1- to 3-byte
// length prefixes, multi-byte UTF-8, empty values) and on payloads it must hand back to
// the generated decoder (other fields present, truncated, not UTF-8).

import t from 'tap';
import { schema } from '../../../protocol/index.js';
import { decodeGetKey, encodeValue } from '../../../server/services/cache/service.js';

function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

t.test('encodeValue writes the bytes protobufjs writes', async (t) => {
  t.same(encodeValue(null), schema.CacheReply.encode({ found: false }).finish(), 'absent');
  for (const n of [0, 1, 64, 127, 128, 300, 16_383, 16_384, 100_000, 2_097_152]) {
    const v = bytes(n, n);
    const mine = encodeValue(v);
    t.same(Buffer.from(mine), Buffer.from(schema.CacheReply.encode({ found: true, value: v }).finish()), `${n}-byte value`);
    const back = schema.CacheReply.decode(mine);
    t.equal(back.found, true);
    t.equal(Buffer.compare(Buffer.from(back.value), Buffer.from(v)), 0, `${n}-byte value decodes back`);
  }
});

t.test('decodeGetKey reads what the generated decoder reads', async (t) => {
  // '\uFEFFk' is another key than 'k': a decoder that drops a leading byte-order mark would serve k's line for it.
  const keys = ['k', '\uFEFFk', 'key:1234', 'ключ-é-🙂', 'x'.repeat(127), 'y'.repeat(128), 'z'.repeat(1000)];
  for (const key of keys) {
    const payload = schema.CacheRequest.encode({ key }).finish();
    t.equal(decodeGetKey(payload), key, `key of ${key.length} units`);
  }
  // Other fields too (a set's payload sent as a get): the generated decoder's key.
  const withValue = schema.CacheRequest.encode({ key: 'a', value: new Uint8Array([1, 2]), hasValue: true }).finish();
  t.equal(decodeGetKey(withValue), 'a', 'key with other fields');
  // Not UTF-8: refused as the generated decoder refuses it.
  const bad = new Uint8Array([0x0a, 0x02, 0xff, 0xfe]);
  t.throws(() => schema.CacheRequest.decode(bad), 'the generated decoder refuses invalid UTF-8');
  t.throws(() => decodeGetKey(bad), { code: 'BAD_PAYLOAD' }, 'and so does the hit path');
  // Empty payload: no key.
  t.equal(decodeGetKey(new Uint8Array(0)), '', 'empty payload: empty key');
  // Truncated: the generated decoder's error (a DsyncError from decodePayload), never a wrong key.
  t.throws(() => decodeGetKey(new Uint8Array([0x0a, 0x05, 0x61])), 'truncated payload refused');
});
