// What every `dsync` command module exports (cli/commands/*.ts), and the small
// helpers several of them share (flag values checked as usage errors naming the
// flag, extra arguments refused, names escaped before printing), so the
// dispatcher in dsync.ts stays a table.

import { readFileSync } from 'node:fs';
import { type ParsedArgs, UsageError } from './args.js';

export interface Command {
  readonly usage: string;
  readonly summary: string;
  readonly help: string;
  readonly valueFlags: readonly string[];
  readonly switchFlags: readonly string[];
  /** `dsync CMD SUB --help` shows these instead of the whole command's help. */
  readonly subcommands?: Readonly<Record<string, { readonly usage: string; readonly help: string }>>;
  /** The exit code; -1 keeps the process running (a node in the foreground). */
  run(args: ParsedArgs): Promise<number>;
}

/** Refuses positional arguments beyond the first `count` (a typo should not be ignored). */
export function positionalsAtMost(args: ParsedArgs, count: number): void {
  const extra = args.positionals[count];
  if (extra !== undefined) throw new UsageError(`unexpected argument '${printable(extra)}'`);
}

/** host:port with a port in 1..65535; `label` names where it came from. */
export function checkAddress(text: string, label: string): string {
  const m = /^(\[[^\]]+\]|[^\s:@,[\]]+):(\d+)$/.exec(text);
  if (m === null) throw new UsageError(`${label}: "${printable(text)}" is not host:port`);
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new UsageError(`${label}: port ${m[2]} in "${printable(text)}" is out of range (1-65535)`);
  return text;
}

/** --seeds, else DSYNC_SEEDS, else the default first node; each one host:port. */
export function seedsFrom(args: ParsedArgs): string[] {
  const flag = args.flags.get('seeds');
  const env = process.env['DSYNC_SEEDS'];
  const label = flag !== undefined ? '--seeds' : env !== undefined && env !== '' ? 'DSYNC_SEEDS' : '--seeds';
  const text = flag ?? (env === '' ? undefined : env) ?? '127.0.0.1:7401';
  const seeds = text.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (seeds.length === 0) throw new UsageError(`${label} needs at least one host:port`);
  return seeds.map((s) => checkAddress(s, label));
}

/** Help lines of clientValueFlags, for every command's --help. */
export const clientFlagsHelp = `  --seeds LIST   addresses to start from (env DSYNC_SEEDS)   127.0.0.1:7401
  --token TOKEN  for nodes started with --auth-file (env DSYNC_TOKEN)
  --tls-ca FILE  CA of the nodes' certificates, for nodes started with --tls-cert (env DSYNC_TLS_CA)`;

/** Flags of every command that talks to the cluster: where, and with which credentials. */
export const clientValueFlags = ['seeds', 'token', 'tls-ca'] as const;

/**
 * What Client.connect needs from the command line: seeds (seedsFrom), the token
 * (--token, else DSYNC_TOKEN; never printed) and TLS (--tls-ca, else DSYNC_TLS_CA: the
 * PEM CA that signed the nodes' certificates).
 */
export function clientOptionsFrom(args: ParsedArgs): { seeds: string[]; token?: string; tls?: { ca: Buffer } } {
  const seeds = seedsFrom(args);
  const token = args.flags.get('token') ?? nonEmpty(process.env['DSYNC_TOKEN']);
  const caFlag = args.flags.get('tls-ca');
  const caPath = caFlag ?? nonEmpty(process.env['DSYNC_TLS_CA']);
  let tls: { ca: Buffer } | undefined;
  if (caPath !== undefined) {
    try {
      tls = { ca: readFileSync(caPath) };
    } catch (err) {
      throw new UsageError(`${caFlag !== undefined ? '--tls-ca' : 'DSYNC_TLS_CA'}: cannot read ${printable(caPath)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  if (token === '') throw new UsageError('--token is empty');
  return { seeds, ...(token === undefined ? {} : { token }), ...(tls === undefined ? {} : { tls }) };
}

function nonEmpty(s: string | undefined): string | undefined {
  return s === undefined || s === '' ? undefined : s;
}

/** A whole number from --NAME in [min, max], or undefined when absent; anything else is a usage error naming the flag. */
export function intFlag(args: ParsedArgs, name: string, min: number, max: number, unit = ''): number | undefined {
  const text = args.flags.get(name);
  if (text === undefined) return undefined;
  const value = /^\d+$/.test(text.trim()) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `${min} or more` : `in ${min}..${max}`;
    throw new UsageError(`--${name} must be a whole number${unit === '' ? '' : ` of ${unit}`} ${range}, not "${printable(text)}"`);
  }
  return value;
}

/** A whole number of milliseconds from --NAME (0 up), or undefined when absent. */
export function msFlag(args: ParsedArgs, name: string, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined {
  return intFlag(args, name, min, max, 'milliseconds');
}

/** `s` with control characters (newlines, ANSI escapes) shown as \n, \x1b, \u2028, so printing it cannot rewrite the terminal. */
export function printable(s: string): string {
  return s.replace(/[\p{Cc}\u2028\u2029]/gu, (c) => {
    const code = c.codePointAt(0) ?? 0;
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    if (c === '\t') return '\\t';
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}
