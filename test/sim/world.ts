// Virtual time for the server/ classes in test/sim: one event heap drives every
// simulated node's MonotonicClock and Scheduler (server/runtime.ts), and the
// promise work an event starts is run to the end before the next event, as
// Node drains microtasks between two macrotasks. One seed, one order of events.

import { promiseHooks } from 'node:v8';
import { assert } from '../../core/assert.js';
import type { Cancel, MonotonicClock, Scheduler } from '../../server/runtime.js';
import { EventHeap } from './heap.js';

/** Promise reaction jobs run so far in this thread (counted by a V8 promise hook). */
let reactionsRun = 0;
let hookInstalled = false;
/** The world whose run is in progress: an unhandled rejection is its failure. */
let activeWorld: SimWorld | null = null;

/** Microtask hops one settle() may take before it calls the promise work runaway. */
const settleHopsMax = 100_000;
/** Events between two macrotask yields (they let unhandled rejections surface). */
const eventsPerYield = 4096;

function installHooks(): void {
  if (hookInstalled) return;
  hookInstalled = true;
  promiseHooks.onBefore(() => {
    reactionsRun++;
  });
  process.on('unhandledRejection', (reason) => {
    if (activeWorld !== null) activeWorld.fail(reason);
    else throw reason;
  });
}

/**
 * Returns once the microtask queue is empty: each hop awaits one resolved promise,
 * which runs after every job queued before it; a hop in which no job but our own
 * ran saw an empty queue. Deterministic: microtasks run in a fixed order.
 */
async function settle(): Promise<void> {
  for (let hops = 0; ; hops++) {
    assert(hops < settleHopsMax, 'promise work does not settle');
    const before = reactionsRun;
    await undefined;
    if (reactionsRun - before <= 1) return;
  }
}

export class SimWorld {
  private timeMs = 0;
  private readonly heap = new EventHeap();
  private failure: unknown = null;
  eventsRun = 0;

  constructor() {
    installHooks();
  }

  get nowMs(): number {
    return this.timeMs;
  }

  /** Runs fn `delayMs` from now (after every event already queued for that instant). */
  at(delayMs: number, fn: () => void): void {
    assert(delayMs >= 0 && Number.isFinite(delayMs), `no scheduling into the past or forever (${delayMs})`);
    this.heap.push(this.timeMs + delayMs, fn);
  }

  /** Records the first failure seen inside promise work; the run loop throws it. */
  fail(err: unknown): void {
    if (this.failure === null) this.failure = err ?? new Error('failure without a reason');
  }

  /** Runs fn; a throw becomes this world's failure instead of escaping into server code. */
  guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.fail(err);
    }
  }

  async runUntilTime(endMs: number): Promise<void> {
    activeWorld = this;
    try {
      while (this.heap.peekAt() <= endMs) {
        const ev = this.heap.pop();
        assert(ev !== undefined, 'heap non-empty');
        this.timeMs = ev.at;
        ev.fn();
        this.eventsRun++;
        await settle();
        if (this.eventsRun % eventsPerYield === 0) await new Promise<void>((resolve) => setImmediate(resolve));
        if (this.failure !== null) throw this.failure;
      }
      if (endMs > this.timeMs) this.timeMs = endMs;
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (this.failure !== null) throw this.failure;
    } finally {
      activeWorld = null;
    }
  }

  runMs(ms: number): Promise<void> {
    return this.runUntilTime(this.timeMs + ms);
  }

  /** Runs until pred() holds (checked every `stepMs`) or `msMax` passes; resolves with whether it held. */
  async runUntil(pred: () => boolean, msMax: number, stepMs = 10): Promise<boolean> {
    const endMs = this.timeMs + msMax;
    for (;;) {
      if (pred()) return true;
      if (this.timeMs >= endMs) return false;
      await this.runUntilTime(Math.min(endMs, this.timeMs + stepMs));
    }
  }
}

/** Whether a node's code may run now: gone (crashed since), paused until some time, or running. */
export interface NodeGate {
  /** False once the incarnation that scheduled the callback has crashed. */
  alive(incarnation: number): boolean;
  /** Virtual ms until which the node is frozen (a GC pause, a stopped VM); 0 when running. */
  readonly pausedUntilMs: number;
}

/**
 * One node incarnation's clock and timers. Its clock runs at `rate` (drift) from
 * `offsetMs`; callbacks of a crashed incarnation never run, and callbacks due while
 * the node is paused run, in order, when the pause ends (timers do not catch up).
 */
export class NodeTime implements MonotonicClock, Scheduler {
  constructor(
    private readonly world: SimWorld,
    private readonly gate: NodeGate,
    private readonly incarnation: number,
    private readonly rate: number,
    private readonly offsetMs: number,
  ) {
    assert(rate > 0.5 && rate < 2, 'clock rate within reason');
  }

  get alive(): boolean {
    return this.gate.alive(this.incarnation);
  }

  nowMs(): number {
    return this.offsetMs + this.world.nowMs * this.rate;
  }

  /** fn wrapped so it runs only in this incarnation and only once the node is not paused. */
  gated(fn: () => void): () => void {
    const go = (): void => {
      if (!this.gate.alive(this.incarnation)) return;
      const waitMs = this.gate.pausedUntilMs - this.world.nowMs;
      if (waitMs > 0) {
        this.world.at(waitMs, go);
        return;
      }
      fn();
    };
    return go;
  }

  defer(fn: () => void): void {
    this.world.at(0, this.gated(fn));
  }

  after(ms: number, fn: () => void): Cancel {
    let cancelled = false;
    this.world.at(Math.max(0, ms) / this.rate, this.gated(() => {
      if (!cancelled) fn();
    }));
    return () => {
      cancelled = true;
    };
  }

  every(ms: number, fn: () => void): Cancel {
    assert(ms > 0, 'an interval is positive');
    let cancelled = false;
    const tick = this.gated(() => {
      if (cancelled) return;
      fn();
      if (!cancelled) this.world.at(ms / this.rate, tick);
    });
    this.world.at(ms / this.rate, tick);
    return () => {
      cancelled = true;
    };
  }
}
