// Helpers for the real-process lock tests: lock-worker child processes (spawned
// detached, stopped at teardown, parsed JSON-line events), the group 0 leader's
// node, and a raw LockRequest sent to one node without following NOT_LEADER.

import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { routerOf } from '../../client/client.js';
import type { Client } from '../../client/index.js';
import { DsyncError } from '../../protocol/errors.js';
import { schema } from '../../protocol/index.js';
import { ManagedProcess, sleep, type Teardown, type TestCluster, type TestNode } from './helpers/cluster.js';
import type { LockWorkerArgs } from './lock-worker.js';
import { convergeTimeoutMsDefault, waitForLeader } from './raft-helpers.js';

const workerScript = join(dirname(fileURLToPath(import.meta.url)), 'lock-worker.js');
/** Poll interval while waiting for worker events. */
const pollMs = 25;

export interface WorkerEvent {
  readonly ev: 'ready' | 'held' | 'round' | 'done' | 'violation' | 'error';
  readonly round?: number;
  readonly token?: number;
  readonly code?: string;
  readonly message?: string;
  readonly where?: string;
}

/** A lock-worker process (see lock-worker.ts). */
export class LockWorker {
  constructor(readonly proc: ManagedProcess, readonly args: LockWorkerArgs) {}

  static spawn(t: Teardown, args: LockWorkerArgs): LockWorker {
    const child = spawn(process.execPath, [workerScript, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const proc = new ManagedProcess(child, `lock-worker ${args.label}`);
    t.teardown(async () => {
      await proc.stop(1_000);
    });
    return new LockWorker(proc, args);
  }

  /** Every complete JSON line printed so far. */
  events(): WorkerEvent[] {
    return this.proc.stdout.split('\n').filter((l) => l.startsWith('{')).flatMap((l) => {
      try {
        return [JSON.parse(l) as WorkerEvent];
      } catch {
        return []; // a line still being written
      }
    });
  }

  count(ev: WorkerEvent['ev']): number {
    return this.events().filter((e) => e.ev === ev).length;
  }

  /** Resolves with the first event of this kind; rejects when the worker exits first or on timeout. */
  async waitFor(ev: WorkerEvent['ev'], timeoutMs = convergeTimeoutMsDefault): Promise<WorkerEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events().find((e) => e.ev === ev);
      if (found !== undefined) return found;
      if (!this.proc.running) throw new Error(`${this.proc.label} exited before '${ev}'\n${this.proc.describe()}`);
      if (Date.now() > deadline) throw new Error(`${this.proc.label}: no '${ev}' within ${timeoutMs} ms\n${this.proc.describe()}`);
      await sleep(pollMs);
    }
  }
}

/** Waits until `condition()` holds, polling; throws `what` after `timeoutMs`. */
export async function waitUntil(condition: () => boolean, what: string, timeoutMs = convergeTimeoutMsDefault): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(pollMs);
  }
}

/** The node that every live node agrees leads group 0. */
export async function leaderNode(client: Client, cluster: TestCluster, among: readonly TestNode[] = cluster.nodes): Promise<TestNode> {
  const view = await waitForLeader(client, among.map((n) => n.address), among.map((n) => n.spec.id));
  return cluster.node(view.leaderId);
}

export type RawLockOutcome = { readonly kind: 'reply'; readonly reply: ReturnType<typeof schema.LockReply.decode> }
  | { readonly kind: 'error'; readonly code: string; readonly leaderAddress: string };

/**
 * Sends one LockRequest straight to `address` (no NOT_LEADER following, no retry):
 * what that node alone answers.
 */
export async function rawLockRequest(client: Client, address: string, opcode: number,
  fields: Parameters<typeof schema.LockRequest.create>[0] & object, timeoutMs = 3_000): Promise<RawLockOutcome> {
  const conn = await routerOf(client).connection(address);
  try {
    const raw = await conn.request(opcode, schema.LockRequest.encode(fields).finish(), timeoutMs);
    return { kind: 'reply', reply: schema.LockReply.decode(raw) };
  } catch (err) {
    if (!(err instanceof DsyncError)) throw err;
    return { kind: 'error', code: err.code, leaderAddress: err.leaderAddress };
  }
}
