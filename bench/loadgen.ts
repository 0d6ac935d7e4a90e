// A lean load generator for the binary protocol: N connections x pipeline depth
// of one request kind for a fixed duration after a warm-up, latencies in an HDR
// histogram. It speaks frames directly (FrameDecoder in, one pre-encoded frame
// patched per request out, one socket write per received chunk) so the load
// generator costs as little CPU as possible next to the server it measures.

import { connect, type Socket } from 'node:net';
import * as hdr from 'hdr-histogram-js';
import { protocolVersion } from '../core/constants.js';
import { encodeFrame, FrameDecoder, FrameType, Opcode, schema } from '../protocol/index.js';

/** Request ids index a ring of send timestamps; in-flight requests per connection must stay below it. */
const sendRingSize = 1 << 16;
const depthMax = 4096;
const connectionsMax = 4096;
/** Latencies above this are clamped (µs): one minute. */
const latencyUsMax = 60_000_000;

export interface LoadOptions {
  readonly host: string;
  readonly port: number;
  readonly connections: number;
  /** Requests kept in flight per connection. */
  readonly depth: number;
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly opcode: number;
  /** The request's protobuf payload, the same for every request. */
  readonly payload: Uint8Array;
  /** Send a client hello first (a dsync node requires it; a raw echo must not get one). */
  readonly hello: boolean;
}

export interface LoadResult {
  readonly label: string;
  readonly connections: number;
  readonly depth: number;
  readonly frameBytes: number;
  readonly durationMs: number;
  readonly ops: number;
  readonly opsPerSec: number;
  readonly errors: number;
  readonly latencyUs: { readonly p50: number; readonly p99: number; readonly p999: number; readonly max: number; readonly mean: number };
}

class LoadConnection {
  private readonly decoder: FrameDecoder;
  private readonly sentAtMs = new Float64Array(sendRingSize);
  private nextRequestId = 1;
  private inFlight = 0;
  private helloDone: boolean;
  private answered = 0;

  constructor(private readonly socket: Socket, private readonly template: Uint8Array, private readonly run: LoadRun, hello: boolean) {
    this.helloDone = !hello;
    this.decoder = new FrameDecoder({
      frame: (type, _opcode, requestId) => this.onAnswer(type, requestId),
      error: (err) => {
        run.errors++;
        if (err.fatal) socket.destroy();
      },
    });
    socket.on('data', (chunk: Buffer) => {
      this.answered = 0;
      this.decoder.push(chunk);
      if (this.answered > 0) this.send(this.answered);
    });
    socket.on('error', () => {
      run.errors++;
    });
  }

  start(): void {
    if (!this.helloDone) {
      this.socket.write(encodeFrame(FrameType.Request, Opcode.Hello, 0, schema.Hello.encode({ role: schema.Role.ROLE_CLIENT,
        protocolVersion, name: 'loadgen' }).finish()));
      return;
    }
    this.send(this.run.depth);
  }

  private onAnswer(type: FrameType, requestId: number): void {
    if (!this.helloDone) {
      this.helloDone = true;
      this.answered = this.run.depth;
      return;
    }
    const now = performance.now();
    this.inFlight--;
    if (type === FrameType.Error) this.run.errors++;
    else this.run.record(now, now - this.sentAtMs[requestId & (sendRingSize - 1)]!);
    this.answered++;
  }

  /** Sends `count` requests in one write (stops once the run is over). */
  private send(count: number): void {
    if (this.run.stopped || this.socket.destroyed) return;
    const frameBytes = this.template.length;
    const out = Buffer.allocUnsafe(frameBytes * count);
    const now = performance.now();
    for (let i = 0; i < count; i++) {
      const id = this.nextRequestId;
      this.nextRequestId = id === 0xffff_ffff ? 1 : id + 1;
      const offset = i * frameBytes;
      out.set(this.template, offset);
      out.writeUInt32BE(id, offset + 8);
      this.sentAtMs[id & (sendRingSize - 1)] = now;
    }
    this.inFlight += count;
    this.socket.write(out);
  }
}

class LoadRun {
  errors = 0;
  ops = 0;
  stopped = false;
  readonly histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: latencyUsMax, numberOfSignificantValueDigits: 3,
    useWebAssembly: false });

  constructor(readonly depth: number, private readonly measureFromMs: number, private readonly measureToMs: number) {}

  record(nowMs: number, latencyMs: number): void {
    if (nowMs < this.measureFromMs || nowMs > this.measureToMs) return;
    this.ops++;
    this.histogram.recordValue(Math.min(latencyUsMax, Math.max(1, Math.round(latencyMs * 1000))));
  }
}

/** Runs one load scenario against host:port and returns its numbers. */
export async function runLoad(label: string, opts: LoadOptions): Promise<LoadResult> {
  if (!(opts.connections >= 1 && opts.connections <= connectionsMax)) throw new Error(`connections must be 1..${connectionsMax}`);
  if (!(opts.depth >= 1 && opts.depth <= depthMax)) throw new Error(`depth must be 1..${depthMax}`);
  const template = encodeFrame(FrameType.Request, opts.opcode, 0, opts.payload);
  const sockets = await Promise.all(Array.from({ length: opts.connections }, () => new Promise<Socket>((resolve, reject) => {
    const s = connect({ host: opts.host, port: opts.port });
    s.setNoDelay(true);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  })));
  const startMs = performance.now();
  const run = new LoadRun(opts.depth, startMs + opts.warmupMs, startMs + opts.warmupMs + opts.durationMs);
  const conns = sockets.map((s) => new LoadConnection(s, template, run, opts.hello));
  for (const c of conns) c.start();
  await new Promise((r) => setTimeout(r, opts.warmupMs + opts.durationMs));
  run.stopped = true;
  for (const s of sockets) s.destroy();
  const h = run.histogram;
  const result: LoadResult = {
    label, connections: opts.connections, depth: opts.depth, frameBytes: template.length, durationMs: opts.durationMs,
    ops: run.ops, opsPerSec: Math.round(run.ops / (opts.durationMs / 1000)), errors: run.errors,
    latencyUs: { p50: h.getValueAtPercentile(50), p99: h.getValueAtPercentile(99), p999: h.getValueAtPercentile(99.9),
      max: h.maxValue, mean: Math.round(h.mean) },
  };
  h.destroy();
  return result;
}

/** A readable table of results. */
export function formatTable(results: readonly LoadResult[]): string {
  const header = ['scenario', 'conns', 'depth', 'frame B', 'ops/s', 'p50 µs', 'p99 µs', 'p99.9 µs', 'max µs', 'errors'];
  const rows = results.map((r) => [r.label, String(r.connections), String(r.depth), String(r.frameBytes), r.opsPerSec.toLocaleString('en-US'),
    String(r.latencyUs.p50), String(r.latencyUs.p99), String(r.latencyUs.p999), String(r.latencyUs.max), String(r.errors)]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
