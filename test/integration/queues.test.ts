// The queue service's answers over real processes (3 nodes): topic admin (create,
// duplicate, bad settings, info, list, delete), bad input on the data path (unknown
// topic, oversized message, ack of a delivery that does not exist, a stale fencing
// token) each a typed error after which the same partition keeps serving, and the long
// poll: one fetch sent BEFORE a publish is answered WITH that message (so it was woken
// by the append, not by its wait ending, which would have answered it empty); and dead
// letters: with maxDeliveries 1 every nacked message reaches NAME.dlq with its reason.

import t, { type Test } from 'tap';
import { routerOf } from '../../client/client.js';
import { Client, DsyncError, ErrorCode } from '../../client/index.js';
import { Opcode } from '../../protocol/frame.js';
import { schema } from '../../protocol/index.js';
import { queueMessageBytesMax } from '../../core/constants.js';
import { TestCluster } from './helpers/cluster.js';
import { queuePorts } from './queues-helpers.js';

async function rejectsWith(t: Test, p: Promise<unknown>, code: string, what: string): Promise<DsyncError | null> {
  try {
    await p;
    t.fail(`${what}: expected ${code}, it succeeded`);
    return null;
  } catch (err) {
    t.ok(err instanceof DsyncError && err.code === code, `${what}: ${code} (${err instanceof Error ? err.message : String(err)})`);
    return err instanceof DsyncError ? err : null;
  }
}

t.test('topic admin, typed errors on bad input, long poll woken by a publish', async (t) => {
  const cluster = await TestCluster.start(t, { ports: queuePorts(1) });
  const client = await Client.connect({ seeds: cluster.seeds, requestTimeoutMs: 8_000, maxRedirects: 40 });

  // ---- topic admin ----
  const info = await client.topics.create('events', { partitions: 2, replicas: 3, ackDeadlineMs: 5_000 });
  t.equal(info.partitions, 2);
  t.equal(info.deadLetterTopic, 'events.dlq', 'the dead-letter topic is created with it');
  await rejectsWith(t, client.topics.create('events'), ErrorCode.ALREADY_EXISTS, 'creating it twice');
  await rejectsWith(t, client.topics.create('bad name!'), ErrorCode.BAD_REQUEST, 'a name with a space');
  await rejectsWith(t, client.topics.create('x.dlq'), ErrorCode.BAD_REQUEST, 'a reserved .dlq name');
  await rejectsWith(t, client.topics.create('many', { partitions: 100_000 }), ErrorCode.BAD_REQUEST, 'too many partitions');
  await rejectsWith(t, client.topics.create('wide', { replicas: 4 }), ErrorCode.BAD_REQUEST, 'more replicas than voters');
  await rejectsWith(t, client.topics.info('nope'), ErrorCode.NOT_FOUND, 'info of an unknown topic');
  await rejectsWith(t, client.topics.delete('events.dlq'), ErrorCode.BAD_REQUEST, 'deleting a dead-letter topic alone');
  const names = (await client.topics.list()).map((x) => x.name);
  t.same(names, ['events', 'events.dlq'], 'list: the topic and its dead-letter topic');

  // ---- bad input on the data path ----
  await rejectsWith(t, client.producer('nope').publish('k', 'v'), ErrorCode.NOT_FOUND, 'publish to an unknown topic');
  const producer = client.producer('events');
  await rejectsWith(t, producer.publish('k', new Uint8Array(queueMessageBytesMax + 1)), ErrorCode.MESSAGE_TOO_LARGE, 'an oversized message');
  const first = await producer.publish('k', 'after the oversized one');
  t.ok(first.offset >= 0, `the partition keeps serving: published at ${first.partition}/${first.offset}`);

  const topic = await client.topics.info('events');
  const group = topic.partitionList[first.partition]?.groupId ?? -1;
  const router = routerOf(client);
  const settle = (opcode: number, delivery: number, firstSeq: number): Promise<ReturnType<typeof schema.SettleReply.decode>> =>
    router.request(group, opcode, schema.SettleRequest.encode({ topic: 'events', partition: first.partition, group: 'g', consumer: 'raw', firstSeq,
      items: [{ delivery, attempt: 1 }] }).finish(), { idempotent: true }).then((b) => schema.SettleReply.decode(b));
  const unknown = await settle(Opcode.Ack, 987_654, 1);
  t.equal(unknown.statuses[0]?.code, ErrorCode.NOT_FOUND, `ack of a delivery that does not exist: NOT_FOUND (${unknown.statuses[0]?.message ?? ''})`);

  const consumer = client.consumer('events', 'g', { waitMs: 1_000 });
  const it = consumer[Symbol.asyncIterator]();
  const got = await it.next();
  t.equal(new TextDecoder().decode(got.value?.value), 'after the oversized one', 'the partition still delivers after the bad requests');
  await got.value?.ack();
  await rejectsWith(t, got.value?.ack() ?? Promise.resolve(), ErrorCode.NOT_FOUND, 'acking the same delivery twice');
  await consumer.close();

  // Fencing: a publish with token 5 raises the partition's newest token for the lock; 4 is then FENCED, 6 goes through.
  const fenced = client.producer('events');
  await fenced.publish('k', 'token 5', { fencing: { lock: 'writer', token: 5 } });
  await rejectsWith(t, fenced.publish('k', 'token 4', { fencing: { lock: 'writer', token: 4 } }), ErrorCode.FENCED, 'an older fencing token');
  const later = await fenced.publish('k', 'token 6', { fencing: { lock: 'writer', token: 6 } });
  t.equal(later.partition, first.partition, 'a newer token is accepted on the same partition');

  // ---- long poll: one fetch, sent before the publish, answered with the message ----
  await client.topics.create('quiet', { partitions: 1, replicas: 3 });
  const quiet = await client.topics.info('quiet');
  const qGroup = quiet.partitionList[0]?.groupId ?? -1;
  // Warm up the route to the partition's leader (the first fetch answers empty at once).
  const fetch = (seq: number, waitMs: number): Promise<ReturnType<typeof schema.FetchReply.decode>> =>
    router.request(qGroup, Opcode.Fetch, schema.FetchRequest.encode({ topic: 'quiet', partition: 0, group: 'lp', consumer: 'lp-1', seq, max: 10, waitMs }).finish(),
      { followLeader: true, timeoutMs: waitMs + 10_000 }).then((b) => schema.FetchReply.decode(b));
  t.equal((await fetch(1, 0)).messages.length, 0, 'an empty partition answers a fetch without a wait at once, empty');
  const order: string[] = [];
  const polling = fetch(2, 30_000).then((r) => { order.push('fetch answered'); return r; });
  await new Promise((r) => setTimeout(r, 300));
  order.push('publishing');
  await client.producer('quiet').publish('k', 'wake up');
  order.push('published');
  const woken = await polling;
  t.equal(woken.messages.length, 1, 'the long poll was answered with the message published after it was sent');
  t.equal(new TextDecoder().decode(woken.messages[0]?.message?.value ?? new Uint8Array(0)), 'wake up');
  t.same(order.slice(0, 1), ['publishing'], `the fetch was still waiting when the publish began (order: ${order.join(' -> ')})`);

  // ---- dead letters: maxDeliveries 1, every message nacked once goes to poison.dlq with the reason ----
  await client.topics.create('poison', { partitions: 3, replicas: 3, maxDeliveries: 1 });
  const poisonProducer = client.producer('poison');
  const keys = Array.from({ length: 12 }, (_, i) => `bad-${i}`);
  await Promise.all(keys.map((k) => poisonProducer.publish(k, `payload of ${k}`)));
  const sick = client.consumer('poison', 'workers', { waitMs: 500 });
  const nacked = new Set<string>();
  for await (const m of sick) {
    nacked.add(new TextDecoder().decode(m.key));
    await m.nack(0);
    if (nacked.size === keys.length) break;
  }
  await sick.close();
  const dlq = client.consumer('poison.dlq', 'ops', { waitMs: 500 });
  const dead = new Map<string, Record<string, string>>();
  for await (const m of dlq) {
    dead.set(new TextDecoder().decode(m.key), Object.fromEntries(Object.entries(m.headers).map(([k, v]) => [k, new TextDecoder().decode(v)])));
    await m.ack();
    if (dead.size === keys.length) break;
  }
  await dlq.close();
  t.same([...dead.keys()].sort(), [...keys].sort(), 'every nacked message reached the dead-letter topic (through its partitions\' leaders, wherever they are)');
  const h = dead.get('bad-0') ?? {};
  t.same({ reason: h['dsync-dlq-reason'], group: h['dsync-dlq-group'], deliveries: h['dsync-dlq-deliveries'] }, { reason: 'nacked', group: 'workers', deliveries: '1' },
    'with the reason, the group and the delivery count in its headers');

  // Delete removes both topics; the name is free again, the id is not reused.
  await client.topics.delete('events');
  t.same((await client.topics.list()).map((x) => x.name), ['poison', 'poison.dlq', 'quiet', 'quiet.dlq'], 'events and events.dlq are gone');
  const again = await client.topics.create('events', { partitions: 1, replicas: 1 });
  t.ok(again.id > info.id + 1 && again.partitionList[0]?.groupId !== info.partitionList[0]?.groupId,
    `a re-created topic gets a new id and new partition groups (${again.id}, was ${info.id})`);
  await client.close();
});
