// Membership changes under faults in CI: MEMBERSHIP_SEEDS (default 300) seeded
// runs of runMembershipSeed (3 voters grow with learners that catch up, maybe by
// snapshot, get promoted; voters - sometimes the leader - are removed and
// re-added) plus every seed in membership-seeds.json, each checked after every
// step by the simulator's Raft invariants and MembershipChecker (config-step,
// conf-consistency, vote-quorum, commit-quorum, leader-conf-stale, ...), then
// healed for liveness. A failure names the seed; replay one run with
// SEED=n (TRACE=1 prints its event trace).

import t from 'tap';
import { failureReport } from './common.js';
import { runMembershipSeed } from './membership.js';
import type { MembershipResult } from './membership.js';
import { realRaft } from './raft-factory.js';
import { loadKeptSeeds } from './seeds.js';

const seedEnv = process.env['SEED'];
const seedsCount = Number(process.env['MEMBERSHIP_SEEDS'] ?? '300');
const seedStart = Number(process.env['SEED_START'] ?? '0');

function report(r: MembershipResult): string {
  return failureReport(r, 'npx tap test/sim/membership.test.js');
}

if (seedEnv !== undefined && seedEnv !== '') {
  t.test(`replay seed ${seedEnv}`, async (t) => {
    const r = runMembershipSeed(Number(seedEnv), { raftFactory: realRaft, trace: process.env['TRACE'] === '1' });
    if (process.env['TRACE'] === '1') t.comment(r.trace.join('\n'));
    t.ok(r.ok, r.ok ? `seed ${r.seed} passes (${r.finalConf}; ops ${JSON.stringify(r.ops)})` : report(r));
  });
} else {
  t.test('every kept seed still passes', async (t) => {
    const seeds = loadKeptSeeds('membership-seeds.json');
    t.ok(seeds.length > 0, 'the kept-seed file is not empty');
    for (const s of seeds) {
      const r = runMembershipSeed(s.seed, { raftFactory: realRaft });
      t.ok(r.ok, r.ok ? `seed ${s.seed} (${s.property}) passes` : report(r));
    }
  });

  t.test(`${seedsCount} seeds: membership changes keep every invariant and converge after healing`, async (t) => {
    const failures: string[] = [];
    const total = { promote: 0, remove: 0, removeLeader: 0, readd: 0, joins: 0, confChanges: 0, commitChecks: 0, snapshots: 0, crashes: 0 };
    for (let seed = seedStart; seed < seedStart + seedsCount; seed++) {
      const r = runMembershipSeed(seed, { raftFactory: realRaft });
      if (!r.ok) failures.push(report(r));
      total.promote += r.ops.promote;
      total.remove += r.ops.remove;
      total.removeLeader += r.ops.removeLeader;
      total.readd += r.ops.readd;
      total.joins += r.ops.joins;
      total.confChanges += r.checks.confChanges;
      total.commitChecks += r.checks.commitChecks;
      total.snapshots += r.stats.snapshotsInstalled;
      total.crashes += r.stats.crashes;
    }
    t.same(failures, [], 'no seed failed');
    // The runs really exercised what they claim to.
    t.ok(total.confChanges > seedsCount * 5, `conf changes committed (${total.confChanges})`);
    t.ok(total.promote > seedsCount, `learners promoted (${total.promote})`);
    t.ok(total.removeLeader > seedsCount / 3, `leaders removed (${total.removeLeader} of ${total.remove} removals)`);
    t.ok(total.readd > seedsCount, `removed nodes added back (${total.readd})`);
    t.ok(total.joins > seedsCount, `fresh nodes joined (${total.joins})`);
    t.ok(total.snapshots > seedsCount / 2, `snapshots installed (${total.snapshots})`);
    t.ok(total.crashes > seedsCount / 2, `crashes happened (${total.crashes})`);
    t.ok(total.commitChecks > seedsCount * 20, `commit quorums checked (${total.commitChecks})`);
  });

  t.test('a seed replays byte for byte', async (t) => {
    for (const seed of [5, 77]) {
      const a = runMembershipSeed(seed, { raftFactory: realRaft, trace: true });
      const b = runMembershipSeed(seed, { raftFactory: realRaft, trace: true });
      t.equal(a.trace.join('\n'), b.trace.join('\n'), `seed ${seed}: identical traces`);
      t.ok(a.trace.length > 10, `seed ${seed}: the trace is not empty`);
    }
  });

  t.test('strict removed-node checks catch what the real Raft allows (known behaviour, see membership-seeds.json)', async (t) => {
    // Proves removed-leader / removed-vote can fail: these seeds show a removed
    // node elected on its old configuration, or deciding an election.
    const caught = [46, 233].map((seed) => runMembershipSeed(seed, { raftFactory: realRaft, strictRemoved: true }));
    for (const r of caught) t.match(r.property, /^removed-(leader|vote)$/, `seed ${r.seed}: ${r.property}: ${r.error}`);
  });
}
