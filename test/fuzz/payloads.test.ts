// 100,000 random and mutated payloads through the node's payload decoding (issue 8,
// protocol fuzzing, decoder half): for every request message the node decodes, bytes
// that are garbage, cut, bit-flipped or spliced either decode or fail as a typed
// ProtocolError BAD_PAYLOAD; nothing else escapes (a RangeError from protobufjs
// reaching a handler would stop the node). Seeded: SEED=N replays.

import t from 'tap';
import { Xoshiro128 } from '../../core/prng.js';
import { ErrorCode, ProtocolError, schema } from '../../protocol/index.js';
import { decodePayload } from '../../server/node/node.js';

const seed = process.env['SEED'] !== undefined ? Number(process.env['SEED']) : (Date.now() ^ (process.pid << 8)) >>> 0;
t.comment(`seed ${seed} (replay with SEED=${seed})`);
const inputs = Number(process.env['FUZZ_PAYLOADS'] ?? 100_000);

/** Every request message a handler decodes, with one valid instance to mutate. */
const shapes: { name: string; decode: (b: Uint8Array) => unknown; valid: Uint8Array }[] = [
  { name: 'Hello', decode: (b) => schema.Hello.decode(b), valid: schema.Hello.encode({ role: schema.Role.ROLE_PEER, protocolVersion: 1, name: 'n2', advertise: '127.0.0.1:1' }).finish() },
  { name: 'Ping', decode: (b) => schema.Ping.decode(b), valid: schema.Ping.encode({ payload: new Uint8Array([1, 2, 3]) }).finish() },
  { name: 'LockRequest', decode: (b) => schema.LockRequest.decode(b), valid: schema.LockRequest.encode({ clientId: 'c', seq: 9, session: 3, lock: 'l', exclusive: true, requestId: 'r', wait: true, waitMs: 5, ttlMs: 1000, lockDelayMs: 1 }).finish() },
  { name: 'LockQuery', decode: (b) => schema.LockQuery.decode(b), valid: schema.LockQuery.encode({ lock: 'l' }).finish() },
  { name: 'JournalAppend', decode: (b) => schema.JournalAppend.decode(b), valid: schema.JournalAppend.encode({ data: new Uint8Array(8) }).finish() },
  { name: 'MemberJoinRequest', decode: (b) => schema.MemberJoinRequest.decode(b), valid: schema.MemberJoinRequest.encode({ id: 'n4', address: 'a:1', peerAddress: 'a:2' }).finish() },
  { name: 'MemberRemoveRequest', decode: (b) => schema.MemberRemoveRequest.decode(b), valid: schema.MemberRemoveRequest.encode({ id: 'n2' }).finish() },
  { name: 'RaftBatch', decode: (b) => schema.RaftBatch.decode(b), valid: schema.RaftBatch.encode({ messages: [schema.RaftMessage.create({ group: 1, type: 4, from: 'n2', to: 'n1', term: 2, index: 3, entries: [{ term: 2, index: 4, type: 0, data: new Uint8Array(4) }] })] }).finish() },
];

function mutated(rng: Xoshiro128, valid: Uint8Array): Uint8Array {
  const kind = rng.int(0, 3);
  if (kind === 0) {
    const out = new Uint8Array(rng.int(0, 64));
    for (let i = 0; i < out.length; i++) out[i] = rng.int(0, 255);
    return out;
  }
  if (kind === 1) return valid.subarray(0, rng.int(0, valid.length));
  const out = Uint8Array.from(valid);
  for (let i = 0; i < rng.int(1, 6) && out.length > 0; i++) {
    const at = rng.int(0, out.length - 1);
    out[at] = kind === 2 ? (out[at] ?? 0) ^ (1 << rng.int(0, 7)) : rng.int(0, 255);
  }
  return out;
}

t.test(`${inputs} payloads: decoded or BAD_PAYLOAD, nothing else`, async (t) => {
  const rng = new Xoshiro128(seed);
  let decoded = 0;
  let refused = 0;
  const escaped: string[] = [];
  for (let i = 0; i < inputs; i++) {
    const shape = shapes[i % shapes.length]!;
    try {
      decodePayload(shape.decode, mutated(rng, shape.valid), shape.name);
      decoded++;
    } catch (err) {
      if (err instanceof ProtocolError && err.code === ErrorCode.BAD_PAYLOAD) refused++;
      else if (escaped.length < 10) escaped.push(`${shape.name}: ${String(err)}`);
    }
  }
  t.same(escaped, [], 'only typed refusals escape');
  t.equal(decoded + refused, inputs, `${decoded} decoded, ${refused} refused`);
  t.ok(refused > 0 && decoded > 0, 'the inputs exercise both outcomes');
});
