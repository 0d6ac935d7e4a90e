// The client's hand-written get codec (client/cache/cache.ts): a get's CacheRequest laid out
// by hand and a CacheReply read by hand, checked against protobufjs' generated codec on keys
// and values of every length class (1- to 3-byte length prefixes, multi-byte UTF-8, lone
// surrogates, empty values) and on replies it must hand to the generated decoder.

import t from 'tap';
import { decodeGetReply, encodeGetRequest } from '../../../client/cache/cache.js';
import { schema } from '../../../protocol/index.js';

function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

t.test('encodeGetRequest writes the bytes protobufjs writes', async (t) => {
  const keys = ['k', 'key:1234', 'ключ-é-🙂', 'x'.repeat(127), 'y'.repeat(128), 'z'.repeat(1000), 'é'.repeat(100), 'a\uD800b', '\uDC00', '🙂'.repeat(40)];
  for (const key of keys) {
    const mine = Buffer.from(encodeGetRequest(key));
    t.same(mine, Buffer.from(schema.CacheRequest.encode({ key }).finish()), `key of ${key.length} units`);
    // The generated decoder is strict: a lone surrogate is refused either way, a proper key read back.
    const back = (b: Uint8Array): string => { try { return schema.CacheRequest.decode(b).key; } catch { return '(refused)'; } };
    t.equal(back(mine), back(schema.CacheRequest.encode({ key }).finish()), 'decodes to the same key (or is refused the same way)');
  }
});

t.test('decodeGetReply reads what the generated decoder reads', async (t) => {
  t.equal(decodeGetReply(schema.CacheReply.encode({ found: false }).finish()), null, 'absent');
  t.equal(decodeGetReply(new Uint8Array(0)), null, 'no bytes: absent');
  for (const n of [0, 1, 64, 127, 128, 300, 16_383, 16_384, 100_000, 2_097_152]) {
    const v = bytes(n, n);
    const payload = schema.CacheReply.encode({ found: true, value: v }).finish();
    const got = decodeGetReply(payload);
    t.not(got, null, `${n}-byte value found`);
    t.equal(Buffer.compare(Buffer.from(got ?? new Uint8Array(1)), Buffer.from(v)), 0, `${n}-byte value read back`);
  }
  // Fields in another order or extra fields: the generated decoder's answer.
  const reordered = new Uint8Array([0x12, 0x02, 0x61, 0x62, 0x08, 0x01]);
  t.same(Buffer.from(decodeGetReply(reordered) ?? []), Buffer.from('ab'), 'value before found');
  const notFoundWithValue = new Uint8Array([0x08, 0x00, 0x12, 0x01, 0x61]);
  t.equal(decodeGetReply(notFoundWithValue), null, 'found false wins over a value');
  // A length that runs past the payload is refused, never read as a shorter value.
  t.throws(() => decodeGetReply(new Uint8Array([0x08, 0x01, 0x12, 0x05, 0x61])), 'truncated value refused');
  // A value followed by more bytes: the generated decoder decides.
  const trailing = new Uint8Array([0x08, 0x01, 0x12, 0x01, 0x61, 0x08, 0x01]);
  t.same(Buffer.from(decodeGetReply(trailing) ?? []), Buffer.from('a'), 'trailing field');
});
