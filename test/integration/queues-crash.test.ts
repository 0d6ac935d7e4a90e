// The queue's durability promise over real `dsync node` processes: a topic of 4
// partitions x 3 replicas, 4 producers and 4 consumers (one group) on their own
// clients, 3,000 messages in CI (QUEUE_CRASH_MESSAGES=100000 for the issue's full
// run); midway the leader of a partition is killed -9 and
// restarted on its data dir. Every acknowledged publish must be consumed at least once
// (duplicates are counted and printed, not failed). Then all three nodes are killed -9
// and restarted: a new consumer group must read every acknowledged message again, so
// the partitions' logs and stores came back from disk with nothing acknowledged lost.

import t from 'tap';
import { Client } from '../../client/index.js';
import { TestCluster } from './helpers/cluster.js';
import { ConsumeLoad, duplicates, leaderOfGroup, PublishLoad, queuePorts } from './queues-helpers.js';

const producersCount = 4;
const perProducer = Math.ceil(Number(process.env['QUEUE_CRASH_MESSAGES'] ?? 3_000) / producersCount);
const concurrency = 16;
/** Waits scale with the run: a large one takes longer to drain. */
const drainMs = Math.max(20_000, perProducer * producersCount);

t.test('kill -9 a partition leader mid-way, then restart all nodes: every acknowledged publish is consumed', async (t) => {
  const cluster = await TestCluster.start(t, { ports: queuePorts(0) });
  const clientOptions = { seeds: cluster.seeds, requestTimeoutMs: 10_000, maxRedirects: 40 };
  const admin = await Client.connect(clientOptions);
  t.teardown(() => admin.close());
  const topic = await admin.topics.create('orders', { partitions: 4, replicas: 3, ackDeadlineMs: 2_000, maxDeliveries: 0 });
  t.equal(topic.partitionList.length, 4, 'four partitions');
  t.ok(topic.partitionList.every((p) => new Set(p.replicas).size === 3), 'three distinct replicas each');

  const clients = await Promise.all(Array.from({ length: 2 * producersCount }, () => Client.connect(clientOptions)));
  t.teardown(() => Promise.all(clients.map((c) => c.close())));
  const producers = clients.slice(0, producersCount).map((c, i) => new PublishLoad(c.producer('orders'), `p${i}`, perProducer, concurrency));
  const consumers = clients.slice(producersCount).map((c) => new ConsumeLoad(c.consumer('orders', 'workers', { maxInFlight: 128, waitMs: 1_000 })));
  const c1 = clients[producersCount] as Client;

  // Mid-way: kill the leader of partition 1, let the others go on, restart it.
  await Promise.all(producers.map((p) => p.waitForAcked(perProducer / 2)));
  const group = topic.partitionList[1]?.groupId ?? 0;
  const victimId = await leaderOfGroup(admin, cluster.seeds, group);
  const victim = cluster.node(victimId);
  const ackedBefore = producers.reduce((n, p) => n + p.acked.size, 0);
  const exit = await victim.kill9();
  t.equal(exit?.signal, 'SIGKILL', `leader ${victimId} of partition 1 (group ${group}) killed with ${ackedBefore} publishes acknowledged`);
  await Promise.all(producers.map((p) => p.waitForAcked(Math.min(perProducer, p.acked.size + 200))));
  await victim.restart();
  t.ok(victim.process.running, `${victimId} restarted on its own data dir`);
  await Promise.all(producers.map((p) => p.done));

  const acked = new Set(producers.flatMap((p) => [...p.acked]));
  const failed = producers.reduce((n, p) => n + p.failed, 0);
  t.ok(acked.size >= perProducer, `${acked.size} publishes acknowledged (${failed} failed around the crash)`);
  // Split across the two consumers' views: wait on the union.
  const missingFor = async (timeoutMs: number): Promise<string[]> => {
    const deadline = Date.now() + timeoutMs;
    let missing = [...acked];
    while (Date.now() < deadline) {
      missing = missing.filter((id) => !consumers.some((c) => c.seen.has(id)));
      if (missing.length === 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    return missing;
  };
  const missing = await missingFor(drainMs);
  t.same(missing.slice(0, 20), [], `every acknowledged publish consumed at least once (${missing.length} missing)`);
  const dups = duplicates(consumers);
  t.comment(`consumed ${[...consumers].reduce((n, c) => n + [...c.seen.values()].reduce((a, b) => a + b, 0), 0)} deliveries of ${acked.size} acknowledged publishes`);
  t.comment(`${dups.size} values delivered more than once: ${[...dups].slice(0, 20).map(([v, n]) => `${v}x${n}`).join(' ')}`);
  t.ok(consumers.every((c) => c.seen.size > 0), 'every consumer of the group took part');
  await Promise.all(consumers.map((c) => c.stop()));

  // A full restart: kill -9 every node, start them again.
  for (const n of cluster.nodes) await n.kill9();
  await Promise.all(cluster.nodes.map((n) => n.restart()));
  const replay = new ConsumeLoad(c1.consumer('orders', 'after-restart', { maxInFlight: 512, waitMs: 1_000 }));
  const lost = await replay.waitForAll(acked, drainMs);
  t.same(lost.slice(0, 20), [], `after a full restart a new group reads every acknowledged publish (${lost.length} lost of ${acked.size})`);
  await replay.stop();
  await Promise.all([admin, ...clients].map((c) => c.close()));
});
