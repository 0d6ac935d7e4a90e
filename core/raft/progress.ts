// What a leader knows about one follower (etcd tracker.Progress): match/next,
// the probe/replicate/snapshot flow states, and the in-flight append window.

import { assert } from '../assert.js';
import type { LogIndex } from '../ids.js';

export const enum ProgressState {
  /** Unknown match: send one append at a time and back off on rejection. */
  Probe = 0,
  /** Known match: pipeline appends optimistically, bounded by the inflight window. */
  Replicate = 1,
  /** Needs entries we compacted: a snapshot is on its way. */
  Snapshot = 2,
}

/** A ring buffer of the last index of each append message in flight (no allocation per send). */
export class Inflights {
  private readonly lastIndexes: Float64Array;
  private start = 0;
  count = 0;

  constructor(readonly capacity: number) {
    assert(capacity > 0, 'inflight capacity must be positive');
    this.lastIndexes = new Float64Array(capacity);
  }

  full(): boolean {
    return this.count === this.capacity;
  }

  add(lastIndex: number): void {
    assert(!this.full(), 'inflight window overflow');
    const slot = (this.start + this.count) % this.capacity;
    if (this.count > 0) {
      const prevSlot = (slot + this.capacity - 1) % this.capacity;
      assert(lastIndex > (this.lastIndexes[prevSlot] as number), 'inflights must be increasing');
    }
    this.lastIndexes[slot] = lastIndex;
    this.count++;
  }

  /** Frees every message whose last index is <= `index` (acknowledged). */
  freeLE(index: number): void {
    while (this.count > 0 && (this.lastIndexes[this.start] as number) <= index) {
      this.start = (this.start + 1) % this.capacity;
      this.count--;
    }
    if (this.count === 0) this.start = 0;
  }

  /** Frees the oldest message (a heartbeat answered while the window was full: appends were likely lost). */
  freeFirstOne(): void {
    if (this.count === 0) return;
    this.start = (this.start + 1) % this.capacity;
    this.count--;
  }

  reset(): void {
    this.start = 0;
    this.count = 0;
  }
}

/** A read-only copy of one follower's Progress, as a leader reports it (Raft.progressOf). */
export interface ProgressStatus {
  readonly state: ProgressState;
  readonly match: LogIndex;
  readonly next: LogIndex;
  /** Nothing more is sent until an answer (or a heartbeat response) arrives. */
  readonly paused: boolean;
}

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = ProgressState.Probe;
  /** Probe state: an append is outstanding, wait for its answer (or a heartbeat response). */
  probeSent = false;
  /** Snapshot state: index of the snapshot sent, and ticks spent waiting for it to be acknowledged. */
  pendingSnapshot = 0;
  snapshotElapsedTicks = 0;
  /** Heard from since the last check-quorum round. */
  recentActive = false;
  readonly inflights: Inflights;

  constructor(next: number, inflightMax: number, public isLearner: boolean) {
    assert(next >= 1, 'next index starts at 1');
    this.next = next;
    this.inflights = new Inflights(inflightMax);
  }

  private resetState(state: ProgressState): void {
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.snapshotElapsedTicks = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    if (this.state === ProgressState.Snapshot) {
      const pending = this.pendingSnapshot;
      this.resetState(ProgressState.Probe);
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState(ProgressState.Probe);
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState(ProgressState.Replicate);
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState(ProgressState.Snapshot);
    this.pendingSnapshot = snapshotIndex;
  }

  /** An append was acknowledged up to n; returns whether match moved. */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.probeSent = false;
    }
    if (this.next < n + 1) this.next = n + 1;
    assert(this.next > this.match, 'next must exceed match');
    return updated;
  }

  /** Replicate state: entries up to `last` were sent optimistically. */
  sentEntries(count: number, last: number): void {
    switch (this.state) {
      case ProgressState.Replicate:
        if (count > 0) {
          assert(last + 1 > this.next - 1, 'optimistic next must not go backwards');
          this.next = last + 1;
          this.inflights.add(last);
        }
        return;
      case ProgressState.Probe:
        if (count > 0) this.probeSent = true;
        return;
      case ProgressState.Snapshot:
        assert(false, 'sending entries in snapshot state');
    }
  }

  /**
   * A rejection of the append at `rejected`; `matchHint` is the leader's guess
   * (from the follower's hint) of the last index that may match. Returns false
   * when the rejection is stale.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === ProgressState.Replicate) {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.state === ProgressState.Snapshot) return false;
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.probeSent = false;
    assert(this.next >= 1, 'next index below 1');
    return true;
  }

  isPaused(): boolean {
    switch (this.state) {
      case ProgressState.Probe:
        return this.probeSent;
      case ProgressState.Replicate:
        return this.inflights.full();
      case ProgressState.Snapshot:
        return true;
    }
  }
}
