// The floor for bench:ping: a minimal raw Node TCP server that echoes whole
// frames back (u32 length prefix, nothing decoded, no hello, one write per
// chunk), run in its own process. Prints {"port":N} on stdout once listening.

import { createServer } from 'node:net';

const lengthPrefixBytes = 4;
/** Bytes kept from an incomplete trailing frame; the bench sends 64-byte frames. */
const partialBytesMax = 1024 * 1024;

const server = createServer((socket) => {
  socket.setNoDelay(true);
  let partial: Buffer | null = null;
  socket.on('data', (chunk: Buffer) => {
    const data = partial === null ? chunk : Buffer.concat([partial, chunk]);
    let end = 0;
    while (data.length - end >= lengthPrefixBytes) {
      const frameEnd = end + lengthPrefixBytes + data.readUInt32BE(end);
      if (frameEnd > data.length) break;
      end = frameEnd;
    }
    partial = end === data.length ? null : data.subarray(end);
    if (partial !== null && partial.length > partialBytesMax) {
      socket.destroy();
      return;
    }
    if (end > 0) socket.write(end === data.length ? data : data.subarray(0, end));
  });
  socket.on('error', () => socket.destroy());
});
server.listen(Number(process.env['PORT'] ?? 0), '127.0.0.1', () => {
  const addr = server.address();
  process.stdout.write(`${JSON.stringify({ port: typeof addr === 'object' && addr !== null ? addr.port : 0 })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
