// GET /metrics on a real node (issue 13, metrics): Prometheus text with the node's
// Raft, WAL, connection and lock series, and requests counted by opcode and answer
// code with their latency. Checked against what the test did: one lock held by one
// client, a tryLock refused WOULD_BLOCK by another, appends that needed fsyncs.

import t from 'tap';
import { request } from 'node:http';
import { Client } from '../../client/index.js';
import { freePorts, tempDir, TestNode } from './helpers/cluster.js';

function get(port: number, path: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (s: string) => { body += s; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The value of the first sample of `name` whose labels include every `labels` pair. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | null {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const have = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => have.includes(`${k}="${v}"`))) return Number(m[3]);
  }
  return null;
}

t.test('/metrics reflects what happened on the node', async (t) => {
  const [port, httpPort, consolePort] = await freePorts(3);
  const node = new TestNode(t, { id: 'n1', port: port!, httpPort: httpPort!, consolePort: consolePort!, dataDir: tempDir(t), peers: [] });
  await node.start();
  const a = await Client.connect({ seeds: [node.address] });
  const b = await Client.connect({ seeds: [node.address] });
  t.teardown(async () => { await a.close(); await b.close(); });
  const held = await a.lock('m/one');
  t.equal(await b.tryLock('m/one'), null, 'the second client is refused');

  const r = await get(httpPort!, '/metrics');
  t.equal(r.status, 200);
  t.match(r.type, /text\/plain/, 'Prometheus text format');
  const lines = r.body.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
  t.ok(lines.every((l) => /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? -?[0-9.e+Inf-]+$/.test(l)), 'every sample line is well formed');
  t.ok((sample(r.body, 'dsync_raft_term', { group: '0', node: 'n1' }) ?? 0) >= 1, 'group 0 has a term');
  t.equal(sample(r.body, 'dsync_raft_is_leader', { group: '0' }), 1, 'and this node leads it');
  t.ok((sample(r.body, 'dsync_raft_applied_index', { group: '0' }) ?? 0) >= 3, 'applied the session and lock entries');
  t.ok((sample(r.body, 'dsync_wal_fsyncs_total') ?? 0) >= 1, 'the WAL fsynced');
  t.ok((sample(r.body, 'dsync_wal_bytes_total') ?? 0) > 0, 'and wrote bytes');
  t.equal(sample(r.body, 'dsync_locks_held', { mode: 'exclusive' }), 1, 'one exclusive lock held');
  t.equal(sample(r.body, 'dsync_lock_sessions'), 2, 'two sessions open');
  t.ok((sample(r.body, 'dsync_requests_total', { opcode: 'LockAcquire', code: 'OK' }) ?? 0) >= 1, 'the grant counted as LockAcquire OK');
  t.ok((sample(r.body, 'dsync_requests_total', { opcode: 'LockAcquire', code: 'WOULD_BLOCK' }) ?? 0) >= 1, 'the refusal as WOULD_BLOCK');
  t.ok((sample(r.body, 'dsync_request_duration_seconds_count', { opcode: 'LockAcquire' }) ?? 0) >= 2, 'both timed');
  t.ok((sample(r.body, 'dsync_connections', { role: 'client' }) ?? 0) >= 2, 'client connections counted');

  await held.release();
  const after = await get(httpPort!, '/metrics');
  t.equal(sample(after.body, 'dsync_locks_held', { mode: 'exclusive' }), 0, 'after release no lock is held');
  await node.stop();
});
