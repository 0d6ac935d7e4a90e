// loadConfig (server/config.ts): precedence flags > environment > config file,
// derived defaults, and that every validation failure is a ConfigError naming
// the setting the way the operator wrote it (--flag, ENV_NAME or file key).
// Calls loadConfig directly with explicit env objects; data dirs are temp dirs.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { ConfigError, loadConfig, parsePeers, type RawSettings } from '../../../server/node/config.js';
import { nodeId } from '../../../core/ids.js';

const root = mkdtempSync(join(tmpdir(), 'dsync-config-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
const dataDir = join(root, 'data');

function configFile(name: string, content: unknown): string {
  const path = join(root, name);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

/** The ConfigError loadConfig throws for these inputs (fails the test if it does not throw one). */
function configError(t: Test, flags: RawSettings, env: NodeJS.ProcessEnv = {}, withDataDir = true): ConfigError {
  try {
    loadConfig(withDataDir ? { 'data-dir': dataDir, ...flags } : flags, env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  t.fail(`expected a ConfigError for ${JSON.stringify(flags)} ${JSON.stringify(env)}`);
  return new ConfigError('(none)', 'no error');
}

t.test('defaults and derived ports', (t) => {
  const c = loadConfig({ id: 'n1', 'data-dir': dataDir }, {});
  t.equal(c.nodeId, 'n1');
  t.equal(c.host, '127.0.0.1');
  t.equal(c.port, 7401);
  t.equal(c.httpPort, 8401, 'HTTP defaults to port + 1000');
  t.equal(c.consolePort, 9401, 'console defaults to port + 2000');
  t.same(c.peers, []);
  t.equal(c.logLevel, 'info');
  t.equal(c.dataDir, dataDir);
  const ephemeral = loadConfig({ id: 'n1', port: '0', 'data-dir': dataDir }, {});
  t.equal(ephemeral.httpPort, 0, 'port 0 makes the derived ports ephemeral too');
  t.equal(ephemeral.consolePort, 0);
  t.equal(loadConfig({ id: 'n1', port: '65000', 'data-dir': dataDir }, {}).httpPort, 0, 'a derived port past 65535 becomes ephemeral');
  t.end();
});

t.test('precedence: flags over environment over file', (t) => {
  const file = configFile('prec.json', { nodeId: 'file-id', port: 7001, httpPort: 7002, consolePort: 7003, logLevel: 'warn',
    peers: ['p1@127.0.0.1:7101', 'p2@127.0.0.1:7102'], dataDir });
  const fromFile = loadConfig({ config: file }, {});
  t.equal(fromFile.nodeId, 'file-id');
  t.equal(fromFile.port, 7001);
  t.equal(fromFile.httpPort, 7002);
  t.equal(fromFile.logLevel, 'warn');
  t.same(fromFile.peers.map((p) => `${p.id}@${p.host}:${p.port}`), ['p1@127.0.0.1:7101', 'p2@127.0.0.1:7102'], 'a peers array is accepted');

  const env = { NODE_ID: 'env-id', PORT: '7201', LOG_LEVEL: 'error', PEERS: 'q1@127.0.0.1:7301' };
  const fromEnv = loadConfig({ config: file }, env);
  t.equal(fromEnv.nodeId, 'env-id', 'env beats file');
  t.equal(fromEnv.port, 7201);
  t.equal(fromEnv.httpPort, 7002, 'settings only in the file still come from the file');
  t.equal(fromEnv.logLevel, 'error');
  t.same(fromEnv.peers.map((p) => p.id), ['q1']);

  const fromFlags = loadConfig({ config: file, id: 'flag-id', port: '7501' }, env);
  t.equal(fromFlags.nodeId, 'flag-id', 'flag beats env and file');
  t.equal(fromFlags.port, 7501);
  t.equal(fromFlags.logLevel, 'error', 'env still beats file where no flag is given');

  t.equal(loadConfig({ 'data-dir': dataDir }, { NODE_ID: 'e', DSYNC_CONFIG: file }).port, 7001, 'DSYNC_CONFIG names the file');
  t.equal(loadConfig({ id: 'x', 'data-dir': dataDir }, { PORT: '' }).port, 7401, 'an empty env value counts as unset');
  t.end();
});

t.test('validation names the bad setting as the operator wrote it', (t) => {
  const cases: { what: string; flags: RawSettings; env?: NodeJS.ProcessEnv; setting: string; says: RegExp }[] = [
    { what: 'no id', flags: {}, setting: '--id', says: /required/ },
    { what: 'bad id', flags: { id: '-bad id' }, setting: '--id', says: /not a node id/ },
    { what: 'bad id from env', flags: {}, env: { NODE_ID: 'a/b' }, setting: 'NODE_ID', says: /not a node id/ },
    { what: 'port abc', flags: { id: 'n1', port: 'abc' }, setting: '--port', says: /"abc" is not a port number/ },
    { what: 'port out of range', flags: { id: 'n1', port: '70000' }, setting: '--port', says: /out of range/ },
    { what: 'negative port', flags: { id: 'n1', port: '-1' }, setting: '--port', says: /not a port number/ },
    { what: 'PORT abc from env', flags: { id: 'n1' }, env: { PORT: 'abc' }, setting: 'PORT', says: /not a port number/ },
    { what: 'http port abc', flags: { id: 'n1', 'http-port': 'x1' }, setting: '--http-port', says: /not a port number/ },
    { what: 'CONSOLE_PORT from env', flags: { id: 'n1' }, env: { CONSOLE_PORT: '1.5' }, setting: 'CONSOLE_PORT', says: /not a port/ },
    { what: 'ports collide', flags: { id: 'n1', port: '7000', 'http-port': '7000' }, setting: '--port', says: /must differ/ },
    { what: 'peer list names the node itself', flags: { id: 'n1', peers: 'n2@127.0.0.1:7402,n1@127.0.0.1:7403' }, setting: '--peers',
      says: /names this node \(n1\) itself/ },
    { what: 'peer listed twice', flags: { id: 'n1', peers: 'n2@127.0.0.1:7402,n2@127.0.0.1:7403' }, setting: '--peers', says: /n2 is listed twice/ },
    { what: 'address listed twice', flags: { id: 'n1', peers: 'n2@127.0.0.1:7402,n3@127.0.0.1:7402' }, setting: '--peers',
      says: /address 127.0.0.1:7402 is listed twice/ },
    { what: "peer with this node's address", flags: { id: 'n1', port: '7401', peers: 'n2@127.0.0.1:7401' }, setting: '--peers',
      says: /own address/ },
    { what: 'malformed peer', flags: { id: 'n1', peers: 'n2-127.0.0.1-7402' }, setting: '--peers', says: /not id@host:port/ },
    { what: 'peer port 0', flags: { id: 'n1', peers: 'n2@127.0.0.1:0' }, setting: '--peers', says: /real port/ },
    { what: 'PEERS from env', flags: { id: 'n1' }, env: { PEERS: 'n1@127.0.0.1:7555' }, setting: 'PEERS', says: /itself/ },
    { what: 'log level', flags: { id: 'n1', 'log-level': 'loud' }, setting: '--log-level', says: /"loud" is not one of/ },
    { what: 'join not host:port', flags: { id: 'n4', join: 'n1@127.0.0.1:7401' }, setting: '--join', says: /not host:port of a running member/ },
    { what: 'join port 0', flags: { id: 'n4', join: '127.0.0.1:0' }, setting: '--join', says: /out of range/ },
    { what: 'JOIN from env with peers', flags: { id: 'n4', peers: 'n2@127.0.0.1:7402' }, env: { JOIN: '127.0.0.1:7401' }, setting: 'JOIN',
      says: /either bootstraps a cluster with --peers or joins a running one; not both/ },
  ];
  for (const c of cases) {
    const err = configError(t, c.flags, c.env ?? {});
    t.equal(err.setting, c.setting, `${c.what}: names ${c.setting}`);
    t.match(err.message, c.says, `${c.what}: says why`);
    t.ok(err.message.includes(c.setting), `${c.what}: the message itself names ${c.setting}`);
  }
  t.end();
});

t.test('join: flag, environment and file key; none means bootstrap', (t) => {
  t.equal(loadConfig({ id: 'n1', 'data-dir': dataDir }, {}).join, null, 'no join: bootstrap with --peers');
  t.equal(loadConfig({ id: 'n4', 'data-dir': dataDir, join: '127.0.0.1:7401' }, {}).join, '127.0.0.1:7401', '--join');
  t.equal(loadConfig({ id: 'n4', 'data-dir': dataDir }, { JOIN: 'db1:7401' }).join, 'db1:7401', 'JOIN');
  const file = configFile('join.json', { nodeId: 'n4', join: '[::1]:7401' });
  t.equal(loadConfig({ config: file, 'data-dir': dataDir }, {}).join, '[::1]:7401', 'file key join');
  t.end();
});

t.test('data directory must be writable', (t) => {
  const file = join(root, 'a-regular-file');
  writeFileSync(file, 'not a directory');
  const err = configError(t, { id: 'n1', 'data-dir': join(file, 'sub') });
  t.equal(err.setting, '--data-dir');
  t.match(err.message, /not writable/);
  const envErr = configError(t, { id: 'n1' }, { DATA_DIR: join(file, 'sub') }, false);
  t.equal(envErr.setting, 'DATA_DIR', 'named as the env var when it came from there');
  const created = loadConfig({ id: 'n1', 'data-dir': join(root, 'deep', 'er', 'dir') }, {});
  t.equal(created.dataDir, join(root, 'deep', 'er', 'dir'), 'a missing directory is created');
  t.end();
});

t.test('config file problems name the file setting', (t) => {
  const missing = configError(t, { config: join(root, 'nope.json') });
  t.equal(missing.setting, '--config');
  t.match(missing.message, /cannot read/);
  const notJson = configError(t, { config: configFile('bad.json', '{ nodeId: ') });
  t.equal(notJson.setting, '--config');
  const notObject = configError(t, { config: configFile('arr.json', [1, 2]) });
  t.match(notObject.message, /must hold a JSON object/);
  const unknownKey = configError(t, { config: configFile('key.json', { nodeId: 'n1', prot: 7401 }) });
  t.match(unknownKey.message, /unknown key "prot"/);
  const badPort = configError(t, { config: configFile('port.json', { nodeId: 'n1', port: 'abc', dataDir }) });
  t.equal(badPort.setting, 'port (config file)', 'a bad value from the file names the file key');
  t.end();
});

t.test('parsePeers accepts bracketed IPv6 and skips empty items', (t) => {
  const peers = parsePeers('n2@[::1]:7402, ,n3@localhost:7403,', '--peers', nodeId('n1'), '127.0.0.1', 7401);
  t.same(peers.map((p) => [p.id, p.host, p.port]), [['n2', '::1', 7402], ['n3', 'localhost', 7403]]);
  t.end();
});
