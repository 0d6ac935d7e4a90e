// `dsync ping`: round trips to one node through the client library.

import { Client } from '../../client/index.js';
import { UsageError } from '../args.js';
import { type Command, seedsFrom } from '../command.js';

export const pingCommand: Command = {
  usage: 'dsync ping [--seeds host:port] [--count 5]',
  summary: 'measure round trips to a node',
  help: `Options:
  --seeds LIST   node to ping   127.0.0.1:7401
  --count N      how many pings  5`,
  valueFlags: ['seeds', 'count'],
  switchFlags: [],
  async run(args) {
    const count = Number(args.flags.get('count') ?? '5');
    if (!Number.isInteger(count) || count < 1 || count > 10_000) throw new UsageError('--count must be an integer in 1..10000');
    const client = await Client.connect({ seeds: seedsFrom(args) });
    try {
      for (let i = 0; i < count; i++) process.stdout.write(`pong in ${(await client.ping()).toFixed(3)} ms\n`);
      return 0;
    } finally {
      await client.close();
    }
  },
};
