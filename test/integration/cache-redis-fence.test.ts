// Redis shared by the cache's homes is fenced by the cache ring generation
// (server/services/cache/backing.ts): with a real redis-server on a port of the cache
// tests' range (cachePorts; skips, saying why, only when the binary is absent), two RedisBacking clients stand for the old home of
// a key (generation 5) and its new home after a ring change (generation 6). Once the new
// home has read the key, the old home's write, late or retried, is refused with
// BackingFencedError and Redis keeps the new home's value; the old home cannot read either.
// Before the fence, the old home's SET overwrote the new home's value (the first assertion
// on the refused write failed). Also: a fresh store takes any generation, and equal or newer
// generations keep working.

import { spawn, spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import t from 'tap';
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

t.test('an old home cannot overwrite or read Redis after a newer home used it', { skip: hasRedis ? false : 'redis-server is not installed (.ci/run installs it)' }, async (t) => {
  const [redisPort] = (await cachePorts(1)) as [number];
  const dir = tempDir(t, 'dsync-redis-fence-');
  const server = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  t.teardown(() => { server.kill('SIGKILL'); });
  for (let i = 0; !(await accepts(redisPort)); i++) {
    if (i > 100) throw new Error(`redis-server did not listen on ${redisPort}`);
    await sleep(50);
  }
  const url = `redis://127.0.0.1:${redisPort}`;
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
