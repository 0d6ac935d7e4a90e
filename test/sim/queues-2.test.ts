// The queue simulation's CI seeds, second half (queues-seeds.ts; the first half is
// queues.test.ts). QUEUE_SIM_SEEDS (default 500 in all), SEED_START.

import { testQueueSeedHalf } from './queues-seeds.js';

testQueueSeedHalf(1);
