// Checks that ReadIndex contexts never repeat across boots of the same node
// (issue 7, item 9): two GroupHosts for node n1 with different boot nonces, each
// a single-voter leader of group 0, issue their first linearizable read; the
// contexts handed to Raft must differ although both are read #1, and each read
// still completes (the runner recognises its own context when Raft answers).

import t from 'tap';
import { readContextBytes } from '../../../core/constants.js';
import type { GroupRunner } from '../../../server/raft/runner.js';
import { nonce, soloLeader, testHost } from './runner-env.js';

/** Issues one read, records the context Raft was given, drives until the read completes (bounded). */
async function firstReadContext(bootNonce: Uint8Array): Promise<{ ctx: Uint8Array; done: boolean }> {
  const h = testHost({ bootNonce });
  const g: GroupRunner = soloLeader(h);
  const contexts: Uint8Array[] = [];
  const readIndex = g.raft.readIndex.bind(g.raft);
  g.raft.readIndex = (ctx: Uint8Array): boolean => {
    contexts.push(ctx.slice());
    return readIndex(ctx);
  };
  let done = false;
  const read = g.readBarrier().then(() => { done = true; });
  for (let i = 0; i < 1_000 && !done; i++) {
    h.scheduler.tick();
    await Promise.resolve();
  }
  await Promise.race([read, Promise.resolve()]);
  await h.host.stop();
  const ctx = contexts[0];
  if (ctx === undefined || contexts.length !== 1) throw new Error(`expected one read context, got ${contexts.length}`);
  return { ctx, done };
}

t.test('two boots of one node give their first reads distinct contexts, and both reads complete', async (t) => {
  const a = await firstReadContext(nonce(0xa1));
  const b = await firstReadContext(nonce(0xb2));
  t.ok(a.done && b.done, 'each boot\'s read completes');
  t.notSame([...a.ctx], [...b.ctx], 'read #1 of boot A and read #1 of boot B carry different contexts');
  t.equal(a.ctx.length, readContextBytes, 'a context is fixed-size (nonce + counter)');
});

t.test('one boot never repeats a context', async (t) => {
  const h = testHost({ bootNonce: nonce(7) });
  const g = soloLeader(h);
  const seen = new Set<string>();
  const readIndex = g.raft.readIndex.bind(g.raft);
  g.raft.readIndex = (ctx: Uint8Array): boolean => {
    seen.add(Buffer.from(ctx).toString('hex'));
    return readIndex(ctx);
  };
  let completed = 0;
  const reads = Array.from({ length: 50 }, () => g.readBarrier().then(() => { completed++; }));
  for (let i = 0; i < 1_000 && completed < reads.length; i++) {
    h.scheduler.tick();
    await Promise.resolve();
  }
  t.equal(seen.size, 50, '50 reads, 50 distinct contexts');
  t.equal(completed, 50, 'and every read completed');
  await h.host.stop();
});
