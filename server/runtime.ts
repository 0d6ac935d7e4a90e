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

/** Timers that never keep the process alive on their own: a stopped node exits. */
export const nodeScheduler: Scheduler = {
  defer: (fn) => { setImmediate(fn); },
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
