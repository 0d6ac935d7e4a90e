// Checks configuration from env files and the Raft timing settings (issue 12):
// parseEnvFile's accepted forms and a malformed line as a ConfigError naming the
// file and line; the process environment and flags winning over the file; ./.env
// read only when present; ELECTION_TIMEOUT_MIN/MAX and HEARTBEAT_INTERVAL defaulting
// to today's tick constants, validated alone and together with clear messages; and
// a Raft replica drawing its election timeout from [min, max) as configured.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { electionTimeoutTicksMax, electionTimeoutTicksMin, heartbeatIntervalTicks, raftTickMs } from '../../../core/constants.js';
import { Raft } from '../../../core/raft/raft.js';
import { Role } from '../../../core/raft/types.js';
import { ConfigError, environmentWithEnvFile, loadConfig, parseEnvFile } from '../../../server/node/config.js';
import { A, B, C, config, emptyState } from '../raft/helpers.js';

const root = mkdtempSync(join(tmpdir(), 'dsync-env-file-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
const dataDir = join(root, 'data');

t.test('env file forms', async (t) => {
  const text = [
    '# a comment', '', 'DSYNC_NODE_ID=n7', 'export PORT=7501', 'LOG_LEVEL=debug   # trailing comment',
    'DSYNC_PEERS="n2@127.0.0.1:7502" # quoted', "ADVERTISE='h:1 # not a comment'", 'ESCAPED="a\\"b\\\\c\\nd"', 'EMPTY=', '  SPACED = x y  ',
  ].join('\n');
  t.same(parseEnvFile(text, '.env'), { DSYNC_NODE_ID: 'n7', PORT: '7501', LOG_LEVEL: 'debug', DSYNC_PEERS: 'n2@127.0.0.1:7502',
    ADVERTISE: 'h:1 # not a comment', ESCAPED: 'a"b\\c\nd', EMPTY: '', SPACED: 'x y' });
  const bad: [string, RegExp][] = [
    ['PORT=1\njust words', /\.env:2: expected NAME=value, got "just words"/],
    ['1PORT=3', /\.env:1: "1PORT" is not a variable name/],
    ['OK=1\n\nQ="open', /\.env:3: the double-quoted value of Q is not closed/],
    ["S='open", /\.env:1: the single-quoted value of S is not closed/],
    ['X=a"b', /\.env:1: the value of X has a stray quote/],
  ];
  for (const [input, why] of bad) {
    t.throws(() => parseEnvFile(input, '.env'), ConfigError, `${JSON.stringify(input)} is refused`);
    try { parseEnvFile(input, '.env'); } catch (err) { t.match((err as Error).message, why, 'naming the file and line'); }
  }
});

t.test('the environment and flags win over the file; ./.env only when present', async (t) => {
  const dir = mkdtempSync(join(root, 'cwd-'));
  t.same(environmentWithEnvFile(undefined, { PORT: '1' }, dir), { env: { PORT: '1' }, file: null }, 'no .env: the environment as it is');
  writeFileSync(join(dir, '.env'), 'NODE_ID=f1\nPORT=7601\nLOG_LEVEL=warn\n');
  const { env, file } = environmentWithEnvFile(undefined, { PORT: '7602', LOG_LEVEL: '' }, dir);
  t.equal(file, join(dir, '.env'), './.env is read when present');
  t.same(env, { NODE_ID: 'f1', PORT: '7602', LOG_LEVEL: 'warn' }, 'a variable set in the environment wins; an empty one does not');
  const c = loadConfig({ port: '7603', 'data-dir': dataDir }, env);
  t.equal(c.nodeId, 'f1', 'the file sets what nothing else does');
  t.equal(c.port, 7603, 'a flag wins over both');
  t.equal(c.logLevel, 'warn');
  t.throws(() => environmentWithEnvFile('missing.env', {}, dir), { name: 'ConfigError', message: /--env-file: cannot read .*missing\.env/ },
    'an explicit --env-file must exist');
  writeFileSync(join(dir, 'broken.env'), 'A=1\nB\n');
  t.throws(() => environmentWithEnvFile('broken.env', {}, dir), { message: /broken\.env:2: expected NAME=value/ }, 'a malformed line names file and line');
});

t.test('.env.example parses and loads as it is', async (t) => {
  const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '../../../..');
  const example = parseEnvFile(readFileSync(join(repoRoot, '.env.example'), 'utf8'), '.env.example');
  t.equal(example['DSYNC_NODE_ID'], 'n1');
  t.equal(loadConfig({ 'data-dir': dataDir }, example).nodeId, 'n1', 'a node starts from it');
});

t.test('Raft timing settings', async (t) => {
  const base = { id: 'n1', 'data-dir': dataDir } as const;
  t.same(loadConfig(base, {}).raftTiming, { electionTimeoutMsMin: electionTimeoutTicksMin * raftTickMs,
    electionTimeoutMsMax: electionTimeoutTicksMax * raftTickMs, heartbeatIntervalMs: heartbeatIntervalTicks * raftTickMs }, 'defaults are today\'s constants');
  t.same(loadConfig(base, { DSYNC_ELECTION_TIMEOUT_MIN: '150', ELECTION_TIMEOUT_MAX: '400', HEARTBEAT_INTERVAL: '30' }).raftTiming,
    { electionTimeoutMsMin: 150, electionTimeoutMsMax: 400, heartbeatIntervalMs: 30 }, 'set through the environment');
  t.same(loadConfig({ ...base, 'election-timeout-min': '200', 'election-timeout-max': '250', 'heartbeat-interval': '60' }, {}).raftTiming,
    { electionTimeoutMsMin: 200, electionTimeoutMsMax: 250, heartbeatIntervalMs: 60 }, 'and through flags');
  const bad: [Record<string, string>, Record<string, string>, RegExp][] = [
    [{ 'heartbeat-interval': 'fast' }, {}, /--heartbeat-interval: "fast" is not a whole number of milliseconds/],
    [{ 'election-timeout-min': '305' }, {}, /--election-timeout-min: 305 ms is not a multiple of the Raft tick \(10 ms\)/],
    [{}, { HEARTBEAT_INTERVAL: '2000' }, /HEARTBEAT_INTERVAL: 2000 ms is out of range/],
    [{}, { DSYNC_ELECTION_TIMEOUT_MAX: '1500' }, /DSYNC_ELECTION_TIMEOUT_MAX: 1500 ms must be below 1000 ms, the shortest session TTL/],
    [{ 'election-timeout-min': '600' }, {}, /--election-timeout-min: 600 ms must be below --election-timeout-max \(600 ms\)/],
    [{ 'election-timeout-min': '100' }, { HEARTBEAT_INTERVAL: '50' }, /HEARTBEAT_INTERVAL: 50 ms is too long for --election-timeout-min \(100 ms\): .*3 heartbeats/],
    [{ 'election-timeout-min': '20' }, {}, /below the lowest election timeout/],
  ];
  for (const [flags, env, why] of bad) {
    t.throws(() => loadConfig({ ...base, ...flags }, env), { name: 'ConfigError', message: why }, why.source);
  }
});

t.test('a replica campaigns after an election timeout drawn from [min, max)', async (t) => {
  const seen = new Set<number>();
  for (let seed = 1; seed <= 40; seed++) {
    const r = new Raft(config(A, { electionTicks: 10, electionTicksMax: 13 }, seed), emptyState([A, B, C]));
    let ticks = 0;
    while (r.status().role === Role.Follower && ticks < 100) {
      r.tick();
      ticks++;
    }
    seen.add(ticks);
  }
  t.same([...seen].sort((a, b) => a - b), [10, 11, 12], 'every timeout in [10, 13) occurs, and none outside');
});
