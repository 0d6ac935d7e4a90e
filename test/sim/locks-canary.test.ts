// Proves the lock simulator's checkers catch what they claim to: table bugs
// injected in the wrapper around the real LockService's group 0 machine
// (CheckedLockMachine in locks-sim.ts; LockService and core/locks untouched) must
// be reported within the CI seeds, each by the property meant to catch it.
// - grant-when-blocked: a blocked tryLock is answered "granted": overlapping
//   exclusive/shared holds in the history.
// - barge: a request is granted past the FIFO queue when the holders allow it.
// - reuse-token: a grant reuses the lock's previous fencing token.
// (The old simulator's apply-uncommitted canary broke its own runner; the real
// runner is now what runs, and runner-canary.test.ts breaks its disk instead.)

import t from 'tap';
import { runLockSeed } from './locks-sim.js';
import type { LockSimOptions, LockSimResult } from './locks-sim.js';

const seedsCount = Number(process.env['LOCK_CANARY_SEEDS'] ?? '30');

async function run(opts: LockSimOptions, n = seedsCount): Promise<{ results: LockSimResult[]; byProperty: Map<string, number> }> {
  const results: LockSimResult[] = [];
  for (let seed = 0; seed < n; seed++) results.push(await runLockSeed(seed, opts));
  const byProperty = new Map<string, number>();
  for (const r of results) if (!r.ok) byProperty.set(r.property, (byProperty.get(r.property) ?? 0) + 1);
  return { results, byProperty };
}

const count = (m: Map<string, number>, ...keys: string[]): number => keys.reduce((a, k) => a + (m.get(k) ?? 0), 0);

t.test('a table that grants a blocked request is caught by the overlap checks', async (t) => {
  const { byProperty } = await run({ variant: 'grant-when-blocked' });
  t.ok(count(byProperty, 'exclusive-overlap', 'shared-exclusive-overlap') >= 5, `holds overlap (${JSON.stringify([...byProperty])})`);
});

t.test('a table that lets a request barge past the queue is caught by the FIFO check', async (t) => {
  const { byProperty } = await run({ variant: 'barge' });
  t.ok(count(byProperty, 'fifo') >= 5, `FIFO violations (${JSON.stringify([...byProperty])})`);
});

t.test('a table that reuses a fencing token is caught by the token checks', async (t) => {
  const { byProperty } = await run({ variant: 'reuse-token' });
  t.ok(count(byProperty, 'token-index', 'token-order', 'grant-not-committed') >= seedsCount * 0.8, `stale tokens in the history or in clients' hands (${JSON.stringify([...byProperty])})`);
});

t.test('the correct build passes the same seeds', async (t) => {
  const { results, byProperty } = await run({}, Math.min(seedsCount, 20));
  t.ok(results.length > 0, `${results.length} seeds`);
  t.same([...byProperty], [], 'no violations without a canary');
});
