// The queue simulation's CI seeds, first half (queues-seeds.ts; the second half is
// queues-2.test.ts, so tap's two jobs run both at once). QUEUE_SIM_SEEDS (default 500
// in all), SEED_START.

import { testQueueSeedHalf } from './queues-seeds.js';

testQueueSeedHalf(0);
