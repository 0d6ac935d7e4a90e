// QUEUE_REPLICAS and MESSAGE_RETENTION_PERIOD (issue 12): a node's defaults for topics
// created without saying. A 1-voter node with QUEUE_REPLICAS=3 gives a new topic one
// replica (never more than the voters) and MESSAGE_RETENTION_PERIOD's age retention;
// a topic that says its own settings keeps them; a bad value stops the node at start
// naming the setting.

import t from 'tap';
import { Client } from '../../client/index.js';
import { freePorts, nodeArgs, runDsync, tempDir, TestNode } from './helpers/cluster.js';

t.test('topic defaults come from the node settings', async (t) => {
  const [port, httpPort, consolePort] = await freePorts(3);
  const spec = { id: 'n1', port: port!, httpPort: httpPort!, consolePort: consolePort!, dataDir: tempDir(t), peers: [] };
  const node = new TestNode(t, spec, ['--queue-replicas', '3', '--message-retention-period', '60000']);
  await node.start();
  const client = await Client.connect({ seeds: [node.address] });
  t.teardown(() => client.close());
  const plain = await client.topics.create('defaults', { partitions: 2 });
  t.equal(plain.replicas, 1, 'QUEUE_REPLICAS=3 on a 1-voter cluster gives one replica');
  t.equal(plain.retention.maxAgeMs, 60_000, 'MESSAGE_RETENTION_PERIOD is the age retention');
  const own = await client.topics.create('own', { partitions: 1, replicas: 1, retention: { maxAgeMs: 5_000, maxBytes: 0, dropUnacked: false } });
  t.equal(own.retention.maxAgeMs, 5_000, 'a topic that says its retention keeps it');
  await node.stop();

  const bad = await runDsync(t, nodeArgs(spec), { env: { QUEUE_REPLICAS: '0' } });
  t.equal(bad.code, 2, 'QUEUE_REPLICAS=0 stops the start');
  t.match(bad.stderr, /QUEUE_REPLICAS/, 'naming the setting');
  const badRetention = await runDsync(t, nodeArgs(spec), { env: { MESSAGE_RETENTION_PERIOD: '1h' } });
  t.equal(badRetention.code, 2);
  t.match(badRetention.stderr, /MESSAGE_RETENTION_PERIOD: "1h" is not a whole number/);
});
