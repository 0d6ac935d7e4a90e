// A node that stays down has its queue replicas rebuilt on the spare node, over real
// `dsync node` processes (issue 10: "a node that stays down longer than a configurable
// time has its replicas rebuilt elsewhere when spare nodes exist"), then the operator
// removes it. 4 nodes with QUEUE_NODE_DOWN_MS 5 s (its minimum); a topic of 2 partitions x 3 replicas
// (and its .dlq, as many again) so each partition leaves one node spare; messages are
// published; the node holding the most replicas (not group 0's leader, so the planner
// keeps running) is killed -9. Group 0's leader must move every replica off it onto the
// spare node (each partition back to 3 live replicas, epoch bumped, the move settled), the
// partitions keep taking publishes, and everything acknowledged, before and after, is
// consumed. `cluster remove` of the dead node then leaves 3 voters, and the topic stays
// where it is.

import t from 'tap';
import { Client, type TopicInfo } from '../../client/index.js';
import { pollUntil, TestCluster } from './helpers/cluster.js';
import { ConsumeLoad, duplicates } from './queues-helpers.js';

const nodeDownMs = 5_000;
const publishesEachPhase = 200;

async function publishAll(client: Client, topic: string, tag: string, count: number): Promise<string[]> {
  const producer = client.producer(topic);
  const ids = Array.from({ length: count }, (_, i) => `${tag}-${i}`);
  await Promise.all(ids.map((id) => producer.publish(`key-${id}`, id)));
  return ids;
}

t.test('a node down longer than QUEUE_NODE_DOWN_MS has its queue replicas rebuilt on the spare node; removing it keeps them', async (t) => {
  const cluster = await TestCluster.start(t, { nodes: 4, extraArgs: ['--queue-node-down', String(nodeDownMs)] });
  const admin = await Client.connect({ seeds: cluster.seeds, requestTimeoutMs: 10_000, maxRedirects: 40, name: 'rebuild-admin' });
  t.teardown(() => admin.close());
  const created = await admin.topics.create('rebuilt', { partitions: 2, replicas: 3, ackDeadlineMs: 3_000, maxDeliveries: 0 });
  const topics = ['rebuilt', 'rebuilt.dlq'];
  const placement = [created, await admin.topics.info('rebuilt.dlq')];
  const before = await publishAll(admin, 'rebuilt', 'before', publishesEachPhase);

  // The victim: the node with the most replicas that does not lead group 0.
  const group0Leader = (await admin.status(cluster.node('n1').address)).groups.find((g) => g.group === 0)?.leaderId ?? '';
  const load = new Map<string, number>();
  for (const info of placement) for (const p of info.partitionList) for (const r of p.replicas) load.set(r, (load.get(r) ?? 0) + 1);
  const victim = [...load].filter(([n]) => n !== group0Leader).sort((a, b) => b[1] - a[1])[0]?.[0] ?? '';
  t.not(victim, '', `a victim besides group 0's leader ${group0Leader}: replicas per node ${JSON.stringify([...load])}`);
  const onVictim = placement.flatMap((i) => i.partitionList.filter((p) => p.replicas.includes(victim)).map((p) => ({ topic: i.name, ...p })));
  t.ok(onVictim.length >= 1, `${victim} holds ${onVictim.length} replicas`);

  await cluster.node(victim).kill9();
  const killedAtMs = Date.now();
  const rebuilt = await pollUntil(`every replica on ${victim} to be rebuilt elsewhere`, async () => {
    const infos: TopicInfo[] = [];
    for (const name of topics) infos.push(await admin.topics.info(name));
    const settled = infos.every((i) => i.partitionList.every((p) => p.hosts === undefined && p.replicas.length === 3 && !p.replicas.includes(victim)));
    return settled ? infos : null;
  }, 60_000, 250);
  t.comment(`replicas rebuilt ${Date.now() - killedAtMs} ms after the kill -9 (QUEUE_NODE_DOWN_MS ${nodeDownMs})`);
  for (const moved of onVictim) {
    const now = rebuilt.find((i) => i.name === moved.topic)?.partitionList.find((p) => p.index === moved.index);
    t.ok(now !== undefined && now.epoch > moved.epoch, `${moved.topic}/${moved.index}'s epoch was bumped (${moved.epoch} -> ${now?.epoch})`);
    t.same([...(now?.replicas ?? [])].sort(), cluster.nodes.map((n) => n.spec.id).filter((n) => n !== victim),
      `${moved.topic}/${moved.index} is on the three live nodes`);
  }

  // The rebuilt placement takes publishes, and nothing acknowledged before the kill is lost.
  const after = await publishAll(admin, 'rebuilt', 'after', publishesEachPhase);
  const consumer = new ConsumeLoad(admin.consumer('rebuilt', 'readers', { maxInFlight: 64, waitMs: 500 }));
  const missing = await consumer.waitForAll([...before, ...after], 30_000);
  t.same(missing.slice(0, 20), [], `every acknowledged publish consumed (${missing.length} missing of ${before.length + after.length})`);
  t.comment(`${duplicates([consumer]).size} values delivered more than once`);
  await consumer.stop();

  // The operator removes the dead node: 3 voters left, the topic's placement unchanged.
  const members = await admin.cluster.remove(victim);
  t.same(members.map((m) => m.id).sort(), cluster.nodes.map((n) => n.spec.id).filter((n) => n !== victim), `${victim} is no longer a member`);
  for (const name of topics) {
    const info = await admin.topics.info(name);
    t.ok(info.partitionList.every((p) => !p.replicas.includes(victim) && p.replicas.length === 3), `${name} still on the live nodes after the removal`);
  }
});
