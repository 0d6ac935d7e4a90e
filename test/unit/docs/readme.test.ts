// Checks that the README tells a new user the truth: every ErrorCode a client can
// see has its own row in the "Error codes" table (and no row names a code that
// does not exist), and the client example runs on Node 20 as plain JavaScript.
// Reads README.md from the checkout; the example itself is run by
// test/integration/package.test.ts against the installed package.

import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { ErrorCode } from '../../../protocol/errors.js';

/** The checkout root (this file runs from dist/test/unit/docs/). */
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');

t.test('every error code has one documented row, and only real codes do', async (t) => {
  const section = readme.split(/^### Error codes$/m)[1]?.split(/^#{2,3} /m)[0];
  t.ok(section !== undefined, 'README has an "### Error codes" section');
  const rows = [...(section ?? '').matchAll(/^\| `([A-Z_]+)` \| (.+) \|$/gm)].map((m) => ({ code: m[1] ?? '', text: m[2] ?? '' }));
  const documented = rows.map((r) => r.code);
  for (const code of Object.values(ErrorCode)) {
    t.equal(documented.filter((c) => c === code).length, 1, `${code} has one row`);
  }
  t.same(documented.filter((c) => !(c in ErrorCode)), [], 'no row for an unknown code');
  t.same(rows.filter((r) => r.text.trim().length < 10).map((r) => r.code), [], 'each row says something');
});

t.test('the client example is plain JavaScript for Node 20; await using is explained, not required', async (t) => {
  const section = readme.split(/^### Client library$/m)[1] ?? '';
  const firstBlock = /```(\w+)\n([\s\S]*?)```/.exec(section.replace(/```sh\n[\s\S]*?```/g, ''));
  t.equal(firstBlock?.[1], 'js', 'the first example is JavaScript');
  t.notMatch(firstBlock?.[2] ?? '', /await using/, 'without await using (a syntax error on Node 20)');
  t.match(firstBlock?.[2] ?? '', /finally \{\s*await lock\.release\(\)/, 'releasing in finally');
  t.match(section, /TypeScript 5\.2/, 'says await using works from TypeScript 5.2+');
  t.match(section, /Node 24/, 'and in plain JavaScript on Node 24+');
});
