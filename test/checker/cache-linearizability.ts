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

function checkKey(key: string, ops: HistoryOp[], exploreMax: number, lossy: boolean): { ok: boolean; explored: number } {
  const sorted = [...ops].sort((a, b) => a.invoke - b.invoke);
  const n = sorted.length;
  const done = new Uint8Array(n);
  const mustLinearize = sorted.filter((o) => o.complete !== Infinity).length;
  const seen = new Set<string>();
  let explored = 0;
  const model = new CacheModel();

  const search = (linearized: number, completedLinearized: number): boolean => {
    if (completedLinearized === mustLinearize) return true;
    if (++explored > exploreMax) throw new Error(`linearizability search for key ${key} explored more than ${exploreMax} states`);
    const value = model.get(key);
    const memo = `${Buffer.from(done).toString('base64')}|${value ?? '\u0000'}`;
    if (seen.has(memo)) return false;
    seen.add(memo);
    // An op can go next only if it was invoked before every remaining op completed.
    let minComplete = Infinity;
    for (let i = 0; i < n; i++) if (done[i] === 0) minComplete = Math.min(minComplete, (sorted[i] as HistoryOp).complete);
    // A read that may go next and sees the current value goes first without branching:
    // reads change nothing, so any linearization can be reordered to start with it.
    for (let i = 0; i < n; i++) {
      if (done[i] === 1) continue;
      const op = sorted[i] as HistoryOp;
      if (op.invoke > minComplete) break;
      if (op.kind === 'get' && op.value === value) {
        done[i] = 1;
        const ok = search(linearized + 1, completedLinearized + 1);
        done[i] = 0;
        return ok;
      }
    }
    for (let i = 0; i < n; i++) {
      if (done[i] === 1) continue;
      const op = sorted[i] as HistoryOp;
      if (op.invoke > minComplete) break;
      // A lossy memory's "absent" is the loss taking effect here: it acts as a delete.
      const loss = lossy && op.kind === 'get' && op.value === null;
      if (op.kind === 'get' && !loss) continue;
      done[i] = 1;
      model.set(key, op.value);
      const ok = search(linearized + 1, completedLinearized + (op.complete !== Infinity ? 1 : 0));
      model.set(key, value);
      done[i] = 0;
      if (ok) return true;
    }
    return false;
  };
  return { ok: search(0, 0), explored };
}
