// The CLI's start-up cost: a client command (`dsync lock`, `dsync publish`, ...) must not
// load the node's code. Importing server/main.js costs about a second (the node, its
// services, ioredis, prom-client), which every command paid before `dsync node` imported
// it lazily. Checked on the compiled output by walking its static imports.

import { readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const distRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const staticImport = /^\s*(?:import|export)\s[^;]*?\sfrom\s+'(\.[^']+)'|^\s*import\s+'(\.[^']+)'/gm;

/** Every module reachable from `entry` through static imports (dynamic `import()` is lazy by design). */
function staticClosure(entry: string): Set<string> {
  const seen = new Set<string>();
  const stack = [entry];
  while (stack.length > 0) {
    const file = stack.pop() as string;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const m of readFileSync(file, 'utf8').matchAll(staticImport)) {
      stack.push(resolve(dirname(file), (m[1] ?? m[2]) as string));
    }
  }
  return seen;
}

t.test('the dsync command loads the node only for `dsync node`', async (t) => {
  const loaded = [...staticClosure(join(distRoot, 'cli', 'dsync.js'))].map((f) => relative(distRoot, f));
  t.ok(loaded.includes(join('cli', 'commands', 'lock.js')), 'the walk follows the command table');
  t.ok(loaded.includes(join('client', 'index.js')), 'and reaches the client');
  for (const heavy of [join('server', 'main.js'), join('server', 'node', 'node.js'), join('server', 'storage', 'wal.js')]) {
    t.notOk(loaded.includes(heavy), `${heavy} is not loaded by a client command`);
  }
});
