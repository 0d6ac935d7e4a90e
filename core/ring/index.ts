// The ring's public surface, for server/ (placement) and client/ (routing).

export { Ring } from './ring.js';
export type { Hash32, RingOptions } from './ring.js';
