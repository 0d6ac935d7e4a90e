// Distributed locks over real processes: 3 `dsync node` processes and lock
// clients that are processes of their own (lock-worker.ts).
// 1. 16 client processes contend for one exclusive lock, a fixed number of rounds
//    each; inside, each proves it is alone (an O_EXCL marker file) and that its
//    fencing token is larger than the last one in a shared file, then appends it.
//    The group 0 leader is killed with -9 mid-way. At the end: no worker saw a
//    violation, the file holds every round of every worker with tokens strictly
//    increasing in file order, and the marker is gone.
// 2. A client process killed with -9 while holding loses its lock after its
//    session TTL (not before: the waiter stays blocked while it lives), and the
//    waiter then gets it with a larger token.

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { Client } from '../../client/index.js';
import { sleep, tempDir, TestCluster } from './helpers/cluster.js';
import { leaderNode, LockWorker, waitUntil } from './lock-helpers.js';
import { consoleCommand } from './raft-helpers.js';

const contendersCount = 16;
const roundsPerContender = 6;
/** Grants (summed over all workers) before the leader is killed: about a third of the run. */
const grantsBeforeKill = Math.floor((contendersCount * roundsPerContender) / 3);
const contendTimeoutMs = 90_000;
/** Session TTL of the holder that gets killed (the minimum is 1000 ms). */
const shortTtlMs = 1_500;

t.test('locks over real processes', async (t) => {
  const cluster = await TestCluster.start(t);
  const client = await Client.connect({ seeds: cluster.seeds, requestTimeoutMs: 10_000, maxRedirects: 40, name: 'it-observer' });
  t.teardown(() => client.close());

  await t.test('16 contending processes, leader kill -9 mid-way: no overlap, tokens increase, everyone gets the lock', async (t) => {
    const dir = tempDir(t, 'dsync-locks-');
    const file = join(dir, 'tokens.txt');
    const marker = join(dir, 'inside.marker');
    const startFile = join(dir, 'go');
    writeFileSync(file, '');
    const first = await leaderNode(client, cluster);

    const workers = Array.from({ length: contendersCount }, (_, i) => LockWorker.spawn(t, {
      mode: 'contend', seeds: cluster.seeds, lock: 'contended', label: `w${i}`, sessionTtlMs: 10_000,
      rounds: roundsPerContender, file, marker, holdMs: 2, startFile,
    }));
    // Everyone connected first, so all 16 really contend from the first grant on.
    await waitUntil(() => workers.every((w) => w.count('ready') === 1) || workers.some((w) => !w.proc.running),
      'every worker to connect', contendTimeoutMs);
    writeFileSync(startFile, 'go\n');
    const grants = (): number => workers.reduce((sum, w) => sum + w.count('round'), 0);
    await waitUntil(() => grants() >= grantsBeforeKill || workers.some((w) => !w.proc.running && w.count('done') === 0),
      `${grantsBeforeKill} grants before the leader kill`, contendTimeoutMs);
    const exit = await first.kill9();
    const grantsAtKill = grants();
    t.equal(exit?.signal, 'SIGKILL', `leader ${first.spec.id} killed after ${grantsAtKill} grants`);
    t.ok(grantsAtKill < contendersCount * roundsPerContender, 'the kill came while workers were still contending');

    await waitUntil(() => workers.every((w) => !w.proc.running), 'every worker to finish', contendTimeoutMs);
    for (const w of workers) {
      const status = await w.proc.exited;
      const violations = w.events().filter((e) => e.ev === 'violation');
      t.same(violations, [], `${w.args.label}: no violation`);
      t.equal(status.code, 0, `${w.args.label} exits 0${status.code === 0 ? '' : `\n${w.proc.describe()}`}`);
      t.equal(w.count('round'), roundsPerContender, `${w.args.label} got the lock ${roundsPerContender} times`);
    }
    const retried = workers.flatMap((w) => w.events().filter((e) => e.ev === 'error'));
    t.comment(`${retried.length} retried lock/release calls around the kill: ${[...new Set(retried.map((e) => e.code))].join(',') || '-'}`);

    const lines = readFileSync(file, 'utf8').split('\n').filter((l) => l !== '');
    t.equal(lines.length, contendersCount * roundsPerContender, 'every round of every worker is in the file');
    const tokens = lines.map((l) => Number(l.split(' ')[0]));
    const regressions = tokens.flatMap((tok, i) => (i > 0 && !(tok > (tokens[i - 1] ?? 0)) ? [`${tokens[i - 1]} then ${tok}`] : []));
    t.same(regressions, [], 'fencing tokens strictly increase in file order');
    const perWorker = new Map<string, number>();
    for (const l of lines) {
      const label = l.split(' ')[1] ?? '';
      perWorker.set(label, (perWorker.get(label) ?? 0) + 1);
    }
    t.equal(perWorker.size, contendersCount, 'every worker wrote to the file');
    t.notOk(existsSync(marker), 'nobody is left inside');

    // The killed leader comes back on its data dir and catches up.
    await first.restart();
    await leaderNode(client, cluster);
  });

  await t.test('a holder killed with -9 loses its lock after its TTL; the waiter gets it with a larger token', async (t) => {
    const holder = LockWorker.spawn(t, { mode: 'hold', seeds: cluster.seeds, lock: 'ttl-lock', label: 'holder', sessionTtlMs: shortTtlMs });
    const held = await holder.waitFor('held');
    const heldToken = held.token ?? 0;
    t.ok(heldToken > 0, `the holder process got token ${heldToken}`);

    const waiter = await Client.connect({ seeds: cluster.seeds, requestTimeoutMs: 10_000, maxRedirects: 40, name: 'ttl-waiter' });
    t.teardown(() => waiter.close());
    let grantedAtMs = 0;
    const waiting = waiter.lock('ttl-lock', { waitMs: 20_000 }).then((l) => {
      grantedAtMs = Date.now();
      return l;
    });
    waiting.catch(() => undefined);
    // While the holder lives, its keep-alives hold the lock well past one TTL.
    await sleep(2 * shortTtlMs);
    t.equal(grantedAtMs, 0, 'the waiter stays blocked while the holder process is alive');
    const leader = await leaderNode(client, cluster);
    const info = await consoleCommand(leader.spec.consolePort, 'lock ttl-lock');
    t.match(info, /holder +session=\d+ mode=exclusive/, 'the leader shows the holder');
    t.match(info, /waiter#1 session=\d+ mode=exclusive/, 'and the waiter');

    const killedAtMs = Date.now();
    await holder.proc.kill9();
    const lock = await waiting;
    const afterKillMs = grantedAtMs - killedAtMs;
    t.comment(`granted ${afterKillMs} ms after the kill (TTL ${shortTtlMs} ms, keep-alive every ${Math.floor(shortTtlMs / 3)} ms)`);
    // The last keep-alive went out at most TTL/3 before the kill: the lease runs at least 2/3 TTL past it.
    t.ok(afterKillMs >= Math.floor(shortTtlMs / 2), `not handed over before the holder's lease could have run out (${afterKillMs} ms)`);
    t.ok(lock.token > heldToken, `the waiter's token ${lock.token} is larger than the dead holder's ${heldToken}`);
    t.notOk(lock.isLost, 'the waiter holds it');
    await lock.release();
  });

  await t.test('lock-delay: after a holder with a lock-delay dies, its lock stays ungranted for the delay past its TTL', async (t) => {
    const lockDelayMs = 3000;
    const holder = LockWorker.spawn(t, { mode: 'hold', seeds: cluster.seeds, lock: 'delayed-lock', label: 'delayed-holder',
      sessionTtlMs: shortTtlMs, lockDelayMs });
    const heldToken = (await holder.waitFor('held')).token ?? 0;
    const waiter = await Client.connect({ seeds: cluster.seeds, requestTimeoutMs: 10_000, maxRedirects: 40, name: 'delay-waiter' });
    t.teardown(() => waiter.close());
    let grantedAtMs = 0;
    const waiting = waiter.lock('delayed-lock', { waitMs: 30_000 }).then((l) => {
      grantedAtMs = Date.now();
      return l;
    });
    waiting.catch(() => undefined);
    await sleep(300);
    const killedAtMs = Date.now();
    await holder.proc.kill9();
    const lock = await waiting;
    const afterKillMs = grantedAtMs - killedAtMs;
    t.comment(`granted ${afterKillMs} ms after the kill (TTL ${shortTtlMs} ms + lock-delay ${lockDelayMs} ms)`);
    // Without the delay the hand-over comes within about one TTL (the test above); with it, the
    // lock must stay free of grants for the whole delay after the expiry.
    t.ok(afterKillMs >= lockDelayMs, `not granted before the lock-delay ran out (${afterKillMs} ms)`);
    t.ok(lock.token > heldToken, 'the waiter gets a larger token');
    await lock.release();
  });
});
