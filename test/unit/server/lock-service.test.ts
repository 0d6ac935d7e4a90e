// Checks the lock service's leader duties that live outside the lock table: lease
// countdowns on the monotonic clock (a wall-clock step expires nothing), wait limits
// that survive a failover, and the LockLost push to a holder whose lock was taken.
// Replicas run on a fake group 0, clock and scheduler (lock-service-harness.ts); the
// tests move time by hand and assert on which entries applied and what links got.

import t, { type Test } from 'tap';
import { nodeId, type SessionId, sessionId } from '../../../core/ids.js';
import type { LockTableSnapshot } from '../../../core/locks/index.js';
import { ErrorCode } from '../../../protocol/errors.js';
import { Opcode } from '../../../protocol/frame.js';
import { schema } from '../../../protocol/index.js';
import { FakeClock, FakeGroup, FakeLink, replyTo } from './lock-service-harness.js';

const n1 = nodeId('n1');
const n2 = nodeId('n2');

async function openSession(g: FakeGroup, link: FakeLink, client: string, ttlMs: number): Promise<SessionId> {
  const rid = g.request(g.leader as typeof n1, link, Opcode.SessionOpen, { clientId: client, seq: 1, ttlMs });
  await g.settle();
  const reply = replyTo(link, rid);
  t.ok(reply !== null && Number(reply.session) > 0, `${client} opened a session`);
  return sessionId(Number(reply?.session ?? 0));
}

function decodeLost(payload: Uint8Array): { session: number; lock: string; code: string; token: number } {
  const m = schema.LockLostPush.decode(payload);
  return { session: Number(m.session), lock: m.lock, code: m.code, token: Number(m.token) };
}

const snap = (g: FakeGroup, id = n1): LockTableSnapshot => g.replica(id).service.snapshot();

t.test('a wall-clock step forward longer than the TTL expires no session; the monotonic clock does', async (t) => {
  const clock = new FakeClock();
  const g = new FakeGroup(clock, 1);
  g.elect(n1);
  const link = new FakeLink();
  const s = await openSession(g, link, 'c1', 5_000);
  const realNow = Date.now;
  const stepped = realNow() + 60 * 60 * 1000;
  Date.now = () => stepped;
  t.teardown(() => { Date.now = realNow; });
  clock.ms += 1_000; // one second passes on the monotonic clock
  g.replica(n1).scheduler.runDue();
  // A service still on the wall clock would run its own timer; give it the chance.
  await new Promise((resolve) => setTimeout(resolve, 150));
  await g.settle();
  t.same(snap(g).sessions.map((x) => x.session), [s], 'the session is still open after a one-hour wall-clock step');
  Date.now = realNow;
  clock.ms += 5_000; // now the TTL has passed on the monotonic clock
  g.replica(n1).scheduler.runDue();
  await g.settle();
  t.same(snap(g).sessions, [], 'the session expires when its TTL passes on the monotonic clock');
  g.replica(n1).service.stop();
});

t.test('a wait limit survives a failover: the new leader times the inherited wait out', async (t) => {
  const clock = new FakeClock();
  const g = new FakeGroup(clock, 2);
  g.elect(n1);
  const holder = new FakeLink();
  const waiter = new FakeLink();
  const a = await openSession(g, holder, 'ha', 60_000);
  const b = await openSession(g, waiter, 'wb', 60_000);
  g.request(n1, holder, Opcode.LockAcquire, { clientId: 'ha', seq: 2, session: a, lock: 'L', exclusive: true, requestId: 'r1', wait: true });
  const rid = g.request(n1, waiter, Opcode.LockAcquire,
    { clientId: 'wb', seq: 2, session: b, lock: 'L', exclusive: true, requestId: 'r2', wait: true, waitMs: 1_000 });
  await g.settle();
  t.equal(snap(g, n2).locks[0]?.waiters.length, 1, 'the acquire waits, on every replica');
  t.equal(snap(g, n2).locks[0]?.waiters[0]?.waitMs, 1_000, 'the wait limit is replicated with the waiter');
  g.elect(n2);
  await g.settle();
  t.match(waiter.errors.find((e) => e.requestId === rid)?.err, { code: ErrorCode.NOT_LEADER }, 'the old leader hands the wait back');
  clock.ms += 999;
  g.replica(n2).scheduler.runDue();
  await g.settle();
  t.equal(snap(g, n2).locks[0]?.waiters.length, 1, 'not timed out before its limit (counted from the new leadership)');
  clock.ms += 60; // past the limit and the leader's next check
  g.replica(n2).scheduler.runDue();
  await new Promise((resolve) => setTimeout(resolve, 1_100)); // a per-node timer on the old leader would have fired by now
  await g.settle();
  t.same(snap(g, n2).locks[0]?.waiters ?? [], [], 'the new leader timed the wait out');
  t.same(snap(g, n2).sessions.find((s) => s.session === b)?.waits ?? null, [], 'the session no longer waits, so its next lock() can');
  for (const r of g.replicas) r.service.stop();
});

t.test('the holder hears LockLost when its lock is force-released or its session expires', async (t) => {
  const clock = new FakeClock();
  const g = new FakeGroup(clock, 1);
  g.elect(n1);
  const holder = new FakeLink();
  const admin = new FakeLink();
  const a = await openSession(g, holder, 'h1', 5_000);
  g.request(n1, holder, Opcode.LockAcquire, { clientId: 'h1', seq: 2, session: a, lock: 'L', exclusive: true, requestId: 'r1', wait: true });
  g.request(n1, holder, Opcode.LockAcquire, { clientId: 'h1', seq: 3, session: a, lock: 'M', exclusive: false, requestId: 'r2', wait: true });
  await g.settle();
  t.equal(holder.pushes.length, 0, 'nothing pushed while the holds stand');
  g.request(n1, admin, Opcode.LockForceRelease, { clientId: 'admin', seq: 1, lock: 'L' });
  await g.settle();
  const lost = holder.pushes.map((p) => ({ opcode: p.opcode, ...decodeLost(p.payload) }));
  t.match(lost, [{ opcode: Opcode.LockLost, session: a, lock: 'L', code: ErrorCode.FORCE_RELEASED }], 'the holder is told its lock was force-released');
  t.equal(admin.pushes.length, 0, 'the operator is not');
  clock.ms += 5_001;
  g.replica(n1).scheduler.runDue();
  await g.settle();
  const after = holder.pushes.slice(1).map((p) => decodeLost(p.payload));
  t.match(after, [{ session: a, lock: 'M', code: ErrorCode.SESSION_EXPIRED }], 'then told its remaining hold ended with the session');
  holder.close();
  g.request(n1, admin, Opcode.LockForceRelease, { clientId: 'admin', seq: 2, lock: 'L' });
  await g.settle();
  t.equal(holder.pushes.length, 2, 'a closed link gets nothing more');
  g.replica(n1).service.stop();
});

// A hot lock hands over only as fast as each grant reaches the next holder: every answer
// of an applied command (the proposer's, a parked waiter's grant, an error) asks to leave
// once the ready pass's task ends, not after the rest of the event-loop turn.
t.test('answers of applied lock commands are written after the task, not at the end of the turn', async (t) => {
  const clock = new FakeClock();
  const g = new FakeGroup(clock, 1);
  t.teardown(() => g.replica(n1).service.stop());
  g.elect(n1);
  const holder = new FakeLink();
  const waiter = new FakeLink();
  const a = await openSession(g, holder, 'h1', 60_000);
  const b = await openSession(g, waiter, 'w1', 60_000);
  g.request(n1, holder, Opcode.LockAcquire, { clientId: 'h1', seq: 2, session: a, lock: 'L', exclusive: true, requestId: 'r1', wait: true });
  await g.settle();
  const handedOver = g.request(n1, waiter, Opcode.LockAcquire, { clientId: 'w1', seq: 2, session: b, lock: 'L', exclusive: true, requestId: 'r2',
    wait: true });
  await g.settle();
  g.request(n1, holder, Opcode.LockRelease, { clientId: 'h1', seq: 3, session: a, lock: 'L' });
  await g.settle();
  g.request(n1, holder, Opcode.LockAcquire, { clientId: 'h1', seq: 4, session: a, lock: 'L', exclusive: true, requestId: 'r3', wait: false });
  await g.settle();
  t.equal(holder.replies.length + waiter.replies.length, 5, 'two opens, the grant, the release and the hand-over answered');
  t.ok(replyTo(waiter, handedOver)?.token !== undefined && Number(replyTo(waiter, handedOver)?.token) > 0, 'the waiter got the lock');
  t.match(holder.errors, [{ err: { code: ErrorCode.WOULD_BLOCK } }], 'the try-lock was refused');
  t.same([...holder.replies, ...waiter.replies, ...holder.errors].filter((r) => !r.afterTask).map((r) => r.requestId), [],
    'every answer was asked to leave after the task');
});

// Item 1 (the retry side): a client whose waiting acquire was handed back by a failover
// retries it (same client id, seq and request id) on the new leader. The retry must be
// answered with what became of the wait: granted while nobody listened, failed, or, if
// it still waits, parked there and answered by the grant.
async function waitingAcquireThenFailover(t: Test): Promise<{ g: FakeGroup; holder: FakeLink; waiter: FakeLink; a: SessionId; b: SessionId;
  retry: (link: FakeLink) => number }> {
  const clock = new FakeClock();
  const g = new FakeGroup(clock, 2);
  t.teardown(() => { for (const r of g.replicas) r.service.stop(); });
  g.elect(n1);
  const holder = new FakeLink();
  const waiter = new FakeLink();
  const a = await openSession(g, holder, 'ha', 60_000);
  const b = await openSession(g, waiter, 'wb', 60_000);
  g.request(n1, holder, Opcode.LockAcquire, { clientId: 'ha', seq: 2, session: a, lock: 'L', exclusive: true, requestId: 'r1', wait: true });
  const acquire = { clientId: 'wb', seq: 2, session: b, lock: 'L', exclusive: true, requestId: 'r2', wait: true, waitMs: 1_000 };
  const first = g.request(n1, waiter, Opcode.LockAcquire, acquire);
  await g.settle();
  g.elect(n2);
  await g.settle();
  t.match(waiter.errors.find((e) => e.requestId === first)?.err, { code: ErrorCode.NOT_LEADER }, 'the old leader hands the wait back');
  return { g, holder, waiter, a, b, retry: (link) => g.request(n2, link, Opcode.LockAcquire, acquire) };
}

t.test('item 1: a retried acquire whose wait was granted during the failover answers the grant', async (t) => {
  const { g, holder, a, b, retry } = await waitingAcquireThenFailover(t);
  g.request(n2, holder, Opcode.LockRelease, { clientId: 'ha', seq: 3, session: a, lock: 'L' });
  await g.settle();
  const granted = snap(g, n2).locks.find((l) => l.name === 'L')?.holders ?? [];
  t.match(granted, [{ session: b, mode: 'exclusive', count: 1 }], 'the wait was granted with nobody listening');
  const link = new FakeLink();
  const rid = retry(link);
  await g.settle();
  const reply = replyTo(link, rid);
  t.same(link.errors, [], 'no error for the retry');
  t.equal(Number(reply?.token ?? 0), Number(granted[0]?.token ?? -1), 'the retry answers the grant and its token');
  t.equal(reply?.exclusive, true);
  t.equal(reply?.count, 1, 'applied once: count 1');
});

t.test('item 1: a retried acquire whose wait timed out during the failover answers the timeout', async (t) => {
  const { g, retry } = await waitingAcquireThenFailover(t);
  g.clock.ms += 1_100;
  g.replica(n2).scheduler.runDue();
  await g.settle();
  t.same(snap(g, n2).locks.find((l) => l.name === 'L')?.waiters ?? [], [], 'the new leader timed the wait out');
  const link = new FakeLink();
  const rid = retry(link);
  await g.settle();
  t.equal(replyTo(link, rid), null);
  t.match(link.errors, [{ requestId: rid, err: { code: ErrorCode.LOCK_TIMEOUT } }], 'the retry answers LOCK_TIMEOUT');
});

t.test('item 1: a retried acquire that still waits parks on the new leader and is answered by the grant', async (t) => {
  const { g, holder, a, retry } = await waitingAcquireThenFailover(t);
  const link = new FakeLink();
  const rid = retry(link);
  await g.settle();
  t.equal(link.replies.length + link.errors.length, 0, 'still waiting: parked, no answer yet');
  g.request(n2, holder, Opcode.LockRelease, { clientId: 'ha', seq: 3, session: a, lock: 'L' });
  await g.settle();
  const token = snap(g, n2).locks.find((l) => l.name === 'L')?.holders[0]?.token;
  t.equal(Number(replyTo(link, rid)?.token ?? 0), Number(token ?? -1), 'the parked retry is answered with the grant');
  t.equal(link.replies.length, 1, 'answered once');
});
