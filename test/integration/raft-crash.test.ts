// kill -9 of a Raft group 0 replica in the middle of heavy writes, over real
// `dsync node` processes: 64 concurrent proposers keep appending to the journal
// while a follower is SIGKILLed (its WAL may end in a torn record) and then
// restarted on the same data dir. Checks that it starts, rejoins, and converges
// to the same (count, hash) as the others, and that count >= every append the
// leader acknowledged (durable on a majority) — so nothing acknowledged is lost.
// A second round does the same to the leader itself.

import t from 'tap';
import { Client } from '../../client/index.js';
import { TestCluster } from './helpers/cluster.js';
import { AppendLoad, waitForConvergence, waitForLeader } from './raft-helpers.js';

const concurrency = 64;
/** Acknowledged appends before the kill, while the node is down, and after it is back. */
const ackedStepCount = 1_500;

t.test('kill -9 a follower and then the leader under heavy writes; both restart and converge', async (t) => {
  const cluster = await TestCluster.start(t);
  const client = await Client.connect({ seeds: cluster.seeds, requestTimeoutMs: 10_000, maxRedirects: 40 });
  t.teardown(() => client.close());
  const ids = cluster.nodes.map((n) => n.spec.id);
  const first = await waitForLeader(client, cluster.seeds, ids);

  const load = new AppendLoad(client, 'heavy', concurrency);
  t.teardown(() => load.stop());

  for (const which of ['follower', 'leader'] as const) {
    const leader = await waitForLeader(client, cluster.seeds, ids);
    const victim = which === 'leader' ? cluster.node(leader.leaderId) : cluster.nodes.find((n) => n.spec.id !== leader.leaderId);
    if (victim === undefined) throw new Error('no victim');
    await load.waitForAcked(load.acked + ackedStepCount);
    const exit = await victim.kill9();
    t.equal(exit?.signal, 'SIGKILL', `${which} ${victim.spec.id} killed mid-write (${load.acked} acknowledged so far)`);

    // The two others keep committing while it is down.
    await load.waitForAcked(load.acked + ackedStepCount);
    await victim.restart();
    t.ok(victim.process.running, `${victim.spec.id} starts again on its own data dir`);
    await load.waitForAcked(load.acked + ackedStepCount);
  }

  await load.stop();
  const acked = load.acked;
  t.comment(`${acked} appends acknowledged, ${load.failed} failed around the crashes`);
  const infos = await waitForConvergence(client, cluster.seeds, acked);
  const ref = infos[0];
  t.ok(ref !== undefined && ref.count >= acked, `every acknowledged append is in the journal (${ref?.count} >= ${acked})`);
  for (const info of infos) {
    t.equal(info.count, ref?.count, `${info.nodeId} has the same count`);
    t.equal(info.hash, ref?.hash, `${info.nodeId} has the same hash`);
  }
  const last = await waitForLeader(client, cluster.seeds, ids);
  t.ok(last.term > first.term, 'the leader kill forced a new term');
});
