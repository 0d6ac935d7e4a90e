// A follower that fell behind a compaction catches up from a snapshot larger than a peer
// frame (real processes, 3 nodes). A queue partition's snapshot carries its retained bodies,
// so a backlog of a few MiB makes it bigger than the 4 MiB frame limit; before snapshots went
// in chunks, such a snapshot was logged as too large and never sent, and the follower stayed
// behind for good.

import t from 'tap';
import { Client } from '../../client/index.js';
import { frameBytesMax } from '../../core/constants.js';
import { sleep, TestCluster } from './helpers/cluster.js';
import { leaderOfGroup, queuePorts } from './queues-helpers.js';

async function metric(httpPort: number, pattern: RegExp): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  return Number(pattern.exec(text)?.[1] ?? 0);
}

t.test('a follower behind a compaction catches up from a snapshot larger than a peer frame', async (t) => {
  const cluster = await TestCluster.start(t, { ports: queuePorts(4), extraArgs: ['--snapshot-entries', '100'] });
  const client = await Client.connect({ seeds: cluster.seeds, requestTimeoutMs: 10_000, maxRedirects: 40 });
  t.teardown(() => client.close());
  const info = await client.topics.create('backlog', { partitions: 1, replicas: 3 });
  const group = info.partitionList[0]?.groupId ?? -1;
  const leader = await leaderOfGroup(client, cluster.seeds, group);
  const lagging = cluster.nodes.find((n) => n.spec.id !== leader);
  if (lagging === undefined) throw new Error('no follower');
  await lagging.kill9();

  // About 1.5 frames of retained bodies, then enough entries for the group to compact past them.
  const producer = client.producer('backlog');
  const body = new Uint8Array(256 * 1024).fill(7);
  const bigCount = Math.ceil((1.5 * frameBytesMax) / body.length);
  for (let i = 0; i < bigCount; i++) await producer.publish(`big-${i}`, body);
  for (let i = 0; i < 150; i++) await producer.publish(`small-${i}`, `v${i}`);
  const leaderStatus = (await client.status(cluster.node(leader).address)).groups.find((g) => g.group === group);
  t.ok(leaderStatus !== undefined && leaderStatus.commit > 150, `the partition committed ${leaderStatus?.commit} entries with a node down`);

  await lagging.restart();
  const deadline = Date.now() + 30_000;
  let applied = 0;
  while (Date.now() < deadline) {
    try {
      applied = (await client.status(lagging.address)).groups.find((g) => g.group === group)?.applied ?? 0;
    } catch {
      // still starting
    }
    if (applied >= (leaderStatus?.commit ?? Infinity)) break;
    await sleep(200);
  }
  t.ok(applied >= (leaderStatus?.commit ?? Infinity), `the restarted follower applied up to ${applied} (the leader had committed ${leaderStatus?.commit})`);
  t.ok(await metric(lagging.spec.httpPort, /^dsync_raft_snapshot_transfers_total\{[^}]*outcome="received"[^}]*\} (\d+)/m) >= 1, 'through a snapshot received in chunks');
  t.ok(await metric(cluster.node(leader).spec.httpPort, /^dsync_raft_snapshot_transfers_total\{[^}]*outcome="sent"[^}]*\} (\d+)/m) >= 1, 'that the leader sent in chunks');

  // The caught-up replica serves the whole backlog once it is the only one left with the leader gone.
  await cluster.node(leader).kill9();
  const consumer = client.consumer('backlog', 'readers', { waitMs: 1_000 });
  const seen = new Set<string>();
  const want = bigCount + 150;
  const until = Date.now() + 30_000;
  const it = consumer[Symbol.asyncIterator]();
  while (seen.size < want && Date.now() < until) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const idle = new Promise<null>((resolve) => { timer = setTimeout(() => resolve(null), Math.max(1, until - Date.now())); });
    const next = await Promise.race([it.next(), idle]);
    clearTimeout(timer);
    if (next === null || next.done === true) break;
    seen.add(new TextDecoder().decode(next.value.key));
    await next.value.ack();
  }
  await consumer.close().catch(() => {});
  t.equal(seen.size, want, 'every message published while the follower was down is consumed after the leader died');
});
