// `dsync cluster members` and `dsync cluster remove NODE_ID`: group 0's membership
// through the client library (the leader answers; NOT_LEADER is followed).

import { Client, type MemberStatus } from '../../client/index.js';
import { type ParsedArgs, UsageError } from '../args.js';
import { clientOptionsFrom } from '../command.js';

function printMembers(members: readonly MemberStatus[], json: boolean): void {
  if (json) {
    process.stdout.write(JSON.stringify(members, null, 2) + '\n');
    return;
  }
  for (const m of members) {
    process.stdout.write(`${m.id.padEnd(8)} ${m.address.padEnd(22)} ${m.role.padEnd(8)} ${m.connected ? 'reachable' : 'unreachable'}\n`);
  }
}

/** Runs `members` or `remove ID`; returns the exit code. */
export async function runMembership(args: ParsedArgs): Promise<number> {
  const [sub, id, extra] = args.positionals;
  if (extra !== undefined) throw new UsageError(`unexpected argument '${extra}'`);
  const json = args.switches.has('json');
  const client = await Client.connect(clientOptionsFrom(args));
  try {
    if (sub === 'members') {
      if (id !== undefined) throw new UsageError(`unexpected argument '${id}'`);
      printMembers(await client.cluster.members(), json);
      return 0;
    }
    if (id === undefined || id === '') throw new UsageError('usage: dsync cluster remove NODE_ID [--seeds host:port,...]');
    const after = await client.cluster.remove(id);
    if (!json) process.stdout.write(`removed ${id}; members now:\n`);
    printMembers(after, json);
    return 0;
  } finally {
    await client.close();
  }
}
