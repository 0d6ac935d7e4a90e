// `dsync lock`: take, inspect and force-release distributed locks through the
// client library (acquire holds until Ctrl-C or --hold ms).

import { Client } from '../../client/index.js';
import { type ParsedArgs, UsageError } from '../args.js';
import { type Command, msFlag, seedsFrom } from '../command.js';

export const lockCommand: Command = {
  usage: 'dsync lock acquire NAME [--shared] [--ttl ms] [--wait ms] [--hold ms] | list | info NAME | sessions | release NAME --force',
  summary: 'take, inspect and force-release distributed locks',
  help: `Subcommands:
  acquire NAME   take the lock, print its fencing token, hold it for --hold ms (default: until Ctrl-C), release
  list           every lock with holders or waiters
  info NAME      holders, waiters and last token of one lock
  sessions       lock sessions and what they hold
  release NAME --force   take the lock away from its holders (admin)
Options:
  --seeds LIST   addresses to start from (env DSYNC_SEEDS)   127.0.0.1:7401
  --shared       shared mode (default exclusive)
  --ttl MS       session TTL (default 10000)
  --wait MS      give up waiting after MS (default: wait as long as it takes)
  --hold MS      how long to hold before releasing
  --force        required for release: it breaks someone else's lock
  --json         machine-readable output`,
  valueFlags: ['seeds', 'ttl', 'wait', 'hold'],
  switchFlags: ['shared', 'force', 'json'],
  run: runLock,
};

async function runLock(args: ParsedArgs): Promise<number> {
  const [sub, name] = args.positionals;
  const json = args.switches.has('json');
  const needName = (): string => {
    if (name === undefined || name === '') throw new UsageError(`dsync lock ${sub ?? ''} needs a lock NAME`);
    return name;
  };
  if (sub !== 'acquire' && sub !== 'list' && sub !== 'info' && sub !== 'sessions' && sub !== 'release') {
    throw new UsageError(`unknown lock subcommand '${sub ?? ''}' (acquire, list, info, sessions, release)`);
  }
  const ttlMs = msFlag(args, 'ttl');
  const client = await Client.connect({ seeds: seedsFrom(args), ...(ttlMs === undefined ? {} : { sessionTtlMs: ttlMs }) });
  try {
    switch (sub) {
      case 'acquire': {
        const lockName = needName();
        const waitMs = msFlag(args, 'wait');
        const holdMs = msFlag(args, 'hold');
        const abort = new AbortController();
        const onSignal = (): void => abort.abort();
        process.once('SIGINT', onSignal);
        try {
          const lock = await client.lock(lockName, { mode: args.switches.has('shared') ? 'shared' : 'exclusive', signal: abort.signal,
            ...(waitMs === undefined ? {} : { waitMs }) });
          process.stdout.write(json ? JSON.stringify({ lock: lock.name, mode: lock.mode, token: lock.token }) + '\n'
            : `acquired ${lock.name} (${lock.mode}) fencing token ${lock.token}\n`);
          const lost = lock.lost.then((err) => `lost: ${err.message}`);
          const held = holdMs === undefined
            ? new Promise<string>((r) => abort.signal.addEventListener('abort', () => r('interrupted'), { once: true }))
            : new Promise<string>((r) => setTimeout(() => r('hold time over'), holdMs));
          const why = await Promise.race([lost, held]);
          await lock.release();
          if (!json) process.stdout.write(`released ${lock.name} (${why})\n`);
          return why.startsWith('lost') ? 1 : 0;
        } finally {
          process.off('SIGINT', onSignal);
        }
      }
      case 'list':
      case 'info': {
        const locks = await client.locks.info(sub === 'info' ? needName() : '');
        if (json) {
          process.stdout.write(JSON.stringify(locks, null, 2) + '\n');
          return 0;
        }
        if (locks.length === 0) {
          process.stdout.write(sub === 'info' ? `lock ${name ?? ''} is free and has no waiters\n` : '(no locks held or awaited)\n');
          return 0;
        }
        for (const l of locks) {
          process.stdout.write(`${l.name}  last token ${l.lastToken}${l.delayUntilMs > 0 ? `  delayed until ${new Date(l.delayUntilMs).toISOString()}` : ''}\n`);
          for (const h of l.holders) process.stdout.write(`  holder  session ${h.session}  ${h.mode}  x${h.count}  token ${h.token}\n`);
          l.waiters.forEach((w, i) => process.stdout.write(`  waiter ${i + 1}  session ${w.session}  ${w.mode}\n`));
        }
        return 0;
      }
      case 'sessions': {
        const sessions = await client.locks.sessions();
        if (json) process.stdout.write(JSON.stringify(sessions, null, 2) + '\n');
        else if (sessions.length === 0) process.stdout.write('(no sessions)\n');
        else for (const s of sessions) process.stdout.write(`session ${s.session}  client ${s.clientId}  ttl ${s.ttlMs} ms  holds ${s.holds.join(',') || '-'}  waits ${s.waits}\n`);
        return 0;
      }
      case 'release': {
        const lockName = needName();
        if (!args.switches.has('force')) throw new UsageError('release takes a lock from its holder; add --force to confirm');
        await client.locks.forceRelease(lockName);
        process.stdout.write(`force-released ${lockName}\n`);
        return 0;
      }
    }
  } finally {
    await client.close();
  }
}
