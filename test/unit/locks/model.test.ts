// Property test: random operation sequences (sessions, acquires in both modes with
// and without waiting, releases, downgrades, upgrades, cancels, expiries with fresh
// and stale renewals, closes, force-releases, lock-delays, exact retries) applied to
// the LockTable and to the naive reference model in model.ts. After every step the
// results, the events and the whole state must agree, the literal wait-for graph
// must be acyclic, and a snapshot round trip must reproduce the table. fast-check
// prints the seed on failure; replay with SEED=<n> (and PATH_REPLAY=<path> for the shrunk case).

import assert from 'node:assert/strict';
import fc from 'fast-check';
import t from 'tap';
import { clientId, logIndex, sessionId } from '../../../core/ids.js';
import type { ClientId, LogIndex, SessionId } from '../../../core/ids.js';
import type { LockCommand, LockMode } from '../../../core/locks/commands.js';
import { LockTable } from '../../../core/locks/table.js';
import { Model, plain } from './model.js';
import type { Plain } from './model.js';

type Op =
  | { op: 'open'; client: number; lockDelay: boolean }
  | { op: 'acquire'; s: number; lock: string; mode: LockMode; wait: boolean; waitMs: number }
  | { op: 'release'; s: number; lock: string }
  | { op: 'downgrade'; s: number; lock: string }
  | { op: 'cancel'; s: number; lock: string; timeout: boolean }
  | { op: 'expire'; ss: number[]; stale: boolean }
  | { op: 'close'; s: number }
  | { op: 'keepAlive'; s: number }
  | { op: 'force'; lock: string }
  | { op: 'wake'; lock: string }
  | { op: 'retry'; client: number; older: boolean };

const lockName = fc.constantFrom('A', 'B', 'C');
const sIdx = fc.nat(7);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ op: fc.constant('open' as const), client: fc.nat(2), lockDelay: fc.boolean() }) },
  {
    weight: 10,
    arbitrary: fc.record({
      op: fc.constant('acquire' as const),
      s: sIdx,
      lock: lockName,
      mode: fc.constantFrom<LockMode>('shared', 'exclusive'),
      wait: fc.constantFrom(true, true, true, false),
      waitMs: fc.constantFrom(0, 0, 250),
    }),
  },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('release' as const), s: sIdx, lock: lockName }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('downgrade' as const), s: sIdx, lock: lockName }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('cancel' as const), s: sIdx, lock: lockName, timeout: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('expire' as const), ss: fc.array(sIdx, { maxLength: 3 }), stale: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('close' as const), s: sIdx }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('keepAlive' as const), s: sIdx }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('force' as const), lock: lockName }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('wake' as const), lock: lockName }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('retry' as const), client: fc.nat(3), older: fc.boolean() }) },
);

const clientName = (n: number): ClientId => clientId(n === 3 ? 'admin' : `c${n}`);
const rank = (k: unknown): number => (k === 'revoked' ? 0 : k === 'failed' ? 1 : 2);
/** Events in a canonical order: by lock, then revoked/failed/granted, keeping order within each. */
const canon = (events: readonly Plain[]): Plain[] =>
  events
    .map((ev) => plain(ev))
    .map((ev, i) => ({ ev, i }))
    .sort((a, b) => String(a.ev['lock']).localeCompare(String(b.ev['lock'])) || rank(a.ev['kind']) - rank(b.ev['kind']) || a.i - b.i)
    .map((x) => x.ev);

function tableView(table: LockTable): Plain {
  const locks: Plain = {};
  for (const l of [...table.listLocks()].sort((a, b) => a.name.localeCompare(b.name))) {
    locks[l.name] = {
      holders: l.holders.map((h) => ({ ...h })),
      waiters: l.waiters.map((w) => ({ ...w })),
      lastToken: l.lastToken,
      delay: l.delay,
    };
  }
  return { sessions: table.listSessions().map((s) => s.session), locks };
}

let steps = 0;
const seen = new Map<string, number>();

function runOps(ops: readonly Op[]): void {
  let table = new LockTable();
  const model = new Model();
  const opened: SessionId[] = [];
  const seqs = [0, 0, 0, 0];
  const last: (LockCommand | undefined)[] = [undefined, undefined, undefined, undefined];
  const older: (LockCommand | undefined)[] = [undefined, undefined, undefined, undefined];
  let index = 0;
  let nowMs = 1_000;
  // Mostly live sessions; index 7 picks among every session ever opened (dead ones too).
  const sess = (i: number): SessionId => {
    const live = table.listSessions();
    if (i < 7 && live.length > 0) return (live[i % live.length] as { session: SessionId }).session;
    return opened[i % Math.max(1, opened.length)] ?? sessionId(424_242);
  };
  const owner = (s: SessionId): number => {
    const info = table.sessionInfo(s);
    return info === null ? 3 : Number(info.clientId.slice(1));
  };
  const fromClient = (n: number): { clientId: ClientId; seq: number; nowMs: number } => {
    seqs[n] = (seqs[n] ?? 0) + 1;
    return { clientId: clientName(n), seq: seqs[n] as number, nowMs };
  };

  for (const [step, o] of ops.entries()) {
    nowMs += 100;
    let cmd: LockCommand | undefined;
    let sender = -1;
    switch (o.op) {
      case 'open':
        sender = o.client;
        cmd = { kind: 'openSession', ttlMs: 5_000, lockDelayMs: o.lockDelay ? 500 : 0, ...fromClient(sender) };
        break;
      case 'acquire': {
        const s = sess(o.s);
        sender = owner(s);
        cmd = { kind: 'acquire', session: s, lock: o.lock, mode: o.mode, wait: o.wait, requestId: `q${index + 1}`, waitMs: o.waitMs, ...fromClient(sender) };
        break;
      }
      case 'release':
      case 'downgrade': {
        const s = sess(o.s);
        sender = owner(s);
        cmd = { kind: o.op, session: s, lock: o.lock, ...fromClient(sender) };
        break;
      }
      case 'cancel': {
        const s = sess(o.s);
        // The waiting request, else the request whose grant made the session's hold (a cancel
        // that arrives after the grant), else one that never existed.
        const requestId = table.sessionInfo(s)?.waits.find((w) => w.lock === o.lock)?.requestId
          ?? table.lockInfo(o.lock)?.holders.find((h) => h.session === s)?.requestId ?? 'none';
        cmd = o.timeout
          ? { kind: 'cancelWait', session: s, lock: o.lock, requestId, reason: 'timeout', nowMs }
          : { kind: 'cancelWait', session: s, lock: o.lock, requestId, reason: 'cancelled', ...fromClient((sender = owner(s))) };
        break;
      }
      case 'expire':
        cmd = {
          kind: 'expireSessions',
          nowMs,
          sessions: o.ss.map((i) => {
            const s = sess(i);
            const renewed = table.sessionInfo(s)?.renewedIndex ?? logIndex(0);
            return { session: s, renewedIndex: o.stale ? logIndex(renewed - 1) : renewed };
          }),
        };
        break;
      case 'close':
      case 'keepAlive': {
        const s = sess(o.s);
        sender = owner(s);
        cmd = { kind: o.op === 'close' ? 'closeSession' : 'keepAlive', session: s, ...fromClient(sender) };
        break;
      }
      case 'force':
        sender = 3;
        cmd = { kind: 'forceRelease', lock: o.lock, ...fromClient(sender) };
        break;
      case 'wake':
        cmd = { kind: 'wakeDelayed', lock: o.lock, nowMs };
        break;
      case 'retry':
        cmd = o.older ? older[o.client] : last[o.client];
        break;
    }
    if (cmd === undefined) continue;
    if (sender >= 0) {
      older[sender] = last[sender];
      last[sender] = cmd;
    }
    index++;
    const at: LogIndex = logIndex(index);
    const got = table.apply(cmd, at);
    const want = model.apply(cmd, at);
    const where = `step ${step} ${JSON.stringify(cmd)}`;
    // Throw at the first disagreement so fast-check shrinks the sequence.
    assert.deepStrictEqual(plain(got.result), want.result, `result at ${where}`);
    assert.deepStrictEqual(canon(got.events as unknown as Plain[]), canon(want.events), `events at ${where}`);
    if (got.result.kind === 'sessionOpened' && !got.duplicate) opened.push(got.result.session);
    assert.deepStrictEqual(tableView(table), model.view(), `state at ${where}`);
    assert.ok(!model.hasCycle(), `wait-for graph acyclic at ${where}`);
    const snap = JSON.stringify(table.toSnapshot());
    table = LockTable.fromSnapshot(JSON.parse(snap));
    assert.equal(JSON.stringify(table.toSnapshot()), snap, `snapshot round trip at ${where}`);
    steps++;
    const key = got.result.kind === 'error' ? got.result.code : got.result.kind;
    seen.set(key, (seen.get(key) ?? 0) + 1);
    if (cmd.kind === 'cancelWait') seen.set(`cancel:${key}`, (seen.get(`cancel:${key}`) ?? 0) + 1);
    for (const ev of got.events) seen.set(`event:${ev.kind}`, (seen.get(`event:${ev.kind}`) ?? 0) + 1);
  }
}

t.test('lock table agrees with the naive model on random operation sequences', async (t) => {
  const seedEnv = process.env['SEED'];
  const pathEnv = process.env['PATH_REPLAY'];
  const params: fc.Parameters<[Op[]]> = { numRuns: Number(process.env['RUNS'] ?? 300) };
  if (seedEnv !== undefined) params.seed = Number(seedEnv);
  if (pathEnv !== undefined) params.path = pathEnv;
  const result = fc.check(fc.property(fc.array(opArb, { minLength: 1, maxLength: 80, size: 'max' }), (ops) => {
    runOps(ops);
  }), params);
  if (result.failed) t.fail(fc.defaultReportMessage(result) ?? 'property failed');
  t.comment(`seed ${result.seed} (replay with SEED=${result.seed}), ${result.numRuns} runs, ${steps} steps`);
  t.equal(result.failed, false, `seed ${result.seed}`);
  t.ok(steps > 1000, 'the runs exercised many steps');
  t.comment(JSON.stringify(Object.fromEntries([...seen].sort())));
  for (const k of ['DEADLOCK', 'queued', 'granted', 'WOULD_BLOCK', 'event:granted', 'event:failed', 'event:revoked', 'downgraded', 'STALE_REQUEST',
    'cancel:ok', 'cancel:granted', 'cancel:NOT_FOUND']) {
    t.ok((seen.get(k) ?? 0) > 0, `the generator reaches ${k}`);
  }
});
