// Checks that ReadIndex contexts never repeat across boots of the same node
// (issue 7, item 9): two GroupHosts for node n1 with different boot nonces, each
// a single-voter leader of group 0, issue their first linearizable read; the
// contexts handed to Raft must differ although both are read #1, and each read
// still completes (the runner recognises its own context when Raft answers). Also
// that a read whose ReadIndex message is lost fails (retryable) instead of hanging.

import t from 'tap';
import { heartbeatIntervalTicks, raftReadTimeoutTicks, readContextBytes } from '../../../core/constants.js';
import { groupId, nodeId } from '../../../core/ids.js';
import { newMessage } from '../../../core/raft/message.js';
import { MessageType } from '../../../core/raft/types.js';
import { DsyncError, ErrorCode } from '../../../protocol/errors.js';
import type { GroupRunner } from '../../../server/raft/runner.js';
import { nonce, nullMachine, soloLeader, testHost } from './runner-env.js';

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

// Issue 7 item 5 (the gap found): a follower forwards a linearizable read to its leader
// as a ReadIndex message, and peer sends are fire and forget (a link reconnecting after a
// pause drops frames). If that message or its answer is lost, nothing resends it and no
// leader change fails it: the read, and the client request behind it, never get an
// answer. The runner must fail such a read with a retryable error after a bound.
t.test('a follower\'s read whose ReadIndex message is lost fails with UNAVAILABLE instead of waiting forever', async (t) => {
  const h = testHost({ id: 'n1' });
  const [n1, n2, n3] = [nodeId('n1'), nodeId('n2'), nodeId('n3')];
  const g = h.host.ensure(groupId(0), nullMachine, { voters: [n1, n2, n3], learners: [] });
  const heartbeat = (): void => g.step(newMessage(MessageType.Heartbeat, n2, n1, 1, { commit: 0 }));
  heartbeat();
  h.scheduler.drain();
  t.equal(g.leader, n2, 'n1 follows n2');
  let outcome: string | null = null;
  g.readBarrier().then(() => { outcome = 'resolved'; }, (err: unknown) => { outcome = err instanceof DsyncError ? err.code : String(err); });
  h.scheduler.drain();
  h.sent.length = 0; // the ReadIndex to n2 is lost on the way
  const ticksMax = 4 * raftReadTimeoutTicks;
  for (let i = 0; i < ticksMax && outcome === null; i++) {
    if (i % heartbeatIntervalTicks === 0) heartbeat(); // n2 stays the leader throughout
    h.scheduler.tick();
    await Promise.resolve();
  }
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(g.leader, n2, 'the leader never changed');
  t.equal(outcome, ErrorCode.UNAVAILABLE, `the read fails with a retryable error within ${ticksMax} ticks (got ${String(outcome)})`);
  await h.host.stop();
});
