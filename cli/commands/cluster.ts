// `dsync cluster`: a local cluster of `dsync node` child processes n1..nN on
// consecutive ports, for development. The supervisor trusts only its own
// children: a node is up when its own process reports over the IPC channel that
// it listens (not when something answers on the port), a child that dies during
// start fails the whole start naming it and its last words, a child that dies
// later is restarted with backoff (--no-restart to disable). Children run in their
// own process groups, so Ctrl-C reaches the supervisor alone, which stops each
// node once and reports it; children watch the IPC channel, so they stop when
// the supervisor dies however it dies.

import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '../../client/index.js';
import { clusterNodesMax, clusterRestartBackoffMsMax, clusterRestartBackoffMsMin, clusterRestartStableMs, clusterStartMsMax,
  clusterStopGraceMs } from '../../core/constants.js';
import { environmentWithEnvFile, parsePort } from '../../server/node/config.js';
import { featureVersionExitCode } from '../../server/node/version.js';
import { type ParsedArgs, UsageError } from '../args.js';
import { clientValueFlags, type Command, intFlag, positionalsAtMost } from '../command.js';
import { runMembership } from './members.js';

/** The CLI entry point the children run (dist/cli/dsync.js). */
const cliPath = join(dirname(fileURLToPath(import.meta.url)), '..', 'dsync.js');

/** What a supervised node sends its supervisor over the IPC channel once it listens (cli/commands/node.ts). */
export interface NodeListening {
  readonly kind: 'listening';
  readonly nodeId: string;
  readonly ports: { readonly port: number; readonly httpPort: number; readonly consolePort: number };
}

export function isNodeListening(m: unknown): m is NodeListening {
  return typeof m === 'object' && m !== null && (m as { kind?: unknown }).kind === 'listening';
}

export const clusterCommand: Command = {
  usage: 'dsync cluster [--nodes 3] [--base-port 7401] [--data-dir ./data] [--no-restart] [--verbose] | dsync cluster members|remove NODE_ID [--seeds ...]',
  summary: 'start a local cluster of child processes n1..nN (Ctrl-C stops them all); list or remove members',
  help: `Subcommands (against a running cluster):
  members          every member of group 0: role (voter/learner), address, reachable from the leader
  remove NODE_ID   remove a member; refused (WOULD_LOSE_QUORUM) when group 0 would be left without
                   a quorum of reachable voters; removing the leader hands leadership over first
  --seeds LIST     addresses to start from (env DSYNC_SEEDS)   127.0.0.1:7401
  --json           machine-readable output

Options (starting a local cluster):
  --nodes N              how many nodes (1-${clusterNodesMax})                        3
  --base-port P          n1 listens on P, n2 on P+1, ...                7401
  --http-base-port P     n1's HTTP port; n2 on P+1, ...                 base port + 1000
  --console-base-port P  n1's console port; n2 on P+1, ...              base port + 2000
  --data-dir DIR         parent of each node's data directory          ./data
  --no-restart           report a node that dies, but do not restart it (default: restart with
                         backoff from ${clusterRestartBackoffMsMin} ms doubling to ${clusterRestartBackoffMsMax} ms)
  --env-file FILE        NAME=value settings for every node (ELECTION_TIMEOUT_MIN, LOG_LEVEL, ...)   ./.env when present
  --verbose              copy the nodes' logs to this terminal (they always go to DIR/nK/node.log)
Every node's ports are set by these flags: an inherited PORT or HTTP_PORT does not apply.
Ctrl-C (or SIGTERM, SIGHUP) stops each node once and reports it; if the supervisor dies, its nodes stop.`,
  valueFlags: ['nodes', 'base-port', 'http-base-port', 'console-base-port', 'data-dir', 'host', ...clientValueFlags, 'env-file'],
  switchFlags: ['verbose', 'json', 'no-restart'],
  subcommands: {
    members: { usage: 'dsync cluster members [--seeds LIST] [--json]', help: 'Every member of group 0: role (voter/learner), address, reachable from the leader.' },
    remove: { usage: 'dsync cluster remove NODE_ID [--seeds LIST] [--json]',
      help: 'Removes a member; refused (WOULD_LOSE_QUORUM) when group 0 would be left without a quorum of reachable voters.' },
  },
  run: (args) => {
    const sub = args.positionals[0];
    if (sub === 'members' || sub === 'remove') return runMembership(args);
    if (sub !== undefined) return Promise.reject(new UsageError(`unknown subcommand '${sub}' (members, remove NODE_ID, or none to start a local cluster)`));
    return runCluster(args);
  },
};

/** One node the supervisor runs: its fixed command line and its current process. */
interface Member {
  readonly id: string;
  readonly args: readonly string[];
  readonly address: string;
  readonly log: WriteStream;
  child: ChildProcess | null;
  /** Last stderr line of the current process: why it exited, when it did. */
  lastLine: string;
  listening: boolean;
  /** The current process exited and its exit was handled (reported, restart scheduled). */
  settled: boolean;
  startedAtMs: number;
  restarts: number;
  backoffMs: number;
  /** Exited in a way that is not restarted (--no-restart, or an exit code a restart cannot fix). */
  gaveUp: boolean;
}

/** `dsync node` exit codes a restart cannot fix: 2 bad settings, 3 a damaged write-ahead log, 4 a feature version below the cluster's (cli/dsync.ts). */
const notRestartedExitCodes = new Set([2, 3, featureVersionExitCode]);

function alive(c: ChildProcess | null): boolean {
  return c !== null && c.exitCode === null && c.signalCode === null;
}

function exitText(code: number | null, signal: NodeJS.Signals | null): string {
  return signal !== null ? `signal ${signal}` : `code ${code ?? '?'}`;
}

async function runCluster(args: ParsedArgs): Promise<number> {
  positionalsAtMost(args, 0);
  const count = intFlag(args, 'nodes', 1, clusterNodesMax) ?? 3;
  const basePort = parsePort(args.flags.get('base-port') ?? '7401', '--base-port');
  const httpBase = args.flags.has('http-base-port') ? parsePort(args.flags.get('http-base-port') ?? '', '--http-base-port') : basePort + 1000;
  const consoleBase = args.flags.has('console-base-port') ? parsePort(args.flags.get('console-base-port') ?? '', '--console-base-port') : basePort + 2000;
  for (const [flag, base] of [['--base-port', basePort], ['--http-base-port', httpBase], ['--console-base-port', consoleBase]] as const) {
    if (base < 1 || base + count - 1 > 65535) throw new UsageError(`${flag} ${base} leaves no room for ${count} nodes (ports 1-65535)`);
  }
  const ranges = [basePort, httpBase, consoleBase].map((b) => [b, b + count - 1] as const);
  if (ranges.some(([lo, hi], i) => ranges.some(([lo2, hi2], j) => i !== j && lo <= hi2 && lo2 <= hi))) {
    throw new UsageError(`the client (${basePort}), HTTP (${httpBase}) and console (${consoleBase}) port ranges of ${count} nodes overlap`);
  }
  const host = args.flags.get('host') ?? '127.0.0.1';
  const dataRoot = resolve(args.flags.get('data-dir') ?? 'data');
  const verbose = args.switches.has('verbose');
  const restart = !args.switches.has('no-restart');
  const ids = Array.from({ length: count }, (_, i) => `n${i + 1}`);
  // Read (and checked) here, so a malformed line stops the start before any node runs; each node reads the same file.
  const envFile = environmentWithEnvFile(args.flags.get('env-file')).file;
  let stopping = false;

  const members: Member[] = ids.map((id, i) => {
    const peers = ids.flatMap((pid, j) => (j === i ? [] : [`${pid}@${host}:${basePort + j}`])).join(',');
    const dataDir = join(dataRoot, id);
    mkdirSync(dataDir, { recursive: true });
    const address = `${host}:${basePort + i}`;
    // Every setting that would break the cluster if inherited from the environment is a flag (flags win).
    const nodeArgs = ['node', '--id', id, '--host', host, '--port', String(basePort + i), '--http-port', String(httpBase + i),
      '--console-port', String(consoleBase + i), '--peers', peers, '--data-dir', dataDir, '--advertise', address,
      ...(envFile === null ? [] : ['--env-file', envFile])];
    return { id, args: nodeArgs, address, log: createWriteStream(join(dataDir, 'node.log'), { flags: 'a' }), child: null, lastLine: '',
      listening: false, settled: false, startedAtMs: 0, restarts: 0, backoffMs: clusterRestartBackoffMsMin, gaveUp: false };
  });

  let onChange: () => void = () => {};
  const changed = (): void => onChange();
  const spawnMember = (m: Member): void => {
    const child = spawn(process.execPath, [cliPath, ...m.args], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], detached: true });
    m.child = child;
    m.listening = false;
    m.settled = false;
    m.lastLine = '';
    m.startedAtMs = Date.now();
    child.stdout?.pipe(m.log, { end: false });
    child.stderr?.pipe(m.log, { end: false });
    child.stderr?.on('data', (b: Buffer) => {
      const lines = b.toString().split('\n').filter((l) => l.length > 0);
      const last = lines[lines.length - 1];
      if (last !== undefined) m.lastLine = last;
      if (verbose) process.stderr.write(lines.map((l) => `[${m.id}] ${l}\n`).join(''));
    });
    child.on('message', (msg: unknown) => {
      if (isNodeListening(msg) && msg.nodeId === m.id && m.child === child) {
        m.listening = true;
        if (upAnnounced) process.stderr.write(`node ${m.id} is back (pid ${child.pid ?? '?'})\n`);
        changed();
      }
    });
    child.on('error', () => {}); // a failed spawn also emits 'exit'
    child.on('exit', (code, signal) => {
      // Let its last words arrive before quoting them.
      setTimeout(() => {
        if (m.child === child) {
          m.settled = true;
          onExit(m, code, signal);
        }
        changed();
      }, 50);
    });
  };

  const restartTimers = new Set<NodeJS.Timeout>();
  let upAnnounced = false;
  let failedAfterStart = false;
  const onExit = (m: Member, code: number | null, signal: NodeJS.Signals | null): void => {
    // A node's own last words explain an exit it chose; after a signal they are just its last log line.
    const why = `${exitText(code, signal)}${m.lastLine === '' || signal !== null ? '' : `: ${m.lastLine}`}`;
    if (stopping) {
      process.stdout.write(code === 0 ? `${m.id} stopped\n` : `${m.id} exited while stopping (${why})\n`);
      if (code !== 0) failedAfterStart = true;
      return;
    }
    if (!upAnnounced) return; // the start loop reports it
    if (!restart || (signal === null && code !== null && notRestartedExitCodes.has(code))) {
      const reason = restart ? 'not restarted: a restart cannot fix bad settings or a damaged log' : 'not restarted (--no-restart)';
      process.stderr.write(`node ${m.id} exited (${why}); ${reason}; see ${join(dataRoot, m.id, 'node.log')}\n`);
      failedAfterStart = true;
      m.gaveUp = true;
      return;
    }
    // A node that stayed up a while starts its backoff over.
    if (Date.now() - m.startedAtMs >= clusterRestartStableMs) m.backoffMs = clusterRestartBackoffMsMin;
    const delay = m.backoffMs;
    m.backoffMs = Math.min(m.backoffMs * 2, clusterRestartBackoffMsMax);
    m.restarts++;
    process.stderr.write(`node ${m.id} exited (${why}); restarting it in ${delay} ms (restart ${m.restarts})\n`);
    const timer = setTimeout(() => {
      restartTimers.delete(timer);
      if (!stopping) spawnMember(m);
    }, delay);
    restartTimers.add(timer);
  };

  /** Every process exited and its exit was reported. */
  const allSettled = (): boolean => members.every((m) => m.child === null || m.settled);
  const allExited = (): Promise<void> => new Promise((r) => {
    const check = (): void => {
      if (allSettled()) r();
    };
    onChange = check;
    check();
  });
  let killTimer: NodeJS.Timeout | undefined;
  /** Stops each running node once (SIGTERM to its process), SIGKILL after the grace period. */
  const stopAll = (signal: NodeJS.Signals | 'start failure'): void => {
    if (stopping) {
      const left = members.filter((m) => alive(m.child)).map((m) => m.id);
      process.stdout.write(`still stopping (${signal}): waiting for ${left.join(', ') || 'nothing'}\n`);
      return;
    }
    stopping = true;
    for (const t of restartTimers) clearTimeout(t);
    restartTimers.clear();
    process.stdout.write(`\nstopping the cluster (${signal})...\n`);
    for (const m of members) if (alive(m.child)) m.child?.kill('SIGTERM');
    killTimer = setTimeout(() => {
      for (const m of members) {
        if (alive(m.child)) {
          process.stdout.write(`${m.id} did not stop within ${clusterStopGraceMs} ms; killing it\n`);
          m.child?.kill('SIGKILL');
        }
      }
    }, clusterStopGraceMs);
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => stopAll(signal));

  for (const m of members) spawnMember(m);

  // Up means: each of our own children said it listens, and its address answers as that node.
  const readyDeadline = Date.now() + clusterStartMsMax;
  for (const m of members) {
    for (;;) {
      if (stopping) break;
      if (!alive(m.child)) {
        await new Promise((r) => setTimeout(r, 60));
        const child = m.child;
        return failStart(m.id, `it exited (${exitText(child?.exitCode ?? null, child?.signalCode ?? null)})${m.lastLine === '' ? '' : `: ${m.lastLine}`}`);
      }
      if (m.listening && await answersAs(m.address, m.id)) break;
      if (Date.now() > readyDeadline) {
        return failStart(m.id, m.listening ? `its process listens, but ${m.address} did not answer as ${m.id} within ${clusterStartMsMax} ms`
          : `its process did not report listening within ${clusterStartMsMax} ms`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async function failStart(id: string, why: string): Promise<number> {
    process.stderr.write(`dsync cluster: node ${id} did not start: ${why}\n`);
    stopAll('start failure');
    await allExited();
    clearTimeout(killTimer);
    return 1;
  }

  if (!stopping) {
    upAnnounced = true;
    const lines = [`dsync local cluster: ${count} node${count === 1 ? '' : 's'} up`, ''];
    members.forEach((m, i) => {
      lines.push(`  ${m.id}  client ${m.address}   http http://${host}:${httpBase + i}/readyz   console ${host}:${consoleBase + i}   data ${join(dataRoot, m.id)}   pid ${m.child?.pid ?? '?'}`);
    });
    lines.push('', 'Connect:',
      `  CLI:      npx dsync status --seeds ${members.map((m) => m.address).join(',')}`,
      `  Console:  npx dsync console ${host}:${consoleBase}      (or: nc ${host} ${consoleBase})`,
      `  Library:  const client = await Client.connect({ seeds: ['${members[0]?.address ?? ''}'] })   // import { Client } from 'dsync'`,
      '', `Node logs: ${dataRoot}/nK/node.log. ${restart ? 'A node that dies is restarted. ' : ''}Ctrl-C stops every node.`, '');
    process.stdout.write(lines.join('\n'));
  }

  // Runs until stopped, or until no node runs or will be restarted.
  await new Promise<void>((r) => {
    const check = (): void => {
      // Runs while some node runs or will be restarted.
      if (allSettled() && (stopping || members.every((m) => m.gaveUp))) r();
    };
    onChange = check;
    check();
  });
  clearTimeout(killTimer);
  for (const m of members) m.log.end();
  if (stopping) process.stdout.write(failedAfterStart ? 'cluster stopped; some nodes did not stop cleanly\n' : `cluster stopped: ${count} of ${count} nodes stopped cleanly\n`);
  return stopping && !failedAfterStart ? 0 : 1;
}

/** Whether the node at `address` answers a status request as `id`. */
async function answersAs(address: string, id: string): Promise<boolean> {
  try {
    const c = await Client.connect({ seeds: [address], connectTimeoutMs: 500, requestTimeoutMs: 1000 });
    try {
      return (await c.status(address)).nodeId === id;
    } finally {
      await c.close();
    }
  } catch {
    return false;
  }
}
