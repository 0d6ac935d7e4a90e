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

export const nodeId = (s: string): NodeId => s as NodeId;
export const groupId = (n: number): GroupId => n as GroupId;
export const term = (n: number): Term => n as Term;
export const logIndex = (n: number): LogIndex => n as LogIndex;
export const sessionId = (n: number): SessionId => n as SessionId;
export const fencingToken = (n: number): FencingToken => n as FencingToken;
export const clientId = (s: string): ClientId => s as ClientId;
export const cacheNodeIndex = (n: number): CacheNodeIndex => n as CacheNodeIndex;
