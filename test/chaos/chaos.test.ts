// The fault runner in CI: for each seed (CHAOS_SEEDS, default 1,2,3) a run of
// CHAOS_DURATION_S seconds (default 60) on 3 real nodes behind fault proxies, with
// the nemesis killing, pausing, partitioning and tearing a node's unsynced WAL batch; asserts 0 lock-safety anomalies
// and prints the report. Then the canaries: deliberately broken behaviour the
// checker must catch — a fenced resource that honours no token ('fence-off') and
// clients that keep using a lock after `lost` fired ('ignore-lost') — each a short
// run without faults (client stalls past the lease do the work) that must report
// the named anomaly.

import t from 'tap';
import { formatReport } from './report.js';
import { runChaos } from './runner.js';

const seeds = (process.env['CHAOS_SEEDS'] ?? '1,2,3').split(',').filter((s) => s.trim() !== '').map(Number).filter((n) => Number.isInteger(n));
const durationMs = Number(process.env['CHAOS_DURATION_S'] ?? 60) * 1000;
const canaryDurationMs = Number(process.env['CHAOS_CANARY_S'] ?? 15) * 1000;
/** Per run: load + start/stop slack. */
const runBudgetMs = (ms: number): number => ms + 60_000;

t.setTimeout(seeds.reduce((sum) => sum + runBudgetMs(durationMs), 0) + 2 * runBudgetMs(canaryDurationMs));

for (const seed of seeds) {
  t.test(`seed ${seed}: ${durationMs / 1000} s of faults, 0 lock-safety anomalies`, async (t) => {
    const r = await runChaos({ seed, durationMs, nodes: 3 });
    t.comment(formatReport({ ...r, history: [] }));
    const locks = r.services.find((s) => s.service === 'locks');
    t.ok(locks !== undefined && (locks.opsByOutcome['acquire']?.ok ?? 0) > 50, 'locks were granted under faults');
    t.ok(r.faults.length >= 3, `${r.faults.length} faults injected`);
    t.ok(r.faults.some((f) => f.kind === 'pause-leader-first-lock'), 'a first lock() met a paused leader');
    t.ok(r.faults.some((f) => f.kind === 'lose-unsynced' && f.detail.includes('died at the failpoint')),
      'a node lost the unsynced half of a WAL batch (failpoint) and restarted');
    t.equal(r.anomalies, 0, `no anomalies (replay: ${r.replay})`);
    if (r.anomalies > 0) t.comment(formatReport(r)); // with the operations involved
  });
}

for (const [canary, kinds] of [['fence-off', ['fence-stale-accept', 'exclusive-overlap']], ['ignore-lost', ['access-after-lost']]] as const) {
  t.test(`canary ${canary} is caught`, async (t) => {
    const r = await runChaos({ seed: 7, durationMs: canaryDurationMs, nodes: 3, canary, moves: [] });
    const found = r.services.flatMap((s) => s.anomalies.map((a) => a.kind));
    t.comment(formatReport({ ...r, history: [] }).split('\n').filter((l) => !l.startsWith('  ! ') && !l.startsWith('      op')).join('\n'));
    t.ok(found.some((k) => (kinds as readonly string[]).includes(k)), `the checker reports ${kinds.join(' or ')} (found: ${[...new Set(found)].join(', ') || 'none'})`);
  });
}
