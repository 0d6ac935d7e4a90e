// Checks the topic table group 0 replicates (core/queue/topics.ts), table-driven:
// create and delete with their typed errors, validation of every setting, placement by
// the ring over the voters (identical on two independently built replicas, whatever
// order the voters come in, and recorded at create time), dead-letter topics created
// and deleted with their topic, and ids (hence partition group ids) never reused, also
// after a delete and across a snapshot round trip. Uses xxhash32 as the server does.

import t from 'tap';
import xxhash from 'xxhash-wasm';
import { queueTopicPartitionsMax } from '../../../core/constants.js';
import type { NodeId } from '../../../core/ids.js';
import { partitionGroupId, type TopicCommand, type TopicResult, TopicTable } from '../../../core/queue/topics.js';

const { h32Raw } = await xxhash();
const hash = (b: Uint8Array): number => h32Raw(b);
const voters = ['n1', 'n2', 'n3'] as NodeId[];

const create = (name: string, extra: Record<string, unknown> = {}): TopicCommand => ({ kind: 'create', spec: { name, ...extra } });

t.test('create validation (table)', async (t) => {
  const cases: { what: string; cmd: TopicCommand; code: string | null; voters?: NodeId[] }[] = [
    { what: 'defaults', cmd: create('orders'), code: null },
    { what: 'dots, dashes, underscores', cmd: create('a.b-c_d9'), code: null },
    { what: 'empty name', cmd: create(''), code: 'BAD_REQUEST' },
    { what: 'a space', cmd: create('a b'), code: 'BAD_REQUEST' },
    { what: 'starts with a dot', cmd: create('.x'), code: 'BAD_REQUEST' },
    { what: 'reserved .dlq suffix', cmd: create('x.dlq'), code: 'BAD_REQUEST' },
    { what: '201 characters', cmd: create('a'.repeat(201)), code: 'BAD_REQUEST' },
    { what: '200 characters', cmd: create('a'.repeat(200)), code: null },
    { what: '0 partitions', cmd: create('p0', { partitions: 0 }), code: 'BAD_REQUEST' },
    { what: 'max partitions', cmd: create('pmax', { partitions: queueTopicPartitionsMax }), code: null },
    { what: 'one over max partitions', cmd: create('pover', { partitions: queueTopicPartitionsMax + 1 }), code: 'BAD_REQUEST' },
    { what: 'fractional partitions', cmd: create('pfrac', { partitions: 1.5 }), code: 'BAD_REQUEST' },
    { what: '0 replicas', cmd: create('r0', { replicas: 0 }), code: 'BAD_REQUEST' },
    { what: 'replicas = voters', cmd: create('r3', { replicas: 3 }), code: null },
    { what: 'replicas > voters', cmd: create('r4', { replicas: 4 }), code: 'BAD_REQUEST' },
    { what: 'no voters', cmd: create('nv'), code: 'BAD_REQUEST', voters: [] },
    { what: 'ack deadline too short', cmd: create('ad', { ackDeadlineMs: 10 }), code: 'BAD_REQUEST' },
    { what: 'maxDeliveries 0 (never dead-letter)', cmd: create('md0', { maxDeliveries: 0 }), code: null },
    { what: 'negative maxDeliveries', cmd: create('mdneg', { maxDeliveries: -1 }), code: 'BAD_REQUEST' },
    { what: 'negative retention', cmd: create('ret', { retention: { maxAgeMs: -1, maxBytes: 0, dropUnacked: false } }), code: 'BAD_REQUEST' },
  ];
  const table = new TopicTable(hash);
  let index = 1;
  for (const c of cases) {
    const r = table.apply(c.cmd, c.voters ?? voters, index++);
    if (c.code === null) t.equal(r.kind, 'created', c.what);
    else t.ok(r.kind === 'error' && r.code === c.code, `${c.what}: ${c.code} (${r.kind === 'error' ? r.message : r.kind})`);
  }
  const topicsBefore = table.list().length;
  const again = table.apply(create('orders'), voters, index++);
  t.ok(again.kind === 'exists' && again.topic.name === 'orders', 'a second create with the same settings answers the topic (a retried create succeeds)');
  const other = table.apply(create('orders', { partitions: 7 }), voters, index++);
  t.ok(other.kind === 'error' && other.code === 'ALREADY_EXISTS' && /partitions \d+ \(asked 7\)/.test(other.message),
    `a create with other settings: ALREADY_EXISTS naming the difference (${other.kind === 'error' ? other.message : other.kind})`);
  t.equal(table.list().length, topicsBefore, 'neither created anything');
});

t.test('defaults, dead-letter topic, delete', async (t) => {
  const table = new TopicTable(hash);
  const r = table.apply(create('orders'), voters, 7);
  if (r.kind !== 'created') throw new Error(r.kind === 'error' ? r.message : r.kind);
  t.equal(r.topic.partitions, 4, 'four partitions by default');
  t.equal(r.topic.replicas, 3, 'three replicas by default (min(3, voters))');
  t.equal(r.topic.maxDeliveries, 5);
  t.equal(r.topic.createdIndex, 7);
  t.equal(r.deadLetter.name, 'orders.dlq');
  t.equal(r.deadLetter.partitions, r.topic.partitions, 'the dead-letter topic has as many partitions');
  t.equal(r.deadLetter.maxDeliveries, 0, 'a dead-letter topic never dead-letters');
  t.equal(r.deadLetter.deadLetterTopic, '');
  const small = new TopicTable(hash).apply(create('x'), ['solo'] as NodeId[], 1);
  t.ok(small.kind === 'created' && small.topic.replicas === 1, 'one voter: one replica by default');

  const dlqAlone = table.apply({ kind: 'delete', name: 'orders.dlq' }, voters, 8);
  t.ok(dlqAlone.kind === 'error' && dlqAlone.code === 'BAD_REQUEST', 'a dead-letter topic is not deleted alone');
  const unknown = table.apply({ kind: 'delete', name: 'nope' }, voters, 9);
  t.ok(unknown.kind === 'error' && unknown.code === 'NOT_FOUND', 'deleting an unknown topic: NOT_FOUND');
  const del = table.apply({ kind: 'delete', name: 'orders' }, voters, 10);
  t.ok(del.kind === 'deleted' && del.topics.map((x) => x.name).join(',') === 'orders,orders.dlq', 'delete removes the topic and its dead-letter topic');
  t.equal(table.size, 0);
});

t.test('placement: identical on two replicas, spread, recorded at create time', async (t) => {
  const five = ['n1', 'n2', 'n3', 'n4', 'n5'] as NodeId[];
  const a = new TopicTable(hash);
  const b = new TopicTable(hash);
  const ra = a.apply(create('orders', { partitions: 32, replicas: 3 }), five, 1);
  const rb = b.apply(create('orders', { partitions: 32, replicas: 3 }), [...five].reverse(), 1);
  if (ra.kind !== 'created' || rb.kind !== 'created') throw new Error('create failed');
  t.same(ra.topic.placement, rb.topic.placement, 'two replicas (voters in another order) place every partition alike');
  t.same(a.toSnapshot(), b.toSnapshot(), 'and hold identical tables');
  const load = new Map<string, number>();
  for (const reps of ra.topic.placement) {
    t.equal(new Set(reps).size, 3, 'three distinct replicas');
    for (const n of reps) load.set(n, (load.get(n) ?? 0) + 1);
  }
  const firsts = new Map<string, number>();
  for (const reps of ra.topic.placement) firsts.set(reps[0] ?? '', (firsts.get(reps[0] ?? '') ?? 0) + 1);
  t.ok(firsts.size === 5 && Math.max(...firsts.values()) - Math.min(...firsts.values()) <= 1,
    `preferred leaders (first replicas) spread evenly: ${[...firsts].map(([n, k]) => `${n}=${k}`).join(' ')}`);
  const mean = (32 * 3) / 5;
  t.ok(Math.max(...load.values()) <= Math.ceil(1.25 * mean), `replicas per node within the load bound: ${[...load].map(([n, c]) => `${n}=${c}`).join(' ')}`);
  // The placement is the one computed when the create applied: a later membership does not move it.
  const later = a.apply(create('later', { partitions: 32, replicas: 3 }), ['n1', 'n2', 'n3'] as NodeId[], 2);
  t.ok(later.kind === 'created' && later.topic.placement.every((r) => r.every((n) => ['n1', 'n2', 'n3'].includes(n))), 'a topic created later uses the voters then');
  t.same(a.get('orders')?.placement, ra.topic.placement, 'the earlier topic keeps its placement');
});

t.test('ids and partition group ids are never reused', async (t) => {
  const table = new TopicTable(hash);
  const groups = new Set<number>();
  const ids: number[] = [];
  const created = (r: TopicResult): void => {
    if (r.kind !== 'created') throw new Error(r.kind === 'error' ? r.message : r.kind);
    for (const topic of [r.topic, r.deadLetter]) {
      ids.push(topic.id);
      for (let p = 0; p < topic.partitions; p++) {
        const g = partitionGroupId(topic.id, p);
        t.notOk(groups.has(g), `group ${g} is new`);
        t.not(g, 0, 'never group 0');
        groups.add(g);
      }
    }
  };
  let index = 1;
  for (let round = 0; round < 3; round++) {
    created(table.apply(create('same', { partitions: 3 }), voters, index++));
    table.apply({ kind: 'delete', name: 'same' }, voters, index++);
  }
  // Across a snapshot round trip too.
  const restored = new TopicTable(hash);
  restored.restore(JSON.parse(JSON.stringify(table.toSnapshot())) as ReturnType<TopicTable['toSnapshot']>);
  const r = restored.apply(create('same', { partitions: 3 }), voters, index++);
  created(r);
  t.same(ids, [...ids].sort((x, y) => x - y), 'ids only grow');
  t.equal(new Set(ids).size, ids.length, 'no id twice');
});
