// Durability ordering and group commit: whenDurable/onDurable fire only after the
// worker's fdatasync (fsync count observed), sequences are monotonic, a burst of
// appends in one turn shares few fsyncs, and a full ring spills to the JS queue
// without losing or reordering records.

import t from 'tap';
import { walRecordBytesMax } from '../../../core/constants.js';
import * as fs from 'node:fs';
import { Wal, WalFailedError } from '../../../server/storage/wal.js';
import { entries, g0, g1, hs, summary, tempDir } from './helpers.js';

t.test('whenDurable resolves only after an fsync covering the record', async (t) => {
  const dir = tempDir(t);
  const { wal } = await Wal.open(dir);
  t.teardown(() => wal.close());
  const before = wal.metrics().fsyncs;
  const seq = wal.append(g0, hs(1, 0), entries(0, 1, 1, 3));
  t.equal(wal.durable, 0, 'not durable synchronously after append');
  await wal.whenDurable(seq);
  const m = wal.metrics();
  t.ok(m.fsyncs > before, 'an fsync happened before the promise resolved');
  t.ok(m.durableSeq >= seq && wal.durable >= seq, 'durable seq covers the record');
  t.equal(m.recordsWritten, 2, 'hard state + entries records written');
  await t.resolves(wal.whenDurable(seq), 'an already durable seq resolves at once');
});

t.test('a burst of 1000 appends in one turn is covered by few fsyncs', async (t) => {
  const dir = tempDir(t);
  const { wal } = await Wal.open(dir);
  t.teardown(() => wal.close());
  const seen: number[] = [];
  const fsyncsAtCallback: number[] = [];
  const off = wal.onDurable((d) => {
    seen.push(d);
    fsyncsAtCallback.push(wal.metrics().fsyncs);
  });
  const seqs: number[] = [];
  for (let i = 1; i <= 1000; i++) seqs.push(wal.append(g0, null, entries(0, 1, i, i)));
  t.ok(seqs.every((s, k) => k === 0 || s > (seqs[k - 1] ?? Infinity)), 'append seqs strictly increase');
  const last = seqs[seqs.length - 1] ?? 0;
  await wal.whenDurable(last);
  off();
  const m = wal.metrics();
  t.ok(m.fsyncs < 1000, `group commit: ${m.fsyncs} fsyncs for 1000 appends`);
  t.ok(m.fsyncs <= 10, `one turn of appends needs only a handful of batches (${m.fsyncs})`);
  t.ok(seen.length >= 1 && seen[seen.length - 1] === last, 'onDurable reported the last seq');
  t.same([...seen].sort((a, b) => a - b), seen, 'onDurable seqs are monotonic');
  t.ok(fsyncsAtCallback.every((f) => f >= 1), 'every callback came after an fsync');
});

t.test('waiters for different seqs resolve in seq order, each after its records are durable', async (t) => {
  const dir = tempDir(t);
  const { wal } = await Wal.open(dir);
  t.teardown(() => wal.close());
  const order: number[] = [];
  const a = wal.append(g0, hs(1, 0), []);
  const pa = wal.whenDurable(a).then(() => order.push(a));
  await pa;
  const b = wal.append(g1, hs(1, 0), []);
  const c = wal.append(g1, hs(2, 0), []);
  const pc = wal.whenDurable(c).then(() => {
    order.push(c);
    t.ok(wal.durable >= c, 'durable covers c when its waiter runs');
  });
  const pb = wal.whenDurable(b).then(() => order.push(b));
  await Promise.all([pb, pc]);
  t.same(order, [a, b, c]);
});

t.test('a full ring spills into the JS queue and everything still lands in order', async (t) => {
  const dir = tempDir(t);
  const ringBytes = walRecordBytesMax; // the smallest legal ring
  const { wal } = await Wal.open(dir, { ringBytes });
  const pad = 16 * 1024;
  let seq = 0;
  let sawBackpressure = false;
  for (let i = 1; i <= 1000; i++) {
    seq = wal.append(g0, hs(1, i), entries(0, 1, i, i, pad));
    sawBackpressure ||= wal.backpressured;
  }
  t.ok(sawBackpressure, '16 MiB in one turn does not fit a 4 MiB ring');
  t.ok(wal.metrics().pendingBytes > 0, 'records wait in the queue');
  await wal.whenDurable(seq);
  t.equal(wal.metrics().pendingBytes, 0, 'queue drained');
  t.equal(wal.backpressured, false);
  await wal.close();
  const { wal: w2, recovered } = await Wal.open(dir);
  t.teardown(() => w2.close());
  const r = recovered.get(g0);
  t.equal(r?.entries.length, 1000, 'every entry recovered');
  t.same(r?.hardState, hs(1, 1000), 'latest hard state recovered');
  t.same(summary(r?.entries.slice(0, 3) ?? []), summary(entries(0, 1, 1, 3)));
});

t.test('close drains, and the closed WAL refuses appends', async (t) => {
  const dir = tempDir(t);
  const { wal } = await Wal.open(dir);
  const seq = wal.append(g0, null, entries(0, 1, 1, 100));
  await wal.close();
  t.ok(wal.durable >= seq, 'close waited for durability');
  t.throws(() => wal.append(g0, null, entries(0, 1, 101, 101)), { code: 'WAL_CLOSED' });
  await t.resolves(wal.close(), 'close is idempotent');
});

t.test('a writer I/O failure rejects waiters and fails later appends', async (t) => {
  const dir = tempDir(t);
  const { wal } = await Wal.open(dir);
  // The worker creates its segment on the first write: with the directory gone, that fails.
  fs.rmSync(dir, { recursive: true, force: true });
  const seq = wal.append(g0, hs(1, 0), []);
  const err = await wal.whenDurable(seq).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(err instanceof WalFailedError, `whenDurable rejected: ${String(err)}`);
  t.throws(() => wal.append(g0, hs(2, 0), []), { code: 'WAL_FAILED' });
  const closeErr = await wal.close().then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(closeErr instanceof WalFailedError, 'close reports the failure');
});
