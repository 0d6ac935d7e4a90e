// A dead letter the dead-letter topic refuses for good is dropped and counted, and the
// outbox moves on (real processes, 3 nodes). A message of the maximum size fits its topic
// but not its dead-letter topic once the dsync-dlq-* headers are added: MESSAGE_TOO_LARGE
// is permanent, so the letter is dropped (dsync_queue_dead_letters_dropped_total), and the
// next dead letter still reaches NAME.dlq instead of waiting behind it forever.

import t from 'tap';
import { Client } from '../../client/index.js';
import { queueMessageBytesMax } from '../../core/constants.js';
import { TestCluster } from './helpers/cluster.js';
import { queuePorts } from './queues-helpers.js';

const dec = new TextDecoder();

async function droppedTotal(cluster: TestCluster): Promise<number> {
  let total = 0;
  for (const n of cluster.nodes) {
    const text = await (await fetch(`http://127.0.0.1:${n.spec.httpPort}/metrics`)).text();
    const m = /^dsync_queue_dead_letters_dropped_total(?:\{[^}]*\})? (\d+)/m.exec(text);
    if (m === null) throw new Error(`no dsync_queue_dead_letters_dropped_total in ${n.spec.id}'s metrics: ${text.split('\n').filter((l) => l.includes('dead_letters')).join(' | ')}`);
    total += Number(m?.[1] ?? 'NaN');
  }
  return total;
}

t.test('a dead letter too large for the dead-letter topic is dropped and counted; the next one arrives', async (t) => {
  const cluster = await TestCluster.start(t, { ports: queuePorts(3) });
  const client = await Client.connect({ seeds: cluster.seeds, requestTimeoutMs: 8_000, maxRedirects: 40 });
  t.teardown(() => client.close());
  await client.topics.create('poison', { partitions: 1, replicas: 3, maxDeliveries: 1, ackDeadlineMs: 60_000 });
  t.equal(await droppedTotal(cluster), 0, 'nothing dropped yet');

  const producer = client.producer('poison');
  await producer.publish('big', new Uint8Array(queueMessageBytesMax - 3));
  await producer.publish('small', 'payload');
  const consumer = client.consumer('poison', 'workers', { waitMs: 1_000 });
  const nacked: string[] = [];
  for await (const m of consumer) {
    nacked.push(dec.decode(m.key));
    await m.nack(0);
    if (nacked.length === 2) break;
  }
  await consumer.close().catch(() => {});
  t.same(nacked, ['big', 'small'], 'both delivered once and nacked (maxDeliveries 1: both dead-lettered)');

  const dlq = client.consumer('poison.dlq', 'ops', { waitMs: 1_000 });
  const it = dlq[Symbol.asyncIterator]();
  const next = await Promise.race([it.next(), new Promise<null>((resolve) => setTimeout(() => resolve(null), 30_000).unref())]);
  t.not(next, null, 'a dead letter reached poison.dlq');
  if (next !== null && next.done !== true) {
    t.equal(dec.decode(next.value.key), 'small', 'the small one, behind the refused one');
    t.equal(dec.decode(next.value.headers['dsync-dlq-reason'] ?? new Uint8Array()).length > 0, true, 'with its reason');
    await next.value.ack();
  }
  await dlq.close().catch(() => {});
  t.equal(await droppedTotal(cluster), 1, 'the too-large letter was dropped and counted once');
});
