// Cluster membership at run time over real processes (issue 9, "Cluster membership at run time").
// 1. A 3-node cluster under lock traffic (4 client-library loops acquiring and releasing
//    exclusive locks); a 4th node starts with --join and becomes a voter (its role in
//    status, the console and client.cluster.members()); it is killed -9 and restarts
//    from its join record, still a voter; then a node is removed with `dsync cluster
//    remove`; the removed node logs it and stops taking part; then the leader itself is
//    removed (leadership handed over first). Every acquire succeeds, grants keep coming
//    after each removal, and no gap between two grants exceeds grantGapMsMax (an
//    election is 300-600 ms; the bound is generous for a loaded machine).
// 2. A 3-node cluster with one node stopped: removing a live voter is refused with
//    WOULD_LOSE_QUORUM and a message naming the counts; removing the stopped one works.

import { join } from 'node:path';
import t from 'tap';
import { Client, DsyncError, ErrorCode } from '../../client/index.js';
import { freePorts, pollUntil, runDsync, sleep, TestCluster, TestNode } from './helpers/cluster.js';
import { consoleCommand } from './raft-helpers.js';

/** Lock client loops running during the whole membership scenario. */
const lockLoopsCount = 4;
/** Lock names they share (some contention, some parallelism). */
const lockNamesCount = 3;
/** Longest pause allowed between two successive grants (any loop) while members change. */
const grantGapMsMax = 5_000;
/** Grants required after the removal, to show the service kept going. */
const grantsAfterRemovalMin = 20;
/** How long a membership step may take to show up in status. */
const stepTimeoutMs = 30_000;

function waitUntil<T>(what: string, fn: () => Promise<T | null>, timeoutMs = stepTimeoutMs): Promise<T> {
  return pollUntil(what, fn, timeoutMs);
}

interface GrantLog {
  readonly grantsAtMs: number[];
  readonly failures: string[];
  stop: boolean;
}

/** One loop: acquire lock-k (waiting), hold briefly, release; every failure is recorded. */
async function lockLoop(client: Client, loop: number, log: GrantLog): Promise<void> {
  for (let i = 0; !log.stop; i++) {
    const name = `members-lock-${(loop + i) % lockNamesCount}`;
    try {
      const held = await client.lock(name, { waitMs: 20_000 });
      log.grantsAtMs.push(Date.now());
      await sleep(5);
      await held.release();
    } catch (err) {
      log.failures.push(`${name}: ${err instanceof DsyncError ? `${err.code} ${err.message}` : String(err)}`);
    }
  }
}

function maxGapMs(times: readonly number[], fromMs: number, toMs: number): number {
  const inWindow = [fromMs, ...times.filter((x) => x > fromMs && x < toMs).sort((a, b) => a - b), toMs];
  let gap = 0;
  for (let i = 1; i < inWindow.length; i++) gap = Math.max(gap, inWindow[i]! - inWindow[i - 1]!);
  return gap;
}

t.test('a node joins under lock traffic and becomes a voter; a node is removed; grants never stall', async (t) => {
  const cluster = await TestCluster.start(t, { nodes: 3 });
  const [port, httpPort, consolePort] = await freePorts(3);
  const n4 = new TestNode(t, { id: 'n4', port: port!, httpPort: httpPort!, consolePort: consolePort!, dataDir: join(cluster.dataRoot, 'n4'), peers: [] },
    ['--join', cluster.node('n2').address]);
  t.teardown(() => n4.stop());
  const admin = await Client.connect({ seeds: cluster.seeds, requestTimeoutMs: 10_000, maxRedirects: 40, name: 'members-admin' });
  t.teardown(() => admin.close());

  const log: GrantLog = { grantsAtMs: [], failures: [], stop: false };
  const clients = await Promise.all(Array.from({ length: lockLoopsCount }, (_, i) =>
    Client.connect({ seeds: cluster.seeds, requestTimeoutMs: 10_000, maxRedirects: 40, name: `members-load-${i}` })));
  t.teardown(async () => { await Promise.all(clients.map((c) => c.close())); });
  const loops = clients.map((c, i) => lockLoop(c, i, log));
  const loadStartedMs = Date.now();
  await waitUntil('lock traffic', async () => (log.grantsAtMs.length >= 20 ? true : null));

  // --- join ---
  const joinStartedMs = Date.now();
  await n4.start();
  const n4Status = await waitUntil('n4 to be a voter in its own group 0 status', async () => {
    const s = await admin.status(n4.address);
    const g0 = s.groups.find((g) => g.group === 0);
    return g0 !== undefined && g0.voters.includes('n4') ? s : null;
  });
  t.same(n4Status.groups.find((g) => g.group === 0)?.voters, ['n1', 'n2', 'n3', 'n4'], 'n4 sees four voters');
  const members = await waitUntil('the leader to list n4 as a reachable voter', async () => {
    const ms = await admin.cluster.members();
    return ms.some((m) => m.id === 'n4' && m.role === 'voter' && m.connected) ? ms : null;
  });
  t.same(members.map((m) => `${m.id}:${m.role}`), ['n1:voter', 'n2:voter', 'n3:voter', 'n4:voter'], 'members: four voters');
  t.ok(members.every((m) => m.connected), 'every member reachable from the leader');
  const n4Member = members.find((m) => m.id === 'n4');
  t.equal(n4Member?.address, n4.address, "n4's client address came with its ConfChange");
  t.match(n4.process.stdout + n4.process.stderr, /added to the cluster as a learner/, 'n4 was added as a learner first');
  for (const n of cluster.nodes) {
    const s = await admin.status(n.address);
    t.same(s.groups.find((g) => g.group === 0)?.voters, ['n1', 'n2', 'n3', 'n4'], `${n.spec.id} agrees on the voters`);
    t.ok(s.members.some((m) => m.id === 'n4' && m.role === 'voter'), `${n.spec.id}'s status lists n4 as a voter`);
  }
  const consoleMembers = await consoleCommand(cluster.node('n1').consoleAddress.port, 'members');
  t.match(consoleMembers, /n4\s+127\.0\.0\.1:\d+\s+voter\s+(reachable|self)/, 'the console lists n4 as a voter and reachable');

  // --- a crash of the joined node: it restarts from its join record, still a voter ---
  await n4.kill9();
  await n4.start();
  t.match(n4.process.stdout + n4.process.stderr, /rejoining with the configuration this node was added with/, 'n4 restarts from join.json');
  await waitUntil('n4 back and reachable', async () => {
    const ms = await admin.cluster.members();
    return ms.some((m) => m.id === 'n4' && m.role === 'voter' && m.connected) ? ms : null;
  });
  const joinDoneMs = Date.now();

  // --- remove n3 with the CLI (a follower or the leader: whichever n3 is) ---
  const grantsBeforeRemoval = log.grantsAtMs.length;
  const removal = await runDsync(t, ['cluster', 'remove', 'n3', '--seeds', cluster.node('n1').address]);
  t.equal(removal.code, 0, `dsync cluster remove n3 succeeds: ${removal.stderr}`);
  t.match(removal.stdout, /removed n3/, 'the CLI says so');
  const afterRemoval = await waitUntil('n3 gone from the members', async () => {
    const ms = await admin.cluster.members();
    return ms.some((m) => m.id === 'n3') ? null : ms;
  });
  t.same(afterRemoval.map((m) => `${m.id}:${m.role}`), ['n1:voter', 'n2:voter', 'n4:voter'], 'three voters left');
  const removedMs = Date.now();
  await waitUntil('n3 to log its removal', async () =>
    (/removed from the cluster/.test(cluster.node('n3').process.stdout + cluster.node('n3').process.stderr) ? true : null));
  // A removed node takes no part: stopping it must not disturb anything.
  await cluster.node('n3').stop();
  await waitUntil('grants after the removal', async () => (log.grantsAtMs.length >= grantsBeforeRemoval + grantsAfterRemovalMin ? true : null));
  for (const id of ['n1', 'n2']) {
    const s = await admin.status(cluster.node(id).address);
    t.same(s.groups.find((g) => g.group === 0)?.voters, ['n1', 'n2', 'n4'], `${id}'s group 0 has n1, n2, n4`);
  }

  // --- remove the leader: it hands leadership over first, then the new leader removes it ---
  const leaderId = await waitUntil('a leader', async () => {
    const s = await admin.status(cluster.node('n1').address);
    return s.leaderId === '' ? null : s.leaderId;
  });
  const grantsBeforeLeaderRemoval = log.grantsAtMs.length;
  const leaderRemovedStartMs = Date.now();
  const left = await admin.cluster.remove(leaderId);
  t.same(left.map((m) => m.id), ['n1', 'n2', 'n4'].filter((id) => id !== leaderId), `the leader ${leaderId} is removed`);
  const leaderNode = leaderId === 'n4' ? n4 : cluster.node(leaderId);
  t.match(leaderNode.process.stdout + leaderNode.process.stderr, /removing the leader: transferring leadership first/, 'the leader handed over before its removal');
  await waitUntil(`${leaderId} to log its removal`, async () =>
    (/removed from the cluster/.test(leaderNode.process.stdout + leaderNode.process.stderr) ? true : null));
  await waitUntil('grants after the leader left', async () => (log.grantsAtMs.length >= grantsBeforeLeaderRemoval + grantsAfterRemovalMin ? true : null));
  const gapLeader = maxGapMs(log.grantsAtMs, leaderRemovedStartMs, Date.now());
  t.ok(gapLeader <= grantGapMsMax, `longest pause in grants while the leader was removed: ${gapLeader} ms`);

  log.stop = true;
  await Promise.all(loops);
  const endMs = Date.now();
  t.same(log.failures, [], 'every acquire and release succeeded');
  t.ok(log.grantsAtMs.length - grantsBeforeRemoval >= grantsAfterRemovalMin, `grants continued after the removal (${log.grantsAtMs.length - grantsBeforeRemoval})`);
  const gapJoin = maxGapMs(log.grantsAtMs, joinStartedMs, joinDoneMs);
  const gapRemove = maxGapMs(log.grantsAtMs, joinDoneMs, endMs);
  t.ok(gapJoin <= grantGapMsMax, `longest pause in grants during the join: ${gapJoin} ms`);
  t.ok(gapRemove <= grantGapMsMax, `longest pause in grants during the removal: ${gapRemove} ms (removed at +${removedMs - joinDoneMs} ms)`);
  t.comment(`grants: ${log.grantsAtMs.length} in ${endMs - loadStartedMs} ms; max gap join ${gapJoin} ms, removal ${gapRemove} ms`);
});

t.test('a removal that would leave group 0 without a quorum of reachable voters is refused', async (t) => {
  const cluster = await TestCluster.start(t, { nodes: 3 });
  const admin = await Client.connect({ seeds: cluster.seeds, requestTimeoutMs: 10_000, maxRedirects: 40, name: 'members-quorum' });
  t.teardown(() => admin.close());
  await waitUntil('all three reachable', async () => {
    const ms = await admin.cluster.members();
    return ms.length === 3 && ms.every((m) => m.connected) ? ms : null;
  });
  // Stop a follower (keep the leader so the refusal is the leader's decision, not an election's).
  const leaderId = (await admin.status()).leaderId;
  const stopped = cluster.nodes.find((n) => n.spec.id !== leaderId)!;
  const live = cluster.nodes.find((n) => n.spec.id !== leaderId && n !== stopped)!;
  await stopped.stop();
  await waitUntil(`the leader to see ${stopped.spec.id} unreachable`, async () => {
    const ms = await admin.cluster.members();
    return ms.some((m) => m.id === stopped.spec.id && !m.connected) ? ms : null;
  });

  let refused: unknown = null;
  try {
    await admin.cluster.remove(live.spec.id);
  } catch (err) {
    refused = err;
  }
  t.ok(refused instanceof DsyncError, 'removing a live voter is refused');
  t.equal((refused as DsyncError).code, ErrorCode.WOULD_LOSE_QUORUM, 'with WOULD_LOSE_QUORUM');
  t.match((refused as DsyncError).message, new RegExp(`removing ${live.spec.id} would leave 1 of 2 voters reachable .*quorum needs 2`), 'the message gives the counts');
  const cli = await runDsync(t, ['cluster', 'remove', live.spec.id, '--seeds', cluster.seeds.join(',')]);
  t.not(cli.code, 0, 'the CLI exits non-zero');
  t.match(cli.stderr, /WOULD_LOSE_QUORUM: removing .* would leave 1 of 2 voters reachable/, 'and prints the reason');
  const still = await admin.cluster.members();
  t.same(still.map((m) => m.id), ['n1', 'n2', 'n3'], 'nothing was removed');

  // Removing the unreachable one keeps a quorum (2 of 2 reachable) and is allowed.
  const after = await admin.cluster.remove(stopped.spec.id);
  t.same(after.map((m) => m.id).sort(), cluster.nodes.filter((n) => n !== stopped).map((n) => n.spec.id).sort(), 'the stopped node is removed');
  const again = await admin.cluster.remove(stopped.spec.id);
  t.same(again.map((m) => m.id), after.map((m) => m.id), 'removing it again answers the same (idempotent)');
  const lock = await admin.lock('after-removal', { waitMs: 10_000 });
  t.ok(lock.token > 0, 'the two-voter cluster still grants');
  await lock.release();
});
