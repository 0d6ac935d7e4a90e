// Damaged WALs on real `dsync node` processes of a 3-node cluster. A stopped
// follower whose last segment lost its final bytes (a torn tail: the last record
// cut in half) starts, cuts the tail, rejoins and converges to the others'
// (count, hash). A stopped node with one byte flipped inside a record in the
// middle of a segment refuses to start: exit code 3, a message naming the
// segment file and the byte offset of the damaged record, and the file left as
// it was (corruption is never "repaired" by truncation).

import { readFileSync, statSync } from 'node:fs';
import t from 'tap';
import { Client } from '../../client/index.js';
import { nodeArgs, runDsync, TestCluster } from './helpers/cluster.js';
import { appendAll, chopTail, flipByte, recordOffsets, waitForConvergence, waitForLeader,
  walRecordHeaderBytes, walSegments } from './raft-helpers.js';

const appendsPerRound = 600;
const concurrency = 32;
/** Records a segment must hold so that "the middle" has whole records on both sides. */
const recordsMin = 5;

t.test('torn tail starts and rejoins; flipped byte mid-segment refuses with file and offset', async (t) => {
  const cluster = await TestCluster.start(t);
  const client = await Client.connect({ seeds: cluster.seeds, requestTimeoutMs: 10_000, maxRedirects: 40 });
  t.teardown(() => client.close());
  const ids = cluster.nodes.map((n) => n.spec.id);
  const leader = await waitForLeader(client, cluster.seeds, ids);
  let acked = await appendAll(client, 'wal-a', appendsPerRound, concurrency);
  await waitForConvergence(client, cluster.seeds, acked);

  // ---- torn tail on a follower ----
  const followers = cluster.nodes.filter((n) => n.spec.id !== leader.leaderId);
  const torn = followers[0];
  const flipped = followers[1];
  if (torn === undefined || flipped === undefined) throw new Error('two followers expected');
  const stopped = await torn.stop();
  t.equal(stopped?.code, 0, `${torn.spec.id} stopped cleanly`);
  const tornSegments = walSegments(torn.spec.dataDir);
  const lastSegment = tornSegments[tornSegments.length - 1];
  if (lastSegment === undefined) throw new Error(`${torn.spec.id} has no WAL segment`);
  const offsets = recordOffsets(lastSegment);
  const original = readFileSync(lastSegment);
  const sizeBefore = original.length;
  const lastRecord = offsets[offsets.length - 1];
  t.ok(lastRecord !== undefined && offsets.length >= 2, `the last segment holds whole records (${offsets.length})`);
  // Cut the final record in half: its header survives, its body does not.
  const chopBytes = Math.max(1, Math.floor((sizeBefore - (lastRecord ?? 0)) / 2));
  chopTail(lastSegment, chopBytes);
  t.comment(`chopped ${chopBytes} of ${sizeBefore} bytes off ${lastSegment}`);

  acked += await appendAll(client, 'wal-b', appendsPerRound, concurrency);
  await torn.restart();
  t.ok(torn.process.running, `${torn.spec.id} starts with a torn tail`);
  const afterTorn = await waitForConvergence(client, cluster.seeds, acked);
  t.ok((afterTorn[0]?.count ?? 0) >= acked, 'it caught up with every acknowledged append');
  t.equal(new Set(afterTorn.map((i) => `${i.count}/${i.hash}`)).size, 1, 'all three equal (count, hash)');
  // The repaired segment begins with the bytes it had before the damage.
  const repaired = readFileSync(lastSegment);
  t.ok(repaired.length >= (lastRecord ?? 0) && repaired.subarray(0, lastRecord).equals(original.subarray(0, lastRecord)),
    'recovery kept every whole record byte for byte');

  // ---- flipped byte in the middle of a segment of a stopped node ----
  await flipped.stop();
  const segments = walSegments(flipped.spec.dataDir);
  const target = segments.find((s) => recordOffsets(s).length >= recordsMin);
  if (target === undefined) throw new Error(`${flipped.spec.id} has no segment with ${recordsMin} records`);
  const targetOffsets = recordOffsets(target);
  const middle = Math.floor(targetOffsets.length / 2);
  const recordStart = targetOffsets[middle];
  const recordEnd = targetOffsets[middle + 1];
  if (recordStart === undefined || recordEnd === undefined) throw new Error('a middle record with a successor');
  const flipAt = Math.floor((recordStart + walRecordHeaderBytes + recordEnd) / 2);
  t.ok(flipAt > recordStart + walRecordHeaderBytes && flipAt < recordEnd, `flipping a body byte of the record at ${recordStart}`);
  const sizeBeforeFlip = statSync(target).size;
  flipByte(target, flipAt);

  const refused = await runDsync(t, nodeArgs(flipped.spec), { timeoutMs: 15_000 });
  t.equal(refused.code, 3, `dsync node exits 3 on a corrupt WAL\n${refused.stdout}\n${refused.stderr}`);
  t.match(refused.stderr, target, 'the message names the segment file');
  t.match(refused.stderr, new RegExp(`byte offset ${recordStart}\\b`), `the message names byte offset ${recordStart}`);
  t.notMatch(refused.stdout, /listening on/, 'it never started serving');
  t.equal(statSync(target).size, sizeBeforeFlip, 'the corrupt segment was not truncated');

  // The two healthy nodes still form a majority and agree.
  acked += await appendAll(client, 'wal-c', 50, 8);
  const live = cluster.nodes.filter((n) => n !== flipped).map((n) => n.address);
  const end = await waitForConvergence(client, live, acked);
  t.ok((end[0]?.count ?? 0) >= acked, 'the rest of the cluster keeps every acknowledged append');
});
