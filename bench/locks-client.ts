// The lock client's own CPU per acquire+release (`node dist/bench/locks-client.js`): the
// shipped Router and LockClient, 64 of them as in bench:locks, over a fake connection
// that answers every request on the next setImmediate with fixed reply bytes, so no node,
// socket or frame codec is measured: only lock() + release() through the lanes, the
// router and the LockRequest/LockReply codec. Prints process CPU (user + system) and wall
// time per cycle. To compare two builds, copy this file's compiled form next to the other
// build's dist/bench and run both alternately.
//
// Env: LOCKS_CLIENT_BENCH_CYCLES (100,000 measured after 20,000 warm-up), LOCKS_CLIENT_BENCH_CLIENTS (64).

import { LockClient } from '../client/locks/locks.js';
import type { ClientConnection } from '../client/transport/connection.js';
import { Router } from '../client/transport/router.js';
import { Opcode } from '../protocol/frame.js';
import { schema } from '../protocol/index.js';
import { envInt } from './common.js';

const cycles = envInt('LOCKS_CLIENT_BENCH_CYCLES', 100_000, 1, 100_000_000);
const clientsCount = envInt('LOCKS_CLIENT_BENCH_CLIENTS', 64, 1, 1024);
const warmupCycles = 20_000;
const namesCount = 1000;

const openReply = schema.LockReply.encode({ session: 1, ttlMs: 600_000 }).finish();
const grantReply = schema.LockReply.encode({ token: 123_456, exclusive: true }).finish();
const emptyReply = new Uint8Array(0);

let answers: [(payload: Uint8Array) => void, Uint8Array][] = [];
let flushScheduled = false;
function answerAll(): void {
  flushScheduled = false;
  const due = answers;
  answers = [];
  for (const [resolve, payload] of due) resolve(payload);
}

const connection: ClientConnection = {
  address: 'fake:1',
  hello: null,
  isOpen: true,
  onClose: () => {},
  close: () => {},
  request: (opcode) => new Promise<Uint8Array>((resolve) => {
    answers.push([resolve, opcode === Opcode.SessionOpen ? openReply : opcode === Opcode.LockAcquire ? grantReply : emptyReply]);
    if (!flushScheduled) {
      flushScheduled = true;
      setImmediate(answerAll);
    }
  }),
};

const clients: LockClient[] = [];
for (let i = 0; i < clientsCount; i++) {
  const router = new Router({ seeds: ['fake:1'], name: `bench-${i}`, connect: () => Promise.resolve(connection) });
  clients.push(new LockClient(router, { name: `bench-${i}`, laneBase: `bench-${i}` }));
}

async function run(total: number): Promise<void> {
  let left = total;
  await Promise.all(clients.map(async (client) => {
    for (let k = 0; left > 0; k++) {
      left--;
      const held = await client.lock(`name-${k % namesCount}`, { waitMs: 10_000 });
      await held.release();
    }
  }));
}

await run(warmupCycles);
const cpuBefore = process.cpuUsage();
const startMs = performance.now();
await run(cycles);
const cpu = process.cpuUsage(cpuBefore);
const wallMs = performance.now() - startMs;
console.log(`locks-client: ${clientsCount} clients, ${cycles} acquire+release cycles: CPU ${((cpu.user + cpu.system) / cycles).toFixed(2)} us/cycle, `
  + `wall ${((wallMs * 1000) / cycles).toFixed(2)} us/cycle`);
for (const client of clients) await client.close();
