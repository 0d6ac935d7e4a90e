// The queue simulation's CI seeds, first half (queues-seeds.ts; the second half is
// queues-2.test.ts, so tap's two jobs run both at once). QUEUE_SIM_SEEDS (default 500
// in all), SEED_START.

import t from 'tap';
import { queueSeedRange, queueSeedsTimeoutMs, runQueueSeedHalf } from './queues-seeds.js';

const half = 0;
t.setTimeout(queueSeedsTimeoutMs(half));
const { first, count } = queueSeedRange(half);
t.test(`seeds ${first}-${first + count - 1}: no acknowledged publish lost, nothing delivered that was not published, order per key`, async (t) => {
  const r = await runQueueSeedHalf(half, (line) => t.comment(line));
  // One line per failing seed, one in all for the passing ones (250 lines of ok say nothing).
  t.same(r.failures, [], `all ${count} seeds pass the queue checker`);
  t.ok(r.acked > count * 10, `publishes were acknowledged (${r.acked})`);
  t.ok(r.saved > 0, 'partitions compacted their logs into snapshots');
  t.ok(r.crashes > 0, 'the nemesis crashed nodes');
  t.ok(r.redeliveries > 0, 'failed attempts were redelivered');
  t.ok(r.moves > 0, `partitions moved when the queue's voters changed (${r.moves} moves, ${r.movesUnsettled} unsettled when their seed ended)`);
});
