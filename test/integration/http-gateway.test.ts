// The HTTP gateway (/v1 on the HTTP port) against one live 3-node cluster started with a
// token file (admin, read-write, read-only, peer) and a per-connection request rate, shared
// by every subtest to keep the run short. Every route is called at least once, and every
// 200 answer is checked against the route's declared reply (the same declaration the spec
// test binds to docs/api.yaml: no field more, none missing). Also: the errors the brief
// names (bad JSON, wrong types, missing and unknown fields, oversized bodies by
// Content-Length and chunked, unknown routes, wrong method), auth (no token, wrong token,
// read-only writing, non-admin force-release), NOT_LEADER with the leader's address, 409
// deadlock / timeout / would-block, session expiry, redelivery on an ack deadline and on
// deleting a consumer, a waiting acquire withdrawn when its caller hangs up, 429 over the
// request rate, and that gateway requests land in the same request metrics as the binary
// port's.

import t from 'tap';
import * as fs from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect as netConnect } from 'node:net';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { keyHash, partitionOfKey } from '../../client/queues/queues.js';
import { httpBodyBytesMax } from '../../core/constants.js';
import { type GatewayRoute, gatewayRoutes } from '../../server/node/gateway.js';
import { validate } from '../../server/node/gateway-fields.js';
import { freePorts, sleep, tempDir, TestNode } from './helpers/cluster.js';

const tokens = {
  admin: 'gw-admin-token-0123456789',
  rw: 'gw-readwrite-token-0123456789',
  ro: 'gw-readonly-token-0123456789',
  peer: 'gw-peer-token-0123456789abc',
};
/** Requests/s per connection: each call below opens its own connection, so only the pipelined burst meets it. */
const requestRate = 50;

const routes = gatewayRoutes();
function routeOf(method: string, urlPath: string): GatewayRoute | undefined {
  const parts = urlPath.split('?')[0]!.split('/');
  return routes.find((r) => r.method === method && r.path.split('/').length === parts.length
    && r.path.split('/').every((seg, i) => seg.startsWith('{') || seg === parts[i]));
}

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
  readonly json: Record<string, unknown>;
}

/** Answer of an error: its code, message and hints. */
function err(a: Answer): { code: string; message: string; leaderId?: string; leaderAddress?: string } {
  return a.json['error'] as { code: string; message: string };
}

/** One HTTP exchange (node:http, a fresh connection each time unless told). */
function http(port: number, method: string, urlPath: string, opts: { body?: unknown; raw?: string | Buffer; token?: string | null;
  headers?: Record<string, string>; signal?: AbortSignal } = {}): Promise<Answer> {
  const token = opts.token === undefined ? tokens.admin : opts.token;
  const payload = opts.raw !== undefined ? Buffer.from(opts.raw) : opts.body !== undefined ? Buffer.from(JSON.stringify(opts.body)) : null;
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path: urlPath, agent: false, ...(opts.signal === undefined ? {} : { signal: opts.signal }),
      headers: { ...(token === null ? {} : { authorization: `Bearer ${token}` }), ...(payload === null ? {} : { 'content-type': 'application/json',
        'content-length': String(payload.length) }), ...opts.headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: Record<string, unknown> = {};
        try {
          json = text === '' ? {} : JSON.parse(text) as Record<string, unknown>;
        } catch {
          json = {};
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    req.end(payload ?? undefined);
  });
}

t.test('HTTP gateway on a live 3-node cluster', async (t) => {
  const dir = tempDir(t, 'dsync-gw-');
  const authFile = path.join(dir, 'tokens');
  fs.writeFileSync(authFile, `admin ops ${tokens.admin}\nread-write app ${tokens.rw}\nread-only viewer ${tokens.ro}\npeer nodes ${tokens.peer}\n`, { mode: 0o600 });
  // TestCluster waits with an unauthenticated ping, so the nodes are started here and awaited by their output.
  const ports = await freePorts(9);
  const ids = ['n1', 'n2', 'n3'];
  const cluster = { nodes: ids.map((id, i) => new TestNode(t, {
    id, port: ports[i]!, httpPort: ports[3 + i]!, consolePort: ports[6 + i]!, dataDir: path.join(dir, id),
    peers: ids.flatMap((pid, j) => (j === i ? [] : [`${pid}@127.0.0.1:${ports[j]!}`])),
  }, ['--auth-file', authFile, '--request-rate', String(requestRate)])) };
  for (const nd of cluster.nodes) await nd.start(false);
  t.teardown(() => Promise.all(cluster.nodes.map((nd) => nd.stop())).then(() => {}));
  await Promise.all(cluster.nodes.map((nd) => nd.proc!.waitForStdout(/listening on/)));
  const byId = new Map(cluster.nodes.map((nd) => [nd.spec.id, nd]));
  const portOf = (nd: TestNode): number => nd.spec.httpPort;
  const any = portOf(cluster.nodes[0]!);

  /** Calls a route and, when it answers 200, checks the reply against the route's declaration. */
  const call = async (port: number, method: string, urlPath: string, opts: Parameters<typeof http>[3] = {}): Promise<Answer> => {
    const a = await http(port, method, urlPath, opts);
    if (a.status === 200) {
      const route = routeOf(method, urlPath);
      if (route === undefined) throw new Error(`no route for ${method} ${urlPath}`);
      validate(route.reply, a.json, `reply of ${method} ${route.path}`);
    }
    return a;
  };
  const covered = new Set<string>();
  const ok = async (port: number, method: string, urlPath: string, opts: Parameters<typeof http>[3] = {}): Promise<Record<string, unknown>> => {
    const a = await call(port, method, urlPath, opts);
    if (a.status !== 200) throw new Error(`${method} ${urlPath}: ${a.status} ${a.text}`);
    const route = routeOf(method, urlPath);
    if (route !== undefined) covered.add(`${route.method} ${route.path}`);
    return a.json;
  };

  /** ok(), retrying while the answer is 503 (no leader yet, a change in progress), for up to 5 s. */
  const okEventually = async (port: number, method: string, urlPath: string, opts: Parameters<typeof http>[3] = {}): Promise<Record<string, unknown>> => {
    let a = await call(port, method, urlPath, opts);
    for (let i = 0; i < 50 && a.status === 503; i++) {
      await sleep(100);
      a = await call(port, method, urlPath, opts);
    }
    if (a.status !== 200) throw new Error(`${method} ${urlPath}: ${a.status} ${a.text}`);
    const route = routeOf(method, urlPath);
    if (route !== undefined) covered.add(`${route.method} ${route.path}`);
    return a.json;
  };

  // Group 0's leader (every node's view agrees once elected).
  let leader: TestNode | undefined;
  for (let i = 0; i < 100 && leader === undefined; i++) {
    const st = await call(any, 'GET', '/v1/cluster/status');
    const id = st.status === 200 ? String(st.json['leaderId']) : '';
    leader = byId.get(id);
    if (leader === undefined) await sleep(100);
  }
  if (leader === undefined) throw new Error('no leader elected');
  const lead = portOf(leader);
  const follower = cluster.nodes.find((nd) => nd !== leader)!;

  t.test('the spec is served and lists every route', async (t) => {
    const a = await http(any, 'GET', '/openapi.yaml', { token: null });
    t.equal(a.status, 200, 'no token needed');
    t.match(String(a.headers['content-type']), /yaml/);
    const doc = parseYaml(a.text) as { paths: Record<string, Record<string, unknown>> };
    const served = Object.entries(doc.paths).flatMap(([p, item]) => Object.keys(item).map((m) => `${m.toUpperCase()} ${p}`)).sort();
    t.same(served, routes.map((r) => `${r.method} ${r.path}`).sort(), 'the served spec has exactly the routes');
  });

  t.test('cluster: status, members, ring, join and remove, NOT_LEADER', async (t) => {
    const st = await ok(any, 'GET', '/v1/cluster/status');
    t.equal((st['members'] as unknown[]).length, 3, 'three members');
    const members = await ok(lead, 'GET', '/v1/cluster/members');
    t.equal(members['leaderId'], leader!.spec.id);
    // Right after an election a follower may not have heard the new leader yet: it answers
    // UNAVAILABLE ("no leader is known right now; retry shortly") until it has, as a client would see.
    let nl = await call(portOf(follower), 'GET', '/v1/cluster/members');
    for (let tries = 0; tries < 50 && nl.status === 503 && err(nl).code === 'UNAVAILABLE'; tries++) {
      await sleep(100);
      nl = await call(portOf(follower), 'GET', '/v1/cluster/members');
    }
    t.equal(nl.status, 503, 'a follower answers 503');
    t.equal(err(nl).code, 'NOT_LEADER');
    t.equal(err(nl).leaderId, leader!.spec.id, 'naming the leader');
    t.equal(err(nl).leaderAddress, leader!.address, 'and its address');
    const ring = await ok(any, 'GET', '/v1/cluster/ring');
    t.equal((ring['members'] as { id: string }[]).map((m) => m.id).sort().join(','), 'n1,n2,n3');
    const join = { id: 'n9', address: '127.0.0.1:1', peerAddress: '127.0.0.1:1' };
    t.equal((await call(lead, 'POST', '/v1/cluster/members', { body: join, token: tokens.rw })).status, 403, 'read-write may not join a member');
    const joined = await ok(lead, 'POST', '/v1/cluster/members', { body: join });
    t.ok((joined['learners'] as string[]).includes('n9'), 'n9 joined as a learner');
    // The join's configuration change must commit before the next one is taken (503 UNAVAILABLE meanwhile).
    const removed = await okEventually(lead, 'DELETE', '/v1/cluster/members/n9');
    t.notOk((removed['members'] as { id: string }[]).some((m) => m.id === 'n9'), 'n9 removed');
  });

  t.test('locks: sessions, acquire, release, info, list, downgrade, force-release, errors', async (t) => {
    const rw = { token: tokens.rw };
    const s1 = Number((await ok(lead, 'POST', '/v1/sessions', { ...rw, body: { ttlMs: 5000 } }))['session']);
    const s2 = Number((await ok(lead, 'POST', '/v1/sessions', { ...rw, body: {} }))['session']);
    t.ok(s1 > 0 && s2 > 0 && s1 !== s2, 'two sessions');
    const name = encodeURIComponent('gw/jobs');
    const g = await ok(lead, 'POST', `/v1/locks/${name}/acquire`, { ...rw, body: { session: s1 } });
    t.ok(Number(g['token']) > 0, `fencing token ${String(g['token'])}`);
    t.equal(g['mode'], 'exclusive');
    const info = await ok(lead, 'GET', `/v1/locks/${name}`, rw);
    t.equal((info['holders'] as { session: number }[])[0]?.session, s1, 'info names the holder');
    t.ok(((await ok(lead, 'GET', '/v1/locks', rw))['locks'] as { name: string }[]).some((l) => l.name === 'gw/jobs'), 'list has it');
    t.ok(((await ok(lead, 'GET', '/v1/sessions', rw))['sessions'] as { session: number }[]).some((x) => x.session === s1), 'sessions has s1');
    await ok(lead, 'POST', `/v1/sessions/${s1}/keepalive`, rw);

    const busy = await call(lead, 'POST', `/v1/locks/${name}/acquire`, { ...rw, body: { session: s2, wait: false } });
    t.equal(busy.status, 409);
    t.equal(err(busy).code, 'WOULD_BLOCK');
    const timedOut = await call(lead, 'POST', `/v1/locks/${name}/acquire`, { ...rw, body: { session: s2, waitMs: 200 } });
    t.equal(timedOut.status, 409);
    t.equal(err(timedOut).code, 'LOCK_TIMEOUT');

    // Deadlock: s1 holds A, s2 holds B; s1 waits for B; s2 asking for A closes the cycle.
    const b = encodeURIComponent('gw/b');
    await ok(lead, 'POST', `/v1/locks/${b}/acquire`, { ...rw, body: { session: s2 } });
    const s1WaitsForB = call(lead, 'POST', `/v1/locks/${b}/acquire`, { ...rw, body: { session: s1, waitMs: 10_000 } });
    for (let i = 0; i < 50; i++) {
      const w = await ok(lead, 'GET', `/v1/locks/${b}`, rw);
      if ((w['waiters'] as unknown[]).length > 0) break;
      await sleep(20);
    }
    const dl = await call(lead, 'POST', `/v1/locks/${name}/acquire`, { ...rw, body: { session: s2, waitMs: 10_000 } });
    t.equal(dl.status, 409, 'deadlock is 409');
    t.equal(err(dl).code, 'DEADLOCK');
    await ok(lead, 'POST', `/v1/locks/${b}/release`, { ...rw, body: { session: s2 } });
    const granted = await s1WaitsForB;
    t.equal(granted.status, 200, 's1 got B once s2 released it');

    const down = await ok(lead, 'POST', `/v1/locks/${b}/downgrade`, { ...rw, body: { session: s1 } });
    t.equal(down['mode'], 'shared', 'downgraded');
    const rel = await ok(lead, 'POST', `/v1/locks/${b}/release`, { ...rw, body: { session: s1 } });
    t.equal(rel['count'], 0, 'released');
    const notHeld = await call(lead, 'POST', `/v1/locks/${b}/release`, { ...rw, body: { session: s1 } });
    t.equal(notHeld.status, 404);
    t.equal(err(notHeld).code, 'NOT_FOUND');

    // A waiting acquire whose caller hangs up is withdrawn.
    const gone = new AbortController();
    const abandoned = http(lead, 'POST', `/v1/locks/${name}/acquire`, { ...rw, body: { session: s2 }, signal: gone.signal }).catch((e: unknown) => e);
    for (let i = 0; i < 50; i++) {
      if (((await ok(lead, 'GET', `/v1/locks/${name}`, rw))['waiters'] as unknown[]).length > 0) break;
      await sleep(20);
    }
    gone.abort();
    await abandoned;
    let waiters = 1;
    for (let i = 0; i < 100 && waiters > 0; i++) {
      waiters = ((await ok(lead, 'GET', `/v1/locks/${name}`, rw))['waiters'] as unknown[]).length;
      if (waiters > 0) await sleep(20);
    }
    t.equal(waiters, 0, 'the abandoned wait was withdrawn');

    const forbidden = await call(lead, 'POST', `/v1/locks/${name}/force-release`, { ...rw, body: {} });
    t.equal(forbidden.status, 403, 'read-write may not force-release');
    t.equal(err(forbidden).code, 'FORBIDDEN');
    t.equal((await call(lead, 'POST', `/v1/locks/${name}/force-release`, { token: null })).status, 401, 'nor may a caller without a token');
    await ok(lead, 'POST', `/v1/locks/${name}/force-release`, {});
    t.equal(((await ok(lead, 'GET', `/v1/locks/${name}`, rw))['holders'] as unknown[]).length, 0, 'force-released');
    t.equal(err(await call(lead, 'POST', `/v1/locks/${name}/release`, { ...rw, body: { session: s1 } })).code, 'NOT_FOUND',
      'the holder learns it at its next call');

    const nl = await call(portOf(follower), 'POST', `/v1/locks/${name}/acquire`, { ...rw, body: { session: s1 } });
    t.equal(nl.status, 503);
    t.equal(err(nl).code, 'NOT_LEADER');
    t.equal(err(nl).leaderAddress, leader!.address, 'a follower names the leader\'s address');

    await ok(lead, 'DELETE', `/v1/sessions/${s2}`, rw);
    // A session not kept alive expires with its locks.
    const short = Number((await ok(lead, 'POST', '/v1/sessions', { ...rw, body: { ttlMs: 1000 } }))['session']);
    await ok(lead, 'POST', `/v1/locks/${encodeURIComponent('gw/short')}/acquire`, { ...rw, body: { session: short } });
    let expired: Answer | null = null;
    for (let i = 0; i < 40; i++) {
      await sleep(100);
      const info2 = await ok(lead, 'GET', `/v1/locks/${encodeURIComponent('gw/short')}`, rw);
      if ((info2['holders'] as unknown[]).length === 0) {
        expired = await call(lead, 'POST', `/v1/sessions/${short}/keepalive`, rw);
        break;
      }
    }
    t.equal(expired?.status, 410, 'an expired session answers 410');
    t.equal(expired === null ? '' : err(expired).code, 'SESSION_EXPIRED');
    await ok(lead, 'DELETE', `/v1/sessions/${s1}`, rw);
  });

  t.test('queues: topics, publish, consumers, fetch, ack, nack, extend, redelivery', async (t) => {
    const rw = { token: tokens.rw };
    t.equal((await call(lead, 'POST', '/v1/topics', { ...rw, body: { name: 'gw-orders' } })).status, 403, 'read-write may not create topics');
    const created = await ok(lead, 'POST', '/v1/topics', { body: { name: 'gw-orders', partitions: 2, replicas: 3, ackDeadlineMs: 1000 } });
    t.equal(created['partitions'], 2);
    const dup = await call(lead, 'POST', '/v1/topics', { body: { name: 'gw-orders' } });
    t.equal(dup.status, 409);
    t.equal(err(dup).code, 'ALREADY_EXISTS');
    t.ok(((await ok(lead, 'GET', '/v1/topics', rw))['topics'] as { name: string }[]).some((x) => x.name === 'gw-orders.dlq'), 'list has the dlq');
    const missing = await call(lead, 'GET', '/v1/topics/nope', rw);
    t.equal(missing.status, 404, 'unknown topic 404');

    // Wait until the key's partition is led by its preferred (first) replica, where leadership
    // settles (a leader hands the partition over once that replica caught up), then work there.
    const key = 'user-7';
    const p = partitionOfKey(await keyHash(), key, 2);
    let pLeader: TestNode | undefined;
    for (let i = 0; i < 100 && pLeader === undefined; i++) {
      const info = await ok(lead, 'GET', '/v1/topics/gw-orders', rw);
      const part = (info['partitionList'] as { index: number; leaderId: string; replicas: string[] }[])[p];
      const candidate = part?.leaderId === part?.replicas[0] ? byId.get(part?.leaderId ?? '') : undefined;
      if (candidate !== undefined) {
        const pub = await call(portOf(candidate), 'POST', '/v1/topics/gw-orders/publish', { ...rw, body: { key, value: 'probe' } });
        if (pub.status !== 200 && i % 20 === 19) t.comment(`publish at ${candidate.spec.id}: ${pub.status} ${pub.text}`);
        if (pub.status === 200) {
          pLeader = candidate;
          t.equal(pub.json['partition'], p, 'the key went to its partition (the client library\'s function)');
          break;
        }
      }
      await sleep(100);
    }
    if (pLeader === undefined) throw new Error(`partition ${p} has no leader`);
    const pl = portOf(pLeader);
    const notPl = cluster.nodes.find((nd) => nd !== pLeader)!;
    const nl = await call(portOf(notPl), 'POST', '/v1/topics/gw-orders/publish', { ...rw, body: { value: 'x', partition: p } });
    t.equal(nl.status, 503, 'another node answers 503 for the partition');
    t.match(err(nl).code, /NOT_LEADER|UNAVAILABLE/);

    const c = await ok(pl, 'POST', '/v1/topics/gw-orders/consumers', { ...rw, body: { group: 'billing', ttlMs: 20_000 } });
    const cid = encodeURIComponent(String(c['consumer']));
    const base = `/v1/topics/gw-orders/consumers/${cid}`;
    const f1 = await ok(pl, 'POST', `${base}/fetch`, { ...rw, body: { partition: p, max: 10, waitMs: 2000 } });
    const m1 = (f1['messages'] as { delivery: number; attempt: number; value: string }[])[0]!;
    t.equal(m1.value, 'probe', 'fetched what was published');
    const acked = await ok(pl, 'POST', `${base}/ack`, { ...rw, body: { partition: p, items: [{ delivery: m1.delivery, attempt: m1.attempt }] } });
    t.same(acked['statuses'], [{ code: '', message: '', atMs: 0 }], 'acked');

    await ok(pl, 'POST', '/v1/topics/gw-orders/publish', { ...rw, body: { key, value: Buffer.from('héllo').toString('base64'), encoding: 'base64', headers: { kind: 'aGk=' } } });
    const f2 = await ok(pl, 'POST', `${base}/fetch`, { ...rw, body: { partition: p, waitMs: 2000 } });
    const m2 = (f2['messages'] as { delivery: number; attempt: number; value: string; headers: Record<string, string> }[])[0]!;
    t.equal(m2.value, 'héllo', 'base64 in, UTF-8 out');
    t.same(m2.headers, { kind: 'hi' });
    const ext = await ok(pl, 'POST', `${base}/extend`, { ...rw, body: { partition: p, items: [{ delivery: m2.delivery, attempt: m2.attempt }] } });
    t.equal((ext['statuses'] as { code: string }[])[0]?.code, '', 'extended');
    const nack = await ok(pl, 'POST', `${base}/nack`, { ...rw, body: { partition: p, items: [{ delivery: m2.delivery, attempt: m2.attempt, delayMs: 0 }] } });
    t.equal((nack['statuses'] as { code: string }[])[0]?.code, '', 'nacked');
    const f3 = await ok(pl, 'POST', `${base}/fetch`, { ...rw, body: { partition: p, waitMs: 2000 } });
    const m3 = (f3['messages'] as { delivery: number; attempt: number }[])[0]!;
    t.equal(m3.delivery, m2.delivery, 'the nacked delivery came back');
    t.equal(m3.attempt, m2.attempt + 1, 'as the next attempt');
    const late = await ok(pl, 'POST', `${base}/ack`, { ...rw, body: { partition: p, items: [{ delivery: m2.delivery, attempt: m2.attempt }] } });
    t.equal((late['statuses'] as { code: string }[])[0]?.code, 'LATE_ACK', 'an ack of the old attempt is LATE_ACK');
    // Not acked within the 1 s deadline: delivered again, across separate fetch requests.
    const f4 = await ok(pl, 'POST', `${base}/fetch`, { ...rw, body: { partition: p, waitMs: 3000, ackDeadlineMs: 30_000 } });
    const m4 = (f4['messages'] as { delivery: number; attempt: number }[])[0];
    t.equal(m4?.delivery, m2.delivery, 'redelivered after its ack deadline');
    t.equal(m4?.attempt, m3.attempt + 1);
    // Deleting the consumer hands its delivery back at once (no deadline wait).
    await ok(pl, 'POST', `${base}/keepalive`, rw);
    await ok(pl, 'DELETE', base, rw);
    t.equal((await call(pl, 'POST', `${base}/fetch`, { ...rw, body: { partition: p } })).status, 404, 'a deleted consumer is unknown');
    const c2 = await ok(pl, 'POST', '/v1/topics/gw-orders/consumers', { ...rw, body: { group: 'billing' } });
    const started = Date.now();
    const f5 = await ok(pl, 'POST', `/v1/topics/gw-orders/consumers/${encodeURIComponent(String(c2['consumer']))}/fetch`,
      { ...rw, body: { partition: p, waitMs: 3000, ackDeadlineMs: 30_000 } });
    const m5 = (f5['messages'] as { delivery: number; attempt: number }[])[0];
    t.equal(m5?.delivery, m2.delivery, 'the other consumer gets it');
    t.ok(Date.now() - started < 10_000, `without waiting for its 30 s deadline (${Date.now() - started} ms)`);
    t.equal((await call(pl, 'POST', '/v1/topics/gw-orders/consumers', { token: tokens.ro, body: { group: 'billing' } })).status, 403,
      'read-only may not make a consumer');

    // Replay: the group's cursor back to offset 0, so the first message comes again.
    const replayed = await ok(pl, 'POST', '/v1/topics/gw-orders/groups/billing/replay', { ...rw, body: { partition: p, offset: 0 } });
    t.equal(replayed['offset'], 0, 'cursor at offset 0');
    const both = await call(pl, 'POST', '/v1/topics/gw-orders/groups/billing/replay', { ...rw, body: { partition: p, offset: 0, timestampMs: 1 } });
    t.equal(both.status, 400, 'offset and timestampMs together: 400');
    const f6 = await ok(pl, 'POST', `/v1/topics/gw-orders/consumers/${encodeURIComponent(String(c2['consumer']))}/fetch`,
      { ...rw, body: { partition: p, waitMs: 3000, max: 10 } });
    t.ok((f6['messages'] as { value: string }[]).some((m) => m.value === 'probe'), 'the acked first message is delivered again');

    const deleted = await ok(lead, 'DELETE', '/v1/topics/gw-orders', {});
    t.same((deleted['topics'] as { name: string }[]).map((x) => x.name).sort(), ['gw-orders', 'gw-orders.dlq'], 'topic and dlq deleted');
  });

  t.test('cache: set, get, delete, stats, flush', async (t) => {
    const rw = { token: tokens.rw };
    const k = encodeURIComponent('user:42');
    await ok(any, 'PUT', `/v1/cache/keys/${k}`, { ...rw, body: { value: '{"name":"ada"}', ttlMs: 60_000 } });
    const got = await ok(portOf(follower), 'GET', `/v1/cache/keys/${k}`, rw);
    t.equal(got['value'], '{"name":"ada"}', 'read back at another node');
    t.equal((await ok(any, 'GET', `/v1/cache/keys/${k}?encoding=base64`, rw))['value'], Buffer.from('{"name":"ada"}').toString('base64'));
    await ok(any, 'DELETE', `/v1/cache/keys/${k}`, rw);
    const miss = await call(portOf(follower), 'GET', `/v1/cache/keys/${k}`, rw);
    t.equal(miss.status, 404, 'a deleted key is 404');
    t.equal(err(miss).code, 'NOT_FOUND');
    const stats = await ok(any, 'GET', '/v1/cache/stats', { token: tokens.ro });
    t.equal(stats['nodeId'], cluster.nodes[0]!.spec.id);
    await ok(any, 'POST', '/v1/cache/flush', { ...rw, body: {} });
    const roSet = await call(any, 'PUT', `/v1/cache/keys/${k}`, { token: tokens.ro, body: { value: 'x' } });
    t.equal(roSet.status, 403, 'read-only may not write');
    t.equal(err(roSet).code, 'FORBIDDEN');
  });

  t.test('bad input: JSON, types, fields, sizes, routes, methods, auth', async (t) => {
    const bad = async (a: Promise<Answer>, status: number, code: string, message: RegExp, what: string): Promise<void> => {
      const r = await a;
      t.equal(r.status, status, `${what}: ${status}`);
      t.equal(err(r)?.code, code, `${what}: ${code}`);
      t.match(err(r)?.message ?? '', message, `${what}: says what was wrong`);
    };
    await bad(http(lead, 'POST', '/v1/sessions', { raw: '{"ttlMs": 5000' }), 400, 'BAD_REQUEST', /not valid JSON/, 'bad JSON');
    await bad(http(lead, 'POST', '/v1/sessions', { body: { ttlMs: 'soon' } }), 400, 'BAD_REQUEST', /body\.ttlMs must be an integer \(got string\)/, 'wrong type');
    await bad(http(lead, 'POST', '/v1/sessions', { body: { ttlMs: 5 } }), 400, 'BAD_REQUEST', /body\.ttlMs must be at least 1000/, 'out of range');
    await bad(http(lead, 'POST', '/v1/locks/x/acquire', { body: {} }), 400, 'BAD_REQUEST', /body\.session is required/, 'missing field');
    await bad(http(lead, 'POST', '/v1/locks/x/acquire', { body: { session: 1, sesion: 2 } }), 400, 'BAD_REQUEST', /body\.sesion is not a field/, 'unknown field');
    await bad(http(lead, 'POST', '/v1/locks/x/acquire', { body: [1] }), 400, 'BAD_REQUEST', /body must be an object \(got array\)/, 'not an object');
    await bad(http(lead, 'DELETE', '/v1/sessions/abc'), 400, 'BAD_REQUEST', /path parameter session must be an integer/, 'bad path parameter');
    await bad(http(lead, 'GET', '/v1/cache/keys/a?colour=red'), 400, 'BAD_REQUEST', /query parameter colour is not known/, 'unknown query parameter');
    await bad(http(lead, 'GET', '/v1/locks', { raw: '{}' }), 400, 'BAD_REQUEST', /takes no body/, 'a body where none is taken');
    await bad(http(lead, 'GET', '/v1/locks/%E0%A4%A'), 400, 'BAD_REQUEST', /percent-encoding/, 'bad percent-encoding');
    await bad(http(lead, 'PUT', '/v1/cache/keys/k', { body: { value: '***', encoding: 'base64' } }), 400, 'BAD_REQUEST', /not base64/, 'bad base64');
    await bad(http(lead, 'GET', '/v1/nothing/here'), 404, 'NOT_FOUND', /no route GET \/v1\/nothing\/here/, 'unknown route');
    const wrong = await http(lead, 'PATCH', '/v1/sessions');
    t.equal(wrong.status, 405, 'wrong method: 405');
    t.equal(wrong.headers['allow'], 'POST, GET, HEAD', 'with Allow');
    const head = await http(lead, 'HEAD', '/v1/cluster/status');
    t.equal(head.status, 200, 'HEAD on a GET route');

    // Oversized: refused from Content-Length, before the body is read.
    const big = await new Promise<number>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: lead, method: 'PUT', path: '/v1/cache/keys/big', agent: false,
        headers: { authorization: `Bearer ${tokens.admin}`, 'content-length': String(httpBodyBytesMax + 1) } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.write('{"value":"');
      // The rest is never sent: the answer must come from the header alone.
    });
    t.equal(big, 413, 'a Content-Length over the limit is 413 without reading the body');
    // Oversized and chunked (no Content-Length): cut off once past the limit.
    const chunked = await new Promise<{ status: number; code: string }>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: lead, method: 'PUT', path: '/v1/cache/keys/big', agent: false,
        headers: { authorization: `Bearer ${tokens.admin}`, 'transfer-encoding': 'chunked' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, code: (JSON.parse(Buffer.concat(chunks).toString()) as { error: { code: string } }).error.code }));
      });
      req.on('error', () => { /* the server may close before we finish writing */ });
      const chunk = Buffer.alloc(256 * 1024, 'a');
      let sent = 0;
      const pump = (): void => {
        while (sent <= httpBodyBytesMax + chunk.length && !req.destroyed) {
          sent += chunk.length;
          if (!req.write(chunk)) { req.once('drain', pump); return; }
        }
      };
      pump();
      setTimeout(() => reject(new Error('no answer to an oversized chunked body')), 10_000).unref();
    });
    t.equal(chunked.status, 413, 'a chunked body over the limit is 413');
    t.equal(chunked.code, 'FRAME_TOO_LARGE');
    // The whole oversized body in one burst, then a second request on the same connection. The node
    // answers 413 and reads the rest of the body before closing (it must not close with the caller's
    // bytes unread: the kernel would reset the connection, which can drop the 413 in flight), so a
    // caller that sent its body in time keeps its connection, and the next request is answered.
    const burst = await new Promise<string>((resolve, reject) => {
      const socket = netConnect({ host: '127.0.0.1', port: lead });
      let out = '';
      socket.setEncoding('utf8');
      socket.on('data', (s: string) => {
        out += s;
        if ((out.match(/HTTP\/1\.1 /g) ?? []).length >= 2 && /\}\s*$/.test(out)) { socket.destroy(); resolve(out); }
      });
      socket.on('close', () => resolve(out));
      socket.on('error', () => resolve(out));
      const size = httpBodyBytesMax * 2;
      const head = `PUT /v1/cache/keys/big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tokens.admin}\r\nTransfer-Encoding: chunked\r\n\r\n`;
      const next = `GET /v1/cluster/ring HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tokens.ro}\r\n\r\n`;
      socket.write(Buffer.concat([Buffer.from(`${head}${size.toString(16)}\r\n`), Buffer.alloc(size, 'a'), Buffer.from(`\r\n0\r\n\r\n${next}`)]));
      setTimeout(() => { socket.destroy(); reject(new Error(`no answers after a burst body; got ${JSON.stringify(out.slice(0, 300))}`)); }, 10_000).unref();
    });
    t.same([...burst.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1])), [413, 200], 'the burst body gets its 413, and the next request on the connection its answer');
    t.match(burst, /"code":"FRAME_TOO_LARGE"/);

    await bad(http(lead, 'GET', '/v1/locks', { token: null }), 401, 'UNAUTHORIZED', /requires a token/, 'no token');
    await bad(http(lead, 'GET', '/v1/locks', { token: 'not-a-valid-token-at-all' }), 401, 'UNAUTHORIZED', /not valid/, 'wrong token');
    await bad(http(lead, 'GET', '/v1/locks', { headers: { authorization: 'Basic abc' }, token: null }), 401, 'UNAUTHORIZED', /Bearer/, 'not a bearer token');
    t.equal((await call(lead, 'GET', '/v1/locks', { token: tokens.ro })).status, 200, 'read-only may read');
    await bad(http(lead, 'POST', '/v1/sessions', { token: tokens.ro, body: {} }), 403, 'FORBIDDEN', /read-only.*needs write access/, 'read-only writing');
  });

  t.test('over the request rate: 429 with Retry-After', async (t) => {
    // Pipelined requests on one connection: the node answers them in order, past its burst with 429.
    const count = requestRate * 8;
    const text = await new Promise<string>((resolve, reject) => {
      const socket = netConnect({ host: '127.0.0.1', port: any });
      let out = '';
      socket.setEncoding('utf8');
      socket.on('data', (s: string) => {
        out += s;
        if ((out.match(/HTTP\/1\.1 /g) ?? []).length >= count) socket.end();
      });
      socket.on('end', () => resolve(out));
      socket.on('error', reject);
      const one = `GET /v1/cluster/ring HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tokens.ro}\r\n\r\n`;
      socket.write(one.repeat(count));
      setTimeout(() => { socket.destroy(); resolve(out); }, 10_000).unref();
    });
    const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
    t.equal(statuses.length, count, 'every request answered');
    t.ok(statuses.filter((st) => st === 200).length >= requestRate - 10, 'the burst is served');
    t.ok(statuses.filter((st) => st === 429).length > 0, `then 429 (${statuses.filter((st) => st === 429).length} of ${count})`);
    t.match(text, /retry-after: \d+/i, 'with Retry-After');
    t.match(text, /"code":"TOO_MANY_REQUESTS"/);
  });

  t.test('gateway requests count in the same request metrics', async (t) => {
    const metrics = await http(lead, 'GET', '/metrics', { token: null });
    t.match(metrics.text, /dsync_requests_total\{[^}]*opcode="LockAcquire"[^}]*code="DEADLOCK"[^}]*\} [1-9]/, 'the HTTP deadlock counted as LockAcquire DEADLOCK');
    t.match(metrics.text, /dsync_requests_total\{[^}]*opcode="SessionOpen"[^}]*code="OK"[^}]*\} [1-9]/);
  });

  t.test('every route was called', async (t) => {
    t.same(routes.map((r) => `${r.method} ${r.path}`).filter((k) => !covered.has(k)), [], 'no route left out');
  });
});
