// Time and scheduling as interfaces: the node passes the real ones below, test/sim
// passes a virtual clock and an event queue, so the same server/ classes run in both.

import { performance } from 'node:perf_hooks';

/** Milliseconds that only move forward (never the wall clock): every duration is measured on it. */
export interface MonotonicClock {
  nowMs(): number;
}

/** Stops a scheduled callback; calling it twice is harmless. */
export type Cancel = () => void;

export interface Scheduler {
  /** Runs fn once, after the current turn (setImmediate on a node): batches a turn's work. */
  defer(fn: () => void): void;
  /** Runs fn once after ms. */
  after(ms: number, fn: () => void): Cancel;
  /** Runs fn every ms until cancelled. */
  every(ms: number, fn: () => void): Cancel;
}

export const monotonicClock: MonotonicClock = { nowMs: () => performance.now() };

/** Rounds of deferred callbacks one check phase runs before the rest waits for the next event-loop iteration. */
const deferRoundsPerTurnMax = 32;
/**
 * Microtask turns a round waits for before looking for callbacks deferred by it: promise
 * chains the round resolved (a proposal's answer is three hops deep: runner, service
 * batch, request) defer their frames inside them.
 */
const deferMicrotaskYields = 8;

/**
 * The node's defer. Callbacks deferred during a turn run together after it (one
 * setImmediate), as before; callbacks THEY defer (and the microtasks they started defer)
 * run in later rounds of the same check phase, not one event-loop iteration later each.
 * A request's path through a node is a chain of such hand-offs (the service's batch, the
 * Raft Ready, the peer batch, the frame writer), and under load each iteration costs all
 * the I/O that arrived meanwhile: a chain of five cost five iterations of latency. After
 * deferRoundsPerTurnMax rounds the rest waits for the next iteration, so I/O is not starved.
 */
export class TurnDeferQueue {
  private queue: (() => void)[] = [];
  /** A drain is pending (setImmediate) or running. */
  private draining = false;
  private readonly drainBound = (): void => {
    void this.drain();
  };

  defer(fn: () => void): void {
    this.queue.push(fn);
    if (!this.draining) {
      this.draining = true;
      setImmediate(this.drainBound);
    }
  }

  private async drain(): Promise<void> {
    try {
      for (let round = 0; round < deferRoundsPerTurnMax && this.queue.length > 0; round++) {
        const batch = this.queue;
        this.queue = [];
        for (let i = 0; i < batch.length; i++) {
          try {
            (batch[i] as () => void)();
          } catch (err) {
            // As a throwing setImmediate callback would: an uncaught exception; the callbacks after it still run.
            this.queue = [...batch.slice(i + 1), ...this.queue];
            process.nextTick(() => { throw err; });
            return;
          }
        }
        for (let k = 0; k < deferMicrotaskYields; k++) await undefined;
      }
    } finally {
      this.draining = false;
      if (this.queue.length > 0) {
        this.draining = true;
        setImmediate(this.drainBound);
      }
    }
  }
}

const turnDeferQueue = new TurnDeferQueue();

/** Defers fn after the current turn, chained with the node's other deferred work (TurnDeferQueue). */
export function deferInTurn(fn: () => void): void {
  turnDeferQueue.defer(fn);
}

/** Timers that never keep the process alive on their own: a stopped node exits. */
export const nodeScheduler: Scheduler = {
  defer: deferInTurn,
  after: (ms, fn) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return () => clearTimeout(t);
  },
  every: (ms, fn) => {
    const t = setInterval(fn, ms);
    t.unref();
    return () => clearInterval(t);
  },
};
