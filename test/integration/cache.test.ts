// The coherent cache on 3 real node processes (ports 23000-23999), one client attached
// to each node: a set on one node is read on the others and a write elsewhere replaces
// what they cached (invalidation counted); 6 workers on all three nodes set, delete and get
// the same keys concurrently and the recorded history is linearizable per key (the
// checker the simulator uses); after kill -9 of a node (the home of some keys), every
// key reads as a miss or its last written value, never an older one, and writes work
// again. Fenced writes: a set carrying an older lock token than the key's home saw fails
// FENCED and leaves the newer holder's value. Bad input is refused with BAD_REQUEST; dsync cache get|set|del|stats and the
// console's cache stats / cache key K answer.

import t from 'tap';
import { Client } from '../../client/index.js';
import { ErrorCode } from '../../protocol/errors.js';
import { checkHistory } from '../checker/cache-linearizability.js';
import { HistoryRecorder, startCacheCluster } from './cache-helpers.js';
import { runDsync } from './helpers/cluster.js';
import { consoleCommand } from './raft-helpers.js';

t.test('3 nodes: coherence, per-key linearizability under concurrency, kill -9 of a home', async (t) => {
  const nodes = await startCacheCluster(t);
  const clients = await Promise.all(nodes.map((n) => Client.connect({ seeds: [n.address], requestTimeoutMs: 8_000 })));
  t.teardown(() => Promise.all(clients.map((c) => c.close())).then(() => undefined));
  const [a, b, c] = clients as [Client, Client, Client];

  // --- set on A, get on B and C; a write on C replaces what A and B cached
  await a.cache.set('greeting', 'hello');
  t.equal(await b.cache.getString('greeting'), 'hello', 'B reads what A wrote');
  t.equal(await c.cache.getString('greeting'), 'hello', 'C reads what A wrote');
  t.equal(await a.cache.getString('greeting'), 'hello');
  const invBefore = (await a.cache.stats()).counters['node.invalidationsReceived'] ?? 0;
  const hitsBefore = (await b.cache.stats()).counters['node.hits'] ?? 0;
  t.equal(await b.cache.getString('greeting'), 'hello', 'B serves it again (a hit)');
  t.ok(((await b.cache.stats()).counters['node.hits'] ?? 0) > hitsBefore, 'the second read on B was a hit');
  // The same counters reach Prometheus on B's HTTP port.
  const metrics = await fetch(`http://127.0.0.1:${nodes[1]!.spec.httpPort}/metrics`).then((r) => r.text());
  const hitSample = /^dsync_cache_events_total\{[^}]*event="node\.hits"[^}]*\} (\d+)/m.exec(metrics);
  t.ok(hitSample !== null && Number(hitSample[1]) > hitsBefore, `/metrics counts B's hits (${hitSample?.[1]})`);
  t.match(metrics, /^dsync_cache_transitions_total\{[^}]*from="I"[^}]*\} \d+/m, 'and transitions by state pair');
  await c.cache.set('greeting', 'bonjour');
  t.equal(await a.cache.getString('greeting'), 'bonjour', 'A sees C\'s write');
  t.equal(await b.cache.getString('greeting'), 'bonjour', 'B sees C\'s write');
  const stats = await a.cache.stats();
  const invalidations = (stats.counters['node.invalidationsReceived'] ?? 0) + (stats.counters['node.forwardsReceived'] ?? 0);
  t.ok(invalidations > invBefore, 'A\'s copy was invalidated (or forwarded) by the write on C');
  await b.cache.delete('greeting');
  t.equal(await c.cache.getString('greeting'), null, 'a delete reads as absent everywhere');

  // --- bad input
  await t.rejects(a.cache.set('k'.repeat(600), 'v'), { code: ErrorCode.BAD_REQUEST }, 'oversized key');
  await t.rejects(a.cache.set('big', new Uint8Array(2 * 1024 * 1024)), { code: ErrorCode.BAD_REQUEST }, 'oversized value');
  await t.rejects(a.cache.set('', 'v'), { code: ErrorCode.BAD_REQUEST }, 'empty key');

  // --- fenced writes: a lock's token; a write with an older token than the home saw is refused
  const first = await a.lock('cache-fence', { waitMs: 5_000 });
  await a.cache.set('fenced', 'by-first', { fencingToken: first.token, lock: 'cache-fence' });
  await first.release();
  const second = await b.lock('cache-fence', { waitMs: 5_000 });
  t.ok(second.token > first.token, `the second holder's token ${second.token} is newer than ${first.token}`);
  await b.cache.set('fenced', 'by-second', { fencingToken: second.token, lock: 'cache-fence' });
  await t.rejects(a.cache.set('fenced', 'late-first', { fencingToken: first.token, lock: 'cache-fence' }), { code: ErrorCode.FENCED },
    'a write with the older token is refused FENCED');
  await t.rejects(c.cache.delete('fenced', { fencingToken: first.token, lock: 'cache-fence' }), { code: ErrorCode.FENCED }, 'so is a delete');
  t.equal(await c.cache.getString('fenced'), 'by-second', 'the newer holder\'s value stands');
  await b.cache.set('fenced', 'again', { fencingToken: second.token, lock: 'cache-fence' });
  t.equal(await a.cache.getString('fenced'), 'again', 'the current holder writes again with its token');
  await second.release();
  await t.rejects(a.cache.set('fenced', 'x', { lock: 'cache-fence' }), { code: ErrorCode.BAD_REQUEST }, 'a lock without a token is refused');

  // --- concurrency: 3 clients x 2 workers, 6 keys, sets / deletes / gets interleaved
  const rec = new HistoryRecorder();
  const keys = ['c0', 'c1', 'c2', 'c3', 'c4', 'c5'];
  let n = 0;
  const worker = async (client: Client, w: number): Promise<void> => {
    for (let i = 0; i < 60; i++) {
      const key = keys[(i * 7 + w * 3) % keys.length] as string;
      const r = (i * 31 + w * 17) % 10;
      if (r < 3) {
        const value = `v${w}-${++n}`;
        await rec.set(key, value, () => client.cache.set(key, value));
      } else if (r === 3) {
        await rec.set(key, null, () => client.cache.delete(key));
      } else {
        await rec.get(key, () => client.cache.getString(key));
      }
    }
  };
  await Promise.all(clients.flatMap((cl, i) => [worker(cl, 2 * i), worker(cl, 2 * i + 1)]));
  t.equal(rec.ops.length, 360, 'every operation is in the history');
  t.equal(rec.errors, 0, 'no operation failed without faults');
  const lin = checkHistory(rec.ops);
  t.ok(lin.ok, `the history is linearizable per key${lin.ok ? '' : ` (not for ${lin.key})`}`);

  // --- the CLI and the console
  const seeds = ['--seeds', nodes[1]?.address ?? ''];
  t.equal((await runDsync(t, ['cache', 'set', 'cli-key', 'from-cli', ...seeds])).code, 0, 'dsync cache set');
  const got = await runDsync(t, ['cache', 'get', 'cli-key', '--json', ...seeds]);
  t.same(JSON.parse(got.stdout), { key: 'cli-key', found: true, value: 'from-cli' }, 'dsync cache get --json');
  t.equal((await runDsync(t, ['cache', 'del', 'cli-key', ...seeds])).code, 0, 'dsync cache del');
  t.equal((await runDsync(t, ['cache', 'get', 'cli-key', ...seeds])).code, 1, 'get of a deleted key exits 1');
  const cliStats = JSON.parse((await runDsync(t, ['cache', 'stats', '--json', ...seeds])).stdout) as { nodeId: string; counters: Record<string, number> };
  t.equal(cliStats.nodeId, 'n2');
  t.ok((cliStats.counters['node.misses'] ?? 0) > 0, 'stats carry the node\'s counters');
  await a.cache.set('console-key', 'x');
  t.match(await consoleCommand(nodes[0]?.consoleAddress.port ?? 0, 'cache stats'), /node\.hits \d+/, 'console: cache stats');
  const consoleKey = (await Promise.all(nodes.map((n) => consoleCommand(n.consoleAddress.port, 'cache key console-key')))).join('\n');
  t.match(consoleKey, /line: [EM] v\d+/, 'console: the writer\'s line');
  t.match(consoleKey, /home: here [EM] v\d+ owner=n1/, 'console: the entry at the key\'s home names the owner');

  // --- kill -9 one node: its keys become misses (in-process memory) or keep their last value, never an older one
  const last = new Map<string, string>();
  const older = new Map<string, Set<string>>();
  for (let i = 0; i < 30; i++) {
    const key = `h${i}`;
    await a.cache.set(key, `old-${i}`);
    await b.cache.set(key, `new-${i}`);
    last.set(key, `new-${i}`);
    older.set(key, new Set([`old-${i}`]));
  }
  await nodes[2]?.kill9();
  let misses = 0;
  for (const [key, value] of last) {
    const got = await a.cache.getString(key);
    t.ok(got === null || got === value, `${key} reads ${String(got)}: a miss or the last written value`);
    if (older.get(key)?.has(got ?? '') === true) t.fail(`${key} went back to an older value`);
    if (got === null) misses++;
    t.equal(await b.cache.getString(key), got, `${key} reads the same on both survivors`);
  }
  t.ok(misses > 0 && misses < 30, `the dead node's keys read as misses (${misses} of 30), the others keep their values`);
  await a.cache.set('h0', 'after');
  t.equal(await b.cache.getString('h0'), 'after', 'writes work again after the ring changed');
  const after = await a.cache.stats();
  t.ok((after.counters['ringChanges'] ?? 0) >= 1, 'the ring change is counted');
});

