// The fault runner in CI: for each seed (CHAOS_SEEDS, default 1,2,3) a run of
// CHAOS_DURATION_S seconds (default 60) on 3 real nodes behind fault proxies, every
// service under load (locks, queues, cache), with the nemesis killing, pausing,
// partitioning and tearing a node's unsynced WAL batch; asserts 0 anomalies (lock
// safety, queue accounting, per-key cache linearizability) and prints the report.
// Then the canaries, together in one short run without faults, each a deliberately
// broken behaviour its checker must catch: a fenced resource that honours no token
// ('fence-off'), lock clients that keep using a lock after `lost` fired
// ('ignore-lost'), queue nodes that forget failed delivery attempts
// ('queue-forget-failed') and cache homes that skip one invalidation per write
// ('cache-skip-invalidation'); the last two are node bugs (DSYNC_CANARY).

import t from 'tap';
import { formatReport } from './report.js';
import { runChaos } from './runner.js';

const seeds = (process.env['CHAOS_SEEDS'] ?? '1,2,3').split(',').filter((s) => s.trim() !== '').map(Number).filter((n) => Number.isInteger(n));
const durationMs = Number(process.env['CHAOS_DURATION_S'] ?? 60) * 1000;
const canaryDurationMs = Number(process.env['CHAOS_CANARY_S'] ?? 15) * 1000;
/** Per run: load + drain + start/stop slack. */
const runBudgetMs = (ms: number): number => ms + 75_000;

t.setTimeout(seeds.reduce((sum) => sum + runBudgetMs(durationMs), 0) + runBudgetMs(canaryDurationMs));

for (const seed of seeds) {
  t.test(`seed ${seed}: ${durationMs / 1000} s of faults, 0 anomalies in locks, queues and cache`, async (t) => {
    const r = await runChaos({ seed, durationMs, nodes: 3 });
    t.comment(formatReport({ ...r, history: [] }));
    const svc = (name: string) => r.services.find((s) => s.service === name);
    t.ok((svc('locks')?.opsByOutcome['acquire']?.ok ?? 0) > 50, 'locks were granted under faults');
    t.ok((svc('queues')?.stats['publishedOk'] ?? 0) > 100, 'messages were published under faults');
    t.ok((svc('queues')?.stats['deliveries'] ?? 0) > 100, 'messages were delivered under faults');
    t.ok((svc('cache')?.stats['readsWithValue'] ?? 0) > 100, 'cache reads found values under faults');
    t.ok(r.faults.length >= 3, `${r.faults.length} faults injected`);
    t.ok(r.faults.some((f) => f.kind === 'pause-leader-first-lock'), 'a first lock() met a paused leader');
    t.ok(r.faults.some((f) => f.kind === 'lose-unsynced' && f.detail.includes('died at the failpoint')),
      'a node lost the unsynced half of a WAL batch (failpoint) and restarted');
    t.equal(r.anomalies, 0, `no anomalies (replay: ${r.replay})`);
    if (r.anomalies > 0) t.comment(formatReport(r)); // with the operations involved
  });
}

const canaries = {
  'fence-off': ['fence-stale-accept', 'exclusive-overlap'],
  'ignore-lost': ['access-after-lost'],
  'queue-forget-failed': ['lost'],
  'cache-skip-invalidation': ['non-linearizable'],
} as const;

t.test(`canaries ${Object.keys(canaries).join(', ')} are each caught`, async (t) => {
  const r = await runChaos({ seed: 7, durationMs: canaryDurationMs, nodes: 3, canary: Object.keys(canaries).join(','), moves: [] });
  t.comment(formatReport({ ...r, history: [] }).split('\n').filter((l) => !l.startsWith('  ! ') && !l.startsWith('      op')).join('\n'));
  const found = new Set(r.services.flatMap((s) => s.anomalies.map((a) => a.kind)));
  for (const [canary, kinds] of Object.entries(canaries)) {
    t.ok(kinds.some((k) => found.has(k)), `${canary}: the checker reports ${kinds.join(' or ')} (found: ${[...found].join(', ') || 'none'})`);
  }
});
