// Raft-specific helpers for the real-process Raft tests: journal appends and
// (count, hash) reads, waiting for a group 0 leader and for replicas to converge,
// a background load of concurrent appends, the text console, and WAL segment
// surgery (list records, cut a tail, flip a byte). Process handling is in
// helpers/cluster.ts.

import { readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { routerOf } from '../../client/client.js';
import type { Client } from '../../client/index.js';
import { DsyncError } from '../../protocol/errors.js';
import { Opcode } from '../../protocol/frame.js';
import { schema } from '../../protocol/index.js';
import { sleep } from './helpers/cluster.js';

/** How long tests wait for an election, a catch-up or a console answer. */
export const convergeTimeoutMsDefault = 20_000;
/** Poll interval while waiting for a leader or convergence. */
const pollMs = 50;
/** Bytes of console output kept while waiting for a prompt. */
const consoleOutputBytesMax = 64 * 1024;

export interface JournalInfo {
  readonly nodeId: string;
  readonly count: number;
  readonly hash: number;
  readonly appliedIndex: number;
}

/** The journal as `address` sees it: its own applied state (`local`) or linearizable through the leader. */
export async function journalInfo(client: Client, address: string, local = true, timeoutMs = 2_000): Promise<JournalInfo> {
  const conn = await routerOf(client).connection(address);
  const raw = await conn.request(Opcode.JournalInfo, schema.JournalInfoRequest.encode({ local }).finish(), timeoutMs);
  const r = schema.JournalInfoReply.decode(raw);
  return { nodeId: r.nodeId, count: Number(r.count), hash: r.hash >>> 0, appliedIndex: Number(r.appliedIndex) };
}

/** One acknowledged append through the leader; resolves with the journal count after it. */
export async function journalAppend(client: Client, data: Uint8Array, timeoutMs?: number): Promise<{ index: number; count: number }> {
  const raw = await routerOf(client).request(0, Opcode.JournalAppend, schema.JournalAppend.encode({ data }).finish(),
    timeoutMs === undefined ? {} : { timeoutMs });
  const r = schema.JournalAppendReply.decode(raw);
  return { index: Number(r.index), count: Number(r.count) };
}

/** A distinct blob per (tag, i), so the hash chain depends on which blobs landed and in which order. */
export function blob(tag: string, i: number): Uint8Array {
  return new TextEncoder().encode(`${tag}-${i}`.padEnd(64, '.'));
}

/** Appends `total` blobs with `concurrency` in flight; every one must be acknowledged. */
export async function appendAll(client: Client, tag: string, total: number, concurrency: number): Promise<number> {
  let next = 0;
  let acked = 0;
  const worker = async (): Promise<void> => {
    while (next < total) {
      const i = next++;
      await journalAppend(client, blob(tag, i), 15_000);
      acked++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, worker));
  return acked;
}

/**
 * `concurrency` proposers appending in a loop until `stop()`: counts what was
 * acknowledged (durable on a majority) and what failed (a crash may fail any
 * in-flight request; those are neither counted nor required to be lost).
 */
export class AppendLoad {
  acked = 0;
  failed = 0;
  private stopping = false;
  private readonly done: Promise<void>;

  constructor(client: Client, tag: string, concurrency: number, readonly appendsMax = 1_000_000) {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (!this.stopping && next < appendsMax) {
        const i = next++;
        try {
          await journalAppend(client, blob(tag, i), 5_000);
          this.acked++;
        } catch (err) {
          if (!(err instanceof DsyncError)) throw err;
          this.failed++;
          await sleep(20);
        }
      }
    };
    this.done = Promise.all(Array.from({ length: concurrency }, worker)).then(() => undefined);
  }

  /** Resolves once at least `count` appends were acknowledged (or rejects after `timeoutMs`). */
  async waitForAcked(count: number, timeoutMs = convergeTimeoutMsDefault): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.acked < count) {
      if (Date.now() > deadline) throw new Error(`only ${this.acked} of ${count} appends acknowledged within ${timeoutMs} ms (${this.failed} failed)`);
      await sleep(pollMs);
    }
  }

  /** Stops issuing appends and waits for the in-flight ones to finish. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.done;
  }
}

export interface LeaderView {
  readonly leaderId: string;
  readonly term: number;
  readonly commit: number;
}

/**
 * Waits until every node at `addresses` reports the same group 0 leader (one of
 * `candidates`, which reports itself as leader) in the same term.
 */
export async function waitForLeader(client: Client, addresses: readonly string[], candidates: readonly string[],
  timeoutMs = convergeTimeoutMsDefault): Promise<LeaderView> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const views = await Promise.all(addresses.map(async (a) => ({ a, s: await client.status(a) })));
      const g0s = views.map(({ a, s }) => ({ a, id: s.nodeId, g: s.groups.find((g) => g.group === 0) }));
      last = JSON.stringify(g0s.map(({ id, g }) => ({ id, role: g?.role, leader: g?.leaderId, term: g?.term })));
      const first = g0s[0]?.g;
      if (first !== undefined && first.leaderId !== '' && candidates.includes(first.leaderId)
        && g0s.every(({ g }) => g !== undefined && g.leaderId === first.leaderId && g.term === first.term)
        && g0s.some(({ id, g }) => id === first.leaderId && g?.role === 'leader')) {
        return { leaderId: first.leaderId, term: first.term, commit: first.commit };
      }
    } catch {
      // a node still starting or just killed: poll again
    }
    await sleep(pollMs);
  }
  throw new Error(`no agreed group 0 leader among ${candidates.join(',')} within ${timeoutMs} ms; last views ${last}`);
}

/** Waits until every node at `addresses` has applied the same (count, hash) with count >= `countMin`. */
export async function waitForConvergence(client: Client, addresses: readonly string[], countMin: number,
  timeoutMs = convergeTimeoutMsDefault): Promise<JournalInfo[]> {
  const deadline = Date.now() + timeoutMs;
  let last: JournalInfo[] = [];
  while (Date.now() < deadline) {
    try {
      last = await Promise.all(addresses.map((a) => journalInfo(client, a, true)));
      const first = last[0];
      if (first !== undefined && first.count >= countMin && last.every((i) => i.count === first.count && i.hash === first.hash)) return last;
    } catch {
      // a node still starting: poll again
    }
    await sleep(pollMs);
  }
  throw new Error(`journals did not converge to one (count, hash) with count >= ${countMin} within ${timeoutMs} ms: ${JSON.stringify(last)}`);
}

/** Runs one console command on 127.0.0.1:`port` and returns its output (without the prompt). */
export function consoleCommand(port: number, command: string, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.setEncoding('utf8');
    let buffered = '';
    let sent = false;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`console ${port}: no answer to '${command}' within ${timeoutMs} ms; got ${JSON.stringify(buffered)}`));
    }, timeoutMs);
    socket.on('data', (text: string) => {
      buffered = (buffered + text).slice(-consoleOutputBytesMax);
      if (!sent && buffered.endsWith('> ')) {
        // The banner and the first prompt: now ask.
        sent = true;
        buffered = '';
        socket.write(`${command}\n`);
        return;
      }
      if (sent && buffered.endsWith('> ')) {
        clearTimeout(timer);
        socket.end('quit\n');
        resolve(buffered.slice(0, -2).trimEnd());
      }
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

// ---- WAL files ----

/** Bytes of a WAL record header (server/storage/format.ts): u32 bodyBytes first. */
export const walRecordHeaderBytes = 24;

/** The node's WAL segments, oldest first (names sort by their zero-padded first seq). */
export function walSegments(dataDir: string): string[] {
  const dir = join(dataDir, 'wal');
  return readdirSync(dir).filter((n) => /^wal-\d{20}\.log$/.test(n)).sort().map((n) => join(dir, n));
}

/** Start offsets of the whole records in a segment (walks the length prefixes; stops at a partial record). */
export function recordOffsets(file: string): number[] {
  const buf = readFileSync(file);
  const offsets: number[] = [];
  let off = 0;
  while (off + walRecordHeaderBytes <= buf.length) {
    const total = walRecordHeaderBytes + buf.readUInt32LE(off);
    if (off + total > buf.length) break;
    offsets.push(off);
    off += total;
  }
  return offsets;
}

/** Cuts `bytes` off the end of `file`; returns the new size. */
export function chopTail(file: string, bytes: number): number {
  const size = statSync(file).size;
  if (bytes <= 0 || bytes >= size) throw new Error(`cannot chop ${bytes} bytes off ${file} (${size} bytes)`);
  truncateSync(file, size - bytes);
  return size - bytes;
}

/** Inverts every bit of the byte at `offset` in `file`. */
export function flipByte(file: string, offset: number): void {
  const buf = readFileSync(file);
  const old = buf[offset];
  if (old === undefined) throw new Error(`${file} has no byte at ${offset}`);
  buf[offset] = old ^ 0xff;
  writeFileSync(file, buf);
}
