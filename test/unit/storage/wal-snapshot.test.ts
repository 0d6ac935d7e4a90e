// Snapshot atomicity: a leftover temp file from a snapshot write that crashed before
// its rename is removed at open and the previous snapshot still loads; a damaged
// snapshot file (its CRC fails) makes open() refuse with WalCorruptionError.

import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { logIndex, nodeId, term } from '../../../core/ids.js';
import type { Snapshot } from '../../../core/raft/types.js';
import { Wal, WalCorruptionError } from '../../../server/storage/wal.js';
import { entries, g0, hs, tempDir } from './helpers.js';

function snap(index: number, text: string): Snapshot {
  return { meta: { index: logIndex(index), term: term(1), conf: { voters: [nodeId('n1')], learners: [] } }, data: new TextEncoder().encode(text) };
}

t.test('a leftover temp file is ignored and removed; the previous snapshot loads', async (t) => {
  const dir = tempDir(t);
  const { wal } = await Wal.open(dir);
  await wal.whenDurable(wal.append(g0, hs(1, 10), entries(0, 1, 1, 12)));
  await wal.saveSnapshot(g0, snap(5, 'good-5'));
  await wal.close();
  const names = fs.readdirSync(dir);
  const snapName = names.find((n) => n.endsWith('.snap'));
  t.ok(snapName, 'snapshot file exists');
  t.notOk(names.some((n) => n.endsWith('.tmp')), 'no temp file after a completed save');
  // Simulate a crash half-way through writing a newer snapshot.
  const temp = path.join(dir, `${snapName ?? ''}.tmp`);
  fs.writeFileSync(temp, new Uint8Array([1, 2, 3, 4, 5, 6, 7]));
  const { wal: w2, recovered } = await Wal.open(dir);
  t.teardown(() => w2.close());
  t.notOk(fs.existsSync(temp), 'temp file removed');
  const r = recovered.get(g0);
  t.equal(new TextDecoder().decode(r?.snapshot?.data), 'good-5', 'previous snapshot loaded');
  t.same(r?.entries.map((e) => e.index), [6, 7, 8, 9, 10, 11, 12], 'entries after it');
  // A newer snapshot replaces it atomically.
  await w2.saveSnapshot(g0, snap(8, 'good-8'));
  t.notOk(fs.readdirSync(dir).some((n) => n.endsWith('.tmp')));
});

t.test('a damaged snapshot file is refused', async (t) => {
  const dir = tempDir(t);
  const { wal } = await Wal.open(dir);
  await wal.whenDurable(wal.append(g0, hs(1, 3), entries(0, 1, 1, 3)));
  await wal.saveSnapshot(g0, snap(2, 'state'));
  await wal.close();
  const file = path.join(dir, fs.readdirSync(dir).find((n) => n.endsWith('.snap')) ?? '');
  const buf = fs.readFileSync(file);
  buf[buf.length - 1] = (buf[buf.length - 1] ?? 0) ^ 1;
  fs.writeFileSync(file, buf);
  const err = await Wal.open(dir).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(err instanceof WalCorruptionError && err.file === file, `refused: ${String(err)}`);
});

t.test('snapshots of one group are saved in call order', async (t) => {
  const dir = tempDir(t);
  const { wal } = await Wal.open(dir);
  await wal.whenDurable(wal.append(g0, hs(1, 20), entries(0, 1, 1, 20)));
  const saves = [wal.saveSnapshot(g0, snap(5, 's5')), wal.saveSnapshot(g0, snap(10, 's10')), wal.saveSnapshot(g0, snap(15, 's15'))];
  await Promise.all(saves);
  t.throws(() => wal.saveSnapshot(g0, snap(12, 'older')), /older/, 'a snapshot older than the last is a programmer error');
  await wal.close();
  const { wal: w2, recovered } = await Wal.open(dir);
  t.teardown(() => w2.close());
  t.equal(new TextDecoder().decode(recovered.get(g0)?.snapshot?.data), 's15', 'the last one wins');
  t.equal(recovered.get(g0)?.entries[0]?.index, 16);
});
