// The simulator's event queue: a binary min-heap ordered by (time, insertion
// sequence), so events at the same virtual instant run in a replayable order.

export interface SimEvent {
  readonly at: number;
  readonly seq: number;
  readonly fn: () => void;
}

export class EventHeap {
  private readonly items: SimEvent[] = [];
  private seqNext = 0;

  get size(): number {
    return this.items.length;
  }

  push(at: number, fn: () => void): void {
    const ev: SimEvent = { at, seq: this.seqNext++, fn };
    const items = this.items;
    items.push(ev);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = items[parent]!;
      if (!before(ev, p)) break;
      items[i] = p;
      i = parent;
    }
    items[i] = ev;
  }

  peekAt(): number {
    const top = this.items[0];
    return top === undefined ? Infinity : top.at;
  }

  pop(): SimEvent | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (top === undefined || last === undefined || items.length === 0) return top;
    let i = 0;
    const n = items.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const lItem = items[l]!;
      let c = l;
      let cItem = lItem;
      if (r < n) {
        const rItem = items[r]!;
        if (before(rItem, lItem)) {
          c = r;
          cItem = rItem;
        }
      }
      if (!before(cItem, last)) break;
      items[i] = cItem;
      i = c;
    }
    items[i] = last;
    return top;
  }
}

function before(a: SimEvent, b: SimEvent): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
