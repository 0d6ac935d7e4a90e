// Checks the queue accounting checker (queue-accounting.ts) on small hand-written
// histories: a clean one with at-least-once repeats has no anomaly and counts its
// duplicates, and each planted bug (a lost acknowledged publish, a delivered failed
// publish, an invented message, an overwritten offset, producer order broken,
// first deliveries out of offset order) is reported as exactly its kind. These are
// the checker's canaries: if a property stops being checked, its row fails.

import t from 'tap';
import { checkQueueHistory, type DeliverOp, type PublishOp, type QueueOp } from './queue-accounting.js';

let nextId = 1;
function pub(value: string, at: number, outcome: PublishOp['outcome'], where?: [number, number], key = 'k', producer = 'p1'): PublishOp {
  const op: PublishOp = { id: nextId++, process: producer, node: 'n1', service: 'queues', f: 'publish', invokeMs: at, endMs: at + 1,
    outcome, producer, key, value, ...(where === undefined ? {} : { partition: where[0], offset: where[1] }) };
  return op;
}
function del(value: string, at: number, where: [number, number], attempt = 1, consumer = 'c1', group = 'g', key = 'k'): DeliverOp {
  return { id: nextId++, process: consumer, node: 'n1', service: 'queues', f: 'deliver', invokeMs: at, endMs: at,
    outcome: 'ok', group, consumer, key, value, partition: where[0], offset: where[1], attempt };
}

const clean: QueueOp[] = [
  pub('a', 0, 'ok', [0, 0]), pub('b', 2, 'ok', [0, 1]), pub('c', 4, 'unknown'), pub('d', 6, 'fail'),
  del('a', 10, [0, 0]), del('b', 11, [0, 1]), del('a', 20, [0, 0], 2, 'c2'), del('c', 21, [0, 2]),
];

t.test('a clean history with redeliveries has no anomaly and counts them', async (t) => {
  const r = checkQueueHistory(clean, { drainedGroups: ['g'] });
  t.same(r.anomalies, []);
  t.same(r.stats.published, { ok: 2, fail: 1, unknown: 1 });
  t.equal(r.stats.duplicates, 1, 'a delivered twice');
  t.equal(r.stats.redeliveries, 1);
  t.equal(r.stats.unknownLanded, 1, 'c was unknown and landed');
  t.equal(r.stats.lost, 0);
});

const planted: { name: string; kind: string; ops: QueueOp[] }[] = [
  { name: 'an acknowledged publish never delivered', kind: 'lost',
    ops: [pub('a', 0, 'ok', [0, 0]), pub('b', 2, 'ok', [0, 1]), del('a', 10, [0, 0])] },
  { name: 'a failed publish delivered', kind: 'failed-delivered',
    ops: [pub('a', 0, 'fail'), del('a', 10, [0, 0])] },
  { name: 'a message nobody published', kind: 'unexpected',
    ops: [pub('a', 0, 'ok', [0, 0]), del('a', 10, [0, 0]), del('zz', 11, [0, 1])] },
  { name: 'an acknowledged offset overwritten', kind: 'offset-conflict',
    ops: [pub('a', 0, 'ok', [0, 0]), pub('b', 2, 'ok', [0, 1]), del('a', 10, [0, 0]), del('c', 11, [0, 1]), del('b', 12, [0, 2]),
      pub('c', 1, 'unknown')] },
  { name: 'one producer\'s key out of order', kind: 'producer-order',
    ops: [pub('a', 0, 'ok', [0, 5]), pub('b', 2, 'ok', [0, 4]), del('b', 10, [0, 4]), del('a', 11, [0, 5])] },
  { name: 'first deliveries of a partition out of offset order', kind: 'delivery-order',
    ops: [pub('a', 0, 'ok', [0, 0]), pub('b', 2, 'ok', [0, 1]), del('b', 10, [0, 1]), del('a', 11, [0, 0])] },
];

for (const row of planted) {
  t.test(`canary: ${row.name} is reported as ${row.kind}`, async (t) => {
    const r = checkQueueHistory(row.ops, { drainedGroups: ['g'] });
    t.same([...new Set(r.anomalies.map((a) => a.kind))], [row.kind], JSON.stringify(r.anomalies));
    t.ok(r.anomalies.every((a) => a.ops.length > 0), 'each anomaly names its operations');
  });
}

t.test('overlapping publishes of one key may land in either order', async (t) => {
  const a = { ...pub('a', 0, 'ok', [0, 1]), endMs: 5 };
  const b = pub('b', 2, 'ok', [0, 0]);
  const r = checkQueueHistory([a, b, del('b', 10, [0, 0]), del('a', 11, [0, 1])], { drainedGroups: ['g'] });
  t.same(r.anomalies, []);
});

t.test('a group that did not drain is not checked for loss', async (t) => {
  const r = checkQueueHistory([pub('a', 0, 'ok', [0, 0])], { drainedGroups: [] });
  t.same(r.anomalies, []);
});

t.test('a workload that reuses a value is a bug in the workload', async (t) => {
  t.throws(() => checkQueueHistory([pub('a', 0, 'ok', [0, 0]), pub('a', 1, 'ok', [0, 1])], { drainedGroups: [] }), /unique/);
});
