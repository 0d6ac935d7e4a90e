// A binary min-heap of (a, b) number pairs in two parallel Float64Arrays, ordered by
// a then b. The partition keeps its ack deadlines (deadlineMs, delivery) and each
// group's redeliveries (readyAtMs, offset) in these: no object per entry, growth by
// doubling. Entries are never removed from the middle; the owner checks an entry
// against its state when it pops it and drops it if stale (lazy deletion).

import { assert } from '../assert.js';

export class PairHeap {
  private a = new Float64Array(16);
  private b = new Float64Array(16);
  private n = 0;

  get size(): number {
    return this.n;
  }

  push(a: number, b: number): void {
    if (this.n === this.a.length) {
      const na = new Float64Array(this.n * 2);
      const nb = new Float64Array(this.n * 2);
      na.set(this.a);
      nb.set(this.b);
      this.a = na;
      this.b = nb;
    }
    let i = this.n++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(a, b, this.a[parent] as number, this.b[parent] as number)) break;
      this.a[i] = this.a[parent] as number;
      this.b[i] = this.b[parent] as number;
      i = parent;
    }
    this.a[i] = a;
    this.b[i] = b;
  }

  /** The smallest a, or Infinity when empty. */
  peekA(): number {
    return this.n === 0 ? Infinity : (this.a[0] as number);
  }

  peekB(): number {
    assert(this.n > 0, 'peek of an empty heap');
    return this.b[0] as number;
  }

  /** Removes the smallest pair (read it with peekA/peekB first). */
  pop(): void {
    assert(this.n > 0, 'pop of an empty heap');
    const last = --this.n;
    const a = this.a[last] as number;
    const b = this.b[last] as number;
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= last) break;
      if (child + 1 < last && this.less(this.a[child + 1] as number, this.b[child + 1] as number, this.a[child] as number, this.b[child] as number)) child++;
      if (!this.less(this.a[child] as number, this.b[child] as number, a, b)) break;
      this.a[i] = this.a[child] as number;
      this.b[i] = this.b[child] as number;
      i = child;
    }
    this.a[i] = a;
    this.b[i] = b;
  }

  clear(): void {
    this.n = 0;
  }

  private less(a1: number, b1: number, a2: number, b2: number): boolean {
    return a1 < a2 || (a1 === a2 && b1 < b2);
  }
}
