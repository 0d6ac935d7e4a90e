// Record order inside one append: the entries of a batch reach the file before the
// hard state that commits them. Checked on the bytes (record types in file order) and
// by a power cut at every byte offset of a catch-up batch: each prefix of the file must
// recover to a state a Raft replica restarts from (commit inside the log, no throw).

import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { assert } from '../../../core/assert.js';
import { recoverDir } from '../../../server/storage/recovery.js';
import { listSegmentFiles, Wal } from '../../../server/storage/wal.js';
import { entries, g0, g1, hs, recordsIn, restartRaft, summary, tempDir } from './helpers.js';

t.test("a batch's entries records are written before its hard-state record", async (t) => {
  const dir = tempDir(t);
  const { wal } = await Wal.open(dir);
  const seq = wal.append(g0, hs(2, 12, 'n2'), entries(0, 2, 1, 12));
  await wal.whenDurable(seq);
  await wal.close();
  const segs = listSegmentFiles(dir);
  t.equal(segs.length, 1, 'one segment');
  const records = recordsIn(fs.readFileSync(path.join(dir, segs[0] ?? '')));
  t.same(records.map((r) => r.type), ['entries', 'hardState'], 'entries first, hard state last');
  t.equal(records[records.length - 1]?.seq, seq, 'append returns the seq of the hard state, its last record');
});

t.test('a power cut at any byte of a catch-up batch leaves a restartable log', async (t) => {
  const dir = tempDir(t);
  const { wal } = await Wal.open(dir);
  // A follower that fell behind: it holds 1..5 of term 1 and knows commit 3.
  wal.append(g0, hs(1, 0, 'n2'), entries(0, 1, 1, 5));
  wal.append(g1, hs(1, 2), entries(1, 1, 1, 2));
  await wal.whenDurable(wal.append(g0, hs(1, 3, 'n2'), []));
  const batchStart = wal.metrics().bytesWritten;
  // It catches up in one batch: the term-2 leader overwrites 4.. and commits up to 24;
  // another group of the node shares the batch.
  wal.append(g0, hs(2, 24), entries(0, 2, 4, 24));
  const last = wal.append(g1, hs(1, 3), entries(1, 1, 3, 3));
  await wal.whenDurable(last);
  await wal.close();

  const segs = listSegmentFiles(dir);
  assert(segs.length === 1, 'the test log fits one segment');
  const name = segs[0] ?? '';
  const full = fs.readFileSync(path.join(dir, name));
  t.ok(batchStart > 0 && batchStart < full.length, `the last batch is bytes [${batchStart}, ${full.length})`);

  const oldLog = summary(entries(0, 1, 1, 5));
  const newLog = summary([...entries(0, 1, 1, 3), ...entries(0, 2, 4, 24)]);
  const scratch = tempDir(t);
  const failures: string[] = [];
  // Bounded by the batch size: one recovery per byte offset.
  for (let cut = batchStart; cut <= full.length; cut++) {
    for (const n of fs.readdirSync(scratch)) fs.rmSync(path.join(scratch, n));
    fs.writeFileSync(path.join(scratch, name), full.subarray(0, cut));
    const rec = recoverDir(scratch);
    for (const [group, r] of rec.groups) {
      const lastIndex = r.entries[r.entries.length - 1]?.index ?? r.snapshot?.meta.index ?? 0;
      const commit = r.hardState?.commit ?? 0;
      if (commit > lastIndex) failures.push(`cut at ${cut}: group ${group} commit ${commit} > last index ${lastIndex}`);
      try {
        restartRaft(r);
      } catch (err) {
        failures.push(`cut at ${cut}: group ${group} restart threw ${(err as Error).message}`);
      }
    }
    const r0 = rec.groups.get(g0);
    const log0 = summary(r0?.entries ?? []);
    const isOld = JSON.stringify(log0) === JSON.stringify(oldLog);
    const isNew = JSON.stringify(log0) === JSON.stringify(newLog);
    if (!isOld && !isNew) failures.push(`cut at ${cut}: group 0 log is neither the old nor the new one`);
    if (isOld && r0?.hardState?.term !== 1) failures.push(`cut at ${cut}: old log with a hard state of term ${r0?.hardState?.term}`);
  }
  t.same(failures, [], `every one of ${full.length - batchStart + 1} cuts recovers to a restartable state`);
});
