// Proves the checkers of the real-runner simulation catch what they claim to:
// simulated disks broken on purpose (sim-disk.ts; server/ untouched) must be
// reported within these seeds, each by the property meant to catch it.
// - ack-before-fsync: whenDurable() resolves before the write is durable, so the
//   runner acknowledges (AppResp, granted votes) what a crash can still lose; caught
//   at send time by ack-durability, and with that check off, end to end (a
//   committed entry lost from a majority of disks, or one index/term with two entries).
// - forget-vote: a crash loses the vote, so a restarted replica votes twice in a term.
//   Rare with the real runner (pre-vote is always on, so two candidates seldom share
//   a term): 14 of harsh seeds 100-499 show it (3.5%), 5 of the 100 here (seeds 100-199);
//   the test asks for 2. Seeds 0-99 showed 3 until heartbeats were coalesced and idle
//   groups quiesced, which changed every schedule; they show none now.

import t from 'tap';
import { mapSeedsOnWorker } from './on-worker.js';
import type { RunnerSimOptions, RunnerSimResult } from './runner-sim.js';

async function tally(n: number, opts: RunnerSimOptions, seedStart = 0): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  // Off tap's thread (on-worker.ts says why).
  const seeds = Array.from({ length: n }, (_, i) => seedStart + i);
  for (const r of await mapSeedsOnWorker<RunnerSimOptions, RunnerSimResult>(new URL('./runner-sim.js', import.meta.url), 'runRunnerSeed', seeds, opts)) {
    if (!r.ok) out.set(r.property, (out.get(r.property) ?? 0) + 1);
  }
  return out;
}

const count = (m: Map<string, number>, ...keys: string[]): number => keys.reduce((a, k) => a + (m.get(k) ?? 0), 0);

t.test('a disk that acknowledges before fsync is caught by the ack-durability check', async (t) => {
  const byProperty = await tally(20, { diskVariant: 'ack-before-fsync', harsh: true });
  t.equal(byProperty.get('ack-durability'), 20, `every seed reports it (${JSON.stringify([...byProperty])})`);
});

t.test('a disk that acknowledges before fsync is caught end to end with that check off', async (t) => {
  const byProperty = await tally(40, { diskVariant: 'ack-before-fsync', harsh: true, checkAckDurability: false });
  t.notOk(byProperty.has('ack-durability'), 'not by the disabled check');
  t.ok(count(byProperty, 'committed-never-lost', 'log-matching', 'election-safety', 'vote-safety') >= 5,
    `committed entries lost or logs forked (${JSON.stringify([...byProperty])})`);
});

t.test('a disk that forgets the vote on a crash is caught', async (t) => {
  const byProperty = await tally(100, { diskVariant: 'forget-vote', harsh: true }, 100);
  t.ok(count(byProperty, 'vote-safety', 'election-safety') >= 2, `double votes are detected (${JSON.stringify([...byProperty])})`);
});

t.test('the correct disk passes the same harsh seeds', async (t) => {
  const byProperty = await tally(20, { harsh: true });
  t.same([...byProperty], [], 'no violations without a canary');
});
