// The disk segment store (server/storage/queue-store.ts) checked against core/queue's
// MemoryMessageStore, its reference: random messages (keys, values up to 120 KiB,
// UTF-8 headers, redrive groups) round-trip across many small segments; close/reopen
// recovers everything; a torn or damaged tail is cut back to the valid prefix, and
// damage below a checkpoint is refused with the files untouched; front truncation
// hides offsets at once (typed error) and deletes whole segments only once a
// checkpoint is durable; export in chunks + import into an empty dir reads back the
// same; a QueuePartition on the disk store gives the same outcomes as one on the
// memory store under random operations, through snapshots and simulated crashes that
// lose unsynced writes (restore from the snapshot, re-apply the log since it); and
// 1,000,000 small messages cost a bounded few bytes of memory each (bodies on disk).
// Randomized: the seed is printed; replay with SEED=<n>.

import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { deepStrictEqual } from 'node:assert/strict';
import { consumerGroup, consumerId, logIndex, offset, producerId } from '../../../core/ids.js';
import type { ConsumerGroup, DeliveryId, Offset } from '../../../core/ids.js';
import { Xoshiro128 } from '../../../core/prng.js';
import type { Prng } from '../../../core/prng.js';
import type { Message, QueueCommand, QueueOutcome } from '../../../core/queue/commands.js';
import { QueuePartition, defaultPartitionConfig } from '../../../core/queue/partition.js';
import type { PartitionConfig, QueuePartitionSnapshot } from '../../../core/queue/partition.js';
import { MemoryMessageStore } from '../../../core/queue/store.js';
import type { MessageStore } from '../../../core/queue/store.js';
import { checkQueueRecord } from '../../../server/storage/queue-store-format.js';
import {
  QueueStore,
  QueueStoreChunkError,
  QueueStoreCorruptionError,
  QueueStoreRangeError,
} from '../../../server/storage/queue-store.js';
import type { QueueStoreCheckpoint, QueueStoreChunk } from '../../../server/storage/queue-store.js';

const seed = Number(process.env['SEED'] ?? Math.floor(Math.random() * 2 ** 31));
t.comment(`seed ${seed} (replay with SEED=${seed})`);

interface Teardown {
  teardown(fn: () => void | Promise<void>): void;
}

function tempDir(t: Teardown): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsync-qstore-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const smallSegments = { segmentBytesMax: 16 * 1024 };

function randomBytes(r: Prng, n: number): Uint8Array {
  const out = new Uint8Array(n);
  const a = r.int(0, 255);
  const b = r.int(1, 255);
  for (let i = 0; i < n; i++) out[i] = (a + i * b) & 0xff;
  return out;
}

/** Mostly small messages, a few over the write buffer, read block and segment sizes. */
function randomMessage(r: Prng, big: boolean): Message {
  const headers = Array.from({ length: r.int(0, 2) }, (_, h) => ({ name: h === 0 ? 'trace-id' : `${r.int(0, 1) === 0 ? '\uFEFF' : ''}hé-${r.int(0, 9)}`, value: randomBytes(r, r.int(0, 20)) }));
  return {
    key: randomBytes(r, r.int(0, 16)),
    value: randomBytes(r, big ? r.int(40_000, 120_000) : r.int(0, 300)),
    headers,
    ...(r.int(0, 9) === 0 ? { onlyGroup: consumerGroup(`grp-${r.int(0, 3)}`) } : {}),
  };
}

/** Appends `n` random messages to every store, timestamps never going back. */
function fill(r: Prng, stores: readonly MessageStore[], n: number, ts: { ms: number }): void {
  for (let i = 0; i < n; i++) {
    const m = randomMessage(r, r.int(0, 400) === 0);
    ts.ms += r.int(0, 3);
    for (const s of stores) s.append(s.nextOffset, ts.ms, m);
  }
}

/** Every retained offset reads, timestamps and sizes the same in both; same range and bytes. */
function sameContents(got: MessageStore, want: MessageStore, what: string): void {
  deepStrictEqual([got.firstOffset, got.nextOffset, got.bytes], [want.firstOffset, want.nextOffset, want.bytes], `${what}: range and bytes (seed ${seed})`);
  for (let o = want.firstOffset; o < want.nextOffset; o++) {
    const at = offset(o);
    deepStrictEqual(got.read(at), want.read(at), `${what}: message at ${o} (seed ${seed})`);
    deepStrictEqual([got.timestampAt(at), got.sizeAt(at)], [want.timestampAt(at), want.sizeAt(at)], `${what}: index at ${o} (seed ${seed})`);
  }
}

/** A reference holding exactly [from, to) of `src`. */
function referenceSlice(src: MemoryMessageStore, from: number, to: number): MemoryMessageStore {
  const all = src.toSnapshot().messages.filter((m) => m.offset >= from && m.offset < to);
  return MemoryMessageStore.fromSnapshot({ firstOffset: offset(from), messages: all });
}

function segmentFiles(dir: string): string[] {
  return fs.readdirSync(dir).filter((n) => n.endsWith('.seg')).sort();
}

function dirState(dir: string): string[] {
  return segmentFiles(dir).map((n) => `${n}:${fs.statSync(path.join(dir, n)).size}`);
}

/** Byte positions of the valid records of a segment file. */
function recordStarts(file: string): number[] {
  const buf = new Uint8Array(fs.readFileSync(file));
  const view = new DataView(buf.buffer);
  const out: number[] = [];
  let pos = 0;
  // Bounded by the file length.
  while (pos < buf.length) {
    const c = checkQueueRecord(buf, view, pos, buf.length);
    if (!c.ok) break;
    out.push(pos);
    pos += c.recordBytes;
  }
  return out;
}

async function rejection(p: Promise<unknown> | (() => unknown)): Promise<unknown> {
  try {
    if (typeof p === 'function') p();
    else await p;
  } catch (err) {
    return err;
  }
  return 'no error';
}

/** A store of `n` random messages in small segments, closed, with its reference. */
async function writtenStore(t: Teardown, r: Prng, n: number): Promise<{ dir: string; ref: MemoryMessageStore; cp: QueueStoreCheckpoint }> {
  const dir = tempDir(t);
  const store = QueueStore.create(dir, offset(0), smallSegments);
  const ref = new MemoryMessageStore();
  fill(r, [store, ref], n, { ms: 1_000 });
  const cp = await store.close();
  return { dir, ref, cp };
}

t.test('round trip of many messages across several segments', async (t) => {
  const r = new Xoshiro128(seed);
  const dir = tempDir(t);
  const store = QueueStore.create(dir, offset(0), smallSegments);
  const ref = new MemoryMessageStore();
  fill(r, [store, ref], 3_000, { ms: 1_000 });
  const big: Message = { key: Uint8Array.of(1), value: randomBytes(r, 200_000), headers: [] };
  store.append(store.nextOffset, 5_000_000, big);
  ref.append(ref.nextOffset, 5_000_000, big);
  sameContents(store, ref, 'before any sync');
  // Reads again from the cache, then in reverse (cache misses), then at random.
  for (let o = ref.nextOffset - 1; o >= 0; o--) deepStrictEqual(store.read(offset(o)), ref.read(offset(o)), `reverse read ${o}`);
  for (let i = 0; i < 2_000; i++) {
    const o = offset(r.int(0, ref.nextOffset - 1));
    deepStrictEqual(store.read(o), ref.read(o), `random read ${o}`);
  }
  t.ok(segmentFiles(dir).length >= 20, `${segmentFiles(dir).length} segments written`);
  const cp = await store.sync();
  t.same(cp, { firstOffset: 0, nextOffset: 3_001 }, 'sync answers the range it made durable');
  sameContents(store, ref, 'after sync');
  t.equal((await rejection(() => store.read(offset(3_001)))) instanceof QueueStoreRangeError, true, 'a read past the end is a typed error');
  await store.close();
});

t.test('reopen after close recovers all, and appends continue', async (t) => {
  const r = new Xoshiro128(seed + 1);
  const { dir, ref, cp } = await writtenStore(t, r, 2_000);
  const plain = QueueStore.open(dir, smallSegments);
  t.equal(plain.recovery.cut, null, 'nothing to cut after a clean close');
  sameContents(plain.store, ref, 'reopened without a checkpoint');
  await plain.store.close();
  const { store, recovery } = QueueStore.open(dir, { ...smallSegments, checkpoint: cp });
  t.same([recovery.cut, recovery.recordsPastCheckpoint, recovery.segmentsDeleted], [null, 0, 0]);
  sameContents(store, ref, 'reopened with its checkpoint');
  fill(r, [store, ref], 500, { ms: ref.timestampAt(offset(ref.nextOffset - 1)) });
  sameContents(store, ref, 'appended after reopening');
  const cp2 = await store.close();
  sameContents(QueueStore.open(dir, { ...smallSegments, checkpoint: cp2 }).store, ref, 'reopened again');
});

t.test('a torn tail is cut back to the valid prefix', async (t) => {
  const r = new Xoshiro128(seed + 2);
  for (const chop of [1, 7, 23, 24, 25, 60]) {
    const { dir, ref } = await writtenStore(t, r, 600);
    const files = segmentFiles(dir);
    const last = path.join(dir, files[files.length - 1] ?? '');
    const starts = recordStarts(last);
    const size = fs.statSync(last).size;
    fs.truncateSync(last, size - chop);
    const survivors = starts.filter((p) => p < size - chop).length - 1; // the last record is torn
    const base = Number(/q-(\d+)\.seg/.exec(last)?.[1]);
    const { store, recovery } = QueueStore.open(dir, smallSegments);
    t.equal(store.nextOffset, base + survivors, `chop ${chop}: the prefix before the torn record survives`);
    if (survivors > 0) t.equal(fs.statSync(last).size, starts[survivors] ?? -1, `chop ${chop}: file cut at the torn record`);
    else t.notOk(fs.existsSync(last), `chop ${chop}: a segment whose only record was torn is removed`);
    t.not(recovery.cut, null);
    sameContents(store, referenceSlice(ref, 0, base + survivors), `chop ${chop}`);
    await store.close();
  }

  // Zeros after the last record (a write extended the file, its data never came).
  const { dir, ref } = await writtenStore(t, r, 300);
  const files = segmentFiles(dir);
  fs.appendFileSync(path.join(dir, files[files.length - 1] ?? ''), new Uint8Array(4096));
  const { store } = QueueStore.open(dir, smallSegments);
  sameContents(store, ref, 'zeros after the last record are cut');
  await store.close();
});

t.test('damage past the checkpoint is an unsynced tail; below it, corruption that changes nothing', async (t) => {
  const r = new Xoshiro128(seed + 3);
  const dir = tempDir(t);
  const store = QueueStore.create(dir, offset(0), smallSegments);
  const ref = new MemoryMessageStore();
  const ts = { ms: 1_000 };
  fill(r, [store, ref], 800, ts);
  const cp = await store.sync();
  fill(r, [store, ref], 800, ts);
  await store.close();
  const files = segmentFiles(dir);
  // A flipped byte in a middle segment wholly past the checkpoint, with later segments after it.
  const victimIndex = files.findIndex((n, i) => Number(/q-(\d+)/.exec(n)?.[1]) > cp.nextOffset && i < files.length - 2 && recordStarts(path.join(dir, n)).length >= 4);
  t.ok(victimIndex > 0, 'a segment of 4+ records past the checkpoint, with segments after it');
  const victim = path.join(dir, files[victimIndex] ?? '');
  const victimBase = Number(/q-(\d+)/.exec(victim)?.[1]);
  const hit = recordStarts(victim)[3] ?? 0;
  const bytes = fs.readFileSync(victim);
  bytes[hit + 30] = (bytes[hit + 30] ?? 0) ^ 0x40;
  fs.writeFileSync(victim, bytes);

  // Below: a checkpoint claiming more than the damage leaves is refused, files untouched.
  const before = dirState(dir);
  const claim = { firstOffset: offset(0), nextOffset: offset(victimBase + 10) };
  const err = await rejection(() => QueueStore.open(dir, { ...smallSegments, checkpoint: claim }));
  t.ok(err instanceof QueueStoreCorruptionError, 'damage below the checkpoint is corruption');
  t.equal((err as QueueStoreCorruptionError).code, 'QUEUE_STORE_CORRUPT');
  t.match((err as QueueStoreCorruptionError).file, files[victimIndex] ?? '', 'the error names the damaged file');
  t.same(dirState(dir), before, 'a refused open changes no file');

  // Past: the cut is at the damaged record and later segments go, then the checkpoint's tail cut applies.
  const { store: cut, recovery } = QueueStore.open(dir, smallSegments);
  t.equal(cut.nextOffset, victimBase + 3, 'the valid prefix ends at the damaged record');
  t.equal(segmentFiles(dir).length, victimIndex + 1, 'segments after the damage are deleted');
  t.equal(recovery.cut?.offset, victimBase + 3);
  sameContents(cut, referenceSlice(ref, 0, victimBase + 3), 'prefix before the damage');
  await cut.close();
  const { store: exact, recovery: rec2 } = QueueStore.open(dir, { ...smallSegments, checkpoint: cp });
  t.equal(rec2.recordsPastCheckpoint, victimBase + 3 - cp.nextOffset, 'records past the checkpoint are dropped (the WAL re-applies them)');
  sameContents(exact, referenceSlice(ref, 0, cp.nextOffset), 'exactly the checkpoint');
  await exact.close();
});

t.test('front truncation: reads below fail at once, whole segments go when a checkpoint is durable', async (t) => {
  const r = new Xoshiro128(seed + 4);
  const dir = tempDir(t);
  const store = QueueStore.create(dir, offset(0), smallSegments);
  const ref = new MemoryMessageStore();
  const ts = { ms: 1_000 };
  fill(r, [store, ref], 2_000, ts);
  const filesBefore = segmentFiles(dir);
  const front = offset(1_234);
  store.truncateBefore(front);
  ref.truncateBefore(front);
  for (const below of [0, 1_000, 1_233]) {
    const err = await rejection(() => store.read(offset(below)));
    t.ok(err instanceof QueueStoreRangeError, `read of ${below} below the front is a typed error`);
    t.equal((err as QueueStoreRangeError).code, 'QUEUE_OFFSET_NOT_RETAINED');
    t.ok((await rejection(() => store.timestampAt(offset(below)))) instanceof QueueStoreRangeError, `timestampAt ${below} too`);
  }
  sameContents(store, ref, 'after truncation');
  t.same(segmentFiles(dir), filesBefore, 'no file is deleted before a checkpoint is durable');
  const cp = await store.sync();
  t.same(cp, { firstOffset: front, nextOffset: 2_000 });
  const deleted = await store.checkpointDurable(cp);
  const left = segmentFiles(dir);
  const bases = left.map((n) => Number(/q-(\d+)/.exec(n)?.[1]));
  t.ok(deleted > 0 && left.length === filesBefore.length - deleted, `${deleted} whole segments deleted`);
  t.ok((bases[0] ?? Infinity) <= front && (bases[1] ?? Infinity) > front, 'the segment holding the front is the first kept');
  sameContents(store, ref, 'after the deletion');
  fill(r, [store, ref], 200, ts);
  const cp2 = await store.close();
  const { store: reopened } = QueueStore.open(dir, { ...smallSegments, checkpoint: cp2 });
  sameContents(reopened, ref, 'reopened after truncation');

  // Everything dropped: the last segment stays for appends; a reopen is empty at the end.
  reopened.truncateBefore(reopened.nextOffset);
  ref.truncateBefore(ref.nextOffset);
  const cp3 = await reopened.sync();
  await reopened.checkpointDurable(cp3);
  t.equal(segmentFiles(dir).length, 1, 'the segment appends go to is kept');
  await reopened.close();
  const { store: empty } = QueueStore.open(dir, { ...smallSegments, checkpoint: cp3 });
  t.same([empty.firstOffset, empty.nextOffset, empty.bytes, segmentFiles(dir).length], [2_200, 2_200, 0, 0], 'empty at the old end');
  fill(r, [empty, ref], 50, ts);
  sameContents(empty, ref, 'appends after an empty reopen');
  await empty.close();
});

t.test('export in chunks, import into an empty dir: identical reads', async (t) => {
  const r = new Xoshiro128(seed + 5);
  const dir = tempDir(t);
  const chunkBytesMax = 4 * 1024;
  const store = QueueStore.create(dir, offset(0), { ...smallSegments, chunkBytesMax });
  const ref = new MemoryMessageStore();
  const ts = { ms: 1_000 };
  fill(r, [store, ref], 2_500, ts);
  store.truncateBefore(offset(777)); // the front inside a segment
  ref.truncateBefore(offset(777));
  const cp = await store.sync();
  fill(r, [store, ref], 100, ts); // appends after the checkpoint are not part of the stream

  const chunks: QueueStoreChunk[] = [];
  for (let at = cp.firstOffset; at < cp.nextOffset;) {
    const c = store.exportChunk(at, cp.nextOffset);
    chunks.push(c);
    at = offset(c.firstOffset + c.count);
  }
  t.ok(chunks.every((c) => c.count >= 1 && (c.records.length <= chunkBytesMax || c.count === 1)), 'every chunk is within its bound, or one record');
  t.ok(chunks.some((c) => c.count === 1 && c.records.length > chunkBytesMax), 'a record over the chunk size travels alone');
  t.equal(chunks.reduce((n, c) => n + c.count, 0), cp.nextOffset - cp.firstOffset, 'chunks cover the checkpoint');
  t.ok(chunks.length > segmentFiles(dir).length, `${chunks.length} chunks`);

  const dir2 = tempDir(t);
  const copy = QueueStore.create(dir2, cp.firstOffset, smallSegments);
  for (const c of chunks) copy.importChunk(c);
  const cpCopy = await copy.sync();
  t.same(cpCopy, cp, 'the import holds the checkpoint');
  sameContents(copy, referenceSlice(ref, cp.firstOffset, cp.nextOffset), 'imported');
  await copy.close();
  sameContents(QueueStore.open(dir2, { ...smallSegments, checkpoint: cpCopy }).store, referenceSlice(ref, cp.firstOffset, cp.nextOffset), 'imported, reopened');

  // Bad chunks are typed errors: damaged bytes, out of order, wrong count.
  const first = chunks[0] as QueueStoreChunk;
  const damaged = { ...first, records: first.records.slice() };
  damaged.records[30] = (damaged.records[30] ?? 0) ^ 1;
  const fresh = (): QueueStore => QueueStore.create(tempDir(t), cp.firstOffset, smallSegments);
  for (const [what, chunk] of [
    ['damaged', damaged],
    ['out of order', chunks[1] as QueueStoreChunk],
    ['wrong count', { ...first, count: first.count + 1 }],
    ['truncated', { ...first, records: first.records.subarray(0, first.records.length - 3) }],
  ] as const) {
    const err = await rejection(() => fresh().importChunk(chunk));
    t.ok(err instanceof QueueStoreChunkError && err.code === 'QUEUE_STORE_BAD_CHUNK', `${what} chunk refused: ${String(err)}`);
  }
  await store.close();
});

// --- QueuePartition on the disk store vs on the memory store ---

interface Logged {
  readonly cmd: QueueCommand;
  readonly index: number;
  readonly outcome: string;
}

const bytesAsArrays = (_: string, v: unknown): unknown => (v instanceof Uint8Array ? Array.from(v) : v);
const show = (o: QueueOutcome): string => JSON.stringify(o, bytesAsArrays);

t.test('QueuePartition on the disk store matches the memory store, through snapshots and crashes', async (t) => {
  const groups = [consumerGroup('A'), consumerGroup('B')];
  const consumers = ['c0', 'c1'].map(consumerId);
  let crashes = 0;
  let redone = 0;
  let deadLetters = 0;
  let forwardedBodies = 0;
  let dropped = 0;
  for (let run = 0; run < 4; run++) {
    const r = new Xoshiro128(seed + 100 + run);
    const config: PartitionConfig = {
      ...defaultPartitionConfig,
      ackDeadlineMs: 1_000,
      maxDeliveries: 3,
      retention: { maxAgeMs: run % 2 === 0 ? 20_000 : 0, maxBytes: 60_000, dropUnacked: run >= 2 },
    };
    const dir = tempDir(t);
    let disk = QueueStore.create(dir, offset(0), { segmentBytesMax: 8 * 1024 });
    let qd = new QueuePartition(config, disk);
    const qm = new QueuePartition(config, new MemoryMessageStore());
    let snap = { json: JSON.stringify(qd.toSnapshot()), cp: await disk.sync() };
    let since: Logged[] = [];
    const handed: { group: ConsumerGroup; delivery: DeliveryId; attempt: number }[] = [];
    const seqs = new Map<string, number>();
    let index = 0;
    let nowMs = 1_000_000;
    let producerSeq = 0;
    const from = (g: number, c: number): { group: ConsumerGroup; consumer: (typeof consumers)[number]; seq: number; nowMs: number } => {
      const k = `${g}/${c}`;
      const seq = (seqs.get(k) ?? 0) + 1;
      seqs.set(k, seq);
      return { group: groups[g] as ConsumerGroup, consumer: consumers[c] as (typeof consumers)[number], seq, nowMs };
    };
    for (let step = 0; step < 700; step++) {
      const op = r.int(0, 99);
      let cmd: QueueCommand;
      if (op < 35) {
        const messages = Array.from({ length: r.int(1, 3) }, () => randomMessage(r, false));
        if (r.int(0, 1) === 0) cmd = { kind: 'append', messages, nowMs };
        else {
          cmd = { kind: 'append', producer: producerId('p'), firstSeq: producerSeq + 1, messages, nowMs };
          producerSeq += messages.length;
        }
      } else if (op < 60) {
        cmd = { kind: 'fetch', ...from(r.int(0, 1), r.int(0, 1)), max: r.int(1, 4) };
      } else if (op < 75 && handed.length > 0) {
        const h = handed[r.int(0, handed.length - 1)] as (typeof handed)[number];
        cmd = { kind: 'ack', ...from(groups.indexOf(h.group), r.int(0, 1)), items: [{ delivery: h.delivery, attempt: h.attempt }] };
      } else if (op < 82 && handed.length > 0) {
        const h = handed[r.int(0, handed.length - 1)] as (typeof handed)[number];
        cmd = { kind: 'nack', ...from(groups.indexOf(h.group), r.int(0, 1)), delivery: h.delivery, attempt: h.attempt, delayMs: 0 };
      } else if (op < 90) {
        nowMs += r.int(0, 3_000);
        cmd = { kind: 'expireDeadlines', nowMs };
      } else if (op < 93 && qd.deadLetterHead() !== null) {
        // The leader forwards the outbox's head batch, reading the bodies from the store, then confirms it.
        const head = qd.deadLetterHead() as NonNullable<ReturnType<typeof qd.deadLetterHead>>;
        for (const l of head.letters) {
          if (JSON.stringify(qd.readMessage(l.offset), bytesAsArrays) !== JSON.stringify(qm.readMessage(l.offset), bytesAsArrays)) t.fail(`run ${run} step ${step}: dead letter ${l.seq} body differs (seed ${seed})`);
          forwardedBodies++;
        }
        cmd = { kind: 'deadLettersForwarded', firstSeq: head.firstSeq, nowMs };
      } else if (op < 95) {
        cmd = { kind: 'enforceRetention', nowMs };
      } else {
        cmd = { kind: 'replay', group: groups[r.int(0, 1)] as ConsumerGroup, from: { timestampMs: nowMs - r.int(0, 30_000) }, nowMs };
      }
      index++;
      const want = show(qm.apply(cmd, logIndex(index)));
      const outD = qd.apply(cmd, logIndex(index));
      const got = show(outD);
      if (got !== want) t.fail(`run ${run} step ${step} ${cmd.kind}: disk ${got} memory ${want} (seed ${seed})`);
      since.push({ cmd, index, outcome: got });
      if (outD.result.kind === 'delivered' && !outD.duplicate && cmd.kind === 'fetch') {
        for (const d of outD.result.deliveries) handed.push({ group: cmd.group, delivery: d.delivery, attempt: d.attempt });
      }
      deadLetters += outD.events.length;
      if (outD.result.kind === 'retained' || outD.result.kind === 'appended') dropped = Math.max(dropped, qd.logStartOffset);

      if (step % 97 === 96) {
        // Snapshot: sync the store, "save" the partition snapshot, then let the store delete what it covers.
        const cp = await disk.sync();
        const s = qd.toSnapshot();
        deepStrictEqual([cp.firstOffset, cp.nextOffset], [s.logStart, s.logEnd], 'the checkpoint is the snapshot\'s range');
        snap = { json: JSON.stringify(s), cp };
        since = [];
        await disk.checkpointDurable(cp);
      }
      if (step % 157 === 156) {
        // Crash: unsynced writes past the checkpoint are lost (files past it deleted or torn, garbage appended).
        crashes++;
        await disk.close();
        for (const n of segmentFiles(dir)) {
          const f = path.join(dir, n);
          if (Number(/q-(\d+)/.exec(n)?.[1]) < snap.cp.nextOffset) continue;
          const fate = r.int(0, 2);
          if (fate === 0) fs.unlinkSync(f);
          else if (fate === 1) fs.truncateSync(f, r.int(0, fs.statSync(f).size));
          else fs.appendFileSync(f, randomBytes(r, r.int(1, 100)));
        }
        disk = QueueStore.open(dir, { segmentBytesMax: 8 * 1024, checkpoint: snap.cp }).store;
        qd = QueuePartition.fromSnapshot(JSON.parse(snap.json) as QueuePartitionSnapshot, disk);
        for (const l of since) {
          const again = show(qd.apply(l.cmd, logIndex(l.index)));
          if (again !== l.outcome) t.fail(`run ${run}: re-applying index ${l.index} after a crash gave ${again}, before ${l.outcome} (seed ${seed})`);
          redone++;
        }
      }
    }
    deepStrictEqual(JSON.stringify(qd.toSnapshot()), JSON.stringify(qm.toSnapshot()), `run ${run}: same partition state (seed ${seed})`);
    await disk.close();
  }
  t.ok(crashes >= 8 && redone > 100, `${crashes} crashes, ${redone} entries re-applied`);
  t.ok(deadLetters > 0 && forwardedBodies > 0, `${deadLetters} dead letters, ${forwardedBodies} forwarded with their bodies read from the store`);
  t.ok(dropped > 0, `retention dropped messages (front up to ${dropped})`);
});

t.test('memory: 1,000,000 small messages cost a few index bytes each, not their bodies', async (t) => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const dir = tempDir(t);
  const store = QueueStore.create(dir, offset(0));
  const key = new Uint8Array(8).fill(7);
  const value = new Uint8Array(16).fill(9);
  const n = 1_000_000;
  const used = (): number => {
    gc();
    gc();
    const m = process.memoryUsage();
    return m.heapUsed + m.external;
  };
  const before = used();
  const started = performance.now();
  for (let i = 0; i < n; i++) store.append(offset(i), 1_000_000 + (i >> 10), { key, value, headers: [] });
  const appendMs = performance.now() - started;
  const after = used();
  const perMessage = (after - before) / n;
  t.comment(`memory: ${perMessage.toFixed(1)} bytes/message over ${n} messages (heap + external); append ${(appendMs / n * 1e3).toFixed(2)} µs/message; ${segmentFiles(dir).length} segment(s)`);
  t.ok(perMessage < 32, `${perMessage.toFixed(1)} bytes/message: the index, not the 24-byte bodies (a body held in memory costs ~100 bytes)`);
  const probe: Offset = offset(654_321);
  deepStrictEqual(store.read(probe), { offset: probe, timestampMs: 1_000_000 + (654_321 >> 10), key, value, headers: [] }, 'bodies read back from disk');
  t.equal(store.bytes, n * 24);
  await store.close();
});
