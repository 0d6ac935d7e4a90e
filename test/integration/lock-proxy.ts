// A loopback TCP proxy to put between two nodes' peer links, so a test can cut
// one node off from the others (a network partition) and heal it again without
// touching the processes. Cut = every relayed socket destroyed and new ones
// refused until heal.

import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Teardown } from './helpers/cluster.js';

/** Relayed connections one proxy keeps at once (a peer link is one; reconnects replace it). */
const relaysMax = 64;

export class TcpProxy {
  private readonly sockets = new Set<Socket>();
  private cutOff = false;
  relayedCount = 0;

  private constructor(private readonly server: Server, readonly port: number, readonly targetPort: number) {}

  /** Listens on loopback `listenPort` (0: any free port) and relays to 127.0.0.1:`targetPort`; closed at teardown. */
  static async start(t: Teardown, targetPort: number, listenPort = 0): Promise<TcpProxy> {
    let proxy: TcpProxy | null = null;
    const server = createServer((inbound) => proxy?.accept(inbound));
    server.maxConnections = relaysMax;
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(listenPort, '127.0.0.1', () => {
        const addr = server.address();
        if (addr === null || typeof addr === 'string') reject(new Error('proxy has no port'));
        else resolve(addr.port);
      });
    });
    proxy = new TcpProxy(server, port, targetPort);
    const self = proxy;
    t.teardown(() => self.close());
    return proxy;
  }

  get isCut(): boolean {
    return this.cutOff;
  }

  /** Drops every relayed connection and refuses new ones. */
  cut(): void {
    this.cutOff = true;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  heal(): void {
    this.cutOff = false;
  }

  close(): Promise<void> {
    this.cut();
    return new Promise((r) => this.server.close(() => r()));
  }

  private accept(inbound: Socket): void {
    if (this.cutOff) {
      inbound.destroy();
      return;
    }
    const outbound = connect({ host: '127.0.0.1', port: this.targetPort });
    inbound.setNoDelay(true);
    outbound.setNoDelay(true);
    this.relayedCount++;
    for (const [a, b] of [[inbound, outbound], [outbound, inbound]] as const) {
      this.sockets.add(a);
      a.pipe(b);
      a.on('error', () => b.destroy());
      a.on('close', () => {
        this.sockets.delete(a);
        b.destroy();
      });
    }
  }
}
