// Checks the console's line handling without a socket: the 4096-byte limit holds
// per line whatever the chunking (fed whole, byte by byte and at seeded random
// split points), a long line is answered once and never runs as fragments, the
// lines around it do; and what the console prints has control characters escaped.

import t from 'tap';
import { consoleLineBytesMax } from '../../../core/constants.js';
import { Xoshiro128 } from '../../../core/prng.js';
import { escapeControls, isConsoleBanner, consoleBanner, LineSplitter } from '../../../server/node/console.js';

/** Feeds `input` to a splitter in the given chunk sizes; returns what it reported, in order. */
function feed(input: Buffer, sizes: (remaining: number) => number): string[] {
  const events: string[] = [];
  const splitter = new LineSplitter(consoleLineBytesMax, (line) => events.push(`line:${line.length > 20 ? `${line.length} bytes` : line}`),
    () => events.push('too long'));
  let at = 0;
  while (at < input.length) {
    const n = Math.max(1, Math.min(sizes(input.length - at), input.length - at));
    splitter.push(input.subarray(at, at + n));
    at += n;
  }
  return events;
}

const seed = Number(process.env['SEED'] ?? 12);
const prng = new Xoshiro128(seed);

const cases: { what: string; input: Buffer; want: string[] }[] = [
  { what: 'a 1 MB line between two commands', input: Buffer.concat([Buffer.from('ping\n'), Buffer.alloc(1024 * 1024, 'x'), Buffer.from('\nstatus\n')]),
    want: ['line:ping', 'too long', 'line:status'] },
  { what: 'a line of limit + 8 bytes', input: Buffer.from(`${'y'.repeat(consoleLineBytesMax + 8)}\nping\n`), want: ['too long', 'line:ping'] },
  { what: 'a line of exactly the limit, with CRLF', input: Buffer.from(`${'z'.repeat(consoleLineBytesMax)}\r\nping\r\n`),
    want: [`line:${consoleLineBytesMax} bytes`, 'line:ping'] },
  { what: 'a long line whose tail looks like a command', input: Buffer.from(`${'q'.repeat(consoleLineBytesMax)} quit\nping\n`),
    want: ['too long', 'line:ping'] },
  { what: 'multi-byte characters counted as bytes', input: Buffer.from(`${'é'.repeat(consoleLineBytesMax / 2 + 1)}\nping\n`), want: ['too long', 'line:ping'] },
  { what: 'an unfinished line is not run', input: Buffer.from('ping\nstat'), want: ['line:ping'] },
];

for (const c of cases) {
  t.test(c.what, async (t) => {
    t.same(feed(c.input, () => c.input.length), c.want, 'in one chunk');
    t.same(feed(c.input, () => 1), c.want, 'byte by byte');
    for (let round = 0; round < 20; round++) {
      const got = feed(c.input, () => 1 + prng.int(0, 9000));
      if (!t.same(got, c.want, `random split points (SEED=${seed} round ${round})`)) break;
    }
  });
}

t.test('printed text has its control characters escaped; the banner is recognised', async (t) => {
  t.equal(escapeControls("unknown command '\x1b[31mred' \x07\r"), "unknown command '\\x1b[31mred' \\x07\\x0d", 'ESC, BEL and CR escaped');
  t.equal(escapeControls('a\tb\nc'), 'a\tb\nc', 'newline and tab kept');
  t.equal(escapeControls('\u0085\u2028'), '\\x85\\u2028', 'C1 controls and line separators escaped');
  t.ok(isConsoleBanner(consoleBanner('n1')), 'a console banner is recognised');
  t.notOk(isConsoleBanner('HTTP/1.1 400 Bad Request'), 'HTTP is not a console');
});
