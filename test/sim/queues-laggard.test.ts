// The queue simulation with a laggard (queues-sim.ts, `laggard`): one follower of a
// partition is cut off for the whole fault phase while the nemesis works on the rest, so
// the partition compacts past it (snapshots every 4 entries here) and it catches up by
// installing the partition's snapshot; the checker then reads the whole history. The
// 500 CI seeds of queues*.test.ts never take that path (their cuts last under a second).
// The seeds run on a worker (on-worker.ts: the queue simulation's promise chains cost a
// third more under tap's hooks). QUEUE_LAGGARD_SEEDS (default 6), SEED_START.

import t from 'tap';
import { runOnWorker } from './on-worker.js';
import type { LaggardOutcome } from './queues-seeds.js';

const count = Number(process.env['QUEUE_LAGGARD_SEEDS'] ?? 6);
const first = Number(process.env['SEED_START'] ?? 9_000);

t.test(`seeds ${first}-${first + count - 1}: a replica cut off while its partition compacts installs the snapshot; nothing acknowledged is lost`, async (t) => {
  const r = await runOnWorker<LaggardOutcome>(new URL('./queues-seeds.js', import.meta.url), 'runLaggardSeeds', [first, count]);
  t.same(r.failures, [], `all ${count} seeds pass the queue checker`);
  t.ok(r.acked > count * 20, `publishes were acknowledged (${r.acked})`);
  t.ok(r.installed >= count, `the laggards installed partition snapshots (${r.installed} in ${count} seeds)`);
});
