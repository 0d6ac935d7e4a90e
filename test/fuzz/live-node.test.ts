// Protocol fuzzing against live nodes (issue 8): seeded random and mutated frames on
// client connections to a single-node cluster (every known opcode, payloads that are
// garbage, valid requests of every shape, or valid requests with flipped, cut,
// spliced or inflated bytes; some connections skip the hello or send raw garbage),
// and mutated RaftBatches on a peer link to a second node. Must hold: the nodes keep
// running; no answer is INTERNAL (a handler that threw on input it should have
// refused); a well-behaved client keeps getting its locks during and after the run;
// the node logs no internal error. Then the corpus of past crashers (corpus/*.hex)
// is replayed the same way. Seeded: prints `seed N`; replay with SEED=N.
// FUZZ_FRAMES (10,000 by default) sets the number of client frames.

import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { protocolVersion } from '../../core/constants.js';
import { Xoshiro128 } from '../../core/prng.js';
import { MessageType } from '../../core/raft/types.js';
import { Client } from '../../client/index.js';
import { encodeFrame, FrameType, Opcode, schema } from '../../protocol/index.js';
import { freePorts, tempDir, TestNode, waitUntilServing } from '../integration/helpers/cluster.js';
import { errorCode, helloFrame, pingFrame, raftPush, RawConnection, type ReceivedFrame } from '../integration/helpers/raw.js';

const seed = process.env['SEED'] !== undefined ? Number(process.env['SEED']) : (Date.now() ^ (process.pid << 8)) >>> 0;
t.comment(`seed ${seed} (replay with SEED=${seed})`);
const framesTotal = Number(process.env['FUZZ_FRAMES'] ?? 10_000);
const framesPerConnection = 250;
const peerBatches = 1_000;
const corpusDir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test', 'fuzz', 'corpus');

const opcodes = Object.values(Opcode) as number[];

/** Valid payloads of every request shape the node knows, to mutate or send as they are. */
function validPayloads(rng: Xoshiro128): Uint8Array[] {
  const name = (): string => ['a', 'lock/1', 'ü∂ß', '', ' ', 'x'.repeat(rng.int(1, 600)), '\n\u001b[31m', 'q'][rng.int(0, 7)] ?? 'a';
  const big = (): number => [0, 1, 2 ** 31, 2 ** 32 - 1, rng.int(0, 100_000)][rng.int(0, 4)] ?? 0;
  return [
    schema.Hello.encode({ role: schema.Role.ROLE_CLIENT, protocolVersion, name: name() }).finish(),
    schema.Ping.encode({ payload: new Uint8Array(rng.int(0, 64)) }).finish(),
    schema.StatusRequest.encode({}).finish(),
    schema.LockRequest.encode({ clientId: name(), seq: big(), session: big(), lock: name(), exclusive: rng.next() < 0.5,
      requestId: name(), wait: rng.next() < 0.3, waitMs: rng.int(0, 50), ttlMs: big(), lockDelayMs: big() }).finish(),
    schema.LockQuery.encode({ lock: name() }).finish(),
    schema.JournalAppend.encode({ data: new Uint8Array(rng.int(0, 128)) }).finish(),
    schema.JournalInfoRequest.encode({}).finish(),
    schema.MemberRemoveRequest.encode({ id: name() }).finish(),
    schema.MembersRequest.encode({}).finish(),
  ];
}

/** A valid payload with flipped bits, a cut, spliced garbage or an inflated varint. */
function mutate(rng: Xoshiro128, bytes: Uint8Array): Uint8Array {
  const out = Uint8Array.from(bytes);
  switch (rng.int(0, 4)) {
    case 0:
      for (let i = 0; i < rng.int(1, 4) && out.length > 0; i++) {
        const at = rng.int(0, out.length - 1);
        out[at] = (out[at] ?? 0) ^ (1 << rng.int(0, 7));
      }
      return out;
    case 1:
      return out.subarray(0, rng.int(0, out.length));
    case 2: {
      const at = rng.int(0, out.length);
      const junk = randomBytes(rng, rng.int(1, 16));
      const spliced = new Uint8Array(out.length + junk.length);
      spliced.set(out.subarray(0, at));
      spliced.set(junk, at);
      spliced.set(out.subarray(at), at + junk.length);
      return spliced;
    }
    case 3: {
      // A length-delimited field claiming far more than is there.
      const inflated = new Uint8Array(out.length + 6);
      inflated.set(out);
      inflated.set([0x22, 0xff, 0xff, 0xff, 0xff, 0x0f], out.length);
      return inflated;
    }
    default:
      return randomBytes(rng, rng.int(0, 48));
  }
}

function randomBytes(rng: Xoshiro128, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.int(0, 255);
  return out;
}

interface FuzzTally {
  frames: number;
  answers: number;
  errors: Map<string, number>;
  internal: string[];
  closedByNode: number;
}

function record(tally: FuzzTally, frames: readonly ReceivedFrame[]): void {
  for (const f of frames) {
    tally.answers++;
    if (f.type !== FrameType.Error) continue;
    let code = 'undecodable';
    try {
      code = errorCode(f);
    } catch {
      // an Error frame whose payload does not decode is itself reported below
    }
    tally.errors.set(code, (tally.errors.get(code) ?? 0) + 1);
    if (code === 'INTERNAL' || code === 'undecodable') tally.internal.push(`${code} for opcode ${f.opcode}`);
  }
}

/** One abusive client connection: maybe a hello, then frames; ends with a ping it waits for (unless closed). */
async function abuse(port: number, rng: Xoshiro128, count: number, tally: FuzzTally): Promise<void> {
  const raw = await RawConnection.open(port);
  try {
    const pool = validPayloads(rng);
    const style = rng.next();
    if (style < 0.05) {
      raw.write(randomBytes(rng, rng.int(1, 4096)));
    } else {
      if (style > 0.1) raw.write(helloFrame(1));
      for (let i = 0; i < count; i++) {
        const opcode = rng.next() < 0.9 ? (opcodes[rng.int(0, opcodes.length - 1)] ?? 0) : rng.int(0, 0xffff);
        const base = pool[rng.int(0, pool.length - 1)] ?? new Uint8Array(0);
        const payload = rng.next() < 0.3 ? base : mutate(rng, base);
        // Rarely a frame of another (or no) type: most of them end the connection, which would cut the run short.
        const type = rng.next() < 0.997 ? FrameType.Request : (rng.int(0, 5) as FrameType);
        raw.write(encodeFrame(type, opcode, 2 + i, payload));
      }
      tally.frames += count;
      raw.write(pingFrame(1_000_000, new Uint8Array([1])));
    }
    await raw.waitUntilFrame((f) => f.requestId === 1_000_000 && f.opcode === Opcode.Ping, 15_000).catch(() => undefined);
    if (raw.isClosed) tally.closedByNode++;
    record(tally, raw.frames);
  } finally {
    raw.destroy();
  }
}

function newTally(): FuzzTally {
  return { frames: 0, answers: 0, errors: new Map(), internal: [], closedByNode: 0 };
}

t.test('client connections: random and mutated frames do not hurt the node or other clients', async (t) => {
  const [port, httpPort, consolePort] = await freePorts(3);
  const node = new TestNode(t, { id: 'n1', port: port!, httpPort: httpPort!, consolePort: consolePort!, dataDir: tempDir(t), peers: [] });
  await node.start();
  t.teardown(() => {
    if (t.passing()) return;
    const stderr = node.proc?.stderr ?? '';
    t.comment(`node running ${String(node.proc?.running)}; stderr tail:\n${stderr.slice(-3000)}`);
  });
  const client = await Client.connect({ seeds: [node.address] });
  t.teardown(() => client.close());
  const before = await client.lock('fuzz/healthy');
  await before.release();

  const rng = new Xoshiro128(seed);
  const tally = newTally();
  let healthyRounds = 0;
  let fuzzing = true;
  const healthy = (async () => {
    // Bounded: one round per lock round trip, stops with the fuzzing.
    while (fuzzing && healthyRounds < 10_000) {
      const held = await client.lock('fuzz/healthy', { waitMs: 10_000 });
      await held.release();
      healthyRounds++;
    }
  })();
  const connections = Math.ceil(framesTotal / framesPerConnection);
  for (let c = 0; c < connections; c += 4) {
    const batch = [];
    for (let k = 0; k < 4 && c + k < connections; k++) batch.push(abuse(port!, new Xoshiro128(rng.int(0, 0x7fff_ffff)), framesPerConnection, tally));
    await Promise.all(batch);
  }
  fuzzing = false;
  await healthy;
  t.comment(`sent ${tally.frames} frames on ${connections} connections; ${tally.answers} answers; ` +
    `${tally.closedByNode} connections closed by the node; errors ${JSON.stringify([...tally.errors])}`);
  // Frames that end a connection are rare on purpose: most frames must reach a handler.
  t.ok(tally.answers >= tally.frames / 2, `most frames were answered (${tally.answers} of ${tally.frames})`);
  t.same(tally.internal, [], 'no answer was INTERNAL');
  t.ok(healthyRounds > 0, `a well-behaved client took its lock ${healthyRounds} times meanwhile`);
  const after = await client.lock('fuzz/healthy');
  await after.release();
  await waitUntilServing(node.address, 5_000);
  t.ok(node.process.running, 'the node is still running');
  t.notMatch(node.process.stderr, /internal error|uncaught|fatal/i, 'and logged no internal error');
  const metrics = await fetch(`http://127.0.0.1:${httpPort!}/metrics`).then((r) => r.text());
  const series = metrics.split('\n').filter((l) => l.startsWith('dsync_requests_total{')).length;
  t.ok(series > 0 && series < 400, `random opcodes did not blow up the metric series (${series} request series)`);
  await node.stop();
});

t.test('a peer link: mutated raft batches close the link at worst; the node keeps serving', async (t) => {
  const [port, httpPort, consolePort, n2Port] = await freePorts(4);
  const node = new TestNode(t, { id: 'n1', port: port!, httpPort: httpPort!, consolePort: consolePort!, dataDir: tempDir(t),
    peers: [`n2@127.0.0.1:${n2Port!}`] });
  await node.start();
  const rng = new Xoshiro128(seed ^ 0x5eed);
  const typeMax = MessageType.ReadIndexResp;
  let links = 0;
  let sent = 0;
  // Bounded: each link carries up to 50 batches; stops at peerBatches.
  while (sent < peerBatches) {
    const raw = await RawConnection.open(port!);
    links++;
    raw.write(encodeFrame(FrameType.Request, Opcode.Hello, 1, schema.Hello.encode({ role: schema.Role.ROLE_PEER, protocolVersion,
      name: 'n2', advertise: `127.0.0.1:${n2Port!}` }).finish()));
    for (let i = 0; i < 50 && !raw.isClosed; i++, sent++) {
      const valid = schema.RaftBatch.encode({ messages: [schema.RaftMessage.create({ group: rng.int(0, 3), type: rng.int(0, typeMax + 1),
        from: 'n2', to: 'n1', term: rng.int(0, 5), logTerm: rng.int(0, 5), index: rng.int(0, 100), commit: rng.int(0, 100),
        entries: [{ term: rng.int(0, 5), index: rng.int(0, 100), type: 0, data: randomBytes(rng, rng.int(0, 32)) }] })] }).finish();
      raw.write(encodeFrame(FrameType.Push, Opcode.Raft, 0, rng.next() < 0.2 ? valid : mutate(rng, valid)));
    }
    raw.write(raftPush([]));
    await raw.waitClosed(200).catch(() => undefined);
    raw.destroy();
  }
  await waitUntilServing(node.address, 5_000);
  t.ok(node.process.running, `the node is still running after ${sent} batches on ${links} links`);
  t.notMatch(node.process.stderr, /internal error|uncaught|fatal/i, 'and logged no internal error');
  await node.stop();
});

t.test('the corpus of past crashers is replayed: each answered or refused, never a crash', async (t) => {
  const files = fs.readdirSync(corpusDir).filter((n) => n.endsWith('.hex')).sort();
  t.ok(files.length > 0, `${files.length} corpus inputs`);
  const [port, httpPort, consolePort, n2Port] = await freePorts(4);
  const node = new TestNode(t, { id: 'n1', port: port!, httpPort: httpPort!, consolePort: consolePort!, dataDir: tempDir(t),
    peers: [`n2@127.0.0.1:${n2Port!}`] });
  await node.start();
  for (const name of files) {
    const text = fs.readFileSync(path.join(corpusDir, name), 'utf8');
    const bytes = Uint8Array.from(Buffer.from(text.replace(/#.*$/gm, '').replace(/\s+/g, ''), 'hex'));
    const raw = await RawConnection.open(port!);
    raw.write(bytes);
    await raw.waitClosed(500).catch(() => undefined);
    const tally = newTally();
    record(tally, raw.frames);
    raw.destroy();
    t.same(tally.internal, [], `${name}: no INTERNAL answer`);
    await waitUntilServing(node.address, 5_000);
    t.ok(node.process.running, `${name}: the node is still running`);
  }
  await node.stop();
});
