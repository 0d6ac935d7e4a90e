// Quiesced groups over real processes: a 3-node cluster hosting MANY_GROUPS_TOPICS topics
// of MANY_GROUPS_PARTITIONS partitions x 3 replicas (each with its .dlq topic: 2 x topics
// x partitions groups). Every partition gets acknowledged publishes; idle, every partition
// group quiesces on every node; then the node leading the most groups is killed -9: every
// group elects a leader among the two survivors, and a fresh consumer group reads every
// acknowledged message back. CI runs 1 topic of 6 partitions (12 groups);
// MANY_GROUPS_TOPICS=2 MANY_GROUPS_PARTITIONS=125 is the issue's 500 groups.

import t from 'tap';
import { Client } from '../../client/index.js';
import { leadersByNode, quiescedByNode, startManyGroupCluster, waitForLeaders } from './helpers/many-groups.js';
import { freePorts, sleep } from './helpers/cluster.js';

const topicsCount = Number(process.env['MANY_GROUPS_TOPICS'] ?? 1);
const partitions = Number(process.env['MANY_GROUPS_PARTITIONS'] ?? 6);
/** Bounds on the waits (never asserted as timing: a loaded machine may need them). */
const quiesceWaitMs = 30_000;
const electWaitMs = 60_000;
const consumeWaitMs = 60_000;

t.setTimeout(300_000);

t.test(`${2 * topicsCount * partitions} quiesced groups: kill -9 the node leading most, every group elects again and keeps what was acknowledged`, async (t) => {
  const ports = await freePorts(9);
  const { cluster, control, topics, groups } = await startManyGroupCluster(t, { topics: topicsCount, partitions, ports, readyTimeoutMs: electWaitMs });
  const client = await Client.connect({ seeds: cluster.seeds, requestTimeoutMs: 20_000, maxRedirects: 40 });
  t.teardown(() => client.close());

  // Acknowledged publishes, at least one per partition of each topic.
  const acked = new Map<string, Set<string>>();
  for (const topic of topics) {
    const producer = client.producer(topic);
    const values = new Set<string>();
    const covered = new Set<number>();
    for (let i = 0; covered.size < partitions && i < partitions * 50; i++) {
      const value = `${topic}-${i}`;
      const r = await producer.publish(`k${i}`, value);
      covered.add(r.partition);
      values.add(value);
    }
    t.equal(covered.size, partitions, `${topic}: every partition has acknowledged messages`);
    acked.set(topic, values);
  }

  // Idle: every partition group quiesces on every node.
  const partitionGroups = new Set(groups);
  const allQuiesced = async (): Promise<number> => {
    let awake = 0;
    for (const n of cluster.nodes) {
      const s = await control.status(n.address);
      awake += s.groups.filter((g) => partitionGroups.has(g.group) && !g.quiesced).length;
    }
    return awake;
  };
  let awake = await allQuiesced();
  for (const deadline = Date.now() + quiesceWaitMs; awake > 0 && Date.now() < deadline;) {
    await sleep(250);
    awake = await allQuiesced();
  }
  t.equal(awake, 0, `every replica of the ${groups.length} partition groups quiesced (${[...await quiescedByNode(control, cluster)].map(([id, q]) => `${id}: ${q}`).join(', ')})`);

  // The node leading most groups (group 0 included) dies.
  const everyGroup = [0, ...groups];
  const leaders = await waitForLeaders(control, cluster, everyGroup, electWaitMs);
  const ledCount = new Map<string, number>();
  for (const leader of leaders.values()) ledCount.set(leader, (ledCount.get(leader) ?? 0) + 1);
  const [victimId, victimLed] = [...ledCount].sort((a, b) => b[1] - a[1])[0] as [string, number];
  t.ok(victimLed >= everyGroup.length / 3, `${victimId} leads ${victimLed} of ${everyGroup.length} groups`);
  const killedAt = Date.now();
  await cluster.node(victimId).kill9();

  const after = await waitForLeaders(control, cluster, everyGroup, electWaitMs, [victimId]);
  t.comment(`every group led by a survivor ${Date.now() - killedAt} ms after the kill`);
  t.equal(after.size, everyGroup.length, 'every group has a leader');
  t.ok([...after.values()].every((l) => l !== victimId), 'none of them is the killed node');
  const views = await leadersByNode(control, cluster);
  t.equal(views.size, 2, 'the two survivors answer');

  // Every acknowledged message is read back from the new leaders.
  for (const topic of topics) {
    const want = acked.get(topic) as Set<string>;
    const seen = new Set<string>();
    const consumer = client.consumer(topic, 'after-crash', { waitMs: 500 });
    const deadline = Date.now() + consumeWaitMs;
    const iterator = consumer[Symbol.asyncIterator]();
    while (seen.size < want.size && Date.now() < deadline) {
      const next = await Promise.race([iterator.next(), sleep(1_000).then(() => null)]);
      if (next === null || next.done === true) continue;
      seen.add(new TextDecoder().decode(next.value.value));
      await next.value.ack();
    }
    await consumer.close();
    const missing = [...want].filter((v) => !seen.has(v));
    t.same(missing, [], `${topic}: all ${want.size} acknowledged messages read back after the crash`);
  }
});
