// The SharedArrayBuffer layout between the WAL's main thread and its writer worker:
// control flags (Int32), the durable sequence and the counters (BigInt64), and workerData.

import { assert } from '../../core/assert.js';

/** Int32 slots in the control buffer. */
export const ctrlWake = 0; // main stores 1 + notifies when the ring has new records
export const ctrlStop = 1; // main stores 1 when the worker should drain, fsync and exit
export const ctrlFailed = 2; // worker stores 1 before exiting on an I/O error
export const ctrlSlots = 3;

/** BigInt64 slots in the sequence/metrics buffer (written only by the worker). */
export const seqDurable = 0; // highest seq written AND fdatasynced; main waits on it with Atomics.waitAsync
export const statRecords = 1;
export const statBytes = 2;
export const statFsyncs = 3; // fdatasync of segment files (not directory fsyncs)
export const statBatches = 4;
export const statLastBatchRecords = 5;
export const statLastBatchBytes = 6;
export const statFsyncNsTotal = 7;
export const statFsyncNsMax = 8;
export const statDirFsyncs = 9;
/**
 * fdatasync latency histogram: slot statFsyncBucketFirst + i counts the fsyncs that took at
 * most fsyncBucketsNs[i] and more than the bucket before (not cumulative; the reader sums).
 * Slower ones than the last bound are statFsyncs minus the buckets' sum.
 */
export const fsyncBucketsNs: readonly bigint[] = [100_000n, 250_000n, 500_000n, 1_000_000n, 2_500_000n, 5_000_000n, 10_000_000n,
  25_000_000n, 50_000_000n, 100_000_000n, 250_000_000n, 1_000_000_000n];
export const statFsyncBucketFirst = 10;
export const seqSlots = statFsyncBucketFirst + fsyncBucketsNs.length;
assert(fsyncBucketsNs.every((b, i) => i === 0 || b > (fsyncBucketsNs[i - 1] ?? 0n)), 'fsync buckets ascend');

export interface WalWorkerData {
  readonly dir: string;
  readonly ringSab: SharedArrayBuffer;
  readonly ctrlSab: SharedArrayBuffer;
  readonly seqSab: SharedArrayBuffer;
  readonly segmentBytesMax: number;
  /** Seq of the last record already on disk at start (0 when none). */
  readonly durableSeqStart: number;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}

/** workerData arrives untyped: check every field once at the boundary. */
export function parseWorkerData(v: unknown): WalWorkerData {
  assert(isRecord(v), 'wal worker data is an object');
  const { dir, ringSab, ctrlSab, seqSab, segmentBytesMax, durableSeqStart } = v;
  assert(typeof dir === 'string', 'wal worker dir');
  assert(ringSab instanceof SharedArrayBuffer, 'wal worker ring');
  assert(ctrlSab instanceof SharedArrayBuffer && ctrlSab.byteLength === ctrlSlots * 4, 'wal worker ctrl');
  assert(seqSab instanceof SharedArrayBuffer && seqSab.byteLength === seqSlots * 8, 'wal worker seq');
  assert(typeof segmentBytesMax === 'number' && segmentBytesMax > 0, 'wal worker segment size');
  assert(typeof durableSeqStart === 'number' && Number.isSafeInteger(durableSeqStart), 'wal worker start seq');
  return { dir, ringSab, ctrlSab, seqSab, segmentBytesMax, durableSeqStart };
}
