// Proves the lock simulator's checkers catch what they claim to: deliberately
// broken variants (harness or table wrappers; core/locks untouched) must be
// reported within the CI seeds, each by the property meant to catch it.
// - apply-uncommitted: a leader applies entries when it appends them and answers
//   clients from that (a grant made without a quorum). Caught at once by the
//   applied-is-committed check; with that check off, end to end: replicas diverge
//   and clients hold grants the committed history never made.
// - grant-when-blocked: a blocked tryLock is answered "granted": overlapping
//   exclusive/shared holds in the history.
// - barge: a request is granted past the FIFO queue when the holders allow it.
// - reuse-token: a grant reuses the lock's previous fencing token.

import t from 'tap';
import { runLockSeed } from './locks-sim.js';
import type { LockSimOptions, LockSimResult } from './locks-sim.js';

const seedsCount = Number(process.env['LOCK_CANARY_SEEDS'] ?? '60');

function run(opts: LockSimOptions, n = seedsCount): { results: LockSimResult[]; byProperty: Map<string, number> } {
  const results: LockSimResult[] = [];
  for (let seed = 0; seed < n; seed++) results.push(runLockSeed(seed, opts));
  const byProperty = new Map<string, number>();
  for (const r of results) if (!r.ok) byProperty.set(r.property, (byProperty.get(r.property) ?? 0) + 1);
  return { results, byProperty };
}

const count = (m: Map<string, number>, ...keys: string[]): number => keys.reduce((a, k) => a + (m.get(k) ?? 0), 0);

t.test('a leader that applies before commit is caught by the applied-is-committed check', async (t) => {
  const { byProperty } = run({ variant: 'apply-uncommitted' });
  t.ok(count(byProperty, 'applied-uncommitted') >= seedsCount * 0.9, `caught in nearly every seed (${JSON.stringify([...byProperty])})`);
});

t.test('a leader that applies before commit is caught end to end with that check off', async (t) => {
  const { byProperty } = run({ variant: 'apply-uncommitted', checkCommittedAtApply: false });
  t.notOk(byProperty.has('applied-uncommitted'), 'not by the disabled check');
  t.ok(count(byProperty, 'replica-divergence') >= 5, `replicas diverge from the committed history (${JSON.stringify([...byProperty])})`);
  t.ok(count(byProperty, 'grant-not-committed') >= 3, `clients hold grants no committed entry made (${JSON.stringify([...byProperty])})`);
});

t.test('a table that grants a blocked request is caught by the overlap checks', async (t) => {
  const { byProperty } = run({ variant: 'grant-when-blocked' });
  t.ok(count(byProperty, 'exclusive-overlap') >= 5, `exclusive holds overlap (${JSON.stringify([...byProperty])})`);
  t.ok(count(byProperty, 'shared-exclusive-overlap') >= 5, `shared overlaps exclusive (${JSON.stringify([...byProperty])})`);
});

t.test('a table that lets a request barge past the queue is caught by the FIFO check', async (t) => {
  const { byProperty } = run({ variant: 'barge' });
  t.ok(count(byProperty, 'fifo') >= 10, `FIFO violations (${JSON.stringify([...byProperty])})`);
});

t.test('a table that reuses a fencing token is caught by the token checks', async (t) => {
  const { byProperty } = run({ variant: 'reuse-token' });
  t.ok(count(byProperty, 'token-index', 'token-order') >= seedsCount * 0.9, `stale tokens (${JSON.stringify([...byProperty])})`);
});

t.test('the correct build passes the same seeds', async (t) => {
  const { results, byProperty } = run({}, Math.min(seedsCount, 40));
  t.ok(results.length > 0, `${results.length} seeds`);
  t.same([...byProperty], [], 'no violations without a canary');
});
