// The queue simulation's CI seeds, second half (queues-seeds.ts; the first half is
// queues.test.ts). QUEUE_SIM_SEEDS (default 500 in all), SEED_START.

import t from 'tap';
import { assertFaultsExercised, queueSeedRange, queueSeedsTimeoutMs, runQueueSeedHalf } from './queues-seeds.js';

const half = 1;
t.setTimeout(queueSeedsTimeoutMs(half));
const { first, count } = queueSeedRange(half);
t.test(`seeds ${first}-${first + count - 1}: no acknowledged publish lost, nothing delivered that was not published, order per key`, async (t) => {
  const r = await runQueueSeedHalf(half, (line) => t.comment(line));
  // One line per failing seed, one in all for the passing ones (250 lines of ok say nothing).
  t.same(r.failures, [], `all ${count} seeds pass the queue checker`);
  assertFaultsExercised(t, r, count);
});
