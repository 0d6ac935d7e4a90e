// Test helper (not a test): a deliberately naive consistent-hash ring, the literal
// definition: an array of {pos, node, vnode} objects sorted with a comparator, and
// a linear scan for the first position at or after the key's hash.

import type { NodeId } from '../../../core/ids.js';
import type { Hash32 } from '../../../core/ring/ring.js';

interface Point {
  pos: number;
  node: NodeId;
  vnode: number;
}

export class NaiveRing {
  private points: Point[] = [];

  constructor(
    private readonly hash: Hash32,
    nodes: Iterable<NodeId>,
    private readonly vnodes: number,
  ) {
    for (const node of new Set(nodes)) {
      for (let i = 0; i < vnodes; i++) this.points.push({ pos: this.hashString(`${node}#${i}`), node, vnode: i });
    }
    // Equal positions: the smaller node id first, then the smaller vnode index.
    this.points.sort((a, b) => a.pos - b.pos || (a.node < b.node ? -1 : a.node > b.node ? 1 : 0) || a.vnode - b.vnode);
  }

  hashString(s: string): number {
    return this.hash(new TextEncoder().encode(s)) >>> 0;
  }

  owner(key: string): NodeId {
    const h = this.hashString(key);
    for (const p of this.points) if (p.pos >= h) return p.node;
    return (this.points[0] as Point).node;
  }

  replicas(key: string, r: number): NodeId[] {
    const h = this.hashString(key);
    let start = this.points.findIndex((p) => p.pos >= h);
    if (start < 0) start = 0;
    const out: NodeId[] = [];
    for (let k = 0; k < this.points.length; k++) {
      const node = (this.points[(start + k) % this.points.length] as Point).node;
      if (!out.includes(node) && out.length < r) out.push(node);
    }
    return out;
  }
}

/**
 * The bounded-load placement, literally: partitions by (hash, key), each walking
 * clockwise over the sorted points, skipping members already chosen or at the cap
 * ceil(loadFactor x keys x r / N); if too few have room, the next ones regardless.
 */
export function naivePlaceBounded(ring: NaiveRing, members: readonly NodeId[], keys: readonly string[], r: number, loadFactor: number): NodeId[][] {
  const n = new Set(members).size;
  const want = Math.min(r, n);
  const cap = Math.ceil((loadFactor * keys.length * want) / n);
  const load: Record<string, number> = {};
  const order = keys.map((k, i) => ({ k, i, h: ring.hashString(k) }));
  order.sort((a, b) => a.h - b.h || (a.k < b.k ? -1 : a.k > b.k ? 1 : 0) || a.i - b.i);
  const out: NodeId[][] = [];
  for (const { k, i } of order) {
    const walk = ring.replicas(k, n); // every member, in clockwise order from k
    const reps: NodeId[] = [];
    for (const m of walk) if (reps.length < want && (load[m] ?? 0) < cap) reps.push(m);
    for (const m of walk) if (reps.length < want && !reps.includes(m)) reps.push(m);
    for (const m of reps) load[m] = (load[m] ?? 0) + 1;
    out[i] = reps;
  }
  return out;
}
