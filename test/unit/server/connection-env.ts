// A server/node Connection on a real loopback socket with a scripted owner, for
// unit tests of the connection's own rules (limits, what a thrown handler does)
// without a whole node: the test supplies dispatch and sees fatal calls.

import { createServer, type Server } from 'node:net';
import { schema } from '../../../protocol/index.js';
import { Connection, type ConnectionOwner } from '../../../server/node/connection.js';
import { Logger } from '../../../server/node/log.js';
import { RawConnection } from '../../integration/helpers/raw.js';

export interface ConnectionRig {
  readonly raw: RawConnection;
  readonly conns: Connection[];
  readonly fatals: { message: string; err: unknown }[];
}

interface Teardown {
  teardown(fn: () => void | Promise<void>): void;
}

/** Listens on an ephemeral loopback port (in-process only), connects a RawConnection and says hello. */
export async function connectionRig(t: Teardown, dispatch: ConnectionOwner['dispatch']): Promise<ConnectionRig> {
  const conns: Connection[] = [];
  const fatals: { message: string; err: unknown }[] = [];
  const owner: ConnectionOwner = {
    nodeId: 'n1',
    log: new Logger('n1', 'error', () => {}),
    helloReply: () => schema.HelloReply.encode({ nodeId: 'n1' }).finish(),
    dispatch,
    closed: () => {},
    peerHello: () => {},
    fatal: (message, err) => { fatals.push({ message, err }); },
  };
  const server: Server = createServer((socket) => { conns.push(new Connection(socket, owner)); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => {
    for (const c of conns) c.close('test over');
    server.close(() => r());
  }));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  const raw = await RawConnection.open(address.port);
  t.teardown(() => raw.destroy());
  await raw.hello();
  return { raw, conns, fatals };
}
