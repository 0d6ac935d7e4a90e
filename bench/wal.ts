// WAL benchmark: what the disk allows (raw write+fdatasync latency) next to what the
// WAL achieves (serial append->durable latency, pipelined appends/s and fsyncs/s).
// Usage: node dist/bench/wal.js [--dir D] [--seconds S] [--bytes B]; prints a table, then JSON.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { groupId, logIndex, term } from '../core/ids.js';
import type { Entry } from '../core/raft/types.js';
import { EntryType } from '../core/raft/types.js';
import { Wal } from '../server/storage/wal.js';

const rawFsyncCount = 200;
const serialAppendCount = 200;
const groupsCount = 64;
const appendsPerTurnMax = 256;

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0;
}

function summarize(samplesMs: number[]): { p50: number; p99: number; max: number; mean: number } {
  const s = [...samplesMs].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / Math.max(1, s.length);
  return { p50: percentile(s, 0.5), p99: percentile(s, 0.99), max: s[s.length - 1] ?? 0, mean };
}

function rawFsync(dir: string, bytes: number): ReturnType<typeof summarize> {
  const fd = fs.openSync(path.join(dir, 'raw.bin'), 'w');
  const buf = new Uint8Array(bytes);
  const samples: number[] = [];
  for (let i = 0; i < rawFsyncCount; i++) {
    const t0 = performance.now();
    fs.writeSync(fd, buf);
    fs.fdatasyncSync(fd);
    samples.push(performance.now() - t0);
  }
  fs.closeSync(fd);
  fs.unlinkSync(path.join(dir, 'raw.bin'));
  return summarize(samples);
}

function entry(index: number, data: Uint8Array): Entry[] {
  return [{ term: term(1), index: logIndex(index), type: EntryType.Normal, data }];
}

async function main(): Promise<void> {
  const base = arg('dir', os.tmpdir());
  const seconds = Number(arg('seconds', '3'));
  const bytes = Number(arg('bytes', '128'));
  const dir = fs.mkdtempSync(path.join(base, 'dsync-wal-bench-'));
  const data = new Uint8Array(bytes).fill(7);
  try {
    const raw = rawFsync(dir, bytes);

    const { wal } = await Wal.open(path.join(dir, 'wal'));
    const serial: number[] = [];
    const g0 = groupId(0);
    for (let i = 1; i <= serialAppendCount; i++) {
      const t0 = performance.now();
      await wal.whenDurable(wal.append(g0, null, entry(i, data)));
      serial.push(performance.now() - t0);
    }

    // Pipelined: many groups append every turn; a group waits for durability of its
    // previous append before its next (like a runner persisting each Ready).
    const m0 = wal.metrics();
    const next = new Array<number>(groupsCount).fill(1);
    next[0] = serialAppendCount + 1;
    let appends = 0;
    const endAt = performance.now() + seconds * 1000;
    const t0 = performance.now();
    await Promise.all(
      next.map(async (_, gi) => {
        const g = groupId(gi);
        while (performance.now() < endAt) {
          let seq = 0;
          for (let k = 0; k < appendsPerTurnMax / groupsCount; k++) {
            const index = next[gi] ?? 1;
            next[gi] = index + 1;
            seq = wal.append(g, null, entry(index, data));
            appends++;
          }
          await wal.whenDurable(seq);
        }
      }),
    );
    const elapsedS = (performance.now() - t0) / 1000;
    const m1 = wal.metrics();
    await wal.close();

    const fsyncs = m1.fsyncs - m0.fsyncs;
    const result = {
      entryBytes: bytes,
      rawWriteFdatasyncMs: raw,
      serialAppendDurableMs: summarize(serial),
      pipelined: {
        groups: groupsCount,
        seconds: elapsedS,
        appendsPerSec: appends / elapsedS,
        fsyncsPerSec: fsyncs / elapsedS,
        appendsPerFsync: appends / Math.max(1, fsyncs),
        mbPerSec: (m1.bytesWritten - m0.bytesWritten) / elapsedS / 1e6,
        workerFsyncMeanMs: (m1.fsyncNsTotal - m0.fsyncNsTotal) / Math.max(1, fsyncs) / 1e6,
        workerFsyncMaxMs: m1.fsyncNsMax / 1e6,
      },
    };
    const f = (n: number): string => n.toFixed(3);
    console.log('scenario                        p50 ms   p99 ms   max ms');
    console.log(`raw write+fdatasync            ${f(raw.p50)}   ${f(raw.p99)}   ${f(raw.max)}`);
    const s = result.serialAppendDurableMs;
    console.log(`serial append -> durable       ${f(s.p50)}   ${f(s.p99)}   ${f(s.max)}`);
    const p = result.pipelined;
    console.log(
      `pipelined (${groupsCount} groups): ${p.appendsPerSec.toFixed(0)} appends/s, ${p.fsyncsPerSec.toFixed(0)} fsyncs/s, ` +
        `${p.appendsPerFsync.toFixed(1)} appends/fsync, ${p.mbPerSec.toFixed(1)} MB/s, fsync mean ${f(p.workerFsyncMeanMs)} ms`,
    );
    console.log(JSON.stringify(result));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
