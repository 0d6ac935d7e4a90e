// What every `dsync` command module exports (cli/commands/*.ts), and the small
// helpers several of them share, so the dispatcher in dsync.ts stays a table.

import { type ParsedArgs, UsageError } from './args.js';

export interface Command {
  readonly usage: string;
  readonly summary: string;
  readonly help: string;
  readonly valueFlags: readonly string[];
  readonly switchFlags: readonly string[];
  /** The exit code; -1 keeps the process running (a node in the foreground). */
  run(args: ParsedArgs): Promise<number>;
}

/** --seeds, else DSYNC_SEEDS, else the default first node. */
export function seedsFrom(args: ParsedArgs): string[] {
  const text = args.flags.get('seeds') ?? process.env['DSYNC_SEEDS'] ?? '127.0.0.1:7401';
  return text.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
}

/** A whole number of milliseconds from --NAME, or undefined when absent. */
export function msFlag(args: ParsedArgs, name: string): number | undefined {
  const text = args.flags.get(name);
  if (text === undefined) return undefined;
  const ms = Number(text);
  if (!Number.isInteger(ms) || ms < 0) throw new UsageError(`--${name} must be a whole number of milliseconds`);
  return ms;
}
