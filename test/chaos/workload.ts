// The seam between the fault runner and a service's workload: the runner owns the
// cluster, the nemesis, the clock and the history; a workload (locks, queues, cache)
// drives its clients, records its operations, may react to faults
// (e.g. open a fresh client while the leader is paused) and checks its own history.
// Adding a service means adding a Workload; the nemesis does not change.

import type { Anomaly, BaseOp, FaultEvent } from '../checker/history.js';

/** Where every operation of a run goes; ids are unique per run. */
export class History {
  readonly ops: BaseOp[] = [];
  private nextId = 1;

  /** A fresh block of ids for a client process that numbers its own operations. */
  idBlock(size = 1_000_000): number {
    const base = this.nextId;
    this.nextId += size;
    return base;
  }

  add(op: BaseOp): void {
    this.ops.push(op);
  }
}

export interface WorkloadContext {
  /** Client addresses of the nodes, in node order. */
  readonly seeds: readonly string[];
  readonly nodeIds: readonly string[];
  readonly seed: number;
  /** Epoch ms (clock.ts epochNowMs) the run's times count from. */
  readonly originMs: number;
  /** Run-relative ms at which load must stop. */
  readonly loadUntilMs: number;
  readonly history: History;
  /** Deliberately broken behaviours this run injects (canaries); usually none. */
  readonly canaries: readonly string[];
  /** Lock session TTL for clients (and the scale of pauses). */
  readonly ttlMs: number;
  readonly log: (line: string) => void;
}

/** A fault as the workload hears of it: `leader` is the group 0 leader when it began, if known. */
export interface FaultNotice {
  readonly fault: FaultEvent;
  readonly leader: string | null;
  /** Scenario tag the nemesis attached (e.g. 'first-lock'), or ''. */
  readonly tag: string;
}

export interface CheckOutcome {
  readonly anomalies: Anomaly[];
  /** Named counts for the report. */
  readonly stats: Readonly<Record<string, number>>;
}

export interface Workload {
  readonly service: string;
  /** Starts the clients; resolves once load is flowing. */
  start(ctx: WorkloadContext): Promise<void>;
  onFaultStart?(notice: FaultNotice): void;
  /** Stops load (bounded), waits for every client to finish and exit. */
  stop(): Promise<void>;
  /** Teardown after a failure: ends every client at once (stop() may never have been called). */
  kill(): void;
  /** Canaries this workload knows. */
  readonly canaries: readonly string[];
  /** Of those, the ones that are node bugs: canary -> the DSYNC_CANARY name the nodes start with (server/node/canary.ts). */
  readonly nodeCanaries?: Readonly<Record<string, string>>;
  /** Checks this service's operations. */
  check(ops: readonly BaseOp[]): CheckOutcome;
  /** The operations whose success measures availability (e.g. lock acquires). */
  availabilityOps(ops: readonly BaseOp[]): BaseOp[];
}
