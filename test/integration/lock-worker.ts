// A lock client in its own process, for the real-process lock tests (it can be
// killed with -9 like a crashed application). Started as
// `node lock-worker.js '<json LockWorkerArgs>'`; prints one JSON line per event on
// stdout ({"ev":"ready"|"held"|"round"|"done"|"violation"|"error", ...}).
//
// - mode 'contend': once `startFile` exists, `rounds` times: lock `lock` exclusively; inside, create the
//   marker file with O_EXCL (fails if anyone else is inside), read the shared file,
//   check the last token there is smaller than ours, append ours, fsync, remove the
//   marker, release. A check that fails prints a violation and exits 2.
// - mode 'hold': lock `lock`, print 'held' with the token, then hold it until killed.

import { appendFileSync, closeSync, existsSync, fsyncSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { Client, DsyncError, type HeldLock } from '../../client/index.js';

export interface LockWorkerArgs {
  readonly mode: 'contend' | 'hold';
  readonly seeds: readonly string[];
  readonly lock: string;
  readonly label: string;
  readonly sessionTtlMs: number;
  /** hold: the session's lock-delay (locks stay ungranted this long after the session expires). */
  readonly lockDelayMs?: number;
  /** contend: how many times to take the lock. */
  readonly rounds?: number;
  /** contend: the shared token file and the "someone is inside" marker. */
  readonly file?: string;
  readonly marker?: string;
  /** contend: how long to stay inside, ms. */
  readonly holdMs?: number;
  /** contend: after 'ready', wait until this file exists, so every worker starts contending at once. */
  readonly startFile?: string;
}

/** Attempts at one round before the worker gives up (each bounded by the client's request timeout). */
const attemptsPerRoundMax = 60;
/** A worker that runs longer than this is stuck: exit so the test reports it. */
const workerRuntimeMsMax = 100_000;
/** Longest wait for the start file. */
const startWaitMsMax = 30_000;

function emit(ev: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ ev, ...fields })}\n`);
}

function violation(message: string): never {
  emit('violation', { message });
  process.exit(2);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The last token written to the shared file (0 when empty). */
function lastToken(file: string): number {
  const lines = readFileSync(file, 'utf8').split('\n').filter((l) => l !== '');
  const last = lines[lines.length - 1];
  if (last === undefined) return 0;
  const token = Number(last.split(' ')[0]);
  if (!Number.isInteger(token)) violation(`unparsable line in the token file: ${JSON.stringify(last)}`);
  return token;
}

/** The critical section: exclusive entry proven by O_EXCL, token order checked against the file. */
async function inside(args: LockWorkerArgs, held: HeldLock, round: number): Promise<void> {
  const file = args.file ?? '';
  const marker = args.marker ?? '';
  let fd: number;
  try {
    fd = openSync(marker, 'wx');
  } catch (err) {
    violation(`${args.label} round ${round} token ${held.token}: marker already exists, someone else is inside (${String(err)})`);
  }
  writeSync(fd, `${args.label} ${held.token}\n`);
  closeSync(fd);
  const previous = lastToken(file);
  if (!(previous < held.token)) violation(`${args.label} round ${round}: token ${held.token} is not greater than the previous ${previous}`);
  appendFileSync(file, `${held.token} ${args.label} ${round}\n`);
  const out = openSync(file, 'r');
  fsyncSync(out);
  closeSync(out);
  await sleep(args.holdMs ?? 0);
  if (held.isLost) violation(`${args.label} round ${round}: lock lost while inside (token ${held.token})`);
  unlinkSync(marker);
}

async function contend(args: LockWorkerArgs): Promise<void> {
  const rounds = args.rounds ?? 1;
  let client = await Client.connect({ seeds: args.seeds, sessionTtlMs: args.sessionTtlMs, requestTimeoutMs: 10_000,
    maxRedirects: 40, name: args.label });
  emit('ready');
  const startFile = args.startFile;
  if (startFile !== undefined) {
    const deadline = Date.now() + startWaitMsMax;
    while (!existsSync(startFile)) {
      if (Date.now() > deadline) throw new Error(`no start file ${startFile} within ${startWaitMsMax} ms`);
      await sleep(10);
    }
  }
  for (let round = 0; round < rounds; round++) {
    let done = false;
    for (let attempt = 0; attempt < attemptsPerRoundMax && !done; attempt++) {
      let held: HeldLock;
      try {
        held = await client.lock(args.lock, { waitMs: 30_000 });
      } catch (err) {
        if (!(err instanceof DsyncError)) throw err;
        emit('error', { where: 'lock', round, code: err.code, message: err.message });
        await sleep(100);
        continue;
      }
      await inside(args, held, round);
      try {
        await held.release();
      } catch (err) {
        if (!(err instanceof DsyncError)) throw err;
        // The release may or may not have applied; ending the session releases it for sure.
        emit('error', { where: 'release', round, code: err.code, message: err.message });
        await client.close().catch(() => undefined);
        client = await Client.connect({ seeds: args.seeds, sessionTtlMs: args.sessionTtlMs, requestTimeoutMs: 10_000,
          maxRedirects: 40, name: args.label });
      }
      emit('round', { round, token: held.token });
      done = true;
    }
    if (!done) {
      emit('error', { where: 'round', round, code: 'GAVE_UP', message: `no grant after ${attemptsPerRoundMax} attempts` });
      process.exit(3);
    }
  }
  await client.close();
  emit('done', { rounds });
}

async function hold(args: LockWorkerArgs): Promise<void> {
  const client = await Client.connect({ seeds: args.seeds, sessionTtlMs: args.sessionTtlMs, maxRedirects: 40, name: args.label,
    lockDelayMs: args.lockDelayMs ?? 0 });
  emit('ready');
  const held = await client.lock(args.lock);
  emit('held', { token: held.token });
  // Held until kill -9; the keep-alive timer is unref'd, so keep the loop alive.
  setInterval(() => undefined, 1_000);
}

const raw = process.argv[2];
if (raw === undefined) throw new Error('usage: lock-worker.js <json args>');
const args = JSON.parse(raw) as LockWorkerArgs;
setTimeout(() => {
  emit('error', { where: 'runtime', code: 'STUCK', message: `worker ran longer than ${workerRuntimeMsMax} ms` });
  process.exit(4);
}, workerRuntimeMsMax).unref();
(args.mode === 'contend' ? contend(args) : hold(args)).catch((err: unknown) => {
  emit('error', { where: 'main', code: err instanceof DsyncError ? err.code : 'EXCEPTION', message: String(err) });
  process.exit(1);
});
