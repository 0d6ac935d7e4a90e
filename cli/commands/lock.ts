// `dsync lock`: take, inspect and force-release distributed locks through the
// client library (acquire holds until --hold ms pass or the first Ctrl-C/SIGTERM,
// then releases). Lock names are printed escaped: they come from other clients.

import { Client, DsyncError, ErrorCode } from '../../client/index.js';
import { sessionTtlMsMax, sessionTtlMsMin } from '../../core/constants.js';
import { lockNameProblem } from '../../core/locks/names.js';
import { type ParsedArgs, UsageError } from '../args.js';
import { clientFlagsHelp, clientOptionsFrom, clientValueFlags, type Command, msFlag, positionalsAtMost, printable } from '../command.js';

const subcommands = {
  acquire: { usage: 'dsync lock acquire NAME [--shared] [--ttl ms] [--wait ms] [--hold ms] [--json]',
    help: `Takes the lock, prints its fencing token, holds it for --hold ms (default: until Ctrl-C or SIGTERM), releases it.
The first Ctrl-C or SIGTERM releases the lock (or gives up waiting) and exits.
Options:
${clientFlagsHelp}
  --shared       shared mode (default exclusive)
  --ttl MS       session TTL, ${sessionTtlMsMin}..${sessionTtlMsMax} (default 10000)
  --wait MS      give up waiting after MS with LOCK_TIMEOUT (default: wait as long as it takes; 0: only if free now)
  --hold MS      how long to hold before releasing (0: release at once)
  --json         machine-readable output` },
  list: { usage: 'dsync lock list [--json]', help: `Every lock with holders or waiters.\nOptions:\n${clientFlagsHelp}\n  --json` },
  info: { usage: 'dsync lock info NAME [--json]', help: `Holders, waiters and last fencing token of one lock.\nOptions:\n${clientFlagsHelp}\n  --json` },
  sessions: { usage: 'dsync lock sessions [--json]', help: `Lock sessions and what they hold.\nOptions:\n${clientFlagsHelp}\n  --json` },
  release: { usage: 'dsync lock release NAME --force [--json]',
    help: "Takes the lock away from its holders (admin); --force confirms that you mean to break someone else's lock." },
} as const;
type Sub = keyof typeof subcommands;

export const lockCommand: Command = {
  usage: 'dsync lock acquire NAME [--shared] [--ttl ms] [--wait ms] [--hold ms] | list | info NAME | sessions | release NAME --force',
  summary: 'take, inspect and force-release distributed locks',
  help: `Subcommands ('dsync lock SUB --help' for each):
  acquire NAME   take the lock, print its fencing token, hold it for --hold ms (default: until Ctrl-C), release
  list           every lock with holders or waiters
  info NAME      holders, waiters and last token of one lock
  sessions       lock sessions and what they hold
  release NAME --force   take the lock away from its holders (admin)
Options:
${clientFlagsHelp}
  --shared       shared mode (default exclusive)
  --ttl MS       session TTL, ${sessionTtlMsMin}..${sessionTtlMsMax} (default 10000)
  --wait MS      give up waiting after MS (default: wait as long as it takes)
  --hold MS      how long to hold before releasing
  --force        required for release: it breaks someone else's lock
  --json         machine-readable output (errors too, on stderr)`,
  valueFlags: [...clientValueFlags, 'ttl', 'wait', 'hold'],
  switchFlags: ['shared', 'force', 'json'],
  subcommands,
  run: runLock,
};

/** Exit code of an acquire ended by SIGINT/SIGTERM while still waiting (128 + SIGINT, as shells report it). */
const interruptedExitCode = 130;

async function runLock(args: ParsedArgs): Promise<number> {
  const [sub, name] = args.positionals;
  const json = args.switches.has('json');
  if (sub === undefined) throw new UsageError('which lock subcommand? (acquire, list, info, sessions, release)');
  if (!Object.hasOwn(subcommands, sub)) throw new UsageError(`unknown lock subcommand '${printable(sub)}' (acquire, list, info, sessions, release)`);
  const needsName = sub === 'acquire' || sub === 'info' || sub === 'release';
  positionalsAtMost(args, needsName ? 2 : 1);
  const lockName = (): string => {
    if (name === undefined) throw new UsageError(`dsync lock ${sub} needs a lock NAME`);
    const problem = lockNameProblem(name);
    if (problem !== null) throw new UsageError(`lock NAME "${printable(name)}": ${problem}`);
    return name;
  };
  if (needsName) lockName();
  const ttlMs = msFlag(args, 'ttl', sessionTtlMsMin, sessionTtlMsMax);
  const waitMs = msFlag(args, 'wait');
  const holdMs = msFlag(args, 'hold');
  if (sub === 'release' && !args.switches.has('force')) throw new UsageError('release takes a lock from its holder; add --force to confirm');
  const client = await Client.connect({ ...clientOptionsFrom(args), ...(ttlMs === undefined ? {} : { sessionTtlMs: ttlMs }) });
  try {
    switch (sub as Sub) {
      case 'acquire':
        return await acquire(client, lockName(), args.switches.has('shared') ? 'shared' : 'exclusive', waitMs, holdMs, json);
      case 'list':
      case 'info': {
        const locks = await client.locks.info(sub === 'info' ? lockName() : '');
        if (json) {
          process.stdout.write(JSON.stringify(locks, null, 2) + '\n');
          return 0;
        }
        if (locks.length === 0) {
          process.stdout.write(sub === 'info' ? `lock ${printable(name ?? '')} is free and has no waiters\n` : '(no locks held or awaited)\n');
          return 0;
        }
        for (const l of locks) {
          process.stdout.write(`${printable(l.name)}  last token ${l.lastToken}${l.delayUntilMs > 0 ? `  delayed until ${new Date(l.delayUntilMs).toISOString()}` : ''}\n`);
          for (const h of l.holders) process.stdout.write(`  holder  session ${h.session}  ${h.mode}  x${h.count}  token ${h.token}\n`);
          l.waiters.forEach((w, i) => process.stdout.write(`  waiter ${i + 1}  session ${w.session}  ${w.mode}\n`));
        }
        return 0;
      }
      case 'sessions': {
        const sessions = await client.locks.sessions();
        if (json) process.stdout.write(JSON.stringify(sessions, null, 2) + '\n');
        else if (sessions.length === 0) process.stdout.write('(no sessions)\n');
        else {
          for (const s of sessions) {
            process.stdout.write(`session ${s.session}  client ${printable(s.clientId)}  ttl ${s.ttlMs} ms  holds ${s.holds.map(printable).join(',') || '-'}  waits ${s.waits}\n`);
          }
        }
        return 0;
      }
      case 'release': {
        const n = lockName();
        await client.locks.forceRelease(n);
        process.stdout.write(json ? `${JSON.stringify({ forceReleased: n })}\n` : `force-released ${printable(n)}\n`);
        return 0;
      }
    }
  } finally {
    await client.close();
  }
}

/** Takes the lock and holds it until --hold passes, the lock is lost, or the first SIGINT/SIGTERM; then releases it. */
async function acquire(client: Client, name: string, mode: 'shared' | 'exclusive', waitMs: number | undefined, holdMs: number | undefined,
  json: boolean): Promise<number> {
  const abort = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => abort.abort(new DsyncError(ErrorCode.CANCELLED, `interrupted by ${signal}`));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    let lock;
    try {
      lock = await client.lock(name, { mode, signal: abort.signal, ...(waitMs === undefined ? {} : { waitMs }) });
    } catch (err) {
      if (!abort.signal.aborted) throw err;
      process.stderr.write(json ? `${JSON.stringify({ error: { code: ErrorCode.CANCELLED, message: `gave up waiting for ${name}: interrupted` } })}\n`
        : `gave up waiting for ${printable(name)} (interrupted)\n`);
      return interruptedExitCode;
    }
    process.stdout.write(json ? JSON.stringify({ lock: lock.name, mode: lock.mode, token: lock.token }) + '\n'
      : `acquired ${printable(lock.name)} (${lock.mode}) fencing token ${lock.token}\n`);
    const lost = lock.lost.then((err) => `lost: ${err.message}`);
    const interrupted = new Promise<string>((r) => {
      if (abort.signal.aborted) r('interrupted');
      else abort.signal.addEventListener('abort', () => r('interrupted'), { once: true });
    });
    let holdTimer: NodeJS.Timeout | undefined;
    const held = holdMs === undefined ? [] : [new Promise<string>((r) => { holdTimer = setTimeout(() => r('hold time over'), holdMs); })];
    const why = await Promise.race([lost, interrupted, ...held]);
    clearTimeout(holdTimer);
    await lock.release();
    process.stdout.write(json ? `${JSON.stringify({ released: lock.name, why })}\n` : `released ${printable(lock.name)} (${why})\n`);
    return why.startsWith('lost') ? 1 : 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
