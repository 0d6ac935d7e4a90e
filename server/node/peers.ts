// Outbound links to the other nodes: one TCP connection per peer, opened with a
// peer hello, reconnected with capped exponential backoff. Sends are fire and
// forget (Raft retransmits); a link that cannot keep up drops, never buffers
// without bound. The set of links follows group 0's configuration at run time
// (sync); a peer answering MEMBER_REMOVED tells this node it was removed.

import type { Socket } from 'node:net';
import { connectionWriteQueueBytesMax, peerReconnectBackoffMsMax, peerReconnectBackoffMsMin,
  featureVersionCurrent, protocolVersion } from '../../core/constants.js';
import type { NodeId } from '../../core/ids.js';
import { ErrorCode, type ProtocolError } from '../../protocol/errors.js';
import { FrameDecoder, FrameType, Opcode } from '../../protocol/frame.js';
import { schema } from '../../protocol/index.js';
import { FrameWriter } from '../../protocol/writer.js';
import type { PeerAddress } from './config.js';
import { latencyTrace } from './latency-trace.js';
import type { Logger } from './log.js';
import { dialNode, type NodeSecurity, openSecurity } from './security.js';

class PeerLink {
  private socket: Socket | null = null;
  private writer: FrameWriter | null = null;
  private ready = false;
  private backoffMs = peerReconnectBackoffMsMin;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  droppedFrames = 0;

  constructor(readonly peer: PeerAddress, private readonly selfId: NodeId, private readonly advertise: string, private readonly log: Logger,
    private readonly security: NodeSecurity, private readonly featureVersion: number,
    private readonly onUp: (peer: NodeId) => void, private readonly onRemoved: (by: NodeId, message: string) => void,
    private readonly onFeatureVersionRefused: (by: NodeId, message: string) => void) {}

  /** Bytes handed to this link and not yet written to the socket's kernel buffer. */
  get queuedBytes(): number {
    return (this.socket?.writableLength ?? 0) + (this.writer?.queuedBytes ?? 0);
  }

  get connected(): boolean {
    return this.ready;
  }

  start(): void {
    this.dial();
  }

  /** `now`: hand it to the socket at once (the caller batched the turn's messages already) instead of at the end of the turn. */
  send(opcode: number, payload: Uint8Array, now = false): boolean {
    const socket = this.socket;
    const writer = this.writer;
    if (!this.ready || socket === null || writer === null || socket.writableLength + writer.queuedBytes > connectionWriteQueueBytesMax) {
      this.droppedFrames++;
      return false;
    }
    writer.send(FrameType.Push, opcode, 0, payload, now);
    return true;
  }

  stop(): void {
    this.stopped = true;
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.writer?.close();
    this.socket?.destroy();
  }

  private dial(): void {
    if (this.stopped) return;
    const socket = dialNode(this.peer.host, this.peer.port, this.security, this.peer.id, () => {
      writer.send(FrameType.Request, Opcode.Hello, 1, schema.Hello.encode({ role: schema.Role.ROLE_PEER,
        protocolVersion, name: this.selfId, advertise: this.advertise, credentials: this.security.auth?.peerToken ?? '', featureVersion: this.featureVersion }).finish());
    });
    this.socket = socket;
    socket.setNoDelay(true);
    const writer = new FrameWriter({ write: (chunk) => {
      latencyTrace?.mark('peerWrite');
      return socket.write(chunk);
    } });
    this.writer = writer;
    const decoder = new FrameDecoder({
      frame: (type, opcode, _requestId, payload) => {
        if (type === FrameType.Error) {
          let code = '';
          let message = '';
          try {
            const reply = schema.ErrorReply.decode(payload);
            code = reply.code;
            message = reply.message;
          } catch {
            // an undecodable error frame says nothing we can act on
          }
          if (code === ErrorCode.MEMBER_REMOVED) this.onRemoved(this.peer.id, message);
          else if (code === ErrorCode.FEATURE_VERSION) this.onFeatureVersionRefused(this.peer.id, message);
          else this.log.warn('peer refused the link', { peer: this.peer.id, code, message });
          return;
        }
        if (type === FrameType.Response && opcode === Opcode.Hello && !this.ready) {
          this.ready = true;
          this.backoffMs = peerReconnectBackoffMsMin;
          this.log.info('peer link up', { peer: this.peer.id });
          this.onUp(this.peer.id);
        }
      },
      error: (err: ProtocolError) => {
        this.log.warn('peer sent malformed bytes; reconnecting', { peer: this.peer.id, err: err.message });
        socket.destroy();
      },
    });
    socket.on('data', (chunk: Buffer) => decoder.push(chunk));
    socket.on('error', (err) => {
      // A TLS failure (certificate not signed by the cluster CA, wrong node) repeats on every redial: say why.
      if (this.security.tls !== null && !this.ready) this.log.debug('peer link failed', { peer: this.peer.id, err: err.message });
      // 'close' follows; the reconnect is scheduled there
    });
    socket.on('close', () => {
      if (this.ready) this.log.info('peer link down', { peer: this.peer.id });
      this.ready = false;
      writer.close();
      if (this.socket === socket) this.scheduleReconnect();
    });
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    const delayMs = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, peerReconnectBackoffMsMax);
    this.reconnectTimer = setTimeout(() => this.dial(), delayMs);
    this.reconnectTimer.unref();
  }
}

export class PeerLinks {
  private readonly links = new Map<NodeId, PeerLink>();
  private started = false;
  private stopped = false;
  /** Told once per peer answer that this node was removed from the cluster. */
  onRemoved: (by: NodeId, message: string) => void = () => {};
  /** Told when a peer refuses this node's link because the cluster requires a newer feature version. */
  onFeatureVersionRefused: (by: NodeId, message: string) => void = () => {};

  constructor(peers: readonly PeerAddress[], private readonly selfId: NodeId, private readonly advertise: string, private readonly log: Logger,
    private readonly onUp: (peer: NodeId) => void = () => {}, private readonly security: NodeSecurity = openSecurity,
    private readonly featureVersion: number = featureVersionCurrent) {
    for (const peer of peers) this.links.set(peer.id, this.newLink(peer));
  }

  start(): void {
    this.started = true;
    for (const link of this.links.values()) link.start();
  }

  /**
   * Makes the links exactly `peers` (group 0's members but this node): opens links to new
   * members, closes links to members that left, redials a member whose address changed.
   */
  sync(peers: readonly PeerAddress[]): void {
    if (this.stopped) return;
    const wanted = new Map(peers.filter((p) => p.id !== this.selfId).map((p) => [p.id, p]));
    for (const [id, link] of this.links) {
      const want = wanted.get(id);
      if (want !== undefined && want.host === link.peer.host && want.port === link.peer.port) continue;
      link.stop();
      this.links.delete(id);
      this.log.info('peer link closed: no longer a member at that address', { peer: id, address: `${link.peer.host}:${link.peer.port}` });
    }
    for (const [id, peer] of wanted) {
      if (this.links.has(id)) continue;
      const link = this.newLink(peer);
      this.links.set(id, link);
      this.log.info('peer link added: a member of group 0', { peer: id, address: `${peer.host}:${peer.port}` });
      if (this.started) link.start();
    }
  }

  /** Peers linked now (sorted). */
  ids(): NodeId[] {
    return [...this.links.keys()].sort();
  }

  /** `now`: written to the socket at once, not batched with the rest of the turn (see PeerLink.send). */
  send(peer: NodeId, opcode: number, payload: Uint8Array, now = false): boolean {
    return this.links.get(peer)?.send(opcode, payload, now) ?? false;
  }

  queuedBytes(peer: NodeId): number {
    return this.links.get(peer)?.queuedBytes ?? 0;
  }

  isConnected(peer: NodeId): boolean {
    return this.links.get(peer)?.connected ?? false;
  }

  stop(): void {
    this.stopped = true;
    for (const link of this.links.values()) link.stop();
  }

  private newLink(peer: PeerAddress): PeerLink {
    return new PeerLink(peer, this.selfId, this.advertise, this.log, this.security, this.featureVersion, this.onUp, (by, message) => this.onRemoved(by, message),
      (by, message) => this.onFeatureVersionRefused(by, message));
  }
}
