// The cache with Redis as its homes' memory (--cache-backing redis://...): starts its own
// redis-server on a port of 23000-23999 (skips, saying why, only when the binary is
// absent), then 3 real nodes write through: every acknowledged value is in Redis under
// dsync:cache:KEY with its version; after the whole cluster is stopped and started again
// (in-process state gone), every key reads back its value from Redis through a new home.
// Redis unreachable: nodes pointed at a port where nothing listens start and answer; a set
// is refused UNAVAILABLE naming the store; once Redis is up writes work; when it dies
// mid-run, keys already cached keep being read while writes and new keys are refused the
// same way, and after it is back writes work again.

import { spawn, spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import { Redis } from 'ioredis';
import t from 'tap';
import { Client, DsyncError } from '../../client/index.js';
import { ErrorCode } from '../../protocol/errors.js';
import { Opcode } from '../../protocol/frame.js';
import { schema } from '../../protocol/index.js';
import { routerOf } from '../../client/client.js';
import { decodeRecord } from '../../server/services/cache/backing.js';
import { cacheRingFormed, cachePorts, startCacheCluster } from './cache-helpers.js';
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

/** A redis-server on `port`, killed at teardown (or by the returned function); resolves once it listens. */
async function startRedis(t: { teardown(fn: () => void): void }, port: number, dir: string): Promise<() => void> {
  const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  const kill = (): void => { server.kill('SIGKILL'); };
  t.teardown(kill);
  for (let i = 0; !(await accepts(port)); i++) {
    if (i > 100) throw new Error(`redis-server did not listen on ${String(port)}`);
    await sleep(50);
  }
  return kill;
}

/** One cache request to one node, without the client's retries: the reply, or the error code and message. */
async function rawCache(client: Client, address: string, opcode: number, key: string, value?: string): Promise<{ ok: boolean; code: string; message: string }> {
  const conn = await routerOf(client).connection(address);
  const req = value === undefined ? { key } : { key, value: new TextEncoder().encode(value), hasValue: true };
  try {
    await conn.request(opcode, schema.CacheRequest.encode(req).finish(), 4_000);
    return { ok: true, code: '', message: '' };
  } catch (err) {
    if (!(err instanceof DsyncError)) throw err;
    return { ok: false, code: err.code, message: err.message };
  }
}

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

  const nodes = await startCacheCluster(t, ['--cache-backing', url], dataRoot);
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

  // A restart of the whole cluster (same nodes, ports and data dirs): every home starts empty
  // and reads memory from Redis. Group 0 keeps the ring generation, so the restarted homes pass
  // the Redis fence; a brand-new cluster on this Redis would be refused (the fence's known limit).
  await Promise.all(nodes.map((n) => n.start()));
  await cacheRingFormed(nodes);
  clients = await Promise.all(nodes.map((n) => Client.connect({ seeds: [n.address], requestTimeoutMs: 8_000 })));
  t.teardown(() => Promise.all(clients.map((c) => c.close())).then(() => undefined));
  for (const [key, value] of values) {
    t.equal(await (clients[1] as Client).cache.getString(key), value, `${key} survives the restart`);
  }
  await (clients[2] as Client).cache.set('r0', 'changed');
  t.equal(await (clients[0] as Client).cache.getString('r0'), 'changed', 'and takes new writes');
});

/**
 * Until a node's connection to a (re)started Redis is back, a write times out with its fate
 * unknown (the client does not send it again by itself): this caller may, its value being the same.
 */
async function setOnceRedisIsBack(client: Client, key: string, value: string): Promise<void> {
  for (const deadline = Date.now() + 15_000; ;) {
    try {
      await client.cache.set(key, value);
      return;
    } catch (err) {
      if (!(err instanceof DsyncError) || err.code !== ErrorCode.TIMEOUT || Date.now() > deadline) throw err;
      await sleep(200);
    }
  }
}

t.test('Redis unreachable at start and mid-run: clear errors, cached keys still served', { skip: hasRedis ? false : 'redis-server is not installed (.ci/run installs it)' }, async (t) => {
  const [port] = await cachePorts(1);
  const dir = tempDir(t, 'dsync-redis-down-');
  const url = `redis://127.0.0.1:${port}`;
  const nodes = await startCacheCluster(t, ['--cache-backing', url, '--cache-lease', '500']);
  const clients = await Promise.all(nodes.map((n) => Client.connect({ seeds: [n.address], requestTimeoutMs: 8_000 })));
  t.teardown(() => Promise.all(clients.map((c) => c.close())).then(() => undefined));
  const [a, b] = clients as [Client, Client, Client];
  const addrA = nodes[0]?.address ?? '';
  t.equal((await a.cache.stats()).backing, url, 'a node whose Redis is down starts and answers');
  const refusedWithoutStore = async (what: string, opcode: number, key: string, value?: string): Promise<void> => {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const r = await rawCache(a, addrA, opcode, key, value);
      // The ring may still be forming (UNAVAILABLE for that reason): ask again until the store is named.
      if (!r.ok && (r.code === ErrorCode.UNAVAILABLE || r.code === ErrorCode.TIMEOUT) && r.message.includes(`backing store ${url}`)) {
        t.pass(`${what}: ${r.code} naming the store (${r.message})`);
        return;
      }
      if (r.ok || Date.now() > deadline) {
        t.fail(`${what}: ${r.ok ? 'answered' : `${r.code}: ${r.message}`}`);
        return;
      }
      await sleep(100);
    }
  };
  await refusedWithoutStore('a set while Redis was never up', Opcode.CacheSet, 'd1', 'lost');

  const killRedis = await startRedis(t, port as number, dir);
  await setOnceRedisIsBack(a, 'd1', 'v1');
  t.equal(await b.cache.getString('d1'), 'v1', 'once Redis is up, writes work');
  t.equal(await a.cache.getString('d1'), 'v1', 'and A caches the key');

  killRedis();
  await sleep(200);
  t.equal(await a.cache.getString('d1'), 'v1', 'Redis dead: a key already cached is still read on A');
  t.equal(await b.cache.getString('d1'), 'v1', 'and on B');
  await refusedWithoutStore('a new key while Redis is dead', Opcode.CacheGet, 'never-seen');

  await startRedis(t, port as number, dir);
  await setOnceRedisIsBack(a, 'd1', 'v2');
  t.equal(await b.cache.getString('d1'), 'v2', 'Redis back: writes work again');
  const stats = await a.cache.stats();
  t.ok((stats.counters['refusedBackingDown'] ?? 0) >= 2, 'the refusals are counted');
});
