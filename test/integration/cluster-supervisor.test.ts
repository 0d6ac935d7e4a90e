// `dsync cluster` as a supervisor that tells the truth (issue 12), with real
// processes: an inherited PORT/HTTP_PORT does not make its children collide; a
// second cluster on taken ports fails naming the node and why, instead of taking
// the first cluster's nodes for its own; a node killed under it is restarted; the
// terminal's Ctrl-C (SIGINT to the supervisor's process group) stops each node
// once and reports each; with --no-restart a dead node is reported and the
// supervisor exits 1; SIGHUP stops the nodes like Ctrl-C; and a supervisor killed
// with SIGKILL leaves no node behind.
// Ports come from this session's range (25500-25999).

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { Client } from '../../client/index.js';
import { freePortBlock, freePorts, pidAlive, runDsync, sleep, spawnDsync, tempDir } from './helpers/cluster.js';

const pollAttemptsMax = 150;
const pollIntervalMs = 100;

function childPids(pid: number): number[] {
  try {
    return execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' })
      .split('\n').map((s) => Number(s.trim())).filter((n) => n > 0);
  } catch {
    return []; // ps exits 1 when there are none
  }
}

/** Kills (at teardown) whatever of these node processes is still alive: they run in their own process groups. */
function reapAtTeardown(t: { teardown(fn: () => void): void }, pids: () => number[]): void {
  t.teardown(() => {
    for (const pid of pids()) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
  });
}

async function until(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < pollAttemptsMax; i++) {
    if (await check()) return;
    await sleep(pollIntervalMs);
  }
  throw new Error(`timed out waiting for: ${what}`);
}

function clusterArgs(nodes: number, base: number, dataRoot: string, extra: readonly string[] = []): string[] {
  return ['cluster', '--nodes', String(nodes), '--base-port', String(base), '--http-base-port', String(base + nodes),
    '--console-base-port', String(base + 2 * nodes), '--data-dir', dataRoot, ...extra];
}

t.test('own children: inherited ports, a second cluster, restart, graceful Ctrl-C', async (t) => {
  const base = await freePortBlock(6);
  const [strayPort, strayHttp] = await freePorts(2);
  const dataRoot = tempDir(t);
  // Inherited settings that, applied to every child, would make them collide.
  const cluster = spawnDsync(t, clusterArgs(2, base, dataRoot), { env: { PORT: String(strayPort!), HTTP_PORT: String(strayHttp!) } });
  const seen = new Set<number>();
  reapAtTeardown(t, () => [...seen]);
  await cluster.waitForStdout(/2 nodes up/, 30_000);
  const pids = childPids(cluster.pid);
  pids.forEach((p) => seen.add(p));
  t.equal(pids.length, 2, 'two node processes, despite PORT and HTTP_PORT in the environment');

  const second = await runDsync(t, clusterArgs(2, base, tempDir(t)), { timeoutMs: 30_000 });
  t.equal(second.code, 1, 'a second cluster on the same ports exits 1');
  t.match(second.stderr, /node n1 did not start: it exited \(code 1\): .*port \d+ \(--port\) is already in use/, 'naming the node and why');
  t.notMatch(second.stdout, /nodes up/, 'and never says its nodes are up');

  // kill -9 n2: the supervisor restarts it.
  const n2 = pids[1]!;
  process.kill(n2, 'SIGKILL');
  await until('n2 restarted', () => /node n2 is back/.test(cluster.stderr));
  t.match(cluster.stderr, /node n2 exited \(signal SIGKILL\); restarting it in \d+ ms \(restart 1\)/, 'the death is reported with the restart');
  const after = childPids(cluster.pid);
  after.forEach((p) => seen.add(p));
  t.equal(after.length, 2, 'two nodes again');
  t.notOk(after.includes(n2), 'n2 is a new process');
  const client = await Client.connect({ seeds: [`127.0.0.1:${base + 1}`] });
  t.equal((await client.status(`127.0.0.1:${base + 1}`)).nodeId, 'n2', 'and answers as n2');
  await client.close();

  // The terminal's Ctrl-C goes to the foreground process group: the supervisor's, not its nodes'.
  process.kill(-cluster.pid, 'SIGINT');
  const exit = await cluster.exited;
  t.same(exit, { code: 0, signal: null }, 'the supervisor exits 0');
  t.equal(cluster.stdout.match(/^n1 stopped$/gm)?.length, 1, 'n1 is stopped once and reported');
  t.equal(cluster.stdout.match(/^n2 stopped$/gm)?.length, 1, 'n2 too');
  t.match(cluster.stdout, /cluster stopped: 2 of 2 nodes stopped cleanly/, 'with a summary');
  t.notMatch(cluster.stdout, /exited while stopping/, 'no node exits mid-stop');
  t.same(after.filter(pidAlive), [], 'no node process is left');
  for (const id of ['n1', 'n2']) {
    const log = readFileSync(join(dataRoot, id, 'node.log'), 'utf8');
    t.match(log, /"msg":"node stopped"/, `${id} logged "node stopped"`);
  }
});

t.test('--no-restart reports a dead node; SIGHUP stops the nodes; a killed supervisor leaves no orphans', async (t) => {
  const base = await freePortBlock(3);
  const seen = new Set<number>();
  reapAtTeardown(t, () => [...seen]);

  const once = spawnDsync(t, clusterArgs(1, base, tempDir(t), ['--no-restart']));
  await once.waitForStdout(/1 node up/, 30_000);
  const [node] = childPids(once.pid);
  seen.add(node!);
  process.kill(node!, 'SIGKILL');
  t.same(await once.exited, { code: 1, signal: null }, 'with --no-restart the supervisor exits 1 when its node dies');
  t.match(once.stderr, /node n1 exited \(signal SIGKILL\); not restarted \(--no-restart\)/, 'saying so');

  // A closed terminal (SIGHUP) stops the nodes like Ctrl-C.
  const hung = spawnDsync(t, clusterArgs(1, base, tempDir(t)));
  await hung.waitForStdout(/1 node up/, 30_000);
  childPids(hung.pid).forEach((p) => seen.add(p));
  hung.signal('SIGHUP');
  t.same(await hung.exited, { code: 0, signal: null }, 'SIGHUP: the supervisor exits 0');
  t.match(hung.stdout, /stopping the cluster \(SIGHUP\)[\s\S]*^n1 stopped$/m, 'after stopping its node');

  const doomed = spawnDsync(t, clusterArgs(1, base, tempDir(t)));
  await doomed.waitForStdout(/1 node up/, 30_000);
  const [orphan] = childPids(doomed.pid);
  seen.add(orphan!);
  await doomed.kill9(); // its process group: the supervisor alone
  await until('the node stops after its supervisor died', () => !pidAlive(orphan!));
  t.notOk(pidAlive(orphan!), 'the node exits by itself once its supervisor is gone');
});
