// One lock client of a fault run, in its own process so that it can stall like a
// real application (a synchronous busy-wait longer than its lease: its keep-alive
// timers stop too, as in a GC pause) and be paused by the nemesis. Forked by the
// lock workload with an IPC channel: it reports every operation to the runner and
// sends each use of the fenced resource there to be judged. Every random choice
// comes from its seeded PRNG. Started as `node lock-client.js '<json LockClientArgs>'`.

import { Client, DsyncError, type HeldLock, type LockMode } from '../../client/index.js';
import { Xoshiro128 } from '../../core/prng.js';
import type { Outcome } from '../checker/history.js';
import type { AcquireOp, LostOp, ReleaseOp } from '../checker/lock-safety.js';
import { epochNowMs } from './clock.js';

export interface LockClientArgs {
  readonly name: string;
  /** Seeds with the attached node first. */
  readonly seeds: readonly string[];
  readonly node: string;
  readonly seed: number;
  readonly originMs: number;
  readonly idBase: number;
  readonly ttlMs: number;
  readonly locks: readonly string[];
  readonly sharedRatio: number;
  /** Chance per hold of stalling past the lease between the `lost` check and an access. */
  readonly stallRatio: number;
  readonly loadUntilMs: number;
  readonly opsMax: number;
  /** One hold, then exit (a fresh client whose first lock() meets a fault). */
  readonly once: boolean;
  /** Start (connect, then lock) only when the runner says 'go': spawned ahead so start-up time does not eat the fault. */
  readonly standby: boolean;
  /** 'ignore-lost': the broken client that keeps using a lock after `lost` fired. */
  readonly canary: string | null;
}

/** What a client tells the runner. */
export type ClientMessage =
  | { readonly t: 'op'; readonly op: AcquireOp | ReleaseOp | LostOp }
  | { readonly t: 'access'; readonly req: number; readonly id: number; readonly lock: string; readonly mode: LockMode; readonly grant: number;
    readonly token: number; readonly zombie: boolean; readonly invokeMs: number; readonly stalledFromMs?: number }
  | { readonly t: 'done'; readonly ops: number };

/** What the runner tells a client. */
export type RunnerMessage =
  | { readonly t: 'verdict'; readonly req: number; readonly accepted: boolean }
  | { readonly t: 'stop' }
  | { readonly t: 'go'; readonly seeds: readonly string[]; readonly node: string };

/** An acquire waits at most this many TTLs before giving up (LOCK_TIMEOUT). */
const waitTtls = 3;
/** Accesses per hold. */
const accessesMax = 3;

const args = JSON.parse(process.argv[2] ?? '{}') as LockClientArgs;
const prng = new Xoshiro128(args.seed);
const now = (): number => epochNowMs() - args.originMs;
let nextId = args.idBase;
let stopping = false;
const verdicts = new Map<number, (accepted: boolean) => void>();
let nextReq = 1;

function send(m: ClientMessage): void {
  process.send?.(m);
}

let go: (m: { seeds: readonly string[]; node: string }) => void = () => {};
const started = new Promise<{ seeds: readonly string[]; node: string }>((r) => { go = r; });
process.on('message', (m: RunnerMessage) => {
  if (m.t === 'stop') {
    stopping = true;
    if (args.standby) process.exit(0);
  } else if (m.t === 'go') {
    go(m);
  } else {
    verdicts.get(m.req)?.(m.accepted);
  }
});
process.on('disconnect', () => process.exit(0));

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A stalled process: nothing on this event loop runs, keep-alives included. */
function stall(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) { /* spin */ }
}

function classify(err: unknown): { outcome: Outcome; error: string } {
  if (err instanceof DsyncError) {
    // No answer, or an answer that does not say whether it was applied.
    const unknown = err.code === 'TIMEOUT' || err.code === 'UNAVAILABLE' || err.code === 'CONNECTION_CLOSED' || err.code === 'NOT_LEADER'
      || err.code === 'INTERNAL';
    return { outcome: unknown ? 'unknown' : 'fail', error: err.code };
  }
  return { outcome: 'unknown', error: err instanceof Error ? err.message : String(err) };
}

function access(lock: string, mode: LockMode, grant: number, token: number, zombie: boolean, stalledFromMs?: number): Promise<boolean> {
  const req = nextReq++;
  return new Promise((resolve) => {
    verdicts.set(req, (accepted) => {
      verdicts.delete(req);
      resolve(accepted);
    });
    send({ t: 'access', req, id: nextId++, lock, mode, grant, token, zombie, invokeMs: now(), ...(stalledFromMs === undefined ? {} : { stalledFromMs }) });
  });
}

async function hold(client: Client, node: string): Promise<void> {
  const base = { process: args.name, node, service: 'locks' } as const;
  const lock = args.locks[prng.int(0, args.locks.length - 1)] ?? 'x';
  const mode: LockMode = prng.next() < args.sharedRatio ? 'shared' : 'exclusive';
  const id = nextId++;
  const invokeMs = now();
  let held: HeldLock;
  try {
    held = await client.lock(lock, { mode, waitMs: args.ttlMs * waitTtls });
  } catch (err) {
    send({ t: 'op', op: { ...base, id, f: 'acquire', lock, mode, invokeMs, endMs: now(), ...classify(err) } });
    await sleep(prng.int(50, 200));
    return;
  }
  send({ t: 'op', op: { ...base, id, f: 'acquire', lock, mode, invokeMs, endMs: now(), outcome: 'ok', token: held.token } });
  void held.lost.then((err) => {
    const at = now();
    send({ t: 'op', op: { ...base, id: nextId++, f: 'lost', lock, grant: id, invokeMs: at, endMs: at, outcome: 'ok', error: err.code } });
  });
  const ignoreLost = args.canary === 'ignore-lost';
  let zombie = false;
  let stalledFromMs: number | undefined;
  const count = prng.int(1, accessesMax);
  const stallAt = prng.next() < args.stallRatio ? prng.int(0, count - 1) : -1;
  for (let k = 0; k < count && !stopping; k++) {
    if (!ignoreLost && !zombie && held.isLost) break; // an honest holder looks before it writes
    if (k === stallAt) {
      // Paused between the check and the write: the write goes out without looking again.
      stalledFromMs = now();
      stall(prng.int(Math.floor(args.ttlMs * 1.3), args.ttlMs * 2));
      zombie = !ignoreLost;
    }
    await access(lock, mode, id, held.token, zombie, zombie ? stalledFromMs : undefined);
    await sleep(prng.int(5, 60));
  }
  const releaseMs = now();
  try {
    await held.release();
    send({ t: 'op', op: { ...base, id: nextId++, f: 'release', lock, grant: id, invokeMs: releaseMs, endMs: now(), outcome: 'ok' } });
  } catch (err) {
    send({ t: 'op', op: { ...base, id: nextId++, f: 'release', lock, grant: id, invokeMs: releaseMs, endMs: now(), ...classify(err) } });
  }
  await sleep(prng.int(0, 30));
}

async function main(): Promise<void> {
  const target = args.standby ? await started : { seeds: args.seeds, node: args.node };
  const client = await Client.connect({ seeds: target.seeds, sessionTtlMs: args.ttlMs, requestTimeoutMs: 4_000, connectTimeoutMs: 2_000,
    maxRedirects: 16, name: args.name });
  let ops = 0;
  try {
    do {
      await hold(client, target.node);
      ops++;
    } while (!args.once && !stopping && ops < args.opsMax && now() < args.loadUntilMs);
  } finally {
    await Promise.race([client.close(), sleep(args.ttlMs)]);
  }
  send({ t: 'done', ops });
  process.disconnect?.();
}

main().catch((err: unknown) => {
  process.stderr.write(`${args.name}: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 1;
  process.disconnect?.();
});
