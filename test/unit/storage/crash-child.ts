// Child process for wal-crash.test: appends entries to two groups in a bounded loop
// and prints "durable <group> <index>" only once the WAL reports them durable, until killed.

import { groupId, logIndex, term } from '../../../core/ids.js';
import { EntryType } from '../../../core/raft/types.js';
import { Wal } from '../../../server/storage/wal.js';

const dir = process.argv[2];
if (dir === undefined) throw new Error('usage: crash-child <dir>');
const appendsPerTurn = 64;
const turnsMax = 20_000;
const groups = [groupId(0), groupId(1)] as const;

const { wal } = await Wal.open(dir);
const pending: { seq: number; group: number; index: number }[] = [];
const next = [1, 1];
wal.onDurable((d) => {
  const last = new Map<number, number>();
  while (pending.length > 0 && (pending[0]?.seq ?? Infinity) <= d) {
    const p = pending.shift();
    if (p !== undefined) last.set(p.group, p.index);
  }
  for (const [g, i] of last) process.stdout.write(`durable ${g} ${i}\n`);
});

let turn = 0;
function oneTurn(): void {
  if (turn++ >= turnsMax) return;
  for (let k = 0; k < appendsPerTurn; k++) {
    const gi = k % 2;
    const g = groups[gi] ?? groupId(0);
    const index = next[gi] ?? 1;
    next[gi] = index + 1;
    const data = new TextEncoder().encode(`g${gi}-i${index}`);
    const seq = wal.append(g, { term: term(1), vote: '', commit: logIndex(index - 1) }, [
      { term: term(1), index: logIndex(index), type: EntryType.Normal, data },
    ]);
    pending.push({ seq, group: gi, index });
  }
  // Let durability callbacks run between turns; stay bounded in memory when the disk is slow.
  if (wal.backpressured) setTimeout(oneTurn, 5);
  else setImmediate(oneTurn);
}
oneTurn();
