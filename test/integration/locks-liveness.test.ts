// Liveness of a hot lock across leader deaths (issue 8's known case): 16 in-process
// clients contend for one exclusive lock (session TTL 5 s, wait 20 s), each taking it,
// holding 2 ms and releasing, on a 3-node cluster. The group 0 leader is killed with -9
// twice (restarted in between); each time at least 20 further grants must come
// within 20 s of the kill, tokens must keep increasing across it, and no client's
// acquire may have timed out. Times are printed, not asserted tighter: they belong to
// bench/, and a loaded CI machine must not fail a correct build.
// The case once failed (1 of 8 tries, loaded machine): a release that got no answer
// during the failover left the lock held by a session that stayed alive, so every
// waiter ran into its 20 s wait. Releases are now retried in the background and, when
// they keep failing, the client gives its session up (client/locks releaseHold), so
// the lock comes free within one TTL at worst.

import t from 'tap';
import { Client, type DsyncError } from '../../client/index.js';
import { sleep, TestCluster } from './helpers/cluster.js';
import { leaderNode } from './lock-helpers.js';

const contenders = 16;
const kills = 2;
const grantsAfterKill = 20;
const boundMs = 20_000;

t.test(`${contenders} clients on one lock: ${grantsAfterKill} grants within ${boundMs / 1000} s of each leader kill -9`, async (t) => {
  const cluster = await TestCluster.start(t);
  const admin = await Client.connect({ seeds: cluster.seeds, name: 'liveness-admin', requestTimeoutMs: 10_000, maxRedirects: 40 });
  t.teardown(() => admin.close());
  const clients = await Promise.all(Array.from({ length: contenders }, (_, i) => Client.connect({
    seeds: [...cluster.seeds.slice(i % 3), ...cluster.seeds.slice(0, i % 3)], name: `hot${i}`, sessionTtlMs: 5_000 })));
  t.teardown(() => Promise.all(clients.map((c) => c.close().catch(() => {}))));

  const grants: { atMs: number; token: number }[] = [];
  const errors = new Map<string, number>();
  let running = true;
  const loops = clients.map(async (c) => {
    while (running) {
      try {
        const held = await c.lock('hot', { waitMs: boundMs });
        grants.push({ atMs: performance.now(), token: held.token });
        await sleep(2);
        await held.release();
      } catch (err) {
        if (!running) return;
        const code = (err as DsyncError).code ?? String(err);
        errors.set(code, (errors.get(code) ?? 0) + 1);
        await sleep(20);
      }
    }
  });
  t.teardown(() => { running = false; });

  const waitGrants = async (n: number, fromMs: number): Promise<number | null> => {
    while (performance.now() - fromMs < boundMs) {
      if (grants.filter((g) => g.atMs > fromMs).length >= n) return (grants.filter((g) => g.atMs > fromMs)[n - 1]?.atMs ?? 0) - fromMs;
      await sleep(20);
    }
    return null;
  };
  t.not(await waitGrants(40, performance.now()), null, 'the lock is handed round before any fault');

  for (let k = 1; k <= kills; k++) {
    const leader = await leaderNode(admin, cluster);
    const killedAt = performance.now();
    await leader.kill9();
    const tookMs = await waitGrants(grantsAfterKill, killedAt);
    t.not(tookMs, null, `kill ${k} (leader ${leader.spec.id}): ${grantsAfterKill} grants within ${boundMs / 1000} s` +
      (tookMs === null ? '' : ` (took ${tookMs.toFixed(0)} ms)`));
    await leader.restart();
  }
  running = false;
  const timeouts = errors.get('LOCK_TIMEOUT') ?? 0;
  // Closing the clients ends the waits still pending (they would otherwise run their 20 s out).
  await Promise.all(clients.map((c) => c.close().catch(() => {})));
  await Promise.all(loops);
  const regressions = grants.flatMap((g, i) => (i > 0 && g.token <= (grants[i - 1]?.token ?? 0) ? [`${grants[i - 1]?.token} then ${g.token}`] : []));
  t.same(regressions, [], `fencing tokens increase across ${grants.length} grants in grant order`);
  t.equal(timeouts, 0, 'no acquire waited out its 20 s');
  t.comment(`errors seen (retried): ${[...errors].map(([c, n]) => `${c}×${n}`).join(', ') || 'none'}`);
});
