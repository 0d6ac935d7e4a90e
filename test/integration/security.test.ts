// Security over real processes (issue 8): a 3-node cluster with TLS on the binary
// port and peer links (mutual TLS: a node's certificate names its id), and a token
// file giving clients roles. Certificates are made here with openssl (a cluster CA,
// one per node, and a rogue CA). Checks, each against the running nodes:
// - the cluster forms over mutual TLS and an admin client takes and force-releases locks;
// - no token, a wrong token: UNAUTHORIZED and nothing served;
// - a read-only client reads status but may not open a session (FORBIDDEN);
//   a read-write client locks but may not force-release (FORBIDDEN);
// - a client speaking plaintext to the TLS port never gets a hello answered;
// - a "peer" whose certificate is signed by another CA, or that claims another node's
//   id, is refused UNAUTHORIZED;
// - the CLI takes the token and CA (--token/DSYNC_TOKEN, --tls-ca/DSYNC_TLS_CA); the
//   console serves nothing before `auth TOKEN` and closes after three wrong ones;
// - without TLS: a connection over its request rate gets TOO_MANY_REQUESTS with a
//   retry hint, and a connection past max-connections gets TOO_MANY_CONNECTIONS.

import t from 'tap';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { protocolVersion } from '../../core/constants.js';
import { Client, DsyncError, ErrorCode } from '../../client/index.js';
import { encodeFrame, FrameDecoder, FrameType, Opcode, schema } from '../../protocol/index.js';
import { freePorts, runDsync, tempDir, TestNode } from './helpers/cluster.js';
import { errorCode, helloFrame, pingFrame, RawConnection } from './helpers/raw.js';

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

/** A CA and, per name, a certificate for 127.0.0.1 whose common name is the name. */
function makeCerts(dir: string, ca: string, names: readonly string[]): void {
  openssl(dir, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${ca}.key`, '-out', `${ca}.crt`,
    '-days', '2', '-subj', `/CN=${ca}`]);
  fs.writeFileSync(path.join(dir, 'san.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  for (const name of names) {
    openssl(dir, ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`]);
    openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.crt`,
      '-days', '2', '-extfile', 'san.cnf']);
  }
}

const tokens = { admin: 'admin-token-0123456789', rw: 'rw-token-0123456789abc', ro: 'ro-token-0123456789abc', peer: 'peer-token-0123456789' };
const authFileText = [
  '# role name token',
  `admin ops ${tokens.admin}`,
  `read-write app ${tokens.rw}`,
  `read-only dash ${tokens.ro}`,
  `peer nodes ${tokens.peer}`,
].join('\n');

/** Sends lines to a console port one after another and returns everything it answered until it closed. */
function consoleSession(port: number, lines: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: '127.0.0.1', port });
    let out = '';
    const timer = setTimeout(() => { socket.destroy(); resolve(out); }, 10_000);
    socket.setEncoding('utf8');
    socket.on('data', (s: string) => { out += s; });
    socket.on('error', reject);
    socket.on('close', () => { clearTimeout(timer); resolve(out); });
    socket.once('connect', () => socket.write(lines.map((l) => `${l}\n`).join('')));
  });
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return err instanceof DsyncError ? err.code : String(err);
  }
}

t.test('TLS with mutual TLS between peers, tokens with roles', async (t) => {
  const dir = tempDir(t, 'dsync-sec-');
  makeCerts(dir, 'cluster-ca', ['n1', 'n2', 'n3']);
  makeCerts(dir, 'rogue-ca', ['rogue-n2']);
  const authFile = path.join(dir, 'tokens');
  fs.writeFileSync(authFile, authFileText, { mode: 0o600 });
  const ports = await freePorts(10);
  const ids = ['n1', 'n2', 'n3'];
  const nodes = ids.map((id, i) => new TestNode(t, {
    id, port: ports[i]!, httpPort: ports[3 + i]!, consolePort: ports[6 + i]!, dataDir: path.join(dir, id),
    peers: ids.flatMap((p, j) => (j === i ? [] : [`${p}@127.0.0.1:${ports[j]!}`])),
  }, ['--tls-cert', path.join(dir, `${id}.crt`), '--tls-key', path.join(dir, `${id}.key`), '--tls-ca', path.join(dir, 'cluster-ca.crt'),
    '--auth-file', authFile]));
  for (const n of nodes) await n.start(false);
  await Promise.all(nodes.map((n) => n.proc!.waitForStdout(/listening on/)));
  const seeds = nodes.map((n) => n.address);
  const ca = fs.readFileSync(path.join(dir, 'cluster-ca.crt'));
  const connect = (token?: string): Promise<Client> =>
    Client.connect({ seeds, tls: { ca }, connectTimeoutMs: 3000, requestTimeoutMs: 10_000, ...(token === undefined ? {} : { token }) });

  const admin = await connect(tokens.admin);
  t.teardown(() => admin.close());
  const held = await admin.lock('sec/a', { waitMs: 15_000 });
  t.ok(held.token > 0, `over mutual TLS the cluster elected a leader and granted a lock (token ${held.token})`);
  await held.release();
  t.notMatch(nodes.map((n) => n.proc!.stdout + n.proc!.stderr).join('\n'), new RegExp(Object.values(tokens).join('|')), 'no token appears in any log');

  t.equal(await codeOf(connect()), ErrorCode.UNAUTHORIZED, 'no token: UNAUTHORIZED');
  t.equal(await codeOf(connect('not-a-token-at-all-xx')), ErrorCode.UNAUTHORIZED, 'a wrong token: UNAUTHORIZED');

  const ro = await connect(tokens.ro);
  t.teardown(() => ro.close());
  t.equal(await codeOf(ro.status()), 'ok', 'read-only may read status');
  t.equal(await codeOf(ro.tryLock('sec/b')), ErrorCode.FORBIDDEN, 'read-only may not open a session or lock');

  const rw = await connect(tokens.rw);
  t.teardown(() => rw.close());
  const rwHeld = await rw.lock('sec/c', { waitMs: 10_000 });
  t.equal(await codeOf(rw.locks.forceRelease('sec/c')), ErrorCode.FORBIDDEN, 'read-write may not force-release');
  t.equal(await codeOf(admin.locks.forceRelease('sec/c')), 'ok', 'admin may');
  await rwHeld.release().catch(() => undefined);

  // Plaintext to the TLS port: the hello bytes are not TLS, the handshake fails, nothing is answered.
  const plain = await RawConnection.open(ports[0]!);
  plain.write(encodeFrame(FrameType.Request, Opcode.Hello, 1, schema.Hello.encode({ role: schema.Role.ROLE_CLIENT, protocolVersion,
    name: 'plain', credentials: tokens.admin }).finish()));
  await plain.waitClosed(5_000);
  t.equal(plain.frames.length, 0, 'a plaintext client gets no frame back and is disconnected');

  // A peer with a certificate from another CA, and one that claims another node's id.
  const peerHello = async (cert: string, key: string, claim: string): Promise<string> => new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: ports[0]!, ca, cert: fs.readFileSync(path.join(dir, cert)),
      key: fs.readFileSync(path.join(dir, key)), checkServerIdentity: () => undefined });
    const decoder = new FrameDecoder({
      frame: (type, _op, _id, payload) => {
        resolve(type === FrameType.Error ? schema.ErrorReply.decode(payload).code : 'answered');
        socket.destroy();
      },
      error: () => resolve('malformed'),
    });
    socket.on('data', (c: Buffer) => decoder.push(c));
    socket.on('error', () => resolve('closed'));
    socket.on('close', () => resolve('closed'));
    socket.once('secureConnect', () => socket.write(encodeFrame(FrameType.Request, Opcode.Hello, 1, schema.Hello.encode({
      role: schema.Role.ROLE_PEER, protocolVersion, name: claim, advertise: '127.0.0.1:1', credentials: tokens.peer }).finish())));
  });
  t.equal(await peerHello('rogue-n2.crt', 'rogue-n2.key', 'n2'), ErrorCode.UNAUTHORIZED, 'a peer certificate from another CA: UNAUTHORIZED');
  t.equal(await peerHello('n3.crt', 'n3.key', 'n2'), ErrorCode.UNAUTHORIZED, 'n3\'s certificate claiming to be n2: UNAUTHORIZED');
  t.match(nodes[0]!.proc!.stderr, /refused a connection that did not authenticate/, 'the refusals are logged');

  // The CLI takes the same token and CA (flags or DSYNC_TOKEN / DSYNC_TLS_CA).
  const caPath = path.join(dir, 'cluster-ca.crt');
  const cliOk = await runDsync(t, ['status', '--seeds', seeds.join(','), '--tls-ca', caPath, '--json'], { env: { DSYNC_TOKEN: tokens.ro } });
  t.equal(cliOk.code, 0, `dsync status with a read-only token over TLS works: ${cliOk.stderr}`);
  const cliNoToken = await runDsync(t, ['status', '--seeds', seeds.join(','), '--tls-ca', caPath]);
  t.not(cliNoToken.code, 0, 'without a token it fails');
  t.match(cliNoToken.stderr, /UNAUTHORIZED|requires a token/, `and says why: ${cliNoToken.stderr.trim()}`);
  const cliForbidden = await runDsync(t, ['lock', 'acquire', 'sec/d', '--hold', '0', '--seeds', seeds.join(','), '--tls-ca', caPath,
    '--token', tokens.ro]);
  t.match(cliForbidden.stderr, /FORBIDDEN/, 'a read-only token cannot take a lock from the CLI either');

  // The console serves nothing before `auth TOKEN`, closes after three wrong tokens, never echoes one.
  const consoleOut = await consoleSession(ports[6]!, ['status', 'auth not-a-valid-token-xxxx', `auth ${tokens.ro}`, 'status', 'quit']);
  t.match(consoleOut, /asks for a token/, 'the console asks for a token first');
  t.match(consoleOut, /not a valid token/, 'a wrong token is refused');
  t.match(consoleOut, /authenticated as dash \(read-only\)[\s\S]*leader/, 'then serves status');
  t.notMatch(consoleOut, new RegExp(Object.values(tokens).join('|') + '|not-a-valid-token-xxxx'), 'and never echoes a token');
  const closed = await consoleSession(ports[6]!, ['auth a1234567890123456', 'auth b1234567890123456', 'auth c1234567890123456', 'status']);
  t.match(closed, /closing/, 'three wrong tokens close the session');
  t.notMatch(closed, /leader/, 'and nothing was served');
  t.ok(nodes.every((n) => n.proc!.running), 'every node still runs');
  await Promise.all(nodes.map((n) => n.stop()));
});

t.test('request rate and connection limits are answered with their codes', async (t) => {
  const [port, httpPort, consolePort] = await freePorts(3);
  const node = new TestNode(t, { id: 'n1', port: port!, httpPort: httpPort!, consolePort: consolePort!, dataDir: tempDir(t), peers: [] },
    ['--request-rate', '5', '--max-connections', '2']);
  await node.start();
  const a = await RawConnection.open(port!);
  t.teardown(() => a.destroy());
  await a.hello();
  for (let i = 0; i < 20; i++) a.write(pingFrame(10 + i, new Uint8Array([i])));
  await a.waitFrames(21);
  const limited = a.frames.filter((f) => f.type === FrameType.Error && errorCode(f) === ErrorCode.TOO_MANY_REQUESTS);
  const answered = a.frames.filter((f) => f.type === FrameType.Response && f.opcode === Opcode.Ping);
  t.ok(answered.length >= 4 && answered.length <= 6, `about one second's worth answered (${answered.length} of 20; rate 5/s)`);
  t.equal(limited.length + answered.length, 20, 'every other ping was refused TOO_MANY_REQUESTS');
  const hint = schema.ErrorReply.decode(limited[0]!.payload).retryAfterMs;
  t.ok(hint > 0 && hint <= 1000, `with a retry hint (${hint} ms)`);

  const b = await RawConnection.open(port!);
  t.teardown(() => b.destroy());
  b.write(helloFrame(1));
  await b.waitFrames(1);
  const c = await RawConnection.open(port!);
  t.teardown(() => c.destroy());
  await c.waitClosed(5_000);
  t.equal(c.frames[0] !== undefined ? errorCode(c.frames[0]) : 'none', ErrorCode.TOO_MANY_CONNECTIONS, 'the third connection is told TOO_MANY_CONNECTIONS');
  t.ok(node.process.running, 'the node still runs');
  await node.stop();
});
