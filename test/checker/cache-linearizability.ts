// The per-key linearizability checker of the coherent cache, shared by the cache
// simulator (test/unit/cache), the real-process tests and the fault runner: the naive
// twin (one linearizable map, no nodes, no homes, no leases) and Wing & Gong's search
// over a recorded history, memoized as in Porcupine. Written from the promise ("every
// key's history is linearizable"), not from core/cache's code.

/** The twin: what a single copy of every key would answer. */
export class CacheModel {
  private readonly map = new Map<string, string>();

  get(key: string): string | null {
    return this.map.get(key) ?? null;
  }

  set(key: string, value: string | null): void {
    if (value === null) this.map.delete(key);
    else this.map.set(key, value);
  }
}

/** One client operation as the system answered it. Times are one global event counter. */
export interface HistoryOp {
  readonly key: string;
  readonly kind: 'get' | 'set';
  /** set: the value written (null = delete). get: the value read. */
  readonly value: string | null;
  readonly invoke: number;
  /** Infinity when it never completed (crashed node, unknown outcome): a set may or may not have happened. */
  readonly complete: number;
}

export interface LinearizabilityResult {
  readonly ok: boolean;
  /** The first key whose history is not linearizable. */
  readonly key?: string;
  readonly explored: number;
}

export interface CheckOptions {
  /** States the search may visit per key before giving up (an error, not a verdict). */
  readonly exploreMax?: number;
  /**
   * The memory may lose a key (in-process memory of a home that died, a ring change, a
   * write-back loss): a read answering "absent" is then allowed at any point, and the key
   * is absent from there on, so an older value can never come back after it. Every value
   * read must still be the latest one.
   */
  readonly lossy?: boolean;
}

/** Checks every key's history on its own (per-key linearizability is the cache's claim). */
export function checkHistory(ops: readonly HistoryOp[], exploreMax = 2_000_000): LinearizabilityResult {
  const r = checkKeys(ops, { exploreMax }, true);
  return r.failedKeys.length === 0 ? { ok: true, explored: r.explored } : { ok: false, key: r.failedKeys[0] as string, explored: r.explored };
}

/** Every key whose history is not linearizable (all keys are checked unless `stopAtFirst`). */
export function checkKeys(ops: readonly HistoryOp[], opts: CheckOptions = {}, stopAtFirst = false): { failedKeys: string[]; explored: number } {
  const byKey = new Map<string, HistoryOp[]>();
  const read = new Set<string>();
  for (const op of ops) {
    if (op.kind === 'get' && op.complete === Infinity) continue; // a read that never answered says nothing
    if (op.kind === 'get' && op.value !== null) read.add(`${op.key}\u0000${op.value}`);
    const list = byKey.get(op.key) ?? [];
    list.push(op);
    byKey.set(op.key, list);
  }
  // A write of unknown outcome that nobody read may be taken not to have happened: leaving
  // it out keeps the search from branching on it for the rest of the history.
  for (const [key, list] of byKey) {
    byKey.set(key, list.filter((op) => !(op.kind === 'set' && op.complete === Infinity && op.value !== null && !read.has(`${key}\u0000${op.value}`))));
  }
  let explored = 0;
  const failedKeys: string[] = [];
  for (const [key, list] of byKey) {
    const r = checkKey(key, list, opts.exploreMax ?? 2_000_000, opts.lossy === true);
    explored += r.explored;
    if (!r.ok) {
      failedKeys.push(key);
      if (stopAtFirst) break;
    }
  }
  return { failedKeys, explored };
}

/** One state of the search: the model's value there, and which candidate it tries now. */
interface Frame {
  /** The key's value in this state (restored when a candidate is undone). */
  readonly value: string | null;
  /** Candidates are the undone ops in [lo, hi): invoked before every undone op completed. */
  readonly hi: number;
  /** Next index to consider as a candidate. */
  next: number;
  /** The candidate applied now (-1: none); undone when its subtree fails. */
  tried: number;
  /** A read that sees the current value: the only candidate tried (reads change nothing). */
  readonly onlyRead: number;
}

/**
 * Wing & Gong's search with Porcupine's memo, iterative (a history of tens of thousands of
 * operations per key would overflow the stack if recursive). A state is the set of ops
 * already linearized plus the value; every linearized op lies below the candidate window's
 * end `hi` (the window only grows along a path), so the memo stores hi and the undone ops
 * below it, which are few: no bitmap of the whole history per state.
 */
function checkKey(key: string, ops: HistoryOp[], exploreMax: number, lossy: boolean): { ok: boolean; explored: number } {
  const sorted = [...ops].sort((a, b) => a.invoke - b.invoke);
  const n = sorted.length;
  const done = new Uint8Array(n);
  const mustLinearize = sorted.filter((o) => o.complete !== Infinity).length;
  const seen = new Set<string>();
  let explored = 0;
  let completed = 0;
  let lo = 0;
  const model = new CacheModel();
  const opAt = (i: number): HistoryOp => sorted[i] as HistoryOp;

  /** The state now as a frame, or null when it was seen before (it failed then). */
  const open = (): Frame | null => {
    if (++explored > exploreMax) throw new Error(`linearizability search for key ${key} explored more than ${exploreMax} states`);
    while (lo < n && done[lo] === 1) lo++;
    // An op can go next only if it was invoked before every remaining op completed; past the
    // first op invoked after the running minimum, none can (invokes are sorted).
    let minComplete = Infinity;
    let hi = lo;
    const undone: number[] = [];
    for (; hi < n; hi++) {
      const op = opAt(hi);
      if (op.invoke > minComplete) break;
      if (done[hi] === 0) {
        undone.push(hi);
        minComplete = Math.min(minComplete, op.complete);
      }
    }
    const value = model.get(key);
    const memo = `${hi}|${undone.join(',')}|${value ?? '\u0000'}`;
    if (seen.has(memo)) return null;
    seen.add(memo);
    // A read that may go next and sees the current value goes first without branching:
    // reads change nothing, so any linearization can be reordered to start with it.
    const onlyRead = undone.find((i) => opAt(i).kind === 'get' && opAt(i).value === value) ?? -1;
    return { value, hi, next: onlyRead >= 0 ? onlyRead : lo, tried: -1, onlyRead };
  };

  const apply = (i: number): void => {
    const op = opAt(i);
    done[i] = 1;
    if (op.complete !== Infinity) completed++;
    // A lossy memory's "absent" is the loss taking effect here: it acts as a delete.
    if (op.kind === 'set' || op.value === null) model.set(key, op.value);
  };
  const undo = (f: Frame): void => {
    const i = f.tried;
    done[i] = 0;
    if (opAt(i).complete !== Infinity) completed--;
    model.set(key, f.value);
    if (i < lo) lo = i;
    f.tried = -1;
  };

  if (mustLinearize === 0) return { ok: true, explored };
  const root = open();
  if (root === null) return { ok: false, explored };
  const stack: Frame[] = [root];
  while (stack.length > 0) {
    const f = stack[stack.length - 1] as Frame;
    if (f.tried >= 0) undo(f); // its subtree failed
    // The next candidate of this frame.
    let pick = -1;
    if (f.onlyRead >= 0) {
      if (f.next === f.onlyRead) pick = f.onlyRead;
      f.next = f.hi;
    } else {
      for (; f.next < f.hi; f.next++) {
        const i = f.next;
        if (done[i] === 1) continue;
        const op = opAt(i);
        if (op.kind === 'get' && !(lossy && op.value === null)) continue;
        pick = i;
        f.next++;
        break;
      }
    }
    if (pick < 0) {
      stack.pop();
      continue;
    }
    f.tried = pick;
    apply(pick);
    if (completed === mustLinearize) return { ok: true, explored };
    const child = open();
    if (child !== null) stack.push(child);
  }
  return { ok: false, explored };
}
