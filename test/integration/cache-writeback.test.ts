// Write-back on 3 real nodes (ports 23000-23999): a client on n1 writes keys (dirty M
// lines at n1), readers on n2 force them back to memory, n1 writes them again and is
// killed with kill -9 before that second write reaches memory. The loss shows in the
// survivors' metrics (home.writeBackLossAtRingChange), and afterwards no stale value is
// served: n2 and n3 read the same value for every key, the lost second write is never
// seen, and a key homed on a survivor reads the value written back before the kill.

import t from 'tap';
import { Client } from '../../client/index.js';
import { startCacheCluster } from './cache-helpers.js';
import { consoleCommand } from './raft-helpers.js';
import { sleep } from './helpers/cluster.js';

t.test('write-back: kill -9 of the owner of dirty lines', async (t) => {
  const nodes = await startCacheCluster(t, ['--cache-write-policy', 'write-back']);
  const clients = await Promise.all(nodes.map((n) => Client.connect({ seeds: [n.address], requestTimeoutMs: 8_000 })));
  t.teardown(() => Promise.all(clients.map((c) => c.close())).then(() => undefined));
  const [a, b, c] = clients as [Client, Client, Client];
  const keys = Array.from({ length: 12 }, (_, i) => `wb${i}`);
  for (const k of keys) await a.cache.set(k, `first-${k}`);
  for (const k of keys) t.equal(await b.cache.getString(k), `first-${k}`, `${k}: the reader's miss brings n1's dirty value back to memory`);
  for (const k of keys) await a.cache.set(k, `lost-${k}`);
  t.equal(await a.cache.getString('wb0'), 'lost-wb0', 'n1 serves its own dirty write');
  await nodes[0]?.kill9();
  // Until the survivors' rings drop n1, their requests for keys n1 owns wait; then they are answered.
  const seen = new Map<string, string | null>();
  for (const k of keys) {
    const vb = await b.cache.getString(k);
    const vc = await c.cache.getString(k);
    t.equal(vb, vc, `${k}: both survivors read the same value`);
    t.not(vb, `lost-${k}`, `${k}: the write lost with n1 is never served`);
    t.ok(vb === null || vb === `first-${k}`, `${k}: a miss or the value memory had (${String(vb)})`);
    seen.set(k, vb);
  }
  await sleep(300);
  for (const k of keys) t.equal(await c.cache.getString(k), seen.get(k), `${k}: stable afterwards`);
  const stats = await Promise.all([b.cache.stats(), c.cache.stats()]);
  const loss = stats.reduce((n, s) => n + (s.counters['home.writeBackLossAtRingChange'] ?? 0) + (s.counters['home.writeBackLoss'] ?? 0), 0);
  t.ok(loss > 0, `the loss shows in the survivors' metrics (${loss})`);
  t.match(await consoleCommand(nodes[1]?.consoleAddress.port ?? 0, 'cache stats'), /writePolicy=write-back/, 'the console says which policy runs');
});
