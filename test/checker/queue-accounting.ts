// Queue accounting over a client-side history (fault runner on real processes, the
// simulator, the real-process queue tests): what producers were told against what
// consumers received. Pure functions: a history in, anomalies and counts out.
//
// Every published value is unique in a run (the workload makes it so), which turns
// "was this message delivered" into a set lookup. Properties:
// - lost: a publish answered ok whose value no consumer of a checked group ever
//   received (the history must end with the consumers drained: the caller says which
//   groups were drained).
// - failed-delivered: a consumer received a value whose publish was answered `fail`
//   (fail means "certainly did not happen"); unknown publishes may or may not appear.
// - unexpected: a consumer received a value nobody tried to publish.
// - offset-conflict: two different values at one (partition, offset), seen by a
//   producer's answer or by a delivery: an acknowledged message was overwritten.
// - producer-order: one producer's publishes of one key, each answered ok before the
//   next was invoked, got offsets that do not increase (order per key broken).
// - delivery-order: one consumer received first attempts of one partition out of
//   offset order (a partition hands new offsets out in order; redeliveries, attempt
//   > 1, may come at any time and are exempt: "per-key order between redeliveries").
// Counts, not anomalies: duplicates (a value delivered to a group more than once,
// expected under at-least-once), redeliveries, unknown publishes that did/didn't land.

import type { Anomaly, BaseOp } from './history.js';

export interface PublishOp extends BaseOp {
  readonly f: 'publish';
  readonly producer: string;
  readonly key: string;
  /** Unique per run. */
  readonly value: string;
  /** On ok: where it went. */
  readonly partition?: number;
  readonly offset?: number;
}

export interface DeliverOp extends BaseOp {
  readonly f: 'deliver';
  readonly group: string;
  readonly consumer: string;
  readonly key: string;
  readonly value: string;
  readonly partition: number;
  readonly offset: number;
  /** 1 for the first delivery of this offset to the group. */
  readonly attempt: number;
}

export type QueueOp = PublishOp | DeliverOp;

export interface QueueCheckOptions {
  /** Groups whose consumers drained the topic at the end: `lost` is checked for these. */
  readonly drainedGroups: readonly string[];
}

export interface QueueCheckStats {
  readonly published: { ok: number; fail: number; unknown: number };
  /** Unknown publishes that were delivered (they happened). */
  readonly unknownLanded: number;
  readonly deliveries: number;
  readonly redeliveries: number;
  /** Deliveries to a group of a value it had already received (at-least-once repeats). */
  readonly duplicates: number;
  readonly lost: number;
}

export interface QueueCheckResult {
  readonly anomalies: Anomaly[];
  readonly stats: QueueCheckStats;
}

export function checkQueueHistory(ops: readonly QueueOp[], opts: QueueCheckOptions): QueueCheckResult {
  const anomalies: Anomaly[] = [];
  const publishes = new Map<string, PublishOp>();
  const published = { ok: 0, fail: 0, unknown: 0 };
  for (const op of ops) {
    if (op.f !== 'publish') continue;
    published[op.outcome]++;
    const earlier = publishes.get(op.value);
    if (earlier !== undefined) throw new Error(`the workload published value ${op.value} twice (ops ${earlier.id}, ${op.id}): values must be unique`);
    publishes.set(op.value, op);
  }

  // Who sits at each (partition, offset), from producers' answers and deliveries.
  const atOffset = new Map<string, { value: string; op: number }>();
  const claim = (partition: number, offsetAt: number, value: string, op: number): void => {
    const where = `${partition}/${offsetAt}`;
    const seen = atOffset.get(where);
    if (seen === undefined) atOffset.set(where, { value, op });
    else if (seen.value !== value) {
      anomalies.push({ kind: 'offset-conflict', ops: [seen.op, op],
        message: `partition ${partition} offset ${offsetAt} holds ${seen.value} (op ${seen.op}) and ${value} (op ${op})` });
    }
  };
  for (const p of publishes.values()) {
    if (p.outcome === 'ok' && p.partition !== undefined && p.offset !== undefined) claim(p.partition, p.offset, p.value, p.id);
  }

  const receivedBy = new Map<string, Set<string>>();
  const lastFirstOffset = new Map<string, { offset: number; op: number }>();
  let deliveries = 0;
  let redeliveries = 0;
  let duplicates = 0;
  const landedUnknown = new Set<string>();
  for (const op of ops) {
    if (op.f !== 'deliver' || op.outcome !== 'ok') continue;
    deliveries++;
    if (op.attempt > 1) redeliveries++;
    claim(op.partition, op.offset, op.value, op.id);
    const p = publishes.get(op.value);
    if (p === undefined) {
      anomalies.push({ kind: 'unexpected', ops: [op.id], message: `group ${op.group} received ${op.value}, which nobody published` });
    } else if (p.outcome === 'fail') {
      anomalies.push({ kind: 'failed-delivered', ops: [p.id, op.id],
        message: `group ${op.group} received ${op.value}, whose publish (op ${p.id}) failed: ${p.error ?? ''}` });
    } else if (p.outcome === 'unknown') {
      landedUnknown.add(op.value);
    }
    let got = receivedBy.get(op.group);
    if (got === undefined) {
      got = new Set();
      receivedBy.set(op.group, got);
    }
    if (got.has(op.value)) duplicates++;
    got.add(op.value);
    if (op.attempt === 1) {
      const stream = `${op.group}\u0000${op.consumer}\u0000${op.partition}`;
      const last = lastFirstOffset.get(stream);
      if (last !== undefined && op.offset <= last.offset) {
        anomalies.push({ kind: 'delivery-order', ops: [last.op, op.id],
          message: `consumer ${op.consumer} of ${op.group} got partition ${op.partition} offset ${op.offset} (first attempt) after offset ${last.offset}` });
      }
      if (last === undefined || op.offset > last.offset) lastFirstOffset.set(stream, { offset: op.offset, op: op.id });
    }
  }

  // Producer order per key: publishes that did not overlap in time keep their order.
  const byProducerKey = new Map<string, PublishOp[]>();
  for (const p of publishes.values()) {
    if (p.outcome !== 'ok' || p.offset === undefined) continue;
    const k = `${p.producer}\u0000${p.key}`;
    const list = byProducerKey.get(k) ?? [];
    list.push(p);
    byProducerKey.set(k, list);
  }
  for (const list of byProducerKey.values()) {
    list.sort((a, b) => a.invokeMs - b.invokeMs);
    for (let i = 1; i < list.length; i++) {
      const a = list[i - 1];
      const b = list[i];
      if (a === undefined || b === undefined || a.endMs > b.invokeMs) continue;
      if (a.partition === b.partition && (b.offset ?? 0) <= (a.offset ?? 0)) {
        anomalies.push({ kind: 'producer-order', ops: [a.id, b.id],
          message: `producer ${a.producer} key ${a.key}: ${b.value} (offset ${b.offset}) was published after ${a.value} (offset ${a.offset})` });
      }
    }
  }

  let lost = 0;
  for (const group of opts.drainedGroups) {
    const got = receivedBy.get(group) ?? new Set<string>();
    for (const p of publishes.values()) {
      if (p.outcome !== 'ok' || got.has(p.value)) continue;
      lost++;
      anomalies.push({ kind: 'lost', ops: [p.id],
        message: `group ${group} never received ${p.value} (acknowledged at partition ${p.partition} offset ${p.offset})` });
    }
  }
  return {
    anomalies,
    stats: { published, unknownLanded: landedUnknown.size, deliveries, redeliveries, duplicates, lost },
  };
}
