// `dsync status`: every member's own view of the cluster (leader, Raft state),
// asked member by member through the client library.

import { Client } from '../../client/index.js';
import { clientFlagsHelp, clientOptionsFrom, clientValueFlags, type Command, positionalsAtMost } from '../command.js';

export const statusCommand: Command = {
  usage: 'dsync status [--seeds host:port,...] [--json]',
  summary: "print every member's view of the cluster",
  help: `Options:
${clientFlagsHelp}
  --json         machine-readable output`,
  valueFlags: [...clientValueFlags],
  switchFlags: ['json'],
  async run(args) {
    positionalsAtMost(args, 0);
    const client = await Client.connect(clientOptionsFrom(args));
    try {
      const first = await client.status();
      const views = [];
      for (const m of first.members) {
        try {
          views.push(await client.status(m.address));
        } catch (err) {
          views.push({ nodeId: m.id, address: m.address, error: (err as Error).message });
        }
      }
      if (args.switches.has('json')) {
        process.stdout.write(JSON.stringify(views, null, 2) + '\n');
        return 0;
      }
      // Each member's role in group 0 and whether the first node reaches it.
      const membership = (id: string): string => {
        const m = first.members.find((x) => x.id === id);
        return m === undefined ? '' : ` member=${m.role}/${m.connected ? 'reachable' : 'unreachable'}`;
      };
      process.stdout.write(`cluster ${first.clusterId === '' ? '(no id yet)' : first.clusterId} version ${first.clusterVersion}\n`);
      for (const v of views) {
        if ('error' in v) {
          process.stdout.write(`${v.nodeId.padEnd(6)} ${v.address.padEnd(21)} UNREACHABLE (${v.error})${membership(v.nodeId)}\n`);
          continue;
        }
        const g0 = v.groups.find((g) => g.group === 0);
        const raft = g0 === undefined ? '' : ` role=${g0.role} term=${g0.term} commit=${g0.commit} applied=${g0.applied}`;
        process.stdout.write(`${v.nodeId.padEnd(6)} ${v.address.padEnd(21)} up ${Math.round(v.uptimeMs / 1000)}s leader=${v.leaderId === '' ? '-' : v.leaderId}${raft}${membership(v.nodeId)}\n`);
      }
      return views.some((v) => 'error' in v) ? 1 : 0;
    } finally {
      await client.close();
    }
  },
};
