// The WAL's writer thread: drains whole records from the shared ring, writes each
// batch with one writeSync per segment and ONE fdatasync, then publishes the durable
// seq (group commit). The event loop never touches the disk on the append path.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { RingBuffer } from 'ringbuf.js';
import { assert } from '../../core/assert.js';
import { latencyTrace } from '../node/latency-trace.js';
import { readU64, recordHeaderBytes, segmentFileName, segmentRollNeeded } from './format.js';
import {
  ctrlFailed,
  ctrlStop,
  ctrlWake,
  parseWorkerData,
  seqDurable,
  statBatches,
  statBytes,
  statDirFsyncs,
  fsyncBucketsNs,
  statFsyncBucketFirst,
  statFsyncNsMax,
  statFsyncNsTotal,
  statFsyncs,
  statLastBatchBytes,
  statLastBatchRecords,
  statRecords,
} from './shared.js';

const data = parseWorkerData(workerData);
const ring = new RingBuffer(data.ringSab, Uint8Array);
const ctrl = new Int32Array(data.ctrlSab);
const seqs = new BigInt64Array(data.seqSab);
const batch = new Uint8Array(ring.capacity());
const batchView = new DataView(batch.buffer);

let segFd: number | null = null;
let segBytes = 0;
let lastSeq = data.durableSeqStart;

/**
 * Fault injection for the fault runner only (test/chaos, the "lose unsynced writes"
 * move): DSYNC_FAILPOINT_WAL=lose-unsynced-after:N lets N batches through, then writes
 * the next one, cuts the file back to keep only the first half of it (the rest never
 * reached the platter: a power loss between write and fsync, torn mid-batch) and kills
 * the process before the fsync, so nothing of that batch was acknowledged. Unset in
 * every normal run; parsed once here.
 */
const loseUnsyncedAfterBatches = ((): number => {
  const spec = process.env['DSYNC_FAILPOINT_WAL'];
  if (spec === undefined || spec === '') return -1;
  const m = /^lose-unsynced-after:(\d+)$/.exec(spec);
  if (m === null) throw new Error(`DSYNC_FAILPOINT_WAL="${spec}" is not lose-unsynced-after:N`);
  return Number(m[1]);
})();
let batchesWritten = 0;

/**
 * Keeps batch[from, to) on disk only up to the middle of the record that holds the
 * batch's midpoint (never on a record boundary: the tear must be one recovery has to cut).
 */
function loseUnsyncedAndDie(fd: number, sizeBefore: number, from: number, to: number): void {
  const middle = from + Math.floor((to - from) / 2);
  let off = from;
  // Bounded by the batch: each step moves past one whole record.
  for (;;) {
    const recordBytes = recordHeaderBytes + batchView.getUint32(off, true);
    if (off + recordBytes > middle || off + recordBytes >= to) {
      fs.ftruncateSync(fd, sizeBefore + (off - from) + Math.max(1, Math.floor(recordBytes / 2)));
      break;
    }
    off += recordBytes;
  }
  process.kill(process.pid, 'SIGKILL');
}

function fsyncDir(): void {
  const fd = fs.openSync(data.dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  Atomics.add(seqs, statDirFsyncs, 1n);
}

function datasync(fd: number): void {
  const t0 = process.hrtime.bigint();
  fs.fdatasyncSync(fd);
  const ns = process.hrtime.bigint() - t0;
  Atomics.add(seqs, statFsyncs, 1n);
  Atomics.add(seqs, statFsyncNsTotal, ns);
  if (ns > Atomics.load(seqs, statFsyncNsMax)) Atomics.store(seqs, statFsyncNsMax, ns);
  const bucket = fsyncBucketsNs.findIndex((bound) => ns <= bound);
  if (bucket >= 0) Atomics.add(seqs, statFsyncBucketFirst + bucket, 1n);
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let off = 0;
  // Bounded: each writeSync writes at least one byte or throws.
  while (off < bytes.length) {
    const n = fs.writeSync(fd, bytes, off, bytes.length - off);
    assert(n > 0, 'writeSync made progress');
    off += n;
  }
}

/** Writes batch[0, n): whole records, split at segment rolls; one fdatasync for the tail segment. */
function writeBatch(n: number): void {
  let off = 0;
  let chunkStart = 0;
  let records = 0;
  latencyTrace?.mark('batch', lastSeq + 1);
  while (off < n) {
    assert(n - off >= recordHeaderBytes, 'the ring holds whole records only');
    const recordBytes = recordHeaderBytes + batchView.getUint32(off, true);
    const seq = readU64(batchView, off + 16);
    assert(seq === lastSeq + 1, `record seq ${seq} follows ${lastSeq}`);
    assert(off + recordBytes <= n, 'the ring holds whole records only');
    if (segFd === null || segmentRollNeeded(segBytes, recordBytes, data.segmentBytesMax)) {
      if (segFd !== null) {
        // The old segment is complete on disk before the next one gets a byte, so only
        // the LAST segment can ever have a torn tail.
        writeAll(segFd, batch.subarray(chunkStart, off));
        datasync(segFd);
        fs.closeSync(segFd);
      }
      segFd = fs.openSync(path.join(data.dir, segmentFileName(seq)), 'wx');
      fsyncDir();
      segBytes = 0;
      chunkStart = off;
    }
    segBytes += recordBytes;
    lastSeq = seq;
    off += recordBytes;
    records++;
  }
  assert(off === n && segFd !== null, 'batch consumed exactly');
  const tail = batch.subarray(chunkStart, n);
  writeAll(segFd, tail);
  if (loseUnsyncedAfterBatches >= 0 && batchesWritten++ >= loseUnsyncedAfterBatches) {
    loseUnsyncedAndDie(segFd, segBytes - tail.length, chunkStart, n);
  }
  latencyTrace?.mark('fsyncStart', lastSeq);
  datasync(segFd);
  latencyTrace?.mark('fsyncEnd', lastSeq);
  Atomics.add(seqs, statRecords, BigInt(records));
  Atomics.add(seqs, statBytes, BigInt(n));
  Atomics.add(seqs, statBatches, 1n);
  Atomics.store(seqs, statLastBatchRecords, BigInt(records));
  Atomics.store(seqs, statLastBatchBytes, BigInt(n));
  Atomics.store(seqs, seqDurable, BigInt(lastSeq));
  Atomics.notify(seqs, seqDurable);
  latencyTrace?.flushIfFull();
}

function run(): void {
  // Not a spin: each iteration either writes a batch or sleeps in Atomics.wait
  // until the main thread flips ctrlWake; it ends when asked to stop and the ring is empty.
  for (;;) {
    const n = ring.pop(batch, batch.length);
    if (n > 0) {
      writeBatch(n);
      continue;
    }
    if (Atomics.load(ctrl, ctrlStop) === 1) break;
    Atomics.store(ctrl, ctrlWake, 0);
    if (ring.available_read() > 0 || Atomics.load(ctrl, ctrlStop) === 1) continue;
    Atomics.wait(ctrl, ctrlWake, 0);
  }
  if (segFd !== null) {
    fs.closeSync(segFd);
    segFd = null;
  }
  latencyTrace?.flush();
}

try {
  run();
} catch (err) {
  // A failed write or fsync leaves the file state unknown (fsyncgate): never retry,
  // tell the main thread and die. Waiters are rejected; the node must restart and replay.
  Atomics.store(ctrl, ctrlFailed, 1);
  Atomics.notify(seqs, seqDurable);
  parentPort?.postMessage({ failed: err instanceof Error ? `${err.name}: ${err.message}` : String(err) });
  process.exitCode = 1;
}
