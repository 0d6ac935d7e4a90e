// The queue simulation (queues-sim.ts): the shipped QueueService on simulated nodes
// under crashes (unsynced writes lost), isolation and pauses, with a client on the
// shipped Router publishing (producer dedup) and consuming (fetch + ack). Every seed
// must lose no acknowledged publish and deliver nothing unpublished; partitions
// snapshot every 12 entries, so restarted followers install snapshots carrying the
// bodies. Count: QUEUE_SIM_SEEDS (default 8); SEED_START to shift.

import t from 'tap';
import xxhash from 'xxhash-wasm';
import { runQueueSeed } from './queues-sim.js';

const seeds = Number(process.env['QUEUE_SIM_SEEDS'] ?? '8');
const seedStart = Number(process.env['SEED_START'] ?? '0');
const { h32Raw } = await xxhash();

t.test(`${seeds} seeds: no acknowledged publish lost, nothing delivered that was not published`, async (t) => {
  let acked = 0;
  let duplicates = 0;
  let crashes = 0;
  let installed = 0;
  let saved = 0;
  for (let s = seedStart; s < seedStart + seeds; s++) {
    const r = await runQueueSeed(s, (b) => h32Raw(b));
    t.ok(r.ok, `seed ${s}: ${r.ok ? `${r.acked} acked, ${r.delivered} delivered` : `${r.property}: ${r.error.split('\n').slice(0, 4).join(' | ')}`} (${r.profile})`);
    acked += r.acked;
    duplicates += r.duplicates;
    crashes += r.crashes;
    installed += r.snapshotsInstalled;
    saved += r.snapshotsSaved;
  }
  t.comment(`${acked} publishes acknowledged, ${duplicates} duplicate deliveries, ${crashes} crashes, ${installed} snapshots installed, ${saved} saved`);
  t.ok(saved > 0, 'partitions compacted their logs into snapshots');
  t.ok(crashes > 0, 'the nemesis crashed nodes');
});
