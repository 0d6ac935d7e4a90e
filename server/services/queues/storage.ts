// Where a partition's message bodies live on one node: a QueueStore (segment files)
// under DATA_DIR/queues/<group id>/ on a real node, a MemoryMessageStore in the
// simulator and unit tests. The partition machine (partition.ts) gets one
// PartitionStorage per partition from the factory the service was built with. Disk
// stores: snapshots carry only the range, a streamed catch-up (catchup.ts) fills
// <group>.incoming, which replaces <group> when its snapshot is installed. Memory stores:
// snapshots carry the bodies (nothing else survives a restart), no streaming.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { queueCatchUpChunkBytes } from '../../../core/constants.js';
import type { GroupId, Offset } from '../../../core/ids.js';
import { MemoryMessageStore, type MessageStore } from '../../../core/queue/store.js';
import type { Logger } from '../../node/log.js';
import { QueueStore, type QueueStoreChunk, QueueStoreCorruptionError, type QueueStoreCheckpoint } from '../../storage/queue-store.js';

export interface PartitionStorage {
  /**
   * Whether this partition's snapshots carry the bodies of its retained messages (memory
   * stores: nothing of them survives a restart) or only the store's range (disk stores:
   * the bodies are in the segment files, and a replica without them streams them in).
   */
  readonly snapshotsCarryBodies: boolean;
  /** A new empty store whose first offset is `firstOffset` (whatever this partition had on this node is wiped). */
  create(firstOffset: Offset): MessageStore;
  /**
   * The store this node kept, holding exactly `cp` intact; null when it cannot (missing,
   * damaged, or not a disk store). Also finds a streamed-in store that holds `cp` (a crash
   * after its snapshot was saved, before it became the partition's store).
   */
  reopen(cp: QueueStoreCheckpoint): MessageStore | null;
  /**
   * A snapshot is being taken: write and fsync what the store has (in the background).
   * Resolves once the range the snapshot records is durable (the snapshot may be saved
   * then, not before); rejects when the store failed (the node is stopped then).
   */
  checkpoint(store: MessageStore): Promise<void>;
  /** The snapshot recording `cp` is durable: segment files wholly below its front may go. */
  checkpointDurable(store: MessageStore, cp: QueueStoreCheckpoint): void;
  /** The store is replaced (a snapshot installed) or the partition stops here: close its files. */
  release(store: MessageStore): void;
  /** The partition is gone from this node (topic deleted): remove its files. */
  destroy(): void;
  /**
   * The store a streamed catch-up fills (catchup.ts), as this node kept it (a restart
   * resumes from the records it holds); `reset`: emptied and started at `firstOffset`.
   * Null for memory stores, whose snapshots carry the bodies.
   */
  incoming(reset?: { readonly firstOffset: Offset }): QueueStore | null;
  /** The incoming store holds exactly `cp`, synced: it becomes the partition's store (null: it does not). */
  adoptIncoming(cp: QueueStoreCheckpoint): MessageStore | null;
  /** Records from `from` (below `upTo`) for a replica pulling them; null when this store has no file holding `from`. */
  exportChunk(store: MessageStore, from: Offset, upTo: Offset): QueueStoreChunk | null;
}

export type PartitionStorageFactory = (group: GroupId) => PartitionStorage;

/** Memory stores (the simulator, unit tests): nothing survives a restart but what snapshots carry. */
export const memoryPartitionStorage: PartitionStorageFactory = () => ({
  snapshotsCarryBodies: true,
  create: () => new MemoryMessageStore(),
  reopen: () => null,
  checkpoint: () => Promise.resolve(),
  checkpointDurable: () => {},
  release: () => {},
  destroy: () => {},
  incoming: () => null,
  adoptIncoming: () => null,
  exportChunk: () => null,
});

/**
 * Segment stores under `dir`/<group id>; a streamed catch-up fills `dir`/<group id>.incoming
 * and, once its snapshot is installed, that directory replaces the partition's (two renames;
 * reopen() finishes a switch a crash interrupted). A failed write or fsync
 * (QueueStoreFailedError) calls `fatal`: the store never retries, and the node must not go
 * on as if it had.
 */
export function diskPartitionStorage(dir: string, log: Logger, fatal: (message: string) => void): PartitionStorageFactory {
  return (group) => {
    const groupDir = path.join(dir, String(group));
    const incomingDir = `${groupDir}.incoming`;
    const oldDir = `${groupDir}.old`;
    let chain: Promise<void> = Promise.resolve();
    /** The store this partition uses now; work on a replaced one (a snapshot installed over it) may fail harmlessly. */
    let current: QueueStore | null = null;
    let incoming: QueueStore | null = null;
    const failed = (what: string, store: QueueStore, err: unknown): void => {
      const message = `queue partition group ${group}: ${what} failed: ${err instanceof Error ? err.message : String(err)}`;
      // A replaced store's files were deleted under it: nothing of it is needed any more.
      if (store !== current && store !== incoming) log.debug('queue store work on a replaced store failed', { group, what, err: String(err) });
      else fatal(message);
    };
    const serially = <T>(what: string, store: QueueStore, work: () => Promise<T>): Promise<T> => {
      const done = chain.then(work);
      chain = done.then(() => undefined, (err: unknown) => failed(what, store, err));
      return done;
    };
    const closeLater = (store: QueueStore): void => {
      // Closing syncs first; a store no longer current may have had its files replaced: failures are only logged.
      chain = chain.then(() => store.close()).then(() => undefined, (err: unknown) => {
        log.debug('closing a queue store failed', { group, err: String(err) });
      });
    };
    const openAt = (at: string, cp: QueueStoreCheckpoint): QueueStore | null => {
      if (!fs.existsSync(at)) return null;
      try {
        const { store, recovery } = QueueStore.open(at, { checkpoint: cp });
        if (recovery.cut !== null || recovery.recordsPastCheckpoint > 0) {
          log.info('queue store recovered', { group, cut: recovery.cut?.reason ?? '', recordsPastCheckpoint: recovery.recordsPastCheckpoint });
        }
        return store;
      } catch (err) {
        if (!(err instanceof QueueStoreCorruptionError)) throw err;
        log.warn('queue store does not hold its snapshot\'s range', { group, dir: at, err: err.message });
        return null;
      }
    };
    /** The incoming directory becomes the partition's (its records are synced): two renames, then the old one goes. */
    const switchToIncoming = (): void => {
      fs.rmSync(oldDir, { recursive: true, force: true });
      if (fs.existsSync(groupDir)) fs.renameSync(groupDir, oldDir);
      fs.renameSync(incomingDir, groupDir);
      fsyncDir(dir);
      fs.rmSync(oldDir, { recursive: true, force: true });
    };
    return {
      snapshotsCarryBodies: false,
      create: (firstOffset) => {
        current = QueueStore.create(groupDir, firstOffset);
        return current;
      },
      reopen: (cp) => {
        let store = openAt(groupDir, cp);
        if (store === null && fs.existsSync(incomingDir)) {
          // The snapshot was saved but the switch to its streamed-in store did not happen (a crash): finish it.
          const streamed = openAt(incomingDir, cp);
          if (streamed !== null) {
            streamed.closeSynced();
            switchToIncoming();
            log.info('queue store: finished switching to the streamed-in store', { group });
            store = openAt(groupDir, cp);
          }
        }
        current = store;
        return store;
      },
      checkpoint: (store) => {
        if (!(store instanceof QueueStore)) return Promise.resolve();
        return serially('sync', store, () => store.sync()).then(() => undefined);
      },
      checkpointDurable: (store, cp) => {
        if (!(store instanceof QueueStore)) return;
        void serially('deleting segments below a durable snapshot', store, () => store.checkpointDurable(cp)).catch(() => {});
      },
      release: (store) => {
        if (!(store instanceof QueueStore)) return;
        if (store === current) current = null;
        closeLater(store);
      },
      destroy: () => {
        current = null;
        if (incoming !== null) closeLater(incoming);
        incoming = null;
        chain = chain.then(async () => {
          for (const d of [groupDir, incomingDir, oldDir]) await fs.promises.rm(d, { recursive: true, force: true });
        }).catch((err: unknown) => {
          log.warn('could not remove a deleted partition\'s files', { group, err: String(err) });
        });
      },
      incoming: (reset) => {
        if (reset !== undefined) {
          if (incoming !== null) closeLater(incoming);
          incoming = QueueStore.create(incomingDir, reset.firstOffset);
        } else if (incoming === null && fs.existsSync(incomingDir)) {
          try {
            incoming = QueueStore.open(incomingDir).store;
          } catch (err) {
            // What a crashed transfer left cannot be read: the next transfer starts over.
            log.warn('queue store: discarding an unreadable incoming store', { group, err: String(err) });
            fs.rmSync(incomingDir, { recursive: true, force: true });
          }
        }
        return incoming;
      },
      adoptIncoming: (cp) => {
        const streamed = incoming;
        if (streamed === null || streamed.firstOffset !== cp.firstOffset || streamed.nextOffset !== cp.nextOffset) return null;
        streamed.closeSynced();
        incoming = null;
        switchToIncoming();
        current = openAt(groupDir, cp);
        return current;
      },
      exportChunk: (store, from, upTo) => {
        if (!(store instanceof QueueStore) || from < store.exportableFirst || from >= upTo || upTo > store.nextOffset) return null;
        return store.exportChunk(from, upTo, queueCatchUpChunkBytes);
      },
    };
  };
}

function fsyncDir(p: string): void {
  const fd = fs.openSync(p, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
