// Test helper (not a test): a deliberately naive reference model of one queue
// partition, written from the rules in core/queue/partition.ts's header, not from its
// code. Plain arrays and records, everything recomputed: the cursor is the first
// offset not done (a scan), the next redelivery a sort of every pending delivery,
// expiry a sort of every in-flight one; message sizes are counted here, not by the
// store. Bounds the random tests never reach (group, consumer and producer counts,
// batch sizes) are left out.

import { queueFetchBytesMax } from '../../../core/constants.js';
import type { QueueCommand } from '../../../core/queue/commands.js';
import type { PartitionConfig } from '../../../core/queue/partition.js';

export type Plain = Record<string, unknown>;

interface MOut {
  id: number;
  offset: number;
  attempt: number;
  inFlight: boolean;
  consumer: string | null;
  deadlineMs: number;
  ackDeadlineMs: number;
  readyAtMs: number;
}
type MStatus = 'done' | MOut;
interface MConsumer {
  id: string;
  lastSeq: number;
  lastResult: Plain;
}
interface MGroup {
  name: string;
  /** Every offset below floor is done; statuses cover [floor, next). */
  floor: number;
  next: number;
  status: Map<number, MStatus>;
  /** Least recently active first. */
  consumers: MConsumer[];
}
interface MMessage {
  ts: number;
  size: number;
  onlyGroup: string | undefined;
}
interface MLetter {
  seq: number;
  group: string;
  offset: number;
  deliveries: number;
  reason: string;
}
interface MBatch {
  firstSeq: number;
  count: number;
  baseOffset: number;
  timestampMs: number;
}

const e = (code: string): Plain => ({ kind: 'error', code });
const backoff = (attempt: number): number => Math.min(1_000 * 2 ** (attempt - 1), 60_000);
const size = (m: { key: Uint8Array; value: Uint8Array; headers: readonly { name: string; value: Uint8Array }[] }): number =>
  m.key.length + m.value.length + m.headers.reduce((n, h) => n + new TextEncoder().encode(h.name).length + h.value.length, 0);

export class QueueModel {
  messages: MMessage[] = [];
  logStart = 0;
  lastTs = 0;
  nextId = 1;
  producers: Record<string, { lastSeq: number; batches: MBatch[] }> = {};
  groups: MGroup[] = [];
  /** The dead-letter outbox: one batch per command that dead-lettered something. */
  outbox: { firstSeq: number; letters: MLetter[] }[] = [];
  nextLetterSeq = 1;
  private events: Plain[] = [];
  private letters: MLetter[] = [];

  constructor(readonly config: PartitionConfig, readonly outboxMax = 10_000) {}

  get logEnd(): number {
    return this.messages.length;
  }

  cursor(g: MGroup): number {
    for (let o = g.floor; o < g.next; o++) if (g.status.get(o) !== 'done') return o;
    return g.next;
  }

  apply(cmd: QueueCommand): { result: Plain; events: Plain[]; duplicate: boolean } {
    this.events = [];
    this.letters = [];
    let duplicate = false;
    const now = cmd.nowMs;
    let result: Plain;
    switch (cmd.kind) {
      case 'append': {
        const n = cmd.messages.length;
        if (n === 0) {
          result = e('BAD_REQUEST');
          break;
        }
        const p = cmd.producer === undefined ? undefined : this.producers[cmd.producer];
        const same = p?.batches.find((b) => b.firstSeq === cmd.firstSeq);
        if (same !== undefined) {
          result = same.count === n ? { kind: 'appended', baseOffset: same.baseOffset, count: n, timestampMs: same.timestampMs } : e('BAD_REQUEST');
          duplicate = same.count === n;
          break;
        }
        if (p !== undefined && (cmd.firstSeq as number) <= p.lastSeq) {
          result = e('STALE_REQUEST');
          break;
        }
        const ts = Math.max(now, this.lastTs);
        const base = this.logEnd;
        for (const m of cmd.messages) this.messages.push({ ts, size: size(m), onlyGroup: m.onlyGroup });
        this.lastTs = ts;
        if (cmd.producer !== undefined) {
          const q = p ?? { lastSeq: 0, batches: [] };
          q.batches.push({ firstSeq: cmd.firstSeq as number, count: n, baseOffset: base, timestampMs: ts });
          if (q.batches.length > 5) q.batches.shift();
          q.lastSeq = (cmd.firstSeq as number) + n - 1;
          this.producers[cmd.producer] = q;
        }
        this.retain(now);
        result = { kind: 'appended', baseOffset: base, count: n, timestampMs: ts };
        break;
      }
      case 'fetch':
      case 'ack':
      case 'nack':
      case 'extend': {
        let g = this.groups.find((x) => x.name === cmd.group);
        const known = g?.consumers.find((x) => x.id === cmd.consumer);
        if (known !== undefined && known.lastSeq === cmd.seq) {
          result = known.lastResult;
          duplicate = true;
          break;
        }
        if (known !== undefined && cmd.seq < known.lastSeq) {
          result = e('STALE_REQUEST');
          break;
        }
        if (g === undefined) {
          if (cmd.kind === 'ack') {
            result = { kind: 'acked', statuses: cmd.items.map(() => 'NOT_FOUND') };
            break;
          }
          if (cmd.kind !== 'fetch') {
            result = e('NOT_FOUND');
            break;
          }
          g = { name: cmd.group, floor: this.logStart, next: this.logStart, status: new Map(), consumers: [] };
          this.groups.push(g);
        }
        let c = g.consumers.find((x) => x.id === cmd.consumer);
        g.consumers = g.consumers.filter((x) => x !== c);
        c ??= { id: cmd.consumer, lastSeq: 0, lastResult: { kind: 'ok' } };
        g.consumers.push(c);
        if (cmd.kind === 'fetch') result = this.fetch(g, c.id, cmd.max, cmd.ackDeadlineMs ?? this.config.ackDeadlineMs, now);
        else if (cmd.kind === 'ack') {
          const statuses: string[] = [];
          for (const item of cmd.items) {
            const s = this.current(g, item.delivery, item.attempt);
            if (typeof s === 'string') statuses.push(s);
            else {
              g.status.set(s.offset, 'done');
              statuses.push('OK');
            }
          }
          result = { kind: 'acked', statuses };
        } else if (cmd.kind === 'nack') {
          const s = this.current(g, cmd.delivery, cmd.attempt);
          if (typeof s === 'string') result = e(s);
          else {
            const at = now + (cmd.delayMs ?? backoff(s.attempt));
            if (s.inFlight) {
              const dead = this.fail(g, s, 'nacked', at);
              result = { kind: 'nacked', redeliverAtMs: dead ? -1 : at, deadLettered: dead };
            } else {
              s.readyAtMs = at;
              result = { kind: 'nacked', redeliverAtMs: at, deadLettered: false };
            }
          }
        } else {
          const s = this.current(g, cmd.delivery, cmd.attempt);
          if (typeof s === 'string') result = e(s);
          else if (!s.inFlight) result = e('LATE_ACK');
          else {
            s.deadlineMs = now + s.ackDeadlineMs;
            result = { kind: 'extended', deadlineMs: s.deadlineMs };
          }
        }
        c.lastSeq = cmd.seq;
        c.lastResult = result;
        break;
      }
      case 'expireDeadlines': {
        const due: { g: MGroup; s: MOut }[] = [];
        for (const g of this.groups) for (const s of g.status.values()) if (s !== 'done' && s.inFlight && s.deadlineMs <= now) due.push({ g, s });
        due.sort((a, b) => a.s.deadlineMs - b.s.deadlineMs || a.s.id - b.s.id);
        for (const { g, s } of due) this.fail(g, s, 'deadline', now);
        result = { kind: 'expired', count: due.length };
        break;
      }
      case 'consumerGone': {
        let count = 0;
        for (const g of this.groups) {
          const held = [...g.status.values()].filter((s): s is MOut => s !== 'done' && s.inFlight && s.consumer === cmd.consumer);
          held.sort((a, b) => a.offset - b.offset);
          for (const s of held) this.fail(g, s, 'consumerGone', now);
          count += held.length;
          g.consumers = g.consumers.filter((x) => x.id !== cmd.consumer);
        }
        result = { kind: 'consumerGone', count };
        break;
      }
      case 'replay': {
        let target: number;
        if ('offset' in cmd.from) target = Math.min(Math.max(cmd.from.offset, this.logStart), this.logEnd);
        else {
          target = this.logEnd;
          for (let o = this.logStart; o < this.logEnd; o++) {
            if ((this.messages[o] as MMessage).ts >= cmd.from.timestampMs) {
              target = o;
              break;
            }
          }
        }
        let g = this.groups.find((x) => x.name === cmd.group);
        if (g === undefined) {
          g = { name: cmd.group, floor: target, next: target, status: new Map(), consumers: [] };
          this.groups.push(g);
        }
        g.floor = target;
        g.next = target;
        g.status = new Map();
        result = { kind: 'replayed', offset: target };
        break;
      }
      case 'deleteGroup': {
        const before = this.groups.length;
        this.groups = this.groups.filter((x) => x.name !== cmd.group);
        result = this.groups.length < before ? { kind: 'ok' } : e('NOT_FOUND');
        break;
      }
      case 'enforceRetention': {
        const dropped = this.retain(now);
        result = { kind: 'retained', logStart: this.logStart, dropped };
        break;
      }
      case 'deadLettersForwarded': {
        const gone = this.outbox.filter((b) => b.firstSeq <= cmd.firstSeq);
        this.outbox = this.outbox.filter((b) => b.firstSeq > cmd.firstSeq);
        result = { kind: 'forwarded', count: gone.reduce((n, b) => n + b.letters.length, 0) };
        break;
      }
    }
    if (this.letters.length > 0) this.outbox.push({ firstSeq: (this.letters[0] as MLetter).seq, letters: this.letters });
    return { result, events: this.events, duplicate };
  }

  private fetch(g: MGroup, consumer: string, max: number, ackDeadlineMs: number, now: number): Plain {
    const holding = [...g.status.values()].filter((s) => s !== 'done' && s.inFlight && s.consumer === consumer).length;
    const room = Math.min(max, this.config.inflightPerConsumerMax - holding);
    const out: Plain[] = [];
    const hand = (s: MOut): void => {
      s.attempt++;
      s.inFlight = true;
      s.consumer = consumer;
      s.ackDeadlineMs = ackDeadlineMs;
      s.deadlineMs = now + ackDeadlineMs;
      out.push({ delivery: s.id, offset: s.offset, attempt: s.attempt, deadlineMs: s.deadlineMs });
    };
    const ready = [...g.status.values()]
      .filter((s): s is MOut => s !== 'done' && !s.inFlight && s.readyAtMs <= now)
      .sort((a, b) => a.readyAtMs - b.readyAtMs || a.offset - b.offset);
    // Bytes bound a fetch as well as counts: the first delivery always goes; past queueFetchBytesMax in all, the fetch ends.
    let bytes = 0;
    const fits = (o: number): boolean => {
      const n = (this.messages[o] as MMessage).size;
      if (out.length > 0 && bytes + n > queueFetchBytesMax) return false;
      bytes += n;
      return true;
    };
    for (const s of ready) {
      if (out.length >= room) break;
      if (!fits(s.offset)) return { kind: 'delivered', deliveries: out };
      hand(s);
    }
    while (out.length < room && g.next < this.logEnd && g.next - this.cursor(g) < this.config.unackedPerGroupMax) {
      const o = g.next;
      const only = (this.messages[o] as MMessage).onlyGroup;
      if (only !== undefined && only !== g.name) {
        g.next++;
        g.status.set(o, 'done');
        continue;
      }
      if (!fits(o)) break;
      g.next++;
      const s: MOut = { id: this.nextId++, offset: o, attempt: 0, inFlight: false, consumer: null, deadlineMs: 0, ackDeadlineMs, readyAtMs: 0 };
      g.status.set(o, s);
      hand(s);
    }
    return { kind: 'delivered', deliveries: out };
  }

  private current(g: MGroup, id: number, attempt: number): MOut | 'NOT_FOUND' | 'LATE_ACK' | 'BAD_REQUEST' {
    const s = [...g.status.values()].find((x): x is MOut => x !== 'done' && x.id === id);
    if (s === undefined) return 'NOT_FOUND';
    if (!Number.isSafeInteger(attempt) || attempt < 1 || attempt > s.attempt) return 'BAD_REQUEST';
    if (attempt < s.attempt) return 'LATE_ACK';
    return s;
  }

  /** True if dead-lettered. */
  private fail(g: MGroup, s: MOut, reason: string, readyAtMs: number): boolean {
    s.inFlight = false;
    s.consumer = null;
    const held = this.outbox.reduce((n, b) => n + b.letters.length, 0) + this.letters.length;
    if (this.config.maxDeliveries > 0 && s.attempt >= this.config.maxDeliveries && held < this.outboxMax) {
      const letter = { seq: this.nextLetterSeq++, group: g.name, offset: s.offset, deliveries: s.attempt, reason };
      this.letters.push(letter);
      this.events.push({ kind: 'deadLettered', ...letter, delivery: s.id });
      g.status.set(s.offset, 'done');
      return true;
    }
    s.readyAtMs = readyAtMs;
    return false;
  }

  private retain(now: number): number {
    const r = this.config.retention;
    if (r.maxAgeMs === 0 && r.maxBytes === 0) return 0;
    // The outbox keeps its letters' messages whatever the topic says.
    const outboxOffsets = this.outbox.flatMap((b) => b.letters.map((l) => l.offset));
    const floor = Math.min(r.dropUnacked ? this.logEnd : Math.min(this.logEnd, ...this.groups.map((g) => this.cursor(g))), ...outboxOffsets);
    let start = this.logStart;
    const bytes = (from: number): number => this.messages.slice(from).reduce((n, m) => n + m.size, 0);
    while (start < floor) {
      const m = this.messages[start] as MMessage;
      if (!((r.maxBytes > 0 && bytes(start) > r.maxBytes) || (r.maxAgeMs > 0 && m.ts + r.maxAgeMs <= now))) break;
      start++;
    }
    const dropped = start - this.logStart;
    this.logStart = start;
    for (const g of this.groups) {
      if (this.cursor(g) >= start) continue;
      for (const o of [...g.status.keys()]) if (o < start) g.status.delete(o);
      g.floor = start;
      g.next = Math.max(g.next, start);
    }
    return dropped;
  }

  /** What the test compares with the partition's read API. */
  view(): Plain {
    return {
      logStart: this.logStart,
      logEnd: this.logEnd,
      outbox: this.outbox,
      groups: this.groups.map((g) => ({
        group: g.name,
        cursor: this.cursor(g),
        next: g.next,
        consumers: g.consumers.map((c) => `${c.id}:${c.lastSeq}`),
        deliveries: [...g.status.values()]
          .filter((s): s is MOut => s !== 'done')
          .sort((a, b) => a.offset - b.offset)
          .map((s) => ({ ...s, group: g.name, delivery: s.id })),
      })),
    };
  }
}
