// Round trip of the WAL: appends hard states and entries for several groups, closes,
// reopens, and compares what recovery returns with a model of what was written,
// including an overwritten suffix and compaction (segment deletion) after snapshots.

import t from 'tap';
import * as fs from 'node:fs';
import { walRecordBytesMax } from '../../../core/constants.js';
import { groupId, logIndex, nodeId, term } from '../../../core/ids.js';
import type { Snapshot } from '../../../core/raft/types.js';
import { listSegmentFiles, toPersistedState, Wal } from '../../../server/storage/wal.js';
import { entries, g0, g1, g7, hs, summary, tempDir } from './helpers.js';

t.test('hard states and entries of several groups survive close and reopen', async (t) => {
  const dir = tempDir(t);
  const { wal, recovered } = await Wal.open(dir);
  t.equal(recovered.size, 0, 'fresh dir recovers nothing');
  wal.append(g0, hs(1, 0, 'n1'), entries(0, 1, 1, 5));
  wal.append(g1, hs(2, 0), entries(1, 2, 1, 3));
  wal.append(g0, hs(1, 3, 'n1'), []);
  wal.append(g7, null, entries(7, 1, 1, 1));
  // g1: conflicting suffix from index 2 replaced by term-3 entries.
  wal.append(g1, hs(3, 1, 'n2'), entries(1, 3, 2, 4));
  const last = wal.append(g0, null, entries(0, 1, 6, 8));
  await wal.whenDurable(last);
  await wal.close();

  const again = await Wal.open(dir);
  t.teardown(() => again.wal.close());
  const r0 = again.recovered.get(g0);
  const r1 = again.recovered.get(g1);
  const r7 = again.recovered.get(g7);
  t.same(r0?.hardState, hs(1, 3, 'n1'), 'latest hard state of g0');
  t.same(summary(r0?.entries ?? []), summary(entries(0, 1, 1, 8)), 'g0 log');
  t.same(r1?.hardState, hs(3, 1, 'n2'), 'latest hard state of g1');
  t.same(summary(r1?.entries ?? []), summary([...entries(1, 2, 1, 1), ...entries(1, 3, 2, 4)]), 'g1 suffix overwritten');
  t.equal(r7?.hardState, null, 'g7 never wrote a hard state');
  t.same(summary(r7?.entries ?? []), summary(entries(7, 1, 1, 1)), 'g7 log');
  const ps = toPersistedState(r7, { voters: [nodeId('a')], learners: [] });
  t.same(ps.hardState, hs(0, 0), 'missing hard state becomes the zero state');
  t.same(ps.conf.voters, ['a'], 'bootstrap conf without snapshot');
  // Appends continue after the recovered seq and the recovered log.
  const seq = again.wal.append(g0, null, entries(0, 2, 9, 9));
  t.ok(seq > last, 'seq keeps increasing across restarts');
  await again.wal.whenDurable(seq);
});

t.test('overwrite shorter than the old log drops the tail; overwrite at the first index replaces all', async (t) => {
  const dir = tempDir(t);
  const { wal } = await Wal.open(dir);
  wal.append(g0, null, entries(0, 1, 1, 10));
  wal.append(g0, null, entries(0, 2, 4, 5));
  wal.append(g1, null, entries(1, 1, 1, 3));
  wal.append(g1, null, entries(1, 5, 1, 2));
  await wal.close();
  const { wal: w2, recovered } = await Wal.open(dir);
  t.teardown(() => w2.close());
  t.same(summary(recovered.get(g0)?.entries ?? []), summary([...entries(0, 1, 1, 3), ...entries(0, 2, 4, 5)]));
  t.same(summary(recovered.get(g1)?.entries ?? []), summary(entries(1, 5, 1, 2)));
});

t.test('appending with a gap is a programmer error', async (t) => {
  const dir = tempDir(t);
  const { wal } = await Wal.open(dir);
  t.teardown(() => wal.close());
  wal.append(g0, null, entries(0, 1, 1, 3));
  t.throws(() => wal.append(g0, null, entries(0, 1, 5, 6)), /gap/);
});

function snap(index: number, tm: number, text: string): Snapshot {
  return {
    meta: { index: logIndex(index), term: term(tm), conf: { voters: [nodeId('n1'), nodeId('n2')], learners: [nodeId('n3')] } },
    data: new TextEncoder().encode(text),
  };
}

t.test('snapshots compact the log and delete obsolete segments', async (t) => {
  const dir = tempDir(t);
  // 64 KiB entries: a minimal segment (one maximal record) holds ~63 of them.
  const pad = 64 * 1024;
  const { wal } = await Wal.open(dir, { segmentBytesMax: walRecordBytesMax });
  let seq = 0;
  for (let i = 1; i <= 200; i++) {
    seq = wal.append(g0, hs(1, i - 1), entries(0, 1, i, i, pad));
    if (i % 3 === 0) seq = wal.append(g1, null, entries(1, 1, i / 3, i / 3, pad));
  }
  await wal.whenDurable(seq);
  const before = listSegmentFiles(dir).length;
  t.ok(before >= 4, `several segments written (${before})`);
  // g0 compacts at 150 but g1 has none: nothing can go yet.
  await wal.saveSnapshot(g0, snap(150, 1, 'state-g0-150'));
  t.equal(listSegmentFiles(dir).length, before, 'segments pinned by g1');
  await wal.saveSnapshot(g1, snap(60, 1, 'state-g1-60'));
  const after = listSegmentFiles(dir).length;
  t.ok(after < before, `obsolete segments deleted (${before} -> ${after})`);
  t.ok(wal.metrics().segmentsDeleted > 0, 'metric counts deletions');
  // More appends after the snapshot, then reopen.
  seq = wal.append(g0, hs(2, 200, 'n2'), entries(0, 2, 201, 202));
  await wal.close();

  const { wal: w2, recovered } = await Wal.open(dir, { segmentBytesMax: walRecordBytesMax });
  t.teardown(() => w2.close());
  const r0 = recovered.get(g0);
  const r1 = recovered.get(g1);
  t.equal(r0?.snapshot?.meta.index, 150, 'g0 snapshot index');
  t.equal(new TextDecoder().decode(r0?.snapshot?.data), 'state-g0-150', 'g0 snapshot data');
  t.same(r0?.snapshot?.meta.conf, { voters: ['n1', 'n2'], learners: ['n3'] }, 'snapshot conf');
  t.same(r0?.hardState, hs(2, 200, 'n2'), 'g0 hard state');
  t.same(
    summary(r0?.entries ?? []).map(([i, tm]) => [i, tm]),
    [...entries(0, 1, 151, 200), ...entries(0, 2, 201, 202)].map((e) => [e.index, e.term]),
    'g0 entries after the snapshot only',
  );
  t.equal(r1?.snapshot?.meta.index, 60);
  t.same(r1?.entries.map((e) => e.index), [61, 62, 63, 64, 65, 66], 'g1 entries after its snapshot');
  t.same(r1?.hardState, null, 'g1 never wrote a hard state');
  t.ok(fs.readdirSync(dir).some((n) => n.endsWith('.snap')), 'snapshot files exist');
});

t.test('a snapshot that replaces the log drops older entries above its index', async (t) => {
  const dir = tempDir(t);
  const { wal } = await Wal.open(dir);
  wal.append(g0, hs(1, 2), entries(0, 1, 1, 10)); // stale, from an old leader
  const done = wal.saveSnapshot(g0, snap(5, 3, 'from-leader'), { replacesLog: true });
  wal.append(g0, hs(3, 5), entries(0, 3, 6, 7)); // new leader's entries after the install
  await done;
  await wal.close();
  const { wal: w2, recovered } = await Wal.open(dir);
  t.teardown(() => w2.close());
  const r = recovered.get(g0);
  t.equal(r?.snapshot?.meta.index, 5);
  t.same(summary(r?.entries ?? []), summary(entries(0, 3, 6, 7)), 'stale entries 8..10 are gone');
});

t.test('a log-replacing snapshot with no later entries leaves an empty log', async (t) => {
  const dir = tempDir(t);
  const { wal } = await Wal.open(dir);
  wal.append(g0, null, entries(0, 1, 1, 10));
  await wal.saveSnapshot(g0, snap(4, 2, 'x'), { replacesLog: true });
  await wal.close();
  const { wal: w2, recovered } = await Wal.open(dir);
  t.teardown(() => w2.close());
  t.same(recovered.get(g0)?.entries, [], 'entries 5..10 from before the install dropped');
  t.throws(() => w2.append(g0, null, entries(0, 2, 4, 4)), /after the snapshot/, 'cannot append at or below the snapshot');
  t.equal(recovered.get(groupId(99)), undefined);
});

t.test('an idle group whose latest hard state sits in an old segment does not pin it', async (t) => {
  const dir = tempDir(t);
  const pad = 64 * 1024;
  const { wal } = await Wal.open(dir, { segmentBytesMax: walRecordBytesMax });
  wal.append(g7, hs(4, 0, 'n9'), []); // g7 writes one hard state, then stays idle
  let seq = 0;
  for (let i = 1; i <= 200; i++) seq = wal.append(g0, null, entries(0, 1, i, i, pad));
  await wal.whenDurable(seq);
  const before = listSegmentFiles(dir);
  await wal.saveSnapshot(g0, snap(190, 1, 'g0-190'));
  const after = listSegmentFiles(dir);
  t.notOk(after.includes(before[0] ?? ''), 'the first segment (holding g7 hard state) was deleted');
  t.ok(after.length < before.length, `segments ${before.length} -> ${after.length}`);
  await wal.close();
  const { wal: w2, recovered } = await Wal.open(dir, { segmentBytesMax: walRecordBytesMax });
  t.teardown(() => w2.close());
  t.same(recovered.get(g7)?.hardState, hs(4, 0, 'n9'), 'g7 hard state survived (re-written)');
  t.same(recovered.get(g0)?.entries.map((e) => e.index), [191, 192, 193, 194, 195, 196, 197, 198, 199, 200]);
});

t.test('seqs never go back below a snapshot floor even with every segment gone', async (t) => {
  const dir = tempDir(t);
  const { wal } = await Wal.open(dir);
  wal.append(g0, null, entries(0, 1, 1, 5));
  await wal.saveSnapshot(g0, snap(5, 1, 'all'), { replacesLog: true });
  await wal.close();
  for (const f of listSegmentFiles(dir)) fs.rmSync(`${dir}/${f}`);
  const { wal: w2 } = await Wal.open(dir);
  await w2.whenDurable(w2.append(g0, null, entries(0, 2, 6, 7)));
  await w2.close();
  const { wal: w3, recovered } = await Wal.open(dir);
  t.teardown(() => w3.close());
  t.same(recovered.get(g0)?.entries.map((e) => e.index), [6, 7], 'entries after the floor are replayed');
});
