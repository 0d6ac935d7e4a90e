// The cache with Redis as its homes' memory (--cache-backing redis://...): starts its own
// redis-server on a port of 23000-23999 (skips, saying why, only when the binary is
// absent), then 3 real nodes write through: every acknowledged value is in Redis under
// dsync:cache:KEY with its version; after the whole cluster is stopped and started again
// (in-process state gone), every key reads back its value from Redis through a new home.

import { spawn, spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import { Redis } from 'ioredis';
import t from 'tap';
import { Client } from '../../client/index.js';
import { decodeRecord } from '../../server/services/cache/backing.js';
import { cachePorts, startCacheCluster } from './cache-helpers.js';
import { sleep, tempDir } from './helpers/cluster.js';

/** Whether something accepts TCP connections on the port. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

const hasRedis = spawnSync('redis-server', ['--version']).status === 0;

t.test('write-through values land in Redis and a restarted cluster reads them back', { skip: hasRedis ? false : 'redis-server is not installed (.ci/run installs it)' }, async (t) => {
  const [port] = await cachePorts(1);
  const dir = tempDir(t, 'dsync-redis-');
  const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  t.teardown(() => { server.kill('SIGKILL'); });
  for (let i = 0; !(await accepts(port as number)); i++) {
    if (i > 100) throw new Error(`redis-server did not listen on ${String(port)}`);
    await sleep(50);
  }
  const redis = new Redis({ port: port as number, host: '127.0.0.1', maxRetriesPerRequest: 1 });
  redis.on('error', () => {});
  t.teardown(() => { redis.disconnect(); });
  const url = `redis://127.0.0.1:${port}`;
  const dataRoot = tempDir(t, 'dsync-cache-redis-');

  let nodes = await startCacheCluster(t, ['--cache-backing', url], dataRoot);
  let clients = await Promise.all(nodes.map((n) => Client.connect({ seeds: [n.address], requestTimeoutMs: 8_000 })));
  const values = new Map<string, string>();
  for (let i = 0; i < 20; i++) {
    const key = `r${i}`;
    const value = `value-${i}`;
    await (clients[i % 3] as Client).cache.set(key, value);
    values.set(key, value);
  }
  t.equal((await (clients[0] as Client).cache.stats()).backing, url, 'the node reports Redis as its backing');
  for (const [key, value] of values) {
    const raw = await redis.getBuffer(`dsync:cache:${key}`);
    t.not(raw, null, `${key} is in Redis once its set returned (write-through)`);
    const rec = raw === null ? null : decodeRecord(raw);
    t.equal(rec?.value === null || rec === null ? null : new TextDecoder().decode(rec.value), value, `Redis has ${key}'s value`);
    t.ok((rec?.version ?? 0) > 0, 'with its version');
  }
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(nodes.map((n) => n.stop()));

  // A restart of the whole cluster: every home starts empty and reads memory from Redis.
  nodes = await startCacheCluster(t, ['--cache-backing', url]);
  clients = await Promise.all(nodes.map((n) => Client.connect({ seeds: [n.address], requestTimeoutMs: 8_000 })));
  t.teardown(() => Promise.all(clients.map((c) => c.close())).then(() => undefined));
  for (const [key, value] of values) {
    t.equal(await (clients[1] as Client).cache.getString(key), value, `${key} survives the restart`);
  }
  await (clients[2] as Client).cache.set('r0', 'changed');
  t.equal(await (clients[0] as Client).cache.getString('r0'), 'changed', 'and takes new writes');
});
