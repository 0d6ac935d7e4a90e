// The lock service's workload for the fault runner: lock clients in their own
// processes (two per node, each attached to a different node first) taking
// exclusive and shared locks that guard a fenced resource living here, in the
// runner: a storage service that honours fencing tokens, judging every access in
// one order. Reacts to a leader pause tagged 'first-lock' by starting a fresh
// client whose very first lock() meets the pause (issue 7, item 1).
// Canaries: 'fence-off' (the resource honours nothing), 'ignore-lost' (clients keep
// using a lock after `lost` fired).

import { type ChildProcess, fork } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BaseOp } from '../checker/history.js';
import { type AccessOp, checkLockHistory, type LockMode, type LockOp } from '../checker/lock-safety.js';
import type { ClientMessage, LockClientArgs, RunnerMessage } from './lock-client.js';
import type { CheckOutcome, FaultNotice, Workload, WorkloadContext } from './workload.js';
import { epochNowMs } from './clock.js';

const clientScript = join(dirname(fileURLToPath(import.meta.url)), 'lock-client.js');

/** Resource rule: exclusive needs token >= every accepted token; shared, >= every accepted exclusive token. */
export class FencedResource {
  private readonly newest = new Map<string, { all: number; exclusive: number }>();
  private seq = 0;

  constructor(private readonly honourTokens: boolean) {}

  /** Judges one access; returns the verdict and its place in the resource's order. */
  access(lock: string, mode: LockMode, token: number): { accepted: boolean; seq: number } {
    const n = this.newest.get(lock) ?? { all: 0, exclusive: 0 };
    this.newest.set(lock, n);
    const bound = mode === 'exclusive' ? n.all : n.exclusive;
    const accepted = !this.honourTokens || token >= bound;
    if (accepted) {
      n.all = Math.max(n.all, token);
      if (mode === 'exclusive') n.exclusive = Math.max(n.exclusive, token);
    }
    return { accepted, seq: this.seq++ };
  }
}

export interface LockWorkloadOptions {
  readonly clientsPerNode?: number;
  readonly locks?: readonly string[];
  readonly sharedRatio?: number;
  readonly stallRatio?: number;
  /** Holds per client at most (a bound on the load loop besides time). */
  readonly opsMax?: number;
}

/** How long stop() waits for clients before killing them. */
const stopGraceMs = 15_000;

export class LockWorkload implements Workload {
  readonly service = 'locks';
  readonly canaries = ['fence-off', 'ignore-lost'] as const;
  private ctx: WorkloadContext | null = null;
  private resource = new FencedResource(true);
  private readonly children = new Set<ChildProcess>();
  private readonly finished: Promise<void>[] = [];
  private clientsStarted = 0;
  /** A fresh client waiting for the 'first-lock' fault. */
  private standby: ChildProcess | null = null;

  constructor(private readonly opts: LockWorkloadOptions = {}) {}

  async start(ctx: WorkloadContext): Promise<void> {
    this.ctx = ctx;
    this.resource = new FencedResource(!ctx.canaries.includes('fence-off'));
    const perNode = this.opts.clientsPerNode ?? 2;
    for (let k = 0; k < perNode; k++) {
      for (let i = 0; i < ctx.seeds.length; i++) this.spawn(i, false);
    }
    this.standby = this.spawn(0, true);
    await Promise.resolve();
  }

  onFaultStart(notice: FaultNotice): void {
    const ctx = this.ctx;
    if (ctx === null || notice.tag !== 'first-lock' || notice.leader === null) return;
    const i = ctx.nodeIds.indexOf(notice.leader);
    const c = this.standby;
    this.standby = null;
    if (i < 0 || c === null || !c.connected) return;
    // Attached to the paused leader: its first lock() starts there.
    c.send({ t: 'go', seeds: [...ctx.seeds.slice(i), ...ctx.seeds.slice(0, i)], node: notice.leader } satisfies RunnerMessage);
  }

  async stop(): Promise<void> {
    for (const c of this.children) if (c.connected) c.send({ t: 'stop' } satisfies RunnerMessage);
    const timer = setTimeout(() => this.kill(), stopGraceMs);
    await Promise.all(this.finished);
    clearTimeout(timer);
  }

  /** Kills every client still running (teardown after a failure). */
  kill(): void {
    for (const c of this.children) this.killChild(c);
  }

  check(ops: readonly BaseOp[]): CheckOutcome {
    const r = checkLockHistory(ops.filter((o): o is LockOp => o.service === 'locks'));
    return { anomalies: r.anomalies, stats: { ...r.stats } };
  }

  availabilityOps(ops: readonly BaseOp[]): BaseOp[] {
    return ops.filter((o) => o.service === 'locks' && o.f === 'acquire');
  }

  private killChild(c: ChildProcess): void {
    if (c.exitCode !== null || c.signalCode !== null || c.pid === undefined) return;
    try {
      process.kill(c.pid, 'SIGCONT');
      process.kill(c.pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }

  private spawn(nodeIndex: number, once: boolean): ChildProcess | null {
    const ctx = this.ctx;
    if (ctx === null) return null;
    const index = this.clientsStarted++;
    const node = ctx.nodeIds[nodeIndex] ?? '?';
    const seeds = [...ctx.seeds.slice(nodeIndex), ...ctx.seeds.slice(0, nodeIndex)];
    const args: LockClientArgs = {
      name: once ? `fresh${index}@${node}` : `c${index}@${node}`, seeds, node, seed: (ctx.seed * 1009 + index * 7919) >>> 0,
      originMs: ctx.originMs, idBase: ctx.history.idBlock(), ttlMs: ctx.ttlMs, locks: this.opts.locks ?? ['x', 'y'],
      sharedRatio: this.opts.sharedRatio ?? 0.25,
      stallRatio: ctx.canaries.some((c) => (this.canaries as readonly string[]).includes(c)) ? 0.3 : (this.opts.stallRatio ?? 0.04),
      loadUntilMs: ctx.loadUntilMs, opsMax: this.opts.opsMax ?? 2_000, once, standby: once, canary: ctx.canaries.includes('ignore-lost') ? 'ignore-lost' : null,
    };
    const child = fork(clientScript, [JSON.stringify(args)], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], execArgv: [] });
    this.children.add(child);
    let stderr = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (s: string) => { stderr = (stderr + s).slice(-4_000); });
    child.on('message', (m: ClientMessage) => this.onMessage(child, args, m));
    this.finished.push(new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.children.delete(child);
        if (code !== 0) ctx.log(`client ${args.name} exited ${signal ?? `code ${code}`}${stderr === '' ? '' : `: ${stderr.trim()}`}`);
        resolve();
      });
    }));
    return child;
  }

  private onMessage(child: ChildProcess, args: LockClientArgs, m: ClientMessage): void {
    const ctx = this.ctx;
    if (ctx === null) return;
    if (m.t === 'op') {
      ctx.history.add(m.op);
    } else if (m.t === 'access') {
      const v = this.resource.access(m.lock, m.mode, m.token);
      const endMs = epochNowMs() - ctx.originMs;
      const op: AccessOp = { id: m.id, process: args.name, node: args.node, service: 'locks', f: 'access', lock: m.lock, mode: m.mode,
        grant: m.grant, token: m.token, accepted: v.accepted, zombie: m.zombie, resourceSeq: v.seq, invokeMs: m.invokeMs, endMs,
        outcome: v.accepted ? 'ok' : 'fail', ...(m.stalledFromMs === undefined ? {} : { stalledFromMs: m.stalledFromMs }) };
      ctx.history.add(op);
      if (child.connected) child.send({ t: 'verdict', req: m.req, accepted: v.accepted } satisfies RunnerMessage);
    }
  }
}
