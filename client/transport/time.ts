// The client's clock and timers as an interface: the library passes the real ones
// below, test/sim passes one node's virtual time (its NodeTime fits structurally),
// so the shipped Router and LockClient run unchanged under the simulator.

/** Stops a scheduled callback; calling it twice is harmless. */
export type CancelTimer = () => void;

export interface ClientClock {
  /** Monotonic milliseconds (never the wall clock): every deadline and lease is measured on it. */
  nowMs(): number;
  /**
   * Runs fn once after ms. A `background` timer (keep-alive, loss timer, release retry)
   * does not keep the process alive on its own; others (a request's backoff or deadline) do.
   */
  after(ms: number, fn: () => void, background?: boolean): CancelTimer;
  /** Runs fn every ms until cancelled; never keeps the process alive on its own. */
  every(ms: number, fn: () => void): CancelTimer;
}

/** performance.now() and Node timers. */
export const realClock: ClientClock = {
  nowMs: () => performance.now(),
  after: (ms, fn, background = false) => {
    const t = setTimeout(fn, ms);
    if (background) t.unref();
    return () => clearTimeout(t);
  },
  every: (ms, fn) => {
    const t = setInterval(fn, ms);
    t.unref();
    return () => clearInterval(t);
  },
};

/** A promise resolved after ms on `clock` (a request's backoff: keeps the process alive). */
export function sleepOn(clock: ClientClock, ms: number, background = false): Promise<void> {
  return new Promise((resolve) => { clock.after(ms, resolve, background); });
}
