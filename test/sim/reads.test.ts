// Linearizable ReadIndex reads in CI: READS_SEEDS (default 300) seeded runs of
// runReadsSeed (register writes through Raft, ReadIndex reads on leaders and
// followers, the swarm's faults) plus every seed in reads-seeds.json; each run's
// read/write history is checked for per-key linearizability against the
// commit order (see reads.ts). The canary - reads served from local applied
// state without ReadIndex - must be caught within the CI seeds. A failure
// names the seed; replay one run with SEED=n (TRACE=1 adds the event trace).

import t from 'tap';
import { failureReport } from './common.js';
import { realRaft } from './raft-factory.js';
import { runReadsSeed } from './reads.js';
import type { ReadsResult } from './reads.js';
import { loadKeptSeeds } from './seeds.js';

const seedEnv = process.env['SEED'];
const seedsCount = Number(process.env['READS_SEEDS'] ?? '300');
const seedStart = Number(process.env['SEED_START'] ?? '0');

function report(r: ReadsResult): string {
  return failureReport(r, 'npx tap test/sim/reads.test.js');
}

if (seedEnv !== undefined && seedEnv !== '') {
  t.test(`replay seed ${seedEnv}`, async (t) => {
    const r = runReadsSeed(Number(seedEnv), { raftFactory: realRaft, trace: process.env['TRACE'] === '1' });
    if (process.env['TRACE'] === '1') t.comment(r.trace.join('\n'));
    t.ok(r.ok, r.ok ? `seed ${r.seed} passes (${JSON.stringify(r.reads)})` : report(r));
  });
} else {
  t.test('every kept seed still passes', async (t) => {
    for (const { seed } of loadKeptSeeds('reads-seeds.json')) {
      const r = runReadsSeed(seed, { raftFactory: realRaft });
      t.ok(r.ok, r.ok ? `seed ${seed} passes` : report(r));
    }
  });

  t.test(`${seedsCount} seeds: ReadIndex reads are linearizable under faults`, async (t) => {
    const failures: string[] = [];
    let answered = 0;
    let onFollower = 0;
    let writes = 0;
    for (let seed = seedStart; seed < seedStart + seedsCount; seed++) {
      const r = runReadsSeed(seed, { raftFactory: realRaft });
      if (!r.ok) failures.push(report(r));
      answered += r.reads.answered;
      onFollower += r.reads.answeredOnFollower;
      writes += r.writesCommitted;
    }
    t.same(failures, [], 'no seed failed');
    t.ok(answered > seedsCount * 50, `reads answered (${answered})`);
    t.ok(onFollower > seedsCount * 10, `reads answered on followers (${onFollower})`);
    t.ok(writes > seedsCount * 10, `writes committed (${writes})`);
  });

  t.test('canary: reads from local applied state without ReadIndex are caught', async (t) => {
    let caught = 0;
    for (let seed = 0; seed < 100; seed++) {
      const r = runReadsSeed(seed, { raftFactory: realRaft, variant: 'local' });
      if (r.property === 'linearizability') caught++;
    }
    t.ok(caught >= 10, `stale local reads detected in ${caught} of 100 seeds`);
  });

  t.test('canary: serving a ReadIndex before applying up to it is caught', async (t) => {
    let caught = 0;
    for (let seed = 0; seed < seedsCount; seed++) {
      const r = runReadsSeed(seed, { raftFactory: realRaft, variant: 'no-wait' });
      if (r.property === 'linearizability') caught++;
    }
    t.ok(caught >= 5, `reads ahead of the state machine detected in ${caught} of ${seedsCount} seeds`);
  });
}
