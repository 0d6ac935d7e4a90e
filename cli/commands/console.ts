// `dsync console`: pipes the terminal to a node's text console port (nc-like).

import { connect } from 'node:net';
import { parsePort } from '../../server/node/config.js';
import { UsageError } from '../args.js';
import type { Command } from '../command.js';

export const consoleCommand: Command = {
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
};
