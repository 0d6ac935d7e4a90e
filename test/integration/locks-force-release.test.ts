// Force-release end to end through the client library on real node processes (issue 7
// item 7, both halves meeting): client A holds x; admin client B force-releases it; A's
// held lock fires `lost` with the exported ForceReleasedError and A's release() then
// resolves without error; B can take x with a larger fencing token. Asserts outcomes and
// their order, not durations.

import t from 'tap';
import { Client, DsyncError, ErrorCode, ForceReleasedError } from '../../client/index.js';
import { TestCluster } from './helpers/cluster.js';
import { leaderNode } from './lock-helpers.js';

/** Long enough that no session of this test can expire while it runs. */
const ttlMs = 30_000;
/** Bound on waiting for the LockLost push to reach A. */
const lostWaitMs = 10_000;

t.test('force-release by an admin client: the holder\'s lost fires ForceReleasedError, release() resolves, the admin gets a newer token', async (t) => {
  const cluster = await TestCluster.start(t);
  const a = await Client.connect({ seeds: cluster.seeds, sessionTtlMs: ttlMs, requestTimeoutMs: 10_000, maxRedirects: 40, name: 'it-holder' });
  t.teardown(() => a.close());
  const b = await Client.connect({ seeds: cluster.seeds, sessionTtlMs: ttlMs, requestTimeoutMs: 10_000, maxRedirects: 40, name: 'it-admin' });
  t.teardown(() => b.close());
  await leaderNode(a, cluster);

  const held = await a.lock('x');
  t.ok(held.token > 0, `A holds x with token ${held.token}`);
  t.equal(held.isLost, false);
  t.equal(await b.tryLock('x'), null, 'B cannot take x while A holds it');

  await b.locks.forceRelease('x');
  let timer: NodeJS.Timeout | undefined;
  const reason = await Promise.race([
    held.lost,
    new Promise<null>((resolve) => { timer = setTimeout(() => resolve(null), lostWaitMs); }),
  ]);
  clearTimeout(timer);
  t.ok(reason instanceof ForceReleasedError, `A's lost fires with ForceReleasedError (got ${String(reason)})`);
  t.equal(reason instanceof DsyncError ? reason.code : '', ErrorCode.FORCE_RELEASED);
  t.equal(held.isLost, true, 'A no longer counts x as held');
  await t.resolves(held.release(), 'A\'s release() after the force-release resolves without error');

  const taken = await b.lock('x', { waitMs: 10_000 });
  t.ok(taken.token > held.token, `B takes x with a larger token (${taken.token} > ${held.token})`);
  const info = await b.locks.info('x');
  t.same(info[0]?.holders.map((h) => h.token), [taken.token], 'B is the only holder of x');
  await taken.release();
});
