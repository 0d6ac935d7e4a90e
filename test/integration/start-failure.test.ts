// Checks that a node that cannot start does not linger half-started (issue 7,
// item 3), with real processes: a plain TCP listener occupies the binary port, then
// the HTTP port, of a `dsync node`, which must exit by itself, non-zero, with one
// stderr line naming the port and the flag; and `dsync cluster` with n2's port taken
// by a foreign listener must exit non-zero naming n2, instead of taking the foreign
// listener for its node.

import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { freeBasePort, freePorts, runDsync, tempDir } from './helpers/cluster.js';

/** A listener that is not a dsync node (it accepts and never answers), closed with its sockets at teardown. */
async function occupy(t: { teardown(fn: () => Promise<void>): void }, port: number): Promise<Server> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  t.teardown(() => new Promise((r) => {
    for (const socket of sockets) socket.destroy();
    server.close(() => r());
  }));
  return server;
}

for (const which of ['--port', '--http-port'] as const) {
  t.test(`dsync node exits non-zero naming ${which} when that port is taken`, async (t) => {
    const [port, httpPort, consolePort] = await freePorts(3);
    const taken = which === '--port' ? port! : httpPort!;
    await occupy(t, taken);
    const r = await runDsync(t, ['node', '--id', 'n1', '--host', '127.0.0.1', '--port', String(port), '--http-port', String(httpPort),
      '--console-port', String(consolePort), '--data-dir', join(tempDir(t), 'n1')], { timeoutMs: 10_000 });
    t.equal(r.signal, null, `it exits by itself, not killed at the timeout\n${r.stderr}`);
    t.not(r.code, 0, 'with a non-zero code');
    const lines = r.stderr.split('\n').filter((l) => l.length > 0);
    t.equal(lines.length, 1, `stderr is one line\n${r.stderr}`);
    t.match(lines[0] ?? '', new RegExp(`port ${taken} \\(${which}\\) is already in use`), 'naming the port and the flag');
    t.equal(r.stdout, '', 'and it never said it was listening');
  });
}

t.test('dsync cluster exits non-zero naming the node whose port a foreign listener holds', async (t) => {
  const base = await freeBasePort(3);
  await occupy(t, base + 1);
  const r = await runDsync(t, ['cluster', '--nodes', '3', '--base-port', String(base), '--data-dir', tempDir(t)], { timeoutMs: 15_000 });
  t.equal(r.signal, null, `the cluster command exits by itself\n${r.stderr}`);
  t.not(r.code, 0, 'non-zero');
  t.match(r.stderr, new RegExp(`node n2 did not start: .*port ${base + 1} \\(--port\\) is already in use`), `naming n2 and why\n${r.stderr}`);
  t.notMatch(r.stdout, /nodes up/, 'and it never printed the cluster banner');
});
