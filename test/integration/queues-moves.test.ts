// Queue partitions move to a node that joins, over real `dsync node` processes (issue 10,
// "A fourth node joins and partitions move to it while producers and consumers run,
// without loss"): a 3-node cluster with a topic of 4 partitions x 3 replicas (and its
// dead-letter topic, as many again: 24 replicas, 8 per node); 2 producers publish and 2
// consumers of one group consume and ack the whole time; a 4th node starts with --join,
// becomes a voter, and group 0's leader moves partitions onto it (learner, catch up,
// promote, remove the old replica) until every node holds 5 to 7 replicas (within one
// of the mean) and every move has settled. Then the producers stop and every acknowledged publish must be consumed
// (duplicates counted and printed, not failed); the new node must be a voter of the
// groups placed on it, and the nodes a partition left must have dropped its group.
// Small for CI (QUEUE_MOVES_MESSAGES caps the publishes, default 6,000; the producers
// stop earlier once the moves settled); ports from 25500-25999.

import { join } from 'node:path';
import t from 'tap';
import { Client, DsyncError, type TopicInfo } from '../../client/index.js';
import { freePorts, pollUntil, sleep, TestCluster, TestNode } from './helpers/cluster.js';
import { ConsumeLoad, duplicates } from './queues-helpers.js';

const messagesMax = Number(process.env['QUEUE_MOVES_MESSAGES'] ?? 6_000);
const producersCount = 2;
const inFlightPerProducer = 8;
/** How long the moves may take once the 4th node is a voter (a loaded CI machine is slow). */
const movesTimeoutMs = 60_000;
const drainMs = 30_000;

function waitUntil<T>(what: string, fn: () => Promise<T | null>, timeoutMs: number): Promise<T> {
  return pollUntil(what, fn, timeoutMs, 200);
}

/** Publishes `${tag}-${i}` with a few in flight until stopped or `max` were sent; remembers what was acknowledged. */
class SteadyPublisher {
  readonly acked = new Set<string>();
  failures: string[] = [];
  stop = false;
  sent = 0;
  readonly done: Promise<void>;

  constructor(client: Client, topic: string, readonly tag: string, max: number) {
    const producer = client.producer(topic);
    const worker = async (): Promise<void> => {
      while (!this.stop && this.sent < max) {
        const id = `${tag}-${this.sent++}`;
        try {
          await producer.publish(`key-${id}`, id);
          this.acked.add(id);
        } catch (err) {
          if (this.failures.length < 20) this.failures.push(err instanceof DsyncError ? `${err.code} ${err.message}` : String(err));
        }
        // Spread the publishes over the join and the moves rather than sending them all at once.
        await sleep(2);
      }
    };
    this.done = Promise.all(Array.from({ length: inFlightPerProducer }, worker)).then(() => undefined);
  }
}

const loads = (infos: readonly TopicInfo[]): Map<string, number> => {
  const load = new Map<string, number>();
  for (const info of infos) for (const p of info.partitionList) for (const r of p.replicas) load.set(r, (load.get(r) ?? 0) + 1);
  return load;
};

t.test('a 4th node joins under producers and consumers; partitions move to it; nothing acknowledged is lost', async (t) => {
  const ports = await freePorts(12);
  const cluster = await TestCluster.start(t, { nodes: 3, ports: ports.slice(0, 9) });
  const [port, httpPort, consolePort] = ports.slice(9);
  const n4 = new TestNode(t, { id: 'n4', port: port!, httpPort: httpPort!, consolePort: consolePort!, dataDir: join(cluster.dataRoot, 'n4'), peers: [] },
    ['--join', cluster.node('n1').address]);
  t.teardown(() => n4.stop());
  const clientOptions = { seeds: cluster.seeds, requestTimeoutMs: 10_000, maxRedirects: 40 };
  const admin = await Client.connect(clientOptions);
  t.teardown(() => admin.close());
  const created = await admin.topics.create('moving', { partitions: 4, replicas: 3, ackDeadlineMs: 3_000, maxDeliveries: 0 });
  t.equal(created.partitionList.length, 4, 'four partitions');
  const before = [created, await admin.topics.info('moving.dlq')];

  const clients = await Promise.all(Array.from({ length: 2 * producersCount }, () => Client.connect(clientOptions)));
  t.teardown(() => Promise.all(clients.map((c) => c.close())));
  const producers = clients.slice(0, producersCount).map((c, i) => new SteadyPublisher(c, 'moving', `p${i}`, messagesMax / producersCount));
  t.teardown(() => { for (const p of producers) p.stop = true; });
  const consumers = clients.slice(producersCount).map((c) => new ConsumeLoad(c.consumer('moving', 'workers', { maxInFlight: 64, waitMs: 1_000 })));
  await waitUntil('publishes before the join', async () => (producers.every((p) => p.acked.size >= 50) ? true : null), 20_000);

  // --- the join; group 0's leader then moves partitions onto n4 ---
  const ackedAtJoin = producers.reduce((n, p) => n + p.acked.size, 0);
  const joinStartedMs = Date.now();
  await n4.start();
  await waitUntil('n4 to be a voter', async () => ((await admin.cluster.members()).some((m) => m.id === 'n4' && m.role === 'voter') ? true : null), 30_000);
  const voterAtMs = Date.now();
  const settled = await waitUntil('every move to settle with 5-7 replicas per node', async () => {
    const infos = [await admin.topics.info('moving'), await admin.topics.info('moving.dlq')];
    const load = loads(infos);
    const moving = infos.some((i) => i.partitionList.some((p) => p.hosts !== undefined));
    return !moving && ['n1', 'n2', 'n3', 'n4'].every((n) => (load.get(n) ?? 0) >= 5 && (load.get(n) ?? 0) <= 7) ? infos : null;
  }, movesTimeoutMs);
  const ackedAtSettle = producers.reduce((n, p) => n + p.acked.size, 0);
  t.comment(`n4 started and became a voter in ${voterAtMs - joinStartedMs} ms; the moves settled ${Date.now() - voterAtMs} ms later`);
  t.ok(ackedAtSettle > ackedAtJoin, `publishes went on during the moves (${ackedAtJoin} acknowledged at the join, ${ackedAtSettle} once settled)`);
  const movedTo4 = settled.flatMap((i) => i.partitionList.filter((p) => p.replicas.includes('n4')).map((p) => ({ topic: i.name, ...p })));
  t.ok(movedTo4.length >= 5, `${movedTo4.length} partition replicas moved to n4: ${movedTo4.map((p) => `${p.topic}/${p.index}@${p.epoch}`).join(' ')}`);
  t.ok(movedTo4.every((p) => p.epoch >= 1), 'each moved partition\'s epoch was bumped');
  // The HTTP gateway shows the same epochs (and, once settled, hosts = replicas).
  // Topic info is answered by group 0's leader (the others answer NOT_LEADER naming it): ask each node's gateway.
  type TopicJson = { partitionList?: { index: number; epoch: number; replicas: string[]; hosts: string[] }[] };
  let viaHttp: TopicJson = {};
  for (const n of [...cluster.nodes, n4]) {
    viaHttp = await (await fetch(`http://127.0.0.1:${n.spec.httpPort}/v1/topics/${encodeURIComponent(movedTo4[0]?.topic ?? '')}`)).json() as TopicJson;
    if (Array.isArray(viaHttp.partitionList)) break;
  }
  t.ok(Array.isArray(viaHttp.partitionList), `GET /v1/topics/NAME answers the topic: ${JSON.stringify(viaHttp).slice(0, 300)}`);
  for (const p of movedTo4.filter((m) => m.topic === movedTo4[0]?.topic)) {
    const h = viaHttp.partitionList?.find((x) => x.index === p.index);
    t.equal(h?.epoch, p.epoch, `GET /v1/topics shows ${p.topic}/${p.index}'s epoch`);
    t.same(h?.hosts, h?.replicas, 'and, settled, its hosts are its replicas');
  }

  // n4 is a voter of the groups placed on it; the nodes they left dropped them.
  const n4Groups = await waitUntil('n4 to be a voter of every group placed on it', async () => {
    const s = await admin.status(n4.address);
    return movedTo4.every((p) => s.groups.some((g) => g.group === p.groupId && g.voters.includes('n4'))) ? s.groups : null;
  }, 20_000);
  t.ok(n4Groups.length >= 1 + movedTo4.length, `n4 hosts group 0 and its ${movedTo4.length} partition groups (${n4Groups.length} groups)`);
  for (const p of movedTo4) {
    const left = before.flatMap((i) => i.partitionList).find((c) => c.groupId === p.groupId)?.replicas.filter((r) => !p.replicas.includes(r)) ?? [];
    t.equal(left.length, 1, `${p.topic}/${p.index} left one node`);
    for (const n of left) {
      const s = await waitUntil(`${n} to drop group ${p.groupId}`, async () => {
        const st = await admin.status(cluster.node(n).address);
        return st.groups.some((g) => g.group === p.groupId) ? null : st;
      }, 20_000);
      t.notOk(s.groups.some((g) => g.group === p.groupId), `${n} left ${p.topic}/${p.index} and dropped its group`);
    }
  }

  // Every node's /metrics: the moves group 0's leader planned and settled, the steps partition leaders took.
  const moveEvents = new Map<string, number>();
  for (const n of [...cluster.nodes, n4]) {
    const text = await (await fetch(`http://127.0.0.1:${n.spec.httpPort}/metrics`)).text();
    for (const m of text.matchAll(/^dsync_queue_partition_moves_total\{[^}]*event="(\w+)"[^}]*\} (\d+)/gm)) {
      moveEvents.set(m[1] as string, (moveEvents.get(m[1] as string) ?? 0) + Number(m[2]));
    }
  }
  t.ok((moveEvents.get('settled') ?? 0) >= movedTo4.length && (moveEvents.get('step') ?? 0) >= 3 * movedTo4.length,
    `dsync_queue_partition_moves_total: ${JSON.stringify([...moveEvents])} (each move: a learner, a promotion, a removal)`);

  // --- a little more load on the new placement, then stop and drain ---
  const target = producers.map((p) => p.acked.size + 100);
  await waitUntil('publishes on the new placement', async () => (producers.every((p, i) => p.acked.size >= (target[i] ?? 0) || p.sent >= messagesMax / producersCount) ? true : null), 30_000);
  for (const p of producers) p.stop = true;
  await Promise.all(producers.map((p) => p.done));
  const acked = new Set(producers.flatMap((p) => [...p.acked]));
  t.comment(`${acked.size} publishes acknowledged; failures seen: ${producers.flatMap((p) => p.failures).slice(0, 5).join(' | ')}`);
  const deadline = Date.now() + drainMs;
  let missing = [...acked];
  while (missing.length > 0 && Date.now() < deadline) {
    await sleep(100);
    missing = missing.filter((id) => !consumers.some((c) => c.seen.has(id)));
  }
  t.same(missing.slice(0, 20), [], `every acknowledged publish consumed at least once (${missing.length} missing of ${acked.size})`);
  const dups = duplicates(consumers);
  t.comment(`${dups.size} values delivered more than once: ${[...dups].slice(0, 10).map(([v, n]) => `${v}x${n}`).join(' ')}`);
  await Promise.all(consumers.map((c) => c.stop()));
});
