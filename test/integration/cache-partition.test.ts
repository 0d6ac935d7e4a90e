// No stale cache read across a partition. Three `dsync node` processes (ports
// 23000-23999) whose peer links all run through loopback TCP proxies; a follower of
// group 0 (the victim) caches 16 keys, then every proxy touching it is cut: it still
// answers its own client, but it is cut off from group 0's majority. The majority side
// writes a new value to every key while the victim's client keeps reading them. A read on
// the victim that began after the new value's write completed must not return the old
// value (a miss or UNAVAILABLE is fine). The victim stops serving within its confirmation
// lease, the majority takes it out of the cache ring (CACHE_NODE_DOWN_MS) and its keys
// move. After healing it comes back into the ring and reads the new values (or a miss
// for a key whose home moved and whose memory went with it).

import { join } from 'node:path';
import t from 'tap';
import { Client, DsyncError } from '../../client/index.js';
import { cachePorts } from './cache-helpers.js';
import { type NodeSpec, sleep, tempDir, TestNode } from './helpers/cluster.js';
import { TcpProxy } from './lock-proxy.js';
import { waitForLeader } from './raft-helpers.js';

const nodesCount = 3;
const leaseMs = 1_000;
const nodeDownMs = 1_000;
const keys = Array.from({ length: 16 }, (_, i) => `part-${i}`);
/** How long the victim's client keeps reading while it is cut off. */
const cutReadMs = 3_500;
const convergeMs = 15_000;

interface Read {
  readonly key: string;
  readonly invokeMs: number;
  readonly completeMs: number;
  readonly value: string | null | 'UNAVAILABLE';
}

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = convergeMs): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (err) {
      if (!(err instanceof DsyncError)) throw err;
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting until ${what}`);
}

t.test('a node cut off from group 0 serves no stale cache value; the ring moves its keys and takes it back', async (t) => {
  const ports = await cachePorts(nodesCount * 3 + nodesCount * (nodesCount - 1));
  const ids = Array.from({ length: nodesCount }, (_, i) => `n${i + 1}`);
  const port = (i: number): number => ports[i] ?? 0;
  // proxies[i>j] carries node i's peer link to node j.
  const proxies = new Map<string, TcpProxy>();
  let next = nodesCount * 3;
  for (let i = 0; i < nodesCount; i++) {
    for (let j = 0; j < nodesCount; j++) if (i !== j) proxies.set(`${i}>${j}`, await TcpProxy.start(t, port(j), port(next++)));
  }
  const proxy = (i: number, j: number): TcpProxy => {
    const p = proxies.get(`${i}>${j}`);
    if (p === undefined) throw new Error(`no proxy ${i}>${j}`);
    return p;
  };
  const dataRoot = tempDir(t, 'dsync-cache-partition-');
  const specs: NodeSpec[] = ids.map((id, i) => ({
    id, port: port(i), httpPort: port(nodesCount + i), consolePort: port(2 * nodesCount + i), dataDir: join(dataRoot, id),
    peers: ids.flatMap((pid, j) => (j === i ? [] : [`${pid}@127.0.0.1:${proxy(i, j).port}`])),
  }));
  const nodes = specs.map((s) => new TestNode(t, s, ['--log-level', 'warn', '--cache-lease', String(leaseMs), '--cache-node-down', String(nodeDownMs)]));
  await Promise.all(nodes.map((n) => n.start()));
  const clients = await Promise.all(nodes.map((n) => Client.connect({ seeds: [n.address], requestTimeoutMs: 2_000, name: `cache-part-${n.spec.id}` })));
  t.teardown(() => Promise.all(clients.map((c) => c.close())).then(() => undefined));
  const leader = await waitForLeader(clients[0] as Client, nodes.map((n) => n.address), ids);
  const victimIndex = ids.findIndex((id) => id !== leader.leaderId);
  const victim = clients[victimIndex] as Client;
  const writer = clients[ids.indexOf(leader.leaderId)] as Client;
  const ringOf = async (c: Client): Promise<{ members: number; serving: number; generation: number }> => {
    const s = await c.cache.stats();
    return { members: s.counters.ringMembers ?? 0, serving: s.counters.serving ?? 0, generation: s.counters.ringGeneration ?? 0 };
  };
  const startedMs = performance.now();
  const phase = (what: string): void => t.comment(`${Math.round(performance.now() - startedMs)} ms: ${what}`);
  await waitUntil('every node serves a 3-node ring', async () => (await Promise.all(clients.map(ringOf))).every((r) => r.members === 3 && r.serving === 1));
  const generationBefore = (await ringOf(writer)).generation;
  phase('ring formed');

  for (const k of keys) await writer.cache.set(k, 'old');
  for (const k of keys) t.equal(await victim.cache.getString(k), 'old', `victim caches ${k}`);

  for (let j = 0; j < nodesCount; j++) {
    if (j === victimIndex) continue;
    proxy(victimIndex, j).cut();
    proxy(j, victimIndex).cut();
  }
  const cutAtMs = performance.now();
  t.comment(`${ids[victimIndex]} cut off from the rest (leader ${leader.leaderId})`);

  // The victim's client reads every key over and over; the majority writes the new values.
  const reads: Read[] = [];
  const reading = (async (): Promise<void> => {
    while (performance.now() - cutAtMs < cutReadMs) {
      for (const key of keys) {
        if (performance.now() - cutAtMs >= cutReadMs) break;
        const invokeMs = performance.now();
        let value: Read['value'];
        try {
          value = await victim.cache.getString(key);
        } catch (err) {
          if (!(err instanceof DsyncError)) throw err;
          value = 'UNAVAILABLE';
        }
        reads.push({ key, invokeMs, completeMs: performance.now(), value });
      }
    }
  })();
  const writtenAtMs = new Map<string, number>();
  await Promise.all(keys.map(async (key) => {
    const deadline = performance.now() + convergeMs;
    for (;;) {
      try {
        await writer.cache.set(key, 'new');
        writtenAtMs.set(key, performance.now());
        return;
      } catch (err) {
        if (!(err instanceof DsyncError) || performance.now() > deadline) throw err;
      }
    }
  }));
  phase('new values written');
  await reading;
  phase('reads on the cut-off node done');

  let stale = 0;
  for (const r of reads) {
    const w = writtenAtMs.get(r.key);
    if (w !== undefined && r.invokeMs > w && r.value === 'old') {
      stale++;
      if (stale <= 5) t.fail(`stale read of ${r.key} on the cut-off node ${Math.round(r.invokeMs - w)} ms after 'new' was written`);
    }
  }
  t.equal(stale, 0, `no read on the cut-off node returned the old value after the write (${reads.length} reads)`);
  const late = reads.filter((r) => r.invokeMs - cutAtMs > leaseMs + 200);
  t.ok(late.length > 0 && late.every((r) => r.value !== 'old'), `a lease after the cut the victim serves nothing old (${late.length} reads)`);
  t.ok(late.some((r) => r.value === 'UNAVAILABLE'), 'it answers UNAVAILABLE instead');
  const majorityRing = await ringOf(writer);
  t.equal(majorityRing.members, 2, 'the majority took the victim out of the cache ring');
  t.ok(majorityRing.generation > generationBefore, `a new ring generation (${generationBefore} -> ${majorityRing.generation})`);
  const other = clients.find((_, i) => i !== victimIndex && ids[i] !== leader.leaderId) as Client;
  for (const k of keys) t.equal(await other.cache.getString(k), 'new', `the majority reads the new ${k}`);

  for (const p of proxies.values()) p.heal();
  await waitUntil('the victim is back in a 3-node ring and serving', async () => {
    const r = await ringOf(victim);
    return r.members === 3 && r.serving === 1;
  });
  phase('victim back in the ring');
  let fresh = 0;
  const after = await Promise.all(keys.map((k) => victim.cache.getString(k)));
  after.forEach((v, i) => {
    t.not(v, 'old', `after healing the victim does not read the old ${keys[i] ?? ''}`);
    if (v === 'new') fresh++;
  });
  t.ok(fresh > 0, `after healing the victim reads new values (${fresh} of ${keys.length}; the rest moved home and read as misses)`);
});
