// One real `dsync node` process on loopback, attacked through raw sockets
// (garbage, a 4 GiB length prefix, bad version, frames before the hello, half
// frames left hanging, 500 connections opened and dropped) while a well-behaved
// client pings on its own connection throughout: every one of its pings must
// succeed and the process must stay up. Then 10,000 pipelined pings on one
// connection must all come back matched to their request ids, and the client
// must surface typed errors (UNKNOWN_OPCODE, TIMEOUT, UNAVAILABLE).
// Garbage is seeded: the seed is printed; replay with SEED=.

import { connect } from 'node:net';
import t from 'tap';
import { routerOf } from '../../client/client.js';
import { Client, DsyncError, ErrorCode } from '../../client/index.js';
import { protocolVersion } from '../../core/constants.js';
import { Xoshiro128 } from '../../core/prng.js';
import { encodeFrame, FrameType, Opcode, schema } from '../../protocol/index.js';
import { freePorts, sleep, tempDir, TestNode } from './helpers/cluster.js';
import { errorCode, helloFrame, pingFrame, RawConnection, type ReceivedFrame } from './helpers/raw.js';

const seed = process.env['SEED'] !== undefined ? Number(process.env['SEED']) : (Date.now() ^ process.pid) >>> 0;
t.comment(`seed ${seed} (replay with SEED=${seed})`);
const prng = new Xoshiro128(seed);

const [port, httpPort, consolePort] = await freePorts(3);
const node = new TestNode(t, { id: 'n1', port: port!, httpPort: httpPort!, consolePort: consolePort!, dataDir: tempDir(t), peers: [] });
await node.start();

function randomBytes(length: number): Uint8Array {
  return Uint8Array.from({ length }, () => prng.int(0, 255));
}

function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

/** Codes the node may answer malformed input with. */
const protocolErrorCodes = new Set<string>([ErrorCode.BAD_FRAME, ErrorCode.BAD_VERSION, ErrorCode.FRAME_TOO_LARGE,
  ErrorCode.UNKNOWN_OPCODE, ErrorCode.HELLO_REQUIRED, ErrorCode.BAD_PAYLOAD]);

function onlyErrorFrames(frames: readonly ReceivedFrame[]): boolean {
  return frames.every((f) => f.type === FrameType.Error && protocolErrorCodes.has(errorCode(f)));
}

t.test('a node under abuse stays up and keeps serving a well-behaved client', async (t) => {
  const good = await Client.connect({ seeds: [node.address], requestTimeoutMs: 5_000 });
  t.teardown(() => good.close());

  // The well-behaved client pings continuously, each ping carrying its counter.
  let stopPinging = false;
  let pingsOk = 0;
  const pingFailures: string[] = [];
  const pingLoopMax = 1_000_000;
  const pinger = (async (): Promise<void> => {
    for (let i = 0; i < pingLoopMax && !stopPinging; i++) {
      try {
        await good.ping(u32(i));
        pingsOk++;
      } catch (err) {
        pingFailures.push(`ping ${i}: ${String(err)}`);
      }
      await sleep(2);
    }
  })();
  const pingsSoFar = (): number => pingsOk;
  /** Waits until the good client has completed a few more pings (proves interleaving). */
  const pingsProgress = async (what: string): Promise<void> => {
    const target = pingsSoFar() + 3;
    for (let i = 0; i < 500 && pingsSoFar() < target && pingFailures.length === 0; i++) await sleep(10);
    t.ok(pingsSoFar() >= target, `the good client kept getting answers after ${what}`);
  };

  // 1. Garbage before any hello: random bytes; the node must answer only with typed errors (or nothing) and close.
  for (let i = 0; i < 20; i++) {
    const conn = await RawConnection.open(node.spec.port);
    const garbage = randomBytes(prng.int(1, 4096));
    conn.write(garbage);
    conn.socket.end();
    await conn.waitClosed();
    t.ok(onlyErrorFrames(conn.frames), `garbage #${i} (${garbage.length} bytes) got only typed errors back`);
  }
  // ... and after a valid hello.
  for (let i = 0; i < 10; i++) {
    const conn = await RawConnection.open(node.spec.port);
    await conn.hello();
    conn.write(randomBytes(prng.int(1, 4096)));
    conn.socket.end();
    await conn.waitClosed();
    t.ok(onlyErrorFrames(conn.frames.slice(1)), `garbage after hello #${i} got only typed errors back`);
  }
  await pingsProgress('garbage');

  // 2. A 4 GiB length prefix, before and after the hello: FRAME_TOO_LARGE at once, then the node hangs up.
  for (const withHello of [false, true]) {
    const conn = await RawConnection.open(node.spec.port);
    if (withHello) await conn.hello();
    const header = Uint8Array.of(0xff, 0xff, 0xff, 0xff, protocolVersion, FrameType.Request, 0, Opcode.Ping, 0, 0, 0, 42);
    conn.write(header);
    await conn.waitClosed(); // we never end our side: the node must close on its own
    const errors = conn.frames.filter((f) => f.type === FrameType.Error);
    t.equal(errors.length, 1, `4 GiB prefix ${withHello ? 'after' : 'before'} hello: one error frame`);
    t.equal(errors[0] === undefined ? '' : errorCode(errors[0]), ErrorCode.FRAME_TOO_LARGE);
    t.equal(errors[0]?.requestId, 42, 'the error names the request id from the header');
  }
  // Bad version after a hello, and a request before any hello: typed error, then closed.
  {
    const conn = await RawConnection.open(node.spec.port);
    await conn.hello();
    conn.write(Uint8Array.of(0, 0, 0, 8, 99, FrameType.Request, 0, Opcode.Ping, 0, 0, 0, 7));
    await conn.waitClosed();
    t.same(conn.frames.slice(1).map(errorCode), [ErrorCode.BAD_VERSION], 'bad version: BAD_VERSION then close');
  }
  {
    const conn = await RawConnection.open(node.spec.port);
    conn.write(pingFrame(5, Uint8Array.of(1)));
    await conn.waitClosed();
    t.same(conn.frames.map(errorCode), [ErrorCode.HELLO_REQUIRED], 'a ping before the hello: HELLO_REQUIRED then close');
  }
  await pingsProgress('4 GiB prefixes and bad headers');

  // 3. Half frames, then silence: these stay open for the rest of the test.
  const hanging: RawConnection[] = [];
  {
    const halfHeader = await RawConnection.open(node.spec.port);
    halfHeader.write(helloFrame().subarray(0, 6));
    const halfPayload = await RawConnection.open(node.spec.port);
    await halfPayload.hello();
    const big = pingFrame(9, new Uint8Array(64 * 1024));
    halfPayload.write(big.subarray(0, big.length / 2));
    hanging.push(halfHeader, halfPayload);
  }
  await pingsProgress('half frames');

  // 4. 500 connections opened and dropped in assorted ways, 50 at a time.
  const dropStyles = ['immediately', 'after hello', 'mid-ping', 'after pipelined pings', 'half header'] as const;
  let dropped = 0;
  for (let batch = 0; batch < 10; batch++) {
    await Promise.all(Array.from({ length: 50 }, async (_, i) => {
      const style = dropStyles[(batch * 50 + i) % dropStyles.length]!;
      const socket = connect({ host: '127.0.0.1', port: node.spec.port });
      socket.on('error', () => {
        // resets are expected: we drop without reading
      });
      await new Promise<void>((r) => socket.once('connect', () => r()));
      switch (style) {
        case 'immediately':
          break;
        case 'after hello':
          socket.write(helloFrame());
          break;
        case 'mid-ping':
          socket.write(helloFrame());
          socket.write(pingFrame(2, new Uint8Array(100)).subarray(0, 50));
          break;
        case 'after pipelined pings':
          socket.write(helloFrame());
          for (let k = 0; k < 20; k++) socket.write(pingFrame(10 + k, u32(k)));
          break;
        case 'half header':
          socket.write(Uint8Array.of(0, 0, 0));
          break;
      }
      socket.destroy();
      dropped++;
    }));
  }
  t.equal(dropped, 500, '500 connections opened and dropped');
  await pingsProgress('500 dropped connections');

  // 5. A non-fatal error keeps the connection: unknown opcode answered, then a ping on the same socket works.
  {
    const conn = await RawConnection.open(node.spec.port);
    await conn.hello();
    conn.write(encodeFrame(FrameType.Request, 0x7777, 100, new Uint8Array(3)));
    conn.write(pingFrame(101, Uint8Array.of(9, 9)));
    const frames = await conn.waitFrames(3);
    t.same(frames.slice(1).map((f) => [f.type, f.requestId]), [[FrameType.Error, 100], [FrameType.Response, 101]]);
    t.equal(errorCode(frames[1]!), ErrorCode.UNKNOWN_OPCODE);
    conn.destroy();
  }

  t.notOk(hanging.some((c) => c.isClosed), 'half-frame connections were not cut while within their limits');
  for (const c of hanging) c.destroy();

  stopPinging = true;
  await pinger;
  t.same(pingFailures, [], 'every ping of the well-behaved client succeeded');
  t.ok(pingsOk > 10, `the good client completed ${pingsOk} pings during the abuse`);
  t.ok(node.process.running, 'the node process is still running');
  const fresh = await Client.connect({ seeds: [node.address] });
  t.ok((await fresh.ping()) >= 0, 'a new client can still connect and ping');
  await fresh.close();
});

t.test('10,000 pipelined pings on one connection come back matched to their request ids', async (t) => {
  const count = 10_000;
  const firstId = 1_000;
  const conn = await RawConnection.open(node.spec.port);
  t.teardown(() => conn.destroy());
  await conn.hello();
  // All of them in one write: the node sees them back to back, before answering any.
  const frames = Array.from({ length: count }, (_, i) => pingFrame(firstId + i, u32(i ^ 0x5a5a_5a5a)));
  const total = frames.reduce((n, f) => n + f.length, 0);
  const all = new Uint8Array(total);
  frames.reduce((off, f) => (all.set(f, off), off + f.length), 0);
  conn.write(all);
  const received = (await conn.waitFrames(1 + count, 30_000)).slice(1);
  t.equal(received.length, count, 'one answer per ping');
  let mismatches = 0;
  const seen = new Set<number>();
  for (const f of received) {
    const i = f.requestId - firstId;
    const pong = f.type === FrameType.Response ? schema.Pong.decode(f.payload) : null;
    const expected = u32(i ^ 0x5a5a_5a5a);
    if (pong === null || f.opcode !== Opcode.Ping || i < 0 || i >= count || seen.has(f.requestId)
      || Buffer.compare(pong.payload, expected) !== 0) mismatches++;
    seen.add(f.requestId);
  }
  t.equal(mismatches, 0, 'every answer is a Pong carrying its own request\'s payload');
  t.equal(seen.size, count, 'every request id answered exactly once');

  // The same through the client library: 10,000 concurrent requests on one NodeConnection.
  const client = await Client.connect({ seeds: [node.address], requestTimeoutMs: 30_000 });
  t.teardown(() => client.close());
  const nodeConn = await routerOf(client).connection(node.address);
  const answers = await Promise.all(Array.from({ length: count }, async (_, i) => {
    const reply = await nodeConn.request(Opcode.Ping, schema.Ping.encode({ payload: u32(i) }).finish(), 30_000);
    return Buffer.compare(schema.Pong.decode(reply).payload, u32(i)) === 0;
  }));
  t.equal(answers.filter((ok) => ok).length, count, 'the client matched all 10,000 answers to their requests');
});

t.test('client errors are typed', async (t) => {
  const client = await Client.connect({ seeds: [node.address], requestTimeoutMs: 500 });
  t.teardown(() => client.close());
  const conn = await routerOf(client).connection(node.address);

  const unknown = await conn.request(0x7777, new Uint8Array(0), 2_000).then(() => null, (err: unknown) => err);
  t.ok(unknown instanceof DsyncError, 'an unknown opcode rejects with a DsyncError');
  t.equal((unknown as DsyncError).code, ErrorCode.UNKNOWN_OPCODE);
  t.ok(conn.isOpen, 'and the connection stays open');

  // A node that stops answering (frozen, socket still open): the request times out.
  node.process.pause();
  let timeout: unknown = null;
  try {
    timeout = await client.ping().then(() => null, (err: unknown) => err);
  } finally {
    node.process.resume();
  }
  t.ok(timeout instanceof DsyncError, 'a request to a frozen node rejects with a DsyncError');
  t.equal((timeout as DsyncError).code, ErrorCode.TIMEOUT);
  t.ok((await client.ping()) >= 0, 'the same client works again once the node answers');

  const [deadPort] = await freePorts(1);
  const dead = await Client.connect({ seeds: [`127.0.0.1:${deadPort!}`], connectTimeoutMs: 2_000 }).then(() => null, (err: unknown) => err);
  t.ok(dead instanceof DsyncError, 'connecting to a dead port rejects with a DsyncError');
  t.equal((dead as DsyncError).code, ErrorCode.UNAVAILABLE);
  t.match((dead as DsyncError).message, String(deadPort), 'naming the address');
});
