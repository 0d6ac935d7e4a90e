// The `dsync` command: a table of command groups (cli/commands/, one module
// each) and the dispatcher that parses flags, runs one and maps errors to exit codes.

import { DsyncError } from '../protocol/errors.js';
import { ConfigError } from '../server/node/config.js';
import { StartError } from '../server/main.js';
import { WalCorruptionError } from '../server/storage/wal.js';
import { parseArgs, UsageError } from './args.js';
import type { Command } from './command.js';
import { clusterCommand } from './commands/cluster.js';
import { consoleCommand } from './commands/console.js';
import { lockCommand } from './commands/lock.js';
import { nodeCommand } from './commands/node.js';
import { pingCommand } from './commands/ping.js';
import { consumeCommand, publishCommand, topicCommand } from './commands/queue.js';
import { statusCommand } from './commands/status.js';

/** In the order `dsync --help` lists them. */
const commands: Record<string, Command> = {
  node: nodeCommand,
  cluster: clusterCommand,
  status: statusCommand,
  ping: pingCommand,
  lock: lockCommand,
  topic: topicCommand,
  publish: publishCommand,
  consume: consumeCommand,
  console: consoleCommand,
};

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
    if (err instanceof StartError) {
      process.stderr.write(`dsync ${name}: ${err.message}\n`);
      return 1;
    }
    if (err instanceof WalCorruptionError) {
      process.stderr.write(`dsync ${name}: refusing to start: ${err.message}\n`);
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
