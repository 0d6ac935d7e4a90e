// Configuration as users of .env files expect it (issue 12), through real
// processes: `dsync cluster` run in a directory with a .env passes it to its node,
// whose Raft groups run with the file's ELECTION_TIMEOUT_MIN/MAX while an exported
// HEARTBEAT_INTERVAL wins over the file's (read back from the node's `raft`
// console command); a malformed .env stops `dsync node` and `dsync cluster` with
// exit 2 naming the file and line; and settings that must agree are refused at
// start naming the setting. Ports come from this session's range (25000-25999).

import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { freePortBlock, runDsync, sleep, spawnDsync, tempDir } from './helpers/cluster.js';

const pollAttemptsMax = 100;
const pollIntervalMs = 100;

/** Sends one console command and returns the reply text (up to the next prompt). */
async function consoleCommand(port: number, line: string): Promise<string> {
  const socket = connect({ host: '127.0.0.1', port });
  socket.setEncoding('utf8');
  let text = '';
  socket.on('data', (s: string) => { text += s; });
  socket.on('error', () => {});
  try {
    for (let i = 0; i < pollAttemptsMax && !text.endsWith('> '); i++) await sleep(pollIntervalMs);
    const banner = text.length;
    socket.write(`${line}\n`);
    for (let i = 0; i < pollAttemptsMax && !(text.length > banner && text.endsWith('> ')); i++) await sleep(pollIntervalMs);
    return text.slice(banner);
  } finally {
    socket.destroy();
  }
}

t.test('dsync cluster reads ./.env; the environment wins over it', async (t) => {
  const cwd = tempDir(t);
  writeFileSync(join(cwd, '.env'), '# timing for every node\nDSYNC_ELECTION_TIMEOUT_MIN=200\nELECTION_TIMEOUT_MAX="400"\nHEARTBEAT_INTERVAL=40\n');
  const base = await freePortBlock(3);
  const cluster = spawnDsync(t, ['cluster', '--nodes', '1', '--base-port', String(base), '--http-base-port', String(base + 1),
    '--console-base-port', String(base + 2), '--data-dir', join(cwd, 'data')], { cwd, env: { HEARTBEAT_INTERVAL: '30' } });
  await cluster.waitForStdout(/1 node up/, 30_000);
  const raft = await consoleCommand(base + 2, 'raft');
  t.match(raft, /^timing: election timeout 200-400 ms, heartbeat 30 ms$/m, 'the node runs with the file\'s timeouts and the exported heartbeat');
});

t.test('a malformed env file or disagreeing settings stop the start, named', async (t) => {
  const cwd = tempDir(t);
  writeFileSync(join(cwd, '.env'), 'LOG_LEVEL=info\nthis is not a setting\n');
  writeFileSync(join(cwd, 'timing.env'), 'ELECTION_TIMEOUT_MIN=300\nELECTION_TIMEOUT_MAX=1500\n');
  const base = await freePortBlock(3);
  const ports = ['--port', String(base), '--http-port', String(base + 1), '--console-port', String(base + 2)];
  const [node, cluster, timing] = await Promise.all([
    runDsync(t, ['node', '--id', 'n1', ...ports, '--data-dir', join(cwd, 'n1')], { cwd }),
    runDsync(t, ['cluster', '--nodes', '1', '--base-port', String(base), '--data-dir', join(cwd, 'data')], { cwd }),
    runDsync(t, ['node', '--id', 'n1', ...ports, '--data-dir', join(cwd, 'n1'), '--env-file', 'timing.env'], { cwd }),
  ]);
  for (const [what, r] of [['dsync node', node], ['dsync cluster', cluster]] as const) {
    t.equal(r.code, 2, `${what} exits 2 on a malformed ./.env`);
    t.match(r.stderr, /--env-file: \.env:2: expected NAME=value, got "this is not a setting"/, `${what} names the file and line`);
  }
  t.notMatch(cluster.stdout, /node up/, 'the cluster starts no node');
  t.equal(timing.code, 2, 'an election timeout longer than the shortest session TTL exits 2');
  t.match(timing.stderr, /ELECTION_TIMEOUT_MAX: 1500 ms must be below 1000 ms, the shortest session TTL/, 'naming the setting and why');
});
