// Deadlock detection and the lock console over real `dsync node` processes.
// 1. Two clients (two sessions) take A then B and B then A. Once in a fixed
//    order (the second wait closes the cycle: that requester is the victim) and
//    once with both second acquires sent at the same moment: each time exactly
//    one gets DeadlockError, and once it lets go of its first lock the other
//    proceeds.
// 2. With one holder and one waiter on a lock, the leader's console commands
//    `locks`, `lock NAME` and `sessions` name the lock, the holder's and the
//    waiter's sessions (cross-checked between the three), and their clients.

import t from 'tap';
import { Client, DeadlockError, type HeldLock } from '../../client/index.js';
import { sleep, TestCluster } from './helpers/cluster.js';
import { leaderNode } from './lock-helpers.js';
import { consoleCommand } from './raft-helpers.js';

const waitMs = 15_000;

async function connect(seeds: readonly string[], name: string): Promise<Client> {
  return Client.connect({ seeds, requestTimeoutMs: 10_000, maxRedirects: 40, name });
}

/** Polls the leader's console until `lock NAME` shows `waiters` waiters. */
async function waitForWaiters(consolePort: () => Promise<number>, lock: string, waiters: number): Promise<string> {
  let last = '';
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    last = await consoleCommand(await consolePort(), `lock ${lock}`);
    if ((last.match(/waiter#\d+/g) ?? []).length === waiters) return last;
    await sleep(50);
  }
  throw new Error(`lock ${lock} did not get ${waiters} waiters within 10 s; last: ${last}`);
}

t.test('deadlocks and the lock console', async (t) => {
  const cluster = await TestCluster.start(t);
  const admin = await connect(cluster.seeds, 'it-admin');
  t.teardown(() => admin.close());
  const leaderConsole = async (): Promise<number> => (await leaderNode(admin, cluster)).spec.consolePort;

  await t.test('A then B and B then A: exactly one DeadlockError, the other proceeds', async (t) => {
    for (const variant of ['ordered', 'simultaneous'] as const) {
      const a = await connect(cluster.seeds, `dl-a-${variant}`);
      const b = await connect(cluster.seeds, `dl-b-${variant}`);
      t.teardown(() => a.close());
      t.teardown(() => b.close());
      const lockA = `A-${variant}`;
      const lockB = `B-${variant}`;
      const firsts = new Map<string, HeldLock>([['a', await a.lock(lockA)], ['b', await b.lock(lockB)]]);

      const second: Promise<HeldLock>[] = [];
      second.push(a.lock(lockB, { waitMs }));
      if (variant === 'ordered') await waitForWaiters(leaderConsole, lockB, 1);
      second.push(b.lock(lockA, { waitMs }));
      for (const p of second) p.catch(() => undefined);

      // Whoever is refused lets go of its first lock; the other must then get its second.
      const firstSettled = await Promise.race(second.map((p, i) => p.then(() => ({ i, ok: true }), () => ({ i, ok: false }))));
      t.notOk(firstSettled.ok, `${variant}: the first to settle is a refusal (nobody can proceed while both wait)`);
      const loser = firstSettled.i === 0 ? 'a' : 'b';
      await firsts.get(loser)?.release();
      const results = await Promise.allSettled(second);
      const refused = results.filter((r) => r.status === 'rejected');
      const granted = results.filter((r): r is PromiseFulfilledResult<HeldLock> => r.status === 'fulfilled');
      t.equal(refused.length, 1, `${variant}: exactly one of the two is refused`);
      t.equal(granted.length, 1, `${variant}: the other proceeds`);
      const reason: unknown = refused[0]?.reason;
      t.ok(reason instanceof DeadlockError, `${variant}: the refusal is a DeadlockError (${String(reason)})`);
      t.equal((reason as DeadlockError).code, 'DEADLOCK', `${variant}: with code DEADLOCK`);
      if (variant === 'ordered') t.equal(loser, 'b', 'ordered: the requester that closed the cycle is the victim');
      for (const g of granted) {
        t.notOk(g.value.isLost, `${variant}: the winner holds ${g.value.name}`);
        await g.value.release();
      }
      await firsts.get(loser === 'a' ? 'b' : 'a')?.release();
    }
  });

  await t.test('console locks / lock NAME / sessions show the holder and the waiter', async (t) => {
    const holder = await connect(cluster.seeds, 'console-holder');
    const waiter = await connect(cluster.seeds, 'console-waiter');
    t.teardown(() => holder.close());
    t.teardown(() => waiter.close());
    const held = await holder.lock('console-lock');
    const waiting = waiter.lock('console-lock', { waitMs });
    waiting.catch(() => undefined);

    const info = await waitForWaiters(leaderConsole, 'console-lock', 1);
    t.match(info, /^lock console-lock lastToken=\d+/, '`lock NAME` names the lock');
    const holderSession = /holder +session=(\d+) mode=exclusive count=1 token=(\d+)/.exec(info);
    const waiterSession = /waiter#1 session=(\d+) mode=exclusive/.exec(info);
    t.ok(holderSession !== null && Number(holderSession[2]) === held.token, `\`lock NAME\` shows the holder with its token ${held.token}`);
    t.ok(waiterSession !== null, '`lock NAME` shows the waiter');
    const hs = holderSession?.[1] ?? '?';
    const ws = waiterSession?.[1] ?? '?';
    t.not(hs, ws, 'two different sessions');

    const locks = await consoleCommand(await leaderConsole(), 'locks');
    t.match(locks, new RegExp(`^console-lock +holders=s${hs}:ex1@${held.token} +waiters=1`, 'm'), '`locks` lists the lock, its holder session and one waiter');

    const sessions = await consoleCommand(await leaderConsole(), 'sessions');
    t.match(sessions, new RegExp(`^session ${hs} client=console-holder\\S* ttl=\\d+ms.* holds=console-lock waits=0$`, 'm'),
      '`sessions` shows the holder session, its client and what it holds');
    t.match(sessions, new RegExp(`^session ${ws} client=console-waiter\\S* ttl=\\d+ms.* holds=- waits=1$`, 'm'),
      '`sessions` shows the waiter session waiting');

    await held.release();
    const next = await waiting;
    t.ok(next.token > held.token, 'after the release the waiter gets it');
    await next.release();
    const after = await consoleCommand(await leaderConsole(), 'lock console-lock');
    t.match(after, /free and has no waiters/, '`lock NAME` shows it free again');
  });
});
