// Checks the client's lock part (client/locks/locks.ts) against a fake transport
// that plays a scripted leader: grants only reach user code under a live session,
// LockLost pushes and "hold gone" answers fire `lost`, a release after loss sends
// nothing, an unanswered release is retried on the same lane and seq, and a waiting
// acquire given up on is cancelled. Asserts requests sent and their order, not times.

import t from 'tap';
import { ForceReleasedError, LockClient, SessionExpiredError } from '../../../client/locks/locks.js';
import type { PushListener } from '../../../client/transport/connection.js';
import { realClock } from '../../../client/transport/time.js';
import type { GroupTransport, RequestOptions } from '../../../client/transport/router.js';
import { DsyncError, ErrorCode } from '../../../protocol/errors.js';
import { Opcode, opcodeName } from '../../../protocol/frame.js';
import { schema } from '../../../protocol/index.js';

type LockRequest = ReturnType<typeof schema.LockRequest.decode>;
type Reply = NonNullable<Parameters<typeof schema.LockReply.create>[0]>;
/** Answers one request: a reply, a thrown DsyncError, or a promise that never settles. */
type Script = (opcode: number, req: LockRequest) => Promise<Reply>;

const sessionId = 7;

/** A leader that grants everything at once and answers every other request with ok. */
function grantAll(ttlMs: number): Script {
  let token = 100;
  return async (opcode, req) => {
    switch (opcode) {
      case Opcode.SessionOpen: return { session: sessionId, ttlMs };
      case Opcode.LockAcquire: return { lock: req.lock, token: ++token, exclusive: req.exclusive, count: 1 };
      default: return {};
    }
  };
}

class FakeTransport implements GroupTransport {
  readonly requestTimeoutMs = 1_000;
  readonly attemptTimeoutMs = 300;
  readonly sent: { opcode: number; req: LockRequest }[] = [];
  push: PushListener | null = null;

  constructor(public script: Script) {}

  async request(group: number, opcode: number, payload: Uint8Array, opts: RequestOptions = {}): Promise<Uint8Array> {
    if (group !== 0) throw new Error(`locks asked group ${group}`);
    const req = schema.LockRequest.decode(payload);
    this.sent.push({ opcode, req });
    opts.onSend?.(performance.now());
    return schema.LockReply.encode(await this.script(opcode, req)).finish();
  }

  onPush(opcode: number, listener: PushListener): void {
    if (opcode === Opcode.LockLost) this.push = listener;
  }

  ops(): string[] {
    return this.sent.map((s) => opcodeName(s.opcode));
  }

  count(opcode: number): number {
    return this.sent.filter((s) => s.opcode === opcode).length;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls until `cond` holds; bounded in time so a regression fails instead of hanging. */
async function until(cond: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

function setup(t: { teardown(fn: () => Promise<void>): void }, script: Script): { fake: FakeTransport; locks: LockClient } {
  const fake = new FakeTransport(script);
  const locks = new LockClient(fake, { name: 'unit' });
  t.teardown(() => locks.close());
  return { fake, locks };
}

const never = (): Promise<never> => new Promise<never>(() => {});

t.test('item 1: a grant that arrives after the session\'s TTL ran out is refused, and the session is ended', async (t) => {
  const ttlMs = 200;
  const base = grantAll(ttlMs);
  const { fake, locks } = setup(t, async (opcode, req) => {
    // The leader stalls: keep-alives never come back, and the grant comes back only after
    // longer than the TTL since the session's last renewal was sent.
    if (opcode === Opcode.SessionKeepAlive) return never();
    if (opcode === Opcode.LockAcquire) await sleep(ttlMs + 100);
    return base(opcode, req);
  });
  const outcome = await locks.lock('a').then((h) => ({ held: h.isLost ? 'lost' : 'NOT LOST' }), (err: unknown) => ({ err }));
  t.ok('err' in outcome && outcome.err instanceof SessionExpiredError,
    `lock() rejects with SessionExpiredError instead of handing out an unprotected lock (got ${JSON.stringify(outcome)})`);
  await until(() => fake.count(Opcode.SessionClose) > 0, 'SessionClose');
  t.ok(fake.ops().indexOf('LockAcquire') < fake.ops().indexOf('SessionClose'), 'the lost session is closed, freeing the grant');
});

t.test('item 1: a grant inside the TTL but past the drift margin is refused (the leader\'s clock may run faster)', async (t) => {
  const ttlMs = 10_000;
  // The client's clock jumps while the acquire is answered: 95% of the TTL after the open was sent.
  let skewMs = 0;
  const clock = { ...realClock, nowMs: () => performance.now() + skewMs };
  const base = grantAll(ttlMs);
  const fake = new FakeTransport(async (opcode, req) => {
    if (opcode === Opcode.LockAcquire) skewMs += ttlMs * 0.95;
    return base(opcode, req);
  });
  const locks = new LockClient(fake, { name: 'unit', clock });
  t.teardown(() => locks.close());
  const outcome = await locks.lock('a').then((h) => ({ held: h.isLost ? 'lost' : 'NOT LOST' }), (err: unknown) => ({ err }));
  t.ok('err' in outcome && outcome.err instanceof SessionExpiredError,
    `a grant at 95% of the TTL is not trusted (got ${JSON.stringify(outcome)})`);
});

t.test('item 1: a session whose open answer came back after its TTL is revalidated by a keep-alive, then kept alive', async (t) => {
  const ttlMs = 150;
  const base = grantAll(ttlMs);
  const { fake, locks } = setup(t, async (opcode, req) => {
    if (opcode === Opcode.SessionOpen) await sleep(ttlMs + 100); // counted from the first send: dead on arrival
    return base(opcode, req);
  });
  const held = await locks.lock('a');
  const ops = fake.ops();
  t.same(ops.slice(0, 3), ['SessionOpen', 'SessionKeepAlive', 'LockAcquire'], 'a fresh renewal comes before the acquire');
  // The keep-alive timers were started for the late session: renewals keep coming and the lock stays held.
  const before = fake.count(Opcode.SessionKeepAlive);
  await until(() => fake.count(Opcode.SessionKeepAlive) >= before + 4, 'four more keep-alives');
  t.equal(held.isLost, false, 'still held while renewals succeed');
  await held.release();
  t.equal(fake.count(Opcode.LockRelease), 1);
});

t.test('item 7: a LockLost push fires lost with a typed error; release() then sends nothing', async (t) => {
  const { fake, locks } = setup(t, grantAll(10_000));
  const a = await locks.lock('a');
  const b = await locks.lock('b');
  t.ok(fake.push !== null, 'the lock part listens for LockLost pushes');
  const push = (lock: string, token: number, code: string): void => fake.push?.(Opcode.LockLost, 0, schema.LockLostPush.encode({
    session: sessionId, lock, token, code, message: `lock ${lock} was force-released by an administrator` }).finish());
  push('a', a.token - 1, ErrorCode.FORCE_RELEASED);
  t.equal(a.isLost, false, 'a push about an older hold of the lock does not touch the newer one');
  push('a', a.token, ErrorCode.FORCE_RELEASED);
  t.equal(a.isLost, true, 'isLost');
  const reason = await a.lost;
  t.ok(reason instanceof ForceReleasedError, 'lost settles with ForceReleasedError');
  t.equal(reason.code, ErrorCode.FORCE_RELEASED);
  t.equal(b.isLost, false, 'other locks of the session are untouched');
  await a.release();
  await a[Symbol.asyncDispose]();
  t.equal(fake.count(Opcode.LockRelease), 0, 'release after loss sends no request and does not throw');
  await b.release();
  t.equal(fake.count(Opcode.LockRelease), 1);
});

t.test('item 7: a release or downgrade answered NOT_FOUND / FORCE_RELEASED marks the hold lost and release resolves', async (t) => {
  const base = grantAll(10_000);
  const { fake, locks } = setup(t, async (opcode, req) => {
    if (opcode === Opcode.LockRelease) throw new DsyncError(ErrorCode.NOT_FOUND, `session ${sessionId} does not hold ${req.lock}`);
    if (opcode === Opcode.LockDowngrade) throw new DsyncError(ErrorCode.FORCE_RELEASED, `${req.lock} was force-released`);
    return base(opcode, req);
  });
  const a = await locks.lock('a');
  await a.release();
  t.equal(a.isLost, true, 'NOT_FOUND on release: lost');
  t.equal((await a.lost).code, ErrorCode.NOT_FOUND);
  const b = await locks.lock('b');
  await t.rejects(b.downgrade(), { code: ErrorCode.FORCE_RELEASED });
  t.equal(b.isLost, true, 'FORCE_RELEASED on downgrade: lost');
  t.ok((await b.lost) instanceof ForceReleasedError);
  await b.release();
  t.equal(fake.count(Opcode.LockRelease), 1, 'only the first release was sent');
});

t.test('item 6: an unanswered release resolves and is retried in the background on the same lane and seq until applied', async (t) => {
  const base = grantAll(10_000);
  let failures = 3;
  const { fake, locks } = setup(t, async (opcode, req) => {
    if (opcode === Opcode.LockRelease && failures > 0) {
      failures--;
      throw new DsyncError(ErrorCode.TIMEOUT, 'LockRelease got no answer in time');
    }
    return base(opcode, req);
  });
  const a = await locks.lock('a');
  await a.release();
  await until(() => fake.count(Opcode.LockRelease) === 4, 'the fourth release attempt');
  const releases = fake.sent.filter((s) => s.opcode === Opcode.LockRelease).map((s) => `${s.req.clientId}#${String(s.req.seq)}`);
  t.equal(new Set(releases).size, 1, `every retry carries the same client id and seq (${releases.join(', ')})`);
  await sleep(50);
  t.equal(fake.count(Opcode.LockRelease), 4, 'no retry after the release applied');
  t.equal(a.isLost, false, 'a released lock is not lost');
});

t.test('item 6: a waiting acquire that fails without an answer is cancelled, so the session can ask again', async (t) => {
  const base = grantAll(10_000);
  let acquires = 0;
  const { fake, locks } = setup(t, async (opcode, req) => {
    if (opcode === Opcode.LockAcquire && ++acquires === 1) throw new DsyncError(ErrorCode.TIMEOUT, 'LockAcquire got no answer in time');
    return base(opcode, req);
  });
  await t.rejects(locks.lock('a', { waitMs: 100 }), { code: ErrorCode.TIMEOUT });
  await until(() => fake.count(Opcode.LockCancel) === 1, 'a LockCancel');
  const acquire = fake.sent.find((s) => s.opcode === Opcode.LockAcquire);
  const cancel = fake.sent.find((s) => s.opcode === Opcode.LockCancel);
  t.equal(cancel?.req.requestId, acquire?.req.requestId, 'the cancel names the abandoned request');
  t.equal(cancel?.req.lock, 'a');
  t.equal(Number(cancel?.req.session), sessionId);
  const held = await locks.lock('a', { waitMs: 100 });
  t.equal(held.isLost, false, 'a later acquire of the same lock succeeds');
});

t.test('item 6: a waiting acquire answered with a definite error is not cancelled', async (t) => {
  const base = grantAll(10_000);
  const { fake, locks } = setup(t, async (opcode, req) => {
    if (opcode === Opcode.LockAcquire) throw new DsyncError(ErrorCode.LOCK_TIMEOUT, 'waited 100 ms');
    return base(opcode, req);
  });
  await t.rejects(locks.lock('a', { waitMs: 100 }), { code: ErrorCode.LOCK_TIMEOUT });
  await sleep(20);
  t.equal(fake.count(Opcode.LockCancel), 0, 'the server already withdrew it');
});

t.test('item 2: a give-up whose cancel answers that the request was already granted releases that hold', async (t) => {
  const base = grantAll(10_000);
  let acquires = 0;
  const { fake, locks } = setup(t, async (opcode, req) => {
    // The grant applies but its answer is lost; the cancel arrives after it.
    if (opcode === Opcode.LockAcquire && ++acquires === 1) throw new DsyncError(ErrorCode.TIMEOUT, 'LockAcquire got no answer in time');
    if (opcode === Opcode.LockCancel) return { lock: req.lock, token: 555, exclusive: true, count: 1 };
    return base(opcode, req);
  });
  await t.rejects(locks.lock('a', { waitMs: 100 }), { code: ErrorCode.TIMEOUT });
  await until(() => fake.count(Opcode.LockRelease) === 1, 'a LockRelease of the unseen grant');
  const release = fake.sent.find((s) => s.opcode === Opcode.LockRelease);
  t.equal(release?.req.lock, 'a');
  t.equal(Number(release?.req.session), sessionId);
  t.same(fake.ops().slice(-2), ['LockCancel', 'LockRelease'], 'released after the cancel answered the grant');
  await sleep(20);
  t.equal(fake.count(Opcode.LockRelease), 1, 'released once');
});

t.test('item 2: an aborted acquire granted both to the acquire and to its cancel releases the hold once', async (t) => {
  const base = grantAll(10_000);
  let grant: (() => void) | null = null;
  const { fake, locks } = setup(t, async (opcode, req) => {
    if (opcode === Opcode.LockAcquire) {
      // Answered only after the cancel was answered: both carry the grant.
      await new Promise<void>((resolve) => { grant = resolve; });
      return { lock: req.lock, token: 777, exclusive: true, count: 1 };
    }
    if (opcode === Opcode.LockCancel) {
      setTimeout(() => grant?.(), 10);
      return { lock: req.lock, token: 777, exclusive: true, count: 1 };
    }
    return base(opcode, req);
  });
  const abort = new AbortController();
  const pending = locks.lock('a', { signal: abort.signal });
  await until(() => fake.count(Opcode.LockAcquire) === 1, 'the acquire is sent');
  const reason = new Error('gave up');
  abort.abort(reason);
  await t.rejects(pending, { code: ErrorCode.CANCELLED, cause: reason });
  await until(() => fake.count(Opcode.LockRelease) >= 1, 'a LockRelease');
  await sleep(30);
  t.equal(fake.count(Opcode.LockRelease), 1, 'exactly one release for the one grant');
});

t.test('item 3: STALE_REQUEST on a request safe to apply twice: the lane takes a fresh client id, seq 1, and sends it once more', async (t) => {
  const base = grantAll(10_000);
  let opens = 0;
  const { fake, locks } = setup(t, async (opcode, req) => {
    if (opcode === Opcode.SessionOpen && ++opens === 1) throw new DsyncError(ErrorCode.STALE_REQUEST, 'seq 1 is older than the last applied seq 9');
    return base(opcode, req);
  });
  const held = await locks.lock('a');
  t.equal(held.isLost, false, 'the lock is granted after the session open was re-sent');
  const sent = fake.sent.map((s) => ({ op: opcodeName(s.opcode), clientId: s.req.clientId, seq: Number(s.req.seq) }));
  const [stale, fresh, acquire] = sent;
  t.same(sent.map((s) => s.op), ['SessionOpen', 'SessionOpen', 'LockAcquire'], 'sent once more, then the acquire');
  t.not(fresh?.clientId, stale?.clientId, 'under a fresh client id');
  t.equal(fresh?.seq, 1, 'whose seq starts at 1');
  t.same([acquire?.clientId, acquire?.seq], [fresh?.clientId, 2], 'the lane keeps the fresh id');
  await held.release();
});

t.test('item 3: STALE_REQUEST on an acquire is not re-sent: lock() fails with STALE_REQUEST and the lane moves to a fresh id', async (t) => {
  const base = grantAll(10_000);
  let acquires = 0;
  const { fake, locks } = setup(t, async (opcode, req) => {
    if (opcode === Opcode.LockAcquire && ++acquires === 1) {
      throw new DsyncError(ErrorCode.STALE_REQUEST, 'the dedup entry of client x (seq 4) was evicted; retry with a new client id');
    }
    return base(opcode, req);
  });
  await t.rejects(locks.lock('a'), { code: ErrorCode.STALE_REQUEST, message: /cannot tell whether this request .* was applied/ });
  t.equal(fake.count(Opcode.LockAcquire), 1, 'an acquire is never applied twice: not re-sent');
  const first = fake.sent.find((s) => s.opcode === Opcode.LockAcquire);
  const held = await locks.lock('b');
  const second = fake.sent.filter((s) => s.opcode === Opcode.LockAcquire)[1];
  t.not(second?.req.clientId, first?.req.clientId, 'the next request on the lane uses a fresh client id');
  t.equal(Number(second?.req.seq), 1, 'with seq 1');
  await held.release();
});

t.test('lanes: requests in flight at once use distinct client ids, a freed lane is reused, and 1,024 in flight is the bound', async (t) => {
  const base = grantAll(10_000);
  const hanging: (() => void)[] = [];
  const { fake, locks } = setup(t, async (opcode, req) => {
    if (opcode === Opcode.LockAcquire && (req.lock ?? '').startsWith('hang-')) {
      await new Promise<void>((resolve) => hanging.push(resolve));
      throw new DsyncError(ErrorCode.LOCK_TIMEOUT, 'gave up');
    }
    return base(opcode, req);
  });
  const first = await locks.lock('warm');
  const laneOfFirst = fake.sent.find((s) => s.opcode === Opcode.LockAcquire)?.req.clientId;
  const waits = Array.from({ length: 1023 }, (_, i) => locks.lock(`hang-${i}`).catch((err: unknown) => err));
  await until(() => hanging.length === 1023, '1,023 acquires in flight');
  const inFlight = fake.sent.filter((s) => s.opcode === Opcode.LockAcquire && (s.req.lock ?? '').startsWith('hang-'));
  t.equal(new Set(inFlight.map((s) => s.req.clientId)).size, 1023, 'each request in flight has a client id of its own');
  t.equal(inFlight.filter((s) => s.req.clientId === laneOfFirst).length, 1, 'the lane freed by the first acquire is taken again');
  // The session's keep-alive may hold a lane too; the 1,025th request in flight is refused either way.
  await t.rejects(Promise.all([locks.lock('hang-1023'), locks.lock('hang-1024')]), { code: ErrorCode.TOO_MANY_REQUESTS, message: /1024 lock requests in flight/ });
  for (const wake of hanging.splice(0)) wake();
  await Promise.all(waits);
  const after = await locks.lock('after');
  t.ok(after.token > first.token, 'lanes given back serve the next request');
  await Promise.all([first.release(), after.release()]);
});

t.test('issue 12: an aborted wait rejects with CANCELLED whose cause is the signal\'s reason', async (t) => {
  const base = grantAll(10_000);
  let cancelled: (() => void) | null = null;
  const { fake, locks } = setup(t, async (opcode, req) => {
    if (opcode === Opcode.LockAcquire) {
      // The leader withdraws the wait once the cancel arrives, as the server does.
      await new Promise<void>((resolve) => { cancelled = resolve; });
      throw new DsyncError(ErrorCode.CANCELLED, `wait for ${req.lock} cancelled`);
    }
    if (opcode === Opcode.LockCancel) {
      setTimeout(() => cancelled?.(), 0);
      return {};
    }
    return base(opcode, req);
  });
  const abort = new AbortController();
  const reason = new Error('shutting down');
  const pending = locks.lock('a', { signal: abort.signal, waitMs: 60_000 });
  await until(() => fake.count(Opcode.LockAcquire) === 1, 'the acquire is sent');
  abort.abort(reason);
  const err: unknown = await pending.then(() => null, (e: unknown) => e);
  t.ok(err instanceof DsyncError, 'a DsyncError');
  t.equal((err as DsyncError).code, ErrorCode.CANCELLED);
  t.equal((err as DsyncError).cause, reason, 'cause is the signal\'s reason');
});

t.test('issue 12: a signal aborted before lock() rejects with CANCELLED whose cause is its reason, sending nothing', async (t) => {
  const { fake, locks } = setup(t, grantAll(10_000));
  const reason = new Error('never mind');
  const err: unknown = await locks.lock('a', { signal: AbortSignal.abort(reason) }).then(() => null, (e: unknown) => e);
  t.ok(err instanceof DsyncError, 'a DsyncError');
  t.equal((err as DsyncError).code, ErrorCode.CANCELLED);
  t.equal((err as DsyncError).cause, reason, 'cause is the signal\'s reason');
  t.same(fake.ops(), [], 'no request sent');
});
