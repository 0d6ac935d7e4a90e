// The queue commands of the `dsync` CLI against a running 3-node cluster:
// `topic create` / `topic info` / `topic list`, `publish` (prints partition and offset),
// `consume --count` (prints the message and acks it: a second consume of the same group
// finds nothing), bad input (unknown topic, missing arguments) with a non-zero exit and
// a message, `topic replay` (by offset and by time), dead letters and `dlq redrive`
// (the group that gave up gets the message again), and the console's `topics`,
// `topic NAME` and `ring`.

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

  // Replay: the acked message is delivered again once the group's cursor moves back.
  const partition = /partition ([01])/.exec(pub.stdout)?.[1] ?? '0';
  const replay = await runDsync(t, ['topic', 'replay', 'jobs', 'readers', '--partition', partition, '--offset', '0', ...seeds]);
  t.equal(replay.code, 0, `topic replay exits 0 ${replay.stderr}`);
  t.match(replay.stdout, new RegExp(`readers in partition ${partition} now at offset 0`));
  const replayed = await runDsync(t, ['consume', 'jobs', 'readers', '--count', '1', '--json', ...seeds]);
  t.equal((JSON.parse(replayed.stdout.trim()) as { value: string }).value, 'hello from the cli', 'the replayed message comes again');
  const byTime = await runDsync(t, ['topic', 'replay', 'jobs', 'readers', '--from-time', new Date(0).toISOString(), '--json', ...seeds]);
  t.equal((JSON.parse(byTime.stdout) as unknown[]).length, 2, 'replay by time moves every partition');
  const badReplay = await runDsync(t, ['topic', 'replay', 'jobs', 'readers', '--offset', '0', ...seeds]);
  t.equal(badReplay.code, 2, 'replay by offset without --partition is a usage error');
  t.match(badReplay.stderr, /--partition and --offset/);

  // Dead letters and redrive: one delivery allowed; the nacked message goes to work.dlq, redrive brings it back to its group.
  t.equal((await runDsync(t, ['topic', 'create', 'work', '--partitions', '1', '--max-deliveries', '1', ...seeds])).code, 0);
  t.equal((await runDsync(t, ['publish', 'work', 'k', 'poison', ...seeds])).code, 0);
  const failed = await runDsync(t, ['consume', 'work', 'workers', '--count', '1', '--no-ack', ...seeds]);
  t.equal(failed.code, 0, `consume --no-ack exits 0 ${failed.stderr}`);
  const dead = await runDsync(t, ['consume', 'work.dlq', 'inspect', '--count', '1', '--json', ...seeds]);
  const letter = JSON.parse(dead.stdout.trim()) as { value: string; headers: Record<string, string> };
  t.same({ value: letter.value, group: letter.headers['dsync-dlq-group'] }, { value: 'poison', group: 'workers' }, 'the dead letter names its group');
  const redrive = await runDsync(t, ['dlq', 'redrive', 'work', '--idle', '500', '--json', ...seeds]);
  t.equal(redrive.code, 0, `dlq redrive exits 0 ${redrive.stderr}`);
  t.same(JSON.parse(redrive.stdout), { topic: 'work', redriven: 1 }, 'one dead letter moved back');
  const back = await runDsync(t, ['consume', 'work', 'workers', '--count', '1', '--json', ...seeds]);
  const again2 = JSON.parse(back.stdout.trim()) as { value: string; deliveries: number; headers: Record<string, string> };
  t.same({ value: again2.value, deliveries: again2.deliveries, dlqHeader: again2.headers['dsync-dlq-group'] }, { value: 'poison', deliveries: 1, dlqHeader: undefined },
    'the group that gave up gets it again, as a first delivery without dead-letter headers');
  const none = await runDsync(t, ['dlq', 'redrive', 'work', '--idle', '300', '--json', ...seeds]);
  t.same(JSON.parse(none.stdout), { topic: 'work', redriven: 0 }, 'a second redrive finds nothing');
  const wrong = await runDsync(t, ['dlq', 'redrive', 'work.dlq', ...seeds]);
  t.equal(wrong.code, 1, 'redrive of a dead-letter topic exits 1');
  t.match(wrong.stderr, /BAD_REQUEST: work.dlq is a dead-letter topic/);

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
