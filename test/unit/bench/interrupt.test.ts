// A benchmark stopped with Ctrl-C (SIGINT) or SIGTERM still runs its teardown: the nodes it
// started live in their own process groups and outlived it before, with their data dirs.
// The child below is a benchmark whose main() never ends and whose teardown writes a marker.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import t from 'tap';

const commonJs = pathToFileURL(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'bench', 'common.js')).href;

{
  const signal = 'SIGINT'; // SIGTERM takes the same handler
  t.test(`${signal} runs the benchmark's teardown before it exits`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'dsync-bench-interrupt-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const marker = join(dir, 'torn-down');
    const script = join(dir, 'bench.mjs');
    writeFileSync(script, `
      import { writeFileSync } from 'node:fs';
      import { createCleanup, runBenchmark, sleep } from ${JSON.stringify(commonJs)};
      runBenchmark(async () => {
        const cleanup = createCleanup();
        cleanup.teardown(async () => { await sleep(50); writeFileSync(${JSON.stringify(marker)}, 'yes'); });
        console.log('ready');
        await sleep(20000);
        throw new Error('the signal never came');
      });
    `);
    const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'pipe'] });
    t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
    await new Promise<void>((ready) => child.stdout.on('data', (b: Buffer) => { if (b.toString().includes('ready')) ready(); }));
    child.kill(signal);
    const code = await new Promise<number | null>((done) => child.on('exit', (c) => done(c)));
    t.equal(code, 130, 'exits 130 after the teardown');
    t.ok(existsSync(marker), 'the teardown ran to its end');
  });
}
