// The queue partition's public surface for server/: commands and outcomes, the
// replicated QueuePartition, the MessageStore contract (and its in-memory
// implementation), and the dead-letter/redrive transforms.

export type * from './commands.js';
export { QueuePartition, checkPartitionConfig, defaultPartitionConfig, nackBackoffMs } from './partition.js';
export type { DeliveryInfo, GroupInfo, PartitionConfig, QueuePartitionSnapshot, RetentionConfig } from './partition.js';
export { MemoryMessageStore, messageBytes } from './store.js';
export type { MemoryStoreSnapshot, MessageStore } from './store.js';
export { deadLetterInfo, deadLetterMessage, dlqHeaderPrefix, redriveAppend } from './deadletter.js';
export type { DeadLetterInfo } from './deadletter.js';
