// Starting one node from a validated config: open the WAL, build the node,
// start group 0 (journal + lock table), plug in the services, start
// listening, and stop gracefully on SIGTERM/SIGINT.

import { join } from 'node:path';
import { type GroupId, groupId, type NodeId } from '../core/ids.js';
import { Opcode } from '../protocol/frame.js';
import { schema } from '../protocol/index.js';
import type { NodeConfig } from './node/config.js';
import { GroupHost, type GroupRunner } from './raft/runner.js';
import { EntryKind, frameEntry, Group0StateMachine } from './raft/group0.js';
import { Journal } from './services/journal/journal.js';
import { LockService } from './services/locks/service.js';
import { decodePayload, DsyncNode } from './node/node.js';
import { Wal } from './storage/wal.js';

export const metaGroup: GroupId = groupId(0);

export interface RunningNode {
  readonly node: DsyncNode;
  readonly ports: { port: number; httpPort: number; consolePort: number };
  readonly group0: GroupRunner;
  readonly host: GroupHost;
}

/** Builds and starts a node with every service wired in. Throws WalCorruptionError on a damaged log. */
export async function startNode(config: NodeConfig): Promise<RunningNode> {
  const { wal, recovered } = await Wal.open(join(config.dataDir, 'wal'));
  const node = new DsyncNode(config);
  const host = new GroupHost(node, wal, recovered);
  node.onStop(() => host.stop());

  const sm = new Group0StateMachine();
  const journal = new Journal();
  sm.register(EntryKind.Journal, 'journal', {
    apply: (entry, body) => ({ index: entry.index, count: journal.apply(body) }),
    snapshot: () => journal.toSnapshot(),
    restore: (s) => journal.restore(s as { count: number; hash: number }),
  });

  const locks = new LockService(node);
  sm.register(EntryKind.Lock, 'locks', locks);

  const voters = [config.nodeId, ...config.peers.map((p) => p.id)].sort() as NodeId[];
  const group0 = host.addGroup(metaGroup, sm, { voters, learners: [] });
  node.setLeaderProvider(() => group0.leader);
  registerJournal(node, group0, journal);
  locks.attach(group0);
  node.onStop(() => locks.stop());

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

function registerJournal(node: DsyncNode, group0: GroupRunner, journal: Journal): void {
  node.handle(Opcode.JournalAppend, (ctx, payload) => {
    const req = decodePayload((b) => schema.JournalAppend.decode(b), payload, 'journal append');
    group0.propose(frameEntry(EntryKind.Journal, req.data)).then((applied) => {
      const { index, count } = applied as { index: number; count: number };
      ctx.conn.reply(ctx.requestId, ctx.opcode, schema.JournalAppendReply.encode({ index, count }).finish());
    }, (err: unknown) => ctx.conn.replyError(ctx.requestId, ctx.opcode, node.asDsyncError(err)));
  });
  node.handle(Opcode.JournalInfo, (ctx, payload) => {
    const req = decodePayload((b) => schema.JournalInfoRequest.decode(b), payload, 'journal info');
    const answer = (): void => ctx.conn.reply(ctx.requestId, ctx.opcode, schema.JournalInfoReply.encode({
      count: journal.count, hash: journal.hash, appliedIndex: group0.applied, nodeId: node.nodeId,
    }).finish());
    if (req.local) {
      answer();
      return;
    }
    group0.readBarrier().then(answer, (err: unknown) => ctx.conn.replyError(ctx.requestId, ctx.opcode, node.asDsyncError(err)));
  });
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
