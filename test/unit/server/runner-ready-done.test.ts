// GroupRunner.persisting / whenReadyDone (server/raft/runner.ts): the queue service holds
// a partition's requests while a Ready is being persisted and proposes them when it is
// done. The callback must run after the oldest Ready's write is durable and before the
// next Ready is taken, so what it proposes goes into one WAL batch; what others propose
// meanwhile is written at once (pipelined writes); with no Ready in flight it runs at once. A stopped runner
// drops its callbacks. Counts WAL batches on an in-process host (runner-env.ts) whose
// durability the test releases by hand.

import t from 'tap';
import type { GroupId } from '../../../core/ids.js';
import type { Entry, HardState } from '../../../core/raft/types.js';
import { InstantStorage, soloLeader, testHost } from './runner-env.js';

/** Appends are durable only when the test calls release(). */
class HeldStorage extends InstantStorage {
  holding = false;
  /** The last seq handed out (InstantStorage's durable doubles as its seq; here the two part while holding). */
  private appended = 0;
  private readonly held: (() => void)[] = [];

  override append(group: GroupId, hs: HardState | null, entries: readonly Entry[]): number {
    const durable = this.durable;
    super.append(group, hs, entries);
    this.appended++;
    this.durable = this.holding ? durable : this.appended;
    return this.appended;
  }

  override whenDurable(seq: number): Promise<void> {
    if (seq <= this.durable) return Promise.resolve();
    return new Promise((resolve) => this.held.push(resolve));
  }

  release(): void {
    this.durable = this.appended;
    for (const r of this.held.splice(0)) r();
  }
}

const settle = async (h: ReturnType<typeof testHost>): Promise<void> => {
  for (let k = 0; k < 10; k++) {
    h.scheduler.drain();
    await Promise.resolve();
    await Promise.resolve();
  }
};

t.test('proposals made when the Ready in flight is done share the next WAL batch', async (t) => {
  const storage = new HeldStorage();
  const h = testHost({ storage });
  const g = soloLeader(h);
  t.notOk(g.persisting, 'nothing in flight after the election settled');
  let ranAtOnce = false;
  g.whenReadyDone(() => { ranAtOnce = true; });
  t.ok(ranAtOnce, 'with no Ready in flight the callback runs at once');

  storage.holding = true;
  const first = g.propose(new Uint8Array([1]));
  await settle(h);
  t.ok(g.persisting, 'the first proposal\'s Ready waits for the disk');
  const batchesBefore = storage.batches.length;
  const order: string[] = [];
  const later: Promise<unknown>[] = [];
  g.whenReadyDone(() => {
    order.push(`callback (persisting ${g.persisting})`);
    later.push(g.propose(new Uint8Array([2])), g.propose(new Uint8Array([3])));
  });
  later.push(g.propose(new Uint8Array([4])));
  await settle(h);
  t.equal(order.length, 0, 'the callback waits while the Ready is persisted');
  const pipelined = storage.batches.slice(batchesBefore).filter((b) => b.entries > 0);
  t.same(pipelined.map((b) => b.entries), [1], 'the proposal made meanwhile is written at once, while the first write is in flight');
  t.equal(g.pipeline.inFlight, 2, 'two Readys in flight');
  const batchesPipelined = storage.batches.length;

  storage.holding = false;
  storage.release();
  await settle(h);
  await first;
  await Promise.all(later);
  t.same(order, ['callback (persisting false)'], 'the callback ran once, after the Readys were done');
  const next = storage.batches.slice(batchesPipelined).filter((b) => b.entries > 0);
  t.same(next.map((b) => b.entries), [2], 'the callback\'s two proposals share the next batch');
  await h.host.stop();
});

t.test('a stopped runner drops its callbacks', async (t) => {
  const storage = new HeldStorage();
  const h = testHost({ storage });
  const g = soloLeader(h);
  storage.holding = true;
  const p = g.propose(new Uint8Array([1]));
  await settle(h);
  t.ok(g.persisting);
  let ran = false;
  g.whenReadyDone(() => { ran = true; });
  g.stop('test stops it');
  await t.rejects(p, { code: 'UNAVAILABLE' });
  storage.release();
  await settle(h);
  t.notOk(ran, 'never called after stop');
});
