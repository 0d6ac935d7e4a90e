// Proves the simulator's checkers catch what they claim to: deliberately broken
// harness variants (no change to core/raft) must be reported within the CI seeds.
// - ack-before-fsync: a Ready's messages go out before its write is durable;
//   caught at once by the ack-durability check, and - with that check off - by
//   committed-never-lost (a committed entry durable on less than a majority
//   after a crash; Raft's own "commit beyond last index" assertion fires too).
// - forget-vote: the disk loses the vote on a crash, so a replica votes twice in
//   one term; caught by vote safety / election safety.

import t from 'tap';
import { realRaft } from './raft-factory.js';
import { runSeed } from './swarm.js';

function tally(results: ReturnType<typeof runSeed>[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const r of results) if (!r.ok) out.set(r.property, (out.get(r.property) ?? 0) + 1);
  return out;
}

function seeds(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

t.test('ack before fsync is caught by the ack-durability check', async (t) => {
  const results = seeds(50).map((seed) => runSeed(seed, { raftFactory: realRaft, variant: 'ack-before-fsync' }));
  const byProperty = tally(results);
  t.equal(byProperty.get('ack-durability'), 50, `every seed reports it (${JSON.stringify([...byProperty])})`);
});

t.test('ack before fsync is caught end to end when the direct check is off', async (t) => {
  const results = seeds(400).map((seed) =>
    runSeed(seed, {
      raftFactory: realRaft,
      variant: 'ack-before-fsync',
      clusterOverrides: { checkAckDurability: false, fsyncMsMax: 10 },
      faultOverrides: { crash: true },
    }),
  );
  const byProperty = tally(results);
  const byChecker = byProperty.get('committed-never-lost') ?? 0;
  t.ok(byChecker >= 3, `a committed entry left without a durable majority is detected (${JSON.stringify([...byProperty])})`);
  t.notOk(byProperty.has('ack-durability'), 'not by the disabled check');
});

t.test('a replica that forgets its vote is caught', async (t) => {
  const results = seeds(500).map((seed) => runSeed(seed, { raftFactory: realRaft, variant: 'forget-vote' }));
  const byProperty = tally(results);
  const caught = (byProperty.get('vote-safety') ?? 0) + (byProperty.get('election-safety') ?? 0);
  t.ok(caught >= 3, `double votes are detected (${JSON.stringify([...byProperty])})`);
});

t.test('the correct harness passes the same seeds', async (t) => {
  const results = seeds(50).map((seed) => runSeed(seed, { raftFactory: realRaft }));
  t.same([...tally(results)], [], 'no violations without a canary');
});
