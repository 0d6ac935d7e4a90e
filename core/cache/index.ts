// The coherent cache's public surface for server/: the node side (lines, LRU, client
// ops), the home directory, the messages between them, and the in-process backing.

export type * from './messages.js';
export { St, stateNames, cacheConfigDefault, checkCacheConfig } from './messages.js';
export { CacheHome, HomeCounters } from './home.js';
export type { HomeEntryView, HomeOptions, HomeReady } from './home.js';
export { NodeCache, NodeCounters, PENDING, DONE, TOO_LARGE, BUSY } from './node.js';
export type { CacheCompletion, NodeOptions, NodeReady, Refusal } from './node.js';
export { CacheLines } from './lines.js';
export { InMemoryBacking } from './backing.js';
export type { MemoryOp, MemoryRecord } from './backing.js';
export { FenceTable } from './fence.js';
export type { Fence } from './fence.js';
