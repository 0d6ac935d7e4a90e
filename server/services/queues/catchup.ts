// Streamed catch-up on the services' peer seam: the I/O around core/queue/catchup.ts.
//
// Receiver (a replica installing a partition snapshot whose bodies are in the sender's
// store): PartitionCatchUp.admit() is asked by the partition machine before Raft sees the
// snapshot (GroupRunner.step -> PartitionMachine.admitSnapshot). Until the incoming
// store (storage.ts: DATA_DIR/queues/<group>.incoming) holds the snapshot's range, synced,
// it answers false and pulls records from the snapshot's sender: QueueCatchUpPull asks for
// at most queueCatchUpChunksPerPull chunks of at most queueCatchUpChunkBytes, each
// imported (verified record by record) as it arrives. Complete and synced, it steps the
// held snapshot again; Raft saves and installs it and restore() adopts the incoming store.
//
// Sender (any replica hosting the partition, normally its leader): answers a pull with
// consecutive chunks read from its segment files (QueueStore.exportChunk, from below the
// logical front too while the files are kept), or `gone` when it has no file holding the
// first offset asked. A chunk the link refuses (full) is not sent: the receiver's pull
// times out and asks again from what arrived.

import { queueCatchUpChunksPerPull, queueCatchUpPullTimeoutMs } from '../../../core/constants.js';
import { type CatchUpAction, CatchUpTransfer } from '../../../core/queue/catchup.js';
import type { GroupId, NodeId } from '../../../core/ids.js';
import type { dsync } from '../../../protocol/generated/dsync.js';
import type { schema } from '../../../protocol/index.js';
import type { Logger } from '../../node/log.js';
import type { Cancel, MonotonicClock, Scheduler } from '../../runtime.js';
import { QueueStoreChunkError } from '../../storage/queue-store.js';
import type { SnapshotRange } from './partition.js';
import type { PartitionStorage } from './storage.js';

export interface CatchUpEnv {
  readonly group: GroupId;
  readonly storage: PartitionStorage;
  readonly clock: MonotonicClock;
  readonly scheduler: Scheduler;
  readonly log: Logger;
  /** Sends a pull to `to` (a peer push; false when dropped). */
  sendPull(to: NodeId, pull: dsync.QueueCatchUpPull.$Properties): boolean;
  /** The incoming store failed on disk: the node must stop. */
  fatal(message: string): void;
}

/** Counted per node for /metrics and tests: transfers completed, chunks and bytes streamed in and out. */
export interface CatchUpCounts {
  admitted: number;
  chunksIn: number;
  bytesIn: number;
  chunksOut: number;
  bytesOut: number;
}

export class PartitionCatchUp {
  private transfer: CatchUpTransfer | null = null;
  private retry: (() => void) | null = null;
  private timer: Cancel | null = null;
  private stopped = false;
  /** The range of the last snapshot admitted: its resends are admitted at once. */
  private admitted: { readonly firstOffset: number; readonly nextOffset: number } | null = null;

  constructor(private readonly env: CatchUpEnv, private readonly counts: CatchUpCounts) {}

  /** Whether the snapshot with `range` from `from` may be installed now (see the header). */
  admit(range: SnapshotRange, from: NodeId, retry: () => void): boolean {
    if (this.stopped) return false;
    // Raft's resend of a snapshot already admitted (and not yet installed): the incoming store
    // is complete and synced; a second transfer would sync it again while restore() adopts it.
    if (this.admitted !== null && this.admitted.firstOffset === range.firstOffset && this.admitted.nextOffset === range.nextOffset) return true;
    this.admitted = null;
    this.retry = retry;
    let t = this.transfer;
    if (t === null) {
      // What the incoming store kept (a restart resumes from it) is where this transfer starts.
      const kept = this.env.storage.incoming();
      t = new CatchUpTransfer({ chunksPerPull: queueCatchUpChunksPerPull, timeoutMs: queueCatchUpPullTimeoutMs },
        kept === null ? null : { firstOffset: kept.firstOffset, nextOffset: kept.nextOffset });
      this.transfer = t;
      this.env.log.info('queue partition catch-up: streaming a snapshot\'s bodies', { group: this.env.group, from,
        first: range.firstOffset, next: range.nextOffset, kept: kept === null ? '' : `${kept.firstOffset}-${kept.nextOffset}` });
      this.timer = this.env.scheduler.every(queueCatchUpPullTimeoutMs / 4, () => this.run(this.transfer?.tick(this.env.clock.nowMs()) ?? []));
    }
    const admitted = this.run(t.offer({ firstOffset: range.firstOffset, nextOffset: range.nextOffset, source: from }, this.env.clock.nowMs()), true);
    if (admitted) {
      this.admitted = { firstOffset: range.firstOffset, nextOffset: range.nextOffset };
      this.counts.admitted++;
      this.env.log.info('queue partition catch-up: bodies in, installing the snapshot', { group: this.env.group, ...t.counts });
      this.finish();
    }
    return admitted;
  }

  /** A QueueCatchUpChunk for this partition. */
  chunk(c: ReturnType<typeof schema.QueueCatchUpChunk.decode>): void {
    const t = this.transfer;
    if (t === null || this.stopped) return;
    const nowMs = this.env.clock.nowMs();
    const pull = Number(c.pull);
    if (c.gone === true) {
      this.run(t.gone(pull, nowMs));
      return;
    }
    const firstOffset = Number(c.firstOffset);
    const count = c.count ?? 0;
    if (!t.accept(pull, firstOffset, count)) return;
    const store = this.env.storage.incoming();
    if (store === null) return;
    const records = c.records ?? new Uint8Array(0);
    try {
      store.importChunk({ firstOffset: firstOffset as never, count, records });
    } catch (err) {
      if (!(err instanceof QueueStoreChunkError)) {
        this.env.fatal(`queue partition group ${this.env.group}: the incoming store failed: ${String(err)}`);
        this.stop();
        return;
      }
      this.env.log.warn('queue partition catch-up: a bad chunk; starting the transfer again', { group: this.env.group, err: err.message });
      this.run(t.importFailed(nowMs));
      return;
    }
    this.counts.chunksIn++;
    this.counts.bytesIn += records.length;
    this.run(t.imported(count, nowMs));
  }

  /** The partition stops on this node. */
  stop(): void {
    this.stopped = true;
    this.finish();
  }

  private finish(): void {
    this.timer?.();
    this.timer = null;
    this.transfer = null;
    this.retry = null;
  }

  /** Carries out the actions; answers whether one was 'admit' (inside admit(): the caller steps the snapshot). */
  private run(actions: readonly CatchUpAction[], inAdmit = false): boolean {
    let admit = false;
    for (const a of actions) {
      switch (a.kind) {
        case 'reset':
          this.env.storage.incoming({ firstOffset: a.firstOffset as never });
          break;
        case 'truncate':
          this.env.storage.incoming()?.truncateBefore(a.before as never);
          break;
        case 'pull':
          this.env.sendPull(a.to, { group: this.env.group, pull: a.pull, fromOffset: a.fromOffset, upTo: a.upTo, chunks: a.chunks });
          break;
        case 'sync': {
          const store = this.env.storage.incoming();
          const t = this.transfer;
          if (store === null || t === null) break;
          store.sync().then((cp) => {
            if (this.transfer === t && !this.stopped) this.run(t.syncedAt({ firstOffset: cp.firstOffset, nextOffset: cp.nextOffset }, this.env.clock.nowMs()));
          }, (err: unknown) => {
            t.syncFailed();
            this.env.fatal(`queue partition group ${this.env.group}: syncing the incoming store failed: ${String(err)}`);
          });
          break;
        }
        case 'admit':
          admit = true;
          break;
      }
    }
    if (admit && !inAdmit) {
      // Step the held snapshot again (it is admitted then); Raft's own resend would also do.
      const retry = this.retry;
      if (retry !== null) this.env.scheduler.defer(retry);
    }
    return admit;
  }
}

/** Sender: answers a pull with up to `chunks` consecutive chunks, or gone. */
export function answerPull(
  pull: ReturnType<typeof schema.QueueCatchUpPull.decode>,
  exportChunk: ((from: number, upTo: number) => { firstOffset: number; count: number; records: Uint8Array } | null) | null,
  send: (chunk: dsync.QueueCatchUpChunk.$Properties) => boolean,
  counts: CatchUpCounts,
): void {
  const group = pull.group;
  const upTo = Number(pull.upTo);
  let from = Number(pull.fromOffset);
  const chunks = Math.min(pull.chunks ?? 0, queueCatchUpChunksPerPull);
  for (let i = 0; i < chunks && from < upTo; i++) {
    let chunk: ReturnType<NonNullable<typeof exportChunk>> = null;
    try {
      chunk = exportChunk === null ? null : exportChunk(from, upTo);
    } catch {
      chunk = null;
    }
    if (chunk === null) {
      send({ group, pull: pull.pull, gone: true, firstOffset: from });
      return;
    }
    if (!send({ group, pull: pull.pull, firstOffset: chunk.firstOffset, count: chunk.count, records: chunk.records })) return;
    counts.chunksOut++;
    counts.bytesOut += chunk.records.length;
    from = chunk.firstOffset + chunk.count;
  }
}
