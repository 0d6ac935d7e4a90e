// A replica's streamed catch-up of one partition's message bodies (the decisions only;
// server/services/queues/catchup.ts does the I/O). A partition snapshot records the
// store's range [first, next) but not its bodies; a replica installing one must first hold
// that range in its incoming store, synced. This machine decides what to pull from whom,
// which arriving chunk to import, when the incoming store must be emptied or cut at the
// front, when to sync it, and when the held snapshot may go on to Raft.
//
// - Targets come from offer(): a snapshot from `source` (the leader that sent it; Raft
//   resends while the replica is silent). A new target keeps what the incoming store
//   already holds when that is a prefix of the new range's messages: the log is
//   deterministic, so offset o holds the same message on every replica and in every
//   snapshot. It is kept when first <= target.first <= next <= target.next (the front is
//   cut to target.first); otherwise the store is emptied and starts at target.first. So a
//   leader change or a newer snapshot mid-transfer resumes where it was, and a restart
//   resumes from what the store kept on disk (restarted()).
// - Pulls: one at a time, for [next, target.next), at most chunksPerPull chunks. The
//   sender answers with consecutive chunks; each must start exactly at the store's next
//   offset (anything else, a late answer to an older pull included, is ignored). When all
//   chunks of a pull arrived the next pull goes out; a pull unanswered for timeoutMs is
//   sent again from what arrived (peer pushes may be dropped).
// - Gone: the sender no longer has the files (a newer snapshot of its own is durable and
//   deleted them). Nothing to do but wait: the sender's Raft sends its newer snapshot,
//   whose offer() retargets. The pull is retried after timeoutMs meanwhile.
// - Complete: the store holds [target.first, target.next): sync it; once synced at
//   exactly that range, admit the snapshot (the wiring steps it into Raft, which saves
//   it, and restore() adopts the store). Memory held: at most chunksPerPull chunks in
//   flight, whatever the backlog.

import { assert } from '../assert.js';
import type { NodeId } from '../ids.js';

export interface CatchUpTarget {
  readonly firstOffset: number;
  readonly nextOffset: number;
  readonly source: NodeId;
}

/** What the incoming store holds: [firstOffset, nextOffset). */
export interface StagedRange {
  readonly firstOffset: number;
  readonly nextOffset: number;
}

export type CatchUpAction =
  /** Empty the incoming store and start it at firstOffset. */
  | { readonly kind: 'reset'; readonly firstOffset: number }
  /** Drop the incoming store's records below `before`. */
  | { readonly kind: 'truncate'; readonly before: number }
  | { readonly kind: 'pull'; readonly to: NodeId; readonly pull: number; readonly fromOffset: number; readonly upTo: number; readonly chunks: number }
  /** Write and fsync the incoming store; answer synced() with the range it then holds. */
  | { readonly kind: 'sync' }
  /** The incoming store holds the target, synced: step the held snapshot into Raft. */
  | { readonly kind: 'admit' };

export type CatchUpPhase = 'idle' | 'pulling' | 'syncing' | 'complete';

export interface CatchUpOptions {
  readonly chunksPerPull: number;
  readonly timeoutMs: number;
}

export class CatchUpTransfer {
  private target: CatchUpTarget | null = null;
  private staged: StagedRange | null;
  /** The incoming store holds the target's range and a sync answered for exactly it. */
  private synced = false;
  private syncing = false;
  private pullNumber = 0;
  /** The pull in flight: chunks still expected, and when it (or its last chunk) was sent/arrived. */
  private inFlight: { readonly pull: number; chunksLeft: number; atMs: number } | null = null;
  /** A gone answer: retry the pull no sooner than this. */
  private retryAtMs = 0;
  /** Counted for tests and logs. */
  readonly counts = { pulls: 0, chunks: 0, records: 0, resets: 0, timeouts: 0, gone: 0, ignored: 0 };

  constructor(private readonly opts: CatchUpOptions, staged: StagedRange | null = null) {
    assert(opts.chunksPerPull >= 1 && opts.timeoutMs > 0, 'catch-up options');
    this.staged = staged;
  }

  get phase(): CatchUpPhase {
    if (this.target === null) return 'idle';
    if (this.synced) return 'complete';
    if (this.syncing || this.isFilled()) return 'syncing';
    return 'pulling';
  }

  get current(): CatchUpTarget | null {
    return this.target;
  }

  get holds(): StagedRange | null {
    return this.staged;
  }

  /** A snapshot with range [first, next) arrived from `source`. */
  offer(target: CatchUpTarget, nowMs: number): CatchUpAction[] {
    assert(Number.isSafeInteger(target.firstOffset) && target.firstOffset <= target.nextOffset, 'target range');
    const same = this.target !== null && this.target.firstOffset === target.firstOffset && this.target.nextOffset === target.nextOffset;
    if (same && this.synced) {
      this.target = target;
      return [{ kind: 'admit' }];
    }
    const sourceChanged = this.target?.source !== target.source;
    this.target = target;
    const out: CatchUpAction[] = [];
    if (!same) {
      this.synced = false;
      const s = this.staged;
      if (s === null || s.firstOffset > target.firstOffset || s.nextOffset > target.nextOffset || s.nextOffset < target.firstOffset) {
        out.push(...this.reset(target.firstOffset));
      } else if (s.firstOffset < target.firstOffset) {
        this.staged = { firstOffset: target.firstOffset, nextOffset: s.nextOffset };
        out.push({ kind: 'truncate', before: target.firstOffset });
      }
      // The pull in flight asked for another range's end: ask again.
      this.inFlight = null;
    } else if (sourceChanged) {
      this.inFlight = null;
    }
    out.push(...this.next(nowMs));
    return out;
  }

  /**
   * A chunk answering pull `pull`: true when the wiring must import it (it starts at the
   * incoming store's next offset and lies inside the target); then call imported().
   */
  accept(pull: number, firstOffset: number, count: number): boolean {
    const t = this.target;
    const s = this.staged;
    const ok = t !== null && s !== null && this.inFlight !== null && this.inFlight.pull === pull && !this.syncing && !this.synced
      && count > 0 && firstOffset === s.nextOffset && firstOffset + count <= t.nextOffset;
    if (!ok) this.counts.ignored++;
    return ok;
  }

  /** The accepted chunk was imported: `count` more records. */
  imported(count: number, nowMs: number): CatchUpAction[] {
    const s = this.staged;
    assert(s !== null && this.inFlight !== null, 'an import answers the pull in flight');
    this.staged = { firstOffset: s.firstOffset, nextOffset: s.nextOffset + count };
    this.counts.chunks++;
    this.counts.records += count;
    this.inFlight.chunksLeft--;
    this.inFlight.atMs = nowMs;
    if (this.inFlight.chunksLeft <= 0 || this.isFilled()) this.inFlight = null;
    return this.next(nowMs);
  }

  /** The import failed (a damaged chunk): start the incoming store again. */
  importFailed(nowMs: number): CatchUpAction[] {
    const t = this.target;
    assert(t !== null, 'an import has a target');
    this.inFlight = null;
    return [...this.reset(t.firstOffset), ...this.next(nowMs)];
  }

  /** The sender of `pull` no longer has the range: wait for a newer snapshot (or retry after the timeout). */
  gone(pull: number, nowMs: number): CatchUpAction[] {
    if (this.inFlight === null || this.inFlight.pull !== pull) return [];
    this.counts.gone++;
    this.inFlight = null;
    this.retryAtMs = nowMs + this.opts.timeoutMs;
    return [];
  }

  /** The sync asked for finished: the store then held `range`. */
  syncedAt(range: StagedRange, nowMs: number): CatchUpAction[] {
    this.syncing = false;
    const t = this.target;
    if (t !== null && range.firstOffset === t.firstOffset && range.nextOffset === t.nextOffset
      && this.staged !== null && this.staged.firstOffset === t.firstOffset && this.staged.nextOffset === t.nextOffset) {
      this.synced = true;
      return [{ kind: 'admit' }];
    }
    return this.next(nowMs);
  }

  /** The sync failed: the node stops (the wiring reports it); nothing more is decided. */
  syncFailed(): void {
    this.syncing = false;
    this.target = null;
  }

  /** Time passed: a pull unanswered for timeoutMs (or a gone one's wait over) goes out again. */
  tick(nowMs: number): CatchUpAction[] {
    if (this.inFlight !== null && nowMs - this.inFlight.atMs >= this.opts.timeoutMs) {
      this.counts.timeouts++;
      this.inFlight = null;
    }
    return this.next(nowMs);
  }

  /** The snapshot was installed (the store adopted): nothing is staged any more. */
  installed(): void {
    this.target = null;
    this.staged = null;
    this.synced = false;
    this.inFlight = null;
  }

  private isFilled(): boolean {
    const t = this.target;
    const s = this.staged;
    return t !== null && s !== null && s.firstOffset === t.firstOffset && s.nextOffset === t.nextOffset;
  }

  private reset(firstOffset: number): CatchUpAction[] {
    this.counts.resets++;
    this.staged = { firstOffset, nextOffset: firstOffset };
    this.synced = false;
    return [{ kind: 'reset', firstOffset }];
  }

  private next(nowMs: number): CatchUpAction[] {
    const t = this.target;
    const s = this.staged;
    if (t === null || s === null || this.synced || this.syncing) return [];
    if (this.isFilled()) {
      this.syncing = true;
      this.inFlight = null;
      return [{ kind: 'sync' }];
    }
    if (this.inFlight !== null || nowMs < this.retryAtMs) return [];
    const pull = ++this.pullNumber;
    this.inFlight = { pull, chunksLeft: this.opts.chunksPerPull, atMs: nowMs };
    this.counts.pulls++;
    return [{ kind: 'pull', to: t.source, pull, fromOffset: s.nextOffset, upTo: t.nextOffset, chunks: this.opts.chunksPerPull }];
  }
}
