// The operator's path, through real processes: `dsync cluster --nodes 3` (what
// `npm start` runs) brings up three nodes and prints its banner; `dsync status`
// reports all three; the console answers status/help/members and hints on an
// unknown command without disconnecting; the library imports as 'dsync'; SIGINT
// stops the cluster and every child exits. Then bad config exits non-zero with
// a message naming the setting.

import { readFileSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import t from 'tap';
import { freeBasePort, freePorts, pidAlive, repoRoot, runDsync, spawnDsync, tempDir } from './helpers/cluster.js';

/** A console session: reads until the prompt after each command. */
class ConsoleSession {
  private buffered = '';
  private waiter: (() => void) | null = null;
  closed = false;

  private constructor(readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (s: string) => {
      this.buffered += s;
      this.waiter?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
    socket.on('error', () => {
      // 'close' follows
    });
  }

  static async open(port: number): Promise<ConsoleSession> {
    const socket = connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('error', reject);
    });
    const session = new ConsoleSession(socket);
    await session.untilPrompt();
    return session;
  }

  /** Everything up to the next `> ` prompt (or until the node closes the session). */
  async untilPrompt(timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (!this.buffered.endsWith('> ') && !this.closed) {
      if (Date.now() > deadline) throw new Error(`no console prompt within ${timeoutMs} ms; got ${JSON.stringify(this.buffered)}`);
      await new Promise<void>((r) => {
        this.waiter = r;
        setTimeout(r, 100);
      });
    }
    const out = this.buffered;
    this.buffered = '';
    return out.endsWith('> ') ? out.slice(0, -2) : out;
  }

  async command(line: string): Promise<string> {
    this.socket.write(`${line}\n`);
    return this.untilPrompt();
  }
}

t.test('dsync cluster: 3 nodes up, status, console, clean Ctrl-C', async (t) => {
  t.equal(JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')).scripts.start, 'npm run build && node bin/dsync.js cluster --nodes 3',
    'npm start runs the cluster command exercised here');
  const base = await freeBasePort(3);
  const dataRoot = tempDir(t);
  const cluster = spawnDsync(t, ['cluster', '--nodes', '3', '--base-port', String(base), '--data-dir', dataRoot]);
  const banner = (await cluster.waitForStdout(/3 nodes up[\s\S]*Ctrl-C stops every node/, 30_000))[0];
  for (let i = 0; i < 3; i++) {
    t.match(banner, `n${i + 1}  client 127.0.0.1:${base + i}`, `banner lists n${i + 1} and its client port`);
    t.match(banner, `console 127.0.0.1:${base + 2000 + i}`, `banner lists n${i + 1}'s console port`);
  }
  const childPids = execFileSync('ps', ['-o', 'pid=', '--ppid', String(cluster.pid)], { encoding: 'utf8' })
    .split('\n').map((s) => Number(s.trim())).filter((n) => n > 0);
  t.equal(childPids.length, 3, 'three node processes are children of the cluster command');

  const seeds = [0, 1, 2].map((i) => `127.0.0.1:${base + i}`);
  const status = await runDsync(t, ['status', '--seeds', seeds[0]!]);
  t.equal(status.code, 0, `dsync status exits 0\n${status.stderr}`);
  for (let i = 0; i < 3; i++) {
    t.match(status.stdout, new RegExp(`^n${i + 1}\\s+127\\.0\\.0\\.1:${base + i}\\s+up `, 'm'), `dsync status reports n${i + 1} up`);
  }
  const json = await runDsync(t, ['status', '--json', '--seeds', seeds[1]!]);
  const views = JSON.parse(json.stdout) as { nodeId: string; members: { id: string }[] }[];
  t.same(views.map((v) => v.nodeId).sort(), ['n1', 'n2', 'n3'], 'status --json has every member\'s own view');
  t.ok(views.every((v) => v.members.length === 3), 'and each view lists three members');

  // The client library as the README shows it, by package self-reference.
  const packageName = 'dsync';
  const lib = (await import(packageName)) as typeof import('../../client/index.js');
  const client = await lib.Client.connect({ seeds: [seeds[2]!] });
  t.equal((await client.status()).nodeId, 'n3', "import { Client } from 'dsync' talks to the cluster");
  await client.close();

  const health = await fetch(`http://127.0.0.1:${base + 1000}/healthz`);
  t.equal(health.status, 200, '/healthz answers 200');
  t.match(await health.json(), { status: 'ok', nodeId: 'n1' });

  const session = await ConsoleSession.open(base + 2000);
  t.teardown(() => session.socket.destroy());
  const statusOut = await session.command('status');
  t.match(statusOut, /^node\s+n1 \(127\.0\.0\.1:\d+\)/m, 'console status names the node');
  t.match(statusOut, /^members\s+.*n1.*n2.*n3/m, 'and lists the members');
  const help = await session.command('help');
  for (const cmd of ['ping', 'status', 'members', 'quit']) t.match(help, new RegExp(`^\\s+${cmd}\\b`, 'm'), `help lists ${cmd}`);
  const unknown = await session.command('frobnicate now');
  t.match(unknown, /unknown command 'frobnicate'.*help/, 'an unknown command gets a hint');
  t.notOk(session.closed, 'and the session stays open');
  t.match(await session.command('ping'), /^pong/, 'the console still answers after the unknown command');
  t.match(await session.command('members'), /n2\s+127\.0\.0\.1/, 'members lists the peers');
  session.socket.write('quit\n');
  await session.untilPrompt();
  t.ok(session.closed, 'quit closes the session');

  // Ctrl-C: the cluster command stops every node and exits cleanly.
  cluster.signal('SIGINT');
  let exitTimer: NodeJS.Timeout | undefined;
  const exit = await Promise.race([cluster.exited, new Promise<null>((r) => { exitTimer = setTimeout(() => r(null), 20_000); })]);
  clearTimeout(exitTimer);
  t.same(exit, { code: 0, signal: null }, `the cluster command exits 0 on SIGINT\n${cluster.describe()}`);
  t.same(childPids.filter(pidAlive), [], 'every node process has exited');
  const refused = await Promise.all(seeds.map((s) => new Promise<boolean>((r) => {
    const [host, port] = s.split(':');
    const sock = connect({ host: host!, port: Number(port) });
    sock.once('connect', () => { sock.destroy(); r(false); });
    sock.once('error', () => r(true));
  })));
  t.same(refused, [true, true, true], 'no node port accepts connections any more');
});

t.test('bad config exits non-zero naming the setting', async (t) => {
  const dir = tempDir(t);
  const dataDir = join(dir, 'data');
  const [port, otherPort] = await freePorts(2);
  const aFile = join(dir, 'regular-file');
  writeFileSync(aFile, 'not a directory');
  const cases: { what: string; args: string[]; env?: Record<string, string>; names: RegExp }[] = [
    { what: '--port abc', args: ['--id', 'n1', '--port', 'abc', '--data-dir', dataDir], names: /--port.*"abc" is not a port/ },
    { what: 'PORT=abc from the environment', args: ['--id', 'n1', '--data-dir', dataDir], env: { PORT: 'abc' }, names: /PORT.*"abc"/ },
    { what: 'a peer list naming the node itself', args: ['--id', 'n1', '--port', String(port), '--data-dir', dataDir,
      '--peers', `n1@127.0.0.1:${otherPort!}`], names: /--peers.*itself/ },
    { what: 'a peer listed twice', args: ['--id', 'n1', '--port', String(port), '--data-dir', dataDir,
      '--peers', `n2@127.0.0.1:${otherPort!},n2@127.0.0.1:${otherPort! + 1}`], names: /--peers.*n2 is listed twice/ },
    { what: 'an unwritable data dir', args: ['--id', 'n1', '--port', String(port), '--data-dir', join(aFile, 'sub')],
      names: /--data-dir.*not writable/ },
  ];
  await Promise.all(cases.map(async (c) => {
    const r = await runDsync(t, ['node', ...c.args], c.env === undefined ? {} : { env: c.env });
    t.not(r.code, 0, `${c.what}: exits non-zero`);
    t.equal(r.signal, null, `${c.what}: exits by itself (not killed)`);
    t.match(r.stderr, c.names, `${c.what}: the message names the setting\n${r.stderr}`);
  }));
  const help = await runDsync(t, ['node', '--help']);
  t.equal(help.code, 0, 'dsync node --help exits 0');
  t.match(help.stdout, /--data-dir/, 'and documents the flags');
  const bogus = await runDsync(t, ['frobnicate']);
  t.not(bogus.code, 0, 'an unknown command exits non-zero');
  t.match(bogus.stderr, /unknown command 'frobnicate'/);
});
