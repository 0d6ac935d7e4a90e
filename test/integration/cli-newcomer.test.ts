// The first hour of a new user with the CLI and a node (issue 12), through real
// processes: usage errors exit 2 naming the flag or argument, --version, per-
// subcommand --help, --json on the read commands and for errors, ping naming the
// node, a command pointed at the HTTP or console port saying so, lock names
// refused client- and server-side and printed escaped, `lock acquire` releasing on
// the first SIGTERM or SIGINT, the README's --wait example ending by itself; the
// node's /livez, /readyz (503 without a leader) and HEAD; the console's line limit
// per line and escaped echo. Ports come from this session's range (25000-25999).

import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { Client } from '../../client/index.js';
import { routerOf } from '../../client/client.js';
import { consoleLineBytesMax } from '../../core/constants.js';
import { Opcode } from '../../protocol/frame.js';
import { schema } from '../../protocol/index.js';
import { freePorts, repoRoot, runDsync, sleep, spawnDsync, tempDir, TestNode } from './helpers/cluster.js';

/** Bounds on the polling loops below. */
const pollAttemptsMax = 100;
const pollIntervalMs = 100;

const version = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;

t.test('usage errors exit 2 and name what is wrong; --version; per-subcommand help', async (t) => {
  const cases: { args: string[]; code: number; out?: RegExp; err?: RegExp; notErr?: string }[] = [
    { args: [], code: 2, err: /usage: dsync <command>/ },
    { args: ['lock'], code: 2, err: /which lock subcommand[\s\S]*usage: dsync lock/ },
    { args: ['--version'], code: 0, out: new RegExp(`^dsync ${version.replace(/\./g, '\\.')} `) },
    { args: ['version', '--json'], code: 0, out: new RegExp(`"version":"${version.replace(/\./g, '\\.')}"`) },
    { args: ['version', 'now'], code: 2, err: /unexpected argument 'now'/ },
    { args: ['status', 'extra'], code: 2, err: /unexpected argument 'extra'/ },
    { args: ['lock', 'list', 'extra'], code: 2, err: /unexpected argument 'extra'/ },
    { args: ['lock', 'acquire', '--help'], code: 0, out: /^usage: dsync lock acquire NAME[\s\S]*first Ctrl-C or SIGTERM releases/ },
    { args: ['ping', '--seeds', '127.0.0.1:99999'], code: 2, err: /--seeds: port 99999 .* out of range/ },
    { args: ['lock', 'acquire', 'x', '--ttl', '0'], code: 2, err: /--ttl must be a whole number of milliseconds in 1000\.\./ },
    { args: ['lock', 'acquire', 'x', '--wait', 'soon'], code: 2, err: /--wait must be a whole number .* not "soon"/ },
    { args: ['ping', '--count', '0'], code: 2, err: /--count must be a whole number in 1\.\./ },
    { args: ['lock', 'acquire', '   '], code: 2, err: /only whitespace/ },
    { args: ['lock', 'info', 'a\x1b[2Jb'], code: 2, err: /"a\\x1b\[2Jb".*control characters/, notErr: '\x1b' },
  ];
  const results = await Promise.all(cases.map((c) => runDsync(t, c.args)));
  cases.forEach((c, i) => {
    const r = results[i]!;
    const what = `dsync ${c.args.join(' ')}`;
    t.equal(r.code, c.code, `${what}: exit ${c.code}`, { stderr: r.stderr });
    if (c.out !== undefined) t.match(r.stdout, c.out, `${what}: stdout`);
    if (c.err !== undefined) t.match(r.stderr, c.err, `${what}: stderr names the problem`);
    if (c.notErr !== undefined) t.notOk(r.stderr.includes(c.notErr), `${what}: the control character is not printed raw`);
  });
  const json = await runDsync(t, ['status', 'extra', '--json']);
  t.equal(json.code, 2, 'a usage error with --json exits 2');
  t.match(JSON.parse(json.stderr) as unknown, { error: { code: 'USAGE', message: /unexpected argument 'extra'/ } }, 'and is one JSON object on stderr');
});

/** A console session that collects everything the node sends. */
class ConsoleTap {
  text = '';
  constructor(readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (s: string) => { this.text += s; });
    socket.on('error', () => {});
  }

  /** Waits until `pattern` matches what arrived (bounded). */
  async until(pattern: RegExp): Promise<string> {
    for (let i = 0; i < pollAttemptsMax && !pattern.test(this.text); i++) await sleep(pollIntervalMs);
    if (!pattern.test(this.text)) throw new Error(`console never matched ${pattern}: ${JSON.stringify(this.text.slice(-300))}`);
    return this.text;
  }
}

t.test('a node: read commands with --json, wrong ports, lock names, signals, health, console', async (t) => {
  const [port, httpPort, consolePort, lonePort, loneHttp, loneConsole, ghostPort] = await freePorts(7);
  const dir = tempDir(t);
  const node = new TestNode(t, { id: 'n1', port: port!, httpPort: httpPort!, consolePort: consolePort!, dataDir: join(dir, 'n1'), peers: [] });
  // n2 names a peer that never runs: a 2-voter group 0 without a quorum, so no leader.
  const lone = new TestNode(t, { id: 'n2', port: lonePort!, httpPort: loneHttp!, consolePort: loneConsole!, dataDir: join(dir, 'n2'),
    peers: [`n3@127.0.0.1:${ghostPort!}`] });
  await Promise.all([node.start(), lone.start()]);
  const seed = `127.0.0.1:${port!}`;

  // Readiness: a single-node cluster elects itself; poll (bounded) until it has.
  let ready: Response | null = null;
  for (let i = 0; i < pollAttemptsMax; i++) {
    ready = await fetch(`http://127.0.0.1:${httpPort!}/readyz`);
    if (ready.status === 200) break;
    await sleep(pollIntervalMs);
  }
  t.equal(ready?.status, 200, '/readyz answers 200 once n1 leads group 0');
  t.match(await ready?.json(), { status: 'ready', nodeId: 'n1', leader: 'n1' });
  const notReady = await fetch(`http://127.0.0.1:${loneHttp!}/readyz`);
  t.equal(notReady.status, 503, '/readyz answers 503 on a node without a leader');
  t.match(await notReady.json(), { status: 'not ready', reason: /no leader/ }, 'with the reason');
  t.equal((await fetch(`http://127.0.0.1:${loneHttp!}/livez`)).status, 200, '/livez answers 200 on it: the process serves');
  t.equal((await fetch(`http://127.0.0.1:${loneHttp!}/healthz`)).status, 200, '/healthz is kept');
  for (const path of ['/livez', '/readyz', '/healthz']) {
    const head = await fetch(`http://127.0.0.1:${httpPort!}${path}`, { method: 'HEAD' });
    t.equal(head.status, 200, `HEAD ${path} answers 200`);
    t.equal(head.headers.get('content-type'), 'application/json', `HEAD ${path} has the GET's headers`);
    t.equal((await head.arrayBuffer()).byteLength, 0, `HEAD ${path} has no body`);
  }
  const post = await fetch(`http://127.0.0.1:${httpPort!}/livez`, { method: 'POST' });
  t.equal(post.status, 405, 'another method on a known path is 405');
  t.match(post.headers.get('allow') ?? '', /GET, HEAD/, 'naming the allowed methods');

  // Read commands with --json; ping names the node.
  const [ping, pingJson, status, list, info, sessions] = await Promise.all([
    runDsync(t, ['ping', '--count', '2', '--seeds', seed]),
    runDsync(t, ['ping', '--count', '1', '--json', '--seeds', seed]),
    runDsync(t, ['status', '--json', '--seeds', seed]),
    runDsync(t, ['lock', 'list', '--json', '--seeds', seed]),
    runDsync(t, ['lock', 'info', 'jobs/a', '--json', '--seeds', seed]),
    runDsync(t, ['lock', 'sessions', '--json', '--seeds', seed]),
  ]);
  t.match(ping.stdout, new RegExp(`^pong from n1 \\(127\\.0\\.0\\.1:${port!}\\) in [\\d.]+ ms\\n`, 'm'), 'ping says which node answered');
  t.match(JSON.parse(pingJson.stdout) as unknown, { nodeId: 'n1', address: seed, roundTripsMs: [Number] }, 'ping --json');
  t.match(JSON.parse(status.stdout) as unknown, [{ nodeId: 'n1' }], 'status --json');
  t.same(JSON.parse(list.stdout), [], 'lock list --json');
  t.same(JSON.parse(info.stdout), [], 'lock info --json');
  t.ok(Array.isArray(JSON.parse(sessions.stdout)), 'lock sessions --json');

  // The wrong port says what it is.
  const [atHttp, atConsole, atHttpJson, consoleAtClient] = await Promise.all([
    runDsync(t, ['ping', '--seeds', `127.0.0.1:${httpPort!}`]),
    runDsync(t, ['status', '--seeds', `127.0.0.1:${consolePort!}`]),
    runDsync(t, ['lock', 'list', '--json', '--seeds', `127.0.0.1:${httpPort!}`]),
    runDsync(t, ['console', seed]),
  ]);
  t.equal(atHttp.code, 1, 'ping at the HTTP port fails');
  t.match(atHttp.stderr, `127.0.0.1:${httpPort!} is not a dsync client port; it answered like HTTP`, 'saying it answered like HTTP');
  t.notMatch(atHttp.stderr, /exceeds the limit/, 'not as an oversized frame');
  t.match(atConsole.stderr, `127.0.0.1:${consolePort!} is not a dsync client port; it is a dsync console port`, 'status at the console port says so');
  t.match(JSON.parse(atHttpJson.stderr) as unknown, { error: { code: 'UNAVAILABLE', message: /answered like HTTP/ } }, 'an error as JSON with --json');
  t.equal(consoleAtClient.code, 1, 'dsync console at a client port fails');
  t.match(consoleAtClient.stderr, `${seed} is not a dsync console port`, 'saying it is not a console');

  // Lock names: refused by the client library, and by the server when a client skips the check.
  const client = await Client.connect({ seeds: [seed] });
  t.teardown(() => client.close());
  await t.rejects(client.lock('a\nb'), { code: 'BAD_REQUEST', message: /control characters/ }, 'the client refuses a name with a newline');
  await t.rejects(client.lock(' \t'), { code: 'BAD_REQUEST', message: /only whitespace/ }, 'and a whitespace-only name');
  const raw = routerOf(client).request(0, Opcode.LockAcquire,
    schema.LockRequest.encode({ clientId: 'raw-client', seq: 1, lock: '\x1b[31mred', requestId: 'r1', exclusive: true }).finish(), { idempotent: true });
  await t.rejects(raw, { code: 'BAD_REQUEST', message: /control characters \(U\+001B/ }, 'the lock service refuses it too');

  // acquire --hold releases on the first SIGTERM; a waiting acquire gives up on the first SIGINT.
  const holder = spawnDsync(t, ['lock', 'acquire', 'jobs/held', '--hold', '60000', '--seeds', seed]);
  await holder.waitForStdout(/acquired jobs\/held \(exclusive\) fencing token \d+/);
  const waiter = spawnDsync(t, ['lock', 'acquire', 'jobs/held', '--seeds', seed]);
  for (let i = 0; i < pollAttemptsMax && ((await client.locks.info('jobs/held'))[0]?.waiters.length ?? 0) === 0; i++) await sleep(pollIntervalMs);
  t.equal((await client.locks.info('jobs/held'))[0]?.waiters.length, 1, 'a second acquire waits');
  waiter.signal('SIGINT');
  t.same(await waiter.exited, { code: 130, signal: null }, 'the waiting acquire exits 130 on the first SIGINT');
  holder.signal('SIGTERM');
  t.same(await holder.exited, { code: 0, signal: null }, 'the holder exits 0 on the first SIGTERM');
  t.match(holder.stdout, /released jobs\/held \(interrupted\)/, 'after releasing the lock');
  t.same((await client.locks.info('jobs/held')).flatMap((l) => [...l.holders, ...l.waiters]), [], 'nobody holds or waits for it any more');

  // The README's --wait example ends by itself when the lock is free.
  const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
  const example = /^npx dsync (lock acquire \S+ --wait 1000[^#\n]*?)\s+#/m.exec(readme)?.[1];
  t.ok(example !== undefined, 'the README has the --wait 1000 example');
  const run = await runDsync(t, [...(example ?? '').split(/\s+/), '--seeds', seed], { timeoutMs: 15_000 });
  t.same({ code: run.code, signal: run.signal }, { code: 0, signal: null }, `\`dsync ${example ?? ''}\` on a free lock exits 0 by itself\n${run.stderr}`);
  t.match(run.stdout, /acquired[\s\S]*released/, 'after taking and releasing the lock');

  // The console: line limit per line, never a fragment run, control characters escaped.
  const socket = connect({ host: '127.0.0.1', port: consolePort! });
  t.teardown(() => socket.destroy());
  const tap = new ConsoleTap(socket);
  await tap.until(/^dsync node n1 console\n[\s\S]*> $/);
  for (let i = 0; i < 64; i++) socket.write('x'.repeat(16 * 1024) + (i === 63 ? ' ping' : ''));
  socket.write('\nping\n');
  let text = await tap.until(/pong\n> $/);
  t.equal(text.match(/line longer than/g)?.length, 1, 'a 1 MB line sent in many chunks gets one error reply');
  t.notMatch(text, /unknown command/, 'and no fragment of it runs as a command');
  tap.text = '';
  socket.write(`${'y'.repeat(consoleLineBytesMax + 8)}\nping\n`);
  text = await tap.until(/pong\n> $/);
  t.match(text, /^error: line longer than 4096 bytes/, 'a line of limit + 8 bytes in one chunk is refused');
  t.notMatch(text, /unknown command/, 'not run');
  tap.text = '';
  socket.write('\x1b[31mred\x07\n');
  text = await tap.until(/unknown command[\s\S]*> $/);
  t.match(text, "unknown command '\\x1b[31mred\\x07'", 'an unknown command is echoed with its control characters escaped');
  t.notOk(text.includes('\x1b') || text.includes('\x07'), 'no raw control character comes back');
});
