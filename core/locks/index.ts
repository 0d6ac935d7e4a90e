// The lock manager's public surface for server/: the command/outcome types, the
// replicated LockTable, and the leader-side LeaseClock.

export type * from './commands.js';
export { LockTable, LockTableSnapshotWriter, utf8Bytes } from './table.js';
export type { ClientSnapshot, HolderInfo, LockInfo, LockTableSnapshot, LockTableSnapshotHeader, LockTableSnapshotSlice, LockTableStats, SessionInfo,
  SessionSnapshot, WaiterInfo } from './table.js';
export { LeaseClock } from './leases.js';
export type { DelaySeed, LeaseSeed, WaitSeed } from './leases.js';
