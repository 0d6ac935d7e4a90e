// Checks the leader-side LeaseClock: becomeLeader restarts every countdown (no mass
// expiry after a long gap or a failover), keepAlive extends (never shortens),
// expiry lists are ordered by deadline then session id, lock-delays come due, and
// observe() wires it to apply outcomes (duplicates ignored, ended sessions dropped).

import t from 'tap';
import { clientId, logIndex, sessionId } from '../../../core/ids.js';
import { LeaseClock } from '../../../core/locks/leases.js';
import { LockTable } from '../../../core/locks/table.js';

const s = sessionId;
const i = logIndex;

t.test('becomeLeader restarts every countdown from its nowMs', async (t) => {
  const c = new LeaseClock();
  c.track(s(1), 1_000, 0, i(1));
  c.track(s(2), 2_000, 0, i(2));
  t.same(c.expired(5_000).map((e) => e.session), [1, 2], 'old leader view: both long overdue');
  // Failover after a 1-hour gap: nothing expires at once.
  c.becomeLeader(3_600_000, [
    { session: s(1), ttlMs: 1_000, renewedIndex: i(1) },
    { session: s(2), ttlMs: 2_000, renewedIndex: i(2) },
  ]);
  t.same(c.expired(3_600_000), [], 'no mass expiry');
  t.same(c.expired(3_600_999), []);
  t.same(c.expired(3_601_000), [{ session: 1, renewedIndex: 1 }]);
  t.equal(c.nextDeadlineMs(), 3_601_000);
});

t.test('keepAlive extends, never shortens, and records the renewal index', async (t) => {
  const c = new LeaseClock();
  c.track(s(5), 1_000, 0, i(5));
  c.keepAlive(s(5), 900, i(9));
  t.same(c.expired(1_000), [], 'renewed at 900: not expired at 1000');
  t.same(c.expired(1_900), [{ session: 5, renewedIndex: 9 }]);
  c.keepAlive(s(5), 100, i(10)); // an older clock reading cannot pull the deadline in
  t.equal(c.deadlineOf(s(5)), 1_900);
  c.untrack(s(5));
  t.same(c.expired(10_000), []);
  c.keepAlive(s(77), 0, i(11)); // unknown session: ignored
  t.equal(c.trackedCount, 0);
});

t.test('expiry order is by deadline, ties by session id, and bounded', async (t) => {
  const c = new LeaseClock();
  c.track(s(30), 1_000, 0, i(30));
  c.track(s(10), 1_000, 0, i(10));
  c.track(s(20), 500, 0, i(20));
  c.track(s(40), 5_000, 0, i(40));
  t.same(c.expired(2_000).map((e) => e.session), [20, 10, 30]);
  t.same(c.expired(2_000, 2).map((e) => e.session), [20, 10]);
});

t.test('lock-delays come due and restart on becomeLeader', async (t) => {
  const c = new LeaseClock();
  c.delay('b', 2_000);
  c.delay('a', 2_000);
  c.delay('z', 1_000);
  t.same(c.delaysDue(1_500), ['z']);
  t.same(c.delaysDue(2_000), ['z', 'a', 'b']);
  c.undelay('z');
  c.becomeLeader(10_000, [], [{ lock: 'a', lockDelayMs: 300 }]);
  t.same(c.delaysDue(10_299), []);
  t.same(c.delaysDue(10_300), ['a']);
});

t.test('observe follows a table: open, renew, duplicate, close, expiry with lock-delay, wake', async (t) => {
  const table = new LockTable();
  const c = new LeaseClock();
  let idx = 0;
  const run = (cmd: Parameters<LockTable['apply']>[0], nowMs: number) => {
    const at = i(++idx);
    const out = table.apply(cmd, at);
    c.observe(cmd, at, out, nowMs);
    return out;
  };
  const cl = clientId('c');
  const open = run({ kind: 'openSession', ttlMs: 1_000, lockDelayMs: 200, clientId: cl, seq: 1, nowMs: 0 }, 0);
  t.equal(open.result.kind, 'sessionOpened');
  const id = s(1);
  run({ kind: 'acquire', session: id, lock: 'L', mode: 'exclusive', wait: true, requestId: 'r', clientId: cl, seq: 2, nowMs: 0 }, 0);
  const ka = { kind: 'keepAlive', session: id, clientId: cl, seq: 3, nowMs: 500 } as const;
  run(ka, 500);
  t.equal(c.deadlineOf(id), 1_500);
  run(ka, 900); // duplicate retry: no renewal in the table, none in the clock
  t.equal(c.deadlineOf(id), 1_500);
  const due = c.expired(1_500);
  t.same(due, [{ session: id, renewedIndex: 3 }], 'renewedIndex matches the table');
  const exp = run({ kind: 'expireSessions', sessions: due, nowMs: 1_500 }, 1_500);
  t.match(exp.result, { kind: 'expired', sessions: [id] }, 'the table accepts the clock\'s proposal');
  t.equal(c.trackedCount, 0, 'ended session untracked');
  t.same(c.delaysDue(1_699), []);
  t.same(c.delaysDue(1_700), ['L']);
  run({ kind: 'wakeDelayed', lock: 'L', nowMs: 1_700 }, 1_700);
  t.same(c.delaysDue(99_999), []);
  t.equal(c.nextDeadlineMs(), null);
});

t.test('wait limits: due after waitMs on this clock, restarted by becomeLeader, ended by the wait\'s grant or failure', async (t) => {
  const c = new LeaseClock();
  const s = sessionId(3);
  c.becomeLeader(0, [], [], [{ session: s, lock: 'L', requestId: 'r', waitMs: 500 }, { session: s, lock: 'N', requestId: 'n', waitMs: 0 }]);
  t.equal(c.waitingCount, 1, 'a wait without a limit is not tracked');
  t.same(c.waitsDue(499), []);
  t.same(c.waitsDue(500), [{ session: s, lock: 'L', requestId: 'r', waitMs: 500 }]);
  t.equal(c.nextDeadlineMs(), 500);
  c.becomeLeader(10_000, [], [], [{ session: s, lock: 'L', requestId: 'r', waitMs: 500 }]);
  t.same(c.waitsDue(10_499), [], 'a new leader restarts the countdown');
  t.equal(c.waitsDue(10_500).length, 1);
  c.untrackWait(s, 'L');
  t.same(c.waitsDue(1e9), []);
});
