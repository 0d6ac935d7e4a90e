// Binding a listening socket (binary, console or HTTP port) the one way: resolve
// with the bound port (useful with port 0), reject on EADDRINUSE and friends.

import type { Server } from 'node:net';

export function listenOn(server: Pick<Server, 'once' | 'off' | 'listen' | 'address'>, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const addr = server.address();
      resolve(typeof addr === 'object' && addr !== null ? addr.port : port);
    });
  });
}
