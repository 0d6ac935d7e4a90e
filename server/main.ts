// Starting one node from a validated config: open the WAL, build the node and its
// group host, start group 0 with every service's part of it, start the services on
// the seam (server/services/service.ts), listen, and stop gracefully on SIGTERM/SIGINT.
// A node started with --join listens first, asks the cluster to add it, and keeps
// the configuration it was added with (join.json) as its group 0 bootstrap.

import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ConfState } from '../core/raft/types.js';
import { raftTickMs, readContextNonceBytes } from '../core/constants.js';
import { type GroupId, groupId, type NodeId } from '../core/ids.js';
import { Opcode } from '../protocol/frame.js';
import type { NodeConfig, PeerAddress } from './node/config.js';
import { requestJoin } from './node/join.js';
import { MembersService } from './services/members/service.js';
import { DsyncNode } from './node/node.js';
import { Group0StateMachine } from './raft/group0.js';
import { GroupHost, type GroupRunner, raftMessageTypeNames } from './raft/runner.js';
import { monotonicClock, nodeScheduler } from './runtime.js';
import { cacheConfigDefault } from '../core/cache/messages.js';
import { cacheSettingsDefault } from './node/config.js';
import { InProcessBacking, RedisBacking } from './services/cache/backing.js';
import { CacheService } from './services/cache/service.js';
import { JournalService } from './services/journal/service.js';
import { LockService } from './services/locks/service.js';
import { QueueService, type QueueServiceOptions } from './services/queues/service.js';
import { diskPartitionStorage } from './services/queues/storage.js';
import xxhash from 'xxhash-wasm';
import { registerServices, type Service, serviceContext } from './services/service.js';
import { fsyncBucketsNs } from './storage/shared.js';
import { Wal, WalCorruptionError } from './storage/wal.js';
import { StartError } from './node/listen.js';
import { FeatureVersionError, featureVersionFrom, type SnapshotFormats } from './node/version.js';
import { DsyncError, ErrorCode } from '../protocol/errors.js';
import { queueCanaryOf, type ServerCanary, serverCanaries, serverCanariesFrom } from './node/canary.js';

export { StartError } from './node/listen.js';

export const metaGroup: GroupId = groupId(0);

export interface RunningNode {
  readonly node: DsyncNode;
  readonly ports: { port: number; httpPort: number; consolePort: number };
  readonly group0: GroupRunner;
  readonly host: GroupHost;
}

/** The services every node runs after the members service, in start order. */
function services(config: NodeConfig, queues: QueueServiceOptions, canaries: ReadonlySet<ServerCanary>, clusterId: () => string): Service[] {
  return [new JournalService(), new LockService(),
    new QueueService(((c) => (c === undefined ? queues : { ...queues, canary: c }))(queueCanaryOf(canaries))),
    cacheService(config, canaries.has('cache-skip-invalidation'), clusterId)];
}

/** The cache service with this node's cache settings: in-process memory or Redis behind its homes. */
function cacheService(config: NodeConfig, skipInvalidationCanary: boolean, clusterId: () => string): CacheService {
  const c = config.cache ?? cacheSettingsDefault;
  const cfg = { ...cacheConfigDefault, protocol: c.protocol, writePolicy: c.writePolicy, leaseMs: c.leaseMs, retryMs: Math.min(cacheConfigDefault.retryMs, Math.floor(c.leaseMs / 4)) };
  const backing = c.backing === null ? new InProcessBacking() : new RedisBacking(c.backing, () => monotonicClock.nowMs(), { clusterId });
  // Wall-clock seconds x 1024 (room for 1024 ring changes a second; wraps after 48 days): a restarted node speaks with a larger incarnation than before.
  return new CacheService({ cfg, backing, lineEntriesMax: c.capacity, incarnationBase: (Math.floor(Date.now() / 1000) % 0x40_0000) * 1024,
    ringTiming: { nodeDownMs: c.nodeDownMs, nodeUpMs: Math.max(1, Math.floor(c.nodeDownMs / 2)) },
    ...(skipInvalidationCanary ? { canary: 'skip-one-invalidation' as const } : {}) });
}

/** What a joined node keeps in its data dir: group 0's configuration when it was added, and where the members were. */
interface JoinRecord {
  readonly conf: ConfState;
  readonly peers: readonly PeerAddress[];
}

const joinRecordFile = 'join.json';

function readJoinRecord(dataDir: string): JoinRecord | null {
  let text: string;
  try {
    text = readFileSync(join(dataDir, joinRecordFile), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const record = JSON.parse(text) as JoinRecord;
  if (!Array.isArray(record.conf?.voters) || !Array.isArray(record.conf?.learners) || !Array.isArray(record.peers)) {
    throw new StartError(`${join(dataDir, joinRecordFile)} is damaged; this node cannot know its group 0 configuration (wipe the data dir and join again with a new --id)`);
  }
  return record;
}

/** Written durably (write, fsync, rename, fsync dir) before group 0 starts, so a restart bootstraps the same way. */
function writeJoinRecord(dataDir: string, record: JoinRecord): void {
  const path = join(dataDir, joinRecordFile);
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, JSON.stringify(record));
  const fd = openSync(tmp, 'r');
  try { fsyncSync(fd); } finally { closeSync(fd); }
  renameSync(tmp, path);
  const dir = openSync(dataDir, 'r');
  try { fsyncSync(dir); } finally { closeSync(dir); }
}

function parseAddress(id: string, address: string): PeerAddress | null {
  const sep = address.lastIndexOf(':');
  if (sep <= 0) return null;
  return { id: id as NodeId, host: address.slice(0, sep).replace(/^\[(.*)\]$/, '$1'), port: Number(address.slice(sep + 1)) };
}

/**
 * Group 0's bootstrap configuration: itself and --peers as voters; for --join, the
 * configuration it was added with (asking the cluster the first time, after listening
 * so the leader can reach it). Returns the ports when it had to listen already.
 */
async function bootstrapGroup0(config: NodeConfig, node: DsyncNode): Promise<{ conf: ConfState; hints: PeerAddress[]; ports: RunningNode['ports'] | null }> {
  if (config.join === null) {
    return { conf: { voters: [config.nodeId, ...config.peers.map((p) => p.id)].sort(), learners: [] }, hints: [], ports: null };
  }
  const record = readJoinRecord(config.dataDir);
  if (record !== null) {
    node.log.info('rejoining with the configuration this node was added with', { voters: record.conf.voters.join(','), learners: record.conf.learners.join(',') });
    return { conf: record.conf, hints: [...record.peers], ports: null };
  }
  const ports = await node.start();
  node.log.info('asking the cluster to add this node', { via: config.join });
  const featureVersion = node.featureVersion;
  const reply = await requestJoin(config.join, { id: config.nodeId, address: node.addressOfSelf(), peerAddress: node.addressOfSelf(), featureVersion }, node.log, config.security)
    .catch((err: unknown) => {
      if (err instanceof DsyncError && err.code === ErrorCode.FEATURE_VERSION) throw new FeatureVersionError(null, featureVersion, `the cluster at ${config.join} (${err.message})`);
      throw err;
    });
  const conf: ConfState = { voters: [...reply.voters].sort() as NodeId[], learners: [...reply.learners].sort() as NodeId[] };
  if (!conf.learners.includes(config.nodeId) && !conf.voters.includes(config.nodeId)) {
    throw new StartError(`the cluster at ${config.join} answered the join without adding ${config.nodeId}`);
  }
  const peers = reply.members.flatMap((m) => (m.id === config.nodeId || m.id === undefined || m.id === null ? [] : [parseAddress(m.id ?? '', m.peerAddress ?? '')].filter((p): p is PeerAddress => p !== null)));
  writeJoinRecord(config.dataDir, { conf, peers });
  node.log.info('added to the cluster as a learner', { voters: conf.voters.join(','), learners: conf.learners.join(',') });
  return { conf, hints: peers, ports };
}

/**
 * Builds and starts a node with every service wired in. Throws WalCorruptionError on a
 * damaged log and StartError (one line naming the setting) on anything else that stops
 * it from starting, after undoing what it had started (servers, groups, the WAL writer).
 */
export async function startNode(givenConfig: NodeConfig): Promise<RunningNode> {
  let config: NodeConfig;
  try {
    config = givenConfig.featureVersion === undefined ? { ...givenConfig, featureVersion: featureVersionFrom(process.env) } : givenConfig;
  } catch (err) {
    throw new StartError(err instanceof Error ? err.message : String(err));
  }
  let opened: Awaited<ReturnType<typeof Wal.open>>;
  try {
    opened = await Wal.open(join(config.dataDir, 'wal'));
  } catch (err) {
    if (err instanceof WalCorruptionError) throw err;
    throw new StartError(`cannot open the log in ${join(config.dataDir, 'wal')} (${config.settingLabels.dataDir}): ${err instanceof Error ? err.message : String(err)}`);
  }
  const { wal, recovered, dropped } = opened;
  const node = new DsyncNode(config);
  try {
    return await wire(config, node, wal, recovered, dropped);
  } catch (err) {
    await node.abortStart().catch(() => {});
    await wal.close().catch(() => {});
    if (err instanceof StartError || err instanceof FeatureVersionError) throw err;
    throw new StartError(`cannot start: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** The WAL's own counters (kept in shared memory by its writer thread) as Prometheus series. */
function walMetrics(node: DsyncNode, wal: Wal): void {
  const m = node.metrics;
  const one = (read: () => number) => (): Iterable<[Record<string, never>, number]> => [[{}, read()]];
  m.counterFrom('dsync_wal_fsyncs_total', 'fdatasync calls on WAL segments (one per group commit)', [], one(() => wal.metrics().fsyncs));
  m.counterFrom('dsync_wal_batches_total', 'Group-commit batches written', [], one(() => wal.metrics().batches));
  m.counterFrom('dsync_wal_records_total', 'WAL records written (entries and hard states)', [], one(() => wal.metrics().recordsWritten));
  m.counterFrom('dsync_wal_bytes_total', 'Bytes written to WAL segments', [], one(() => wal.metrics().bytesWritten));
  m.counterFrom('dsync_wal_fsync_seconds_total', 'Time spent in fdatasync (divide by dsync_wal_fsyncs_total for the mean)', [],
    one(() => wal.metrics().fsyncNsTotal / 1e9));
  m.gauge('dsync_wal_fsync_seconds_max', 'Slowest fdatasync since start', [], one(() => wal.metrics().fsyncNsMax / 1e9));
  m.histogramFrom('dsync_wal_fsync_duration_seconds', 'fdatasync latency of WAL segment writes (every acknowledged write waits for one on a majority)',
    fsyncBucketsNs.map((ns) => Number(ns) / 1e9), () => {
      const w = wal.metrics();
      return { perBound: w.fsyncBucketCounts, count: w.fsyncs, sumSeconds: w.fsyncNsTotal / 1e9 };
    });
  m.gauge('dsync_wal_pending_bytes', 'Bytes queued for the WAL writer (backpressure beyond walPendingBytesMax)', [], one(() => wal.metrics().pendingBytes));
  m.gauge('dsync_wal_segments', 'WAL segment files on disk', [], one(() => wal.metrics().segments));
}

/** Per Raft group hosted here, counted by its runner: proposals, leaders seen, terms (election rounds). */
function raftMetrics(node: DsyncNode, host: GroupHost): void {
  const m = node.metrics;
  const per = (pick: (g: GroupRunner) => number) => (): Iterable<[{ group: number }, number]> =>
    [...host.groups.values()].map((g) => [{ group: g.group }, pick(g)]);
  m.counterFrom('dsync_raft_proposals_total', 'Entries this node proposed as the group\'s leader (accepted into its log)', ['group'], per((g) => g.counts.proposals));
  m.counterFrom('dsync_raft_leader_changes_total', 'Times this replica learned of a new leader of the group', ['group'], per((g) => g.counts.leaderChanges));
  m.counterFrom('dsync_raft_snapshot_transfers_total', 'Snapshot messages too large for one peer batch, sent in chunks (sent), reassembled and stepped (received), or abandoned half-way (discarded: Raft sends them again)',
    ['outcome'], () => [[{ outcome: 'sent' }, host.snapshotTransfers.sent], [{ outcome: 'received' }, host.snapshotTransfers.received],
      [{ outcome: 'discarded' }, host.snapshotTransfers.discarded]]);
  m.counterFrom('dsync_raft_snapshots_installed_total', 'Snapshots a leader sent that this replica installed (it was behind the leader\'s compaction)', ['group'],
    per((g) => g.counts.snapshotsInstalled));
  m.counterFrom('dsync_raft_messages_total', 'Raft messages (heartbeats included) this node sent to and received from peers', ['direction'],
    () => [[{ direction: 'sent' }, host.traffic.messagesSent], [{ direction: 'received' }, host.traffic.messagesReceived]]);
  m.counterFrom('dsync_raft_messages_by_type_total', 'Raft messages the cores of the groups hosted here sent, by type (AppEmpty: an App without entries)', ['type'],
    () => raftMessageTypeNames.map((type, i) => [{ type }, host.traffic.sentByType[i] as number]));
  m.counterFrom('dsync_raft_peer_frames_total', 'Raft batches (one peer frame each) this node sent and received', ['direction'],
    () => [[{ direction: 'sent' }, host.traffic.framesSent], [{ direction: 'received' }, host.traffic.framesReceived]]);
  m.counterFrom('dsync_raft_readys_total', 'Readys taken from the Raft cores of every group hosted here', [], () => [[{}, host.traffic.readys]]);
  m.counterFrom('dsync_raft_elections_total', 'Terms this replica saw begin since it started: one per election round, won or not', ['group'], per((g) => g.counts.terms));
}

async function wire(config: NodeConfig, node: DsyncNode, wal: Wal, recovered: Awaited<ReturnType<typeof Wal.open>>['recovered'],
  dropped: ReadonlySet<GroupId>): Promise<RunningNode> {
  const host = new GroupHost({
    nodeId: config.nodeId,
    storage: wal,
    recovered,
    dropped,
    // The host already sends one batch per peer per turn: no second wait for the end of the turn.
    sendToPeer: (peer, batch) => { node.peers.send(peer, Opcode.Raft, batch, true); },
    peerQueuedBytes: (peer) => node.peers.queuedBytes(peer),
    snapshotEntriesThreshold: config.snapshotEntries,
    clock: monotonicClock,
    scheduler: nodeScheduler,
    log: node.log,
    notLeader: (what, leader) => node.notLeader(what, leader),
    // A replica that cannot persist must not keep voting or acknowledging.
    fatal: (message) => node.fatal(message),
    seed: process.pid,
    bootNonce: new Uint8Array(randomBytes(readContextNonceBytes)),
    timing: {
      electionTicksMin: config.raftTiming.electionTimeoutMsMin / raftTickMs,
      electionTicksMax: config.raftTiming.electionTimeoutMsMax / raftTickMs,
      heartbeatTicks: config.raftTiming.heartbeatIntervalMs / raftTickMs,
    },
  });
  node.handlePeerPush(Opcode.Raft, (from, payload) => host.receive(from, payload));
  node.addGroupStatus(() => [...host.groups.values()].map((g) => g.status()));
  walMetrics(node, wal);
  raftMetrics(node, host);
  node.onStop(() => host.stop());

  const canaries = serverCanariesFrom(process.env);
  for (const c of canaries) node.log.warn('CANARY: this node runs with a deliberate bug (DSYNC_CANARY)', { canary: c, effect: serverCanaries[c] });
  const boot = await bootstrapGroup0(config, node);
  const members = new MembersService({ node, host, bootstrap: boot.conf, hints: boot.hints });
  const { h32Raw } = await xxhash();
  // Snapshots leave this node for its peers: their formats follow the cluster version, not this node's.
  const snapshotFormats: SnapshotFormats = { formatVersion: () => members.machine.table.clusterVersion, readsUpTo: node.featureVersion };
  const list = [members, ...services(config, {
    hash: (bytes) => h32Raw(bytes),
    voters: () => members.machine.table.conf().voters,
    storage: diskPartitionStorage(join(config.dataDir, 'queues'), node.log, (message) => node.fatal(message)),
    fatal: (message) => node.fatal(message),
    snapshotFormats,
    topicDefaults: config.topicDefaults,
    ...(config.queueNodeDownMs === undefined ? {} : { nodeDownMs: config.queueNodeDownMs }),
  }, canaries, () => members.machine.table.clusterId)];
  const sm = new Group0StateMachine(snapshotFormats);
  registerServices(list, sm);
  const group0 = host.ensure(metaGroup, sm, boot.conf);
  node.setLeaderProvider(() => group0.leader);
  for (const service of list) {
    service.start(serviceContext(service, { node, groups: host, clock: monotonicClock, scheduler: nodeScheduler, log: node.log }));
    node.onStop(() => service.stop());
  }

  node.consoleCommands.register({
    name: 'raft', usage: 'raft', help: 'every Raft group on this node: role, term, commit, applied',
    run: () => [...host.groups.values()].map((g) => {
      const s = g.status();
      return `group ${s.group ?? 0}: role=${s.role ?? ''} leader=${s.leaderId === '' ? '-' : s.leaderId ?? '-'} term=${Number(s.term ?? 0)} commit=${Number(s.commit ?? 0)} applied=${Number(s.applied ?? 0)} last=${Number(s.lastIndex ?? 0)} voters=${(s.voters ?? []).join(',')} learners=${(s.learners ?? []).join(',') || '-'}`;
    }).join('\n') + `\ntiming: election timeout ${host.timing.electionTicksMin * raftTickMs}-${host.timing.electionTicksMax * raftTickMs} ms, `
      + `heartbeat ${host.timing.heartbeatTicks * raftTickMs} ms\nwal: ${JSON.stringify(wal.metrics())}`,
  });

  const ports = boot.ports ?? await node.start();
  return { node, ports, group0, host };
}

/**
 * Stops the node on the first SIGTERM/SIGINT; a second signal exits at once (an operator's
 * force-quit; `dsync cluster` runs its nodes in their own process groups and signals each once).
 * Returns the same stop, for other reasons to stop (the supervisor gone).
 */
export function stopOnSignals(node: DsyncNode): (reason: string) => void {
  let stopping = false;
  const stop = (reason: string): void => {
    if (stopping) return;
    stopping = true;
    node.log.info('shutting down', { reason });
    node.stop().then(() => process.exit(0), (err: unknown) => {
      node.log.error('shutdown failed', { err: String(err) });
      process.exit(1);
    });
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      node.log.warn('second signal while stopping: exiting at once', { signal });
      process.exit(1);
    }
    stop(`signal ${signal}`);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return stop;
}
