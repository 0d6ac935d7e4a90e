// `dsync ping`: round trips to one node through the client library, naming the
// node that answered (the first reachable seed).

import { Client } from '../../client/index.js';
import { routerOf } from '../../client/client.js';
import { pingCountMax } from '../../core/constants.js';
import { clientOptionsFrom, clientValueFlags, type Command, intFlag, positionalsAtMost } from '../command.js';

export const pingCommand: Command = {
  usage: 'dsync ping [--seeds host:port] [--count 5] [--json]',
  summary: 'measure round trips to a node',
  help: `Options:
  --seeds LIST   node to ping (the first one that answers)   127.0.0.1:7401
  --count N      how many pings (1-${pingCountMax})   5
  --json         machine-readable output: {"nodeId","address","roundTripsMs":[...]}`,
  valueFlags: [...clientValueFlags, 'count'],
  switchFlags: ['json'],
  async run(args) {
    positionalsAtMost(args, 0);
    const count = intFlag(args, 'count', 1, pingCountMax) ?? 5;
    const client = await Client.connect(clientOptionsFrom(args));
    try {
      // The connection the pings go over: its hello names the node.
      const conn = await routerOf(client).anyConnection();
      const nodeId = conn.hello?.nodeId ?? '?';
      const roundTripsMs: number[] = [];
      for (let i = 0; i < count; i++) {
        const ms = await client.ping();
        roundTripsMs.push(Number(ms.toFixed(3)));
        if (!args.switches.has('json')) process.stdout.write(`pong from ${nodeId} (${conn.address}) in ${ms.toFixed(3)} ms\n`);
      }
      if (args.switches.has('json')) process.stdout.write(`${JSON.stringify({ nodeId, address: conn.address, roundTripsMs })}\n`);
      return 0;
    } finally {
      await client.close();
    }
  },
};
