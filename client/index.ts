// The public surface of the dsync client library (`import { Client } from 'dsync'`).
export { Client, type ClientOptions, type NodeStatus, type MemberStatus, type GroupStatus } from './client.js';
export type { ClientTlsOptions } from './transport/connection.js';
export { DsyncError, ProtocolError, ErrorCode } from '../protocol/errors.js';
export { DeadlockError, ForceReleasedError, LockTimeoutError, SessionExpiredError, type HeldLock, type LockAdmin, type LockMode, type LockOptions, type LockInfo, type LockSessionInfo } from './locks/locks.js';
export type { CacheApi, CacheSetOptions, CacheStats } from './cache/cache.js';
export type { Consumer, ConsumerOptions, Fencing, PartitionInfo, Producer, PublishOptions, PublishResult, ReceivedMessage, RetentionOptions, TopicAdmin,
  RedriveOptions, ReplayFrom, TopicInfo, TopicOptions } from './queues/queues.js';
