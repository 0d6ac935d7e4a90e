// Command-line runner for the real-runner simulation (runner-sim.ts).
//   SEED=n      replay one seed (TRACE=1 prints its trace)
//   SEEDS=n     run seeds SEED_START..SEED_START+n-1 (default 200) plus runner-seeds.json
//   DISK=...    a canary disk (ack-before-fsync | forget-vote); HARSH=1 crash often, fsync slowly
//   ACK_CHECK=0 turn off the send-time ack-durability check

import { envInt, runMain, seedsToRun } from './common.js';
import { runRunnerSeed } from './runner-sim.js';
import type { RunnerSimOptions } from './runner-sim.js';
import type { DiskVariant } from './sim-disk.js';
import { loadKeptSeeds } from './seeds.js';

function diskVariant(v: string | undefined): DiskVariant {
  if (v === undefined || v === '' || v === 'correct') return 'correct';
  if (v === 'ack-before-fsync' || v === 'forget-vote') return v;
  throw new Error(`unknown DISK ${v}`);
}

async function main(): Promise<number> {
  const opts: RunnerSimOptions = {
    diskVariant: diskVariant(process.env['DISK']),
    checkAckDurability: process.env['ACK_CHECK'] !== '0',
    harsh: process.env['HARSH'] === '1',
    faultPhaseMs: envInt('FAULT_MS', 6_000),
  };
  const single = process.env['SEED'];
  if (single !== undefined && single !== '') {
    const r = await runRunnerSeed(envInt('SEED', 0), { ...opts, trace: process.env['TRACE'] === '1' });
    if (process.env['TRACE'] === '1') console.log(r.trace.join('\n'));
    console.log(`seed ${r.seed}: ${r.ok ? 'ok' : `FAILED ${r.property}`} (${r.events} events, ${Math.round(r.virtualMs)} virtual ms, ${r.acked} acked, ${r.reads} reads)`);
    console.log(`  profile: ${r.profile}\n  stats: ${JSON.stringify(r.stats)}`);
    if (!r.ok) console.log(`  ${r.error}`);
    return r.ok ? 0 : 1;
  }
  const seeds = seedsToRun(loadKeptSeeds('runner-seeds.json').map((s) => s.seed), envInt('SEED_START', 0), envInt('SEEDS', 200));
  const t0 = performance.now();
  let failed = 0;
  for (const seed of seeds) {
    const r = await runRunnerSeed(seed, opts);
    if (r.ok) continue;
    failed++;
    console.log(`FAILED seed ${seed}: ${r.property}: ${r.error.split('\n').slice(0, 6).join('\n    ')}\n  profile: ${r.profile}\n  replay: SEED=${seed} TRACE=1 node dist/test/sim/runner-run.js`);
  }
  console.log(`${seeds.length} seeds, ${failed} failed, ${((performance.now() - t0) / 1000).toFixed(1)}s`);
  return failed === 0 ? 0 : 1;
}

runMain(main);
