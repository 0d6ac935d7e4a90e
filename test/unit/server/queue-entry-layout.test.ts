// The partition entry laid out and read by hand (server/services/queues/queue-entry-layout.ts)
// against protobufjs, on seeded random entries of every command kind (fencing or not, headers,
// redriven messages, multi-byte UTF-8 and byte-order marks, uint64 values up to 2^53 - 1, -0 and fractional
// times): the hand bytes are protobufjs' bytes (an append without redriven messages leaves
// out its list of '' only_groups: then both readers read the same commands from either);
// both readers read the same commands from protobufjs' bytes (what older nodes wrote); values
// the layout leaves to protobufjs (lone surrogates, negative or fractional integers) and bytes
// the reader leaves to it (unknown fields, long varints, mutations) give what protobufjs gives.
// A publish request is read, and its reply written, as protobufjs does.

import t from 'tap';
import { consumerGroup, consumerId, deliveryId, offset, producerId } from '../../../core/ids.js';
import { Xoshiro128 } from '../../../core/prng.js';
import type { Message } from '../../../core/queue/commands.js';
import { decodePublishRequest, decodeQueueEntry, decodeQueueEntrySlow, encodePublishReply, encodeQueueEntry, encodeQueueEntrySlow, type EntryCommand,
  fromWireMessage, toWireMessage } from '../../../server/services/queues/codec.js';
import { layPublishReply, layQueueEntry, readPublishRequest, readQueueEntry } from '../../../server/services/queues/queue-entry-layout.js';
import { schema } from '../../../protocol/index.js';
import { wireNumber } from '../../../protocol/wire-number.js';

const seed = Number(process.env.SEED ?? 1);
const entries = 500;
const enc = new TextEncoder();
const names = ['g', 'bench-queue-17-0123456789abcdef', 'ключ-é-🙂', 'x'.repeat(127), 'y'.repeat(200), '\uFEFFbom', 'a\uFEFF'];

function pick<T>(rng: Xoshiro128, xs: readonly T[]): T {
  return xs[rng.int(0, xs.length - 1)] as T;
}

function uint64(rng: Xoshiro128): number {
  return pick(rng, [0, 1, rng.int(2, 127), rng.int(128, 16_383), rng.int(0, 0xffff_ffff), rng.int(0, 2 ** 21) * 2 ** 32 + rng.int(0, 0xffff_ffff), 2 ** 49 - 1, 2 ** 49,
    2 ** 53 - 1]);
}

function uint32(rng: Xoshiro128): number {
  return pick(rng, [0, 1, rng.int(2, 127), rng.int(128, 0xffff_ffff), 0xffff_ffff]);
}

function time(rng: Xoshiro128): number {
  return pick(rng, [0, -0, 1_700_000_000_123, 1.5, rng.next() * 1e13]);
}

function bytes(rng: Xoshiro128): Uint8Array {
  const n = pick(rng, [0, 1, rng.int(2, 300), 20_000]);
  return Uint8Array.from({ length: n }, () => rng.int(0, 255));
}

function message(rng: Xoshiro128, redrive: boolean): Message {
  const headers = Array.from({ length: pick(rng, [0, 0, 1, 3]) }, () => ({ name: pick(rng, ['', ...names]), value: bytes(rng) }));
  const m = { key: bytes(rng), value: bytes(rng), headers };
  return redrive && rng.int(0, 1) === 1 ? { ...m, onlyGroup: consumerGroup(pick(rng, names)) } : m;
}

function command(rng: Xoshiro128): EntryCommand {
  const nowMs = time(rng);
  const from = { group: consumerGroup(pick(rng, names)), consumer: consumerId(pick(rng, names)), seq: uint64(rng), nowMs };
  const kind = rng.int(1, 11);
  let c: EntryCommand['cmd'];
  switch (kind) {
    case 1: {
      const redrive = rng.int(0, 3) === 0;
      const messages = Array.from({ length: rng.int(1, 4) }, () => message(rng, redrive));
      c = rng.int(0, 1) === 0 ? { kind: 'append', nowMs, messages } : { kind: 'append', nowMs, messages, producer: producerId(pick(rng, names)), firstSeq: uint64(rng) };
      break;
    }
    case 2: {
      const ackDeadlineMs = uint32(rng);
      c = ackDeadlineMs === 0 ? { kind: 'fetch', ...from, max: uint32(rng) } : { kind: 'fetch', ...from, max: uint32(rng), ackDeadlineMs };
      break;
    }
    case 3:
      c = { kind: 'ack', ...from, items: Array.from({ length: rng.int(1, 5) }, () => ({ delivery: deliveryId(uint64(rng)), attempt: uint32(rng) })) };
      break;
    case 4:
      c = rng.int(0, 1) === 0
        ? { kind: 'nack', ...from, delivery: deliveryId(uint64(rng)), attempt: uint32(rng) }
        : { kind: 'nack', ...from, delivery: deliveryId(uint64(rng)), attempt: uint32(rng), delayMs: uint32(rng) };
      break;
    case 5: c = { kind: 'extend', ...from, delivery: deliveryId(uint64(rng)), attempt: uint32(rng) }; break;
    case 6: c = { kind: 'expireDeadlines', nowMs }; break;
    case 7: c = { kind: 'consumerGone', nowMs, consumer: consumerId(pick(rng, names)) }; break;
    case 8: c = { kind: 'replay', nowMs, group: from.group, from: rng.int(0, 1) === 0 ? { offset: offset(uint64(rng)) } : { timestampMs: time(rng) } }; break;
    case 9: c = { kind: 'deleteGroup', nowMs, group: from.group }; break;
    case 10: c = { kind: 'enforceRetention', nowMs }; break;
    default: c = { kind: 'deadLettersForwarded', nowMs, firstSeq: uint64(rng) };
  }
  return rng.int(0, 2) === 0 ? { cmd: c, fencing: { lock: pick(rng, ['', ...names]), token: uint64(rng) } } : { cmd: c };
}

function entry(rng: Xoshiro128): EntryCommand[] {
  return Array.from({ length: pick(rng, [1, 2, rng.int(3, 40)]) }, () => command(rng));
}

/** protobufjs writes an only_group per message of every append; the hand layout only for appends with a redriven message. */
const sameLayout = (commands: readonly EntryCommand[]): boolean =>
  commands.every((c) => c.cmd.kind !== 'append' || c.cmd.messages.some((m) => m.onlyGroup !== undefined));

/** Decoded commands with every byte view as a plain array (Buffer and Uint8Array views compare alike). */
function plain(x: unknown): unknown {
  if (x instanceof Uint8Array) return Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString('hex');
  if (Array.isArray(x)) return x.map(plain);
  if (typeof x === 'object' && x !== null) return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, plain(v)]));
  if (Object.is(x, -0)) return '-0';
  return x;
}

function outcome(f: () => unknown): unknown {
  try {
    return plain(f());
  } catch (err) {
    return `threw ${(err as Error).name}`;
  }
}

t.test('hand layout: protobufjs bytes, and both readers read back the commands', async (t) => {
  const rng = new Xoshiro128(seed);
  let exact = 0;
  for (let i = 0; i < entries; i++) {
    const commands = entry(rng);
    const hand = layQueueEntry(commands);
    if (hand === null) {
      t.fail(`entry ${i}: the layout refused plain values (seed ${seed})`);
      return;
    }
    const slow = encodeQueueEntrySlow(commands);
    if (sameLayout(commands)) {
      exact++;
      if (Buffer.compare(Buffer.from(hand), Buffer.from(slow)) !== 0) {
        t.fail(`entry ${i}: bytes differ from protobufjs' (seed ${seed})`);
        return;
      }
    }
    const want = plain(commands);
    for (const [what, bytes] of [['hand', hand], ['protobufjs', slow]] as const) {
      if (readQueueEntry(bytes) === null) {
        t.fail(`entry ${i}: the hand reader refused the ${what} bytes (seed ${seed})`);
        return;
      }
      t.same(plain(decodeQueueEntry(bytes)), want, `entry ${i}: hand reader on the ${what} bytes`, { diagnostic: false });
      t.same(plain(decodeQueueEntrySlow(bytes)), want, `entry ${i}: protobufjs on the ${what} bytes`, { diagnostic: false });
    }
  }
  t.ok(exact > entries / 4, `${exact} entries compared byte for byte`);
});

t.test('values the layout leaves to protobufjs', async (t) => {
  const lone: EntryCommand[] = [{ cmd: { kind: 'consumerGone', nowMs: 1, consumer: consumerId('a\uD800b') } }];
  t.equal(layQueueEntry(lone), null, 'a lone surrogate: protobufjs writes it');
  t.same(Array.from(encodeQueueEntry(lone)), Array.from(encodeQueueEntrySlow(lone)), '... and encodeQueueEntry gives its bytes');
  for (const bad of [-1, 1.5, 2 ** 53, Number.NaN]) {
    const cmds: EntryCommand[] = [{ cmd: { kind: 'deadLettersForwarded', nowMs: 1, firstSeq: bad } }];
    t.equal(layQueueEntry(cmds), null, `uint64 ${bad}: protobufjs writes it`);
    t.same(Array.from(encodeQueueEntry(cmds)), Array.from(encodeQueueEntrySlow(cmds)), `uint64 ${bad}: protobufjs' bytes`);
  }
  const fetch: EntryCommand[] = [{ cmd: { kind: 'fetch', nowMs: 1, group: consumerGroup('g'), consumer: consumerId('c'), seq: 1, max: 2 ** 32 } }];
  t.equal(layQueueEntry(fetch), null, 'uint32 past 2^32 - 1: protobufjs writes it');
});

t.test('bytes the reader leaves to protobufjs, and mutated bytes: the same answer as protobufjs', async (t) => {
  const rng = new Xoshiro128(seed + 1);
  const unknownField = Buffer.concat([Buffer.from(encodeQueueEntrySlow([{ cmd: { kind: 'enforceRetention', nowMs: 5 } }])), Buffer.from([0x12, 0x01, 0x00])]);
  t.equal(readQueueEntry(unknownField), null, 'an unknown field of QueueEntry');
  t.same(plain(decodeQueueEntry(unknownField)), plain(decodeQueueEntrySlow(unknownField)), '... read by protobufjs');
  const bigSeq = encodeQueueEntrySlow([{ cmd: { kind: 'deadLettersForwarded', nowMs: 1, firstSeq: 2 ** 60 } }]);
  t.equal(readQueueEntry(bigSeq), null, 'a uint64 past 2^53 - 1');
  t.same(plain(decodeQueueEntry(bigSeq)), plain(decodeQueueEntrySlow(bigSeq)), '... read by protobufjs');
  let differ = 0;
  for (let i = 0; i < 1_000; i++) {
    const good = Buffer.from(encodeQueueEntrySlow(entry(rng).slice(0, 3)));
    const bad = Buffer.from(good);
    const edits = rng.int(1, 3);
    for (let k = 0; k < edits; k++) bad[rng.int(0, bad.length - 1)] = rng.int(0, 255);
    const cut = rng.int(0, 3) === 0 ? bad.subarray(0, rng.int(0, bad.length)) : bad;
    if (JSON.stringify(outcome(() => decodeQueueEntry(cut))) !== JSON.stringify(outcome(() => decodeQueueEntrySlow(cut)))) differ++;
  }
  t.equal(differ, 0, `mutated entries read alike by both readers (seed ${seed + 1})`);
});

t.test('publish requests read and replies written as protobufjs does', async (t) => {
  const rng = new Xoshiro128(seed + 2);
  const viaProtobufjs = (bytes: Uint8Array): unknown => {
    const r = schema.PublishRequest.decode(bytes);
    return plain({ topic: r.topic, partition: r.partition, producer: r.producer, firstSeq: wireNumber(r.firstSeq), messages: r.messages.map(fromWireMessage),
      fencing: r.fencing === null || r.fencing === undefined ? null : { lock: r.fencing.lock, token: wireNumber(r.fencing.token) } });
  };
  for (let i = 0; i < 300; i++) {
    const req = schema.PublishRequest.create({
      topic: pick(rng, ['', ...names]), partition: uint32(rng), producer: pick(rng, ['', ...names]), firstSeq: uint64(rng),
      messages: Array.from({ length: rng.int(0, 3) }, () => toWireMessage(message(rng, false))),
    });
    if (rng.int(0, 2) === 0) req.fencing = { lock: pick(rng, ['', ...names]), token: uint64(rng) };
    const bytes = schema.PublishRequest.encode(req).finish();
    t.not(readPublishRequest(bytes), null, `request ${i}: read by hand`, { diagnostic: false });
    t.same(plain(decodePublishRequest(bytes)), viaProtobufjs(bytes), `request ${i}: the fields protobufjs reads`, { diagnostic: false });
    const reply = { partition: uint32(rng), baseOffset: uint64(rng), count: uint32(rng), timestampMs: time(rng) };
    const hand = layPublishReply(reply.partition, reply.baseOffset, reply.count, reply.timestampMs);
    t.same(Array.from(hand ?? []), Array.from(schema.PublishReply.encode(reply).finish()), `reply ${i}: protobufjs' bytes`, { diagnostic: false });
  }
  t.same(Array.from(encodePublishReply(1, 2 ** 60, 3, 4)), Array.from(schema.PublishReply.encode({ partition: 1, baseOffset: 2 ** 60, count: 3, timestampMs: 4 }).finish()),
    'a base offset past 2^53: protobufjs writes it');
  let differ = 0;
  for (let i = 0; i < 1_000; i++) {
    const good = Buffer.from(schema.PublishRequest.encode({ topic: 't', partition: 1, producer: pick(rng, names), firstSeq: uint64(rng),
      messages: [toWireMessage(message(rng, false))] }).finish());
    const bad = Buffer.from(good);
    bad[rng.int(0, bad.length - 1)] = rng.int(0, 255);
    const cut = rng.int(0, 3) === 0 ? bad.subarray(0, rng.int(0, bad.length)) : bad;
    if (JSON.stringify(outcome(() => decodePublishRequest(cut))) !== JSON.stringify(outcome(() => viaProtobufjs(cut)))) differ++;
  }
  t.equal(differ, 0, `mutated requests read alike (seed ${seed + 2})`);
});
