// A write waits at its node as long as its client allows (NodeCache.set's waitMs, from
// CacheRequest.wait_ms), not one lease: a NodeCache and a CacheHome wired by hand (one
// clock, ticks as the service runs them, node first), with the home's memory able to stall
// (a slow Redis). Checked: a set whose home needs 1.5 leases (memory stalled) completes when
// its client waits 4 leases, and is applied once; a set sent as a new home starts (it grants
// nothing for one lease) completes; without a wait given, a write is still given up after
// one lease; a huge wait is held to cacheWriteWaitLeasesMax leases. Before waitMs the first
// two answered UNKNOWN_OUTCOME (TIMEOUT to the client) after one lease, though the home
// applied the write afterwards.

import t from 'tap';
import { InMemoryBacking } from '../../../core/cache/backing.js';
import type { MemoryOp } from '../../../core/cache/backing.js';
import { CacheHome } from '../../../core/cache/home.js';
import { cacheConfigDefault } from '../../../core/cache/messages.js';
import type { CacheConfig } from '../../../core/cache/messages.js';
import { NodeCache, PENDING } from '../../../core/cache/node.js';
import type { CacheCompletion } from '../../../core/cache/node.js';
import { cacheWriteWaitLeasesMax } from '../../../core/constants.js';
import { cacheNodeIndex } from '../../../core/ids.js';
import { str, val } from './rig.js';

const cfg: CacheConfig = cacheConfigDefault;
const lease = cfg.leaseMs;
const tickMs = cfg.retryMs / 2;
const HOME = cacheNodeIndex(1);

class Rig {
  nowMs = 100_000;
  readonly backing = new InMemoryBacking();
  readonly home: CacheHome;
  readonly node = new NodeCache(cfg, { self: cacheNodeIndex(0), incarnation: 1, homeOf: () => HOME });
  /** While true, the home's memory operations wait (a stalled store). */
  stalled = false;
  private readonly heldMemory: MemoryOp[] = [];
  readonly done = new Map<number, CacheCompletion>();
  private opId = 0;

  constructor(homeStartedAgoMs: number) {
    this.home = new CacheHome(cfg, { self: HOME, epoch: 7, startedMs: this.nowMs - homeStartedAgoMs });
  }

  set(key: string, value: string, waitMs?: number): number {
    const id = ++this.opId;
    const r = this.node.set(id, key, val(value), this.nowMs, 0, null, waitMs);
    if (r !== PENDING) throw new Error(`set answered ${String(r)} at once`);
    this.deliver();
    return id;
  }

  /** Ticks until `opId` completes or `ms` passed; returns when it completed (ms after now at the call), or null. */
  runUntilDone(opId: number, ms: number): number | null {
    const from = this.nowMs;
    while (this.nowMs - from < ms) {
      if (this.done.has(opId)) return this.nowMs - from;
      this.nowMs += tickMs;
      this.node.tick(this.nowMs);
      this.home.tick(this.nowMs);
      this.deliver();
    }
    return this.done.has(opId) ? this.nowMs - from : null;
  }

  release(): void {
    this.stalled = false;
    this.deliver();
  }

  deliver(): void {
    for (let rounds = 0; rounds < 1000; rounds++) {
      let moved = 0;
      const n = this.node.ready();
      for (const c of n.completions) this.done.set(c.opId, c);
      for (const m of n.messages) {
        moved++;
        this.home.step(m, this.nowMs);
      }
      const h = this.home.ready();
      for (const m of h.messages) {
        moved++;
        this.node.step(m, this.nowMs);
      }
      this.heldMemory.push(...h.memory);
      if (!this.stalled) {
        for (const op of this.heldMemory.splice(0)) {
          moved++;
          if (op.kind === 'read') this.home.memoryRead(op.key, this.backing.read(op.key), this.nowMs);
          else {
            this.backing.write(op.key, op.record);
            this.home.memoryWritten(op.key, this.nowMs);
          }
        }
      }
      if (moved === 0) return;
    }
    throw new Error('the cores kept answering each other');
  }
}

t.test('a set whose home needs 1.5 leases completes when its client waits 4 leases, applied once', async (t) => {
  const r = new Rig(10 * lease);
  r.stalled = true;
  const id = r.set('k', 'v1', 4 * lease);
  t.equal(r.runUntilDone(id, 1.5 * lease), null, 'still waiting after 1.5 leases (memory stalled)');
  r.release();
  const after = r.runUntilDone(id, lease);
  t.not(after, null, 'answered once memory answers');
  const c = r.done.get(id);
  t.ok(c?.ok, `the set succeeded (${c?.ok === false ? c.error : 'ok'})`);
  t.equal(str(r.backing.read('k')?.value ?? null), 'v1', 'memory has it');
  t.equal(r.backing.writes, 1, 'written to memory once, though the node resent it many times');
  t.equal(r.node.counters.writesGivenUp, 0, 'nothing given up');
});

t.test('a set sent as a new home starts (no grants for one lease) completes', async (t) => {
  const r = new Rig(0);
  const id = r.set('k', 'v1', 4 * lease);
  const at = r.runUntilDone(id, 3 * lease);
  t.not(at, null, 'answered');
  t.ok((at as number) >= lease, `after the home's first lease (${at} ms)`);
  t.ok(r.done.get(id)?.ok, 'the set succeeded');
});

t.test('bounds: no wait given is one lease; a huge wait is held to cacheWriteWaitLeasesMax leases', async (t) => {
  const r = new Rig(10 * lease);
  r.stalled = true;
  const id = r.set('k', 'v1');
  const at = r.runUntilDone(id, 3 * lease);
  t.ok(at !== null && at >= lease && at < lease + 2 * tickMs, `given up after one lease (${at} ms)`);
  t.equal(r.done.get(id)?.ok === false && (r.done.get(id) as { error: string }).error, 'UNKNOWN_OUTCOME', 'outcome unknown');

  const r2 = new Rig(10 * lease);
  r2.stalled = true;
  const id2 = r2.set('k', 'v1', 1_000 * lease);
  const at2 = r2.runUntilDone(id2, (cacheWriteWaitLeasesMax + 2) * lease);
  t.ok(at2 !== null && at2 >= cacheWriteWaitLeasesMax * lease && at2 < cacheWriteWaitLeasesMax * lease + 2 * tickMs,
    `given up after ${cacheWriteWaitLeasesMax} leases (${at2} ms)`);
});
