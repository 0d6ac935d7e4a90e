// Structured logs: one JSON object per line on stderr, with the node id and a
// level filter, so operators can grep and machines can parse.

import type { LogLevel } from './config.js';

const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type LogFields = Record<string, string | number | boolean | null | undefined>;

export class Logger {
  constructor(private readonly node: string, private readonly level: LogLevel = 'info',
    private readonly out: (line: string) => void = (line) => process.stderr.write(line)) {}

  debug(msg: string, fields?: LogFields): void { this.log('debug', msg, fields); }
  info(msg: string, fields?: LogFields): void { this.log('info', msg, fields); }
  warn(msg: string, fields?: LogFields): void { this.log('warn', msg, fields); }
  error(msg: string, fields?: LogFields): void { this.log('error', msg, fields); }

  enabled(level: LogLevel): boolean {
    return rank[level] >= rank[this.level];
  }

  private log(level: LogLevel, msg: string, fields?: LogFields): void {
    if (!this.enabled(level)) return;
    this.out(JSON.stringify({ ts: new Date().toISOString(), level, node: this.node, msg, ...fields }) + '\n');
  }
}
