// on-worker.ts, which the simulator suites run their seeds through: a result comes back
// as the function returned it, seeds in the order given, and a throw or a missing
// export fails the call with its message instead of hanging or passing.

import t from 'tap';
import { mapSeedsOnWorker, runOnWorker } from './on-worker.js';

t.test('runOnWorker returns what the export returns', async (t) => {
  t.equal(await runOnWorker<string>(new URL('node:path'), 'join', ['sim', 'seeds.json']), 'sim/seeds.json');
});

t.test('mapSeedsOnWorker calls the export once per seed, in the order given', async (t) => {
  const out = await mapSeedsOnWorker<string, string>(new URL('node:util'), 'format', [3, 1, 2], 'opts');
  t.same(out, ['3 opts', '1 opts', '2 opts']);
});

t.test('a throw in the worker rejects the call with its message', async (t) => {
  await t.rejects(runOnWorker(new URL('node:assert'), 'fail', ['seed 7 broke']), /fail on a worker failed: .*seed 7 broke/);
});

t.test('a missing export rejects the call, naming it', async (t) => {
  await t.rejects(runOnWorker(new URL('node:path'), 'runNoSuchSeed', []), /exports no function runNoSuchSeed/);
});
