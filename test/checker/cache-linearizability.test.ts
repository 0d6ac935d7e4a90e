// The cache's per-key linearizability checker against histories whose answer is known:
// histories made by running the naive twin one op at a time (each op's interval widened
// around its real moment, so ops overlap) are always accepted, with or without unknown
// outcomes; the same history with one read changed to a value it cannot have seen is
// rejected; and a few hand-written classics (stale read after a completed write,
// concurrent writes seen in two orders by one reader) come out as they must.

import fc from 'fast-check';
import t from 'tap';
import { CacheModel, checkHistory, checkKeys } from './cache-linearizability.js';
import type { HistoryOp } from './cache-linearizability.js';

interface Step {
  readonly set: boolean;
  readonly key: number;
  readonly before: number;
  readonly after: number;
  readonly unknown: boolean;
}

/** Runs the steps on the twin at times 10, 20, ...; each op's interval reaches `before`/`after` ticks around it. */
function sequential(steps: readonly Step[]): HistoryOp[] {
  const model = new CacheModel();
  const out: HistoryOp[] = [];
  steps.forEach((s, i) => {
    const key = `k${s.key}`;
    const at = (i + 1) * 10;
    const invoke = at - s.before;
    const complete = s.set && s.unknown ? Infinity : at + s.after;
    if (s.set) {
      const value = i % 7 === 0 ? null : `v${i}`;
      model.set(key, value);
      out.push({ key, kind: 'set', value, invoke, complete });
    } else {
      out.push({ key, kind: 'get', value: model.get(key), invoke, complete });
    }
  });
  return out;
}

const stepArb = fc.record({ set: fc.boolean(), key: fc.nat(2), before: fc.nat(25), after: fc.nat(25), unknown: fc.boolean() });

t.test('histories of the twin run one op at a time are linearizable', async (t) => {
  fc.assert(fc.property(fc.array(stepArb, { minLength: 1, maxLength: 30 }), (steps) => checkHistory(sequential(steps)).ok), { numRuns: 300 });
  t.pass();
});

t.test('a read of a value never written is caught', async (t) => {
  fc.assert(
    fc.property(fc.array(stepArb, { minLength: 1, maxLength: 30 }), fc.nat(), (steps, pick) => {
      const h = sequential(steps);
      const reads = h.map((op, i) => [op, i] as const).filter(([op]) => op.kind === 'get' && op.complete !== Infinity);
      fc.pre(reads.length > 0);
      const [op, i] = reads[pick % reads.length] as readonly [HistoryOp, number];
      h[i] = { ...op, value: 'never-written' };
      return !checkHistory(h).ok;
    }),
    { numRuns: 300 },
  );
  t.pass();
});

t.test('classic cases', async (t) => {
  const set = (value: string | null, invoke: number, complete: number): HistoryOp => ({ key: 'k', kind: 'set', value, invoke, complete });
  const get = (value: string | null, invoke: number, complete: number): HistoryOp => ({ key: 'k', kind: 'get', value, invoke, complete });
  t.notOk(checkHistory([set('a', 1, 2), set('b', 3, 4), get('a', 5, 6)]).ok, 'a stale read after a completed write');
  t.ok(checkHistory([set('a', 1, 2), set('b', 3, 8), get('a', 5, 6)]).ok, 'a read concurrent with a write may see the old value');
  t.notOk(checkHistory([set('a', 1, 10), set('b', 1, 10), get('a', 2, 3), get('b', 4, 5), get('a', 6, 7)]).ok, 'two concurrent writes seen in both orders');
  t.ok(checkHistory([set('a', 1, Infinity), get(null, 2, 3), get('a', 4, 5)]).ok, 'a write of unknown outcome may take effect late');
  t.notOk(checkHistory([set('a', 1, Infinity), get('a', 2, 3), get(null, 4, 5)]).ok, 'but once seen it stays');
  t.ok(checkHistory([get(null, 1, 2), set(null, 3, 4), get(null, 5, 6)]).ok, 'a delete reads as absent');
});

t.test('lossy memory: an absent read is a loss, never a licence for an older value', async (t) => {
  const set = (value: string | null, invoke: number, complete: number): HistoryOp => ({ key: 'k', kind: 'set', value, invoke, complete });
  const get = (value: string | null, invoke: number, complete: number): HistoryOp => ({ key: 'k', kind: 'get', value, invoke, complete });
  const lossy = (ops: HistoryOp[]): boolean => checkKeys(ops, { lossy: true }).failedKeys.length === 0;
  t.notOk(checkHistory([set('a', 1, 2), get(null, 3, 4)]).ok, 'strict: a completed write cannot read as absent');
  t.ok(lossy([set('a', 1, 2), get(null, 3, 4)]), 'lossy: it can (the memory lost it)');
  t.ok(lossy([set('a', 1, 2), get(null, 3, 4), set('b', 5, 6), get('b', 7, 8)]), 'a later write is read after a loss');
  t.notOk(lossy([set('a', 1, 2), get(null, 3, 4), get('a', 5, 6)]), 'the lost value never comes back');
  t.notOk(lossy([set('a', 1, 2), set('b', 3, 4), get('a', 5, 6)]), 'a stale value is still caught');
  t.ok(lossy([set('a', 1, 2), set('b', 3, 8), get(null, 4, 5), get('b', 9, 10)]), 'a loss before a concurrent write lands');
  const other = (ops: HistoryOp[]): HistoryOp[] => ops.map((o) => ({ ...o, key: 'j' }));
  t.same(checkKeys([...other([set('a', 1, 2), set('b', 3, 4), get('a', 5, 6)]), set('a', 1, 2), get('a', 3, 4)], { lossy: true }).failedKeys, ['j'],
    'every failing key is named');
});


t.test('a long history (a soak\'s) is checked without deep recursion or a bitmap per state', async (t) => {
  const ops: HistoryOp[] = [];
  let now = 0;
  for (let i = 0; i < 30_000; i++) {
    // Two clients overlapping: a write and a read of it, then the next pair.
    ops.push({ key: 'k', kind: 'set', value: `v${i}`, invoke: now, complete: now + 3 });
    ops.push({ key: 'k', kind: 'get', value: i % 2 === 0 ? `v${i}` : `v${i - 1}`, invoke: now + 1, complete: now + 2 });
    now += 4;
  }
  t.ok(checkHistory(ops).ok, '60,000 operations, every read explained');
  ops.push({ key: 'k', kind: 'get', value: 'v5', invoke: now, complete: now + 1 });
  t.notOk(checkKeys(ops, { lossy: true }).failedKeys.length === 0, 'and one stale read at the end is caught');
});
