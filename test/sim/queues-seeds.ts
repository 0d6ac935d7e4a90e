// The queue simulation's CI run (queues-sim.ts), shared by queues.test.ts and
// queues-2.test.ts: QUEUE_SIM_SEEDS seeds in all (default 500) from SEED_START (default
// 0), the first half in queues.test.ts and the second in queues-2.test.ts, so tap's two
// jobs run them side by side. Every seed goes through the shared queue checker: no
// acknowledged publish lost, nothing delivered that was not published, no offset
// holding two values, per-key order (a producer's publishes and each consumer's first
// deliveries); see queues-sim.ts for the faults.

import type { Test } from 'tap';
import xxhash from 'xxhash-wasm';
import { runOnWorker } from './on-worker.js';
import { runQueueSeed } from './queues-sim.js';

/**
 * A CI seed's size: 48 values published under 2.5 s of faults (the simulator's default is 80
 * under 4 s). 500 seeds of the default size cost about 225 s of CPU, a fifth of CI's budget;
 * QUEUE_SIM_PUBLISHES and QUEUE_SIM_FAULT_MS set others.
 */
const ciSeedSize = {
  publishes: Number(process.env['QUEUE_SIM_PUBLISHES'] ?? '48'),
  faultPhaseMs: Number(process.env['QUEUE_SIM_FAULT_MS'] ?? '2500'),
};

/** The seeds half `half` (0 or 1) of the run takes. */
export function queueSeedRange(half: 0 | 1, env: Readonly<Record<string, string | undefined>> = process.env): { first: number; count: number } {
  const total = Number(env['QUEUE_SIM_SEEDS'] ?? '500');
  const start = Number(env['SEED_START'] ?? '0');
  const firstHalf = Math.ceil(total / 2);
  return half === 0 ? { first: start, count: firstHalf } : { first: start + firstHalf, count: total - firstHalf };
}

export interface SeedRangeOutcome {
  readonly first: number;
  readonly count: number;
  /** One line per failing seed (property, first lines of the error, profile). */
  readonly failures: string[];
  readonly acked: number;
  readonly delivered: number;
  readonly duplicates: number;
  readonly redeliveries: number;
  readonly crashes: number;
  readonly resets: number;
  readonly installed: number;
  readonly saved: number;
  /** Partition moves applied (membership changes), and those not settled when their seed ended. */
  readonly moves: number;
  readonly movesUnsettled: number;
}

/** Runs half `half` of the CI seeds on a worker thread (on-worker.ts); `comment` gets the timing and totals. The test files assert on the outcome. */
export async function runQueueSeedHalf(half: 0 | 1, comment: (line: string) => void): Promise<SeedRangeOutcome> {
  const { outcome, comments } = await runOnWorker<{ outcome: SeedRangeOutcome; comments: string[] }>(
    new URL(import.meta.url), 'queueSeedHalfInThread', [half]);
  for (const line of comments) comment(line);
  return outcome;
}

/** runQueueSeedHalf's work, in the calling thread; the comment lines are returned. */
export async function queueSeedHalfInThread(half: 0 | 1): Promise<{ outcome: SeedRangeOutcome; comments: string[] }> {
  const comments: string[] = [];
  const comment = (line: string): void => {
    comments.push(line);
  };
  const { first, count } = queueSeedRange(half);
  const { h32Raw } = await xxhash();
  const startedMs = performance.now();
  const cpuBefore = process.cpuUsage();
  const sum = { first, count, failures: [] as string[], acked: 0, delivered: 0, duplicates: 0, redeliveries: 0, crashes: 0, resets: 0, installed: 0, saved: 0, moves: 0, movesUnsettled: 0 };
  for (let s = first; s < first + count; s++) {
    const r = await runQueueSeed(s, (b) => h32Raw(b), ciSeedSize);
    if (!r.ok) sum.failures.push(`seed ${s}: ${r.property}: ${r.error.split('\n').slice(0, 4).join(' | ')} (${r.profile})`);
    sum.acked += r.acked;
    sum.delivered += r.delivered;
    sum.duplicates += r.duplicates;
    sum.redeliveries += r.redeliveries;
    sum.crashes += r.crashes;
    sum.resets += r.resets;
    sum.installed += r.snapshotsInstalled;
    sum.saved += r.snapshotsSaved;
    sum.moves += r.moves;
    sum.movesUnsettled += r.movesUnsettled;
  }
  const cpu = process.cpuUsage(cpuBefore);
  const wallS = (performance.now() - startedMs) / 1000;
  comment(`${count} seeds in ${wallS.toFixed(1)} s (${(wallS / count).toFixed(3)} s/seed wall, ${((cpu.user + cpu.system) / 1e6 / count).toFixed(3)} s/seed CPU)`);
  comment(`${sum.acked} publishes acknowledged, ${sum.delivered} deliveries (${sum.redeliveries} redeliveries, ${sum.duplicates} duplicates), `
    + `${sum.crashes} crashes, ${sum.resets} client connection resets, ${sum.installed} snapshots installed, ${sum.saved} saved, `
    + `${sum.moves} partition moves (${sum.movesUnsettled} unsettled at the end)`);
  return { outcome: sum, comments };
}

/** About 0.3 s of CPU a seed at the CI size: 250 seeds take ~75 s on an idle core; this leaves room for a loaded machine. */
export function queueSeedsTimeoutMs(half: 0 | 1): number {
  return Math.max(240_000, queueSeedRange(half).count * 4_000);
}

/** The checks that the half's seeds exercised what the checker is there for: acknowledged publishes, snapshots, crashes, redeliveries, moves. */
export function assertFaultsExercised(t: Test, r: SeedRangeOutcome, count: number): void {
  t.ok(r.acked > count * 10, `publishes were acknowledged (${r.acked})`);
  t.ok(r.saved > 0, 'partitions compacted their logs into snapshots');
  t.ok(r.crashes > 0, 'the nemesis crashed nodes');
  t.ok(r.redeliveries > 0, 'failed attempts were redelivered');
  t.ok(r.moves > 0, `partitions moved when the queue's voters changed (${r.moves} moves, ${r.movesUnsettled} unsettled when their seed ended)`);
}

export interface LaggardOutcome {
  readonly failures: string[];
  readonly acked: number;
  readonly installed: number;
}

/** Seeds first..first+count-1 with a laggard replica (queues-laggard.test.ts runs this on a worker). */
export async function runLaggardSeeds(first: number, count: number): Promise<LaggardOutcome> {
  const { h32Raw } = await xxhash();
  const out = { failures: [] as string[], acked: 0, installed: 0 };
  for (let seed = first; seed < first + count; seed++) {
    const r = await runQueueSeed(seed, (b) => h32Raw(b), { laggard: true, publishes: 160, faultPhaseMs: 6_000, snapshotEntries: 4 });
    if (!r.ok) out.failures.push(`seed ${seed}: ${r.property}: ${r.error.split('\n').slice(0, 4).join(' | ')} (${r.profile})`);
    out.acked += r.acked;
    out.installed += r.snapshotsInstalled;
  }
  return out;
}
