// The cache settings in the one settings table (server/node/config.ts): defaults, each
// set by flag and by environment (CACHE_BACKING, CACHE_CAPACITY, CACHE_PROTOCOL,
// CACHE_WRITE_POLICY), and every bad value refused with a ConfigError naming the setting
// as the operator wrote it (an unknown protocol, MOESI without write-back, a backing that
// is not memory or redis://, a capacity out of range).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { cacheLeaseMsDefault, cacheLineEntriesMaxDefault, cacheNodeDownMsDefault } from '../../../core/constants.js';
import { ConfigError, loadConfig, type RawSettings } from '../../../server/node/config.js';

const root = mkdtempSync(join(tmpdir(), 'dsync-cache-config-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
const dataDir = join(root, 'data');

const load = (flags: RawSettings, env: NodeJS.ProcessEnv = {}): ReturnType<typeof loadConfig> => loadConfig({ id: 'n1', 'data-dir': dataDir, ...flags }, env);

function refused(flags: RawSettings, env: NodeJS.ProcessEnv = {}): ConfigError {
  try {
    load(flags, env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error(`no ConfigError for ${JSON.stringify(flags)} ${JSON.stringify(env)}`);
}

t.test('defaults, flags and environment', async (t) => {
  t.same(load({}).cache, { backing: null, capacity: cacheLineEntriesMaxDefault, protocol: 'MESI', writePolicy: 'write-through', leaseMs: cacheLeaseMsDefault, nodeDownMs: cacheNodeDownMsDefault });
  t.same(load({ 'cache-backing': 'redis://127.0.0.1:6379', 'cache-capacity': '1000', 'cache-protocol': 'moesi', 'cache-write-policy': 'write-back', 'cache-lease': '500', 'cache-node-down': '1000' }).cache,
    { backing: 'redis://127.0.0.1:6379', capacity: 1000, protocol: 'MOESI', writePolicy: 'write-back', leaseMs: 500, nodeDownMs: 1000 });
  t.same(load({}, { CACHE_BACKING: 'memory', CACHE_CAPACITY: '5', DSYNC_CACHE_WRITE_POLICY: 'write-back' }).cache,
    { backing: null, capacity: 5, protocol: 'MESI', writePolicy: 'write-back', leaseMs: cacheLeaseMsDefault, nodeDownMs: cacheNodeDownMsDefault });
});

t.test('bad values name the setting', async (t) => {
  t.match(refused({ 'cache-protocol': 'MSI' }).message, /--cache-protocol: "MSI" is not a cache protocol \(MESI or MOESI\)/);
  t.match(refused({}, { CACHE_PROTOCOL: 'MOESI' }).message, /CACHE_PROTOCOL: MOESI needs --cache-write-policy write-back/);
  t.match(refused({ 'cache-write-policy': 'write-around' }).message, /--cache-write-policy: "write-around" is not a write policy/);
  t.match(refused({ 'cache-backing': 'memcached://x:1' }).message, /--cache-backing: "memcached:\/\/x:1" is neither memory nor a redis/);
  t.match(refused({ 'cache-backing': 'not a url' }).message, /--cache-backing/);
  t.match(refused({ 'cache-capacity': '0' }).message, /--cache-capacity: "0" is not a number of lines/);
  t.match(refused({}, { CACHE_CAPACITY: '1.5' }).message, /CACHE_CAPACITY/);
  t.match(refused({ 'cache-lease': '100' }).message, /--cache-lease/);
  t.match(refused({}, { CACHE_NODE_DOWN_MS: 'soon' }).message, /CACHE_NODE_DOWN_MS/);
});
