// Node configuration from an optional JSON file, then an env file (--env-file, or ./.env),
// then environment (DSYNC_NAME over NAME), then flags (later wins), validated at start: a bad
// setting exits with a message naming it, and settings that must agree are checked together.
// settingSpecs is the one place settings are defined; docs/configuration.md is generated from it.

import { accessSync, existsSync, constants as fsConstants, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { cacheLeaseMsDefault, cacheLeaseMsMax, cacheLeaseMsMin, cacheLineBytesMaxDefault, cacheLineEntriesMaxDefault, cacheNodeDownMsDefault, cacheNodeDownMsMax, cacheNodeDownMsMin } from '../../core/constants.js';
import { connectionsMax, queueNodeDownMsDefault, queueNodeDownMsMax, queueNodeDownMsMin, snapshotEntriesSettingMax, snapshotEntriesSettingMin, snapshotEntriesThreshold, queueReplicasSettingMax, queueRetentionMsSettingMax, requestRatePerConnectionMax, ringReplicasDefault } from '../../core/constants.js';
import { electionTimeoutHeartbeatsMin, electionTimeoutMsMin, electionTimeoutTicksMax, electionTimeoutTicksMin, heartbeatIntervalMsMax,
  heartbeatIntervalMsMin, heartbeatIntervalTicks, raftTickMs, sessionTtlMsMin } from '../../core/constants.js';
import { type NodeId, nodeId } from '../../core/ids.js';
import { Authenticator, loadTls, type NodeSecurity, SecurityConfigError, type TlsMaterial } from './security.js';

export interface PeerAddress {
  readonly id: NodeId;
  readonly host: string;
  readonly port: number;
}

export interface NodeConfig {
  readonly nodeId: NodeId;
  /** Interface to bind (all three ports). */
  readonly host: string;
  readonly port: number;
  readonly httpPort: number;
  readonly consolePort: number;
  /** The other members of group 0 at bootstrap (never this node); empty with `join`. */
  readonly peers: readonly PeerAddress[];
  /**
   * host:port of a running member to ask for this node to be added (learner, then voter),
   * or null: the node bootstraps group 0 with itself and `peers` as voters.
   */
  readonly join: string | null;
  readonly dataDir: string;
  readonly logLevel: LogLevel;
  /** host:port clients should use to reach this node (differs from the bind address behind NAT/containers). */
  readonly advertise: string;
  /** The cache service's settings (absent: the defaults). */
  readonly cache?: CacheSettings;
  readonly security: NodeSecurity;
  /** Defaults for topics created without saying (QUEUE_REPLICAS, MESSAGE_RETENTION_PERIOD). */
  readonly topicDefaults: { readonly replicas: number; readonly retentionMs: number };
  /** QUEUE_NODE_DOWN_MS: how long group 0's leader goes without hearing a voter before rebuilding its partition replicas elsewhere (absent: the default). */
  readonly queueNodeDownMs?: number;
  /** The feature version this node speaks (server/node/version.ts); absent: featureVersionCurrent. */
  readonly featureVersion?: number;
  /** Raft timing of every group on this node (milliseconds, whole ticks of raftTickMs). */
  readonly raftTiming: RaftTimingMs;
  /** Applied entries after which a group snapshots and compacts (SNAPSHOT_ENTRIES). */
  readonly snapshotEntries: number;
  /** How the operator set each port and the data dir (`--port`, `PORT`, ...), so start errors can name it. */
  readonly settingLabels: Readonly<Record<'port' | 'httpPort' | 'consolePort' | 'dataDir', string>>;
}

export interface CacheSettings {
  /** null: in-process memory; else a redis:// URL. */
  readonly backing: string | null;
  readonly capacity: number;
  readonly protocol: 'MESI' | 'MOESI';
  readonly writePolicy: 'write-through' | 'write-back';
  /** How long a line (and a home's confirmation) lasts; a new home waits this long before it grants. */
  readonly leaseMs: number;
  /** The group 0 leader takes a voter it has not heard from this long out of the cache ring. */
  readonly nodeDownMs: number;
}

export const cacheSettingsDefault: CacheSettings = { backing: null, capacity: cacheLineEntriesMaxDefault, protocol: 'MESI', writePolicy: 'write-through',
  leaseMs: cacheLeaseMsDefault, nodeDownMs: cacheNodeDownMsDefault };

/** The cache settings, each checked; a bad one is a ConfigError naming it. */
function parseCacheSettings(get: (name: 'cache-backing' | 'cache-capacity' | 'cache-protocol' | 'cache-write-policy' | 'cache-lease' | 'cache-node-down') => { value: string; label: string } | undefined): CacheSettings {
  const b = get('cache-backing');
  let backing: string | null = null;
  if (b !== undefined && b.value !== 'memory') {
    let url: URL;
    try {
      url = new URL(b.value);
    } catch {
      throw new ConfigError(b.label, `"${b.value}" is neither memory nor a redis://host:port URL`);
    }
    if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') throw new ConfigError(b.label, `"${b.value}" is neither memory nor a redis://host:port URL`);
    backing = b.value;
  }
  const c = get('cache-capacity');
  const capacity = c === undefined ? cacheLineEntriesMaxDefault : Number(c.value);
  if (!Number.isInteger(capacity) || capacity < 1 || capacity > cacheLineEntriesMaxDefault * 64) {
    throw new ConfigError(c?.label ?? '--cache-capacity', `"${c?.value ?? ''}" is not a number of lines from 1 to ${cacheLineEntriesMaxDefault * 64}`);
  }
  const p = get('cache-protocol');
  const protocol = (p?.value ?? 'MESI').toUpperCase();
  if (protocol !== 'MESI' && protocol !== 'MOESI') throw new ConfigError(p?.label ?? '--cache-protocol', `"${p?.value ?? ''}" is not a cache protocol (MESI or MOESI)`);
  const w = get('cache-write-policy');
  const writePolicy = w?.value ?? 'write-through';
  if (writePolicy !== 'write-through' && writePolicy !== 'write-back') {
    throw new ConfigError(w?.label ?? '--cache-write-policy', `"${writePolicy}" is not a write policy (write-through or write-back)`);
  }
  if (protocol === 'MOESI' && writePolicy !== 'write-back') {
    throw new ConfigError(p?.label ?? '--cache-protocol', 'MOESI needs --cache-write-policy write-back (write-through lines are never dirty, so O never happens)');
  }
  const l = get('cache-lease');
  const leaseMs = l === undefined ? cacheLeaseMsDefault : parseBoundedInt(l.value, l.label, cacheLeaseMsMin, cacheLeaseMsMax);
  const d = get('cache-node-down');
  const nodeDownMs = d === undefined ? cacheNodeDownMsDefault : parseBoundedInt(d.value, d.label, cacheNodeDownMsMin, cacheNodeDownMsMax);
  return { backing, capacity, protocol, writePolicy, leaseMs, nodeDownMs };
}

export interface RaftTimingMs {
  readonly electionTimeoutMsMin: number;
  /** Randomized election timeouts fall in [min, max). */
  readonly electionTimeoutMsMax: number;
  readonly heartbeatIntervalMs: number;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const logLevels: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

/** A setting that failed validation; `setting` names it as the operator typed it. */
export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(readonly setting: string, message: string) {
    super(`invalid setting ${setting}: ${message}`);
  }
}

/** Raw string settings, keyed by flag name (without dashes). */
export type RawSettings = Partial<Record<SettingName, string>>;
export type SettingName = 'id' | 'host' | 'port' | 'http-port' | 'console-port' | 'peers' | 'join' | 'election-timeout-min'
  | 'election-timeout-max' | 'heartbeat-interval' | 'data-dir' | 'log-level' | 'advertise'
  | 'tls-cert' | 'tls-key' | 'tls-ca' | 'auth-file' | 'request-rate' | 'max-connections' | 'queue-replicas' | 'message-retention-period' | 'snapshot-entries' | 'queue-node-down'
  | 'config' | 'cache-backing' | 'cache-capacity' | 'cache-protocol' | 'cache-write-policy' | 'cache-lease' | 'cache-node-down';

/** One node setting: the one place its flag, environment variable, config-file key and default are defined. */
export interface SettingSpec {
  readonly name: Exclude<SettingName, 'config'>;
  /** Also read as `DSYNC_` + env, which wins (HOST, PORT and PEERS collide easily with a user's environment). */
  readonly env: string;
  readonly fileKey: string;
  readonly defaultText: string;
  readonly description: string;
}

/** Every node setting, in the order `dsync node --help` and docs/configuration.md list them. */
export const settingSpecs: readonly SettingSpec[] = [
  { name: 'id', env: 'NODE_ID', fileKey: 'nodeId', defaultText: '(required)', description: "this node's id: 1-64 letters, digits, '.', '_' or '-'" },
  { name: 'host', env: 'HOST', fileKey: 'host', defaultText: '127.0.0.1', description: 'interface to bind (all three ports)' },
  { name: 'port', env: 'PORT', fileKey: 'port', defaultText: '7401', description: 'binary protocol port, for clients and peers (0: any free port)' },
  { name: 'http-port', env: 'HTTP_PORT', fileKey: 'httpPort', defaultText: 'port + 1000', description: 'HTTP port (/healthz)' },
  { name: 'console-port', env: 'CONSOLE_PORT', fileKey: 'consolePort', defaultText: 'port + 2000', description: 'text console port' },
  { name: 'peers', env: 'PEERS', fileKey: 'peers', defaultText: '(none: a 1-node cluster)', description: 'the other members: id@host:port,... (a JSON array in the config file)' },
  { name: 'join', env: 'JOIN', fileKey: 'join', defaultText: '(none)', description: 'host:port of a running member: start as a new member of that cluster (learner, then voter); not with --peers' },
  { name: 'election-timeout-min', env: 'ELECTION_TIMEOUT_MIN', fileKey: 'electionTimeoutMin', defaultText: String(electionTimeoutTicksMin * raftTickMs),
    description: `ms a follower waits without hearing a leader before it campaigns (randomized up to the max); a multiple of ${raftTickMs}, at least ${electionTimeoutMsMin} and ${electionTimeoutHeartbeatsMin} heartbeats` },
  { name: 'election-timeout-max', env: 'ELECTION_TIMEOUT_MAX', fileKey: 'electionTimeoutMax', defaultText: String(electionTimeoutTicksMax * raftTickMs),
    description: `ms, upper end of the randomized election timeout; above the min, below ${sessionTtlMsMin} (the shortest session TTL: a session outlives an election)` },
  { name: 'heartbeat-interval', env: 'HEARTBEAT_INTERVAL', fileKey: 'heartbeatInterval', defaultText: String(heartbeatIntervalTicks * raftTickMs),
    description: `ms between a leader's heartbeats; a multiple of ${raftTickMs} in ${heartbeatIntervalMsMin}..${heartbeatIntervalMsMax}` },
  { name: 'data-dir', env: 'DATA_DIR', fileKey: 'dataDir', defaultText: './data/ID', description: 'where the node keeps its write-ahead log' },
  { name: 'log-level', env: 'LOG_LEVEL', fileKey: 'logLevel', defaultText: 'info', description: 'debug, info, warn or error' },
  { name: 'advertise', env: 'ADVERTISE', fileKey: 'advertise', defaultText: 'host:port', description: 'host:port clients should use to reach this node (behind NAT or in containers)' },
  { name: 'cache-backing', env: 'CACHE_BACKING', fileKey: 'cacheBacking', defaultText: 'memory', description: "the cache homes' memory: memory (in-process) or a redis://host:port[/db] URL" },
  { name: 'cache-capacity', env: 'CACHE_CAPACITY', fileKey: 'cacheCapacity', defaultText: String(cacheLineEntriesMaxDefault), description: `lines this node caches (LRU beyond; also at most ${cacheLineBytesMaxDefault / 1024 / 1024} MiB of keys and values)` },
  { name: 'cache-protocol', env: 'CACHE_PROTOCOL', fileKey: 'cacheProtocol', defaultText: 'MESI', description: 'cache coherence protocol: MESI or MOESI (O: dirty and shared; with write-back)' },
  { name: 'cache-write-policy', env: 'CACHE_WRITE_POLICY', fileKey: 'cacheWritePolicy', defaultText: 'write-through', description: 'write-through (a set completes once home memory has it) or write-back (dirty lines reach memory later; a crash can lose them)' },
  { name: 'cache-lease', env: 'CACHE_LEASE_MS', fileKey: 'cacheLeaseMs', defaultText: String(cacheLeaseMsDefault),
    description: `ms a cached line (and a node's confirmation of the cache ring) lasts without renewal; a new home waits this long after a ring change before it grants (${cacheLeaseMsMin}-${cacheLeaseMsMax})` },
  { name: 'cache-node-down', env: 'CACHE_NODE_DOWN_MS', fileKey: 'cacheNodeDownMs', defaultText: String(cacheNodeDownMsDefault),
    description: `ms the group 0 leader goes without hearing from a voter before it takes it out of the cache ring (its keys move); it is put back once heard again (${cacheNodeDownMsMin}-${cacheNodeDownMsMax})` },
  { name: 'tls-cert', env: 'TLS_CERT', fileKey: 'tlsCert', defaultText: '(none: plaintext)', description: "PEM certificate of this node: the binary port and peer links then speak TLS only; its common name must be the node id (peers check it); needs tls-key and tls-ca" },
  { name: 'tls-key', env: 'TLS_KEY', fileKey: 'tlsKey', defaultText: '(none)', description: 'PEM private key of tls-cert' },
  { name: 'tls-ca', env: 'TLS_CA', fileKey: 'tlsCa', defaultText: '(none)', description: 'PEM CA certificate(s) that sign the nodes\' certificates: peers must present one (mutual TLS)' },
  { name: 'auth-file', env: 'AUTH_FILE', fileKey: 'authFile', defaultText: '(none: no auth)', description: 'token file, lines "<role> <name> <token>" (role admin, read-write, read-only or peer): every client and peer must present a token, and its role decides what it may do' },
  { name: 'request-rate', env: 'REQUEST_RATE', fileKey: 'requestRate', defaultText: '0 (unlimited)', description: 'requests per second one connection may send (burst: one second\'s worth); more are answered TOO_MANY_REQUESTS' },
  { name: 'queue-replicas', env: 'QUEUE_REPLICAS', fileKey: 'queueReplicas', defaultText: String(ringReplicasDefault),
    description: `replicas of each partition of a new topic that does not say (1-${queueReplicasSettingMax}; at most the number of voters)` },
  { name: 'message-retention-period', env: 'MESSAGE_RETENTION_PERIOD', fileKey: 'messageRetentionPeriod', defaultText: '0 (keep until acked)',
    description: 'ms a new topic that does not say keeps a message (age retention; never drops what a group has not acked unless the topic says so); 0: no age limit' },
  { name: 'snapshot-entries', env: 'SNAPSHOT_ENTRIES', fileKey: 'snapshotEntries', defaultText: String(snapshotEntriesThreshold),
    description: `applied entries after which a Raft group snapshots its state and compacts its log (${snapshotEntriesSettingMin}-${snapshotEntriesSettingMax}); a follower behind the compaction gets the snapshot, sent in chunks` },
  { name: 'queue-node-down', env: 'QUEUE_NODE_DOWN_MS', fileKey: 'queueNodeDownMs', defaultText: String(queueNodeDownMsDefault),
    description: `ms the group 0 leader goes without hearing from a voter before that node's queue partition replicas are rebuilt on spare nodes, when there are any (${queueNodeDownMsMin}-${queueNodeDownMsMax})` },
  { name: 'max-connections', env: 'MAX_CONNECTIONS', fileKey: 'maxConnections', defaultText: String(connectionsMax), description: 'client and peer connections the binary port holds; more are answered TOO_MANY_CONNECTIONS and closed' },
];

/** The prefix that marks an environment variable as dsync's own; it wins over the bare name. */
export const envPrefix = 'DSYNC_';

const envNames = Object.fromEntries(settingSpecs.map((s) => [s.name, s.env])) as Record<Exclude<SettingName, 'config'>, string>;
const fileKeys = Object.fromEntries(settingSpecs.map((s) => [s.name, s.fileKey])) as Record<Exclude<SettingName, 'config'>, string>;

/** docs/configuration.md, generated from settingSpecs (`npm run docs:config`; a test checks the committed copy). */
export function configurationReference(): string {
  const rows = settingSpecs.map((s) =>
    `| \`--${s.name}\` | \`${envPrefix}${s.env}\` or \`${s.env}\` | \`${s.fileKey}\` | ${s.defaultText} | ${s.description} |`);
  return [
    '<!-- Generated from server/node/config.ts by `npm run docs:config`; do not edit by hand. -->',
    '# dsync node configuration',
    '',
    'Every setting of `dsync node`. Flags win over environment variables, which win over',
    `the JSON config file (\`--config FILE\` or \`${envPrefix}CONFIG\`). Each environment variable is also read`,
    `with the \`${envPrefix}\` prefix, which wins over the bare name. A bad value exits with code 2 and a message`,
    'naming the setting as you wrote it.',
    '',
    '| flag | environment | config-file key | default | meaning |',
    '| --- | --- | --- | --- | --- |',
    ...rows,
    `| \`--config\` | \`${envPrefix}CONFIG\` | | (none) | JSON file holding an object with the keys above |`,
    `| \`--env-file\` | | | \`.env\` when present | a file of \`NAME=value\` lines read as environment variables; the real environment and flags win (\`dsync node\`, \`dsync cluster\`, \`npm start\`) |`,
    '',
    '## Env files',
    '',
    '`dsync node` and `dsync cluster` (so `npm start`) read `--env-file PATH`, or else a `.env` in the',
    'working directory when there is one. Each line is `NAME=value`, `export NAME=value`, a `#` comment or',
    "blank; a value may be in double quotes (with `\\n`, `\\\"` and `\\\\` escapes) or single quotes (taken as is);",
    'an unquoted value ends at ` #`. A variable already set in the environment, and every flag, wins over',
    'the file. A malformed line stops the start with the file and line number. `dsync cluster` sets each',
    "node's id, ports, peers, data directory and advertised address itself; the other settings apply to every node.",
    '',
    '## Settings checked together',
    '',
    `At start: \`heartbeat-interval\` x ${electionTimeoutHeartbeatsMin} <= \`election-timeout-min\` < \`election-timeout-max\` < ${sessionTtlMsMin} ms`,
    '(the shortest session TTL a client may ask for, so a session outlives an election). Each node may set its',
    'own timing; nodes of one cluster normally share it.',
    '',
  ].join('\n');
}

type SettingSource = 'flag' | 'env' | 'prefixedEnv' | 'file';

/** Where each setting came from, so an error can name it the way the operator wrote it. */
function settingLabel(name: SettingName, source: SettingSource): string {
  if (name === 'config') return '--config';
  switch (source) {
    case 'flag': return `--${name}`;
    case 'env': return envNames[name];
    case 'prefixedEnv': return `${envPrefix}${envNames[name]}`;
    case 'file': return `${fileKeys[name]} (config file)`;
  }
}

export function loadConfig(flags: RawSettings, env: NodeJS.ProcessEnv = process.env): NodeConfig {
  const merged = new Map<SettingName, { value: string; source: SettingSource }>();
  const configPath = flags.config ?? env[`${envPrefix}CONFIG`];
  if (configPath !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(configPath, 'utf8'));
    } catch (err) {
      throw new ConfigError('--config', `cannot read ${configPath}: ${(err as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new ConfigError('--config', `${configPath} must hold a JSON object`);
    }
    const obj = parsed as Record<string, unknown>;
    const allowed = new Set(Object.values(fileKeys));
    for (const key of Object.keys(obj)) {
      if (!allowed.has(key)) throw new ConfigError('--config', `unknown key "${key}" in ${configPath} (known: ${[...allowed].join(', ')})`);
    }
    for (const [name, key] of Object.entries(fileKeys) as [Exclude<SettingName, 'config'>, string][]) {
      const v = obj[key];
      if (v === undefined) continue;
      const text = Array.isArray(v) ? v.join(',') : String(v);
      merged.set(name, { value: text, source: 'file' });
    }
  }
  for (const [name, envName] of Object.entries(envNames) as [Exclude<SettingName, 'config'>, string][]) {
    const prefixed = env[`${envPrefix}${envName}`];
    const v = env[envName];
    if (prefixed !== undefined && prefixed !== '') merged.set(name, { value: prefixed, source: 'prefixedEnv' });
    else if (v !== undefined && v !== '') merged.set(name, { value: v, source: 'env' });
  }
  for (const [name, v] of Object.entries(flags) as [SettingName, string | undefined][]) {
    if (name !== 'config' && v !== undefined) merged.set(name, { value: v, source: 'flag' });
  }

  const get = (name: Exclude<SettingName, 'config'>): { value: string; label: string } | undefined => {
    const s = merged.get(name);
    return s === undefined ? undefined : { value: s.value, label: settingLabel(name, s.source) };
  };

  const idSetting = get('id');
  if (idSetting === undefined) throw new ConfigError('--id', 'a node id is required (flag --id or env NODE_ID)');
  const id = parseNodeId(idSetting.value, idSetting.label);
  const host = get('host')?.value ?? '127.0.0.1';
  const portSetting = get('port');
  const port = portSetting === undefined ? 7401 : parsePort(portSetting.value, portSetting.label);
  const httpSetting = get('http-port');
  const httpPort = httpSetting === undefined ? derivedPort(port, 1000) : parsePort(httpSetting.value, httpSetting.label);
  const consoleSetting = get('console-port');
  const consolePort = consoleSetting === undefined ? derivedPort(port, 2000) : parsePort(consoleSetting.value, consoleSetting.label);
  const ports = [port, httpPort, consolePort].filter((p) => p !== 0);
  if (new Set(ports).size !== ports.length) {
    throw new ConfigError('--port', `the binary (${port}), HTTP (${httpPort}) and console (${consolePort}) ports must differ`);
  }
  const peersSetting = get('peers');
  const peers = peersSetting === undefined ? [] : parsePeers(peersSetting.value, peersSetting.label, id, host, port);
  const joinSetting = get('join');
  let joinAddress: string | null = null;
  if (joinSetting !== undefined) {
    const join = joinSetting.value.trim();
    joinAddress = join;
    if (!/^[^\s:@,]+:\d+$|^\[[^\]]+\]:\d+$/.test(join)) {
      throw new ConfigError(joinSetting.label, `"${joinSetting.value}" is not host:port of a running member (e.g. 127.0.0.1:7401)`);
    }
    const joinPort = Number(join.slice(join.lastIndexOf(':') + 1));
    if (joinPort < 1 || joinPort > 65535) throw new ConfigError(joinSetting.label, `port ${joinPort} is out of range (1-65535)`);
    if (peers.length > 0) {
      throw new ConfigError(joinSetting.label, `a node either bootstraps a cluster with ${peersSetting?.label ?? '--peers'} or joins a running one; not both`);
    }
  }
  const dataSetting = get('data-dir');
  const dataDir = resolve(dataSetting?.value ?? join('data', id));
  checkWritableDir(dataDir, dataSetting?.label ?? '--data-dir');
  const levelSetting = get('log-level');
  const logLevel = (levelSetting?.value ?? 'info') as LogLevel;
  if (!logLevels.includes(logLevel)) {
    throw new ConfigError(levelSetting?.label ?? '--log-level', `"${logLevel}" is not one of ${logLevels.join(', ')}`);
  }
  const advertiseSetting = get('advertise');
  const wildcard = host === '0.0.0.0' || host === '::';
  const advertise = advertiseSetting?.value ?? `${wildcard ? hostname() : host}:${port}`;
  if (!/^[^\s:]+:\d+$|^\[[^\]]+\]:\d+$/.test(advertise)) {
    throw new ConfigError(advertiseSetting?.label ?? '--advertise', `"${advertise}" is not host:port`);
  }
  const raftTiming = parseRaftTiming(get);
  const settingLabels = {
    port: portSetting?.label ?? '--port',
    httpPort: httpSetting?.label ?? '--http-port',
    consolePort: consoleSetting?.label ?? '--console-port',
    dataDir: dataSetting?.label ?? '--data-dir',
  };
  const security = loadSecurity(get);
  const replicasSetting = get('queue-replicas');
  const retentionSetting = get('message-retention-period');
  const topicDefaults = {
    replicas: replicasSetting === undefined ? ringReplicasDefault : parseBoundedInt(replicasSetting.value, replicasSetting.label, 1, queueReplicasSettingMax),
    retentionMs: retentionSetting === undefined ? 0 : parseBoundedInt(retentionSetting.value, retentionSetting.label, 0, queueRetentionMsSettingMax),
  };
  const cache = parseCacheSettings(get);
  const snapshotSetting = get('snapshot-entries');
  const snapshotEntries = snapshotSetting === undefined ? snapshotEntriesThreshold
    : parseBoundedInt(snapshotSetting.value, snapshotSetting.label, snapshotEntriesSettingMin, snapshotEntriesSettingMax);
  const nodeDownSetting = get('queue-node-down');
  const queueNodeDownMs = nodeDownSetting === undefined ? queueNodeDownMsDefault : parseBoundedInt(nodeDownSetting.value, nodeDownSetting.label, queueNodeDownMsMin, queueNodeDownMsMax);
  return { nodeId: id, host, port, httpPort, consolePort, peers, join: joinAddress, dataDir, logLevel, advertise, raftTiming, cache, settingLabels, security, topicDefaults,
    snapshotEntries, queueNodeDownMs };
}

type SettingGetter = (name: Exclude<SettingName, 'config'>) => { value: string; label: string } | undefined;

function loadSecurity(get: SettingGetter): NodeSecurity {
  const cert = get('tls-cert');
  const key = get('tls-key');
  const ca = get('tls-ca');
  const given = [cert, key, ca].filter((s) => s !== undefined);
  let tls: TlsMaterial | null = null;
  const wrap = <T>(fn: () => T, label: string): T => {
    try {
      return fn();
    } catch (err) {
      if (err instanceof SecurityConfigError) throw new ConfigError(label, err.message);
      throw err;
    }
  };
  if (given.length > 0) {
    if (cert === undefined || key === undefined || ca === undefined) {
      const missing = [['--tls-cert', cert], ['--tls-key', key], ['--tls-ca', ca]].filter(([, s]) => s === undefined).map(([n]) => n);
      throw new ConfigError((given[0] ?? { label: '--tls-cert' }).label, `TLS needs a certificate, its key and the CA that signs the nodes: missing ${missing.join(', ')}`);
    }
    tls = wrap(() => loadTls({ cert: cert.value, key: key.value, ca: ca.value }, { cert: cert.label, key: key.label, ca: ca.label }), cert.label);
  }
  const authFile = get('auth-file');
  const auth = authFile === undefined ? null : wrap(() => Authenticator.fromFile(authFile.value, authFile.label), authFile.label);
  const rate = get('request-rate');
  const requestRatePerConnection = rate === undefined ? 0 : parseBoundedInt(rate.value, rate.label, 0, requestRatePerConnectionMax);
  const conns = get('max-connections');
  const maxConnections = conns === undefined ? connectionsMax : parseBoundedInt(conns.value, conns.label, 1, connectionsMax);
  return { tls, auth, requestRatePerConnection, connectionsMax: maxConnections };
}

function parseBoundedInt(text: string, label: string, min: number, max: number): number {
  if (!/^\d+$/.test(text.trim())) throw new ConfigError(label, `"${text}" is not a whole number (${min}-${max})`);
  const n = Number(text);
  if (n < min || n > max) throw new ConfigError(label, `${n} is out of range (${min}-${max})`);
  return n;
}

/** Whole milliseconds, a multiple of the Raft tick. */
function parseTickMs(setting: { value: string; label: string }): number {
  const text = setting.value.trim();
  if (!/^\d+$/.test(text)) throw new ConfigError(setting.label, `"${setting.value}" is not a whole number of milliseconds`);
  const ms = Number(text);
  if (ms % raftTickMs !== 0) throw new ConfigError(setting.label, `${ms} ms is not a multiple of the Raft tick (${raftTickMs} ms)`);
  return ms;
}

/** ELECTION_TIMEOUT_MIN/MAX and HEARTBEAT_INTERVAL, each in range, then checked together. */
function parseRaftTiming(get: SettingGetter): RaftTimingMs {
  const minSetting = get('election-timeout-min');
  const maxSetting = get('election-timeout-max');
  const hbSetting = get('heartbeat-interval');
  const minLabel = minSetting?.label ?? '--election-timeout-min';
  const maxLabel = maxSetting?.label ?? '--election-timeout-max';
  const hbLabel = hbSetting?.label ?? '--heartbeat-interval';
  const heartbeatIntervalMs = hbSetting === undefined ? heartbeatIntervalTicks * raftTickMs : parseTickMs(hbSetting);
  const electionTimeoutMsMinSet = minSetting === undefined ? electionTimeoutTicksMin * raftTickMs : parseTickMs(minSetting);
  const electionTimeoutMsMaxSet = maxSetting === undefined ? electionTimeoutTicksMax * raftTickMs : parseTickMs(maxSetting);
  if (heartbeatIntervalMs < heartbeatIntervalMsMin || heartbeatIntervalMs > heartbeatIntervalMsMax) {
    throw new ConfigError(hbLabel, `${heartbeatIntervalMs} ms is out of range (${heartbeatIntervalMsMin}-${heartbeatIntervalMsMax} ms)`);
  }
  if (electionTimeoutMsMinSet < electionTimeoutMsMin) {
    throw new ConfigError(minLabel, `${electionTimeoutMsMinSet} ms is below the lowest election timeout (${electionTimeoutMsMin} ms)`);
  }
  if (electionTimeoutMsMaxSet >= sessionTtlMsMin) {
    throw new ConfigError(maxLabel, `${electionTimeoutMsMaxSet} ms must be below ${sessionTtlMsMin} ms, the shortest session TTL a client may `
      + 'ask for: a lock session must outlive an election, or a failover would expire sessions');
  }
  if (electionTimeoutMsMinSet >= electionTimeoutMsMaxSet) {
    throw new ConfigError(minLabel, `${electionTimeoutMsMinSet} ms must be below ${maxLabel} (${electionTimeoutMsMaxSet} ms): `
      + 'election timeouts are drawn from [min, max)');
  }
  if (heartbeatIntervalMs * electionTimeoutHeartbeatsMin > electionTimeoutMsMinSet) {
    throw new ConfigError(hbLabel, `${heartbeatIntervalMs} ms is too long for ${minLabel} (${electionTimeoutMsMinSet} ms): a follower must `
      + `hear at least ${electionTimeoutHeartbeatsMin} heartbeats before it would campaign (heartbeat <= election timeout min / ${electionTimeoutHeartbeatsMin})`);
  }
  return { electionTimeoutMsMin: electionTimeoutMsMinSet, electionTimeoutMsMax: electionTimeoutMsMaxSet, heartbeatIntervalMs };
}

/** Env-file names: what a shell would accept as a variable name. */
const envNamePattern = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Parses an env file: `NAME=value` lines, `export ` allowed, `#` comments and blank lines skipped,
 * values bare (ending at ` #`), in double quotes (\n, \", \\ escapes) or single quotes (literal).
 * A malformed line is a ConfigError naming the file and line.
 */
export function parseEnvFile(text: string, path: string, label = '--env-file'): Record<string, string> {
  const out: Record<string, string> = {};
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const where = `${path}:${i + 1}`;
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const body = line.startsWith('export ') ? line.slice('export '.length).trimStart() : line;
    const eq = body.indexOf('=');
    if (eq < 0) throw new ConfigError(label, `${where}: expected NAME=value, got "${line.slice(0, 60)}"`);
    const name = body.slice(0, eq).trim();
    if (!envNamePattern.test(name)) throw new ConfigError(label, `${where}: "${name.slice(0, 60)}" is not a variable name (letters, digits, _)`);
    const rest = body.slice(eq + 1).trim();
    let value: string;
    if (rest.startsWith('"')) {
      const m = /^"((?:[^"\\]|\\.)*)"\s*(#.*)?$/.exec(rest);
      if (m === null) throw new ConfigError(label, `${where}: the double-quoted value of ${name} is not closed (or has text after it)`);
      value = (m[1] ?? '').replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    } else if (rest.startsWith("'")) {
      const m = /^'([^']*)'\s*(#.*)?$/.exec(rest);
      if (m === null) throw new ConfigError(label, `${where}: the single-quoted value of ${name} is not closed (or has text after it)`);
      value = m[1] ?? '';
    } else {
      const hash = rest.search(/\s#/);
      value = (hash < 0 ? rest : rest.slice(0, hash)).trim();
      if (/["']/.test(value)) throw new ConfigError(label, `${where}: the value of ${name} has a stray quote; quote the whole value`);
    }
    out[name] = value;
  });
  return out;
}

/** The default env file: `.env` in the working directory. */
export const defaultEnvFile = '.env';

/**
 * The environment a node starts with: `--env-file PATH` (must exist), else ./.env when present,
 * under the process environment (a variable already set wins). Returns the file used, if any.
 */
export function environmentWithEnvFile(envFile: string | undefined, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()):
  { env: NodeJS.ProcessEnv; file: string | null } {
  const path = envFile !== undefined ? resolve(cwd, envFile) : join(cwd, defaultEnvFile);
  if (envFile === undefined && !existsSync(path)) return { env, file: null };
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError('--env-file', `cannot read ${path}: ${(err as Error).message}`);
  }
  const fromFile = parseEnvFile(text, envFile ?? defaultEnvFile);
  const merged: NodeJS.ProcessEnv = { ...fromFile };
  for (const [k, v] of Object.entries(env)) if (v !== undefined && v !== '') merged[k] = v;
  return { env: merged, file: path };
}

function derivedPort(port: number, offset: number): number {
  return port === 0 ? 0 : port + offset <= 65535 ? port + offset : 0;
}

const nodeIdPattern = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
function parseNodeId(text: string, label: string): NodeId {
  if (!nodeIdPattern.test(text)) {
    throw new ConfigError(label, `"${text}" is not a node id (1-64 letters, digits, '.', '_' or '-', starting with a letter or digit)`);
  }
  return nodeId(text);
}

export function parsePort(text: string, label: string): number {
  if (!/^\d+$/.test(text.trim())) throw new ConfigError(label, `"${text}" is not a port number (0-65535)`);
  const port = Number(text);
  if (port > 65535) throw new ConfigError(label, `${port} is out of range (0-65535)`);
  return port;
}

/** `n2@127.0.0.1:7402,n3@127.0.0.1:7403` */
export function parsePeers(text: string, label: string, self: NodeId, selfHost: string, selfPort: number): PeerAddress[] {
  const peers: PeerAddress[] = [];
  const ids = new Set<string>();
  const addresses = new Set<string>();
  for (const part of text.split(',').map((s) => s.trim()).filter((s) => s.length > 0)) {
    const m = /^([^@]+)@(.+):(\d+)$/.exec(part);
    if (m === null) throw new ConfigError(label, `"${part}" is not id@host:port`);
    const id = parseNodeId(m[1]!, label);
    const host = m[2]!.replace(/^\[(.*)\]$/, '$1');
    const port = parsePort(m[3]!, label);
    if (port === 0) throw new ConfigError(label, `peer ${id} needs a real port, not 0`);
    if (id === self) throw new ConfigError(label, `the peer list names this node (${self}) itself`);
    if (ids.has(id)) throw new ConfigError(label, `peer ${id} is listed twice`);
    const address = `${host}:${port}`;
    if (addresses.has(address)) throw new ConfigError(label, `address ${address} is listed twice`);
    if (port === selfPort && (host === selfHost || host === 'localhost')) {
      throw new ConfigError(label, `peer ${id} has this node's own address ${address}`);
    }
    ids.add(id);
    addresses.add(address);
    peers.push({ id, host, port });
  }
  return peers;
}

function checkWritableDir(dir: string, label: string): void {
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, fsConstants.W_OK);
    // access() lies for root on read-only mounts; a real write is the only proof.
    const probe = join(dir, `.write-probe-${process.pid}`);
    writeFileSync(probe, '');
    rmSync(probe);
  } catch (err) {
    throw new ConfigError(label, `data directory ${dir} is not writable: ${(err as Error).message}`);
  }
}
