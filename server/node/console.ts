// The telnet-style debug console: a line-based text port usable with nc or
// telnet. Commands come from one registry that every service adds to; an
// unknown command answers with a hint and never disconnects. The line limit
// holds per line, whatever the TCP chunks: a longer line is answered once and
// skipped to its newline (no fragment of it ever runs), and what is printed
// back has its control characters escaped.

import { createServer, type Server, type Socket } from 'node:net';
import { assert } from '../../core/assert.js';
import { consoleLineBytesMax } from '../../core/constants.js';
import type { Logger } from './log.js';
import { listenOn } from './listen.js';
import type { Authenticator } from './security.js';

/** The first line a console sends: `dsync console` checks for it before it pipes a terminal to the port. */
export function consoleBanner(nodeId: string): string {
  return `dsync node ${nodeId} console`;
}

export function isConsoleBanner(line: string): boolean {
  return /^dsync node \S+ console$/.test(line.replace(/\r$/, ''));
}

/** `text` with every control character but newline and tab shown as \xNN (an echoed ESC cannot drive the terminal). */
export function escapeControls(text: string): string {
  return text.replace(/[^\P{Cc}\n\t]|[\u2028\u2029]/gu, (c) => {
    const code = c.codePointAt(0) ?? 0;
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/**
 * Splits a byte stream into lines of at most `bytesMax` bytes (without the newline): a longer
 * line is reported once, as it crosses the limit, and its bytes up to the next newline dropped.
 */
export class LineSplitter {
  private parts: Buffer[] = [];
  private partBytes = 0;
  private discarding = false;

  constructor(private readonly bytesMax: number, private readonly onLine: (line: string) => void, private readonly onTooLong: () => void) {
    assert(Number.isInteger(bytesMax) && bytesMax > 0, 'a console line holds at least one byte');
  }

  push(chunk: Buffer): void {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(0x0a, start);
      const end = nl < 0 ? chunk.length : nl;
      if (!this.discarding) {
        this.parts.push(chunk.subarray(start, end));
        this.partBytes += end - start;
        // Unfinished, a line may hold one byte more than the limit: a CR before its newline is not part of it.
        if (nl < 0 && this.partBytes > this.bytesMax + 1) this.tooLong();
      }
      if (nl < 0) return;
      if (!this.discarding) {
        let line = Buffer.concat(this.parts);
        if (line.length > 0 && line[line.length - 1] === 0x0d) line = line.subarray(0, line.length - 1);
        if (line.length > this.bytesMax) this.tooLong();
        else this.onLine(line.toString('utf8'));
      }
      this.parts = [];
      this.partBytes = 0;
      this.discarding = false;
      start = nl + 1;
    }
    assert(this.partBytes <= this.bytesMax + 1, 'an unfinished line never holds more than the limit and a CR');
  }

  /** Reports the line once and drops it, and what follows, up to its newline. */
  private tooLong(): void {
    this.parts = [];
    this.partBytes = 0;
    this.discarding = true;
    this.onTooLong();
  }
}

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

interface ConsoleSession {
  authenticated: boolean;
  failures: number;
}

/** Wrong tokens a console session may try before it is closed. */
const consoleAuthFailuresMax = 3;

export class ConsoleServer {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();

  /**
   * With `auth` (the node's token file), a session serves nothing but `help`, `quit` and
   * `auth TOKEN` until a valid token is given; consoleAuthFailuresMax wrong ones close it.
   */
  constructor(private readonly registry: ConsoleRegistry, private readonly nodeId: string, private readonly log: Logger,
    private readonly auth: Authenticator | null = null) {
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
    socket.write(`${consoleBanner(this.nodeId)}\ntype 'help' for commands\n> `);
    // Lines run one at a time, in order, even when a command is asynchronous.
    let chain = Promise.resolve();
    const session: ConsoleSession = { authenticated: this.auth === null, failures: 0 };
    const lines = new LineSplitter(consoleLineBytesMax,
      (line) => { chain = chain.then(() => this.runLine(socket, line, session)); },
      () => { chain = chain.then(() => this.answer(socket, `error: line longer than ${consoleLineBytesMax} bytes; ignored up to its end`)); });
    socket.on('data', (chunk: Buffer) => lines.push(chunk));
    socket.on('error', (err) => this.log.debug('console socket error', { err: err.message }));
    socket.on('close', () => this.sockets.delete(socket));
  }

  private async runLine(socket: Socket, line: string, session: ConsoleSession): Promise<void> {
    if (socket.destroyed) return;
    const cmd = line.trim().toLowerCase();
    if (cmd === 'quit' || cmd === 'exit') {
      socket.end('bye\n');
      return;
    }
    if (!session.authenticated) {
      this.answer(socket, this.authenticate(socket, line, session));
      return;
    }
    this.answer(socket, await this.registry.execute(line));
  }

  /** The answer to a line before the session has authenticated. Never echoes a token. */
  private authenticate(socket: Socket, line: string, session: ConsoleSession): string {
    const words = line.trim().split(/\s+/);
    if (words[0]?.toLowerCase() !== 'auth') {
      return words[0] === '' ? '' : "this node asks for a token: 'auth TOKEN' first (then 'help')";
    }
    const credential = words.length === 2 ? this.auth?.check(words[1] ?? '') ?? null : null;
    if (credential === null) {
      session.failures++;
      this.log.warn('console: a wrong token', { from: socket.remoteAddress ?? '?', failures: session.failures });
      if (session.failures >= consoleAuthFailuresMax) {
        socket.end('error: not a valid token; closing\n');
        return '';
      }
      return 'error: not a valid token';
    }
    session.authenticated = true;
    this.log.info('console: authenticated', { name: credential.name, role: credential.role });
    return `authenticated as ${credential.name} (${credential.role}); type 'help' for commands`;
  }

  private answer(socket: Socket, out: string): void {
    if (!socket.destroyed) socket.write(out.length > 0 ? `${escapeControls(out)}\n> ` : '> ');
  }
}
