// GroupHost's one durable watch (server/raft/runner.ts, awaitDurable): many groups with a
// Ready in flight wait on the WAL through one whenDurable() for the lowest seq, not one
// each, and every one of them completes once its write is durable, also when the WAL
// becomes durable in steps. And a tick that changes nothing queues no ready pass.
// Drives single-voter groups on an in-process host (runner-env.ts) whose durability the
// test releases by hand, counting whenDurable() calls and deferred tasks.

import t from 'tap';
import { groupId, type GroupId, nodeId } from '../../../core/ids.js';
import type { Entry, HardState } from '../../../core/raft/types.js';
import type { GroupRunner } from '../../../server/raft/runner.js';
import { InstantStorage, nullMachine, testHost } from './runner-env.js';

/** Appends are durable only up to what the test releases while holding. */
class SteppedStorage extends InstantStorage {
  holding = false;
  whenDurableCalls = 0;
  private appended = 0;
  private readonly held: { seq: number; resolve: () => void }[] = [];

  override append(group: GroupId, hs: HardState | null, entries: readonly Entry[]): number {
    const durable = this.durable;
    super.append(group, hs, entries);
    this.appended++;
    this.durable = this.holding ? durable : this.appended;
    return this.appended;
  }

  override whenDurable(seq: number): Promise<void> {
    this.whenDurableCalls++;
    if (seq <= this.durable) return Promise.resolve();
    return new Promise((resolve) => this.held.push({ seq, resolve }));
  }

  get lastSeq(): number {
    return this.appended;
  }

  /** Everything up to `seq` (default: all appended) is durable now. */
  release(seq = this.appended): void {
    this.durable = Math.max(this.durable, seq);
    for (let i = 0; i < this.held.length;) {
      const w = this.held[i] as { seq: number; resolve: () => void };
      if (w.seq <= this.durable) {
        this.held.splice(i, 1);
        w.resolve();
      } else {
        i++;
      }
    }
  }
}

const microtasks = async (): Promise<void> => {
  for (let i = 0; i < 20; i++) await Promise.resolve();
};

/** Completions (microtasks), the ready pass they queue, and the answers it resolves. */
const settle = async (h: ReturnType<typeof testHost>): Promise<void> => {
  await microtasks();
  h.scheduler.drain();
  await microtasks();
};

/** `count` single-voter groups on one host, each elected and idle. */
function soloGroups(count: number): { h: ReturnType<typeof testHost>; storage: SteppedStorage; groups: GroupRunner[] } {
  const storage = new SteppedStorage();
  const h = testHost({ storage });
  const groups = Array.from({ length: count }, (_, i) => h.host.ensure(groupId(i), nullMachine, { voters: [h.host.nodeId], learners: [] }));
  for (let i = 0; i < 1_000 && !groups.every((g) => g.isLeader && g.applied > 0); i++) h.scheduler.tick();
  if (!groups.every((g) => g.isLeader)) throw new Error('single-voter groups did not elect themselves within 1000 ticks');
  return { h, storage, groups };
}

t.test('groups writing in one ready pass wait on the WAL through one whenDurable, and all complete', async (t) => {
  const { h, storage, groups } = soloGroups(20);
  storage.holding = true;
  storage.whenDurableCalls = 0;
  const answered = new Set<number>();
  const proposals = groups.map((g, i) => g.propose(new Uint8Array([i + 1])).then(() => { answered.add(i); }));
  h.scheduler.drain();
  t.ok(groups.every((g) => g.pipeline.inFlight === 1), 'every group has its write in flight');
  t.equal(storage.whenDurableCalls, 1, 'one whenDurable for the twenty groups (one each before)');
  await microtasks();
  t.equal(answered.size, 0, 'nothing answered before the write is durable');

  storage.release();
  await settle(h);
  await Promise.all(proposals);
  t.equal(answered.size, 20, 'every proposal answered once durable');
  t.ok(groups.every((g) => g.pipeline.inFlight === 0), 'no write left in flight');
  t.same(h.fatals, []);
  t.end();
});

t.test('a WAL that becomes durable in steps completes each group once its own write is durable', async (t) => {
  const { h, storage, groups } = soloGroups(3);
  storage.holding = true;
  const answered: number[] = [];
  const proposals = groups.map((g, i) => g.propose(new Uint8Array([i + 1])).then(() => { answered.push(i); }));
  h.scheduler.drain();
  // Each group's write is one WAL batch, in the order the pass took them: the last three seqs.
  const seqs = [storage.lastSeq - 2, storage.lastSeq - 1, storage.lastSeq];
  t.ok(groups.every((g) => g.pipeline.inFlight === 1), 'three writes in flight');

  storage.release(seqs[0]);
  await settle(h);
  t.same(answered, [0], 'only the first group\'s write is durable');

  // A write of the first group's next proposal joins while the others still wait.
  const later = (groups[0] as GroupRunner).propose(new Uint8Array([9])).then(() => { answered.push(10); });
  h.scheduler.drain();
  storage.release(seqs[2]);
  await settle(h);
  t.same(answered.slice().sort((a, b) => a - b), [0, 1, 2], 'the other two complete; the later write still waits');

  storage.release();
  await settle(h);
  await Promise.all([...proposals, later]);
  t.same(answered.slice().sort((a, b) => a - b), [0, 1, 2, 10], 'and it completes once durable');
  t.same(h.fatals, []);
  t.end();
});

t.test('a tick that changes nothing queues no ready pass', (t) => {
  const h = testHost();
  // A follower of a three-voter group that hears nobody: its first ticks only count toward an election.
  const g = h.host.ensure(groupId(7), nullMachine, { voters: [h.host.nodeId, nodeId('n2'), nodeId('n3')], learners: [] });
  h.scheduler.drain();
  h.sent.length = 0;
  for (const tick of h.scheduler.periodic) tick();
  t.equal(h.scheduler.deferred.length, 0, 'no deferred ready pass for a tick with nothing to take');
  t.notOk(g.isLeader);
  t.end();
});
