// Configuration as a new user meets it: each environment variable is also read with
// the DSYNC_ prefix, which wins over the bare name and is named in errors; and the
// committed docs/configuration.md is exactly what `npm run docs:config` generates
// from settingSpecs, listing every setting. Calls loadConfig with explicit env objects.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { ConfigError, configurationReference, loadConfig, settingSpecs } from '../../../server/node/config.js';

/** The checkout root (this file runs from dist/test/unit/config/). */
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const root = mkdtempSync(join(tmpdir(), 'dsync-config-ref-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
const dataDir = join(root, 'data');

t.test('DSYNC_-prefixed variables are read and win over the bare names', (t) => {
  const c = loadConfig({ 'data-dir': dataDir }, { DSYNC_NODE_ID: 'a1', NODE_ID: 'b1', DSYNC_PORT: '7501', PORT: '3000', HOST: '127.0.0.2',
    DSYNC_PEERS: 'n2@127.0.0.1:7502', PEERS: 'garbage' });
  t.equal(c.nodeId, 'a1');
  t.equal(c.port, 7501, 'DSYNC_PORT wins over PORT');
  t.equal(c.host, '127.0.0.2', 'a bare name still counts when no DSYNC_ one is set');
  t.same(c.peers.map((p) => `${p.id}@${p.host}:${p.port}`), ['n2@127.0.0.1:7502']);
  t.equal(c.settingLabels.port, 'DSYNC_PORT', 'start errors name the variable that was used');
  t.end();
});

t.test('a bad DSYNC_ value is a ConfigError naming DSYNC_ variable', (t) => {
  t.throws(() => loadConfig({ id: 'n1', 'data-dir': dataDir }, { DSYNC_HTTP_PORT: '99999' }),
    new ConfigError('DSYNC_HTTP_PORT', '99999 is out of range (0-65535)'));
  t.end();
});

t.test('docs/configuration.md is the generated reference, listing every setting', (t) => {
  const generated = configurationReference();
  const committed = readFileSync(join(repoRoot, 'docs', 'configuration.md'), 'utf8');
  t.equal(committed, generated, 'docs/configuration.md is up to date (run npm run docs:config)');
  for (const s of settingSpecs) {
    t.match(generated, `| \`--${s.name}\` | \`DSYNC_${s.env}\` or \`${s.env}\` | \`${s.fileKey}\` |`, `documents --${s.name}`);
  }
  t.match(generated, '`--config`', 'and the config file itself');
  t.end();
});
