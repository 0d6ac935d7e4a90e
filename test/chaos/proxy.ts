// A fault-injecting loopback TCP proxy for ONE direction of one peer link (node i's
// outbound link to node j; a dsync peer link carries only i's messages to j, so
// cutting this proxy is a one-way partition). Faults:
// - reset: every relayed connection destroyed, new ones refused (a partition the
//   sender notices at once);
// - blackhole: connections accepted, bytes swallowed (a partition the sender only
//   notices when nothing comes back); healing destroys them so links redial cleanly;
// - delay: every chunk held `delayMs` +- jitter, order kept;
// - flaky: each chunk resets its connection with probability `resetRatio`
//   (packet loss as a TCP stream sees it: the link breaks and redials).
// Random choices come from the seeded PRNG the runner hands in.

import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Prng } from '../../core/prng.js';

export type ProxyFault =
  | { readonly kind: 'none' }
  | { readonly kind: 'reset' }
  | { readonly kind: 'blackhole' }
  | { readonly kind: 'delay'; readonly delayMs: number; readonly jitterMs: number }
  | { readonly kind: 'flaky'; readonly resetRatio: number };

/** Relayed connections one proxy keeps at once (a peer link is one; redials replace it). */
const relaysMax = 64;

interface Relay {
  readonly inbound: Socket;
  readonly outbound: Socket;
  /** When the last delayed chunk in each direction is due, so delays keep order. */
  dueMs: [number, number];
}

export class FaultProxy {
  private readonly relays = new Set<Relay>();
  private fault: ProxyFault = { kind: 'none' };
  relayedCount = 0;

  private constructor(private readonly server: Server, readonly port: number, readonly targetPort: number, readonly label: string,
    private readonly prng: Prng) {}

  /** Listens on 127.0.0.1:`port` and relays to 127.0.0.1:`targetPort`. */
  static async start(port: number, targetPort: number, label: string, prng: Prng): Promise<FaultProxy> {
    let proxy: FaultProxy | null = null;
    const server = createServer((inbound) => proxy?.accept(inbound));
    server.maxConnections = relaysMax;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    proxy = new FaultProxy(server, port, targetPort, label, prng);
    return proxy;
  }

  get current(): ProxyFault {
    return this.fault;
  }

  set(fault: ProxyFault): void {
    const was = this.fault;
    this.fault = fault;
    if (fault.kind === 'reset') this.dropAll();
    // Leaving a blackhole: the streams lost bytes mid-frame; start them afresh.
    if (was.kind === 'blackhole' && fault.kind !== 'blackhole') this.dropAll();
  }

  heal(): void {
    this.set({ kind: 'none' });
  }

  close(): Promise<void> {
    this.fault = { kind: 'reset' };
    this.dropAll();
    return new Promise((r) => this.server.close(() => r()));
  }

  private dropAll(): void {
    for (const r of this.relays) {
      r.inbound.destroy();
      r.outbound.destroy();
    }
    this.relays.clear();
  }

  private accept(inbound: Socket): void {
    if (this.fault.kind === 'reset') {
      inbound.destroy();
      return;
    }
    const outbound = connect({ host: '127.0.0.1', port: this.targetPort });
    inbound.setNoDelay(true);
    outbound.setNoDelay(true);
    const relay: Relay = { inbound, outbound, dueMs: [0, 0] };
    this.relays.add(relay);
    this.relayedCount++;
    const close = (): void => {
      this.relays.delete(relay);
      inbound.destroy();
      outbound.destroy();
    };
    const pairs = [[inbound, outbound, 0], [outbound, inbound, 1]] as const;
    for (const [from, to, dir] of pairs) {
      from.on('data', (chunk: Buffer) => this.relay(relay, to, dir, chunk));
      from.on('error', close);
      from.on('close', close);
    }
  }

  private relay(relay: Relay, to: Socket, dir: 0 | 1, chunk: Buffer): void {
    const f = this.fault;
    switch (f.kind) {
      case 'none':
        to.write(chunk);
        return;
      case 'reset':
        relay.inbound.destroy();
        return;
      case 'blackhole':
        return;
      case 'flaky':
        if (this.prng.next() < f.resetRatio) {
          relay.inbound.destroy();
          return;
        }
        to.write(chunk);
        return;
      case 'delay': {
        const now = performance.now();
        const dueMs = Math.max(relay.dueMs[dir], now + f.delayMs + (this.prng.next() * 2 - 1) * f.jitterMs);
        relay.dueMs[dir] = dueMs;
        setTimeout(() => { if (!to.destroyed) to.write(chunk); }, Math.max(0, dueMs - now));
      }
    }
  }
}
