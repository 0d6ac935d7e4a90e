// The cluster simulator in CI: runs SIM_SEEDS (default 1000) randomized seeds plus
// every seed in failed-seeds.json through the real Raft with faults (crashes with
// torn writes, partitions, drops, duplicates, reordering, clock jumps), checking
// Raft's safety properties after every step and liveness after healing. A failure
// names the seed and property; replay with `SEED=n TRACE=1 node dist/test/sim/run.js`.

import t from 'tap';
import { failureReport } from './common.js';
import { realRaft } from './raft-factory.js';
import { loadFailedSeeds } from './seeds.js';
import { runSeed } from './swarm.js';
import type { SwarmResult } from './swarm.js';

const seedsCount = Number(process.env['SIM_SEEDS'] ?? '1000');
const seedStart = Number(process.env['SEED_START'] ?? '0');

function report(r: SwarmResult): string {
  return failureReport(r, 'node dist/test/sim/run.js');
}

t.test('every seed that ever failed still passes', async (t) => {
  const seeds = loadFailedSeeds();
  for (const s of seeds) {
    const r = runSeed(s.seed, { raftFactory: realRaft });
    t.ok(r.ok, r.ok ? `seed ${s.seed} (${s.property}) passes` : report(r));
  }
  t.pass(`${seeds.length} regression seeds replayed`);
});

t.test(`${seedsCount} random seeds keep every invariant and converge after healing`, async (t) => {
  let steps = 0;
  let crashes = 0;
  let torn = 0;
  let snapshots = 0;
  let passed = 0;
  const failures: string[] = [];
  for (let seed = seedStart; seed < seedStart + seedsCount; seed++) {
    const r = runSeed(seed, { raftFactory: realRaft });
    steps += r.stats.steps;
    crashes += r.stats.crashes;
    torn += r.stats.tornWrites;
    snapshots += r.stats.snapshotsInstalled;
    passed += r.ok ? 1 : 0;
    if (!r.ok) failures.push(report(r));
  }
  t.same(failures, [], 'no seed failed');
  // The run must really have exercised the faults it claims to.
  t.ok(crashes > seedsCount / 2, `crashes happened (${crashes})`);
  t.ok(torn > 10, `torn writes happened (${torn})`);
  t.ok(snapshots > 10, `snapshots were installed (${snapshots})`);
  t.ok(steps > seedsCount * 1000, `steps ran (${steps})`);
  t.equal(passed, seedsCount - failures.length, `${passed} seeds passed`);
});

t.test('a seed replays byte for byte', async (t) => {
  for (const seed of [3, 17, 42]) {
    const a = runSeed(seed, { raftFactory: realRaft, trace: true });
    const b = runSeed(seed, { raftFactory: realRaft, trace: true });
    t.equal(a.trace.join('\n'), b.trace.join('\n'), `seed ${seed}: identical traces`);
    t.same(a.stats, b.stats, `seed ${seed}: identical counters`);
    t.ok(a.trace.length > 10, `seed ${seed}: the trace is not empty`);
  }
});
