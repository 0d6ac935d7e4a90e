// The rules in server/node/security.ts, table-driven: which roles may do what; the
// token file's parser (every malformed line named by file and line, never echoing the
// token); token checks (the right credential, null for anything else, also tokens
// that share a prefix); and the request-rate bucket (a second's burst, then one per
// 1/rate seconds, with the wait it reports).

import t from 'tap';
import { Authenticator, RateBucket, roleAllows, SecurityConfigError } from '../../../server/node/security.js';

t.test('roles and access', async (t) => {
  const table: [Parameters<typeof roleAllows>[0], boolean, boolean, boolean][] = [
    // role, read, write, admin
    ['admin', true, true, true],
    ['peer', true, true, true],
    ['read-write', true, true, false],
    ['read-only', true, false, false],
  ];
  for (const [role, read, write, admin] of table) {
    t.same([roleAllows(role, 'read'), roleAllows(role, 'write'), roleAllows(role, 'admin')], [read, write, admin], role);
  }
});

const good = 'admin ops 0123456789abcdef-admin\nread-only dash 0123456789abcdef-ro # a comment\n\npeer nodes 0123456789abcdef-peer\n';

t.test('a token file: credentials by token, constant-time checked', async (t) => {
  const auth = Authenticator.parse(good, 'tokens');
  t.same(auth.check('0123456789abcdef-admin'), { name: 'ops', role: 'admin' });
  t.same(auth.check('0123456789abcdef-ro'), { name: 'dash', role: 'read-only' });
  t.equal(auth.check('0123456789abcdef-r'), null, 'a prefix of a token is no token');
  t.equal(auth.check('0123456789abcdef-admin '), null, 'nor is a token with more after it');
  t.equal(auth.check(''), null);
  t.equal(auth.peerToken, '0123456789abcdef-peer', 'the token nodes present to each other');
});

t.test('a malformed token file is refused naming the line, not the secret', async (t) => {
  const rows: [string, RegExp][] = [
    ['admin ops', /tokens line 1: expected/],
    ['root ops 0123456789abcdef', /line 1: role "root"/],
    ['admin o\u0001s 0123456789abcdef', /is not a credential name/],
    ['admin ops short', /line 1: the token is shorter than 16/],
    ['admin a 0123456789abcdef\nadmin a 0123456789abcdeg', /line 2: credential name "a" is used twice/],
    ['admin a 0123456789abcdef\nadmin b 0123456789abcdef', /line 2: the same token is given twice/],
    ['# nothing here\n', /no credentials/],
  ];
  for (const [text, want] of rows) {
    const err = (() => { try { Authenticator.parse(text, 'tokens'); return null; } catch (e) { return e; } })();
    t.ok(err instanceof SecurityConfigError, `refused: ${JSON.stringify(text)}`);
    t.match((err as Error).message, want);
    t.notMatch((err as Error).message, /0123456789abcde/, 'the message never shows a token');
  }
  t.throws(() => Authenticator.fromFile('/nonexistent/tokens', '--auth-file'), /--auth-file: cannot read \/nonexistent\/tokens: ENOENT/);
});

t.test('the request-rate bucket', async (t) => {
  const b = new RateBucket(4, 0);
  const waits = [0, 0, 0, 0, 1].map(() => b.take(0));
  t.same(waits, [0, 0, 0, 0, 250], 'a burst of one second, then the wait for the next token');
  t.equal(b.take(250), 0, 'a quarter second later one more goes');
  t.equal(b.take(250), 250);
  t.equal(b.take(10_000), 0, 'a long pause refills');
  t.same([b.take(10_000), b.take(10_000), b.take(10_000), b.take(10_000)], [0, 0, 0, 250], 'but only up to one second');
});
