// Proves the queue simulator's checker (queues-sim.ts over test/checker/queue-accounting.ts)
// catches what it claims to: the shipped QueueService started with a deliberate bug
// (QueueServiceOptions.canary, the same switch DSYNC_CANARY sets on a real node) must be
// reported within a bounded number of seeds, by the property meant to catch it, and the
// seeds that catch it pass without the canary (so the bug is what they see).
// - ack-before-majority: the leader answers a publish when it proposes the entry, before
//   a majority holds it; a leader that crashes or is cut off loses what it answered:
//   lost (or offset-conflict: a later leader put other values at the offsets answered).
// - cursor-before-ack: a delivery finishes the message for its group at once; a batch
//   whose answer was lost (connection reset, leader gone) or whose consumer died before
//   processing it is never redelivered: lost.
// The simulation is deterministic per seed, so the counts below are exact for this
// build; the thresholds leave room for changes that shift the schedules.
// Seeds: QUEUE_CANARY_SEEDS (default 20).

import t, { type Test } from 'tap';
import xxhash from 'xxhash-wasm';
import type { QueueCanary } from '../../server/services/queues/service.js';
import { runQueueSeed, type QueueSeedResult } from './queues-sim.js';

const seedsCount = Number(process.env['QUEUE_CANARY_SEEDS'] ?? '12');
const { h32Raw } = await xxhash();
t.setTimeout(Math.max(240_000, seedsCount * 20_000));
/** Shorter than the CI run's 30 s: a caught seed waits out the whole drain. The control runs use it too. */
const drainMs = 10_000;

async function run(canary: QueueCanary | undefined, seeds: readonly number[]): Promise<QueueSeedResult[]> {
  const out: QueueSeedResult[] = [];
  for (const seed of seeds) out.push(await runQueueSeed(seed, (b) => h32Raw(b), { drainMs, ...(canary === undefined ? {} : { canary }) }));
  return out;
}

async function caughtBy(t: Test, canary: QueueCanary, kinds: readonly string[], atLeast: number): Promise<void> {
  const results = await run(canary, Array.from({ length: seedsCount }, (_, i) => i));
  const caught = results.filter((r) => !r.ok);
  const byProperty = new Map<string, number>();
  for (const r of caught) byProperty.set(r.property, (byProperty.get(r.property) ?? 0) + 1);
  t.comment(`${canary}: caught by seeds ${caught.map((r) => r.seed).join(' ')} (${JSON.stringify([...byProperty])})`);
  t.ok(caught.length >= atLeast, `${canary} is caught in at least ${atLeast} of ${seedsCount} seeds (${caught.length})`);
  t.same(caught.filter((r) => !kinds.includes(r.property)).map((r) => `${r.seed}: ${r.property}: ${r.error}`), [], `each by ${kinds.join(' or ')}`);
  const control = await run(undefined, caught.map((r) => r.seed));
  t.same(control.filter((r) => !r.ok).map((r) => `${r.seed}: ${r.property}: ${r.error}`), [], 'the same seeds pass without the canary');
}

t.test('a leader that answers publishes before a majority holds them loses acknowledged messages', async (t) => {
  await caughtBy(t, 'ack-before-majority', ['lost', 'offset-conflict'], Math.ceil(seedsCount / 5));
});

t.test('a cursor that moves at delivery, before the ack, loses messages', async (t) => {
  await caughtBy(t, 'cursor-before-ack', ['lost'], Math.ceil(seedsCount / 2));
});
