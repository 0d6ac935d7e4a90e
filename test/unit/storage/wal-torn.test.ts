// Start-up replay against damaged files: a torn tail (bytes chopped off the end of
// the last segment) is cut back to the last good record and every earlier record is
// recovered; a flipped byte with valid records after it, or damage in a segment that
// is not the last, makes open() reject with WalCorruptionError naming file and offset.

import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { assert } from '../../../core/assert.js';
import { walRecordBytesMax } from '../../../core/constants.js';
import { listSegmentFiles, Wal, WalCorruptionError } from '../../../server/storage/wal.js';
import { entries, g0, hs, tempDir } from './helpers.js';

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
