// Where a partition's message bodies live on one node: a QueueStore (segment files)
// under DATA_DIR/queues/<group id>/ on a real node, a MemoryMessageStore in the
// simulator and unit tests. The partition machine (partition.ts) gets one
// PartitionStorage per partition from the factory the service was built with.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { GroupId, Offset } from '../../../core/ids.js';
import { MemoryMessageStore, type MessageStore } from '../../../core/queue/store.js';
import type { Logger } from '../../node/log.js';
import { QueueStore, QueueStoreCorruptionError, type QueueStoreCheckpoint } from '../../storage/queue-store.js';

export interface PartitionStorage {
  /** A new empty store whose first offset is `firstOffset` (whatever this partition had on this node is wiped). */
  create(firstOffset: Offset): MessageStore;
  /** The store this node kept, holding exactly `cp` intact; null when it cannot (missing, damaged, or not a disk store). */
  reopen(cp: QueueStoreCheckpoint): MessageStore | null;
  /** A snapshot is being taken: write and fsync what the store has (in the background), then drop segments below its front. */
  checkpoint(store: MessageStore): void;
  /** The store is replaced (a snapshot installed) or the partition stops here: close its files. */
  release(store: MessageStore): void;
  /** The partition is gone from this node (topic deleted): remove its files. */
  destroy(): void;
}

export type PartitionStorageFactory = (group: GroupId) => PartitionStorage;

/** Memory stores (the simulator, unit tests): nothing survives a restart but what snapshots carry. */
export const memoryPartitionStorage: PartitionStorageFactory = () => ({
  create: () => new MemoryMessageStore(),
  reopen: () => null,
  checkpoint: () => {},
  release: () => {},
  destroy: () => {},
});

/**
 * Segment stores under `dir`/<group id>. A failed write or fsync (QueueStoreFailedError)
 * calls `fatal`: the store never retries, and the node must not go on as if it had.
 */
export function diskPartitionStorage(dir: string, log: Logger, fatal: (message: string) => void): PartitionStorageFactory {
  return (group) => {
    const groupDir = path.join(dir, String(group));
    let chain: Promise<void> = Promise.resolve();
    /** The store this partition uses now; work on a replaced one (a snapshot installed over it) may fail harmlessly. */
    let current: QueueStore | null = null;
    const serially = (what: string, store: QueueStore, work: () => Promise<unknown>): void => {
      chain = chain.then(work).then(() => undefined, (err: unknown) => {
        const message = `queue partition group ${group}: ${what} failed: ${err instanceof Error ? err.message : String(err)}`;
        // A replaced store's files were deleted under it: nothing of it is needed any more.
        if (store !== current) log.debug('queue store work on a replaced store failed', { group, what, err: String(err) });
        else fatal(message);
      });
    };
    return {
      create: (firstOffset) => {
        current = QueueStore.create(groupDir, firstOffset);
        return current;
      },
      reopen: (cp) => {
        try {
          const { store, recovery } = QueueStore.open(groupDir, { checkpoint: cp });
          if (recovery.cut !== null || recovery.recordsPastCheckpoint > 0) {
            log.info('queue store recovered', { group, cut: recovery.cut?.reason ?? '', recordsPastCheckpoint: recovery.recordsPastCheckpoint });
          }
          current = store;
          return store;
        } catch (err) {
          if (!(err instanceof QueueStoreCorruptionError)) throw err;
          log.warn('queue store does not hold its snapshot\'s range; rebuilding it from the snapshot', { group, err: err.message });
          return null;
        }
      },
      checkpoint: (store) => {
        if (!(store instanceof QueueStore)) return;
        serially('sync', store, async () => {
          const cp = await store.sync();
          // The snapshot being taken carries the bodies too (partition.ts), so files below
          // its front are not needed by any restart: delete them now.
          await store.checkpointDurable(cp);
        });
      },
      release: (store) => {
        if (!(store instanceof QueueStore)) return;
        if (store === current) current = null;
        // Closing syncs first; a store no longer current may have had its files replaced: failures are only logged.
        chain = chain.then(() => store.close()).then(() => undefined, (err: unknown) => {
          log.debug('closing a queue store failed', { group, err: String(err) });
        });
      },
      destroy: () => {
        current = null;
        chain = chain.then(() => fs.promises.rm(groupDir, { recursive: true, force: true })).catch((err: unknown) => {
          log.warn('could not remove a deleted partition\'s files', { group, err: String(err) });
        });
      },
    };
  };
}
