// Property test: random operation sequences (appends with producer retries and stale
// seqs, fetches by several consumers of two groups, acks/nacks/extends of current,
// old and foreign attempts, clock moves, deadline expiry, consumers going away,
// replays by offset and time, group deletion, retention by size and age with and
// without dropUnacked, redrive of dead letters, retried consumer requests) applied to
// the QueuePartition and to the naive model in model.ts, under random topic configs.
// After every step the results, the events and the state must agree, and a snapshot
// round trip (machine + store) must reproduce the partition, which then carries on.
// Checked directly as well, independent of the model: dedup (a retried append
// answers the same offsets and appends nothing), order (a group's first deliveries
// come in offset order between replays), nothing delivered that was not appended,
// every failure before maxDeliveries redelivered, late acks refused, dead letters
// only at maxDeliveries, redriven messages only to their group, and retention never
// past a group's cursor unless dropUnacked.
// fast-check prints the seed on failure; replay with SEED=<n> (and PATH_REPLAY=<path>).

import assert from 'node:assert/strict';
import fc from 'fast-check';
import t from 'tap';
import { queueFetchBytesMax } from '../../../core/constants.js';
import { consumerGroup, consumerId, logIndex, offset, partitionId, producerId } from '../../../core/ids.js';
import type { ConsumerGroup, DeliveryId } from '../../../core/ids.js';
import type { Append, DeadLettered, QueueCommand, QueueOutcome, StoredMessage } from '../../../core/queue/commands.js';
import { deadLetterMessage, redriveAppend } from '../../../core/queue/deadletter.js';
import { QueuePartition } from '../../../core/queue/partition.js';
import type { PartitionConfig, QueuePartitionSnapshot } from '../../../core/queue/partition.js';
import { MemoryMessageStore } from '../../../core/queue/store.js';
import { QueueModel } from './model.js';
import type { Plain } from './model.js';

/** A message this big now and then: two fill most of a fetch's byte budget, a third does not fit. */
const bigMessageBytes = Math.floor((queueFetchBytesMax * 2) / 5);

type Op =
  | { op: 'append'; producer: number; n: number; key: number; len: number; retry: 'no' | 'same' | 'stale' }
  | { op: 'fetch'; group: number; consumer: number; max: number; deadline: number }
  | { op: 'ack'; pick: number; n: number; otherGroup: boolean }
  | { op: 'nack'; pick: number; delay: number }
  | { op: 'extend'; pick: number }
  | { op: 'time'; ms: number }
  | { op: 'expire' }
  | { op: 'gone'; consumer: number }
  | { op: 'replay'; group: number; byTime: boolean; at: number }
  | { op: 'retain' }
  | { op: 'redrive'; start: number; len: number }
  | { op: 'retryConsumer'; older: boolean }
  | { op: 'deleteGroup'; group: number }
  | { op: 'forward'; head: boolean; seq: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant('append' as const), producer: fc.nat(2), n: fc.integer({ min: 1, max: 3 }), key: fc.nat(3), len: fc.oneof({ weight: 19, arbitrary: fc.nat(6) }, { weight: 1, arbitrary: fc.constant(bigMessageBytes) }), retry: fc.constantFrom('no', 'no', 'no', 'same', 'stale') as fc.Arbitrary<'no' | 'same' | 'stale'> }) },
  { weight: 8, arbitrary: fc.record({ op: fc.constant('fetch' as const), group: fc.nat(1), consumer: fc.nat(2), max: fc.integer({ min: 1, max: 4 }), deadline: fc.constantFrom(0, 0, 1_000, 3_000) }) },
  { weight: 6, arbitrary: fc.record({ op: fc.constant('ack' as const), pick: fc.nat(), n: fc.integer({ min: 1, max: 2 }), otherGroup: fc.constantFrom(false, false, false, true) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('nack' as const), pick: fc.nat(), delay: fc.constantFrom(-1, 0, 500, 2_000) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('extend' as const), pick: fc.nat() }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('time' as const), ms: fc.constantFrom(0, 200, 1_000, 3_000, 60_000) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('expire' as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('gone' as const), consumer: fc.nat(2) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('replay' as const), group: fc.nat(1), byTime: fc.boolean(), at: fc.nat(12) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('retain' as const) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('redrive' as const), start: fc.nat(), len: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('retryConsumer' as const), older: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('deleteGroup' as const), group: fc.nat(1) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('forward' as const), head: fc.constantFrom(true, true, false), seq: fc.integer({ min: 1, max: 12 }) }) },
);

const configArb: fc.Arbitrary<PartitionConfig> = fc
  .record({
    maxDeliveries: fc.constantFrom(0, 2, 3),
    ackDeadlineMs: fc.constantFrom(1_000, 2_000),
    inflightPerConsumerMax: fc.integer({ min: 1, max: 4 }),
    extraWindow: fc.nat(3),
    maxAgeMs: fc.constantFrom(0, 0, 5_000),
    maxBytes: fc.constantFrom(0, 0, 20),
    dropUnacked: fc.boolean(),
  })
  .map((r) => ({
    maxDeliveries: r.maxDeliveries,
    ackDeadlineMs: r.ackDeadlineMs,
    inflightPerConsumerMax: r.inflightPerConsumerMax,
    unackedPerGroupMax: r.inflightPerConsumerMax + r.extraWindow,
    retention: { maxAgeMs: r.maxAgeMs, maxBytes: r.maxBytes, dropUnacked: r.dropUnacked },
  }));

const groups = [consumerGroup('A'), consumerGroup('B')];
const consumers = ['c0', 'c1', 'c2'].map(consumerId);

/** Results and events without messages meant for people; bodies reduced to their offset. */
function plainResult(r: unknown): Plain {
  const o = JSON.parse(JSON.stringify(r)) as Plain;
  delete o['message'];
  return o;
}
function plainEvents(out: QueueOutcome): Plain[] {
  return out.events.map((ev) => ({ kind: ev.kind, group: ev.group, delivery: ev.delivery, deliveries: ev.deliveries, reason: ev.reason, offset: ev.offset, seq: ev.seq }));
}
function partitionView(snap: QueuePartitionSnapshot): Plain {
  return JSON.parse(JSON.stringify({
    logStart: snap.logStart,
    logEnd: snap.logEnd,
    outbox: snap.outbox,
    groups: snap.groups.map((g) => ({
      group: g.group,
      cursor: g.cursor,
      next: g.next,
      consumers: g.consumers.map((c) => `${c.consumer}:${c.lastSeq}`),
      deliveries: g.deliveries.map((d) => ({ ...d })),
    })),
  })) as Plain;
}
function modelView(m: QueueModel): Plain {
  const v = m.view() as { logStart: number; logEnd: number; groups: Plain[] };
  return JSON.parse(JSON.stringify({
    ...v,
    groups: v.groups.map((g) => ({
      ...g,
      deliveries: (g['deliveries'] as Plain[]).map((d) => ({
        delivery: d['delivery'], group: d['group'], offset: d['offset'], attempt: d['attempt'], inFlight: d['inFlight'],
        consumer: d['consumer'], deadlineMs: d['deadlineMs'], ackDeadlineMs: d['ackDeadlineMs'], readyAtMs: d['readyAtMs'],
      })),
    })),
  })) as Plain;
}

let steps = 0;
const seen = new Map<string, number>();
const count = (k: string): void => {
  seen.set(k, (seen.get(k) ?? 0) + 1);
};

function runOps(config: PartitionConfig, outboxMax: number, ops: readonly Op[]): void {
  let store = new MemoryMessageStore();
  let q = new QueuePartition(config, store, { deadLetterOutboxMax: outboxMax });
  const model = new QueueModel(config, outboxMax);
  let index = 0;
  let nowMs = 1_000_000;
  const seqs = new Map<string, number>();
  const lastBatch = new Map<number, Append>();
  const handed: { group: ConsumerGroup; delivery: DeliveryId; attempt: number }[] = [];
  let lastConsumerCmd: QueueCommand | undefined;
  let olderConsumerCmd: QueueCommand | undefined;
  const dlq: StoredMessage[] = [];
  // Checker state, independent of the model.
  const firstDeliveries = new Map<ConsumerGroup, number>();
  const attemptsSeen = new Map<string, number>();
  const onlyGroupOf = new Map<number, ConsumerGroup>();
  const producerSeq = [0, 0];

  const consumerCmd = (group: ConsumerGroup, consumer: number): { group: ConsumerGroup; consumer: ReturnType<typeof consumerId>; seq: number; nowMs: number } => {
    const k = `${group}/${consumer}`;
    const seq = (seqs.get(k) ?? 0) + 1;
    seqs.set(k, seq);
    return { group, consumer: consumers[consumer] as ReturnType<typeof consumerId>, seq, nowMs };
  };

  for (const [step, o] of ops.entries()) {
    let cmd: QueueCommand | undefined;
    switch (o.op) {
      case 'append': {
        const prev = lastBatch.get(o.producer);
        if (o.retry === 'same' && prev !== undefined) cmd = { ...prev, nowMs };
        else if (o.retry === 'stale' && prev !== undefined) cmd = { ...prev, firstSeq: (prev.firstSeq as number) + prev.messages.length - 1, messages: prev.messages.slice(0, 1), nowMs };
        else {
          const messages = Array.from({ length: o.n }, (_, i) => ({
            key: Uint8Array.of(o.key),
            value: new Uint8Array(o.len).fill(step & 0xff),
            headers: i === 0 && o.len > 3 ? [{ name: 'h', value: Uint8Array.of(1) }] : [],
          }));
          if (o.producer === 2) cmd = { kind: 'append', messages, nowMs };
          else {
            const firstSeq = (producerSeq[o.producer] as number) + 1 + (o.key === 3 ? 2 : 0); // sometimes a gap
            producerSeq[o.producer] = firstSeq + o.n - 1;
            cmd = { kind: 'append', producer: producerId(`p${o.producer}`), firstSeq, messages, nowMs };
            lastBatch.set(o.producer, cmd);
          }
        }
        break;
      }
      case 'fetch':
        cmd = { kind: 'fetch', ...consumerCmd(groups[o.group] as ConsumerGroup, o.consumer), max: o.max, ...(o.deadline > 0 ? { ackDeadlineMs: o.deadline } : {}) };
        break;
      case 'ack': {
        if (handed.length === 0) break;
        const items = Array.from({ length: o.n }, (_, i) => handed[(o.pick + i * 7) % handed.length] as (typeof handed)[0]);
        const first = items[0] as (typeof handed)[0];
        const group = o.otherGroup ? (groups.find((x) => x !== first.group) as ConsumerGroup) : first.group;
        cmd = { kind: 'ack', ...consumerCmd(group, o.pick % 3), items: items.map((x) => ({ delivery: x.delivery, attempt: x.attempt })) };
        break;
      }
      case 'nack':
      case 'extend': {
        if (handed.length === 0) break;
        const x = handed[o.pick % handed.length] as (typeof handed)[0];
        cmd = o.op === 'nack'
          ? { kind: 'nack', ...consumerCmd(x.group, o.pick % 3), delivery: x.delivery, attempt: x.attempt, ...(o.delay >= 0 ? { delayMs: o.delay } : {}) }
          : { kind: 'extend', ...consumerCmd(x.group, o.pick % 3), delivery: x.delivery, attempt: x.attempt };
        break;
      }
      case 'time':
        nowMs += o.ms;
        break;
      case 'expire':
        cmd = { kind: 'expireDeadlines', nowMs };
        break;
      case 'gone':
        cmd = { kind: 'consumerGone', consumer: consumers[o.consumer] as ReturnType<typeof consumerId>, nowMs };
        break;
      case 'replay':
        cmd = { kind: 'replay', group: groups[o.group] as ConsumerGroup, from: o.byTime ? { timestampMs: 1_000_000 + o.at * 1_000 } : { offset: offset(o.at) }, nowMs };
        break;
      case 'retain':
        cmd = { kind: 'enforceRetention', nowMs };
        break;
      case 'redrive': {
        if (dlq.length === 0) break;
        const start = o.start % dlq.length;
        cmd = redriveAppend('t', partitionId(0), dlq.slice(start, start + o.len), nowMs);
        break;
      }
      case 'retryConsumer':
        cmd = o.older ? olderConsumerCmd : lastConsumerCmd;
        break;
      case 'deleteGroup':
        cmd = { kind: 'deleteGroup', group: groups[o.group] as ConsumerGroup, nowMs };
        break;
      case 'forward':
        // The leader confirms the head batch; a stray or repeated confirmation is tried too.
        cmd = { kind: 'deadLettersForwarded', firstSeq: o.head ? (q.deadLetterHead()?.firstSeq ?? o.seq) : o.seq, nowMs };
        break;
    }
    if (cmd === undefined) continue;
    if (cmd.kind === 'fetch' || cmd.kind === 'ack' || cmd.kind === 'nack' || cmd.kind === 'extend') {
      if (o.op !== 'retryConsumer') {
        olderConsumerCmd = lastConsumerCmd;
        lastConsumerCmd = cmd;
      }
    }
    index++;
    const where = `step ${step} ${JSON.stringify(cmd, (_, v: unknown) => (v instanceof Uint8Array ? `bytes(${v.length})` : v))}`;
    const endBefore = q.logEndOffset;
    const got = q.apply(cmd, logIndex(index));
    const want = model.apply(cmd);
    // Throw at the first disagreement so fast-check shrinks the sequence.
    assert.deepStrictEqual(plainResult(got.result), plainResult(want.result), `result at ${where}`);
    assert.equal(got.duplicate, want.duplicate, `duplicate flag at ${where}`);
    assert.deepStrictEqual(plainEvents(got), want.events, `events at ${where}`);
    const snap = q.toSnapshot();
    assert.deepStrictEqual(partitionView(snap), modelView(model), `state at ${where}`);

    // --- direct checks ---
    const r = got.result;
    if (cmd.kind === 'append' && got.duplicate) assert.equal(q.logEndOffset, endBefore, `a duplicate appends nothing at ${where}`);
    if (cmd.kind === 'append' && r.kind === 'appended' && !got.duplicate) {
      cmd.messages.forEach((m, i) => {
        if (m.onlyGroup !== undefined) onlyGroupOf.set(r.baseOffset + i, m.onlyGroup);
      });
    }
    if (cmd.kind === 'replay' || cmd.kind === 'deleteGroup') firstDeliveries.delete(cmd.group);
    if (cmd.kind === 'fetch' && r.kind === 'delivered' && !got.duplicate) {
      for (const d of r.deliveries) {
        assert.ok(d.offset >= q.logStartOffset && d.offset < q.logEndOffset, `delivered offset ${d.offset} was appended and is retained at ${where}`);
        const only = onlyGroupOf.get(d.offset);
        assert.ok(only === undefined || only === cmd.group, `redriven offset ${d.offset} goes only to ${only ?? ''} at ${where}`);
        const k: string = `${cmd.group}/${d.delivery}`;
        assert.equal(d.attempt, (attemptsSeen.get(k) ?? 0) + 1, `attempts count up by one per delivery at ${where}`);
        attemptsSeen.set(k, d.attempt);
        if (config.maxDeliveries > 0 && d.attempt > config.maxDeliveries) {
          // Only while the outbox was full when the last attempt failed.
          assert.ok(outboxMax < 10, `at most maxDeliveries attempts at ${where}`);
          count('redelivered past maxDeliveries (outbox full)');
        }
        if (d.attempt === 1) {
          const last = firstDeliveries.get(cmd.group) ?? -1;
          assert.ok(d.offset > last, `first deliveries of ${cmd.group} in offset order (${d.offset} after ${last}) at ${where}`);
          firstDeliveries.set(cmd.group, d.offset);
        } else count('redelivered');
        handed.push({ group: cmd.group, delivery: d.delivery, attempt: d.attempt });
      }
    }
    if (cmd.kind === 'ack' && r.kind === 'acked') {
      cmd.items.forEach((item, i) => {
        const latest = attemptsSeen.get(`${cmd.group}/${item.delivery}`);
        if (r.statuses[i] === 'LATE_ACK') assert.ok(latest !== undefined && item.attempt < latest, `LATE_ACK only for an older attempt at ${where}`);
        if (latest !== undefined && item.attempt < latest) assert.notEqual(r.statuses[i], 'OK', `an old attempt is never acked at ${where}`);
        count(`ack:${r.statuses[i] ?? ''}`);
      });
    }
    for (const ev of got.events as DeadLettered[]) {
      // Later only if the outbox was full when the attempt that reached maxDeliveries failed.
      assert.ok(config.maxDeliveries > 0 && (ev.deliveries === config.maxDeliveries || (outboxMax < 10 && ev.deliveries > config.maxDeliveries)),
        `dead-lettered at maxDeliveries at ${where}`);
      dlq.push({ ...deadLetterMessage(ev, q.readMessage(ev.offset), partitionId(0)), offset: offset(dlq.length), timestampMs: nowMs });
      count('deadLettered');
    }
    if (!config.retention.dropUnacked) {
      for (const g of snap.groups) assert.ok(q.logStartOffset <= g.cursor, `retention kept group ${g.group}'s unacked messages at ${where}`);
    }
    for (const b of snap.outbox ?? []) {
      for (const l of b.letters) {
        assert.ok(l.offset >= q.logStartOffset, `retention kept outbox letter ${l.seq}'s message at ${where}`);
        if ((r.kind === 'retained' || r.kind === 'appended') && l.offset === q.logStartOffset && config.retention.dropUnacked) count('outbox pinned retention');
      }
    }
    if (cmd.kind === 'append' && cmd.messages.some((m) => m.onlyGroup !== undefined)) count(got.duplicate ? 'redrive:duplicate' : 'redrive');
    if (r.kind === 'retained' || r.kind === 'appended') {
      if (q.logStartOffset > 0) count('retention dropped');
    }
    count(r.kind === 'error' ? r.code : got.duplicate ? `${r.kind}:duplicate` : r.kind);

    // Snapshot round trip; carry on with the restored partition.
    const json = JSON.stringify(snap);
    store = MemoryMessageStore.fromSnapshot(store.toSnapshot());
    q = QueuePartition.fromSnapshot(JSON.parse(json) as QueuePartitionSnapshot, store, { deadLetterOutboxMax: outboxMax });
    assert.equal(JSON.stringify(q.toSnapshot()), json, `snapshot round trip at ${where}`);
    steps++;
  }
}

t.test('queue partition agrees with the naive model on random operation sequences', async (t) => {
  const seedEnv = process.env['SEED'];
  const pathEnv = process.env['PATH_REPLAY'];
  const params: fc.Parameters<[PartitionConfig, number, Op[]]> = { numRuns: Number(process.env['RUNS'] ?? 300) };
  // A fixed seed in CI, so a red build means a regression, not an unlucky draw of the
  // generator-reach checks below; SEED=<n> explores others (seeds 1-12 pass the property).
  params.seed = Number(seedEnv ?? 1);
  if (pathEnv !== undefined) params.path = pathEnv;
  const result = fc.check(fc.property(configArb, fc.constantFrom(1, 2, 10_000), fc.array(opArb, { minLength: 1, maxLength: 100, size: 'max' }), (config, outboxMax, ops) => {
    runOps(config, outboxMax, ops);
  }), params);
  if (result.failed) t.fail(fc.defaultReportMessage(result) ?? 'property failed');
  t.comment(`seed ${result.seed} (replay with SEED=${result.seed}), ${result.numRuns} runs, ${steps} steps`);
  t.equal(result.failed, false, `seed ${result.seed}`);
  t.ok(steps > 5_000, 'the runs exercised many steps');
  t.comment(JSON.stringify(Object.fromEntries([...seen].sort())));
  for (const k of ['appended', 'appended:duplicate', 'STALE_REQUEST', 'delivered', 'delivered:duplicate', 'redelivered', 'ack:OK', 'ack:LATE_ACK', 'ack:NOT_FOUND',
    'nacked', 'extended', 'LATE_ACK', 'expired', 'consumerGone', 'deadLettered', 'redrive', 'redrive:duplicate', 'replayed', 'retained', 'retention dropped', 'ok',
    'forwarded', 'redelivered past maxDeliveries (outbox full)', 'outbox pinned retention']) {
    t.ok((seen.get(k) ?? 0) > 0, `the generator reaches ${k}`);
  }
});
