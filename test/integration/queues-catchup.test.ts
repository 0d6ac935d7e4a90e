// A replica that was down while a partition's backlog was written, and the leader
// compacted past it, catches up through the streamed catch-up (real processes, 3 nodes)
// and then serves it. The partition snapshot carries only the store's range; the replica
// pulls the bodies from the leader's segment files in chunks (QueueCatchUpPull/Chunk)
// into a fresh incoming store before it installs the snapshot. (Not wiped: a node that
// lost its Raft log but kept its id is not Raft-safe, and a quiesced group whose leader
// believes it caught up never sends it anything.) Once caught up
// it gets its partition's leadership back (it is the preferred replica), one of the other
// replicas is killed, and a consumer must read every message published while it was away
// from it.

import t from 'tap';
import { Client } from '../../client/index.js';
import { sleep, TestCluster } from './helpers/cluster.js';
import { leaderOfGroup, queuePorts } from './queues-helpers.js';

async function metric(httpPort: number, pattern: RegExp): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  return Number(pattern.exec(text)?.[1] ?? 0);
}
const catchUp = (event: string): RegExp => new RegExp(`^dsync_queue_catchup_total\\{[^}]*event="${event}"[^}]*\\} (\\d+)`, 'm');

t.test('a replica behind the compaction streams the backlog in, then serves it without loss', async (t) => {
  const cluster = await TestCluster.start(t, { ports: queuePorts(4), extraArgs: ['--snapshot-entries', '100'] });
  const client = await Client.connect({ seeds: cluster.seeds, requestTimeoutMs: 10_000, maxRedirects: 40 });
  t.teardown(() => client.close());
  const info = await client.topics.create('backlog', { partitions: 1, replicas: 3 });
  const group = info.partitionList[0]?.groupId ?? -1;
  const preferred = info.partitionList[0]?.replicas[0] ?? '';
  const victim = cluster.node(preferred);
  await victim.kill9();

  // Several pulls' worth of bodies (a pull is at most 4 chunks of 1 MiB), then enough entries for the group to compact past them.
  const producer = client.producer('backlog');
  const body = new Uint8Array(64 * 1024).fill(7);
  const bigCount = 80;
  for (let i = 0; i < bigCount; i += 8) {
    await Promise.all(Array.from({ length: 8 }, (_, k) => producer.publish(`big-${i + k}`, body)));
  }
  for (let i = 0; i < 150; i++) await producer.publish(`small-${i}`, `v${i}`);
  const leader = await leaderOfGroup(client, cluster.seeds, group);
  const leaderStatus = (await client.status(cluster.node(leader).address)).groups.find((g) => g.group === group);
  t.ok(leaderStatus !== undefined && leaderStatus.commit > 150, `the partition committed ${leaderStatus?.commit} entries with ${preferred} down`);

  await victim.restart();
  const deadline = Date.now() + 30_000;
  let applied = 0;
  while (Date.now() < deadline) {
    try {
      applied = (await client.status(victim.address)).groups.find((g) => g.group === group)?.applied ?? 0;
    } catch {
      // still starting
    }
    if (applied >= (leaderStatus?.commit ?? Infinity)) break;
    await sleep(200);
  }
  t.ok(applied >= (leaderStatus?.commit ?? Infinity), `the restarted replica applied up to ${applied} (the leader had committed ${leaderStatus?.commit})`);
  const bytesIn = await metric(victim.spec.httpPort, catchUp('bytes_in'));
  t.equal(await metric(victim.spec.httpPort, catchUp('installed')), 1, 'it installed one snapshot after streaming its bodies in');
  t.ok(bytesIn >= bigCount * body.length, `${bytesIn} bytes of records streamed in (the backlog: ${bigCount * body.length} bytes of bodies)`);
  t.ok(await metric(victim.spec.httpPort, catchUp('chunks_in')) >= Math.ceil(bytesIn / (1024 * 1024)), 'in chunks of at most 1 MiB');
  t.ok(await metric(cluster.node(leader).spec.httpPort, catchUp('bytes_out')) >= bytesIn, `the leader ${leader} sent them from its segment files`);

  // The preferred replica gets its leadership back once caught up; then only it and one other replica are left.
  const back = await leaderOfGroup(client, [victim.address], group, 20_000);
  t.equal(back, preferred, `${preferred} leads its partition again`);
  const other = cluster.nodes.find((n) => n.spec.id !== preferred && n.spec.id !== leader) ?? cluster.node(leader);
  await other.kill9();
  const consumer = client.consumer('backlog', 'readers', { waitMs: 1_000 });
  const seen = new Set<string>();
  const want = bigCount + 150;
  let badBodies = 0;
  const until = Date.now() + 30_000;
  const it = consumer[Symbol.asyncIterator]();
  while (seen.size < want && Date.now() < until) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const idle = new Promise<null>((resolve) => { timer = setTimeout(() => resolve(null), Math.max(1, until - Date.now())); });
    const next = await Promise.race([it.next(), idle]);
    clearTimeout(timer);
    if (next === null || next.done === true) break;
    const key = new TextDecoder().decode(next.value.key);
    if (key.startsWith('big-') && (next.value.value.length !== body.length || next.value.value.some((b) => b !== 7))) badBodies++;
    seen.add(key);
    await next.value.ack();
  }
  await consumer.close().catch(() => {});
  t.equal(seen.size, want, `every message published while ${preferred} was away is consumed, ${other.spec.id} down`);
  t.equal(badBodies, 0, 'with its body intact');
  t.equal(await leaderOfGroup(client, [victim.address], group), preferred, `served by ${preferred}, from the store it streamed in`);
});
