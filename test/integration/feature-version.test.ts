// The version gate for rolling upgrades, with real processes. n3 speaks feature version 1
// (DSYNC_FEATURE_VERSION=1: it writes only version 1's formats and refuses newer ones, as an
// older release cannot read them). While it is a member the cluster version stays 1, so
// when it falls behind both compactions (group 0's and a queue partition's) the leaders
// send it the old formats, the one-document group 0 layout and a partition snapshot with
// its bodies, and it installs them. Once n3 runs version 2 the cluster version rises to 2;
// then n3 started as version 1 again refuses to start (exit 4), and so does a new node
// speaking 1 that asks to join.

import t from 'tap';
import { Client } from '../../client/index.js';
import { freePorts, type ManagedProcess, pollUntil, spawnDsync, TestCluster, tempDir } from './helpers/cluster.js';
import { leaderOfGroup } from './queues-helpers.js';

/** Bounds on the waits (never asserted as timing: a loaded machine may need them). */
const catchUpWaitMs = 30_000;
const featureVersionExitCode = 4;
const exitWaitMs = 20_000;

async function metric(httpPort: number, pattern: RegExp): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  return Number(pattern.exec(text)?.[1] ?? 0);
}
const installed = (group: number): RegExp => new RegExp(`^dsync_raft_snapshots_installed_total\\{[^}]*group="${group}"[^}]*\\} (\\d+)`, 'm');

t.setTimeout(120_000);

/** The process's exit, or a null code after exitWaitMs (then it is killed, and its output shows in the failure). */
async function exitWithin(proc: ManagedProcess): Promise<{ code: number | null; output: string }> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<null>((resolve) => { timer = setTimeout(() => resolve(null), exitWaitMs); });
  const exit = await Promise.race([proc.exited, late]);
  clearTimeout(timer);
  if (exit === null) await proc.kill9();
  return { code: exit?.code ?? null, output: (proc.stderr + proc.stdout).slice(-4000) };
}

t.test('a node speaking version 1 gets old-format snapshots; once every member speaks 2, a version 1 node is refused', async (t) => {
  const ports = await freePorts(12);
  const cluster = await TestCluster.start(t, { ports: ports.slice(0, 9), extraArgs: ['--snapshot-entries', '100'],
    nodeEnv: { n3: { DSYNC_FEATURE_VERSION: '1' } } });
  const client = await Client.connect({ seeds: cluster.seeds, requestTimeoutMs: 10_000, maxRedirects: 40 });
  t.teardown(() => client.close());
  const n3 = cluster.node('n3');

  const info = await client.topics.create('gate', { partitions: 1, replicas: 3 });
  const identified = await pollUntil('a cluster id', async () => {
    const s = await client.status(cluster.node('n1').address);
    return s.clusterId !== '' ? s : null;
  }, catchUpWaitMs);
  t.equal(identified.clusterVersion, 1, 'with n3 speaking 1 the cluster version is 1');
  t.match(identified.clusterId, /^[0-9a-f]{16}$/, 'group 0 chose a cluster id');

  const group = info.partitionList[0]?.groupId ?? -1;
  await n3.kill9();
  const producer = client.producer('gate');
  // One at a time: concurrent publishes share entries, and the partition must pass its compaction threshold.
  for (let i = 0; i < 120; i++) await producer.publish(`k${i}`, `v${i}`);
  // Group 0 entries past its compaction threshold: lock grants and releases.
  for (let i = 0; i < 60; i++) await (await client.lock(`gate-${i}`)).release();
  const commitOf = async (g: number): Promise<number> => {
    const leader = await leaderOfGroup(client, cluster.seeds.slice(0, 2), g);
    return (await client.status(cluster.node(leader).address)).groups.find((x) => x.group === g)?.commit ?? 0;
  };
  const partitionCommit = await commitOf(group);
  const group0Commit = await commitOf(0);
  t.ok(partitionCommit > 100 && group0Commit > 100, `the partition committed ${partitionCommit} entries, group 0 ${group0Commit}, with n3 down`);

  await n3.restart();
  await pollUntil('n3 caught up', async () => {
    const s = await client.status(n3.address);
    const applied = (g: number): number => s.groups.find((x) => x.group === g)?.applied ?? 0;
    return applied(group) >= partitionCommit && applied(0) >= group0Commit ? true : null;
  }, catchUpWaitMs);
  t.ok(n3.process.running, 'n3 (version 1) is still running: nothing it cannot read reached it');
  t.ok(await metric(n3.spec.httpPort, installed(0)) >= 1, 'n3 installed a group 0 snapshot');
  t.ok(await metric(n3.spec.httpPort, installed(group)) >= 1, 'n3 installed a partition snapshot');
  t.equal(await metric(n3.spec.httpPort, /^dsync_queue_catchup_total\{[^}]*event="installed"[^}]*\} (\d+)/m), 0,
    'with its bodies inside: no streamed catch-up');
  t.equal((await client.status(n3.address)).clusterVersion, 1, 'the cluster version is still 1');

  // n3 upgraded: every member speaks 2, so the cluster version rises.
  n3.env = {};
  await n3.restart();
  await pollUntil('cluster version 2', async () => ((await client.status(cluster.node('n1').address)).clusterVersion === 2 ? true : null), catchUpWaitMs);
  t.pass('with n3 speaking 2 the cluster version rose to 2');

  // A downgrade is refused: the cluster's snapshots may be in formats version 1 cannot read. So is a new node speaking 1 (both at once).
  n3.env = { DSYNC_FEATURE_VERSION: '1' };
  await n3.restart(false);
  const downgraded = n3.proc;
  if (downgraded === null) throw new Error('n3 was not started');
  const joiner = spawnDsync(t, ['node', '--id', 'n4', '--host', '127.0.0.1', '--port', String(ports[9]), '--http-port', String(ports[10]),
    '--console-port', String(ports[11]), '--data-dir', tempDir(t), '--join', cluster.node('n1').address], { env: { DSYNC_FEATURE_VERSION: '1' } });
  const [down, joined] = await Promise.all([exitWithin(downgraded), exitWithin(joiner)]);
  t.equal(down.code, featureVersionExitCode, `n3 speaking 1 again stops with exit code ${featureVersionExitCode}`, { output: down.output });
  t.match(down.output, /this cluster requires (feature version )?2/, 'saying why');
  t.equal(joined.code, featureVersionExitCode, 'a new node speaking 1 is refused its join, with the same exit code', { output: joined.output });
  t.match(joined.output, /refusing to start: .*speaks feature version 1; this cluster requires 2/, 'naming both versions');
});
