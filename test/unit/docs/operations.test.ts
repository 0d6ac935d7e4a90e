// Checks the operator's guide (docs/operations.md) against the code: its settings table
// names every setting of settingSpecs (server/node/config.ts) with the same environment
// variable and default, and nothing else; and its exit-code table has the codes the CLI
// and the node use (usage 2, damaged log 3, fatal stop fatalExitCode, interrupted lock
// wait 130), read from the sources that define them.

import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { settingSpecs } from '../../../server/node/config.js';
import { fatalExitCode } from '../../../server/node/node.js';
import { featureVersionExitCode } from '../../../server/node/version.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const read = (name: string): string => readFileSync(join(repoRoot, name), 'utf8');
const guide = read('docs/operations.md');

/** The rows of the markdown table under `## heading` (cells trimmed), header and separator left out. */
function tableUnder(heading: string): string[][] {
  const start = guide.indexOf(`\n## ${heading}\n`);
  if (start < 0) return [];
  const end = guide.indexOf('\n## ', start + 1);
  return guide.slice(start, end < 0 ? undefined : end).split('\n').filter((l) => l.startsWith('|'))
    .map((l) => l.slice(1, -1).split('|').map((c) => c.trim())).slice(2);
}

t.test('the settings table is settingSpecs', async (t) => {
  const rows = tableUnder('Settings');
  t.same(rows.map((r) => r[0]), settingSpecs.map((s) => `\`--${s.name}\``), 'every setting, in the reference\'s order, and no other');
  for (const s of settingSpecs) {
    const row = rows.find((r) => r[0] === `\`--${s.name}\``);
    t.equal(row?.[1], `\`${s.env}\``, `--${s.name}: environment ${s.env}`);
    t.equal(row?.[2], s.defaultText, `--${s.name}: default ${s.defaultText}`);
  }
  t.match(guide, /\[configuration\.md\]\(configuration\.md\)/, 'links the generated reference');
});

t.test('the exit codes are the ones the code uses', async (t) => {
  const codes = new Map(tableUnder('CLI exit codes').map((r) => [Number(r[0]), r[1] ?? '']));
  const cli = read('cli/dsync.ts');
  t.match(cli, /const usageExitCode = 2;/, 'usage errors exit 2 (cli/dsync.ts)');
  t.match(codes.get(2) ?? '', /usage error.*bad setting/, 'documented as usage error or bad setting');
  t.match(cli, /WAL_CORRUPTION[^\n]*\n\s*return 3;/, 'a damaged log exits 3 (cli/dsync.ts)');
  t.match(codes.get(3) ?? '', /damaged/, 'documented as a damaged log');
  t.match(codes.get(fatalExitCode) ?? '', /stopped itself/, `fatalExitCode ${fatalExitCode} documented as the node stopping itself`);
  t.match(read('cli/commands/lock.ts'), /const interruptedExitCode = 130;/, 'an interrupted lock wait exits 130 (cli/commands/lock.ts)');
  t.match(codes.get(130) ?? '', /interrupted/, 'documented as interrupted');
  t.match(codes.get(1) ?? '', /request failed/, '1: a failed request');
  t.match(codes.get(0) ?? '', /success/, '0: success');
  t.match(codes.get(featureVersionExitCode) ?? '', /feature version/, `featureVersionExitCode ${featureVersionExitCode} documented as a feature version refusal`);
  t.same([...codes.keys()].sort((a, b) => a - b), [0, 1, 2, 3, featureVersionExitCode, 70, 130], 'no other codes are documented');
});
