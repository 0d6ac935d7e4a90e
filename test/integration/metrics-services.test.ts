// GET /metrics on a real node for the series the status page and the alerts read:
// Raft counters per group (proposals, elections, leader changes) and the queues'
// placement, offsets, lag and message events. Parsed with a real Prometheus text-format
// parser (parse-prometheus-text-format), and checked against what the test did: 3
// messages published, one nacked and redelivered, all acked; then 2 more published and
// left unconsumed, which must show as lag.

import { request } from 'node:http';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import t from 'tap';
import { Client } from '../../client/index.js';
import { freePorts, tempDir, TestNode } from './helpers/cluster.js';

function get(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (s: string) => { body += s; });
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Every sample of `name` whose labels include `labels`, as numbers. */
async function samples(port: number, name: string, labels: Record<string, string> = {}): Promise<number[]> {
  const families = parsePrometheusTextFormat(await get(port, '/metrics'));
  const family = families.find((f) => f.name === name);
  if (family === undefined) return [];
  return family.metrics.filter((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v)).map((m) => Number(m.value));
}

const total = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

/** Polls `read` until `ok` holds of its value (a leader is elected a few hundred ms after start); returns the last value. */
async function eventually<T>(read: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let v = await read();
  while (!ok(v) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    v = await read();
  }
  return v;
}

t.test('Raft and queue series move with the work done', async (t) => {
  const [port, httpPort, consolePort] = await freePorts(3);
  const node = new TestNode(t, { id: 'n1', port: port!, httpPort: httpPort!, consolePort: consolePort!, dataDir: tempDir(t), peers: [] });
  await node.start();
  const client = await Client.connect({ seeds: [node.address] });
  t.teardown(() => client.close());

  const text = await get(httpPort!, '/metrics');
  t.doesNotThrow(() => parsePrometheusTextFormat(text), 'the whole exposition parses as Prometheus text');
  t.ok(await eventually(() => samples(httpPort!, 'dsync_raft_elections_total', { group: '0' }).then(total), (n) => n >= 1) >= 1, 'group 0 had an election');
  t.ok(total(await samples(httpPort!, 'dsync_raft_leader_changes_total', { group: '0' })) >= 1, 'and learned its leader');
  const proposalsBefore = total(await samples(httpPort!, 'dsync_raft_proposals_total', { group: '0' }));

  await client.topics.create('m', { partitions: 1, replicas: 1 });
  t.ok(total(await samples(httpPort!, 'dsync_raft_proposals_total', { group: '0' })) > proposalsBefore, 'creating a topic proposed to group 0');
  const info = await eventually(() => samples(httpPort!, 'dsync_queue_partition_info', { topic: 'm', partition: '0', leader: 'n1', replicas: 'n1' }),
    (v) => v.length === 1);
  t.same(info, [1], 'the partition is placed on n1, which leads it');

  const producer = client.producer('m');
  for (let i = 0; i < 3; i++) await producer.publish(`k${i}`, `v${i}`);
  const consumer = client.consumer('m', 'g', { maxInFlight: 8 });
  let nacked = false;
  let acked = 0;
  for await (const msg of consumer) {
    if (!nacked) {
      nacked = true;
      await msg.nack(0);
      continue;
    }
    await msg.ack();
    if (++acked === 3) break;
  }
  const events = async (event: string): Promise<number> => total(await samples(httpPort!, 'dsync_queue_messages_total', { topic: 'm', event }));
  t.equal(await events('published'), 3, 'published 3');
  t.equal(await events('delivered'), 4, 'delivered 4 (one twice)');
  t.equal(await events('redelivered'), 1, 'redelivered 1');
  t.equal(await events('nacked'), 1, 'nacked 1');
  t.equal(await events('acked'), 3, 'acked 3');
  t.same(await samples(httpPort!, 'dsync_queue_log_end_offset', { topic: 'm', partition: '0' }), [3], 'log end offset 3');
  t.same(await samples(httpPort!, 'dsync_queue_lag', { topic: 'm', partition: '0', group: 'g' }), [0], 'the group has no lag');

  await producer.publish('k3', 'v3');
  await producer.publish('k4', 'v4');
  t.equal(await events('published'), 5, 'two more published');
  t.same(await samples(httpPort!, 'dsync_queue_lag', { topic: 'm', partition: '0', group: 'g' }), [2], 'and they are the group\'s lag');
  const backlog = await samples(httpPort!, 'dsync_queue_backlog_bytes', { topic: 'm', partition: '0' });
  t.equal(backlog.length, 1, 'the partition reports its retained bytes');
  t.ok((backlog[0] ?? 0) >= 5 * 4, `at least the five messages' keys and values (${backlog[0]} bytes)`);
  t.same(await samples(httpPort!, 'dsync_ring_share', { member: 'n1' }), [1], 'a one-node ring is all n1\'s');
  t.same(await samples(httpPort!, 'dsync_queue_dead_letters_pending', { topic: 'm', partition: '0' }), [0], 'no dead letters wait in the outbox');
  t.same(await samples(httpPort!, 'dsync_queue_dead_letters_dropped_total', {}), [0], 'none were dropped');

  // Locks: a grant, and a second client's wait that times out.
  const lockEvents = async (event: string): Promise<number> => total(await samples(httpPort!, 'dsync_lock_events_total', { event }));
  const grantedBefore = await lockEvents('granted');
  const held = await client.lock('metrics/lock');
  t.equal(await lockEvents('granted'), grantedBefore + 1, 'the grant is counted');
  const other = await Client.connect({ seeds: [node.address] });
  t.teardown(() => other.close());
  await t.rejects(other.lock('metrics/lock', { waitMs: 300 }), { code: 'LOCK_TIMEOUT' }, 'the second client waits in vain');
  t.equal(await eventually(() => lockEvents('wait_timeout'), (n) => n === 1), 1, 'and its timeout is counted');
  await held.release();

  // The WAL's fsync latency histogram, after all that work.
  const after = await get(httpPort!, '/metrics');
  const fsync = parsePrometheusTextFormat(after).find((f) => f.name === 'dsync_wal_fsync_duration_seconds');
  t.equal(fsync?.type, 'HISTOGRAM', 'WAL fsync latency is a histogram');
  const h = fsync?.metrics[0];
  const buckets = Object.entries(h?.buckets ?? {}).map(([le, n]) => [Number(le), Number(n)] as const).sort((a, b) => a[0] - b[0]);
  t.ok(buckets.length >= 10, `with its buckets (${buckets.length})`);
  t.ok(buckets.every(([, n], i) => i === 0 || n >= (buckets[i - 1]?.[1] ?? 0)), 'cumulative');
  // The parser keeps the buckets (+Inf is the count) but not _sum/_count; those are read from the text.
  const inf = Number(h?.buckets?.['+Inf']);
  t.ok(inf >= 1, `every fsync of that work counted (${inf})`);
  t.ok(Number(/^dsync_wal_fsync_duration_seconds_sum\{[^}]*\} (\S+)$/m.exec(after)?.[1]) > 0, 'taking time');
  await node.stop();
});
