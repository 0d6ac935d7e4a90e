// Branded identifier types, so a term can never be passed where a log index is
// expected (and so on). Brands cost nothing at run time.

declare const brand: unique symbol;
export type Brand<T, B extends string> = T & { readonly [brand]: B };

export type NodeId = Brand<string, 'NodeId'>;
export type GroupId = Brand<number, 'GroupId'>;
export type Term = Brand<number, 'Term'>;
export type LogIndex = Brand<number, 'LogIndex'>;
export type SessionId = Brand<number, 'SessionId'>;
export type FencingToken = Brand<number, 'FencingToken'>;
export type ClientId = Brand<string, 'ClientId'>;
/** A cache node as a small integer (0 .. cacheNodesMax-1): a bit in a home's sharer mask. */
export type CacheNodeIndex = Brand<number, 'CacheNodeIndex'>;
/** A topic's partition number, 0 .. partitions-1, fixed for the topic's life. */
export type PartitionId = Brand<number, 'PartitionId'>;
/** A message's position in its partition: 0, 1, 2, ... in append order, never reused. */
export type Offset = Brand<number, 'Offset'>;
/** One message's delivery to one consumer group; kept across its redelivery attempts. */
export type DeliveryId = Brand<number, 'DeliveryId'>;
/** Chosen by a producer; with its sequence numbers it makes publish retries idempotent. */
export type ProducerId = Brand<string, 'ProducerId'>;
/** Chosen by a consumer (one per connection and group is the client's use). */
export type ConsumerId = Brand<string, 'ConsumerId'>;
/** A consumer group's name: the group shares one cursor per partition. */
export type ConsumerGroup = Brand<string, 'ConsumerGroup'>;

export const nodeId = (s: string): NodeId => s as NodeId;
export const groupId = (n: number): GroupId => n as GroupId;
export const term = (n: number): Term => n as Term;
export const logIndex = (n: number): LogIndex => n as LogIndex;
export const sessionId = (n: number): SessionId => n as SessionId;
export const fencingToken = (n: number): FencingToken => n as FencingToken;
export const clientId = (s: string): ClientId => s as ClientId;
export const cacheNodeIndex = (n: number): CacheNodeIndex => n as CacheNodeIndex;
export const partitionId = (n: number): PartitionId => n as PartitionId;
export const offset = (n: number): Offset => n as Offset;
export const deliveryId = (n: number): DeliveryId => n as DeliveryId;
export const producerId = (s: string): ProducerId => s as ProducerId;
export const consumerId = (s: string): ConsumerId => s as ConsumerId;
export const consumerGroup = (s: string): ConsumerGroup => s as ConsumerGroup;
