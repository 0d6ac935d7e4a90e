// Start-up replay against damaged files: a torn tail (bytes chopped off the end of
// the last segment) is cut back to the last good record and every earlier record is
// recovered; a sector of the last batch that never reached the disk (zeroed by hand)
// cuts the log there and drops the valid records after it, leaving no hole; a flipped
// byte with valid records after it, valid records more than one batch past the damage,
// or damage in a segment that is not the last, make open() reject with
// WalCorruptionError naming file and offset.

import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { assert } from '../../../core/assert.js';
import { walRecordBytesMax } from '../../../core/constants.js';
import { tornSectorBytes } from '../../../server/storage/format.js';
import { recoverDir } from '../../../server/storage/recovery.js';
import { listSegmentFiles, Wal, WalCorruptionError } from '../../../server/storage/wal.js';
import { entries, g0, hs, recordsIn, restartRaft, tempDir } from './helpers.js';

const recordCount = 20;
/** What `p` rejected with, or the string 'resolved' (which no check accepts). */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => 'resolved',
    (err: unknown) => err,
  );
}

/** Writes `recordCount` single-entry records (one per append) and returns the segment path and record end offsets. */
async function writeLog(dir: string): Promise<{ file: string; ends: number[] }> {
  const { wal } = await Wal.open(dir);
  const ends: number[] = [];
  for (let i = 1; i <= recordCount; i++) {
    await wal.whenDurable(wal.append(g0, null, entries(0, 1, i, i, 100 + i)));
    ends.push(wal.metrics().bytesWritten);
  }
  await wal.close();
  const segs = listSegmentFiles(dir);
  assert(segs.length === 1, 'small log fits one segment');
  return { file: path.join(dir, segs[0] ?? ''), ends };
}

for (const chop of [1, 5, 23, 24, 25, 60, 200]) {
  t.test(`torn tail: ${chop} bytes chopped off the last segment`, async (t) => {
    const dir = tempDir(t);
    const { file, ends } = await writeLog(dir);
    const size = fs.statSync(file).size;
    t.equal(size, ends[ends.length - 1], 'file holds exactly the records written');
    fs.truncateSync(file, size - chop);
    const goodEnd = [0, ...ends].filter((e) => e <= size - chop).pop() ?? 0;
    const survivors = [0, ...ends].indexOf(goodEnd);
    const { wal, recovered } = await Wal.open(dir);
    t.teardown(() => wal.close());
    t.equal(fs.statSync(file).size, goodEnd, 'file truncated to the last good record');
    t.same(
      recovered.get(g0)?.entries.map((e) => e.index),
      Array.from({ length: survivors }, (_, k) => k + 1),
      `the ${survivors} records before the tear are recovered`,
    );
    // The WAL keeps working after the repair.
    const seq = wal.append(g0, hs(2, 1), entries(0, 2, survivors + 1, survivors + 1));
    await wal.whenDurable(seq);
  });
}

t.test('torn tail of garbage (zeros) after the last record is cut', async (t) => {
  const dir = tempDir(t);
  const { file, ends } = await writeLog(dir);
  fs.appendFileSync(file, new Uint8Array(4096));
  const { wal, recovered } = await Wal.open(dir);
  t.teardown(() => wal.close());
  t.equal(fs.statSync(file).size, ends[ends.length - 1]);
  t.equal(recovered.get(g0)?.entries.length, recordCount);
});

t.test('a flipped byte in the middle is corruption, not a torn tail', async (t) => {
  const dir = tempDir(t);
  const { file, ends } = await writeLog(dir);
  const recordStart = ends[4] ?? 0; // start of the 6th record
  const buf = fs.readFileSync(file);
  const at = recordStart + 40; // inside its body
  buf[at] = (buf[at] ?? 0) ^ 0xff;
  fs.writeFileSync(file, buf);
  const sizeBefore = buf.length;
  const err = await rejection(Wal.open(dir));
  t.ok(err instanceof WalCorruptionError, 'typed error');
  if (err instanceof WalCorruptionError) {
    t.equal(err.file, file, 'names the file');
    t.equal(err.offset, recordStart, 'names the offset of the damaged record');
    t.match(err.message, file);
    t.match(err.message, String(recordStart));
    t.equal(err.code, 'WAL_CORRUPT');
  }
  t.equal(fs.statSync(file).size, sizeBefore, 'a refused log is not truncated');
});

t.test('a damaged length field in the middle is corruption too', async (t) => {
  const dir = tempDir(t);
  const { file, ends } = await writeLog(dir);
  const buf = fs.readFileSync(file);
  const recordStart = ends[9] ?? 0;
  buf.writeUInt32LE(0xfffffff0, recordStart);
  fs.writeFileSync(file, buf);
  await t.rejects(Wal.open(dir), { name: 'WalCorruptionError', file, offset: recordStart });
});

t.test('damage at the end of a segment that is not the last one is corruption', async (t) => {
  const dir = tempDir(t);
  const { wal } = await Wal.open(dir, { segmentBytesMax: walRecordBytesMax });
  let seq = 0;
  for (let i = 1; i <= 100; i++) seq = wal.append(g0, null, entries(0, 1, i, i, 128 * 1024));
  await wal.whenDurable(seq);
  await wal.close();
  const segs = listSegmentFiles(dir);
  t.ok(segs.length >= 2, 'several segments');
  const first = path.join(dir, segs[0] ?? '');
  const size = fs.statSync(first).size;
  fs.truncateSync(first, size - 10);
  const err = await rejection(Wal.open(dir));
  t.ok(err instanceof WalCorruptionError && err.file === first && err.offset < size, `refused: ${String(err)}`);
});

const batchRecordCount = 20;

/**
 * Writes `recordCount` single-entry records one batch each, then `batchRecordCount`
 * entries with their hard states in one turn (one batch, unless the writer wakes in
 * the middle; recovery cannot see batch boundaries anyway), and returns the segment
 * bytes and where those last records start.
 */
async function writeLastBatch(dir: string): Promise<{ file: string; buf: Buffer; batchStart: number }> {
  const { wal } = await Wal.open(dir);
  for (let i = 1; i <= recordCount; i++) await wal.whenDurable(wal.append(g0, null, entries(0, 1, i, i, 100 + i)));
  const batchStart = wal.metrics().bytesWritten;
  let seq = 0;
  for (let i = recordCount + 1; i <= recordCount + batchRecordCount; i++) seq = wal.append(g0, hs(1, i - 1), entries(0, 1, i, i, 100 + i));
  await wal.whenDurable(seq);
  await wal.close();
  const segs = listSegmentFiles(dir);
  assert(segs.length === 1, 'small log fits one segment');
  const file = path.join(dir, segs[0] ?? '');
  return { file, buf: fs.readFileSync(file), batchStart };
}

t.test('a lost sector in the last batch: the log is cut there and the valid records after it are dropped', async (t) => {
  const dir = tempDir(t);
  const { file, buf, batchStart } = await writeLastBatch(dir);
  const lastRecord = recordsIn(buf).pop();
  assert(lastRecord !== undefined, 'records written');
  // Every sector that overlaps the last batch and has a whole record after it: the first
  // one is shared with synced records and loses only its part of the batch.
  const sectorEnds: number[] = [];
  for (let end = (Math.floor(batchStart / tornSectorBytes) + 1) * tornSectorBytes; end <= lastRecord.offset; end += tornSectorBytes) sectorEnds.push(end);
  t.ok(sectorEnds.length >= 3, `${sectorEnds.length} sectors to lose`);
  for (const end of sectorEnds) {
    const lostFrom = Math.max(end - tornSectorBytes, batchStart);
    const damaged = Buffer.from(buf);
    damaged.fill(0, lostFrom, end);
    const good = recordsIn(damaged);
    const cut = good[good.length - 1]?.end ?? 0;
    const goodEntries = good.filter((r) => r.type === 'entries').length;
    fs.writeFileSync(file, damaged);
    const rec = recoverDir(dir);
    const what = `sector [${lostFrom}, ${end})`;
    t.ok(rec.truncated !== null && rec.truncated.validRecordsDropped >= 1, `${what}: valid records after it dropped (${rec.truncated?.validRecordsDropped})`);
    t.equal(fs.statSync(file).size, cut, `${what}: file cut at the first damaged record (${cut})`);
    const r = rec.groups.get(g0);
    t.same(r?.entries.map((e) => e.index), Array.from({ length: goodEntries }, (_, k) => k + 1), `${what}: entries 1..${goodEntries}, no hole`);
    t.ok((r?.hardState?.commit ?? 0) <= goodEntries, `${what}: commit inside the log`);
    t.doesNotThrow(() => restartRaft(r), `${what}: Raft restarts`);
    // The WAL writes on after the cut, and the next restart sees one contiguous log.
    const { wal } = await Wal.open(dir);
    await wal.whenDurable(wal.append(g0, hs(2, goodEntries), entries(0, 2, goodEntries + 1, goodEntries + 1)));
    await wal.close();
    const again = recoverDir(dir);
    t.same(again.groups.get(g0)?.entries.map((e) => e.index), Array.from({ length: goodEntries + 1 }, (_, k) => k + 1), `${what}: appends continue the log`);
    for (const n of fs.readdirSync(dir)) fs.rmSync(path.join(dir, n));
    fs.writeFileSync(file, buf);
  }
});

t.test('valid records more than one batch after a lost sector are corruption', async (t) => {
  const dir = tempDir(t);
  const { file, buf, batchStart } = await writeLastBatch(dir);
  const lastRecord = recordsIn(buf).pop();
  assert(lastRecord !== undefined, 'records written');
  const end = (Math.floor(batchStart / tornSectorBytes) + 2) * tornSectorBytes;
  assert(end <= lastRecord.offset, 'a whole record after the lost sector');
  const damaged = Buffer.from(buf);
  damaged.fill(0, end - tornSectorBytes, end);
  fs.writeFileSync(file, damaged);
  const firstBad = recordsIn(damaged).pop()?.end ?? 0;
  const span = buf.length - firstBad;
  t.throws(() => recoverDir(dir, { tornBytesMax: span - 1 }), WalCorruptionError, 'valid records end further than one batch from the damage');
  t.equal(fs.statSync(file).size, buf.length, 'a refused log is not truncated');
  t.equal(recoverDir(dir, { tornBytesMax: span }).truncated?.toBytes, firstBad, 'within one batch: cut at the damage');
});
