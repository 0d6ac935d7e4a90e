// The queue simulation with a laggard (queues-sim.ts, `laggard`): one follower of a
// partition is cut off for the whole fault phase while the nemesis works on the rest, so
// the partition compacts past it (snapshots every 4 entries here) and it catches up by
// installing the partition's snapshot; the checker then reads the whole history. The
// 500 CI seeds of queues*.test.ts never take that path (their cuts last under a second).
// QUEUE_LAGGARD_SEEDS (default 6), SEED_START.

import t from 'tap';
import xxhash from 'xxhash-wasm';
import { runQueueSeed } from './queues-sim.js';

const count = Number(process.env['QUEUE_LAGGARD_SEEDS'] ?? 6);
const first = Number(process.env['SEED_START'] ?? 9_000);

t.test(`seeds ${first}-${first + count - 1}: a replica cut off while its partition compacts installs the snapshot; nothing acknowledged is lost`, async (t) => {
  const { h32Raw } = await xxhash();
  const failures: string[] = [];
  let installed = 0;
  let acked = 0;
  for (let seed = first; seed < first + count; seed++) {
    const r = await runQueueSeed(seed, (b) => h32Raw(b), { laggard: true, publishes: 160, faultPhaseMs: 6_000, snapshotEntries: 4 });
    if (!r.ok) failures.push(`seed ${seed}: ${r.property}: ${r.error.split('\n').slice(0, 4).join(' | ')} (${r.profile})`);
    installed += r.snapshotsInstalled;
    acked += r.acked;
  }
  t.same(failures, [], `all ${count} seeds pass the queue checker`);
  t.ok(acked > count * 20, `publishes were acknowledged (${acked})`);
  t.ok(installed >= count, `the laggards installed partition snapshots (${installed} in ${count} seeds)`);
});
