// The queue commands of the `dsync` CLI against a running 3-node cluster:
// `topic create` / `topic info` / `topic list`, `publish` (prints partition and offset),
// `consume --count` (prints the message and acks it: a second consume of the same group
// finds nothing), bad input (unknown topic, missing arguments) with a non-zero exit and
// a message, and the console's `topics`, `topic NAME` and `ring`.

import t from 'tap';
import { runDsync, TestCluster } from './helpers/cluster.js';
import { queuePorts } from './queues-helpers.js';
import { consoleCommand } from './raft-helpers.js';

t.test('dsync topic / publish / consume on a running cluster', async (t) => {
  const cluster = await TestCluster.start(t, { ports: queuePorts(2) });
  const seeds = ['--seeds', cluster.seeds.join(',')];

  const created = await runDsync(t, ['topic', 'create', 'jobs', '--partitions', '2', '--replicas', '3', ...seeds]);
  t.equal(created.code, 0, `topic create exits 0 ${created.stderr}`);
  t.match(created.stdout, /created topic jobs \(id \d+\): 2 partitions x 3 replicas/);

  const info = await runDsync(t, ['topic', 'info', 'jobs', '--json', ...seeds]);
  t.equal(info.code, 0, `topic info exits 0 ${info.stderr}`);
  const parsed = JSON.parse(info.stdout) as { name: string; partitionList: { replicas: string[] }[]; deadLetterTopic: string };
  t.equal(parsed.name, 'jobs');
  t.equal(parsed.partitionList.length, 2, 'two partitions in the JSON');
  t.equal(parsed.deadLetterTopic, 'jobs.dlq');

  const list = await runDsync(t, ['topic', 'list', ...seeds]);
  t.match(list.stdout, /jobs {2}2 partitions x 3 replicas/, 'topic list shows it');

  const pub = await runDsync(t, ['publish', 'jobs', 'user-7', 'hello from the cli', '--header', 'kind=greeting', ...seeds]);
  t.equal(pub.code, 0, `publish exits 0 ${pub.stderr}`);
  t.match(pub.stdout, /published to jobs partition [01] offset 0/);

  const consumed = await runDsync(t, ['consume', 'jobs', 'readers', '--count', '1', '--json', ...seeds]);
  t.equal(consumed.code, 0, `consume exits 0 ${consumed.stderr}`);
  const m = JSON.parse(consumed.stdout.trim()) as { key: string; value: string; headers: Record<string, string>; deliveries: number };
  t.same({ key: m.key, value: m.value, kind: m.headers['kind'], deliveries: m.deliveries },
    { key: 'user-7', value: 'hello from the cli', kind: 'greeting', deliveries: 1 }, 'the message, its header, first delivery');

  const again = await runDsync(t, ['consume', 'jobs', 'readers', '--wait', '1500', ...seeds]);
  t.equal(again.code, 0);
  t.equal(again.stdout, '', 'it was acked: the group has nothing more');

  const unknown = await runDsync(t, ['publish', 'nope', 'k', 'v', ...seeds]);
  t.equal(unknown.code, 1, 'publishing to an unknown topic exits 1');
  t.match(unknown.stderr, /NOT_FOUND: topic nope does not exist/);
  const usage = await runDsync(t, ['publish', 'jobs', ...seeds]);
  t.equal(usage.code, 2, 'missing arguments exit 2');
  t.match(usage.stderr, /needs TOPIC KEY VALUE/);

  const consolePort = cluster.nodes[0]?.spec.consolePort ?? 0;
  t.match(await consoleCommand(consolePort, 'topics'), /jobs id=\d+ partitions=2 replicas=3/, 'console: topics');
  t.match(await consoleCommand(consolePort, 'topic jobs'), /p0 group=\d+ replicas=\S+ leader=/, 'console: topic NAME');
  t.match(await consoleCommand(consolePort, 'ring'), /3 members x 150 virtual nodes[\s\S]*n1 share=/, 'console: ring');

  const deleted = await runDsync(t, ['topic', 'delete', 'jobs', ...seeds]);
  t.equal(deleted.code, 0);
  const gone = await runDsync(t, ['topic', 'info', 'jobs', ...seeds]);
  t.equal(gone.code, 1, 'info of a deleted topic exits 1');
  t.match(gone.stderr, /NOT_FOUND/);
});
