// Availability over a fault-run history, for any service: which operations
// succeeded while a fault was active and while none was, and how long after each
// fault was healed the first successful operation of the chosen kind completed
// (time to recover). Pure: history and fault windows in, numbers out.

import type { BaseOp, FaultEvent, Outcome } from './history.js';

export interface OutcomeCounts {
  ok: number;
  fail: number;
  unknown: number;
}

export interface Recovery {
  readonly fault: number;
  readonly kind: string;
  readonly detail: string;
  readonly healMs: number;
  /** From heal to the first op completed ok at or after it; null if none before the run ended. */
  readonly recoverMs: number | null;
  /** Another fault began before the recovery (the number mixes both). */
  readonly overlapped: boolean;
}

export interface AvailabilityReport {
  /** Ops invoked while at least one fault was active. */
  readonly duringFaults: OutcomeCounts;
  readonly outsideFaults: OutcomeCounts;
  /** ok / all, in [0, 1] (NaN without ops). */
  readonly okRatioDuring: number;
  readonly okRatioOutside: number;
  readonly recoveries: readonly Recovery[];
  /** Distribution of recoverMs over recovered faults. */
  readonly recoverMsP50: number | null;
  readonly recoverMsMax: number | null;
}

function zero(): OutcomeCounts {
  return { ok: 0, fail: 0, unknown: 0 };
}

function bump(c: OutcomeCounts, o: Outcome): void {
  c[o]++;
}

/**
 * `ops`: the operations that measure availability (e.g. lock acquires). A fault
 * window is [startMs, healMs]; an op belongs to it if invoked inside.
 */
export function availability(ops: readonly BaseOp[], faults: readonly FaultEvent[]): AvailabilityReport {
  const during = zero();
  const outside = zero();
  for (const op of ops) {
    const inFault = faults.some((f) => op.invokeMs >= f.startMs && op.invokeMs <= f.healMs);
    bump(inFault ? during : outside, op.outcome);
  }
  const okEnds = ops.filter((o) => o.outcome === 'ok').map((o) => o.endMs).sort((a, b) => a - b);
  const recoveries: Recovery[] = [];
  for (const f of faults) {
    if (!Number.isFinite(f.healMs)) continue;
    const first = okEnds.find((t) => t >= f.healMs);
    const recoverMs = first === undefined ? null : first - f.healMs;
    const until = first ?? Infinity;
    const overlapped = faults.some((g) => g !== f && g.startMs > f.startMs && g.startMs < until);
    recoveries.push({ fault: f.id, kind: f.kind, detail: f.detail, healMs: f.healMs, recoverMs, overlapped });
  }
  const sorted = recoveries.flatMap((r) => (r.recoverMs === null ? [] : [r.recoverMs])).sort((a, b) => a - b);
  const ratio = (c: OutcomeCounts): number => c.ok / (c.ok + c.fail + c.unknown);
  return {
    duringFaults: during, outsideFaults: outside, okRatioDuring: ratio(during), okRatioOutside: ratio(outside), recoveries,
    recoverMsP50: sorted.length === 0 ? null : (sorted[Math.floor((sorted.length - 1) / 2)] ?? null),
    recoverMsMax: sorted.length === 0 ? null : (sorted[sorted.length - 1] ?? null),
  };
}
