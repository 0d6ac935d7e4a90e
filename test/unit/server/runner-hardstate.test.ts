// Checks that a Raft replica writes one WAL batch per entry at one request in flight
// (issue 9, latency path). A hard state that changes only the commit index is kept
// back and rides with the next batch written anyway; written alone it cost every
// replica a second fsync per request, which the next request's fsync queued behind.
// Also: a graceful stop writes the kept commit index, so a clean restart applies all
// it knew committed. Counts of WAL batches on an in-process host (runner-env.ts).

import t from 'tap';
import { InstantStorage, soloLeader, testHost } from './runner-env.js';

const requests = 20;

t.test('one request at a time costs one WAL batch each, not two', async (t) => {
  const storage = new InstantStorage();
  const h = testHost({ storage });
  const g = soloLeader(h);
  const before = storage.batches.length;
  for (let i = 0; i < requests; i++) {
    const p = g.propose(new Uint8Array([i]));
    for (let k = 0; k < 10; k++) h.scheduler.drain();
    await p;
  }
  const batches = storage.batches.slice(before);
  const commitOnly = batches.filter((b) => b.entries === 0);
  t.equal(commitOnly.length, 0, `no batch of a commit-only hard state (${commitOnly.length} of ${batches.length})`);
  t.equal(batches.length, requests, 'one batch per request');
  // The kept commit index rides with the next entries: each batch after the first carries
  // the commit of the previous request.
  const last = batches[batches.length - 1];
  t.ok(last?.hardState !== null && (last?.hardState.commit ?? 0) >= g.applied - 1,
    `the last batch carries the previous commit (${last?.hardState?.commit}, applied ${g.applied})`);

  await h.host.stop();
  const final = storage.batches[storage.batches.length - 1];
  t.equal(final?.entries, 0, 'a graceful stop writes the kept hard state');
  t.equal(final?.hardState?.commit, g.applied, 'with the commit index of everything applied');
});
