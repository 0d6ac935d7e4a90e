// The multi-group simulation (multigroup.ts): 5 nodes, 64 Raft groups with overlapping
// 3-replica sets, crashes, partitions, pauses and message loss; every group keeps the Raft
// invariants (checked on every Ready, durable record and message of every group), elects
// a leader after healing and applies every acknowledged proposal on every replica in one
// order; idle, every group quiesces, and when the node leading most of them crashes each
// of its groups elects again within reelectionMsMax, keeping what was acknowledged. Count: MULTIGROUP_SEEDS (default 4; each about 3-10 s of CPU); SEED_START to shift;
// MULTIGROUP_FAULT_MS sets the fault phase (1,500 ms of simulated time).

import t from 'tap';
import type { DiskVariant } from './sim-disk.js';
import { multiGroupCount, type MultiGroupResult, reelectionMsMax } from './multigroup.js';
import { runOnWorker } from './on-worker.js';

const seeds = Number(process.env['MULTIGROUP_SEEDS'] ?? '4');
const seedStart = Number(process.env['SEED_START'] ?? '0');
const faultPhaseMs = Number(process.env['MULTIGROUP_FAULT_MS'] ?? '1500');
// Each seed simulates ~200 replicas; a loaded machine needs far more than tap's default per file.
t.setTimeout(seeds * 60_000);

/** runMultiGroupSeed off tap's thread (on-worker.ts says why), one worker per seed (each is seconds of CPU). */
function runMultiGroupSeed(seed: number, faultMs: number, diskVariant: DiskVariant = 'correct'): Promise<MultiGroupResult> {
  return runOnWorker(new URL('./multigroup.js', import.meta.url), 'runMultiGroupSeed', [seed, faultMs, diskVariant]);
}

t.test(`${seeds} seeds of ${multiGroupCount} groups on 5 nodes: Raft invariants in every group, nothing acknowledged lost`, async (t) => {
  let acked = 0;
  let crashes = 0;
  let installed = 0;
  let reassembled = 0;
  const ledAfter: number[] = [];
  const reelected: number[] = [];
  let orphaned = 0;
  for (let s = seedStart; s < seedStart + seeds; s++) {
    const r = await runMultiGroupSeed(s, faultPhaseMs);
    t.ok(r.ok, `seed ${s}: ${r.ok ? `${r.acked} acknowledged, ${r.leaderlessAtHeal} groups leaderless at heal, all led ${r.allLedAfterMs} ms later`
      : `${r.property}: ${r.error.split('\n').slice(0, 4).join(' | ')}`} (${r.profile}); replay: SEED_START=${s} MULTIGROUP_SEEDS=1`);
    acked += r.acked;
    crashes += r.crashes;
    installed += r.snapshotsInstalled;
    reassembled += r.snapshotsReassembled;
    if (r.allLedAfterMs >= 0) ledAfter.push(r.allLedAfterMs);
    if (r.reelectedAfterMs >= 0) reelected.push(r.reelectedAfterMs);
    orphaned += r.groupsOfCrashedLeader;
  }
  t.comment(`${acked} proposals acknowledged, ${crashes} crashes, ${installed} snapshots installed; every group led again within ${Math.max(0, ...ledAfter)} ms of healing (max over seeds)`);
  t.comment(`idle: every replica quiesced; the busiest leader's ${orphaned} groups (sum over seeds) elected again within ${Math.max(0, ...reelected)} ms (max; bound ${reelectionMsMax} ms)`);
  t.ok(crashes > 0, 'the nemesis crashed nodes');
  t.ok(orphaned >= seeds * 10, 'the crashed idle leader led many quiesced groups');
  t.ok(reassembled > 0, `snapshots travelled in chunks and were reassembled (${reassembled})`);
  t.ok(acked > seeds * 100, 'proposals were acknowledged across the groups');
});

// Canary: disks that acknowledge before fsync. The checker must catch it in a test group,
// not only in group 0, or it is not watching the groups it claims to.
t.test('canary: acknowledging before fsync is caught in the test groups', async (t) => {
  const caught: string[] = [];
  for (let s = 0; s < 6 && caught.length === 0; s++) {
    const r = await runMultiGroupSeed(s, faultPhaseMs, 'ack-before-fsync');
    if (!r.ok && /group 1\d{6}/.test(r.error)) caught.push(`seed ${s}: ${r.property}: ${r.error.split('\n')[0] ?? ''}`);
  }
  t.ok(caught.length > 0, `caught in a test group: ${caught.join('; ') || 'never'}`);
});
