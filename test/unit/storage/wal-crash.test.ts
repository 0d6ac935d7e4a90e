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

// The fault runner's "lose unsynced writes" failpoint (DSYNC_FAILPOINT_WAL): after N
// batches the writer keeps half of the next batch on disk and kills the process before
// its fsync. Recovery must cut that torn half and keep everything acknowledged.
t.test('the lose-unsynced failpoint tears the last batch; recovery keeps everything acknowledged', async (t) => {
  const dir = tempDir(t);
  const childJs = fileURLToPath(new URL('./crash-child.js', import.meta.url));
  const child = spawn(process.execPath, [childJs, dir], { stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, DSYNC_FAILPOINT_WAL: 'lose-unsynced-after:40' } });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
  });
  const acked = new Map<number, number>();
  let buffered = '';
  child.stdout.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) {
      const m = /^durable (\d+) (\d+)$/.exec(line);
      if (m !== null) acked.set(Number(m[1]), Math.max(acked.get(Number(m[1])) ?? 0, Number(m[2])));
    }
  });
  const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, s) => resolve(s)));
  t.equal(signal, 'SIGKILL', 'the failpoint killed the process');
  t.ok(acked.size === 2, 'it had acknowledged writes of both groups before');
  const { wal, recovered } = await Wal.open(dir);
  t.teardown(() => wal.close());
  t.ok(wal.metrics().recoveryCutBytes > 0, `recovery cut the torn half batch (${wal.metrics().recoveryCutBytes} bytes)`);
  for (const [g, index] of acked) {
    const last = recovered.get(groupId(g))?.entries.at(-1)?.index ?? 0;
    t.ok(last >= index, `group ${g}: recovered up to ${last}, acknowledged ${index}`);
  }
});
