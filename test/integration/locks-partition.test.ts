// A partitioned minority node refuses to grant locks. Three `dsync node`
// processes whose peer links all run through loopback TCP proxies (one per
// direction per pair); the test cuts every proxy touching the group 0 leader,
// so it is alone. Raw lock requests sent to it alone (no NOT_LEADER following)
// are answered UNAVAILABLE or NOT_LEADER, never with a grant or a queued wait;
// a client with every seed, and one that was talking to the isolated node as
// its leader (first seed), and a new one whose first seed is the isolated node
// still take locks from the majority side; after healing, the isolated node
// rejoins under the new leader and its lock table shows the lock taken meanwhile.

import { join } from 'node:path';
import t from 'tap';
import { Client } from '../../client/index.js';
import { Opcode } from '../../protocol/frame.js';
import { freePorts, type NodeSpec, sleep, tempDir, TestNode } from './helpers/cluster.js';
import { rawLockRequest, type RawLockOutcome } from './lock-helpers.js';
import { TcpProxy } from './lock-proxy.js';
import { consoleCommand, waitForLeader } from './raft-helpers.js';

const nodesCount = 3;
/** How long the isolated node is probed with raw requests. */
const probeMs = 4_000;
const probeIntervalMs = 100;

t.test('a partitioned minority node refuses to grant; clients fail over; it rejoins after healing', async (t) => {
  const ports = await freePorts(nodesCount * 3);
  const ids = Array.from({ length: nodesCount }, (_, i) => `n${i + 1}`);
  const port = (i: number): number => ports[i] ?? 0;
  // proxies[i][j] carries node i's peer link to node j.
  const proxies = new Map<string, TcpProxy>();
  for (let i = 0; i < nodesCount; i++) {
    for (let j = 0; j < nodesCount; j++) if (i !== j) proxies.set(`${i}>${j}`, await TcpProxy.start(t, port(j)));
  }
  const proxy = (i: number, j: number): TcpProxy => {
    const p = proxies.get(`${i}>${j}`);
    if (p === undefined) throw new Error(`no proxy ${i}>${j}`);
    return p;
  };
  const dataRoot = tempDir(t, 'dsync-partition-');
  const specs: NodeSpec[] = ids.map((id, i) => ({
    id, port: port(i), httpPort: port(nodesCount + i), consolePort: port(2 * nodesCount + i), dataDir: join(dataRoot, id),
    peers: ids.flatMap((pid, j) => (j === i ? [] : [`${pid}@127.0.0.1:${proxy(i, j).port}`])),
  }));
  const nodes = specs.map((s) => new TestNode(t, s));
  await Promise.all(nodes.map((n) => n.start()));
  const seeds = nodes.map((n) => n.address);
  const client = await Client.connect({ seeds, requestTimeoutMs: 10_000, maxRedirects: 40, name: 'partition-majority' });
  t.teardown(() => client.close());
  const before = await waitForLeader(client, seeds, ids);
  const victimIndex = ids.indexOf(before.leaderId);
  const victim = nodes[victimIndex];
  if (victim === undefined) throw new Error(`leader ${before.leaderId} is not one of ${ids.join(',')}`);
  const majority = nodes.filter((n) => n !== victim);

  // A client of the victim's side: its first seed is the victim, and it has used it as leader.
  const minorityFirst = await Client.connect({ seeds: [victim.address, ...majority.map((n) => n.address)], requestTimeoutMs: 10_000,
    maxRedirects: 40, name: 'partition-minority-first' });
  t.teardown(() => minorityFirst.close());
  await (await minorityFirst.lock('warm-up', { waitMs: 10_000 })).release();

  // A session opened while the victim still leads, to use in raw requests to it later.
  const opened = await rawLockRequest(client, victim.address, Opcode.SessionOpen, { clientId: 'raw-minority', seq: 1, ttlMs: 30_000 });
  if (opened.kind !== 'reply') throw new Error(`opening a session on the leader failed: ${JSON.stringify(opened)}`);
  const rawSession = Number(opened.reply.session);
  t.ok(rawSession > 0, `raw session ${rawSession} opened on leader ${victim.spec.id}`);

  for (let j = 0; j < nodesCount; j++) {
    if (j === victimIndex) continue;
    proxy(victimIndex, j).cut();
    proxy(j, victimIndex).cut();
  }
  t.comment(`leader ${victim.spec.id} cut off from ${majority.map((n) => n.spec.id).join(',')}`);

  // The isolated node alone: never a grant, never a wait it could later grant.
  const outcomes: RawLockOutcome[] = [];
  let seq = 2;
  const probeUntil = Date.now() + probeMs;
  const probing = (async (): Promise<void> => {
    while (Date.now() < probeUntil) {
      outcomes.push(await rawLockRequest(client, victim.address, Opcode.LockAcquire, {
        clientId: 'raw-minority', seq: seq++, session: rawSession, lock: 'partitioned', exclusive: true, requestId: `p${seq}`, wait: true,
      }, 3_000));
      await sleep(probeIntervalMs);
    }
  })();

  // Meanwhile the majority elects a leader and grants.
  const during = await waitForLeader(client, majority.map((n) => n.address), majority.map((n) => n.spec.id));
  t.not(during.leaderId, victim.spec.id, `the majority elected ${during.leaderId}`);
  t.ok(during.term > before.term, 'in a later term');
  const held = await client.lock('partitioned', { waitMs: 10_000 });
  t.ok(held.token > 0, `a client with every seed gets the lock from the majority (token ${held.token})`);
  const other = await minorityFirst.lock('other-lock', { waitMs: 10_000 });
  t.ok(other.token > 0, `the client that was talking to the isolated node fails over and gets a lock (token ${other.token})`);
  t.equal(await minorityFirst.tryLock('partitioned'), null, 'and sees the majority\'s holder of the contested lock');
  await other.release();
  // A client started now, whose first seed is the isolated (leaderless) node.
  const cold = await Client.connect({ seeds: [victim.address, ...majority.map((n) => n.address)], requestTimeoutMs: 10_000,
    maxRedirects: 40, name: 'partition-cold' });
  t.teardown(() => cold.close());
  const coldLock = await cold.lock('cold-lock', { waitMs: 10_000 });
  t.ok(coldLock.token > 0, `a new client whose first seed is the isolated node moves on to the majority (token ${coldLock.token})`);
  await coldLock.release();

  await probing;
  const grants = outcomes.filter((o) => o.kind === 'reply');
  t.same(grants, [], 'the isolated node answered no acquire with a grant or a queued wait');
  const codes = new Set(outcomes.flatMap((o) => (o.kind === 'error' ? [o.code] : [])));
  t.ok(outcomes.length >= 5, `${outcomes.length} raw acquires sent to the isolated node`);
  t.same([...codes].filter((c) => c !== 'UNAVAILABLE' && c !== 'NOT_LEADER'), [],
    `it answered only UNAVAILABLE / NOT_LEADER (${[...codes].join(',')})`);
  const status = await client.status(victim.address);
  t.not(status.groups.find((g) => g.group === 0)?.role, 'leader', 'the isolated node no longer calls itself leader');

  // Heal: it rejoins under the majority's leader and catches up.
  for (const p of proxies.values()) p.heal();
  const after = await waitForLeader(client, seeds, ids);
  t.not(after.leaderId, victim.spec.id, `after healing all three agree on ${after.leaderId}`);
  const leader = nodes[ids.indexOf(after.leaderId)];
  if (leader === undefined) throw new Error('no leader node');
  const leaderStatus = await client.status(leader.address);
  const commit = leaderStatus.groups.find((g) => g.group === 0)?.commit ?? 0;
  let applied = 0;
  const deadline = Date.now() + 20_000;
  while (applied < commit && Date.now() < deadline) {
    applied = (await client.status(victim.address)).groups.find((g) => g.group === 0)?.applied ?? 0;
    if (applied < commit) await sleep(50);
  }
  t.ok(applied >= commit, `the rejoined node applied up to the leader's commit ${commit} (${applied})`);
  const locks = await consoleCommand(victim.spec.consolePort, 'locks');
  t.match(locks, /partitioned +holders=s\d+:e/, 'its lock table shows the holder granted during the partition');
  const back = await rawLockRequest(client, victim.address, Opcode.LockAcquire, {
    clientId: 'raw-minority', seq: seq++, session: rawSession, lock: 'partitioned', exclusive: true, requestId: 'after', wait: false,
  });
  t.same(back.kind === 'error' ? { code: back.code, leaderAddress: back.leaderAddress } : back,
    { code: 'NOT_LEADER', leaderAddress: leader.address }, 'it now redirects to the leader\'s client address');
  await held.release();
});
