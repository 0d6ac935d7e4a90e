// The cache's workload for the fault runner: two clients per node (in the runner's
// process, each attached to its node first) reading, writing and deleting 16 shared keys,
// so lines are shared across nodes and every write must invalidate copies elsewhere.
// Every written value is unique. The checker is per-key linearizability
// (test/checker/cache-linearizability.ts) over the recorded history, in its lossy form:
// the homes keep values in in-process memory, so a home's death or a ring change may
// lose a key (it then reads as absent, which the cache promises), but a value read must
// always be the latest one: an older value after a newer one is an anomaly.
// A write that failed or got no answer may or may not have happened (unknown); a read
// that failed says nothing and is left out.
// Canary 'cache-skip-invalidation': homes that skip one invalidation per write (node
// bug, DSYNC_CANARY=cache-skip-invalidation): a node keeps serving its stale copy.

import { Client } from '../../client/index.js';
import { Xoshiro128 } from '../../core/prng.js';
import { checkKeys, type HistoryOp } from '../checker/cache-linearizability.js';
import type { BaseOp } from '../checker/history.js';
import { epochNowMs } from './clock.js';
import type { CheckOutcome, Workload, WorkloadContext } from './workload.js';

const keys = 16;
const clientsPerNode = 2;
/** Pause between one client's operations. */
const opGapMs = 20;
/**
 * Operations per client at most (a bound besides time): 6,000, or 20 per second of load
 * for long runs (a client manages about 6 a second), so a soak's load lasts its whole time.
 */
const opsMaxFloor = 6_000;
const opsPerSecondMax = 20;

export interface CacheOp extends BaseOp {
  readonly f: 'get' | 'set' | 'delete';
  readonly key: string;
  /** set: the value written; get: the value read (null: absent); delete: null. */
  readonly value: string | null;
}

export class CacheWorkload implements Workload {
  readonly service = 'cache';
  readonly canaries = ['cache-skip-invalidation'] as const;
  readonly nodeCanaries = { 'cache-skip-invalidation': 'cache-skip-invalidation' };
  private ctx: WorkloadContext | null = null;
  private readonly clients: Client[] = [];
  private readonly loops: Promise<void>[] = [];
  private running = true;
  private nextId = 0;

  async start(ctx: WorkloadContext): Promise<void> {
    this.ctx = ctx;
    this.nextId = ctx.history.idBlock();
    for (let k = 0; k < clientsPerNode; k++) {
      for (let i = 0; i < ctx.seeds.length; i++) {
        const name = `cache${k}@${ctx.nodeIds[i] ?? '?'}`;
        const c = await Client.connect({ seeds: [...ctx.seeds.slice(i), ...ctx.seeds.slice(0, i)], name, requestTimeoutMs: 4_000 });
        this.clients.push(c);
        this.loops.push(this.run(c, name, ctx.nodeIds[i] ?? '?', new Xoshiro128((ctx.seed * 41 + k * 7 + i) >>> 0)));
      }
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    await Promise.all(this.clients.map((c) => c.close().catch(() => {})));
  }

  kill(): void {
    this.running = false;
    for (const c of this.clients) void c.close().catch(() => {});
  }

  check(ops: readonly BaseOp[]): CheckOutcome {
    const mine = ops.filter((o): o is CacheOp => o.service === 'cache');
    const history: HistoryOp[] = [];
    const idsByKey = new Map<string, number[]>();
    let reads = 0;
    let hits = 0;
    for (const o of mine) {
      if (o.f === 'get' && o.outcome !== 'ok') continue;
      if (o.f === 'get') {
        reads++;
        if (o.value !== null) hits++;
      }
      history.push({ key: o.key, kind: o.f === 'get' ? 'get' : 'set', value: o.value, invoke: o.invokeMs, complete: o.outcome === 'ok' ? o.endMs : Infinity });
      const ids = idsByKey.get(o.key) ?? [];
      ids.push(o.id);
      idsByKey.set(o.key, ids);
    }
    const r = checkKeys(history, { lossy: true });
    return {
      anomalies: r.failedKeys.map((key) => ({ kind: 'non-linearizable', ops: (idsByKey.get(key) ?? []).slice(-20),
        message: `key ${key}: no order of its ${idsByKey.get(key)?.length ?? 0} operations explains every read (a stale value was served); last 20 shown` })),
      stats: { reads, readsWithValue: hits, writes: mine.filter((o) => o.f !== 'get').length, keysChecked: idsByKey.size, statesExplored: r.explored },
    };
  }

  availabilityOps(ops: readonly BaseOp[]): BaseOp[] {
    return ops.filter((o) => o.service === 'cache' && o.f === 'get');
  }

  private now(): number {
    return epochNowMs() - (this.ctx as WorkloadContext).originMs;
  }

  private async run(client: Client, name: string, node: string, prng: Xoshiro128): Promise<void> {
    const ctx = this.ctx as WorkloadContext;
    const opsMax = Math.max(opsMaxFloor, Math.ceil((ctx.loadUntilMs / 1000) * opsPerSecondMax));
    for (let n = 0; this.running && n < opsMax && this.now() < ctx.loadUntilMs; n++) {
      const key = `c${prng.int(0, keys - 1)}`;
      const roll = prng.next();
      const f: CacheOp['f'] = roll < 0.6 ? 'get' : roll < 0.92 ? 'set' : 'delete';
      const written = f === 'set' ? `${name}#${n}` : null;
      const invokeMs = this.now();
      let value: string | null = written;
      let outcome: CacheOp['outcome'] = 'ok';
      let error: string | undefined;
      try {
        if (f === 'get') value = await client.cache.getString(key);
        else if (f === 'set') await client.cache.set(key, written as string);
        else await client.cache.delete(key);
      } catch (err) {
        // A write without an answer may have happened; a read without one tells nothing (left out by check()).
        outcome = f === 'get' ? 'fail' : 'unknown';
        error = err instanceof Error ? (err as { code?: string }).code ?? err.message : String(err);
      }
      const op: CacheOp = { id: this.nextId++, process: name, node, service: 'cache', f, key, value, invokeMs, endMs: this.now(), outcome,
        ...(error === undefined ? {} : { error }) };
      ctx.history.add(op);
      await new Promise((r) => setTimeout(r, opGapMs));
    }
  }
}
