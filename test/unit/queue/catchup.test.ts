// The streamed catch-up's decisions (core/queue/catchup.ts) against a simulated sender
// and incoming store: chunks are imported only in order (late, duplicated, reordered and
// dropped ones are ignored or re-pulled), a leader change mid-transfer resumes from what
// arrived, a crash mid-transfer resumes from what the store kept, a newer snapshot whose
// front moved (retention) cuts the kept prefix, one that does not extend what is kept
// starts over, and the snapshot is admitted only once the store holds its whole range,
// synced. At most chunksPerPull chunks are ever asked for at once.

import t from 'tap';
import { type CatchUpAction, CatchUpTransfer, type StagedRange } from '../../../core/queue/catchup.js';
import { nodeId } from '../../../core/ids.js';
import { Xoshiro128 } from '../../../core/prng.js';

const opts = { chunksPerPull: 4, timeoutMs: 1000 };
const n2 = nodeId('n2');
const n3 = nodeId('n3');

/** The incoming store as the wiring keeps it: a contiguous range of offsets. */
class Staging {
  first = 0;
  next = 0;
  apply(actions: readonly CatchUpAction[]): CatchUpAction[] {
    const rest: CatchUpAction[] = [];
    for (const a of actions) {
      if (a.kind === 'reset') {
        this.first = a.firstOffset;
        this.next = a.firstOffset;
      } else if (a.kind === 'truncate') {
        this.first = a.before;
      } else rest.push(a);
    }
    return rest;
  }
  get range(): StagedRange {
    return { firstOffset: this.first, nextOffset: this.next };
  }
}

/** A sender answering a pull with consecutive chunks of `per` records. */
function answer(a: Extract<CatchUpAction, { kind: 'pull' }>, per: number): { pull: number; first: number; count: number }[] {
  const out: { pull: number; first: number; count: number }[] = [];
  let at = a.fromOffset;
  for (let i = 0; i < a.chunks && at < a.upTo; i++) {
    const count = Math.min(per, a.upTo - at);
    out.push({ pull: a.pull, first: at, count });
    at += count;
  }
  return out;
}

function pullOf(actions: readonly CatchUpAction[]): Extract<CatchUpAction, { kind: 'pull' }> | undefined {
  return actions.find((a): a is Extract<CatchUpAction, { kind: 'pull' }> => a.kind === 'pull');
}

t.test('chunks in order: a clean transfer pulls, imports, syncs, admits', async (t) => {
  const x = new CatchUpTransfer(opts);
  const s = new Staging();
  let now = 0;
  let acts = s.apply(x.offer({ firstOffset: 100, nextOffset: 1100, source: n2 }, now));
  t.same(s.range, { firstOffset: 100, nextOffset: 100 }, 'the incoming store starts empty at the snapshot\'s front');
  let pulls = 0;
  // Bounded: 1000 records in chunks of 37, 4 per pull.
  for (let round = 0; round < 100 && x.phase === 'pulling'; round++) {
    const p = pullOf(acts);
    if (p === undefined) break;
    pulls++;
    t.ok(p.chunks <= opts.chunksPerPull && p.to === n2 && p.fromOffset === s.next && p.upTo === 1100, `pull ${p.pull} from ${p.fromOffset}`);
    acts = [];
    for (const c of answer(p, 37)) {
      t.ok(x.accept(c.pull, c.first, c.count), `chunk at ${c.first} accepted`);
      s.next += c.count;
      acts.push(...s.apply(x.imported(c.count, ++now)));
    }
  }
  t.equal(pulls, Math.ceil(1000 / 37 / 4), 'one pull per 4 chunks');
  t.same(acts, [{ kind: 'sync' }], 'complete: sync the store');
  t.equal(x.phase, 'syncing');
  t.same(x.offer({ firstOffset: 100, nextOffset: 1100, source: n2 }, now), [], 'Raft\'s resend meanwhile: not admitted yet, nothing new asked');
  t.same(x.syncedAt(s.range, now), [{ kind: 'admit' }], 'synced at the whole range: admit');
  t.same(x.offer({ firstOffset: 100, nextOffset: 1100, source: n2 }, now), [{ kind: 'admit' }], 'the retried snapshot is admitted');
});

t.test('late, duplicated and out-of-order chunks are ignored; a lost one is pulled again after the timeout', async (t) => {
  const x = new CatchUpTransfer(opts);
  const s = new Staging();
  const p1 = pullOf(s.apply(x.offer({ firstOffset: 0, nextOffset: 100, source: n2 }, 0)));
  if (p1 === undefined) throw new Error('no pull');
  const chunks = answer(p1, 10);
  t.notOk(x.accept(p1.pull, (chunks[1] as { first: number }).first, 10), 'the second chunk before the first: ignored');
  t.ok(x.accept(p1.pull, 0, 10));
  s.next += 10;
  s.apply(x.imported(10, 1));
  t.notOk(x.accept(p1.pull, 0, 10), 'a duplicate of the first: ignored');
  t.notOk(x.accept(p1.pull + 7, 10, 10), 'a chunk of a pull never made: ignored');
  // Chunks 2..4 are lost. Nothing happens before the timeout, then the pull goes out again from what arrived.
  t.same(x.tick(500), [], 'within the timeout: wait');
  const p2 = pullOf(x.tick(1001));
  t.ok(p2 !== undefined && p2.fromOffset === 10 && p2.pull > p1.pull, 'after the timeout: pulled again from offset 10');
  t.notOk(x.accept(p1.pull, 10, 10), 'the old pull\'s late chunk: ignored (its pull is over)');
  t.equal(x.counts.timeouts, 1);
});

t.test('leader change mid-transfer: the new leader\'s snapshot resumes from what arrived', async (t) => {
  const x = new CatchUpTransfer(opts);
  const s = new Staging();
  const p1 = pullOf(s.apply(x.offer({ firstOffset: 50, nextOffset: 500, source: n2 }, 0)));
  if (p1 === undefined) throw new Error('no pull');
  for (const c of answer(p1, 25).slice(0, 2)) {
    t.ok(x.accept(c.pull, c.first, c.count));
    s.next += c.count;
    s.apply(x.imported(c.count, 1));
  }
  t.same(s.range, { firstOffset: 50, nextOffset: 100 });
  // n3 leads now; its snapshot is newer: the front moved (retention) and the end grew.
  const acts = s.apply(x.offer({ firstOffset: 70, nextOffset: 800, source: n3 }, 2));
  const p2 = pullOf(acts);
  t.same(s.range, { firstOffset: 70, nextOffset: 100 }, 'the kept prefix is cut to the new front, not pulled again');
  t.ok(p2 !== undefined && p2.to === n3 && p2.fromOffset === 100 && p2.upTo === 800, 'the rest is pulled from the new leader');
  t.notOk(x.accept(p1.pull, 100, 25), 'the old leader\'s late chunk: ignored');
  t.equal(x.counts.resets, 1, 'no reset beyond the first');
  // Answered by n3 to the end.
  let p = p2;
  for (let i = 0; i < 100 && p !== undefined; i++) {
    let next: CatchUpAction[] = [];
    for (const c of answer(p, 40)) {
      t.ok(x.accept(c.pull, c.first, c.count));
      s.next += c.count;
      next = s.apply(x.imported(c.count, 3));
    }
    p = pullOf(next);
  }
  t.same(s.range, { firstOffset: 70, nextOffset: 800 });
  t.same(x.syncedAt(s.range, 4), [{ kind: 'admit' }]);
});

t.test('an older snapshot, or one whose front passed what is kept, starts over; gone waits for a newer snapshot', async (t) => {
  const x = new CatchUpTransfer(opts);
  const s = new Staging();
  const p1 = pullOf(s.apply(x.offer({ firstOffset: 100, nextOffset: 300, source: n2 }, 0)));
  if (p1 === undefined) throw new Error('no pull');
  const c = answer(p1, 30)[0] as { pull: number; first: number; count: number };
  x.accept(c.pull, c.first, c.count);
  s.next += c.count;
  s.apply(x.imported(c.count, 1));
  // A leader behind the first (its snapshot starts lower): what is kept does not start its range.
  s.apply(x.offer({ firstOffset: 90, nextOffset: 250, source: n3 }, 2));
  t.same(s.range, { firstOffset: 90, nextOffset: 90 }, 'started over at the older snapshot\'s front');
  // Retention ran far: the next snapshot starts past everything kept.
  s.next = 120;
  const p3 = pullOf(s.apply(x.offer({ firstOffset: 200, nextOffset: 400, source: n3 }, 3)));
  t.same(s.range, { firstOffset: 200, nextOffset: 200 }, 'a front past the kept records: started over there');
  if (p3 === undefined) throw new Error('no pull');
  t.same(x.gone(p3.pull, 4), [], 'the sender deleted those files (a newer snapshot of its own): wait');
  t.same(x.tick(500), [], 'no pull before the retry time');
  const p4 = pullOf(x.tick(1004));
  t.ok(p4 !== undefined && p4.fromOffset === 200, 'asked again after the timeout');
  t.equal(x.counts.gone, 1);
});

t.test('crash mid-transfer: a new machine over the kept store resumes; a sync short of the range does not admit', async (t) => {
  const kept: StagedRange = { firstOffset: 10, nextOffset: 60 };
  const x = new CatchUpTransfer(opts, kept);
  const s = new Staging();
  s.first = 10;
  s.next = 60;
  const p = pullOf(s.apply(x.offer({ firstOffset: 10, nextOffset: 90, source: n2 }, 0)));
  t.ok(p !== undefined && p.fromOffset === 60, 'resumes after the 50 records the store kept');
  t.equal(x.counts.resets, 0, 'nothing discarded');
  if (p === undefined) return;
  for (const c of answer(p, 10)) {
    x.accept(c.pull, c.first, c.count);
    s.next += c.count;
    s.apply(x.imported(c.count, 1));
  }
  t.equal(x.phase, 'syncing');
  // A newer snapshot arrives while the sync runs: more to pull, and the sync's answer no longer admits.
  s.apply(x.offer({ firstOffset: 10, nextOffset: 95, source: n2 }, 2));
  const after = x.syncedAt({ firstOffset: 10, nextOffset: 90 }, 3);
  t.notOk(after.some((a) => a.kind === 'admit'), 'a sync of [10, 90) does not admit a snapshot of [10, 95)');
  const p2 = pullOf(after);
  t.ok(p2 !== undefined && p2.fromOffset === 90 && p2.upTo === 95, 'the rest is pulled');
  // A bad chunk: the store is started over.
  if (p2 === undefined) return;
  t.ok(x.accept(p2.pull, 90, 5));
  const redo = s.apply(x.importFailed(4));
  t.same(s.range, { firstOffset: 10, nextOffset: 10 }, 'a chunk that fails verification empties the store');
  t.equal(pullOf(redo)?.fromOffset, 10, 'and pulls from the front');
});

t.test('random faults: the store only ever holds a contiguous prefix of the target, and every transfer ends admitted', async (t) => {
  let admitted = 0;
  for (let seed = 1; seed <= 200; seed++) {
    const r = new Xoshiro128(seed);
    const x = new CatchUpTransfer(opts);
    const s = new Staging();
    let first = r.int(0, 50);
    let next = first + r.int(1, 400);
    let source = n2;
    let now = 0;
    let inbox: { pull: number; first: number; count: number }[] = [];
    let done = false;
    /** Carries out actions as the wiring does: syncs answer at once, pulls are answered into the inbox. */
    const handle = (actions: readonly CatchUpAction[], per: number): void => {
      const queue = [...s.apply(actions)];
      // Bounded: each sync answer adds at most one pull or admit.
      for (let i = 0; i < queue.length && i < 100; i++) {
        const a = queue[i] as CatchUpAction;
        if (a.kind === 'pull') inbox.push(...answer(a, per));
        else if (a.kind === 'admit') done = true;
        else if (a.kind === 'sync') queue.push(...s.apply(x.syncedAt(s.range, now)));
      }
    };
    handle(x.offer({ firstOffset: first, nextOffset: next, source }, now), 10);
    // Bounded: at most 3,000 steps per seed; faults only in the first 2,000.
    for (let step = 0; step < 3000 && !done; step++) {
      now += r.int(1, 300);
      const faulty = step < 2000;
      const roll = r.int(0, 99);
      if (faulty && roll < 5) {
        // A newer snapshot, maybe from another leader: the end grows, the front may move (retention).
        first = Math.min(next, first + r.int(0, 20));
        next += r.int(0, 50);
        source = r.int(0, 1) === 0 ? n2 : n3;
        handle(x.offer({ firstOffset: first, nextOffset: next, source }, now), r.int(1, 30));
      } else if (roll < 15) {
        // Time passes; Raft resends the snapshot now and then.
        handle(x.tick(now), r.int(1, 30));
        if (roll < 8) handle(x.offer({ firstOffset: first, nextOffset: next, source }, now), r.int(1, 30));
      } else if (inbox.length > 0) {
        // Delivery: drop, duplicate or reorder now and then (only while faulty).
        const i = faulty && r.int(0, 9) === 0 ? r.int(0, inbox.length - 1) : 0;
        const c = inbox[i] as { pull: number; first: number; count: number };
        if (!faulty || r.int(0, 9) !== 0) inbox.splice(i, 1);
        if ((!faulty || r.int(0, 19) !== 0) && x.accept(c.pull, c.first, c.count)) {
          if (c.first !== s.next) t.fail(`seed ${seed}: accepted a chunk at ${c.first}, the store's next is ${s.next}`);
          s.next += c.count;
          handle(x.imported(c.count, now), r.int(1, 30));
        }
      } else handle(x.tick(now), r.int(1, 30));
      if (s.first > s.next || (x.current !== null && (s.first < x.current.firstOffset || s.next > x.current.nextOffset))) {
        t.fail(`seed ${seed}: the store [${s.first}, ${s.next}) is not a prefix of the target`);
      }
      if (faulty && r.int(0, 30) === 0) inbox = [];
    }
    if (!done) t.fail(`seed ${seed}: never admitted`);
    else if (s.first !== first || s.next !== next) t.fail(`seed ${seed}: admitted with [${s.first}, ${s.next}) for a snapshot of [${first}, ${next})`);
    else admitted++;
  }
  t.equal(admitted, 200, 'every seed admitted exactly its snapshot\'s range');
});
