// Unit tests of the lock safety checker and the availability summary, on
// hand-made histories: for each property a history that keeps it passes with no
// anomaly, and one that breaks it yields an anomaly of exactly that kind naming
// the operations involved; expected (zombie) rejections are counted, not flagged.

import t from 'tap';
import { availability } from './availability.js';
import type { FaultEvent } from './history.js';
import { type AccessOp, type AcquireOp, checkLockHistory, type LockMode, type LockOp, type LostOp, type ReleaseOp } from './lock-safety.js';

/** Builds a history with ids in creation order and one resource order for accesses. */
class H {
  readonly ops: LockOp[] = [];
  private seq = 0;

  acquire(process: string, lock: string, mode: LockMode, invokeMs: number, endMs: number, token: number): AcquireOp {
    const op: AcquireOp = { id: this.ops.length, process, node: 'n1', service: 'locks', f: 'acquire', lock, mode, invokeMs, endMs, outcome: 'ok', token };
    this.ops.push(op);
    return op;
  }

  access(g: AcquireOp, atMs: number, accepted: boolean, zombie = false): AccessOp {
    const op: AccessOp = { id: this.ops.length, process: g.process, node: 'n1', service: 'locks', f: 'access', lock: g.lock, mode: g.mode,
      grant: g.id, token: g.token ?? 0, accepted, zombie, resourceSeq: this.seq++, invokeMs: atMs, endMs: atMs + 1,
      outcome: accepted ? 'ok' : 'fail' };
    this.ops.push(op);
    return op;
  }

  release(g: AcquireOp, atMs: number): ReleaseOp {
    const op: ReleaseOp = { id: this.ops.length, process: g.process, node: 'n1', service: 'locks', f: 'release', lock: g.lock, grant: g.id,
      invokeMs: atMs, endMs: atMs + 2, outcome: 'ok' };
    this.ops.push(op);
    return op;
  }

  lost(g: AcquireOp, atMs: number): LostOp {
    const op: LostOp = { id: this.ops.length, process: g.process, node: 'n1', service: 'locks', f: 'lost', lock: g.lock, grant: g.id,
      invokeMs: atMs, endMs: atMs, outcome: 'ok' };
    this.ops.push(op);
    return op;
  }
}

const kinds = (h: H): string[] => checkLockHistory(h.ops).anomalies.map((a) => a.kind).sort();

t.test('a clean history: exclusive holders one after another, shared holders together', async (t) => {
  const h = new H();
  const a = h.acquire('c1', 'x', 'exclusive', 0, 10, 5);
  h.access(a, 11, true);
  h.access(a, 20, true);
  h.release(a, 21);
  const b = h.acquire('c2', 'x', 'exclusive', 5, 30, 8);
  h.access(b, 31, true);
  h.release(b, 40);
  const s1 = h.acquire('c1', 'x', 'shared', 41, 50, 12);
  const s2 = h.acquire('c3', 'x', 'shared', 42, 55, 13);
  h.access(s2, 56, true);
  h.access(s1, 57, true); // older shared token after a newer shared one: both legitimately hold
  h.access(s2, 58, true);
  h.release(s1, 60);
  h.release(s2, 61);
  const r = checkLockHistory(h.ops);
  t.same(r.anomalies, []);
  t.equal(r.stats.grantsExclusive, 2);
  t.equal(r.stats.grantsShared, 2);
  t.equal(r.stats.accessesAccepted, 6);
});

t.test('a zombie holder fenced out is expected, not an anomaly', async (t) => {
  const h = new H();
  const a = h.acquire('c1', 'x', 'exclusive', 0, 10, 5);
  h.access(a, 11, true);
  h.lost(a, 3000);
  const b = h.acquire('c2', 'x', 'exclusive', 5, 3100, 9);
  h.access(b, 3101, true);
  h.access(a, 4000, false, true); // stalled past its lease, wrote without looking
  h.release(b, 4100);
  const r = checkLockHistory(h.ops);
  t.same(r.anomalies, []);
  t.equal(r.stats.zombieRejected, 1);
  t.equal(r.stats.locksLost, 1);
});

t.test('fence-stale-accept and exclusive-overlap: a resource that honours nothing', async (t) => {
  const h = new H();
  const a = h.acquire('c1', 'x', 'exclusive', 0, 10, 5);
  h.access(a, 11, true);
  h.lost(a, 3000);
  const b = h.acquire('c2', 'x', 'exclusive', 5, 3100, 9);
  h.access(b, 3101, true);
  const z = h.access(a, 4000, true, true);
  h.access(b, 4001, true);
  const r = checkLockHistory(h.ops);
  t.same(r.anomalies.map((x) => x.kind).sort(), ['exclusive-overlap', 'fence-stale-accept']);
  t.ok(r.anomalies.every((x) => x.ops.includes(z.id)), 'both name the stale access');
});

t.test('shared-exclusive-overlap', async (t) => {
  const h = new H();
  const s = h.acquire('c1', 'x', 'shared', 0, 10, 7);
  const e = h.acquire('c2', 'x', 'exclusive', 0, 11, 7);
  h.access(s, 12, true);
  h.access(e, 13, true);
  h.access(s, 14, true);
  t.same(kinds(h).filter((k) => k !== 'hold-overlap'), ['shared-exclusive-overlap']);
});

t.test('token-duplicate: two exclusive grants with one token (say, two leaders granting at one index)', async (t) => {
  const h = new H();
  const a = h.acquire('c1', 'x', 'exclusive', 0, 10, 5);
  const b = h.acquire('c2', 'x', 'exclusive', 0, 12, 5);
  h.access(a, 13, true);
  h.access(b, 14, true);
  h.access(a, 15, true);
  t.same(kinds(h), ['exclusive-overlap', 'hold-overlap', 'token-duplicate']);
});

t.test('token-order: a later grant with a smaller token', async (t) => {
  const h = new H();
  const a = h.acquire('c1', 'x', 'exclusive', 0, 10, 9);
  h.release(a, 20);
  const b = h.acquire('c2', 'x', 'exclusive', 25, 30, 6);
  h.release(b, 40);
  t.same(kinds(h), ['token-order']);
  // Concurrent grants may come back in either order.
  const ok = new H();
  const c = ok.acquire('c1', 'x', 'exclusive', 0, 30, 9);
  ok.release(c, 31);
  const d = ok.acquire('c2', 'x', 'exclusive', 5, 20, 6);
  ok.release(d, 22);
  t.same(kinds(ok).filter((k) => k !== 'hold-overlap'), []);
});

t.test('hold-overlap and rejected-live-access: a server that lets a live holder\'s lease lapse', async (t) => {
  const h = new H();
  const a = h.acquire('c1', 'x', 'exclusive', 0, 10, 5);
  h.access(a, 11, true);
  const b = h.acquire('c2', 'x', 'exclusive', 5, 500, 9);
  h.access(b, 501, true);
  const late = h.access(a, 600, false); // c1 checked: not lost
  h.release(a, 700);
  h.release(b, 800);
  const r = checkLockHistory(h.ops);
  t.same(r.anomalies.map((x) => x.kind).sort(), ['hold-overlap', 'rejected-live-access']);
  t.ok(r.anomalies.find((x) => x.kind === 'rejected-live-access')?.ops.includes(late.id));
});

t.test('a loss seen within the tolerance excuses a live rejection and a short overlap', async (t) => {
  const h = new H();
  const a = h.acquire('c1', 'x', 'exclusive', 0, 10, 5);
  const b = h.acquire('c2', 'x', 'exclusive', 5, 3000, 9);
  h.access(b, 3001, true);
  h.access(a, 3002, false);
  h.lost(a, 3010);
  const r = checkLockHistory(h.ops, { toleranceMs: 50 });
  t.same(r.anomalies, []);
  t.equal(r.stats.liveRejectedExcused, 1);
  t.same(checkLockHistory(h.ops, { toleranceMs: 0 }).anomalies.map((x) => x.kind).sort(), ['hold-overlap', 'rejected-live-access']);
});

t.test('availability: during and outside faults, time to recover after each heal', async (t) => {
  const h = new H();
  h.acquire('c1', 'x', 'exclusive', 0, 10, 1);
  const fault: FaultEvent = { id: 1, kind: 'pause', detail: 'n1 (leader)', nodes: ['n1'], startMs: 100, healMs: 200 };
  const unanswered: AcquireOp = { id: 90, process: 'c2', node: 'n1', service: 'locks', f: 'acquire', lock: 'x', mode: 'exclusive',
    invokeMs: 120, endMs: 180, outcome: 'unknown' };
  h.ops.push(unanswered);
  h.acquire('c3', 'x', 'exclusive', 150, 260, 4);
  h.acquire('c1', 'x', 'exclusive', 300, 310, 6);
  const acquires = h.ops.filter((o) => o.f === 'acquire');
  const r = availability(acquires, [fault, { id: 2, kind: 'kill', detail: 'n2', nodes: ['n2'], startMs: 400, healMs: 500 }]);
  t.same(r.duringFaults, { ok: 1, fail: 0, unknown: 1 });
  t.same(r.outsideFaults, { ok: 2, fail: 0, unknown: 0 });
  t.equal(r.recoveries[0]?.recoverMs, 60);
  t.equal(r.recoveries[1]?.recoverMs, null, 'no grant after the second heal');
  t.equal(r.recoverMsMax, 60);
});

t.test('access-after-lost: a client that keeps using a lock after lost fired', async (t) => {
  const h = new H();
  const a = h.acquire('c1', 'x', 'exclusive', 0, 10, 5);
  h.lost(a, 100);
  const late = h.access(a, 400, true);
  const r = checkLockHistory(h.ops);
  t.same(r.anomalies.map((x) => x.kind), ['access-after-lost']);
  t.same(r.anomalies[0]?.ops, [a.id, late.id]);
});
