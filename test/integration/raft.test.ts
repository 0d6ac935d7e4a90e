// Raft group 0 over real `dsync node` processes on loopback. Checks that the
// status surfaces (`dsync status`, console `raft` and `status`) agree on the
// leader, term and commit index; and that after kill -9 of the leader a new
// leader with a higher term is elected, every acknowledged journal append
// survives on every live node (equal (count, hash), count >= acknowledged), the
// cluster keeps taking appends, and the old leader, restarted on the same data
// dir, catches up to the same (count, hash).

import t from 'tap';
import { Client, DsyncError, ErrorCode } from '../../client/index.js';
import { runDsync, TestCluster } from './helpers/cluster.js';
import { appendAll, consoleCommand, journalInfo, waitForConvergence, waitForLeader } from './raft-helpers.js';

const appendsBeforeKill = 400;
const appendsAfterKill = 200;
const concurrency = 32;

t.test('status, console raft and console status show group 0 leader, term and commit', async (t) => {
  const cluster = await TestCluster.start(t);
  const client = await Client.connect({ seeds: cluster.seeds });
  t.teardown(() => client.close());
  const ids = cluster.nodes.map((n) => n.spec.id);
  const leader = await waitForLeader(client, cluster.seeds, ids);
  // Something to commit, so commit is more than the leader's no-op.
  t.equal(await appendAll(client, 'status', 20, 4), 20);
  await waitForConvergence(client, cluster.seeds, 20);

  const cli = await runDsync(t, ['status', '--seeds', cluster.seeds.join(',')]);
  t.equal(cli.code, 0, `dsync status exits 0\n${cli.stderr}`);
  const [clusterLine, ...rows] = cli.stdout.trim().split('\n');
  t.match(clusterLine, /^cluster (?:[0-9a-f]+|\(no id yet\)) version \d+$/, 'first the cluster id and version');
  t.equal(rows.length, 3, 'then one row per member');
  let leaders = 0;
  for (const id of ids) {
    const row = rows.find((r) => r.startsWith(`${id} `));
    t.ok(row !== undefined, `a row for ${id}`);
    const m = /leader=(\S+) role=(\S+) term=(\d+) commit=(\d+) applied=(\d+)/.exec(row ?? '');
    t.ok(m !== null, `row for ${id} shows leader, role, term, commit: ${row}`);
    if (m === null) continue;
    t.equal(m[1], leader.leaderId, `${id} names the leader`);
    t.equal(Number(m[3]), leader.term, `${id} is in the leader's term`);
    t.ok(Number(m[4]) >= 21, `${id} commit covers the no-op and 20 appends (${m[4]})`);
    if (m[2] === 'leader') leaders++;
    t.equal(m[2], id === leader.leaderId ? 'leader' : 'follower', `${id} role`);
  }
  t.equal(leaders, 1, 'exactly one leader');

  for (const node of cluster.nodes) {
    const raft = await consoleCommand(node.spec.consolePort, 'raft');
    const m = /^group 0: role=(\S+) leader=(\S+) term=(\d+) commit=(\d+) applied=(\d+)/m.exec(raft);
    t.ok(m !== null, `console raft on ${node.spec.id} shows group 0: ${raft}`);
    if (m === null) continue;
    t.equal(m[1], node.spec.id === leader.leaderId ? 'leader' : 'follower');
    t.equal(m[2], leader.leaderId);
    t.equal(Number(m[3]), leader.term);
    t.ok(Number(m[4]) >= 21, `commit ${m[4]}`);
    const wal = /^wal: (\{.*\})$/m.exec(raft);
    t.ok(wal !== null, 'console raft prints the WAL metrics');
    const metrics = JSON.parse(wal?.[1] ?? '{}') as { fsyncs?: unknown };
    t.ok(typeof metrics.fsyncs === 'number' && metrics.fsyncs > 0, `the WAL has fsynced (${String(metrics.fsyncs)})`);

    const status = await consoleCommand(node.spec.consolePort, 'status');
    t.match(status, new RegExp(`^leader\\s+${leader.leaderId} `, 'm'), `console status on ${node.spec.id} names the leader`);
    const g = /^group 0\s+role=(\S+) leader=(\S+) term=(\d+) commit=(\d+)/m.exec(status);
    t.ok(g !== null, `console status shows group 0: ${status}`);
    t.equal(g?.[2], leader.leaderId);
    t.equal(Number(g?.[3]), leader.term);
    t.ok(Number(g?.[4]) >= 21);
  }
});

t.test('kill -9 the leader: re-election, no acknowledged append lost, old leader catches up', async (t) => {
  const cluster = await TestCluster.start(t);
  const client = await Client.connect({ seeds: cluster.seeds, requestTimeoutMs: 15_000, maxRedirects: 40 });
  t.teardown(() => client.close());
  const ids = cluster.nodes.map((n) => n.spec.id);
  const first = await waitForLeader(client, cluster.seeds, ids);

  const ackedBefore = await appendAll(client, 'before', appendsBeforeKill, concurrency);
  t.equal(ackedBefore, appendsBeforeKill, 'every append before the crash acknowledged');

  const oldLeader = cluster.node(first.leaderId);
  const exit = await oldLeader.kill9();
  t.equal(exit?.signal, 'SIGKILL', 'the leader died of SIGKILL');
  const survivors = cluster.nodes.filter((n) => n !== oldLeader);
  const survivorAddresses = survivors.map((n) => n.address);

  const second = await waitForLeader(client, survivorAddresses, survivors.map((n) => n.spec.id));
  t.not(second.leaderId, first.leaderId, 'a different node leads');
  t.ok(second.term > first.term, `the new term ${second.term} is above ${first.term}`);

  const afterKill = await waitForConvergence(client, survivorAddresses, ackedBefore);
  t.ok((afterKill[0]?.count ?? 0) >= ackedBefore, `survivors hold every acknowledged append (${afterKill[0]?.count} >= ${ackedBefore})`);
  // A read that meets a leader change is refused (UNAVAILABLE or NOT_LEADER, "retry"): a caller asks the leader again.
  let linear: Awaited<ReturnType<typeof journalInfo>> | null = null;
  const refusals: string[] = [];
  for (let attempt = 0; linear === null && attempt < 5; attempt++) {
    const leaderNow = attempt === 0 ? second : await waitForLeader(client, survivorAddresses, survivors.map((n) => n.spec.id));
    try {
      linear = await journalInfo(client, cluster.node(leaderNow.leaderId).address, false, 5_000);
    } catch (err) {
      if (!(err instanceof DsyncError) || (err.code !== ErrorCode.UNAVAILABLE && err.code !== ErrorCode.NOT_LEADER)) throw err;
      refusals.push(`${err.code}: ${err.message}`);
    }
  }
  t.ok(linear !== null && linear.count >= ackedBefore,
    `a linearizable read through the new leader sees every acknowledged append${refusals.length === 0 ? '' : ` (after ${refusals.length} refused: ${refusals.join(' | ')})`}`);

  const ackedAfter = await appendAll(client, 'after', appendsAfterKill, concurrency);
  t.equal(ackedAfter, appendsAfterKill, 'the two survivors keep committing');
  const acked = ackedBefore + ackedAfter;
  const beforeRestart = await waitForConvergence(client, survivorAddresses, acked);

  await oldLeader.restart();
  const all = await waitForConvergence(client, cluster.seeds, acked);
  t.equal(all.length, 3);
  for (const info of all) {
    t.equal(info.count, beforeRestart[0]?.count, `${info.nodeId} count`);
    t.equal(info.hash, beforeRestart[0]?.hash, `${info.nodeId} hash`);
  }
  const back = await client.status(oldLeader.address);
  const g0 = back.groups.find((g) => g.group === 0);
  t.equal(g0?.role, 'follower', 'the old leader rejoined as a follower');
  t.equal(g0?.leaderId, second.leaderId, 'and follows the new leader');
  t.ok((g0?.term ?? 0) >= second.term, 'in the new term');
});
