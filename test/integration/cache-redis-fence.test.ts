// Redis shared by the cache's homes is fenced by the cache ring generation
// (server/services/cache/backing.ts): with a real redis-server on a port of the cache
// tests' range (cachePorts; skips, saying why, only when the binary is absent), two RedisBacking clients stand for the old home of
// a key (generation 5) and its new home after a ring change (generation 6). Once the new
// home has read the key, the old home's write, late or retried, is refused with
// BackingFencedError and Redis keeps the new home's value; the old home cannot read either.
// Before the fence, the old home's SET overwrote the new home's value (the first assertion
// on the refused write failed). Also: a fresh store takes any generation, and equal or newer
// generations keep working.
// A brand-new cluster (another cluster id, generations from 1) on a Redis an older cluster
// used at generation 9 takes it over, and the old cluster's homes are then refused whatever
// their generation. Before cluster ids its first read was refused (generation 9 > 1).

import { spawn, spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import t, { type Test } from 'tap';
import { Redis } from 'ioredis';
import { BackingFencedError, RedisBacking } from '../../server/services/cache/backing.js';
import { cachePorts } from './cache-helpers.js';
import { sleep, tempDir } from './helpers/cluster.js';

const hasRedis = spawnSync('redis-server', ['--version']).status === 0;

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

const enc = new TextEncoder();
const text = (v: Uint8Array | null | undefined): string | null => (v === null || v === undefined ? null : new TextDecoder().decode(v));

/** A redis-server of its own for the test (killed at teardown); its URL. */
async function startRedis(t: Test): Promise<string> {
  const [redisPort] = (await cachePorts(1)) as [number];
  const dir = tempDir(t, 'dsync-redis-fence-');
  const server = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  t.teardown(() => { server.kill('SIGKILL'); });
  for (let i = 0; !(await accepts(redisPort)); i++) {
    if (i > 100) throw new Error(`redis-server did not listen on ${redisPort}`);
    await sleep(50);
  }
  return `redis://127.0.0.1:${redisPort}`;
}

t.test('an old home cannot overwrite or read Redis after a newer home used it', { skip: hasRedis ? false : 'redis-server is not installed (.ci/run installs it)' }, async (t) => {
  const url = await startRedis(t);
  const oldHome = new RedisBacking(url, () => 0);
  const newHome = new RedisBacking(url, () => 0);
  t.teardown(async () => { await oldHome.close(); await newHome.close(); });

  // Generation 5 serves the key first: a fresh store takes it.
  await oldHome.write('k', { value: enc.encode('v1'), version: 1, expiresAtMs: 0 }, 5);
  t.equal(text((await oldHome.read('k', 5))?.value), 'v1', 'the old home reads its own write');

  // The ring changes: the key's new home loads it (generation 6), then writes.
  t.equal(text((await newHome.read('k', 6))?.value), 'v1', 'the new home reads what the old one wrote before');
  await newHome.write('k', { value: enc.encode('v2'), version: 3, expiresAtMs: 0 }, 6);

  // The old home's write arrives late (in flight, or retried after Redis came back).
  const late = await oldHome.write('k', { value: enc.encode('stale'), version: 2, expiresAtMs: 0 }, 5).then(() => null, (err: unknown) => err);
  t.ok(late instanceof BackingFencedError, 'the old generation\'s write is refused');
  t.equal((late as BackingFencedError).newerGeneration, 6, 'naming the generation that fenced it');
  t.equal(text((await newHome.read('k', 6))?.value), 'v2', 'Redis keeps the new home\'s value');
  const lateRead = await oldHome.read('k', 5).then(() => null, (err: unknown) => err);
  t.ok(lateRead instanceof BackingFencedError, 'the old generation cannot read either');

  // A later generation, and another key under the current one, keep working.
  await newHome.write('other', { value: enc.encode('o'), version: 1, expiresAtMs: 0 }, 6);
  t.equal(text((await oldHome.read('other', 7))?.value), 'o', 'a newer generation reads');
  const fenced6 = await newHome.write('k', { value: enc.encode('v3'), version: 4, expiresAtMs: 0 }, 6).then(() => null, (err: unknown) => err);
  t.ok(fenced6 instanceof BackingFencedError, 'and then fences generation 6 off in turn');
  t.equal(text((await oldHome.read('k', 7))?.value), 'v2', 'the value is the last one a current home wrote');
  // TTL writes go through the same script (PX).
  await oldHome.write('ttl', { value: enc.encode('t'), version: 1, expiresAtMs: 60_000 }, 7);
  t.equal(text((await oldHome.read('ttl', 7))?.value), 't', 'a write with a TTL lands');
});

t.test('a brand-new cluster takes over a Redis an older cluster used; the old cluster\'s homes are then refused', { skip: hasRedis ? false : 'redis-server is not installed (.ci/run installs it)' }, async (t) => {
  const url = await startRedis(t);
  const oldClusterId = '00000000000000aa';
  let newClusterId = '';
  const oldCluster = new RedisBacking(url, () => 0, { clusterId: () => oldClusterId });
  const newCluster = new RedisBacking(url, () => 0, { clusterId: () => newClusterId });
  t.teardown(async () => { await oldCluster.close(); await newCluster.close(); });

  // The old cluster ran for a while: its ring generation is 9.
  await oldCluster.write('k', { value: enc.encode('old'), version: 1, expiresAtMs: 0 }, 9);

  // The new cluster's first leader has not chosen its id yet: it does not touch the store (retried, not fenced).
  const unnamed = await newCluster.read('k', 1).then(() => null, (err: unknown) => err);
  t.ok(unnamed instanceof Error && !(unnamed instanceof BackingFencedError) && /cluster id is not known yet/.test(unnamed.message),
    'no cluster id yet: a retryable error, not a fence');

  // Fresh data directories, so its generations start at 1. Before cluster ids this was refused (9 > 1) until someone ran DEL.
  newClusterId = '00000000000000bb';
  t.equal(text((await newCluster.read('k', 1))?.value), 'old', 'the new cluster at generation 1 reads what the old one left');
  await newCluster.write('k', { value: enc.encode('new'), version: 2, expiresAtMs: 0 }, 1);
  t.equal(text((await newCluster.read('k', 1))?.value), 'new', 'and writes');

  // A stale home of the old cluster (generation 9, higher than the new cluster's) is refused for good.
  const stale = await oldCluster.write('k', { value: enc.encode('stale'), version: 3, expiresAtMs: 0 }, 9).then(() => null, (err: unknown) => err);
  t.ok(stale instanceof BackingFencedError, 'the old cluster\'s write is refused');
  t.equal((stale as BackingFencedError).retiredCluster, oldClusterId, 'naming the cluster the store was taken from');
  const staleRead = await oldCluster.read('k', 10).then(() => null, (err: unknown) => err);
  t.ok(staleRead instanceof BackingFencedError, 'and so is its read, even at a higher generation');
  t.equal(text((await newCluster.read('k', 1))?.value), 'new', 'Redis keeps the new cluster\'s value');

  // Within the new cluster the generation fence works as before.
  await newCluster.write('k', { value: enc.encode('gen2'), version: 4, expiresAtMs: 0 }, 2);
  const older = await newCluster.write('k', { value: enc.encode('gen1'), version: 5, expiresAtMs: 0 }, 1).then(() => null, (err: unknown) => err);
  t.ok(older instanceof BackingFencedError && older.retiredCluster === '' && older.newerGeneration === 2, 'an older generation of the new cluster is refused');
  t.equal(text((await newCluster.read('k', 2))?.value), 'gen2');
});

t.test('a store a release before cluster ids used is claimed under its generation fence', { skip: hasRedis ? false : 'redis-server is not installed (.ci/run installs it)' }, async (t) => {
  const url = await startRedis(t);
  // What the old release left: the generation key alone, no owner.
  const raw = new Redis(url);
  t.teardown(() => { raw.disconnect(); });
  await raw.set('dsync:cache:@generation', '9');
  const home = new RedisBacking(url, () => 0, { clusterId: () => '00000000000000cc' });
  t.teardown(() => home.close());
  // A stale home of the same cluster, upgraded, is still below the fence. Taking an ownerless
  // store over as if it were another cluster's reset the generation and let it write.
  const stale = await home.write('k', { value: enc.encode('stale'), version: 1, expiresAtMs: 0 }, 5).then(() => null, (err: unknown) => err);
  t.ok(stale instanceof BackingFencedError && stale.newerGeneration === 9, 'generation 5 is refused below the stored 9');
  await home.write('k', { value: enc.encode('current'), version: 2, expiresAtMs: 0 }, 10);
  t.equal(await raw.get('dsync:cache:@cluster'), '00000000000000cc', 'a current home claims the store for its cluster');
  t.equal(text((await home.read('k', 10))?.value), 'current');
});
