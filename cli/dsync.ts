// The `dsync` command: start a node or a local cluster (server side), and talk
// to a cluster through the client library (status, ping, console).

import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import { connect } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '../client/index.js';
import { DsyncError } from '../protocol/errors.js';
import { ConfigError, loadConfig, parsePort, type RawSettings, type SettingName } from '../server/node/config.js';
import { startNode, stopOnSignals } from '../server/main.js';
import { WalCorruptionError } from '../server/storage/wal.js';
import { parseArgs, UsageError } from './args.js';

const cliPath = fileURLToPath(import.meta.url);

interface Command {
  readonly usage: string;
  readonly summary: string;
  readonly help: string;
  readonly valueFlags: readonly string[];
  readonly switchFlags: readonly string[];
  run(args: ReturnType<typeof parseArgs>): Promise<number>;
}

const nodeFlags: readonly SettingName[] = ['id', 'host', 'port', 'http-port', 'console-port', 'peers', 'data-dir', 'log-level', 'advertise', 'config'];

const commands: Record<string, Command> = {
  node: {
    usage: 'dsync node --id n1 [--port 7401] [--peers n2@127.0.0.1:7402,...] [--data-dir ./data/n1]',
    summary: 'run one node in the foreground',
    help: `Options (flags override environment, which overrides the config file):
  --id ID              node id (env NODE_ID)                           required
  --host HOST          interface to bind (env HOST)                    127.0.0.1
  --port N             binary protocol port, clients and peers (PORT)  7401
  --http-port N        HTTP port: /healthz (HTTP_PORT)                 port+1000
  --console-port N     text console port (CONSOLE_PORT)                port+2000
  --peers LIST         other members: id@host:port,... (PEERS)
  --data-dir DIR       where the node keeps its log (DATA_DIR)         ./data/ID
  --log-level LEVEL    debug|info|warn|error (LOG_LEVEL)               info
  --advertise H:P      address clients should use for this node (ADVERTISE)   host:port
  --config FILE        JSON file with the same settings (DSYNC_CONFIG)`,
    valueFlags: nodeFlags,
    switchFlags: [],
    async run(args) {
      const raw: RawSettings = {};
      for (const name of nodeFlags) {
        const v = args.flags.get(name);
        if (v !== undefined) raw[name] = v;
      }
      const config = loadConfig(raw);
      const { node, ports } = await startNode(config);
      stopOnSignals(node);
      process.stdout.write(`dsync node ${config.nodeId} listening on ${config.host}:${ports.port} (http ${ports.httpPort}, console ${ports.consolePort})\n`);
      return -1; // keep running
    },
  },
  cluster: {
    usage: 'dsync cluster [--nodes 3] [--base-port 7401] [--data-dir ./data] [--verbose]',
    summary: 'start a local cluster of child processes n1..nN; Ctrl-C stops them all',
    help: `Options:
  --nodes N        how many nodes (1-9)                        3
  --base-port P    n1 listens on P, n2 on P+1, ...; HTTP on +1000, console on +2000   7401
  --data-dir DIR   parent of each node's data directory       ./data
  --verbose        copy the nodes' logs to this terminal (they always go to DIR/nK/node.log)`,
    valueFlags: ['nodes', 'base-port', 'data-dir', 'host'],
    switchFlags: ['verbose'],
    run: runCluster,
  },
  status: {
    usage: 'dsync status [--seeds host:port,...]',
    summary: "print every member's view of the cluster",
    help: `Options:
  --seeds LIST   addresses to start from (env DSYNC_SEEDS)   127.0.0.1:7401
  --json         machine-readable output`,
    valueFlags: ['seeds'],
    switchFlags: ['json'],
    async run(args) {
      const client = await Client.connect({ seeds: seedsFrom(args) });
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
        for (const v of views) {
          if ('error' in v) {
            process.stdout.write(`${v.nodeId.padEnd(6)} ${v.address.padEnd(21)} UNREACHABLE (${v.error})\n`);
            continue;
          }
          const g0 = v.groups.find((g) => g.group === 0);
          const raft = g0 === undefined ? '' : ` role=${g0.role} term=${g0.term} commit=${g0.commit} applied=${g0.applied}`;
          process.stdout.write(`${v.nodeId.padEnd(6)} ${v.address.padEnd(21)} up ${Math.round(v.uptimeMs / 1000)}s leader=${v.leaderId === '' ? '-' : v.leaderId}${raft}\n`);
        }
        return views.some((v) => 'error' in v) ? 1 : 0;
      } finally {
        await client.close();
      }
    },
  },
  ping: {
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
  },
  lock: {
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
  },
  console: {
    usage: 'dsync console [host:port]',
    summary: "open a node's text console (same as: nc host port)",
    help: 'The console port is the node port + 2000 by default (127.0.0.1:9401 for n1).',
    valueFlags: [],
    switchFlags: [],
    async run(args) {
      const target = args.positionals[0] ?? '127.0.0.1:9401';
      const m = /^(.*):(\d+)$/.exec(target);
      if (m === null) throw new UsageError(`"${target}" is not host:port`);
      const socket = connect({ host: m[1] === '' ? '127.0.0.1' : m[1]!, port: parsePort(m[2]!, 'console address') });
      return await new Promise<number>((done) => {
        socket.on('error', (err) => {
          process.stderr.write(`cannot reach console at ${target}: ${err.message}\n`);
          done(1);
        });
        socket.on('close', () => done(0));
        socket.pipe(process.stdout);
        process.stdin.pipe(socket);
      });
    },
  },
};

function msFlag(args: ReturnType<typeof parseArgs>, name: string): number | undefined {
  const text = args.flags.get(name);
  if (text === undefined) return undefined;
  const ms = Number(text);
  if (!Number.isInteger(ms) || ms < 0) throw new UsageError(`--${name} must be a whole number of milliseconds`);
  return ms;
}

async function runLock(args: ReturnType<typeof parseArgs>): Promise<number> {
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

function seedsFrom(args: ReturnType<typeof parseArgs>): string[] {
  const text = args.flags.get('seeds') ?? process.env['DSYNC_SEEDS'] ?? '127.0.0.1:7401';
  return text.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
}

async function runCluster(args: ReturnType<typeof parseArgs>): Promise<number> {
  const count = Number(args.flags.get('nodes') ?? '3');
  if (!Number.isInteger(count) || count < 1 || count > 9) throw new UsageError('--nodes must be an integer in 1..9');
  const basePort = parsePort(args.flags.get('base-port') ?? '7401', '--base-port');
  if (basePort < 1 || basePort + count - 1 + 2000 > 65535) throw new UsageError('--base-port leaves no room for the node, HTTP and console ports');
  const host = args.flags.get('host') ?? '127.0.0.1';
  const dataRoot = resolve(args.flags.get('data-dir') ?? 'data');
  const verbose = args.switches.has('verbose');
  const ids = Array.from({ length: count }, (_, i) => `n${i + 1}`);
  const portOf = (i: number): number => basePort + i;
  const children: ChildProcess[] = [];
  let stopping = false;

  for (let i = 0; i < count; i++) {
    const id = ids[i]!;
    const peers = ids.map((pid, j) => ({ pid, j })).filter(({ j }) => j !== i).map(({ pid, j }) => `${pid}@${host}:${portOf(j)}`).join(',');
    const dataDir = join(dataRoot, id);
    mkdirSync(dataDir, { recursive: true });
    const logFile = createWriteStream(join(dataDir, 'node.log'), { flags: 'a' });
    const child = spawn(process.execPath, [cliPath, 'node', '--id', id, '--host', host, '--port', String(portOf(i)), '--peers', peers,
      '--data-dir', dataDir], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.pipe(logFile, { end: false });
    child.stderr?.pipe(logFile, { end: false });
    if (verbose) {
      child.stderr?.on('data', (b: Buffer) => process.stderr.write(b.toString().split('\n').filter((l) => l.length > 0).map((l) => `[${id}] ${l}\n`).join('')));
    }
    child.on('exit', (code, signal) => {
      if (!stopping) process.stderr.write(`node ${id} exited (${signal ?? `code ${code}`}); see ${join(dataDir, 'node.log')}\n`);
    });
    children.push(child);
  }

  const stopAll = (): void => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('\nstopping the cluster...\n');
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  };
  process.on('SIGINT', stopAll);
  process.on('SIGTERM', stopAll);

  const seeds = ids.map((_, i) => `${host}:${portOf(i)}`);
  const readyDeadline = Date.now() + 20_000;
  for (const seed of seeds) {
    for (;;) {
      try {
        const c = await Client.connect({ seeds: [seed], connectTimeoutMs: 500 });
        await c.ping();
        await c.close();
        break;
      } catch (err) {
        if (Date.now() > readyDeadline || stopping) {
          process.stderr.write(`node at ${seed} did not come up: ${(err as Error).message}\n`);
          stopAll();
          return 1;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  const lines = [`dsync local cluster: ${count} node${count === 1 ? '' : 's'} up`, ''];
  ids.forEach((id, i) => {
    lines.push(`  ${id}  client ${host}:${portOf(i)}   http http://${host}:${portOf(i) + 1000}/healthz   console ${host}:${portOf(i) + 2000}   data ${join(dataRoot, id)}`);
  });
  lines.push('', 'Connect:',
    `  CLI:      npx dsync status --seeds ${seeds.join(',')}`,
    `  Console:  npx dsync console ${host}:${basePort + 2000}      (or: nc ${host} ${basePort + 2000})`,
    `  Library:  const client = await Client.connect({ seeds: ['${seeds[0]}'] })   // import { Client } from 'dsync'`,
    '', `Node logs: ${dataRoot}/nK/node.log. Ctrl-C stops every node.`, '');
  process.stdout.write(lines.join('\n'));

  await Promise.all(children.map((c) => new Promise<void>((r) => (c.exitCode !== null ? r() : c.once('exit', () => r())))));
  return stopping ? 0 : 1;
}

function printHelp(): void {
  const rows = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(9)} ${c.summary}`);
  process.stdout.write(['usage: dsync <command> [options]', '', 'commands:', ...rows, '',
    "'dsync <command> --help' shows a command's options."].join('\n') + '\n');
}

async function main(argv: readonly string[]): Promise<number> {
  const name = argv[0];
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    printHelp();
    return name === undefined ? 1 : 0;
  }
  const command = commands[name];
  if (command === undefined) {
    process.stderr.write(`dsync: unknown command '${name}'\n`);
    printHelp();
    return 2;
  }
  const rest = argv.slice(1);
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`usage: ${command.usage}\n\n${command.summary}\n\n${command.help}\n`);
    return 0;
  }
  try {
    return await command.run(parseArgs(rest, command.valueFlags, command.switchFlags));
  } catch (err) {
    if (err instanceof ConfigError || err instanceof UsageError) {
      process.stderr.write(`dsync ${name}: ${err.message}\n`);
      return 2;
    }
    if (err instanceof DsyncError) {
      process.stderr.write(`dsync ${name}: ${err.code}: ${err.message}\n`);
      return 1;
    }
    if (err instanceof WalCorruptionError) {
      process.stderr.write(`dsync ${name}: refusing to start: ${err.message}\n`);
      return 3;
    }
    throw err;
  }
}

main(process.argv.slice(2)).then((code) => {
  if (code >= 0) process.exitCode = code;
}, (err: unknown) => {
  process.stderr.write(`dsync: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 1;
});
