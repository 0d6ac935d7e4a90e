// Dead letters are durable (real processes, 3 nodes): a message dead-lettered on a source
// partition whose leader dies before it reached the dead-letter topic still gets there,
// sent by the next leader from the partition's replicated outbox. To hold the forward
// back, the dead-letter partition's leader is killed (-9) before the nack (a paused one
// would still find the forward in its socket buffer on waking), and the source leader is
// killed as soon as the nack is answered; then both restart. Before the outbox, the dead
// letter lived only in the dead leader's memory and this test waited in vain.

import t from 'tap';
import { Client } from '../../client/index.js';
import { TestCluster } from './helpers/cluster.js';
import { leaderOfGroup, queuePorts } from './queues-helpers.js';

const dec = new TextDecoder();

t.test('a dead letter survives its source leader dying before the dead-letter topic took it', async (t) => {
  const cluster = await TestCluster.start(t, { ports: queuePorts(9) });
  const client = await Client.connect({ seeds: cluster.seeds, requestTimeoutMs: 8_000, maxRedirects: 40 });
  t.teardown(() => client.close());

  // A topic whose partition and dead-letter partition are led by different nodes.
  let topic = '';
  let source = '';
  let deadLetterLeader = '';
  for (let i = 0; i < 10 && topic === ''; i++) {
    const info = await client.topics.create(`dl${i}`, { partitions: 1, replicas: 3, maxDeliveries: 1, ackDeadlineMs: 60_000 });
    const dlqInfo = await client.topics.info(`dl${i}.dlq`);
    const s = await leaderOfGroup(client, cluster.seeds, info.partitionList[0]?.groupId ?? -1);
    const d = await leaderOfGroup(client, cluster.seeds, dlqInfo.partitionList[0]?.groupId ?? -1);
    if (s !== d) [topic, source, deadLetterLeader] = [`dl${i}`, s, d];
  }
  t.not(topic, '', `found a topic whose partition (led by ${source}) and dead-letter partition (led by ${deadLetterLeader}) have different leaders`);

  await client.producer(topic).publish('poison', 'payload');
  const consumer = client.consumer(topic, 'workers', { waitMs: 2_000 });
  let nacked = false;
  for await (const m of consumer) {
    t.equal(dec.decode(m.key), 'poison');
    await cluster.node(deadLetterLeader).kill9();
    await m.nack(0);
    nacked = true;
    await cluster.node(source).kill9();
    break;
  }
  t.ok(nacked, 'the message was delivered and nacked (maxDeliveries 1: dead-lettered)');
  await consumer.close().catch(() => {});
  await Promise.all([cluster.node(deadLetterLeader).restart(), cluster.node(source).restart()]);

  const dlq = client.consumer(`${topic}.dlq`, 'ops', { waitMs: 1_000 });
  const it = dlq[Symbol.asyncIterator]();
  const deadline = Date.now() + 30_000;
  let found: Record<string, string> | null = null;
  while (found === null && Date.now() < deadline) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const idle = new Promise<null>((resolve) => { timer = setTimeout(() => resolve(null), Math.max(1, deadline - Date.now())); });
    const next = await Promise.race([it.next(), idle]);
    clearTimeout(timer);
    if (next === null || next.done === true) break;
    await next.value.ack();
    if (dec.decode(next.value.key) === 'poison') found = Object.fromEntries(Object.entries(next.value.headers).map(([k, v]) => [k, dec.decode(v)]));
  }
  await dlq.close().catch(() => {});
  t.ok(found !== null, 'the dead letter reached the dead-letter topic after its source leader died');
  t.match(found ?? {}, { 'dsync-dlq-reason': 'nacked', 'dsync-dlq-group': 'workers', 'dsync-dlq-deliveries': '1' });
});
