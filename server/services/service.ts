// The one seam every service (locks, queues, cache) plugs into: a name, an opcode
// range of its own, an optional part of group 0's state machine, start/stop. The
// node (server/main.ts) and the simulator (test/sim) start services the same way.

import { assert } from '../../core/assert.js';
import type { NodeId } from '../../core/ids.js';
import type { DsyncError, ProtocolError } from '../../protocol/errors.js';
import { opcodeName } from '../../protocol/frame.js';
import type { ConsoleRegistry } from '../node/console.js';
import type { Logger } from '../node/log.js';
import type { NodeMetrics } from '../node/metrics.js';
import type { Access } from '../node/security.js';
import type { EntryKind, Group0StateMachine, SubMachine } from '../raft/group0.js';
import type { GroupRegistry } from '../raft/runner.js';
import type { MonotonicClock, Scheduler } from '../runtime.js';

/** Opcodes below this belong to the node itself (hello, ping, status, raft); services start here. */
export const serviceOpcodeMin = 11;

/** Where a request came from and how to answer it: a client connection on a node, a simulated one in test/sim. */
export interface ClientLink {
  readonly closed: boolean;
  /**
   * `afterTask`: the answer leaves once the current task ends (a microtask), not at the end
   * of the event-loop turn. For answers a Raft ready pass produces (applied commands): at the
   * end of the turn they would wait behind the next poll phase's input.
   */
  reply(requestId: number, opcode: number, payload: Uint8Array, afterTask?: boolean): void;
  replyError(requestId: number, opcode: number, err: DsyncError, afterTask?: boolean): void;
  /** A frame the client did not ask for (e.g. a lock taken away). */
  push(opcode: number, requestId: number, payload: Uint8Array): void;
  /** Calls fn once when the link closes; returns an unsubscribe. */
  onClose(fn: () => void): () => void;
}

/** What a request handler gets: where to answer, and which request it answers. */
export interface RequestContext {
  readonly conn: ClientLink;
  readonly requestId: number;
  readonly opcode: number;
}

/** Throws a DsyncError to answer with it; anything else is a bug and stops the node. */
export type RequestHandler = (ctx: RequestContext, payload: Uint8Array) => void;

/**
 * A payload from the same service on another node (a Push frame on the peer link with the
 * service's opcode). A returned ProtocolError closes that peer's link (it sent garbage).
 */
export type PeerMessageHandler = (from: NodeId, payload: Uint8Array) => ProtocolError | null;

/**
 * Node-to-node messages of one service, outside Raft, over the existing peer links (as Raft
 * batches travel): fire and forget, no order across opcodes, dropped when a link is down or
 * full, so a service that needs delivery resends (the cache's requests and invalidations do).
 */
export interface PeerChannel {
  /**
   * Sends to peer `to` (not this node); false when it was dropped (no link, link full).
   * `now`: written to the link at once rather than with the rest of the turn (a caller that
   * already gathered its turn's messages, so the frame does not wait one more loop turn).
   */
  send(to: NodeId, opcode: number, payload: Uint8Array, now?: boolean): boolean;
  /** Registers the handler for `opcode` payloads from peers. */
  handle(opcode: number, handler: PeerMessageHandler): void;
}

/** A member of group 0 as services see it (the ring of the cache is built over the voters). */
export interface ServiceMember {
  readonly id: NodeId;
  readonly voter: boolean;
  /** This node reaches it now (a live peer link; always true for itself). */
  readonly connected: boolean;
}

/** The node as services see it. */
export interface ServiceNode {
  readonly nodeId: NodeId;
  readonly log: Logger;
  readonly consoleCommands: ConsoleRegistry;
  /** The node's Prometheus registry: services add their gauges and counters here. */
  readonly metrics: NodeMetrics;
  /** NOT_LEADER naming `leader` (UNAVAILABLE when none is known) for a request about `what`. */
  notLeader(what: string, leader: NodeId | ''): DsyncError;
  /** The client address of node `id` ('' when unknown); what NOT_LEADER names, without building the error. */
  addressOf(id: NodeId | ''): string;
  /** Any failure as the DsyncError a client should see (programmer errors logged, INTERNAL). */
  asDsyncError(err: unknown): DsyncError;
  /** `access`: what a credential's role needs to call it when the node asks for tokens (default write). */
  handle(opcode: number, handler: RequestHandler, access?: Access): void;
  /** Sends a Push frame to a peer over its peer link; false when dropped. `now` as PeerChannel.send. */
  sendPeer(to: NodeId, opcode: number, payload: Uint8Array, now?: boolean): boolean;
  /** Registers the handler of Push frames with `opcode` from peers. */
  handlePeerPush(opcode: number, handler: PeerMessageHandler): void;
  /** Group 0's members as this node knows them now. */
  members(): readonly ServiceMember[];
}

export interface ServiceContext {
  readonly node: ServiceNode;
  readonly groups: GroupRegistry;
  readonly clock: MonotonicClock;
  readonly scheduler: Scheduler;
  readonly log: Logger;
  /** Registers a request handler for an opcode in this service's range; `access` as ServiceNode.handle. */
  handle(opcode: number, handler: RequestHandler, access?: Access): void;
  /** Messages to and from the same service on peer nodes, opcodes in this service's range. */
  readonly peers: PeerChannel;
}

export interface Service {
  readonly name: string;
  /** Inclusive range of request/push opcodes this service owns; ranges of two services never overlap. */
  readonly opcodes: { readonly min: number; readonly max: number };
  /** The part of group 0's replicated state this service owns, if any. */
  readonly group0?: { readonly kind: EntryKind; readonly machine: SubMachine };
  start(ctx: ServiceContext): void;
  stop(): Promise<void> | void;
}

/** Checks the services' opcode ranges and names, and registers their group 0 parts. Throws on a conflict. */
export function registerServices(services: readonly Service[], group0: Group0StateMachine): void {
  const sorted = [...services].sort((a, b) => a.opcodes.min - b.opcodes.min);
  let previous: Service | null = null;
  const names = new Set<string>();
  for (const s of sorted) {
    if (names.has(s.name)) throw new Error(`service ${s.name} registered twice`);
    names.add(s.name);
    if (s.opcodes.min < serviceOpcodeMin || s.opcodes.max < s.opcodes.min) {
      throw new Error(`service ${s.name} claims opcodes ${s.opcodes.min}-${s.opcodes.max}; services use ${serviceOpcodeMin} and up, min <= max`);
    }
    if (previous !== null && s.opcodes.min <= previous.opcodes.max) {
      throw new Error(`services ${previous.name} (${previous.opcodes.min}-${previous.opcodes.max}) and ${s.name} (${s.opcodes.min}-${s.opcodes.max}) claim overlapping opcodes`);
    }
    previous = s;
  }
  for (const s of services) {
    if (s.group0 !== undefined) group0.register(s.group0.kind, s.name, s.group0.machine);
  }
}

/** The context one service starts with: the shared parts, and a handle() fenced to its opcode range. */
export function serviceContext(service: Service, shared: Omit<ServiceContext, 'handle' | 'peers'>): ServiceContext {
  const fenced = (opcode: number, what: string): void => {
    assert(opcode >= service.opcodes.min && opcode <= service.opcodes.max,
      `service ${service.name} ${what} ${opcodeName(opcode)} outside its opcodes ${service.opcodes.min}-${service.opcodes.max}`);
  };
  return {
    ...shared,
    handle: (opcode, handler, access) => {
      fenced(opcode, 'registers');
      shared.node.handle(opcode, handler, access);
    },
    peers: {
      send: (to, opcode, payload, now) => {
        fenced(opcode, 'sends');
        assert(to !== shared.node.nodeId, `service ${service.name} sends a peer message to its own node`);
        return shared.node.sendPeer(to, opcode, payload, now);
      },
      handle: (opcode, handler) => {
        fenced(opcode, 'registers peer messages');
        shared.node.handlePeerPush(opcode, handler);
      },
    },
  };
}
