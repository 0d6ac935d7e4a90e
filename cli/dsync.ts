// The `dsync` command: a table of command groups (cli/commands/, one module
// each) and the dispatcher that parses flags, runs one and maps errors to exit
// codes: 2 and the command's usage for a usage error, errors as JSON with --json.

import { readFileSync } from 'node:fs';
import { DsyncError } from '../protocol/errors.js';
import { ConfigError } from '../server/node/config.js';
// The error classes come from their own small modules: importing server/main.js here would
// load the whole node (about a second) for every client command.
import { StartError } from '../server/node/listen.js';
import { WalCorruptionError } from '../server/storage/errors.js';
import { FeatureVersionError, featureVersionExitCode } from '../server/node/version.js';
import { parseArgs, UsageError } from './args.js';
import { type Command, positionalsAtMost, printable } from './command.js';
import { cacheCommand } from './commands/cache.js';
import { clusterCommand } from './commands/cluster.js';
import { consoleCommand } from './commands/console.js';
import { lockCommand } from './commands/lock.js';
import { nodeCommand } from './commands/node.js';
import { pingCommand } from './commands/ping.js';
import { consumeCommand, dlqCommand, publishCommand, topicCommand } from './commands/queue.js';
import { statusCommand } from './commands/status.js';

/** In the order `dsync --help` lists them. */
const commands: Record<string, Command> = {
  node: nodeCommand,
  cluster: clusterCommand,
  status: statusCommand,
  ping: pingCommand,
  lock: lockCommand,
  cache: cacheCommand,
  topic: topicCommand,
  publish: publishCommand,
  consume: consumeCommand,
  dlq: dlqCommand,
  console: consoleCommand,
};

/** This package's version, from the package.json next to dist/ (shipped in the package). */
function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
  return typeof pkg.version === 'string' ? pkg.version : 'unknown';
}

const versionCommand: Command = {
  usage: 'dsync version [--json]',
  summary: "print dsync's version (also: dsync --version)",
  help: 'Options:\n  --json   machine-readable output',
  valueFlags: [],
  switchFlags: ['json'],
  run: (args) => {
    positionalsAtMost(args, 0);
    process.stdout.write(args.switches.has('json') ? `${JSON.stringify({ version: packageVersion(), node: process.version })}\n`
      : `dsync ${packageVersion()} (node ${process.version})\n`);
    return Promise.resolve(0);
  },
};
commands['version'] = versionCommand;

function helpText(): string {
  const rows = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(9)} ${c.summary}`);
  return ['usage: dsync <command> [options]', '', 'commands:', ...rows, '',
    "'dsync <command> --help' shows a command's options; 'dsync --version' the version.",
    'Commands that talk to the cluster also take --token TOKEN (env DSYNC_TOKEN) for nodes started with --auth-file,',
    'and --tls-ca FILE (env DSYNC_TLS_CA) for nodes started with --tls-cert.'].join('\n') + '\n';
}

/** Exit code of a usage error (bad flag, missing or extra argument), as in getopt tools. */
const usageExitCode = 2;

/**
 * Prints an error on stderr: a line (`dsync NAME: [CODE: ]message`, control characters escaped),
 * or with --json one object `{"error":{"code","message"}}` (codes: a DsyncError's, or USAGE, CONFIG, START, WAL_CORRUPTION).
 */
function printError(name: string, json: boolean, code: string, message: string, showCode: boolean): void {
  process.stderr.write(json ? `${JSON.stringify({ error: { code, message } })}\n` : `dsync ${name}: ${showCode ? `${code}: ` : ''}${printable(message)}\n`);
}

async function main(argv: readonly string[]): Promise<number> {
  const name = argv[0] === '--version' || argv[0] === '-V' ? 'version' : argv[0];
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    // Bare `dsync` is a usage error: the help goes to stderr and the exit code says so.
    if (name === undefined) process.stderr.write(helpText());
    else process.stdout.write(helpText());
    return name === undefined ? usageExitCode : 0;
  }
  const command = commands[name];
  if (command === undefined) {
    process.stderr.write(`dsync: unknown command '${name}'\n${helpText()}`);
    return usageExitCode;
  }
  const rest = argv.slice(1);
  const json = rest.includes('--json');
  if (rest.includes('--help') || rest.includes('-h')) {
    const sub = command.subcommands?.[rest[0] ?? ''];
    process.stdout.write(sub === undefined ? `usage: ${command.usage}\n\n${command.summary}\n\n${command.help}\n`
      : `usage: ${sub.usage}\n\n${sub.help}\n`);
    return 0;
  }
  try {
    return await command.run(parseArgs(rest, command.valueFlags, command.switchFlags));
  } catch (err) {
    if (err instanceof UsageError) {
      printError(name, json, 'USAGE', err.message, false);
      if (!json) process.stderr.write(`usage: ${command.usage}\n'dsync ${name} --help' shows the options.\n`);
      return usageExitCode;
    }
    if (err instanceof ConfigError) {
      printError(name, json, 'CONFIG', err.message, false);
      return usageExitCode;
    }
    if (err instanceof DsyncError) {
      printError(name, json, err.code, err.message, true);
      return 1;
    }
    if (err instanceof StartError) {
      printError(name, json, 'START', err.message, false);
      return 1;
    }
    if (err instanceof FeatureVersionError) {
      printError(name, json, 'FEATURE_VERSION', `refusing to start: ${err.message}`, false);
      return featureVersionExitCode;
    }
    if (err instanceof WalCorruptionError) {
      printError(name, json, 'WAL_CORRUPTION', `refusing to start: ${err.message}`, false);
      return 3;
    }
    throw err;
  }
}

/** How long a finished command may take to wind down before it is made to exit (a failed start must not linger). */
const exitGraceMs = 500;

main(process.argv.slice(2)).then((code) => {
  if (code < 0) return;
  process.exitCode = code;
  // Exits on its own when nothing is left; if something still holds the event loop, the timer ends it.
  setTimeout(() => process.exit(code), exitGraceMs).unref();
}, (err: unknown) => {
  process.stderr.write(`dsync: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 1;
});
