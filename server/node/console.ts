// The telnet-style debug console: a line-based text port usable with nc or
// telnet. Commands come from one registry that every service adds to; an
// unknown command answers with a hint and never disconnects.

import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from './log.js';
import { listenOn } from './listen.js';

/** Bytes of one console line; longer input is refused, not buffered. */
const consoleLineBytesMax = 4096;

export interface ConsoleCommand {
  readonly name: string;
  readonly usage: string;
  readonly help: string;
  run(args: readonly string[]): string | Promise<string>;
}

export class ConsoleRegistry {
  private readonly commands = new Map<string, ConsoleCommand>();

  register(command: ConsoleCommand): void {
    if (this.commands.has(command.name)) throw new Error(`console command ${command.name} registered twice`);
    this.commands.set(command.name, command);
  }

  helpText(): string {
    const rows = [...this.commands.values()].map((c) => `  ${c.usage.padEnd(22)} ${c.help}`);
    return ['commands:', ...rows, `  ${'quit'.padEnd(22)} close this session`].join('\n');
  }

  /** Runs one input line; returns the text to print. Never throws. */
  async execute(line: string): Promise<string> {
    const words = line.trim().split(/\s+/).filter((w) => w.length > 0);
    const name = words[0]?.toLowerCase();
    if (name === undefined) return '';
    if (name === 'help' || name === '?') return this.helpText();
    const command = this.commands.get(name);
    if (command === undefined) return `unknown command '${name}' — type 'help' for the list`;
    try {
      return await command.run(words.slice(1));
    } catch (err) {
      return `error: ${(err as Error).message}`;
    }
  }
}

export class ConsoleServer {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly registry: ConsoleRegistry, private readonly banner: string, private readonly log: Logger) {
    this.server = createServer((socket) => this.accept(socket));
  }

  listen(host: string, port: number): Promise<number> {
    return listenOn(this.server, host, port);
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.setEncoding('utf8');
    socket.write(`${this.banner}\ntype 'help' for commands\n> `);
    let buffered = '';
    // Lines run one at a time, in order, even when a command is asynchronous.
    let chain = Promise.resolve();
    socket.on('data', (text: string) => {
      buffered += text;
      if (buffered.length > consoleLineBytesMax && !buffered.includes('\n')) {
        socket.write(`error: line longer than ${consoleLineBytesMax} bytes\n> `);
        buffered = '';
        return;
      }
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl).replace(/\r$/, '');
        buffered = buffered.slice(nl + 1);
        chain = chain.then(() => this.runLine(socket, line));
      }
    });
    socket.on('error', (err) => this.log.debug('console socket error', { err: err.message }));
    socket.on('close', () => this.sockets.delete(socket));
  }

  private async runLine(socket: Socket, line: string): Promise<void> {
    if (socket.destroyed) return;
    const cmd = line.trim().toLowerCase();
    if (cmd === 'quit' || cmd === 'exit') {
      socket.end('bye\n');
      return;
    }
    const out = await this.registry.execute(line);
    if (!socket.destroyed) socket.write(out.length > 0 ? `${out}\n> ` : '> ');
  }
}
