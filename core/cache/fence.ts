// Fenced cache writes: per lock, the newest fencing token a home has seen on a write. A
// write that carries a lock's token is refused (Nack fenced) when the token is older than
// that; an equal token passes (one holder writes many times). Pure and bounded.
//
// Decisions:
// - One table per node, shared by every ring generation's home there, so a ring change
//   does not forget the tokens this node saw. It is not replicated: a key that moves to
//   another node's home meets that node's table (documented in docs/architecture.md).
// - Checked when the home starts serving the write, which for one key is in arrival order
//   (requests for a key are served one at a time): on one key, a write with an older
//   token never lands after one with a newer token.
// - Bounded by cacheFenceLocksMax: beyond it the lock fenced least recently is forgotten
//   (Map order, refreshed on every admit), counted so an operator can see it.

import { assert } from '../assert.js';
import { cacheFenceLocksMax, cacheKeyBytesMax } from '../constants.js';

/** A lock's name and the fencing token its holder was granted. */
/** Longest lock name in a fence, in UTF-16 units: a lock or key name (cacheKeyBytesMax bytes) and a short prefix. */
export const fenceLockCharsMax = cacheKeyBytesMax + 16;

export interface Fence {
  readonly lock: string;
  readonly token: number;
}

export class FenceTable {
  private readonly newest = new Map<string, number>();
  forgotten = 0;
  refused = 0;

  constructor(private readonly locksMax = cacheFenceLocksMax) {
    assert(locksMax > 0, 'a fence table remembers at least one lock');
  }

  /** True (and remembered) when `fence.token` is not older than the newest seen for its lock. */
  admit(fence: Fence): boolean {
    assert(Number.isSafeInteger(fence.token) && fence.token > 0 && fence.lock.length > 0 && fence.lock.length <= fenceLockCharsMax, 'a fence names a lock and a positive token');
    const seen = this.newest.get(fence.lock);
    if (seen !== undefined && fence.token < seen) {
      this.refused++;
      return false;
    }
    this.newest.delete(fence.lock);
    if (this.newest.size >= this.locksMax) {
      const oldest = this.newest.keys().next().value as string;
      this.newest.delete(oldest);
      this.forgotten++;
    }
    this.newest.set(fence.lock, Math.max(seen ?? 0, fence.token));
    assert(this.newest.size <= this.locksMax, 'fence table within its bound');
    return true;
  }

  /** The newest token seen for `lock` (0: none). */
  newestOf(lock: string): number {
    return this.newest.get(lock) ?? 0;
  }

  get size(): number {
    return this.newest.size;
  }
}
