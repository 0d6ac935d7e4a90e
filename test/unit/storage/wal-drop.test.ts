// Dropped groups (issue 9: groups at run time, WAL reclamation). A queue partition
// deleted or moved away leaves its Raft group's records in the shared WAL; without a
// tombstone they pin their segments forever and a restart resurrects the group.
// Checks: after dropGroup() a restart does not recover the group and its snapshot file
// is gone; segments that held only dropped or compacted records are deleted; a crash
// between the durable tombstone and the snapshot unlink is finished at open; writing
// for a dropped group is refused; 200 groups with half of them dropped reopen as the
// other 100, each with its own log intact.

import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { walRecordBytesMax } from '../../../core/constants.js';
import { groupId, logIndex, nodeId, term } from '../../../core/ids.js';
import type { Snapshot } from '../../../core/raft/types.js';
import { snapshotFileName } from '../../../server/storage/format.js';
import { listSegmentFiles, Wal } from '../../../server/storage/wal.js';
import { entries, hs, summary, tempDir } from './helpers.js';

function snap(index: number, text: string): Snapshot {
  return { meta: { index: logIndex(index), term: term(1), conf: { voters: [nodeId('n1')], learners: [] } }, data: new TextEncoder().encode(text) };
}

/** Smallest legal segment (one maximal record): every few 1 MiB batches roll one. */
const segmentBytesMax = walRecordBytesMax;
const pad = 1024 * 1024;
const ga = groupId(1);
const gb = groupId(2);

t.test('a dropped group is not recovered, its snapshot is unlinked and its segments reclaimed', async (t) => {
  const dir = tempDir(t);
  const { wal } = await Wal.open(dir, { segmentBytesMax });
  // Both groups write into the first segments; then only group a goes on.
  for (let i = 1; i <= 20; i += 4) {
    await wal.whenDurable(wal.append(ga, hs(1, i + 3), entries(1, 1, i, i + 3, pad / 4)));
    await wal.whenDurable(wal.append(gb, hs(1, i + 3), entries(2, 1, i, i + 3, pad / 4)));
  }
  await wal.saveSnapshot(gb, snap(10, 'b-10'));
  t.ok(fs.existsSync(path.join(dir, snapshotFileName(gb))), 'group b has a snapshot file');
  const segmentsBefore = listSegmentFiles(dir).length;
  t.ok(segmentsBefore >= 3, `records span ${segmentsBefore} segments`);

  await wal.dropGroup(gb);
  t.notOk(fs.existsSync(path.join(dir, snapshotFileName(gb))), 'the snapshot file is gone once the drop resolves');
  t.throws(() => wal.append(gb, hs(1, 1), entries(2, 1, 21, 21)), /dropped/, 'writing for a dropped group is a bug');
  // Group a compacts past everything: the old segments now hold nothing anyone needs.
  await wal.whenDurable(wal.append(ga, hs(1, 24), entries(1, 1, 21, 24, pad / 4)));
  await wal.saveSnapshot(ga, snap(24, 'a-24'));
  const segmentsAfter = listSegmentFiles(dir).length;
  t.ok(segmentsAfter < segmentsBefore, `segments reclaimed: ${segmentsBefore} -> ${segmentsAfter}`);
  await wal.close();

  const { wal: w2, recovered } = await Wal.open(dir, { segmentBytesMax });
  t.teardown(() => w2.close());
  t.notOk(recovered.has(gb), 'the dropped group is not recovered');
  t.equal(new TextDecoder().decode(recovered.get(ga)?.snapshot?.data), 'a-24', 'the other group is intact');
  t.throws(() => w2.append(gb, hs(1, 1), entries(2, 1, 1, 1)), /dropped/, 'still refused after a restart');
});

t.test('a crash between the durable tombstone and the snapshot unlink is finished at open', async (t) => {
  const dir = tempDir(t);
  const { wal } = await Wal.open(dir);
  await wal.whenDurable(wal.append(gb, hs(1, 5), entries(2, 1, 1, 5)));
  await wal.saveSnapshot(gb, snap(3, 'b-3'));
  const file = path.join(dir, snapshotFileName(gb));
  const saved = fs.readFileSync(file);
  await wal.dropGroup(gb);
  await wal.close();
  fs.writeFileSync(file, saved); // as if the unlink never happened
  const { wal: w2, recovered } = await Wal.open(dir);
  t.teardown(() => w2.close());
  t.notOk(recovered.has(gb), 'not resurrected from its snapshot');
  t.notOk(fs.existsSync(file), 'the leftover snapshot file is removed');
});

t.test('200 groups, 100 dropped: a restart recovers exactly the other 100, logs intact', async (t) => {
  const dir = tempDir(t);
  const { wal } = await Wal.open(dir);
  const groups = Array.from({ length: 200 }, (_, i) => groupId(i + 1));
  let seq = 0;
  for (let round = 0; round < 3; round++) {
    for (const g of groups) seq = wal.append(g, hs(1, 1 + round * 2), entries(g, 1, 1 + round * 2, 2 + round * 2));
  }
  await wal.whenDurable(seq);
  const dropped = groups.filter((g) => g % 2 === 0);
  await Promise.all(dropped.map((g) => wal.dropGroup(g)));
  await wal.close();
  const { wal: w2, recovered } = await Wal.open(dir);
  t.teardown(() => w2.close());
  t.same([...recovered.keys()].sort((a, b) => a - b), groups.filter((g) => g % 2 === 1), 'exactly the kept groups');
  let intact = 0;
  for (const [g, r] of recovered) {
    if (JSON.stringify(summary(r.entries)) === JSON.stringify(summary(entries(g, 1, 1, 6)))) intact++;
  }
  t.equal(intact, 100, 'each kept group has its own six entries');
});
