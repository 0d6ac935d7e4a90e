// Starting one node from a validated config: open the WAL, build the node and its
// group host, start group 0 with every service's part of it, start the services on
// the seam (server/services/service.ts), listen, and stop gracefully on SIGTERM/SIGINT.

import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { readContextNonceBytes } from '../core/constants.js';
import { type GroupId, groupId, type NodeId } from '../core/ids.js';
import { Opcode } from '../protocol/frame.js';
import type { NodeConfig } from './node/config.js';
import { DsyncNode } from './node/node.js';
import { Group0StateMachine } from './raft/group0.js';
import { GroupHost, type GroupRunner } from './raft/runner.js';
import { monotonicClock, nodeScheduler } from './runtime.js';
import { JournalService } from './services/journal/service.js';
import { LockService } from './services/locks/service.js';
import { registerServices, type Service, serviceContext } from './services/service.js';
import { Wal, WalCorruptionError } from './storage/wal.js';
import { StartError } from './node/listen.js';

export { StartError } from './node/listen.js';

export const metaGroup: GroupId = groupId(0);

export interface RunningNode {
  readonly node: DsyncNode;
  readonly ports: { port: number; httpPort: number; consolePort: number };
  readonly group0: GroupRunner;
  readonly host: GroupHost;
}

/** The services every node runs, in start order. */
function services(): Service[] {
  return [new JournalService(), new LockService()];
}

/**
 * Builds and starts a node with every service wired in. Throws WalCorruptionError on a
 * damaged log and StartError (one line naming the setting) on anything else that stops
 * it from starting, after undoing what it had started (servers, groups, the WAL writer).
 */
export async function startNode(config: NodeConfig): Promise<RunningNode> {
  let opened: Awaited<ReturnType<typeof Wal.open>>;
  try {
    opened = await Wal.open(join(config.dataDir, 'wal'));
  } catch (err) {
    if (err instanceof WalCorruptionError) throw err;
    throw new StartError(`cannot open the log in ${join(config.dataDir, 'wal')} (${config.settingLabels.dataDir}): ${err instanceof Error ? err.message : String(err)}`);
  }
  const { wal, recovered } = opened;
  const node = new DsyncNode(config);
  try {
    return await wire(config, node, wal, recovered);
  } catch (err) {
    await node.abortStart().catch(() => {});
    await wal.close().catch(() => {});
    if (err instanceof StartError) throw err;
    throw new StartError(`cannot start: ${err instanceof Error ? err.message : String(err)}`);
  }
}

async function wire(config: NodeConfig, node: DsyncNode, wal: Wal, recovered: Awaited<ReturnType<typeof Wal.open>>['recovered']): Promise<RunningNode> {
  const host = new GroupHost({
    nodeId: config.nodeId,
    storage: wal,
    recovered,
    sendToPeer: (peer, batch) => { node.peers.send(peer, Opcode.Raft, batch); },
    clock: monotonicClock,
    scheduler: nodeScheduler,
    log: node.log,
    notLeader: (what, leader) => node.notLeader(what, leader),
    // A replica that cannot persist must not keep voting or acknowledging.
    fatal: (message) => node.fatal(message),
    seed: process.pid,
    bootNonce: new Uint8Array(randomBytes(readContextNonceBytes)),
  });
  node.handlePeerPush(Opcode.Raft, (from, payload) => host.receive(from, payload));
  node.addGroupStatus(() => [...host.groups.values()].map((g) => g.status()));
  node.onStop(() => host.stop());

  const list = services();
  const sm = new Group0StateMachine();
  registerServices(list, sm);
  const voters = [config.nodeId, ...config.peers.map((p) => p.id)].sort() as NodeId[];
  const group0 = host.ensure(metaGroup, sm, { voters, learners: [] });
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
    }).join('\n') + `\nwal: ${JSON.stringify(wal.metrics())}`,
  });

  const ports = await node.start();
  return { node, ports, group0, host };
}

/** Stops the node on the first SIGTERM/SIGINT; a second signal exits at once. */
export function stopOnSignals(node: DsyncNode): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) process.exit(1);
    stopping = true;
    node.log.info('signal received, shutting down', { signal });
    node.stop().then(() => process.exit(0), (err: unknown) => {
      node.log.error('shutdown failed', { err: String(err) });
      process.exit(1);
    });
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}
