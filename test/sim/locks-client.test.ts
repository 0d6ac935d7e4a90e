// The lock simulation with the client that ships (locks-client-sim.ts): the real
// Router and LockClient on virtual time against the real LockService, under leader
// pauses longer than the session TTL (with fresh clients whose first lock() goes to
// the paused leader), leader crashes, partitions, clients cut off from nodes and
// connection resets. Each seed checks that no client keeps using a lock after the
// server could give it to someone else, that calls settle after healing, that a
// client reaching a healthy majority keeps its session and its calls succeed (issue 7,
// items 1, 5 and 6), and the server-side lock history rules. Two canaries built from
// the shipped classes through their seams must be caught. Counts: LOCK_CLIENT_SIM_SEEDS
// (default 40), LOCK_CLIENT_CANARY_SEEDS (default 12). Replay a failure with
// `SEED=n TRACE=1 [VARIANT=...] node dist/test/sim/locks-client-run.js`.

import { availableParallelism } from 'node:os';
import t from 'tap';
import { assert } from '../../core/assert.js';
import { failureReport } from './common.js';
import { type ClientSeedSummary, runClientSeedsParallel } from './locks-client-run.js';
import type { ClientSimResult, ClientSimStats, ClientVariant } from './locks-client-sim.js';
import { mapSeedsOnWorker } from './on-worker.js';

const seedsCount = Number(process.env['LOCK_CLIENT_SIM_SEEDS'] ?? '40');
const canarySeeds = Number(process.env['LOCK_CLIENT_CANARY_SEEDS'] ?? '12');
const seedStart = Number(process.env['SEED_START'] ?? '0');
const jobs = Math.max(1, Math.min(2, availableParallelism()));

const seedList = (n: number): number[] => Array.from({ length: n }, (_, i) => seedStart + i);

function byProperty(results: readonly ClientSeedSummary[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const r of results) if (!r.ok) m.set(r.property, (m.get(r.property) ?? 0) + 1);
  return m;
}

const count = (m: Map<string, number>, ...keys: string[]): number => keys.reduce((a, k) => a + (m.get(k) ?? 0), 0);

t.test(`${seedsCount} seeds: the shipped client keeps locks safe and sessions alive through paused leaders`, async (t) => {
  const t0 = performance.now();
  const results = await runClientSeedsParallel(seedList(seedsCount), {}, jobs);
  const failures = results.filter((r) => !r.ok).map((r) => failureReport(r, 'node dist/test/sim/locks-client-run.js', 6));
  t.same(failures, [], 'no seed failed');
  t.equal(results.length, seedsCount, 'every seed ran');
  const stat = (k: keyof ClientSimStats): number => results.reduce((a, r) => a + r.clientStats[k], 0);
  // The run must really have exercised what it claims to.
  t.ok(stat('leaderPauses') >= seedsCount, `leaders were paused beyond the TTL (${stat('leaderPauses')})`);
  t.ok(stat('freshClients') >= seedsCount / 2, `fresh clients issued their first lock() at a paused leader (${stat('freshClients')})`);
  t.ok(stat('clientCuts') >= seedsCount, `clients were cut off from nodes (${stat('clientCuts')})`);
  t.ok(stat('grants') > seedsCount * 20, `grants reached user code (${stat('grants')})`);
  t.ok(stat('grantsAfterHeal') >= seedsCount * 4, `every client got locks after healing (${stat('grantsAfterHeal')})`);
  t.ok(stat('lost') > 0, `holders saw lost fire (${stat('lost')})`);
  t.ok(stat('sessionExpiredCalls') > 0, `calls failed SESSION_EXPIRED, late grants among them (${stat('sessionExpiredCalls')})`);
  t.ok(stat('overlapsChecked') > seedsCount * 100, `pairs of holds were checked (${stat('overlapsChecked')})`);
  t.ok(stat('healthyMs') > seedsCount * 10_000, `clients spent time with a healthy majority, where session loss is checked (${stat('healthyMs')} ms)`);
  t.comment(`${seedsCount} seeds in ${((performance.now() - t0) / 1000).toFixed(1)}s on ${jobs} job(s): ${JSON.stringify(results.reduce((acc, r) => {
    for (const [k, v] of Object.entries(r.clientStats)) acc[k] = (acc[k] ?? 0) + v;
    return acc;
  }, {} as Record<string, number>))}`);
});

async function canary(variant: ClientVariant): Promise<Map<string, number>> {
  return byProperty(await runClientSeedsParallel(seedList(canarySeeds), { variant }, jobs));
}

t.test('a LockClient that hands out grants without checking its session (item 1) is caught', async (t) => {
  const m = await canary('grant-unchecked');
  t.ok(count(m, 'held-after-regrant', 'held-after-session-end') >= Math.ceil(canarySeeds / 4),
    `a client kept a lock the server could give to others (${JSON.stringify([...m])})`);
});

t.test('a Router for which TIMEOUT is final and that keeps a stalled leader (item 5) is caught', async (t) => {
  const m = await canary('timeout-final');
  t.ok(count(m, 'session-lost-while-healthy', 'request-failed-while-healthy') >= Math.ceil(canarySeeds * 0.6),
    `sessions lost or calls failed while a healthy majority was reachable (${JSON.stringify([...m])})`);
});

t.test('a seed replays byte for byte', async (t) => {
  // Off tap's thread (on-worker.ts says why), both runs in one thread as before.
  const [a, b] = await mapSeedsOnWorker<{ trace: boolean }, ClientSimResult>(new URL('./locks-client-sim.js', import.meta.url), 'runClientLockSeed',
    [seedStart + 3, seedStart + 3], { trace: true });
  assert(a !== undefined && b !== undefined, 'two runs');
  t.ok(a.ok && b.ok, 'the seed passes');
  t.equal(a.trace.join('\n'), b.trace.join('\n'), 'identical traces');
  t.same(a.clientStats, b.clientStats, 'identical counters');
  t.ok(a.trace.some((l) => l.includes(' holds ')), 'the trace shows grants in user code');
});
