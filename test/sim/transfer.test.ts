// Leadership transfer in CI: TRANSFER_SEEDS (default 300) seeded runs of
// runTransferSeed (transfers to up-to-date and lagging targets under message
// loss while clients write) plus every seed in transfer-seeds.json. Each run
// checks the simulator's Raft invariants after every step, that proposals are
// refused with 'transferring' during a transfer, that a transfer completes or
// ends within an election timeout, and convergence after healing. A canary - a
// leader that ignores transferLeadership() - must be caught. Replay with SEED=n.

import t from 'tap';
import { failureReport } from './common.js';
import type { RaftFactory } from './cluster.js';
import { realRaft } from './raft-factory.js';
import { runTransferSeed } from './transfer.js';
import type { TransferResult } from './transfer.js';
import { loadKeptSeeds } from './seeds.js';

const seedEnv = process.env['SEED'];
const seedsCount = Number(process.env['TRANSFER_SEEDS'] ?? '300');

function report(r: TransferResult): string {
  return failureReport(r, 'npx tap test/sim/transfer.test.js');
}

/** Canary: a replica whose transferLeadership() does nothing (so proposals keep being accepted). */
const ignoresTransfer: RaftFactory = (config, persisted) => {
  const inner = realRaft(config, persisted);
  return {
    tick: () => inner.tick(),
    step: (m) => inner.step(m),
    propose: (d) => inner.propose(d),
    proposeConfChange: (cc) => inner.proposeConfChange(cc),
    readIndex: (ctx) => inner.readIndex(ctx),
    transferLeadership: () => {},
    hasReady: () => inner.hasReady(),
    ready: () => inner.ready(),
    persisted: (n) => inner.persisted(n),
    appliedTo: (i) => inner.appliedTo(i),
    advance: () => inner.advance(),
    compact: (i, d) => inner.compact(i, d),
    status: () => inner.status(),
  };
};

if (seedEnv !== undefined && seedEnv !== '') {
  t.test(`replay seed ${seedEnv}`, async (t) => {
    const r = runTransferSeed(Number(seedEnv), { raftFactory: realRaft, trace: process.env['TRACE'] === '1' });
    if (process.env['TRACE'] === '1') t.comment(r.trace.join('\n'));
    t.ok(r.ok, r.ok ? `seed ${r.seed} passes (${JSON.stringify(r.counts)})` : report(r));
  });
} else {
  t.test('every kept seed still passes', async (t) => {
    for (const { seed } of loadKeptSeeds('transfer-seeds.json')) {
      const r = runTransferSeed(seed, { raftFactory: realRaft });
      t.ok(r.ok, r.ok ? `seed ${seed} passes` : report(r));
    }
  });

  t.test(`${seedsCount} seeds: transfers complete or abort in time, nothing committed is lost`, async (t) => {
    const failures: string[] = [];
    const total = { started: 0, lagging: 0, completed: 0, aborted: 0, steppedDown: 0, refusedTransferring: 0 };
    for (let seed = 0; seed < seedsCount; seed++) {
      const r = runTransferSeed(seed, { raftFactory: realRaft });
      if (!r.ok) failures.push(report(r));
      for (const k of Object.keys(total) as (keyof typeof total)[]) total[k] += r.counts[k];
    }
    t.same(failures, [], 'no seed failed');
    t.ok(total.completed > seedsCount, `transfers completed (${JSON.stringify(total)})`);
    t.ok(total.aborted > seedsCount / 3, `transfers aborted (lost TimeoutNow, lagging target) (${total.aborted})`);
    t.ok(total.lagging > seedsCount, `lagging targets (${total.lagging})`);
    t.equal(total.refusedTransferring, total.started, 'every transfer refused the proposal made right after it');
  });

  t.test('canary: a leader that ignores transferLeadership is caught', async (t) => {
    const results = Array.from({ length: 20 }, (_, seed) => runTransferSeed(seed, { raftFactory: ignoresTransfer }));
    const caught = results.filter((r) => r.property === 'transfer-refuse').length;
    t.equal(caught, 20, `every seed reports transfer-refuse (${caught})`);
  });
}
