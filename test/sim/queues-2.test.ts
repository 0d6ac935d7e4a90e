// The queue simulation's CI seeds, second half (queues-seeds.ts; the first half is
// queues.test.ts). QUEUE_SIM_SEEDS (default 500 in all), SEED_START.

import { queueSeedsTest } from './queues-seeds.js';

await queueSeedsTest(1);
