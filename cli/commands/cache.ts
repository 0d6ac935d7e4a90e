// `dsync cache`: get, set, delete a key and show a node's cache counters through the
// client library, against the first reachable seed (the node whose lines serve hits).

import { Client } from '../../client/index.js';
import { type ParsedArgs, UsageError } from '../args.js';
import { type Command, msFlag, seedsFrom } from '../command.js';

export const cacheCommand: Command = {
  usage: 'dsync cache get KEY | set KEY VALUE [--ttl ms] | del KEY | stats',
  summary: 'get, set and delete cache keys; show a node\'s cache counters',
  help: `Subcommands:
  get KEY          the value (exit 1 when the key has none)
  set KEY VALUE    store VALUE (UTF-8 text) under KEY
  del KEY          delete KEY
  stats            hits, misses, transitions, invalidations, write-backs, evictions, lease reclaims of the node
Options:
  --seeds LIST   addresses to start from; the first reachable one serves (env DSYNC_SEEDS)   127.0.0.1:7401
  --ttl MS       set: the value expires after MS
  --json         machine-readable output`,
  valueFlags: ['seeds', 'ttl'],
  switchFlags: ['json'],
  run: runCache,
};

async function runCache(args: ParsedArgs): Promise<number> {
  const [sub, key, value] = args.positionals;
  const json = args.switches.has('json');
  if (sub !== 'get' && sub !== 'set' && sub !== 'del' && sub !== 'stats') throw new UsageError(`unknown cache subcommand '${sub ?? ''}' (get, set, del, stats)`);
  const needKey = (): string => {
    if (key === undefined || key === '') throw new UsageError(`dsync cache ${sub} needs a KEY`);
    return key;
  };
  if (sub === 'set' && value === undefined) throw new UsageError('dsync cache set needs a KEY and a VALUE');
  const ttlMs = msFlag(args, 'ttl');
  const client = await Client.connect({ seeds: seedsFrom(args) });
  try {
    switch (sub) {
      case 'get': {
        const v = await client.cache.getString(needKey());
        process.stdout.write(json ? JSON.stringify({ key, found: v !== null, value: v }) + '\n' : v === null ? `(no value for ${key})\n` : `${v}\n`);
        return v === null ? 1 : 0;
      }
      case 'set':
        await client.cache.set(needKey(), value ?? '', ttlMs === undefined ? {} : { ttlMs });
        process.stdout.write(json ? JSON.stringify({ key, set: true }) + '\n' : `set ${key}\n`);
        return 0;
      case 'del':
        await client.cache.delete(needKey());
        process.stdout.write(json ? JSON.stringify({ key, deleted: true }) + '\n' : `deleted ${key}\n`);
        return 0;
      case 'stats': {
        const s = await client.cache.stats();
        if (json) {
          process.stdout.write(JSON.stringify(s, null, 2) + '\n');
          return 0;
        }
        process.stdout.write(`node ${s.nodeId}: ${s.protocol} ${s.writePolicy}, backing ${s.backing}\n`);
        for (const [name, n] of Object.entries(s.counters)) process.stdout.write(`  ${name.padEnd(36)} ${Number.isInteger(n) ? n : n.toFixed(3)}\n`);
        return 0;
      }
    }
  } finally {
    await client.close();
  }
}
