// The node process's wiring: one binary TCP port for clients and peers, the
// console and HTTP ports, request dispatch by opcode to service handlers, and
// graceful start/stop. Services (raft groups, locks, ...) plug in through
// handle(), the console registry and the HTTP router.

import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { connectionsRefusedAnsweredMax, featureVersionBase, featureVersionCurrent, protocolVersion } from '../../core/constants.js';
import type { NodeId } from '../../core/ids.js';
import { DsyncError, ErrorCode, ProtocolError } from '../../protocol/errors.js';
import { encodeFrame, FrameType, Opcode, opcodeName } from '../../protocol/frame.js';
import { schema } from '../../protocol/index.js';
import type { NodeConfig } from './config.js';
import { Connection, type ConnectionOwner } from './connection.js';
import { ConsoleRegistry, ConsoleServer } from './console.js';
import { HttpGateway } from './gateway.js';
import { HttpServer, sendJson } from './http.js';
import { listenError, listenOn } from './listen.js';
import { Logger } from './log.js';
import { NodeMetrics } from './metrics.js';
import { PeerLinks } from './peers.js';
import { type Access, type Credential, roleAllows, verifiedPeerName } from './security.js';
import { registerStatusPage } from './status.js';
import type { ClientLink, RequestHandler, ServiceNode } from '../services/service.js';

export type { RequestContext, RequestHandler } from '../services/service.js';

/** Exit code of a node stopped by a broken invariant or failed storage (EX_SOFTWARE). */
export const fatalExitCode = 70;
/** Handles a push from a peer; a returned ProtocolError closes that peer's link with its message. */
export type PeerPushHandler = (from: NodeId, payload: Uint8Array) => ProtocolError | null;

/** Decodes a protobuf payload, turning any decoder exception into BAD_PAYLOAD. */
export function decodePayload<T>(decode: (bytes: Uint8Array) => T, payload: Uint8Array, what: string): T {
  try {
    return decode(payload);
  } catch (err) {
    throw new ProtocolError(ErrorCode.BAD_PAYLOAD, `undecodable ${what} payload: ${(err as Error).message}`, false);
  }
}

export interface MemberView {
  readonly id: NodeId;
  readonly address: string;
  /** Whether this node reaches that member now (a live peer link; always true for itself). */
  readonly connected: boolean;
  readonly voter: boolean;
  readonly role: 'voter' | 'learner';
  /** Where peers dial it ('' when not known). */
  readonly peerAddress: string;
  /** The feature version it last said it speaks (0: never said). */
  readonly featureVersion?: number;
}

/** Whether a node that says hello as a peer may link to this one. */
export type PeerAdmission = 'member' | 'removed' | 'unknown';

/** Group status as services report it (group 0 first). */
export type GroupStatusView = ReturnType<typeof schema.GroupStatus.create>;

export class DsyncNode implements ConnectionOwner, ServiceNode {
  readonly log: Logger;
  readonly consoleCommands = new ConsoleRegistry();
  readonly metrics: NodeMetrics;
  readonly http = new HttpServer();
  /** The JSON gateway under /v1/ on the HTTP port: the same handlers as the binary port (serve()). */
  readonly gateway: HttpGateway;
  readonly peers: PeerLinks;
  readonly startedAtMs = Date.now();
  private readonly server: Server;
  private readonly console: ConsoleServer;
  private readonly connections = new Set<Connection>();
  private readonly handlers = new Map<number, { readonly handler: RequestHandler; readonly access: Access }>();
  private readonly peerPushHandlers = new Map<number, PeerPushHandler>();
  private readonly groupStatusProviders: (() => GroupStatusView[])[] = [];
  private readonly stopHooks: (() => Promise<void> | void)[] = [];
  private leaderProvider: () => NodeId | '' = () => '';
  /** Group 0's members (the members service sets it; before that, --peers as voters). */
  private membersProvider: (() => MemberView[]) | null = null;
  /** Who may link as a peer (the members service sets it; before that, --peers only). */
  private peerAdmission: (id: NodeId) => PeerAdmission = (id) => (this.config.peers.some((p) => p.id === id) ? 'member' : 'unknown');
  /** What a broken invariant does: exit at once (main.ts may replace it; tests record instead). */
  private fatalHandler: (message: string, exitCode: number) => void = (_message, exitCode) => { process.exit(exitCode); };
  /** Client addresses peers advertised in their hello (may differ from the peer-link address). */
  private readonly advertisedAddresses = new Map<string, string>();
  /** The feature version each peer said in its latest hello. */
  private readonly peerFeatureVersions = new Map<string, number>();
  /** The lowest feature version a peer may speak (the cluster version; the members service sets it). */
  private peerFeatureVersionFloor: () => number = () => featureVersionBase;
  /** Group 0's cluster id and version for status (the members service sets it). */
  private clusterProvider: () => { clusterId: string; clusterVersion: number } = () => ({ clusterId: '', clusterVersion: featureVersionBase });
  /** The storage/snapshot feature version this node speaks (server/node/version.ts). */
  readonly featureVersion: number;
  boundPort = 0;

  constructor(readonly config: NodeConfig, log?: Logger) {
    this.log = log ?? new Logger(config.nodeId, config.logLevel);
    this.metrics = new NodeMetrics(config.nodeId);
    const security = config.security;
    this.featureVersion = config.featureVersion ?? featureVersionCurrent;
    this.peers = new PeerLinks(config.peers, config.nodeId, config.advertise, this.log, undefined, security, this.featureVersion);
    const accept = (socket: Socket): void => {
      if (this.connections.size >= security.connectionsMax) {
        const payload = schema.ErrorReply.encode({ code: ErrorCode.TOO_MANY_CONNECTIONS,
          message: `node ${config.nodeId} holds its limit of ${security.connectionsMax} connections; try another node or later` }).finish();
        socket.end(encodeFrame(FrameType.Error, Opcode.None, 0, payload));
        socket.on('error', () => { /* the client may already be gone */ });
        return;
      }
      const conn = new Connection(socket, this);
      this.connections.add(conn);
    };
    const tls = security.tls;
    // With TLS every byte on the binary port is encrypted; peers must present a certificate
    // signed by the cluster CA (checked at their hello), clients may present none.
    this.server = tls === null ? createServer(accept)
      : createTlsServer({ cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: true, rejectUnauthorized: false }, accept);
    this.server.on('tlsClientError', (err: Error) => this.log.debug('TLS handshake failed', { err: err.message }));
    // Past this, sockets are dropped unanswered (each refused one above still costs a socket).
    this.server.maxConnections = security.connectionsMax + connectionsRefusedAnsweredMax;
    this.console = new ConsoleServer(this.consoleCommands, config.nodeId, this.log, security.auth);
    this.gateway = new HttpGateway(this);
    this.registerBuiltins();
  }

  get nodeId(): NodeId {
    return this.config.nodeId;
  }

  /** Registers the handler for a client request opcode, and what a credential needs to call it (auth on). */
  handle(opcode: number, handler: RequestHandler, access: Access = 'write'): void {
    if (this.handlers.has(opcode)) throw new Error(`handler for ${opcodeName(opcode)} registered twice`);
    this.handlers.set(opcode, { handler, access });
  }

  /** Requests per second one connection may send (Connection reads it). */
  get requestRatePerConnection(): number {
    return this.config.security.requestRatePerConnection;
  }

  requestAnswered(opcode: number, code: string, seconds: number): void {
    this.metrics.answered(opcode, code, seconds);
  }

  authenticate(conn: Connection, hello: { readonly name: string; readonly credentials: string }): DsyncError | null {
    const { tls, auth } = this.config.security;
    if (conn.role === 'peer' && tls !== null) {
      const certName = verifiedPeerName(conn.socket as TLSSocket);
      if (certName === null) return new DsyncError(ErrorCode.UNAUTHORIZED, 'peer links need a certificate signed by the cluster CA (mutual TLS)');
      if (certName !== hello.name) return new DsyncError(ErrorCode.UNAUTHORIZED, `the peer certificate names ${certName}, not ${hello.name}`);
    }
    if (auth === null) return null;
    if (hello.credentials === '') return new DsyncError(ErrorCode.UNAUTHORIZED, `node ${this.config.nodeId} requires a token (client: token option; CLI: --token or DSYNC_TOKEN)`);
    const credential = auth.check(hello.credentials);
    if (credential === null) return new DsyncError(ErrorCode.UNAUTHORIZED, 'the token is not valid here');
    if (conn.role === 'peer' && credential.role !== 'peer') return new DsyncError(ErrorCode.UNAUTHORIZED, 'peer links need a peer token');
    conn.credential = credential;
    return null;
  }

  /** Registers the handler for a push frame from a peer node (e.g. Raft traffic). */
  handlePeerPush(opcode: number, handler: PeerPushHandler): void {
    if (this.peerPushHandlers.has(opcode)) throw new Error(`peer push handler for ${opcodeName(opcode)} registered twice`);
    this.peerPushHandlers.set(opcode, handler);
  }

  /** A Push frame to a peer over its outbound link (fire and forget; false when dropped). */
  sendPeer(to: NodeId, opcode: number, payload: Uint8Array, now = false): boolean {
    return this.peers.send(to, opcode, payload, now);
  }

  addGroupStatus(provider: () => GroupStatusView[]): void {
    this.groupStatusProviders.push(provider);
  }

  setLeaderProvider(provider: () => NodeId | ''): void {
    this.leaderProvider = provider;
  }

  setMembersProvider(provider: () => MemberView[]): void {
    this.membersProvider = provider;
  }

  setPeerAdmission(admission: (id: NodeId) => PeerAdmission): void {
    this.peerAdmission = admission;
  }

  /** Closes every inbound peer link from `id`, telling it why (e.g. MEMBER_REMOVED). */
  refusePeer(id: NodeId, err: DsyncError): void {
    for (const conn of this.connections) {
      if (conn.role === 'peer' && conn.name === id && !conn.closed) conn.refuse(err);
    }
  }

  /** The feature version `id` said it speaks in its latest peer hello (0: no hello since this node started). */
  featureVersionOf(id: NodeId): number {
    return this.peerFeatureVersions.get(id) ?? 0;
  }

  setPeerFeatureVersionFloor(floor: () => number): void {
    this.peerFeatureVersionFloor = floor;
  }

  setClusterProvider(provider: () => { clusterId: string; clusterVersion: number }): void {
    this.clusterProvider = provider;
  }

  /** The client address a peer advertised in its hello ('' when it never said). */
  advertisedAddressOf(id: NodeId): string {
    return this.advertisedAddresses.get(id) ?? '';
  }

  /** Replaces what fatal() does after logging (the default exits with fatalExitCode). */
  setFatalHandler(handler: (message: string, exitCode: number) => void): void {
    this.fatalHandler = handler;
  }

  /** A bug or lost storage: log it with its stack and stop the process; a replica that goes on may do harm. */
  fatal(message: string, err?: unknown, exitCode: number = fatalExitCode): void {
    const detail = err === undefined ? '' : err instanceof Error ? err.stack ?? err.message : String(err);
    this.log.error('fatal: stopping the node', { reason: message, err: detail });
    this.fatalHandler(err === undefined ? message : `${message}: ${err instanceof Error ? err.message : String(err)}`, exitCode);
  }

  onStop(hook: () => Promise<void> | void): void {
    this.stopHooks.push(hook);
  }

  /** This node's client-facing address (the bound port when it asked for port 0). */
  addressOfSelf(): string {
    return this.config.port === 0 ? `${this.config.host}:${this.boundPort}` : this.config.advertise;
  }

  /** Client-facing address of a member (this node or a peer). */
  addressOf(id: NodeId | ''): string {
    if (id === '') return '';
    if (id === this.config.nodeId) return this.addressOfSelf();
    const advertised = this.advertisedAddresses.get(id);
    if (advertised !== undefined) return advertised;
    const member = this.membersProvider?.().find((m) => m.id === id);
    if (member !== undefined && member.address !== '') return member.address;
    const peer = this.config.peers.find((p) => p.id === id);
    return peer === undefined ? '' : `${peer.host}:${peer.port}`;
  }

  members(): MemberView[] {
    if (this.membersProvider !== null) return this.membersProvider();
    return [
      { id: this.config.nodeId, address: this.addressOf(this.config.nodeId), connected: true, voter: true, role: 'voter', peerAddress: this.config.advertise },
      ...this.config.peers.map((p) => ({ id: p.id, address: this.addressOf(p.id), connected: this.peers.isConnected(p.id), voter: true,
        role: 'voter' as const, peerAddress: `${p.host}:${p.port}` })),
    ];
  }

  /** Prometheus text at /metrics: the node's own series here, services add theirs through `metrics`. */
  private registerMetrics(): void {
    const m = this.metrics;
    const groups = (pick: (g: GroupStatusView) => number): Iterable<[{ group: number }, number]> =>
      this.groupStatuses().map((g) => [{ group: g.group }, pick(g)]);
    m.gauge('dsync_raft_term', 'Current Raft term of each group hosted here', ['group'], () => groups((g) => Number(g.term)));
    m.gauge('dsync_raft_commit_index', 'Highest log index known committed, per group', ['group'], () => groups((g) => Number(g.commit)));
    m.gauge('dsync_raft_applied_index', 'Highest log index applied here, per group', ['group'], () => groups((g) => Number(g.applied)));
    m.gauge('dsync_raft_last_index', 'Last log index here, per group', ['group'], () => groups((g) => Number(g.lastIndex)));
    m.gauge('dsync_raft_is_leader', '1 when this node leads the group', ['group'], () => groups((g) => (g.role === 'leader' ? 1 : 0)));
    m.gauge('dsync_raft_has_leader', '1 when this node knows a leader of the group', ['group'], () => groups((g) => (g.leaderId === '' ? 0 : 1)));
    m.gauge('dsync_connections', 'Open connections on the binary port, by role', ['role'], () => {
      const count = new Map<string, number>([['client', 0], ['peer', 0], ['pending', 0]]);
      for (const c of this.connections) count.set(c.role, (count.get(c.role) ?? 0) + 1);
      return [...count].map(([role, n]) => [{ role }, n]);
    });
    m.gauge('dsync_peer_links_up', 'Outbound peer links connected', [], () => [[{}, this.members().filter((x) => x.id !== this.config.nodeId && x.connected).length]]);
    this.http.route('GET', '/metrics', async (_req, res) => {
      const text = await m.text();
      res.writeHead(200, { 'content-type': m.contentType, 'content-length': Buffer.byteLength(text) });
      res.end(text);
    });
  }

  groupStatuses(): GroupStatusView[] {
    return this.groupStatusProviders.flatMap((p) => p());
  }

  leaderId(): NodeId | '' {
    return this.leaderProvider();
  }

  /** The error a follower answers with: NOT_LEADER naming the leader when known. */
  notLeader(what: string, leader: NodeId | '' = this.leaderId()): DsyncError {
    if (leader === '') return new DsyncError(ErrorCode.UNAVAILABLE, `no leader is known right now for ${what}; retry shortly`);
    return new DsyncError(ErrorCode.NOT_LEADER, `${this.nodeId} is not the leader for ${what}; the leader is ${leader} at ${this.addressOf(leader)}`,
      { leaderId: leader, leaderAddress: this.addressOf(leader) });
  }

  /**
   * Binds the three ports, then dials the peers. Throws StartError naming the setting when
   * a port cannot be bound, after closing whatever it had bound (no half-started node).
   */
  async start(): Promise<{ port: number; httpPort: number; consolePort: number }> {
    const { host, settingLabels: labels } = this.config;
    const bound: (() => Promise<void>)[] = [];
    const bind = async (what: () => Promise<number>, close: () => Promise<void>, port: number, label: string): Promise<number> => {
      try {
        const p = await what();
        bound.push(close);
        return p;
      } catch (err) {
        for (const c of bound.reverse()) await c();
        throw listenError(err, host, port, label);
      }
    };
    this.boundPort = await bind(() => listenOn(this.server, host, this.config.port),
      () => new Promise((r) => this.server.close(() => r())), this.config.port, labels.port);
    const httpPort = await bind(() => this.http.listen(host, this.config.httpPort), () => this.http.close(), this.config.httpPort, labels.httpPort);
    const consolePort = await bind(() => this.console.listen(host, this.config.consolePort), () => this.console.close(),
      this.config.consolePort, labels.consolePort);
    this.peers.start();
    this.log.info('node listening', { port: this.boundPort, httpPort, consolePort, peers: this.config.peers.length });
    return { port: this.boundPort, httpPort, consolePort };
  }

  /** Undoes a start that failed before the node served anyone: the stop hooks (services, groups, WAL), quietly. */
  async abortStart(): Promise<void> {
    for (const hook of this.stopHooks.splice(0).reverse()) await hook();
    this.peers.stop();
  }

  async stop(): Promise<void> {
    this.log.info('node stopping');
    this.server.close();
    for (const hook of this.stopHooks.splice(0).reverse()) await hook();
    this.peers.stop();
    for (const conn of this.connections) conn.close('node shutting down');
    this.gateway.stop();
    await this.console.close();
    await this.http.close();
    this.log.info('node stopped');
  }

  /** Any failure as the DsyncError a client should see (programmer errors become INTERNAL). */
  asDsyncError(err: unknown): DsyncError {
    if (err instanceof DsyncError) return err;
    this.log.error('internal error', { err: err instanceof Error ? err.stack ?? err.message : String(err) });
    return new DsyncError(ErrorCode.INTERNAL, `internal error: ${err instanceof Error ? err.message : String(err)}`);
  }

  // ---- ConnectionOwner ----

  helloReply(): Uint8Array {
    return schema.HelloReply.encode({ nodeId: this.config.nodeId, protocolVersion, members: this.members() }).finish();
  }

  dispatch(conn: Connection, type: FrameType, opcode: number, requestId: number, payload: Uint8Array): void {
    if (type === FrameType.Push) {
      const handler = conn.role === 'peer' ? this.peerPushHandlers.get(opcode) : undefined;
      if (handler === undefined) {
        conn.push(Opcode.None, requestId, schema.ErrorReply.encode({ code: ErrorCode.BAD_REQUEST, message: `unexpected push ${opcodeName(opcode)}` }).finish());
        return;
      }
      const malformed = handler(conn.name as NodeId, payload);
      if (malformed !== null) {
        this.log.warn('closing a peer link that sent a malformed push', { peer: conn.name, opcode: opcodeName(opcode), err: malformed.message });
        conn.push(Opcode.None, requestId, schema.ErrorReply.encode({ code: malformed.code, message: malformed.message }).finish());
        conn.close(malformed.message);
      }
      return;
    }
    this.serve(conn, conn.credential, opcode, requestId, payload);
  }

  /**
   * Runs a client request through the opcode's registered handler: the one path for the
   * binary port and the HTTP gateway (server/node/gateway.ts), so both get the same access
   * check, the same handler and the same answers. `credential` null: the node asks for none.
   * The answer (or error) goes to `link`; a thrown non-DsyncError is a bug and propagates.
   */
  serve(link: ClientLink, credential: Credential | null, opcode: number, requestId: number, payload: Uint8Array): void {
    const registered = this.handlers.get(opcode);
    if (registered === undefined) {
      link.replyError(requestId, opcode, new DsyncError(ErrorCode.UNKNOWN_OPCODE, `this node has no handler for ${opcodeName(opcode)}`));
      return;
    }
    if (credential !== null && !roleAllows(credential.role, registered.access)) {
      link.replyError(requestId, opcode, new DsyncError(ErrorCode.FORBIDDEN,
        `${credential.name} (${credential.role}) may not ${opcodeName(opcode)}: it needs ${registered.access} access`));
      return;
    }
    try {
      registered.handler({ conn: link, requestId, opcode }, payload);
    } catch (err) {
      if (err instanceof DsyncError) link.replyError(requestId, opcode, err);
      else throw err;
    }
  }

  closed(conn: Connection): void {
    this.connections.delete(conn);
  }

  peerHello(conn: Connection): DsyncError | null {
    const admission = this.peerAdmission(conn.name as NodeId);
    if (admission === 'removed') {
      this.log.warn('refusing a peer link from a removed member', { name: conn.name, from: conn.remoteAddress });
      return removedError(conn.name);
    }
    if (admission === 'unknown') {
      this.log.warn('refusing a peer link from a node that is not a member', { name: conn.name, from: conn.remoteAddress });
      return new DsyncError(ErrorCode.UNAUTHORIZED, `node ${conn.name} is not a member of group 0 here (not in --peers nor added by a join)`);
    }
    const floor = this.peerFeatureVersionFloor();
    if (conn.featureVersion < floor) {
      // Snapshots in the cluster's formats would reach it, which it cannot read.
      this.log.warn('refusing a peer link from a member that speaks a feature version below the cluster version',
        { name: conn.name, from: conn.remoteAddress, speaks: conn.featureVersion, clusterVersion: floor });
      return new DsyncError(ErrorCode.FEATURE_VERSION, `node ${conn.name} speaks feature version ${conn.featureVersion}; this cluster requires ${floor} (upgrade it)`);
    }
    if (conn.advertise !== '') this.advertisedAddresses.set(conn.name, conn.advertise);
    this.peerFeatureVersions.set(conn.name, conn.featureVersion);
    return null;
  }

  // ---- built-in operations ----

  /** Whether this node can serve group 0 now, and if not, why (for /readyz). */
  readiness(): { ready: boolean; reason: string; leader: string; commit: number; applied: number } {
    const g0 = this.groupStatuses().find((g) => (g.group ?? 0) === 0);
    if (g0 === undefined) return { ready: false, reason: 'group 0 has not started', leader: '', commit: 0, applied: 0 };
    const leader = g0.leaderId ?? '';
    const commit = Number(g0.commit ?? 0);
    const applied = Number(g0.applied ?? 0);
    const view = { leader, commit, applied };
    if (leader === '') return { ready: false, reason: 'group 0 has no leader that this node knows of', ...view };
    if (leader !== this.config.nodeId && this.members().find((m) => m.id === leader)?.connected !== true) {
      return { ready: false, reason: `the leader ${leader} is not reachable from this node`, ...view };
    }
    if (applied < commit) return { ready: false, reason: `applied index ${applied} is behind the commit index ${commit}`, ...view };
    return { ready: true, reason: '', ...view };
  }

  statusReply(): ReturnType<typeof schema.StatusReply.create> {
    const leader = this.leaderId();
    return schema.StatusReply.create({
      nodeId: this.config.nodeId,
      address: this.addressOf(this.config.nodeId),
      members: this.members(),
      leaderId: leader,
      leaderAddress: this.addressOf(leader),
      uptimeMs: Date.now() - this.startedAtMs,
      groups: this.groupStatuses(),
      ...this.clusterProvider(),
    });
  }

  private registerBuiltins(): void {
    this.handle(Opcode.Ping, (ctx, payload) => {
      const ping = decodePayload((b) => schema.Ping.decode(b), payload, 'ping');
      ctx.conn.reply(ctx.requestId, ctx.opcode, schema.Pong.encode({ payload: ping.payload }).finish());
    }, 'read');
    this.handle(Opcode.Status, (ctx) => {
      ctx.conn.reply(ctx.requestId, ctx.opcode, schema.StatusReply.encode(this.statusReply()).finish());
    }, 'read');

    this.consoleCommands.register({ name: 'ping', usage: 'ping', help: 'check the console is alive', run: () => 'pong' });
    this.consoleCommands.register({
      name: 'status', usage: 'status', help: 'node id, leader, uptime, groups',
      run: () => formatStatus(this.statusReply()),
    });
    this.consoleCommands.register({
      name: 'members', usage: 'members', help: "group 0's members: role (voter/learner), address, reachable from here",
      run: () => this.members().map((m) => `${m.id.padEnd(8)} ${m.address.padEnd(22)} ${m.role.padEnd(8)} ${m.id === this.config.nodeId ? 'self' : m.connected ? 'reachable' : 'unreachable'}`).join('\n'),
    });

    // Liveness: the process serves HTTP. An orchestrator restarts a node that fails it.
    this.registerMetrics();
    this.http.route('GET', '/livez', (_req, res) => {
      sendJson(res, 200, { status: 'ok', nodeId: this.config.nodeId, uptimeMs: Date.now() - this.startedAtMs });
    });
    // Readiness: group 0 has a leader this node reaches and this node applied what it knows committed.
    this.http.route('GET', '/readyz', (_req, res) => {
      const r = this.readiness();
      sendJson(res, r.ready ? 200 : 503, { status: r.ready ? 'ready' : 'not ready', nodeId: this.config.nodeId, ...r });
    });
    registerStatusPage(this);
    // The JSON gateway and its OpenAPI document.
    this.http.route('GET', '/openapi.yaml', (req, res) => this.gateway.serveSpec(req, res));
    this.http.mount('/v1/', (req, res) => this.gateway.handle(req, res));
    // Kept for existing probes: liveness plus the leader this node knows ("" when none). Prefer /livez and /readyz.
    this.http.route('GET', '/healthz', (_req, res) => {
      sendJson(res, 200, { status: 'ok', nodeId: this.config.nodeId, leader: this.leaderId(), uptimeMs: Date.now() - this.startedAtMs });
    });
  }
}

/** What a removed node is told by the members it tries to reach. */
export function removedError(id: string): DsyncError {
  return new DsyncError(ErrorCode.MEMBER_REMOVED,
    `node ${id} was removed from the cluster; it no longer takes part. To bring the machine back, start it with a new --id, an empty --data-dir and --join`);
}

export function formatStatus(s: ReturnType<typeof schema.StatusReply.create>): string {
  const lines = [
    `node     ${s.nodeId} (${s.address})`,
    `leader   ${s.leaderId === '' ? '(none known)' : `${s.leaderId} (${s.leaderAddress})`}`,
    `uptime   ${Math.round(Number(s.uptimeMs) / 1000)}s`,
    `cluster  ${s.clusterId === '' || s.clusterId === undefined || s.clusterId === null ? '(no id yet)' : s.clusterId} version ${s.clusterVersion ?? 0}`,
    `members  ${s.members.map((m) => `${m.id ?? ''}[${m.role === '' || m.role === undefined ? 'voter' : m.role}]${m.connected === true ? '' : '(unreachable)'}`).join(' ')}`,
  ];
  for (const g of s.groups) {
    lines.push(`group ${g.group ?? 0}  role=${g.role ?? ''} leader=${g.leaderId === '' ? '-' : g.leaderId ?? '-'} term=${Number(g.term ?? 0)} commit=${Number(g.commit ?? 0)} applied=${Number(g.applied ?? 0)} last=${Number(g.lastIndex ?? 0)} voters=${(g.voters ?? []).join(',')}`);
  }
  return lines.join('\n');
}
