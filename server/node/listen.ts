// Binding a listening socket (binary, console or HTTP port) the one way: resolve
// with the bound port (useful with port 0), reject on EADDRINUSE and friends; and
// the one error a node that cannot start reports (one line naming the setting).

import type { Server } from 'node:net';

/** The node could not start; the message is one line that names the setting to change. */
export class StartError extends Error {
  override name = 'StartError';
}

/** A listen() failure as the operator should read it: `port 7401 (--port) is already in use`. */
export function listenError(err: unknown, host: string, port: number, label: string): StartError {
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'EADDRINUSE': return new StartError(`port ${port} (${label}) is already in use on ${host}`);
    case 'EACCES': return new StartError(`port ${port} (${label}) needs privileges this process does not have`);
    case 'EADDRNOTAVAIL': return new StartError(`cannot bind ${host} (--host): no such local address`);
    default: return new StartError(`cannot listen on ${host}:${port} (${label}): ${err instanceof Error ? err.message : String(err)}`);
  }
}

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
