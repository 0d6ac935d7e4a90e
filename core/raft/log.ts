// The replicated log of one replica: entry terms in a growable Float64Array
// (fast term lookups and binary search), payloads in a parallel JS array, an
// offset for compaction, and the stable/unstable, committed and applied marks.

import { assert } from '../assert.js';
import type { Entry, Snapshot } from './types.js';

const termsCapacityMin = 64;
/** term() answer for an index that is compacted away or beyond the last index. */
export const termUnavailable = -1;

export class RaftLog {
  /** Index and term of the last entry covered by the snapshot (0/0 when none). */
  snapIndex = 0;
  snapTerm = 0;
  /** terms[i] and ents[i] describe log index snapIndex + 1 + i. */
  private terms: Float64Array = new Float64Array(termsCapacityMin);
  private ents: Entry[] = [];
  /** Entries with index <= stableLast are durable (as reported by persisted()). */
  stableLast = 0;
  /**
   * Entries with index <= inProgressLast were handed out in a Ready (stableLast <=
   * inProgressLast): the next Ready hands out only those after it. A truncation below it
   * pulls it back, so entries that replace handed-out ones are handed out again.
   */
  inProgressLast = 0;
  /** A snapshot received from the leader and not yet persisted. */
  pendingSnapshot: Snapshot | null = null;
  /** pendingSnapshot was handed out in a Ready (it is not handed out twice). */
  snapshotInProgress = false;
  committed = 0;
  /** Highest index handed out in Ready.committedEntries (or snapshot). */
  applying = 0;
  /** Highest index the application applied (appliedTo() after handing out). */
  applied = 0;

  /** Restores the log from storage: entries follow the snapshot contiguously and are all stable. */
  constructor(snapshot: Snapshot | null, entries: readonly Entry[], commit: number) {
    if (snapshot !== null) {
      this.snapIndex = snapshot.meta.index;
      this.snapTerm = snapshot.meta.term;
    }
    for (const e of entries) {
      assert(e.index === this.lastIndex() + 1, `restart entries not contiguous at ${e.index}`);
      this.push(e);
    }
    this.stableLast = this.lastIndex();
    this.inProgressLast = this.stableLast;
    assert(commit >= this.snapIndex && commit <= this.lastIndex(), `restart commit ${commit} outside log`);
    this.committed = commit;
    this.applying = this.snapIndex;
    this.applied = this.snapIndex;
  }

  get length(): number {
    return this.ents.length;
  }

  firstIndex(): number {
    return this.snapIndex + 1;
  }

  lastIndex(): number {
    return this.snapIndex + this.ents.length;
  }

  lastTerm(): number {
    return this.term(this.lastIndex());
  }

  /** The term of entry `i`, or termUnavailable when compacted or beyond the end. */
  term(i: number): number {
    if (i === this.snapIndex) return this.snapTerm;
    if (i < this.snapIndex || i > this.lastIndex()) return termUnavailable;
    const t = this.terms[i - this.snapIndex - 1];
    assert(t !== undefined, 'term array shorter than log');
    return t;
  }

  matchTerm(i: number, t: number): boolean {
    const ours = this.term(i);
    return ours !== termUnavailable && ours === t;
  }

  /** Entry `i`; it must exist (firstIndex <= i <= lastIndex). */
  entry(i: number): Entry {
    const e = this.ents[i - this.snapIndex - 1];
    assert(e !== undefined && e.index === i, `entry ${i} not in log`);
    return e;
  }

  /** Entries [lo, hi) (hi exclusive), at most countMax; lo must not be compacted. */
  slice(lo: number, hi: number, countMax: number, bytesMax = Infinity): Entry[] {
    assert(lo > this.snapIndex, `slice from compacted index ${lo}`);
    assert(hi <= this.lastIndex() + 1 && lo <= hi, `slice [${lo},${hi}) beyond log`);
    let end = Math.min(hi, lo + countMax);
    if (bytesMax !== Infinity) {
      // At least one entry; then as many as fit the byte budget (bounded by countMax).
      let bytes = 0;
      for (let i = lo; i < end; i++) {
        bytes += (this.ents[i - this.snapIndex - 1] as Entry).data.length;
        if (bytes > bytesMax && i > lo) {
          end = i;
          break;
        }
      }
    }
    return this.ents.slice(lo - this.snapIndex - 1, end - this.snapIndex - 1);
  }

  /** Raft §5.3 "up-to-date": is (lastTerm, lastIndex) at least as recent as ours? */
  isAtLeastAsRecent(candidateLastIndex: number, candidateLastTerm: number): boolean {
    const ourTerm = this.lastTerm();
    return candidateLastTerm > ourTerm || (candidateLastTerm === ourTerm && candidateLastIndex >= this.lastIndex());
  }

  /** Appends one entry at lastIndex + 1. */
  push(e: Entry): void {
    assert(e.index === this.lastIndex() + 1, `append at ${e.index}, last is ${this.lastIndex()}`);
    assert(e.term >= this.lastTerm(), 'terms in the log must not decrease');
    const n = this.ents.length;
    if (n === this.terms.length) {
      const grown = new Float64Array(this.terms.length * 2);
      grown.set(this.terms);
      this.terms = grown;
    }
    this.terms[n] = e.term;
    this.ents.push(e);
  }

  /** Drops entries with index > last; un-stabilizes them. last must be >= committed. */
  truncateAfter(last: number): void {
    assert(last >= this.committed, `truncating committed entries (${last} < ${this.committed})`);
    assert(last >= this.snapIndex && last <= this.lastIndex(), 'truncate outside log');
    this.ents.length = last - this.snapIndex;
    if (this.stableLast > last) this.stableLast = last;
    if (this.inProgressLast > last) this.inProgressLast = last;
  }

  /**
   * Follower append (etcd maybeAppend): if our entry at prevIndex has prevTerm,
   * append `ents` (skipping those we already have, truncating at the first
   * conflict), advance commit to min(leaderCommit, last new) and return the last
   * new index; otherwise return -1.
   */
  maybeAppend(prevIndex: number, prevTerm: number, leaderCommit: number, ents: readonly Entry[]): number {
    if (!this.matchTerm(prevIndex, prevTerm)) return -1;
    const lastNew = prevIndex + ents.length;
    let k = 0;
    for (; k < ents.length; k++) {
      const e = ents[k];
      assert(e !== undefined && e.index === prevIndex + 1 + k, 'append entries not contiguous');
      if (!this.matchTerm(e.index, e.term)) break;
    }
    if (k < ents.length) {
      const first = prevIndex + 1 + k;
      if (first <= this.lastIndex()) this.truncateAfter(first - 1);
      for (; k < ents.length; k++) this.push(ents[k] as Entry);
    }
    this.commitTo(Math.min(leaderCommit, lastNew));
    return lastNew;
  }

  /**
   * etcd findConflictByTerm: the largest index <= i whose term is <= t (terms
   * never decrease along the log, so a binary search over the typed array).
   * Returns [index, termAt]; termAt is 0 when nothing at or above the
   * compaction point qualifies (answer [snapIndex, 0]: probe from the snapshot).
   */
  findConflictByTerm(i: number, t: number): [number, number] {
    assert(i <= this.lastIndex(), `conflict probe ${i} beyond last ${this.lastIndex()}`);
    if (i < this.snapIndex) return [i, 0];
    if (i === this.snapIndex) return [i, this.snapTerm <= t ? this.snapTerm : 0];
    if (this.term(i) <= t) return [i, this.term(i)];
    // Find the largest position p in [0, i - snapIndex - 1) with terms[p] <= t.
    let lo = 0;
    let hi = i - this.snapIndex - 1; // exclusive; terms[hi] > t
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.terms[mid] as number) <= t) lo = mid + 1;
      else hi = mid;
    }
    // lo is the first position with term > t; the answer is the one before it.
    if (lo === 0) {
      return this.snapTerm <= t ? [this.snapIndex, this.snapTerm] : [this.snapIndex, 0];
    }
    const idx = this.snapIndex + lo;
    return [idx, this.term(idx)];
  }

  commitTo(c: number): void {
    if (c <= this.committed) return;
    assert(c <= this.lastIndex(), `commit ${c} beyond last index ${this.lastIndex()}`);
    this.committed = c;
  }

  /** Entries to persist that no Ready handed out yet: those after inProgressLast. */
  unstableEntries(): Entry[] {
    const from = Math.max(this.inProgressLast, this.snapIndex) + 1;
    if (from > this.lastIndex()) return [];
    return this.ents.slice(from - this.snapIndex - 1);
  }

  /** Something to persist that no Ready handed out yet (entries or the leader's snapshot). */
  hasUnstable(): boolean {
    return (this.pendingSnapshot !== null && !this.snapshotInProgress) || this.lastIndex() > Math.max(this.inProgressLast, this.snapIndex);
  }

  /** Something not known durable yet (handed out or not). */
  hasUnpersisted(): boolean {
    return this.pendingSnapshot !== null || this.lastIndex() > Math.max(this.stableLast, this.snapIndex);
  }

  /** ready() handed out every unstable entry (and the pending snapshot). */
  markInProgress(): void {
    this.inProgressLast = this.lastIndex();
    if (this.pendingSnapshot !== null) this.snapshotInProgress = true;
  }

  /**
   * The highest index that may be handed out for applying: committed and durable here.
   * Applying only what the local disk holds keeps a snapshot (taken at applied) and
   * anything a state machine writes on apply from getting ahead of this replica's log.
   */
  private applicableLast(): number {
    return Math.min(this.committed, this.stableLast);
  }

  /** Entries committed (and durable here) but not handed out yet, at most countMax. */
  nextCommitted(countMax: number): Entry[] {
    const lo = Math.max(this.applying, this.snapIndex) + 1;
    const hi = this.applicableLast();
    if (lo > hi) return [];
    return this.slice(lo, hi + 1, countMax);
  }

  hasNextCommitted(): boolean {
    return this.applicableLast() > Math.max(this.applying, this.snapIndex);
  }

  /**
   * persisted(): entries up to (i, t) are durable, unless the log changed under them. When
   * entry i still has term t, Log Matching says every entry before it is the one written
   * then too; when it does not (a new leader overwrote a suffix meanwhile), nothing is
   * marked: the overwriting entries become stable with the Ready that handed them out.
   */
  stableTo(i: number, t: number): void {
    if (i > this.stableLast && this.matchTerm(i, t)) this.stableLast = i;
  }

  /** Install a snapshot from the leader: the whole log is replaced. */
  restore(s: Snapshot): void {
    assert(s.meta.index > this.committed, 'restoring a snapshot behind commit');
    this.snapIndex = s.meta.index;
    this.snapTerm = s.meta.term;
    this.ents.length = 0;
    this.stableLast = s.meta.index;
    this.inProgressLast = s.meta.index;
    this.committed = s.meta.index;
    this.applying = s.meta.index;
    this.pendingSnapshot = s;
    this.snapshotInProgress = false;
    assert(this.lastIndex() === s.meta.index, 'restored log not empty');
  }

  /** The application snapshotted at `i` (<= applied): drop entries up to it, keeping term(i). */
  compact(i: number): void {
    assert(i <= this.applied, `compact ${i} beyond applied ${this.applied}`);
    assert(i <= this.stableLast, `compact ${i} beyond stable ${this.stableLast}`);
    if (i <= this.snapIndex) return;
    const t = this.term(i);
    assert(t !== termUnavailable, 'compact index without a term');
    const drop = i - this.snapIndex;
    this.terms.copyWithin(0, drop, this.ents.length);
    this.ents.splice(0, drop);
    this.snapIndex = i;
    this.snapTerm = t;
  }

}
