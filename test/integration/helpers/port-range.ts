// Free loopback ports inside one fixed range (each helper session's tests own a
// range, so parallel runs on one machine do not take each other's ports): the
// search starts at a pid-dependent offset and checks each port by listening on it.

import { createServer } from 'node:net';

function isFree(port: number): Promise<boolean> {
  return new Promise((r) => {
    const server = createServer();
    server.once('error', () => r(false));
    server.listen(port, '127.0.0.1', () => server.close(() => r(true)));
  });
}

/** `count` distinct free ports in [min, max]; throws when the range has fewer. */
export async function freePortsInRange(min: number, max: number, count: number): Promise<number[]> {
  const span = max - min + 1;
  const start = (process.pid * 61) % span;
  const found: number[] = [];
  for (let i = 0; i < span && found.length < count; i++) {
    const port = min + ((start + i) % span);
    if (await isFree(port)) found.push(port);
  }
  if (found.length < count) throw new Error(`only ${found.length} of ${count} ports free in ${min}..${max}`);
  return found;
}

/** The first port of `count` consecutive free ports in [min, max]. */
export async function freeBlockInRange(min: number, max: number, count: number): Promise<number> {
  const span = max - min + 1 - count + 1;
  const start = (process.pid * 61) % span;
  for (let i = 0; i < span; i++) {
    const base = min + ((start + i) % span);
    let free = true;
    for (let p = base; p < base + count && free; p++) free = await isFree(p);
    if (free) return base;
  }
  throw new Error(`no ${count} consecutive free ports in ${min}..${max}`);
}
