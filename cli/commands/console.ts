// `dsync console`: pipes the terminal to a node's text console port (nc-like),
// after checking that the port greets like a dsync console: a client or HTTP
// port says nothing first, so it would otherwise sit silent or answer gibberish.

import { connect } from 'node:net';
import { consoleBannerWaitMs } from '../../core/constants.js';
import { parsePort } from '../../server/node/config.js';
import { isConsoleBanner } from '../../server/node/console.js';
import { UsageError } from '../args.js';
import { type Command, positionalsAtMost, printable } from '../command.js';

export const consoleCommand: Command = {
  usage: 'dsync console [host:port]',
  summary: "open a node's text console (same as: nc host port)",
  help: 'The console port is the node port + 2000 by default (127.0.0.1:9401 for n1).',
  valueFlags: [],
  switchFlags: [],
  async run(args) {
    positionalsAtMost(args, 1);
    const target = args.positionals[0] ?? '127.0.0.1:9401';
    const m = /^(.*):(\d+)$/.exec(target);
    if (m === null) throw new UsageError(`"${printable(target)}" is not host:port`);
    const socket = connect({ host: m[1] === '' ? '127.0.0.1' : m[1]!, port: parsePort(m[2]!, 'console address') });
    return await new Promise<number>((done) => {
      let greeted = false;
      let refused = false;
      let first = Buffer.alloc(0);
      const refuse = (why: string): void => {
        if (refused) return;
        refused = true;
        process.stderr.write(`dsync console: ${target} is not a dsync console port; ${why}\n`);
        socket.destroy();
        done(1);
      };
      const timer = setTimeout(() => refuse(`it sent no console banner within ${consoleBannerWaitMs} ms `
        + '(a dsync client port waits silently for a binary hello; a node\'s console is its client port + 2000)'), consoleBannerWaitMs);
      socket.on('error', (err) => {
        clearTimeout(timer);
        process.stderr.write(`cannot reach console at ${target}: ${err.message}\n`);
        done(1);
      });
      socket.on('close', () => {
        clearTimeout(timer);
        if (greeted) done(0);
        else refuse('it closed the connection without a console banner');
      });
      const onData = (chunk: Buffer): void => {
        first = Buffer.concat([first, chunk]);
        const text = first.toString('latin1');
        const nl = text.indexOf('\n');
        if (nl < 0 && first.length < 256) return;
        socket.off('data', onData);
        clearTimeout(timer);
        const line = nl < 0 ? text : text.slice(0, nl);
        if (!isConsoleBanner(line)) {
          refuse(line.startsWith('HTTP/') ? 'it answered like HTTP' : `it answered "${printable(line.slice(0, 80))}"`);
          return;
        }
        greeted = true;
        process.stdout.write(first);
        socket.pipe(process.stdout);
        process.stdin.pipe(socket);
      };
      socket.on('data', onData);
    });
  },
};
