// The latency path's event-loop turns (docs/architecture.md, "Latency path of one
// replicated append"): a leader's App leaves in the same task that takes its Ready, a
// follower's AppResp in the same task when its write is durable at once, and in the
// microtasks of the durable notification when it is not; never a scheduler turn later.

import t, { type Test as Tap } from 'tap';
import { type GroupId, groupId, type NodeId } from '../../../core/ids.js';
import { MessageType } from '../../../core/raft/types.js';
import { schema } from '../../../protocol/index.js';
import { type GroupRunner, raftMessageTypeNames } from '../../../server/raft/runner.js';
import { InstantStorage, nonce, nullMachine, type TestHost, testHost } from './runner-env.js';

/** Appends become durable only when the test says so (release), in order. */
class HeldStorage extends InstantStorage {
  private last = 0;
  private waiters: { seq: number; resolve: () => void }[] = [];
  holding = false;

  override append(group: GroupId, hs: Parameters<InstantStorage['append']>[1], entries: Parameters<InstantStorage['append']>[2]): number {
    if (!this.holding) {
      this.last = super.append(group, hs, entries);
      return this.last;
    }
    this.appends++;
    this.batches.push({ hardState: hs, entries: entries.length });
    return ++this.last;
  }

  override whenDurable(seq: number): Promise<void> {
    if (seq <= this.durable) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ seq, resolve }));
  }

  release(): void {
    this.durable = this.last;
    const due = this.waiters.filter((w) => w.seq <= this.durable);
    this.waiters = this.waiters.filter((w) => w.seq > this.durable);
    for (const w of due) w.resolve();
  }
}

const group = groupId(7);

function types(h: TestHost): MessageType[] {
  return h.sent.flatMap(({ batch }) => schema.RaftBatch.decode(batch).messages.map((m) => m.type as MessageType));
}

/** Delivers everything sent and runs every deferred task until quiet (bounded). */
function settle(hosts: readonly TestHost[]): void {
  for (let round = 0; round < 1_000; round++) {
    let delivered = 0;
    for (const h of hosts) {
      for (const { peer, batch } of h.sent.splice(0)) {
        const to = hosts.find((x) => x.host.nodeId === peer);
        if (to === undefined) throw new Error(`no host ${peer}`);
        const refused = to.host.receive(h.host.nodeId, batch);
        if (refused !== null) throw refused;
        delivered++;
      }
    }
    for (const h of hosts) h.scheduler.drain();
    if (delivered === 0) return;
  }
  throw new Error('deliveries never settle');
}

/** Runs one deferred task of `h` (the ready pass); the number of tasks it had queued. */
function runOneTask(h: TestHost): number {
  const queued = h.scheduler.deferred.length;
  h.scheduler.deferred.shift()?.();
  return queued;
}

/** Runs the tasks `h` had deferred when the turn began (setImmediate's turns); those they defer wait for the next. */
function runTurn(h: TestHost): void {
  for (const task of h.scheduler.deferred.splice(0)) task();
}

const microtasks = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Three hosts with one group, a leader elected and its no-op committed everywhere; then the clock stops. */
async function electedGroup(t: Tap): Promise<{ storages: HeldStorage[]; hosts: TestHost[]; runners: GroupRunner[]; leaderAt: number }> {
  const storages = [new HeldStorage(), new HeldStorage(), new HeldStorage()];
  const hosts = ['n1', 'n2', 'n3'].map((id, i) => testHost({ id, bootNonce: nonce(i + 1), storage: storages[i] as HeldStorage }));
  const voters = hosts.map((h) => h.host.nodeId);
  const runners: GroupRunner[] = hosts.map((h) => h.host.ensure(group, nullMachine, { voters, learners: [] }));
  let leaderAt = -1;
  for (let tick = 0; tick < 1_000 && leaderAt < 0; tick++) {
    for (const h of hosts) h.scheduler.tick();
    settle(hosts);
    await microtasks();
    settle(hosts);
    leaderAt = runners.findIndex((r) => r.isLeader);
  }
  t.ok(leaderAt >= 0, 'a leader is elected');
  for (let i = 0; i < 20; i++) {
    settle(hosts);
    await microtasks();
  }
  for (const h of hosts) h.sent.length = 0;
  return { storages, hosts, runners, leaderAt };
}

t.test('an App leaves in the task that takes its Ready; an AppResp as soon as its write is durable', async (t) => {
  const { storages, hosts, runners, leaderAt } = await electedGroup(t);
  const leader = hosts[leaderAt] as TestHost;
  const follower = hosts[(leaderAt + 1) % 3] as TestHost;

  const applied = (runners[leaderAt] as GroupRunner).propose(new Uint8Array([1, 2, 3]));
  t.equal(runOneTask(leader), 1, 'the proposal queued one task: the ready pass');
  t.ok(types(leader).includes(MessageType.App), 'the App was handed to the peer link in that same task');
  t.equal(leader.scheduler.deferred.length, 0, 'no task is left for sending it');

  // The follower's write durable at once: its AppResp leaves in the task that took the Ready.
  const toFollower = leader.sent.filter((s) => s.peer === follower.host.nodeId);
  leader.sent.length = 0;
  for (const { batch } of toFollower) t.equal(follower.host.receive(leader.host.nodeId as NodeId, batch), null, 'the follower takes the App');
  t.equal(runOneTask(follower), 1, 'the App queued one task on the follower');
  t.ok(types(follower).includes(MessageType.AppResp), 'its AppResp was sent in that task');
  t.equal(follower.scheduler.deferred.length, 0, 'no task is left for sending it');
  settle(hosts);
  await microtasks();
  settle(hosts);
  await applied;

  // A write that is not durable at once: the AppResp waits for it, then leaves in the
  // microtasks of the durable notification, without a task of its own.
  const slow = storages[(leaderAt + 1) % 3] as HeldStorage;
  slow.holding = true;
  for (const h of hosts) h.sent.length = 0;
  const second = (runners[leaderAt] as GroupRunner).propose(new Uint8Array([4]));
  runOneTask(leader);
  const again = leader.sent.filter((s) => s.peer === follower.host.nodeId);
  leader.sent.length = 0;
  for (const { batch } of again) follower.host.receive(leader.host.nodeId as NodeId, batch);
  runOneTask(follower);
  await microtasks();
  t.notOk(types(follower).includes(MessageType.AppResp), 'no AppResp before the write is durable');
  slow.release();
  await microtasks();
  // Before any scheduler task ran (the runner may have queued a ready pass, which sends nothing here).
  t.ok(types(follower).includes(MessageType.AppResp), 'the AppResp left once the write was durable, before any scheduler task');
  slow.holding = false;
  slow.release();
  settle(hosts);
  await microtasks();
  settle(hosts);
  await second;
});

t.test('a ready pass that answered a proposer sends news of the commit two turns later; entries leave at its end', async (t) => {
  const { hosts, runners, leaderAt } = await electedGroup(t);
  const leader = hosts[leaderAt] as TestHost;
  const followers = hosts.filter((_, i) => i !== leaderAt);
  const leaderRunner = runners[leaderAt] as GroupRunner;
  /** Delivers the leader's App to both followers and their AppResps back; the leader's pass is then queued, not run. */
  const replicate = (): void => {
    runOneTask(leader);
    for (const { peer, batch } of leader.sent.splice(0)) hosts.find((h) => h.host.nodeId === peer)?.host.receive(leader.host.nodeId as NodeId, batch);
    for (const f of followers) {
      runOneTask(f);
      for (const { batch } of f.sent.splice(0)) leader.host.receive(f.host.nodeId as NodeId, batch);
    }
  };

  const sentOf = (type: (typeof raftMessageTypeNames)[number]): number => leader.host.traffic.sentByType[raftMessageTypeNames.indexOf(type)] as number;
  const [appsBefore, emptyBefore] = [sentOf('App'), sentOf('AppEmpty')];
  let answered = false;
  const first = leaderRunner.propose(new Uint8Array([1])).then(() => { answered = true; });
  replicate();
  t.equal(runOneTask(leader), 1, 'the AppResps queued one ready pass');
  await microtasks();
  t.ok(answered, 'the pass applied the entry and answered its proposer');
  t.same(types(leader), [], 'news of the commit did not leave in that pass');
  runTurn(leader);
  t.same(types(leader), [], 'nor in the next turn (the reply\'s)');
  runTurn(leader);
  t.ok(types(leader).length > 0 && types(leader).every((m) => m === MessageType.App), 'it left two turns after the pass, as Apps');
  t.ok(leader.sent.every(({ batch }) => schema.RaftBatch.decode(batch).messages.every((m) => (m.entries?.length ?? 0) === 0)), 'carrying no entries');
  t.same([sentOf('App') - appsBefore, sentOf('AppEmpty') - emptyBefore], [2, 2],
    'counted by type (dsync_raft_messages_by_type_total): an App with the entry and an App without entries to each follower');
  await first;
  settle(hosts);
  await microtasks();
  settle(hosts);

  // The same pass with an entry to send as well: everything leaves at its end.
  leader.sent.length = 0;
  const second = leaderRunner.propose(new Uint8Array([2]));
  replicate();
  const third = leaderRunner.propose(new Uint8Array([3]));
  t.equal(runOneTask(leader), 1, 'the AppResps and the next proposal share one ready pass');
  t.ok(leader.sent.some(({ batch }) => schema.RaftBatch.decode(batch).messages.some((m) => (m.entries?.length ?? 0) > 0)),
    'a pass that also queued entries sends them at its end');
  settle(hosts);
  await microtasks();
  settle(hosts);
  await Promise.all([second, third]);
});
