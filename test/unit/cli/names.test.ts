// Checks the rules a lock name must meet (one function, used by the client, the
// lock service and the CLI) against each class of bad input, and that the CLI's
// printable() shows control characters escaped so a name cannot drive the terminal.

import t from 'tap';
import { printable } from '../../../cli/command.js';
import { lockNameBytesMax } from '../../../core/constants.js';
import { lockNameProblem } from '../../../core/locks/names.js';

t.test('lock names', async (t) => {
  for (const ok of ['jobs/nightly', 'orders/42', 'ünïcode ✓', 'x'.repeat(lockNameBytesMax), ' padded ']) {
    t.equal(lockNameProblem(ok), null, `${JSON.stringify(ok.slice(0, 20))} is accepted`);
  }
  const bad: [string, RegExp][] = [
    ['', /must not be empty/],
    ['   ', /only whitespace/],
    ['\t\u00a0', /only whitespace/],
    ['a\nb', /control characters \(U\+000A at position 1\)/],
    ['\x1b[31mred', /U\+001B at position 0/],
    ['del\x7f', /U\+007F/],
    ['c1\u0085', /U\+0085/],
    ['x'.repeat(lockNameBytesMax + 1), new RegExp(`at most ${lockNameBytesMax} UTF-8 bytes`)],
    ['é'.repeat(lockNameBytesMax / 2 + 1), /UTF-8 bytes/],
  ];
  for (const [name, why] of bad) t.match(lockNameProblem(name), why, `${JSON.stringify(name.slice(0, 12))} is refused`);
});

t.test('printable', async (t) => {
  t.equal(printable('a\nb\x1b[2J\u2028'), 'a\\nb\\x1b[2J\\u2028', 'controls shown as escapes');
  t.equal(printable('plain/name ✓'), 'plain/name ✓', 'ordinary text unchanged');
});
