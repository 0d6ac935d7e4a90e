// `dsync cluster`: a local cluster of `dsync node` child processes n1..nN on
// consecutive ports, for development; Ctrl-C stops them all.

import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '../../client/index.js';
import { parsePort } from '../../server/node/config.js';
import { type ParsedArgs, UsageError } from '../args.js';
import type { Command } from '../command.js';
import { runMembership } from './members.js';

/** How long the nodes get to answer as themselves before the cluster gives up. */
const clusterStartMsMax = 20_000;

/** How long stopped nodes get to exit before they are killed. */
const clusterStopGraceMs = 5_000;

/** The CLI entry point the children run (dist/cli/dsync.js). */
const cliPath = join(dirname(fileURLToPath(import.meta.url)), '..', 'dsync.js');

export const clusterCommand: Command = {
  usage: 'dsync cluster [--nodes 3] [--base-port 7401] [--data-dir ./data] [--verbose] | dsync cluster members|remove NODE_ID [--seeds ...]',
  summary: 'start a local cluster of child processes n1..nN (Ctrl-C stops them all); list or remove members',
  help: `Subcommands (against a running cluster):
  members          every member of group 0: role (voter/learner), address, reachable from the leader
  remove NODE_ID   remove a member; refused (WOULD_LOSE_QUORUM) when group 0 would be left without
                   a quorum of reachable voters; removing the leader hands leadership over first
  --seeds LIST     addresses to start from (env DSYNC_SEEDS)   127.0.0.1:7401
  --json           machine-readable output

Options (starting a local cluster):
  --nodes N        how many nodes (1-9)                        3
  --base-port P    n1 listens on P, n2 on P+1, ...; HTTP on +1000, console on +2000   7401
  --data-dir DIR   parent of each node's data directory       ./data
  --verbose        copy the nodes' logs to this terminal (they always go to DIR/nK/node.log)`,
  valueFlags: ['nodes', 'base-port', 'data-dir', 'host', 'seeds'],
  switchFlags: ['verbose', 'json'],
  run: (args) => {
    const sub = args.positionals[0];
    if (sub === 'members' || sub === 'remove') return runMembership(args);
    if (sub !== undefined) return Promise.reject(new UsageError(`unknown subcommand '${sub}' (members, remove NODE_ID, or none to start a local cluster)`));
    return runCluster(args);
  },
};

async function runCluster(args: ParsedArgs): Promise<number> {
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
  /** Last stderr line of each child: why it exited, when it did. */
  const lastLines = new Map<string, string>();
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
    child.stderr?.on('data', (b: Buffer) => {
      const lines = b.toString().split('\n').filter((l) => l.length > 0);
      const last = lines[lines.length - 1];
      if (last !== undefined) lastLines.set(id, last);
      if (verbose) process.stderr.write(lines.map((l) => `[${id}] ${l}\n`).join(''));
    });
    child.on('exit', (code, signal) => {
      if (!stopping) process.stderr.write(`node ${id} exited (${signal ?? `code ${code}`}); see ${join(dataDir, 'node.log')}\n`);
    });
    children.push(child);
  }

  const stopAll = (): void => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('\nstopping the cluster...\n');
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  };
  process.on('SIGINT', stopAll);
  process.on('SIGTERM', stopAll);
  const allExited = (): Promise<void[]> =>
    Promise.all(children.map((c) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r())))));
  /** Reports the node that failed to start, stops the others and waits for them (SIGKILL after a grace period). */
  const failStart = async (id: string, why: string): Promise<number> => {
    process.stderr.write(`dsync cluster: node ${id} did not start: ${why}\n`);
    stopAll();
    const killTimer = setTimeout(() => { for (const c of children) if (c.exitCode === null) c.kill('SIGKILL'); }, clusterStopGraceMs);
    await allExited();
    clearTimeout(killTimer);
    return 1;
  };

  const seeds = ids.map((_, i) => `${host}:${portOf(i)}`);
  const readyDeadline = Date.now() + clusterStartMsMax;
  // Ready means: our own child is alive and the node answering on its port says it is that node.
  for (let i = 0; i < count; i++) {
    const id = ids[i]!;
    const child = children[i]!;
    const seed = seeds[i]!;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        // Let its last words arrive before quoting them.
        await new Promise((r) => setTimeout(r, 50));
        const last = lastLines.get(id);
        return await failStart(id, `it exited (${child.signalCode ?? `code ${child.exitCode}`})${last === undefined ? '' : `: ${last}`}`);
      }
      let answer = '';
      try {
        const c = await Client.connect({ seeds: [seed], connectTimeoutMs: 500, requestTimeoutMs: 1000 });
        try {
          answer = (await c.status(seed)).nodeId;
        } finally {
          await c.close();
        }
      } catch (err) {
        answer = `(${(err as Error).message})`;
      }
      if (answer === id && child.exitCode === null && child.signalCode === null) break;
      if (stopping) return 1;
      if (Date.now() > readyDeadline) {
        return await failStart(id, answer.startsWith('(') ? `${seed} did not answer within ${clusterStartMsMax} ms ${answer}`
          : `${seed} is answered by ${answer === '' ? 'something else' : `node ${answer}`}, not by ${id}`);
      }
      await new Promise((r) => setTimeout(r, 100));
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

  await allExited();
  return stopping ? 0 : 1;
}
