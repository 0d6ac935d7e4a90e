// Checks one queue partition's rules one scenario at a time (core/queue/partition.ts):
// offsets and timestamps, producer dedup, message limits, fetch order and bounds,
// ack/nack/extend including late acks, deadline expiry, consumer loss, dead letters
// and redrive, replay, retention (never past an unacked message unless allowed),
// consumer request dedup, snapshots, and that the machine's state does not grow
// with message bodies. Each test drives a QueuePartition through the Driver.

import t from 'tap';
import {
  queueAppendBatchCountMax,
  queueConsumersPerGroupMax,
  queueFetchBytesMax,
  queueGroupsPerPartitionMax,
  queueMessageBytesMax,
  queueNackBackoffMsMax,
  queueNackBackoffMsMin,
  queueProducerBatchesRemembered,
  queueProducersPerPartitionMax,
  queueRedrivenRetainedMax,
  queueUnackedPerGroupMaxDefault,
} from '../../../core/constants.js';
import { consumerGroup, deliveryId, logIndex, offset, partitionId } from '../../../core/ids.js';
import type { DeadLettered, Delivery, QueueErrorCode, StoredMessage } from '../../../core/queue/commands.js';
import { deadLetterInfo, deadLetterMessage, redriveAppend } from '../../../core/queue/deadletter.js';
import { QueuePartition, checkPartitionConfig, nackBackoffMs } from '../../../core/queue/partition.js';
import { MemoryMessageStore } from '../../../core/queue/store.js';
import { ErrorCode, isErrorCode } from '../../../protocol/errors.js';
import { Driver, c, config, g, msg, offsets, text } from './driver.js';

const code = (r: { kind: string; code?: string }): string => (r.kind === 'error' ? String(r.code) : r.kind);

t.test('appends get contiguous offsets; timestamps never go back', (t) => {
  const d = new Driver();
  t.match(d.publish(msg('a'), msg('b')), { kind: 'appended', baseOffset: 0, count: 2, timestampMs: d.nowMs });
  const first = d.nowMs;
  d.nowMs -= 5_000; // a new leader whose clock is behind
  t.match(d.publish(msg('c')), { kind: 'appended', baseOffset: 2, count: 1, timestampMs: first });
  t.equal(d.store.read(offset(2)).timestampMs, first);
  t.equal(text(d.store.read(offset(1)).value), 'b');
  t.equal(d.q.logEndOffset, 3);
  t.end();
});

t.test('producer dedup: a retry answers the original offsets; older seqs are stale; gaps are fine', (t) => {
  const d = new Driver();
  const first = d.produce('p', 1, msg('a'), msg('b'));
  t.match(first, { duplicate: false, result: { baseOffset: 0, count: 2 } });
  d.publish(msg('other'));
  d.nowMs += 10;
  const retry = d.produce('p', 1, msg('a'), msg('b'));
  t.match(retry, { duplicate: true, result: { kind: 'appended', baseOffset: 0, count: 2 } });
  t.equal(retry.result.kind === 'appended' && retry.result.timestampMs, first.result.kind === 'appended' && first.result.timestampMs, 'the original timestamp too');
  t.equal(d.q.logEndOffset, 3, 'nothing appended by the retry');
  t.equal(code(d.produce('p', 2, msg('x')).result), 'STALE_REQUEST', 'seq 2 was inside batch 1..2');
  t.equal(code(d.produce('p', 1, msg('a')).result), 'BAD_REQUEST', 'same firstSeq, different batch');
  t.match(d.produce('p', 10, msg('c')).result, { baseOffset: 3 }, 'a gap is accepted');
  for (let s = 11; s < 11 + queueProducerBatchesRemembered; s++) d.produce('p', s, msg('m'));
  t.equal(code(d.produce('p', 10, msg('c')).result), 'STALE_REQUEST', `only the last ${queueProducerBatchesRemembered} batches answer as duplicates`);
  t.match(d.produce('q', 1, msg('a')), { duplicate: false }, 'producers are independent');
  t.equal(code(d.apply({ kind: 'append', firstSeq: 1, messages: [msg('a')] }).result), 'BAD_REQUEST', 'firstSeq without producer');
  t.end();
});

t.test('message limits: empty batch, oversized message, bad headers', (t) => {
  const d = new Driver();
  t.equal(code(d.publish()), 'BAD_REQUEST');
  const big = { key: new Uint8Array(10), value: new Uint8Array(queueMessageBytesMax), headers: [] };
  t.equal(code(d.publish(big)), 'MESSAGE_TOO_LARGE');
  t.equal(code(d.publish({ key: new Uint8Array(0), value: new Uint8Array(queueMessageBytesMax), headers: [] })), 'appended', 'exactly the limit fits');
  t.equal(code(d.publish({ ...msg('k'), headers: [{ name: '', value: new Uint8Array(1) }] })), 'BAD_REQUEST');
  t.equal(d.q.logEndOffset, 1, 'refused batches append nothing');
  t.end();
});

t.test('fetch: new offsets in order, bounded per consumer and by the group window', (t) => {
  const d = new Driver(config({ inflightPerConsumerMax: 3, unackedPerGroupMax: 5 }));
  for (let i = 0; i < 8; i++) d.publish(msg(`m${i}`));
  const a = d.fetch('G', 'c1', 10);
  t.same(offsets(a), [0, 1, 2], 'at most 3 in flight for c1');
  t.ok(a.every((x) => x.attempt === 1 && x.deadlineMs === d.nowMs + 10_000));
  t.same(d.fetch('G', 'c1', 10), [], 'c1 is full');
  t.same(offsets(d.fetch('G', 'c2', 10)), [3, 4], 'the group window (5) stops c2 at 2');
  d.ack('G', 'c1', a[1] as { delivery: ReturnType<typeof deliveryId>; attempt: number });
  t.same(offsets(d.fetch('G', 'c2', 10)), [], 'acking offset 1 leaves the cursor at 0: window still full');
  d.ack('G', 'c1', a[0] as { delivery: ReturnType<typeof deliveryId>; attempt: number });
  t.equal(d.cursor('G'), 2, 'cursor = lowest unacked');
  t.same(offsets(d.fetch('G', 'c2', 10)), [5], 'c2 holds 3 now');
  t.same(offsets(d.fetch('H', 'c1', 2, 5_000)), [0, 1], 'another group starts at the first retained offset');
  t.equal(d.q.listDeliveries(g('H'))[0]?.deadlineMs, d.nowMs + 5_000, "the consumer's own ack deadline");
  t.equal(code(d.send('G', 'c1', { kind: 'fetch', max: 0 }).result), 'BAD_REQUEST');
  t.equal(code(d.send('G', 'c1', { kind: 'fetch', max: 1, ackDeadlineMs: 5 }).result), 'BAD_REQUEST', 'deadline below the minimum');
  t.equal(code(d.send('', 'c1', { kind: 'fetch', max: 1 }).result), 'BAD_REQUEST', 'empty group name');
  t.end();
});

t.test('fetch: bounded by bytes as well as by count (the answer carries the bodies and must fit a frame)', (t) => {
  const d = new Driver(config({ ackDeadlineMs: 1_000, maxDeliveries: 10 }));
  const quarter = { key: new Uint8Array(0), value: new Uint8Array(queueFetchBytesMax / 4), headers: [] };
  for (let i = 0; i < 9; i++) d.publish(quarter);
  const first = d.fetch('G', 'c1', 16);
  t.same(offsets(first), [0, 1, 2, 3], 'four quarters of the budget, not the fifth');
  t.same(offsets(d.fetch('G', 'c1', 16)), [4, 5, 6, 7], 'the next fetch goes on');
  // Redeliveries count too: the four expired ones come back four per fetch, then the new one.
  d.nowMs += 1_000;
  d.expire();
  t.same(offsets(d.fetch('G', 'c2', 16)), [0, 1, 2, 3], 'redeliveries bounded by bytes, oldest first');
  t.same(offsets(d.fetch('G', 'c3', 16)), [4, 5, 6, 7]);
  t.same(offsets(d.fetch('G', 'c3', 16)), [8]);
  const e = new Driver();
  const maximal = { key: new Uint8Array(0), value: new Uint8Array(queueMessageBytesMax), headers: [] };
  for (let i = 0; i < 3; i++) e.publish(maximal);
  t.same(offsets(e.fetch('G', 'c1', 16)), [0, 1], 'maximal messages: as many as the budget holds');
  t.same(offsets(e.fetch('G', 'c1', 16)), [2]);
  t.end();
});

t.test('ack: settles the current attempt; late, unknown, foreign and never-issued attempts are refused', (t) => {
  const d = new Driver(config({ ackDeadlineMs: 1_000 }));
  d.publish(msg('a'), msg('b'));
  const [x, y] = d.fetch('G', 'c1', 2);
  if (x === undefined || y === undefined) throw new Error('two deliveries');
  d.nowMs += 1_000;
  t.match(d.expire().result, { kind: 'expired', count: 2 });
  // y's attempt 1 expired but was not handed out again: its ack is still taken.
  t.match(d.ack('G', 'c1', y), { kind: 'acked', statuses: ['OK'] });
  const again = d.fetch('G', 'c2', 5);
  t.same(again.map((r) => [r.offset, r.attempt, r.delivery]), [[0, 2, x.delivery]], 'redelivery keeps the delivery id, attempt 2');
  t.match(d.ack('G', 'c1', x), { statuses: ['LATE_ACK'] }, 'attempt 1 after attempt 2 went out');
  t.match(d.ack('G', 'c1', { delivery: x.delivery, attempt: 3 }), { statuses: ['BAD_REQUEST'] });
  t.match(d.ack('H', 'c1', again[0] as typeof x), { statuses: ['NOT_FOUND'] }, 'another group (that does not exist)');
  d.fetch('H', 'c1', 1);
  t.match(d.ack('H', 'c1', again[0] as typeof x), { statuses: ['NOT_FOUND'] }, "another group's delivery");
  t.match(d.ack('G', 'c3', again[0] as typeof x, again[0] as typeof x), { statuses: ['OK', 'NOT_FOUND'] }, 'any consumer of the group; a second ack finds nothing');
  t.equal(d.cursor('G'), 2);
  t.match(d.ack('G', 'c1', { delivery: deliveryId(999), attempt: 1 }), { statuses: ['NOT_FOUND'] });
  t.equal(code(d.send('G', 'c1', { kind: 'ack', items: [] }).result), 'BAD_REQUEST');
  t.end();
});

t.test('nack: redelivered after the delay, or after a doubling backoff', (t) => {
  const d = new Driver(config({ maxDeliveries: 10 }));
  d.publish(msg('a'));
  let [x] = d.fetch('G', 'c1');
  t.match(d.nack('G', 'c1', x as NonNullable<typeof x>, 500).result, { kind: 'nacked', redeliverAtMs: d.nowMs + 500, deadLettered: false });
  t.same(d.fetch('G', 'c1'), [], 'not before the delay');
  d.nowMs += 500;
  [x] = d.fetch('G', 'c1');
  t.match(x, { offset: 0, attempt: 2 });
  t.match(d.nack('G', 'c1', x as NonNullable<typeof x>).result, { redeliverAtMs: d.nowMs + nackBackoffMs(2) });
  t.equal(nackBackoffMs(1), queueNackBackoffMsMin);
  t.equal(nackBackoffMs(2), 2 * queueNackBackoffMsMin);
  t.equal(nackBackoffMs(40), queueNackBackoffMsMax, 'capped');
  t.equal(code(d.nack('G', 'c1', x as NonNullable<typeof x>, -1).result), 'BAD_REQUEST');
  t.end();
});

t.test('a nack of an expired attempt that awaits redelivery moves its ready time later', (t) => {
  const d = new Driver(config({ ackDeadlineMs: 1_000 }));
  d.publish(msg('a'));
  const [x] = d.fetch('G', 'c1');
  if (x === undefined) throw new Error('one delivery');
  d.nowMs += 1_000;
  d.expire(); // pending, ready now
  t.match(d.nack('G', 'c1', x, 5_000).result, { kind: 'nacked', redeliverAtMs: d.nowMs + 5_000, deadLettered: false });
  t.equal(d.q.nextRedeliveryMs(g('G')), d.nowMs + 5_000);
  d.nowMs += 1_000;
  t.same(d.fetch('G', 'c2'), [], 'the earlier ready time no longer counts');
  d.nowMs += 4_000;
  t.match(d.fetch('G', 'c2'), [{ offset: 0, attempt: 2 }]);
  t.end();
});

t.test('extend: a new deadline while in flight; LATE_ACK once the deadline expired', (t) => {
  const d = new Driver(config({ ackDeadlineMs: 2_000 }));
  d.publish(msg('a'));
  const [x] = d.fetch('G', 'c1');
  if (x === undefined) throw new Error('one delivery');
  d.nowMs += 1_500;
  t.match(d.extend('G', 'c1', x), { kind: 'extended', deadlineMs: d.nowMs + 2_000 });
  d.nowMs += 1_000;
  t.match(d.expire().result, { count: 0 }, 'the old deadline passed, the extended one not');
  t.equal(d.q.nextDeadlineMs(), d.nowMs + 1_000);
  d.nowMs += 1_000;
  t.match(d.expire().result, { count: 1 });
  t.equal(code(d.extend('G', 'c1', x)), 'LATE_ACK');
  t.equal(d.q.nextDeadlineMs(), Infinity);
  t.end();
});

t.test('a gone consumer: its deliveries come back at once, in every group; others keep theirs', (t) => {
  const d = new Driver();
  d.publish(msg('a'), msg('b'), msg('c'));
  const mine = d.fetch('G', 'c1', 2);
  const theirs = d.fetch('G', 'c2', 1);
  d.fetch('H', 'c1', 1);
  t.match(d.gone('c1').result, { kind: 'consumerGone', count: 3 });
  t.equal(d.q.groupInfo(g('G'))?.consumers, 1, 'c1 forgotten');
  t.same(offsets(d.fetch('G', 'c3', 5)), [0, 1], 'redelivered without waiting for deadlines');
  t.match(d.ack('G', 'c1', mine[0] as NonNullable<(typeof mine)[0]>), { statuses: ['LATE_ACK'] });
  t.match(d.ack('G', 'c2', theirs[0] as NonNullable<(typeof theirs)[0]>), { statuses: ['OK'] });
  t.match(d.gone('nobody').result, { count: 0 });
  t.end();
});

t.test('after maxDeliveries a failure dead-letters the message with the reason; the cursor moves past', (t) => {
  const d = new Driver(config({ maxDeliveries: 2, ackDeadlineMs: 1_000 }));
  d.publish(msg('k', 'poison', { trace: 't1' }), msg('ok'));
  let [x] = d.fetch('G', 'c1', 1);
  d.nowMs += 1_000;
  t.same(d.expire().events, [], 'attempt 1 of 2 failed: redelivery');
  [x] = d.fetch('G', 'c1', 1);
  t.match(x, { offset: 0, attempt: 2 });
  const out = d.nack('G', 'c1', x as NonNullable<typeof x>, 0);
  t.match(out.result, { kind: 'nacked', deadLettered: true, redeliverAtMs: -1 });
  t.equal(out.events.length, 1);
  const ev = out.events[0] as DeadLettered;
  t.match(ev, { kind: 'deadLettered', group: 'G', deliveries: 2, reason: 'nacked', offset: 0, seq: 1 });
  t.same(d.q.deadLetterHead(), { firstSeq: 1, letters: [{ seq: 1, group: 'G', offset: 0, deliveries: 2, reason: 'nacked' }] }, 'the dead letter waits in the outbox');
  t.equal(text(d.q.readMessage(ev.offset).value), 'poison', 'the outbox keeps the message body for the dead-letter topic');
  t.equal(d.cursor('G'), 1);
  t.same(offsets(d.fetch('G', 'c1')), [1]);
  // maxDeliveries 0: never dead-lettered.
  const e = new Driver(config({ maxDeliveries: 0, ackDeadlineMs: 1_000 }));
  e.publish(msg('a'));
  for (let i = 1; i <= 20; i++) {
    t.equal(e.fetch('G', 'c1')[0]?.attempt, i);
    e.nowMs += 1_000;
    e.expire();
  }
  t.ok(e.log.every((o) => o.events.length === 0), 'no dead letters with maxDeliveries 0');
  t.end();
});

t.test('dead letters go to the dead-letter partition and are redriven to the group that gave up, once', (t) => {
  const d = new Driver(config({ maxDeliveries: 1, ackDeadlineMs: 1_000 }));
  d.publish(msg('k1', 'v1', { h: 'x' }), msg('k2', 'v2'));
  d.fetch('G', 'c1', 2);
  d.fetch('H', 'c2', 2);
  d.ack('H', 'c2', ...d.q.listDeliveries(g('H')).map((x) => ({ delivery: x.delivery, attempt: x.attempt })));
  d.nowMs += 1_000;
  const events = d.expire().events as DeadLettered[];
  t.same(events.map((e) => [e.group, e.offset, e.reason, e.seq]), [['G', 0, 'deadline', 1], ['G', 1, 'deadline', 2]]);
  // The wiring appends the outbox's head batch to the dead-letter partition 3 (same index as the source).
  const head = d.q.deadLetterHead();
  t.same(head?.letters.map((l) => l.seq), [1, 2], 'one command\'s dead letters are one batch');
  const dlq = new Driver();
  dlq.publish(...(head?.letters ?? []).map((l) => deadLetterMessage(l, d.q.readMessage(l.offset), partitionId(3))));
  const dead = [dlq.store.read(offset(0)), dlq.store.read(offset(1))] as StoredMessage[];
  t.match(deadLetterInfo(dead[0] as StoredMessage), { group: 'G', partition: 3, offset: 0, deliveries: 1, reason: 'deadline' });
  t.equal(deadLetterInfo(msg('plain')), null);
  // A group name that begins with U+FEFF reads back whole (a decoder that drops it would name another group).
  const bomGroup = deadLetterMessage({ ...(head?.letters[0] as (typeof head & {})['letters'][number]), group: consumerGroup('\uFEFFG') }, d.q.readMessage(offset(0)), partitionId(3));
  t.equal(deadLetterInfo(bomGroup)?.group, '\uFEFFG');
  const redrive = redriveAppend('orders', partitionId(3), dead, d.nowMs);
  t.match(d.apply(redrive), { duplicate: false, result: { baseOffset: 2, count: 2 } });
  t.match(d.apply(redrive), { duplicate: true, result: { baseOffset: 2 } }, 'a repeated redrive is applied once');
  const back = d.store.read(offset(2));
  t.same(back.headers.map((h) => h.name), ['h'], 'dlq headers removed, own headers kept');
  t.equal(text(back.value), 'v1');
  t.same(offsets(d.fetch('H', 'c2', 5)), [], 'other groups skip redriven messages');
  t.equal(d.cursor('H'), 4);
  t.same(offsets(d.fetch('G', 'c1', 5)), [2, 3], 'the group that gave up gets them again');
  t.end();
});

t.test('replay from an offset or a timestamp; outstanding deliveries are forgotten', (t) => {
  const d = new Driver();
  for (let i = 0; i < 5; i++) {
    d.publish(msg(`m${i}`));
    d.nowMs += 1_000;
  }
  const before = d.fetch('G', 'c1', 5);
  d.ack('G', 'c1', ...before);
  t.equal(d.cursor('G'), 5);
  t.match(d.apply({ kind: 'replay', group: g('G'), from: { offset: offset(2) } }).result, { kind: 'replayed', offset: 2 });
  const again = d.fetch('G', 'c1', 2);
  t.same(offsets(again), [2, 3]);
  t.match(d.apply({ kind: 'replay', group: g('G'), from: { timestampMs: 1_000_000 + 3_500 } }).result, { offset: 4 }, 'first message at or after the time');
  t.match(d.ack('G', 'c1', again[0] as NonNullable<(typeof again)[0]>), { statuses: ['NOT_FOUND'] }, 'a replay forgets deliveries');
  t.equal(d.q.groupInfo(g('G'))?.inFlight, 0);
  t.match(d.apply({ kind: 'replay', group: g('G'), from: { offset: offset(99) } }).result, { offset: 5 }, 'clamped to the end');
  t.match(d.apply({ kind: 'replay', group: g('N'), from: { timestampMs: 0 } }).result, { offset: 0 }, 'a new group from the start');
  t.match(d.apply({ kind: 'replay', group: g('N'), from: { timestampMs: 9e15 } }).result, { offset: 5 });
  t.equal(code(d.apply({ kind: 'replay', group: g('N'), from: { offset: offset(-1) } }).result), 'BAD_REQUEST');
  t.match(d.apply({ kind: 'deleteGroup', group: g('N') }).result, { kind: 'ok' });
  t.equal(code(d.apply({ kind: 'deleteGroup', group: g('N') }).result), 'NOT_FOUND');
  t.end();
});

t.test('retention by size and age never drops what a group has not acked, unless the topic says so', (t) => {
  const d = new Driver(config({ retention: { maxAgeMs: 0, maxBytes: 10, dropUnacked: false } }));
  d.fetch('G', 'c1', 1); // the group exists from offset 0
  for (let i = 0; i < 5; i++) d.publish(msg('k', 'vvvv')); // 5 bytes each
  t.equal(d.q.logStartOffset, 0, 'the group holds everything back');
  t.equal(d.q.retainedBytes, 25, 'over the size limit, kept');
  const got = d.fetch('G', 'c1', 3);
  d.ack('G', 'c1', got[1] as NonNullable<(typeof got)[0]>, got[2] as NonNullable<(typeof got)[0]>);
  d.apply({ kind: 'enforceRetention' });
  t.equal(d.q.logStartOffset, 0, 'offset 0 is unacked: nothing dropped, though 1 and 2 are acked');
  d.ack('G', 'c1', got[0] as NonNullable<(typeof got)[0]>);
  t.match(d.apply({ kind: 'enforceRetention' }).result, { kind: 'retained', logStart: 3, dropped: 3 });
  t.equal(d.q.retainedBytes, 10);

  const age = new Driver(config({ retention: { maxAgeMs: 60_000, maxBytes: 0, dropUnacked: false } }));
  age.publish(msg('old'));
  age.nowMs += 30_000;
  age.publish(msg('new'));
  age.nowMs += 30_000;
  t.match(age.apply({ kind: 'enforceRetention' }).result, { logStart: 1, dropped: 1 }, 'no groups: the old one goes at 60 s');

  const drop = new Driver(config({ ackDeadlineMs: 1_000, retention: { maxAgeMs: 0, maxBytes: 10, dropUnacked: true } }));
  drop.publish(msg('k', 'vvvv'), msg('k', 'vvvv'));
  const held = drop.fetch('G', 'c1', 2);
  drop.publish(msg('k', 'vvvv'));
  t.equal(drop.q.logStartOffset, 1, 'dropUnacked: the oldest goes though unacked');
  t.equal(drop.cursor('G'), 1);
  t.match(drop.ack('G', 'c1', held[0] as NonNullable<(typeof held)[0]>), { statuses: ['NOT_FOUND'] }, 'its delivery is forgotten');
  t.match(drop.ack('G', 'c1', held[1] as NonNullable<(typeof held)[0]>), { statuses: ['OK'] });
  t.end();
});

t.test('consumer requests are deduplicated by seq: a retry answers the cached result', (t) => {
  const d = new Driver();
  d.publish(msg('a'), msg('b'));
  const first = d.apply({ kind: 'fetch', group: g('G'), consumer: c('c1'), seq: 7, max: 1 });
  const retry = d.apply({ kind: 'fetch', group: g('G'), consumer: c('c1'), seq: 7, max: 1 });
  t.same(retry.result, first.result);
  t.equal(retry.duplicate, true);
  t.equal(d.q.groupInfo(g('G'))?.inFlight, 1, 'the retry handed out nothing more');
  t.equal(code(d.apply({ kind: 'fetch', group: g('G'), consumer: c('c1'), seq: 6, max: 1 }).result), 'STALE_REQUEST');
  t.equal(code(d.apply({ kind: 'fetch', group: g('G'), consumer: c('c1'), seq: 0, max: 1 }).result), 'BAD_REQUEST');
  t.end();
});

t.test('bounds: consumers per group, groups, producers, redriven messages', (t) => {
  const d = new Driver(config({ unackedPerGroupMax: queueUnackedPerGroupMaxDefault }));
  const batch = Array.from({ length: queueAppendBatchCountMax }, () => msg('m'));
  for (let i = 0; i * queueAppendBatchCountMax <= queueConsumersPerGroupMax; i++) d.publish(...batch);
  d.fetch('G', 'idle', 1);
  d.ack('G', 'idle', ...d.q.listDeliveries(g('G')));
  for (let i = 1; i < queueConsumersPerGroupMax; i++) d.fetch('G', `busy${i}`, 1);
  t.equal(d.q.groupInfo(g('G'))?.consumers, queueConsumersPerGroupMax);
  t.equal(d.fetch('G', 'new1', 1).length, 1, 'a new consumer replaces the least recently active idle one');
  t.equal(d.q.groupInfo(g('G'))?.consumers, queueConsumersPerGroupMax);
  t.equal(code(d.send('G', 'idle', { kind: 'fetch', max: 1 }).result), 'TOO_MANY_REQUESTS', 'every remembered consumer holds deliveries');

  for (let i = 0; i < queueGroupsPerPartitionMax - 1; i++) d.apply({ kind: 'replay', group: g(`g${i}`), from: { offset: offset(0) } });
  t.equal(code(d.send('one-too-many', 'c', { kind: 'fetch', max: 1 }).result), 'TOO_MANY_REQUESTS');
  t.equal(code(d.apply({ kind: 'replay', group: g('one-too-many'), from: { offset: offset(0) } }).result), 'TOO_MANY_REQUESTS');

  const p = new Driver();
  p.produce('first', 1, msg('a'));
  for (let i = 0; i < queueProducersPerPartitionMax; i++) p.produce(`p${i}`, 1, msg('x'));
  t.match(p.produce('first', 1, msg('a')), { duplicate: false }, 'a forgotten producer\'s retry is appended again (at-least-once)');
  t.match(p.produce(`p${queueProducersPerPartitionMax - 1}`, 1, msg('x')), { duplicate: true }, 'recent producers are remembered');

  // An append makes its producer the most recent: the one forgotten next is the least recently
  // appending, not the first to arrive; the order survives a snapshot.
  const lru = new Driver();
  lru.produce('active', 1, msg('a'));
  for (let i = 0; i < queueProducersPerPartitionMax - 1; i++) lru.produce(`q${i}`, 1, msg('x'));
  lru.produce('active', 2, msg('b'));
  lru.store = MemoryMessageStore.fromSnapshot(lru.store.toSnapshot());
  lru.q = QueuePartition.fromSnapshot(JSON.parse(JSON.stringify(lru.q.toSnapshot())) as ReturnType<QueuePartition['toSnapshot']>, lru.store);
  t.equal(lru.q.toSnapshot().producers[queueProducersPerPartitionMax - 1]?.producer, 'active', 'the producer that appended last is the most recent');
  lru.produce('newcomer', 1, msg('n'));
  t.match(lru.produce('active', 2, msg('b')), { duplicate: true }, 'an active producer is remembered past newer arrivals');
  t.match(lru.produce('q0', 1, msg('x')), { duplicate: false }, 'the least recently appending producer was forgotten');

  const r = new Driver();
  const redriven = Array.from({ length: queueAppendBatchCountMax }, () => ({ ...msg('r'), onlyGroup: g('G') }));
  const fills = Array.from({ length: queueRedrivenRetainedMax / queueAppendBatchCountMax }, () => code(r.publish(...redriven)));
  t.ok(fills.every((k) => k === 'appended'), `${queueRedrivenRetainedMax} redriven messages fit`);
  t.equal(code(r.publish({ ...msg('r'), onlyGroup: g('G') })), 'TOO_MANY_REQUESTS', 'redriven messages bounded');
  t.equal(code(r.publish(msg('plain'))), 'appended', 'ordinary messages still go in');
  t.end();
});

t.test('snapshot and restore mid-flight: the restored partition continues identically', (t) => {
  const run = (restoreAt: number): string[] => {
    const d = new Driver(config({ maxDeliveries: 3, ackDeadlineMs: 1_000 }));
    const trace: string[] = [];
    const steps: (() => void)[] = [
      () => d.produce('p', 1, msg('a'), msg('b'), msg('c')),
      () => d.fetch('G', 'c1', 2),
      () => d.fetch('H', 'c2', 3),
      () => { d.nowMs += 1_000; d.expire(); },
      () => d.fetch('G', 'c2', 3),
      () => d.nack('G', 'c2', { delivery: deliveryId(1), attempt: 2 }, 100),
      () => d.gone('c2'),
      () => d.produce('p', 1, msg('a'), msg('b'), msg('c')),
      () => { d.nowMs += 1_000; d.fetch('G', 'c3', 5); },
    ];
    steps.forEach((step, i) => {
      if (i === restoreAt) {
        const snap = JSON.parse(JSON.stringify(d.q.toSnapshot()));
        d.store = MemoryMessageStore.fromSnapshot(d.store.toSnapshot());
        d.q = QueuePartition.fromSnapshot(snap, d.store);
        t.equal(JSON.stringify(d.q.toSnapshot()), JSON.stringify(snap), `round trip at step ${i}`);
      }
      step();
      trace.push(JSON.stringify(d.log.at(-1)?.result));
    });
    trace.push(JSON.stringify(d.q.toSnapshot()));
    return trace;
  };
  const straight = run(-1);
  for (let i = 0; i < 9; i++) t.same(run(i), straight, `restored before step ${i}: same answers and state`);
  t.end();
});

t.test("the machine's state does not grow with message bodies", (t) => {
  const sizes = [1, 100_000].map((n) => {
    const d = new Driver();
    for (let i = 0; i < 3; i++) d.publish({ key: new Uint8Array(8), value: new Uint8Array(n), headers: [] });
    d.fetch('G', 'c1', 2);
    return JSON.stringify(d.q.toSnapshot()).length;
  });
  t.equal(sizes[0], sizes[1], 'bodies live in the store only');
  t.end();
});

t.test('config checks, read API and error codes', (t) => {
  t.equal(checkPartitionConfig(config()), null);
  t.match(checkPartitionConfig(config({ ackDeadlineMs: 1 })), /ackDeadlineMs/);
  t.match(checkPartitionConfig(config({ inflightPerConsumerMax: 10, unackedPerGroupMax: 5 })), /unackedPerGroupMax/);
  t.throws(() => new QueuePartition(config({ maxDeliveries: -1 }), new MemoryMessageStore()), /maxDeliveries/);
  const d = new Driver();
  d.publish(msg('a'), msg('b'));
  d.fetch('G', 'c1', 1);
  t.match(d.q.groupInfo(g('G')), { cursor: 0, next: 1, lag: 2, inFlight: 1, pending: 0, consumers: 1 });
  t.same(d.q.listGroups(), ['G']);
  t.equal(d.q.appliedIndex, logIndex(d.index));
  t.throws(() => d.q.apply({ kind: 'enforceRetention', nowMs: 1 }, logIndex(1)), /index must increase/);
  const codes: QueueErrorCode[] = ['BAD_REQUEST', 'NOT_FOUND', 'LATE_ACK', 'STALE_REQUEST', 'TOO_MANY_REQUESTS', 'MESSAGE_TOO_LARGE'];
  for (const k of codes) t.ok(isErrorCode(k), `${k} is a wire error code`);
  t.equal(ErrorCode.LATE_ACK, 'LATE_ACK');
  t.end();
});

t.test('dead-letter outbox: held until the dead-letter partition confirmed, in order, bounded without dropping', (t) => {
  const d = new Driver(config({ maxDeliveries: 1, ackDeadlineMs: 1_000 }), { deadLetterOutboxMax: 2 });
  d.publish(msg('a'), msg('b'), msg('c'));
  t.equal(d.fetch('G', 'c1', 1).length, 1);
  d.nowMs += 1_000;
  d.expire();
  t.equal(d.fetch('G', 'c1', 2).length, 2);
  d.nowMs += 1_000;
  t.same(d.expire().events.map((e) => e.seq), [2], 'the outbox holds 2: offset 1 dead-letters, offset 2 waits');
  t.same([d.q.deadLettersPending, d.cursor('G')], [2, 2], 'dead letters are done for the group; the held one is not');
  // The held message is redelivered past maxDeliveries rather than dropped.
  const [again] = d.fetch('G', 'c1', 1);
  t.match(again, { offset: 2, attempt: 2 });
  t.equal(code(d.apply({ kind: 'deadLettersForwarded', firstSeq: 0 }).result), 'BAD_REQUEST');
  t.same(d.apply({ kind: 'deadLettersForwarded', firstSeq: 1 }).result, { kind: 'forwarded', count: 1 }, 'the head batch leaves');
  t.same(d.apply({ kind: 'deadLettersForwarded', firstSeq: 1 }).result, { kind: 'forwarded', count: 0 }, 'a repeated confirmation finds nothing');
  t.equal(d.q.deadLetterHead()?.firstSeq, 2);
  d.nowMs += 1_000;
  t.same(d.expire().events.map((e) => [e.offset, e.seq, e.deliveries]), [[2, 3, 2]], 'with room again, its next failure dead-letters it');
  t.same(d.apply({ kind: 'deadLettersForwarded', firstSeq: 3 }).result, { kind: 'forwarded', count: 2 }, 'confirming a later batch confirms the earlier ones');
  t.equal(d.q.deadLetterHead(), null);
  t.end();
});

t.test('dead-letter outbox: pins retention even with dropUnacked, travels in snapshots, restores from old ones', (t) => {
  const d = new Driver(config({ maxDeliveries: 1, ackDeadlineMs: 1_000, retention: { maxAgeMs: 5_000, maxBytes: 0, dropUnacked: true } }));
  d.publish(msg('poison'), msg('x'));
  d.fetch('G', 'c1', 1);
  d.nowMs += 1_000;
  t.equal(d.expire().events.length, 1);
  d.nowMs += 10_000;
  t.match(d.apply({ kind: 'enforceRetention' }).result, { kind: 'retained', logStart: 0, dropped: 0 }, 'the outbox letter at offset 0 holds retention');
  const snap = d.q.toSnapshot();
  t.same(snap.outbox, [{ firstSeq: 1, letters: [{ seq: 1, group: 'G', offset: 0, deliveries: 1, reason: 'deadline' }] }]);
  const restored = QueuePartition.fromSnapshot(JSON.parse(JSON.stringify(snap)) as typeof snap, d.store);
  t.equal(text(restored.readMessage(offset(0)).value), 'poison', 'a new leader restored from the snapshot can still forward it');
  t.equal(restored.deadLetterHead()?.firstSeq, 1);
  const old = JSON.parse(JSON.stringify(snap)) as Record<string, unknown>;
  delete old['outbox'];
  delete old['nextDeadLetterSeq'];
  t.equal(QueuePartition.fromSnapshot(old as unknown as typeof snap, d.store).deadLetterHead(), null, 'a snapshot from before the outbox restores with an empty one');
  d.apply({ kind: 'deadLettersForwarded', firstSeq: 1 });
  t.match(d.apply({ kind: 'enforceRetention' }).result, { kind: 'retained', logStart: 2, dropped: 2 }, 'once forwarded, retention drops it');
  t.end();
});

// The canaries (QueuePartitionOptions.canary, set only by tests and DSYNC_CANARY) break
// exactly the promise they are named for: the simulator's and the fault runner's
// checkers are proven against them (test/sim/queues-canary.test.ts, test/chaos).
t.test('canary forget-failed-attempts: a failed attempt finishes the message instead of redelivering it', (t) => {
  const d = new Driver(config(), { canary: 'forget-failed-attempts' });
  d.publish(msg('a'), msg('b'));
  const [first] = d.fetch('g', 'c1', 1, 1_000);
  t.equal(first?.offset, 0);
  d.nowMs += 2_000;
  t.match(d.expire().result, { kind: 'expired', count: 1 });
  t.equal(d.q.groupInfo(g('g'))?.cursor, 1, 'the expired offset counts as done');
  t.same(offsets(d.fetch('g', 'c1')), [1], 'offset 0 never comes back');
  t.end();
});

t.test('canary cursor-before-ack: handing a message out finishes it; its ack is NOT_FOUND and it never comes back', (t) => {
  const d = new Driver(config(), { canary: 'cursor-before-ack' });
  d.publish(msg('a'), msg('b'), msg('c'));
  const got = d.fetch('g', 'c1', 2, 1_000);
  t.same(offsets(got), [0, 1]);
  t.match(d.q.groupInfo(g('g')), { cursor: 2, inFlight: 0 }, 'the cursor moved at delivery');
  t.match(d.ack('g', 'c1', got[0] as Delivery), { kind: 'acked', statuses: ['NOT_FOUND'] });
  d.nowMs += 2_000;
  t.match(d.expire().result, { kind: 'expired', count: 0 }, 'nothing is in flight to expire');
  t.same(offsets(d.fetch('g', 'c1')), [2], 'the unacked offset 1 is not redelivered');
  const right = new Driver(config());
  right.publish(msg('a'), msg('b'));
  right.fetch('g', 'c1', 2, 1_000);
  t.match(right.q.groupInfo(g('g')), { cursor: 0, inFlight: 2 }, 'without the canary the cursor waits for the acks');
  t.end();
});
