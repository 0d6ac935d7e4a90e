// Step timestamps of a replicated append, for bench:latency only. Off unless
// DSYNC_LATENCY_TRACE names a file prefix: then every thread of the process (the
// event loop and the WAL worker) writes "<ns> <step> <a> <b>" lines to
// <prefix>-<pid>-<threadId>.trace, times from process.hrtime (CLOCK_MONOTONIC,
// one clock for every process on the machine, so steps on different nodes compare).
// Normal runs pay one null check per call site.

import { appendFileSync } from 'node:fs';
import { threadId } from 'node:worker_threads';
import { latencyTraceBufferedEventsMax, latencyTraceFlushMs } from '../../core/constants.js';

export class LatencyTrace {
  private lines: string[] = [];
  private readonly file: string;

  constructor(prefix: string, private readonly hasTimers: boolean) {
    this.file = `${prefix}-${process.pid}-${threadId}.trace`;
    if (hasTimers) {
      setInterval(() => this.flush(), latencyTraceFlushMs).unref();
      process.on('exit', () => this.flush());
    }
  }

  /** One step of the append with log index (or WAL seq) `a`, and `b` (a peer, a seq) when it has one. */
  mark(step: string, a = 0, b: number | string = 0): void {
    this.lines.push(`${process.hrtime.bigint()} ${step} ${a} ${b}`);
  }

  /** For a thread without timers (the WAL worker), at a moment no one waits on it: writes once enough is kept. */
  flushIfFull(): void {
    if (this.lines.length >= latencyTraceBufferedEventsMax) this.flush();
  }

  flush(): void {
    if (this.lines.length === 0) return;
    const text = this.lines.join('\n') + '\n';
    this.lines = [];
    appendFileSync(this.file, text);
  }
}

const prefix = process.env['DSYNC_LATENCY_TRACE'];

/** The process's tracer, or null (normal runs). threadId 0 is the event loop; others (the WAL worker) have no timers. */
export const latencyTrace: LatencyTrace | null = prefix === undefined || prefix === '' ? null : new LatencyTrace(prefix, threadId === 0);
