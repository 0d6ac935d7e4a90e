// The shape of a fault-run history, shared by every workload, checker and report:
// one record per client operation (invoked, then ok / fail / unknown) and one per
// fault the nemesis injected. Times are milliseconds since the run started, on one
// clock for every process (test/chaos/clock.ts: epoch ms from Date.now() and performance.now()).

/** ok: it happened; fail: it certainly did not; unknown: no answer (it may have happened). */
export type Outcome = 'ok' | 'fail' | 'unknown';

/** What every operation carries, whatever the service. */
export interface BaseOp {
  /** Unique within the run. */
  readonly id: number;
  /** The client (process) that issued it. */
  readonly process: string;
  /** The node the client is attached to (its first seed). */
  readonly node: string;
  /** Which service's workload made it ('locks', later 'queues', 'cache'). */
  readonly service: string;
  /** Operation name within the service ('acquire', 'release', 'access', 'lost', ...). */
  readonly f: string;
  readonly invokeMs: number;
  readonly endMs: number;
  readonly outcome: Outcome;
  /** Error code or message when not ok. */
  readonly error?: string;
}

/** One injected fault: from when it began to when it was healed (Infinity while still active). */
export interface FaultEvent {
  readonly id: number;
  /** 'kill', 'pause', 'partition', 'delay', 'flaky', ... */
  readonly kind: string;
  /** Human-readable detail: which nodes, which links, which variant. */
  readonly detail: string;
  /** Nodes the fault acts on. */
  readonly nodes: readonly string[];
  readonly startMs: number;
  readonly healMs: number;
}

/** A violated promise found by a checker, with the operations that show it. */
export interface Anomaly {
  /** Stable name of the property ('exclusive-overlap', 'token-order', ...). */
  readonly kind: string;
  readonly message: string;
  /** Ids of the operations involved. */
  readonly ops: readonly number[];
}
