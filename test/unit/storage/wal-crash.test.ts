// The "ack only once durable" promise under a real crash: a child process appends in
// a loop and prints each (group, index) the WAL reported durable; the parent kill -9s
// it mid-way, reopens the directory and checks every reported entry was recovered.

import t from 'tap';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { groupId } from '../../../core/ids.js';
import { Wal } from '../../../server/storage/wal.js';
import { tempDir } from './helpers.js';

const reportsBeforeKill = 200;
// A stall bound, not a speed bound: on a loaded machine the child may be slow, but it must keep reporting.
const childStallMsMax = 30_000;
const rounds = 3;

for (let round = 1; round <= rounds; round++) {
  t.test(`kill -9 mid-write loses nothing reported durable (round ${round})`, async (t) => {
    const dir = tempDir(t);
    const childJs = fileURLToPath(new URL('./crash-child.js', import.meta.url));
    const child = spawn(process.execPath, [childJs, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    t.teardown(() => {
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    });
    const acked = new Map<number, number>();
    let reports = 0;
    let buffered = '';
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    await new Promise<void>((resolve, reject) => {
      const stalled = (): void => reject(new Error(`child stalled: no durable report for ${childStallMsMax} ms after ${reports} reports`));
      let timer = setTimeout(stalled, childStallMsMax);
      child.stdout.on('data', (chunk: Buffer) => {
        clearTimeout(timer);
        timer = setTimeout(stalled, childStallMsMax);
        buffered += chunk.toString('utf8');
        const lines = buffered.split('\n');
        buffered = lines.pop() ?? '';
        for (const line of lines) {
          const m = /^durable (\d+) (\d+)$/.exec(line);
          if (m === null) continue;
          const g = Number(m[1]);
          acked.set(g, Math.max(acked.get(g) ?? 0, Number(m[2])));
          reports++;
        }
        if (reports >= reportsBeforeKill + round * 37 && child.pid !== undefined && child.signalCode === null) {
          clearTimeout(timer);
          process.kill(child.pid, 'SIGKILL');
          resolve();
        }
      });
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    t.equal(await exited, 'SIGKILL', 'child was killed, not finished');
    t.ok(acked.size === 2, 'both groups reported durable entries');

    const { wal, recovered } = await Wal.open(dir);
    t.teardown(() => wal.close());
    for (const [g, index] of acked) {
      const log = recovered.get(groupId(g))?.entries ?? [];
      const last = log[log.length - 1]?.index ?? 0;
      t.ok(last >= index, `group ${g}: recovered up to ${last}, child acked ${index}`);
      t.ok(
        log.every((e, k) => e.index === k + 1 && new TextDecoder().decode(e.data) === `g${g}-i${k + 1}`),
        `group ${g}: recovered log is the contiguous prefix written`,
      );
      t.ok((recovered.get(groupId(g))?.hardState?.commit ?? -1) >= index - 1, `group ${g}: hard state recovered`);
    }
  });
}
