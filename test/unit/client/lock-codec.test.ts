// The lock client's hand-written codec (client/locks/lock-codec.ts): LockRequest laid out by
// hand and LockReply read by hand, checked against protobufjs' generated codec on seeded
// random messages (absent and zero fields, uint64 values up to 2^53 - 1, multi-byte UTF-8,
// lone surrogates) and on replies the hand reader must hand to protobufjs (unknown fields,
// uint64 values past 2^49, truncated payloads).

import t from 'tap';
import { decodeLockReply, encodeLockRequest, type LockRequestFields } from '../../../client/locks/lock-codec.js';
import { Xoshiro128 } from '../../../core/prng.js';
import { schema } from '../../../protocol/index.js';
import { wireNumber } from '../../../protocol/wire-number.js';

const messages = 2_000;
const strings = ['', 'c', 'bench-1a2b3c4d/17', 'lock:name', 'ключ-é-🙂', 'x'.repeat(127), 'y'.repeat(128), 'z'.repeat(20_000), 'a\uD800b', '\uDC00', '\uFEFFbom-led'];

function uint64(rng: Xoshiro128): number {
  const classes = [0, rng.int(1, 127), rng.int(128, 16_383), rng.int(0, 0xffff_ffff), rng.int(0, 2 ** 21) * 2 ** 32 + rng.int(0, 0xffff_ffff), 2 ** 53 - 1];
  return classes[rng.int(0, classes.length - 1)] as number;
}

function uint32(rng: Xoshiro128): number {
  return [0, rng.int(1, 127), rng.int(128, 0xffff_ffff), 0xffff_ffff][rng.int(0, 3)] as number;
}

function randomRequest(rng: Xoshiro128): LockRequestFields {
  const f: LockRequestFields = {};
  const maybe = (): boolean => rng.int(0, 2) > 0;
  if (maybe()) f.clientId = strings[rng.int(0, strings.length - 1)] as string;
  if (maybe()) f.seq = uint64(rng);
  if (maybe()) f.session = uint64(rng);
  if (maybe()) f.lock = strings[rng.int(0, strings.length - 1)] as string;
  if (maybe()) f.exclusive = rng.int(0, 1) === 1;
  if (maybe()) f.requestId = strings[rng.int(0, strings.length - 1)] as string;
  if (maybe()) f.wait = rng.int(0, 1) === 1;
  if (maybe()) f.waitMs = uint32(rng);
  if (maybe()) f.ttlMs = uint32(rng);
  if (maybe()) f.lockDelayMs = uint32(rng);
  return f;
}

t.test('encodeLockRequest writes the bytes protobufjs writes', async (t) => {
  const rng = new Xoshiro128(7);
  let mismatches = 0;
  for (let i = 0; i < messages; i++) {
    const f = randomRequest(rng);
    const mine = Buffer.from(encodeLockRequest(f));
    const theirs = Buffer.from(schema.LockRequest.encode(f).finish());
    if (!mine.equals(theirs)) {
      mismatches++;
      if (mismatches <= 3) t.same(mine, theirs, `request ${JSON.stringify(f).slice(0, 200)}`);
    }
  }
  t.equal(mismatches, 0, `${messages} random requests encode byte for byte as protobufjs`);
  // What the lock client sends most: an acquire and a release.
  const acquire = { clientId: 'bench-1a2b3c4d/3', seq: 41, session: 12, lock: 'name-17', exclusive: true, requestId: 'r99', wait: true, waitMs: 10_000 };
  const decoded = schema.LockRequest.decode(encodeLockRequest(acquire));
  t.same({ ...decoded, seq: wireNumber(decoded.seq), session: wireNumber(decoded.session) }, acquire);
});

t.test('a lane\'s client id and seq replace the fields\' own, and the fields stay as the caller made them', async (t) => {
  // The second request goes by protobufjs (a lone surrogate in the lock name): the override holds there too.
  for (const lock of ['name-17', 'bad-\uD800']) {
    const fields = { clientId: 'stale/1', seq: 3, session: 12, lock, exclusive: true, requestId: 'r99' };
    const before = { ...fields };
    const mine = Buffer.from(encodeLockRequest(fields, 'c/4.2', 7));
    t.same(mine, Buffer.from(schema.LockRequest.encode({ ...fields, clientId: 'c/4.2', seq: 7 }).finish()), `${lock}: the lane's client id and seq`);
    t.notSame(mine, Buffer.from(encodeLockRequest(fields)), `${lock}: not the fields' own`);
    t.same(fields, before, `${lock}: the caller's object is untouched`);
  }
});

t.test('decodeLockReply reads what protobufjs reads', async (t) => {
  const rng = new Xoshiro128(11);
  let mismatches = 0;
  let refused = 0;
  for (let i = 0; i < messages; i++) {
    const fields: Record<string, unknown> = {};
    if (rng.int(0, 1) === 1) fields.session = uint64(rng);
    if (rng.int(0, 1) === 1) fields.ttlMs = uint32(rng);
    if (rng.int(0, 1) === 1) fields.token = uint64(rng);
    if (rng.int(0, 1) === 1) fields.exclusive = rng.int(0, 1) === 1;
    if (rng.int(0, 1) === 1) fields.count = uint32(rng);
    if (rng.int(0, 1) === 1) fields.lock = strings[rng.int(0, strings.length - 1)];
    const payload = schema.LockReply.encode(fields).finish();
    let r: ReturnType<typeof schema.LockReply.decode>;
    try {
      r = schema.LockReply.decode(payload);
    } catch {
      // protobufjs refuses what it wrote for a lone surrogate (strict UTF-8): so must the codec.
      refused++;
      t.throws(() => decodeLockReply(payload), 'a reply protobufjs refuses is refused');
      continue;
    }
    const want = { session: wireNumber(r.session), ttlMs: r.ttlMs, token: wireNumber(r.token), exclusive: r.exclusive, count: r.count, lock: r.lock };
    const mine = decodeLockReply(payload);
    if (JSON.stringify(mine) !== JSON.stringify(want)) {
      mismatches++;
      if (mismatches <= 3) t.same(mine, want, `reply ${JSON.stringify(fields).slice(0, 200)}`);
    }
  }
  t.equal(mismatches, 0, `${messages} random replies decode as protobufjs decodes them`);
  t.ok(refused > 0 && refused < messages / 2, `some replies (${refused}) carry invalid UTF-8, most do not`);
});

t.test('replies the hand reader does not know go to protobufjs', async (t) => {
  const reply = Buffer.from(schema.LockReply.encode({ session: 5, token: 9, lock: 'a' }).finish());
  // An unknown varint field (15) after the known ones: protobufjs skips it.
  const unknownField = Buffer.concat([reply, Buffer.from([0x78, 0x05])]);
  t.same(decodeLockReply(unknownField), { session: 5, ttlMs: 0, token: 9, exclusive: false, count: 0, lock: 'a' });
  // A truncated varint: protobufjs refuses it, so must the codec.
  t.throws(() => decodeLockReply(Buffer.from([0x18, 0x80])));
  // A truncated string.
  t.throws(() => decodeLockReply(Buffer.from([0x32, 0x05, 0x61])));
});
