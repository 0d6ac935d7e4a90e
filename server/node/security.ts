// Who may talk to a node and over what: TLS material for the binary port and peer
// links (mutual TLS between peers), the token file that gives clients a role, and
// the per-connection request-rate bucket. The node, the console and the peer dialer
// all take their rules from here, so there is one way to authenticate.
//
// Token file (AUTH_FILE), one credential per line, `#` comments:
//     <role> <name> <token>
// role: admin | read-write | read-only | peer. A `peer` token is what nodes present to
// each other (every node reads the same file, so each knows the one it sends). Tokens
// are at least authTokenBytesMin characters. They are kept as SHA-256 digests and
// compared with timingSafeEqual against every credential (no early exit), so the
// time taken says nothing about which token, or how much of one, matched. Neither
// tokens nor the file's content are ever logged; errors name the file and line.

import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { authCredentialsMax, authTokenBytesMin, connectionsMax } from '../../core/constants.js';

export type AccessRole = 'admin' | 'read-write' | 'read-only' | 'peer';
/** What a request needs: reading state, changing it, or operating the cluster. */
export type Access = 'read' | 'write' | 'admin';

const roles: readonly AccessRole[] = ['admin', 'read-write', 'read-only', 'peer'];

export function roleAllows(role: AccessRole, access: Access): boolean {
  switch (role) {
    case 'admin': return true;
    // Peers join and forward as nodes do; they are cluster members, not end users.
    case 'peer': return true;
    case 'read-write': return access !== 'admin';
    case 'read-only': return access === 'read';
  }
}

export interface Credential {
  readonly name: string;
  readonly role: AccessRole;
}

interface StoredCredential extends Credential {
  readonly digest: Buffer;
}

/** A bad security setting: names the setting (and line), never the secret. */
export class SecurityConfigError extends Error {
  override name = 'SecurityConfigError';
}

function digestOf(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

export class Authenticator {
  private constructor(private readonly credentials: readonly StoredCredential[], readonly peerToken: string | null) {}

  /** Parses a token file's text; `source` names it in errors (e.g. the path). */
  static parse(text: string, source: string): Authenticator {
    const creds: StoredCredential[] = [];
    const names = new Set<string>();
    const digests = new Set<string>();
    let peerToken: string | null = null;
    const lines = text.split(/\r?\n/);
    for (let i = 0; i < lines.length; i++) {
      const line = (lines[i] ?? '').replace(/#.*$/, '').trim();
      if (line === '') continue;
      const where = `${source} line ${i + 1}`;
      const parts = line.split(/\s+/);
      if (parts.length !== 3) throw new SecurityConfigError(`${where}: expected "<role> <name> <token>" (${parts.length} fields)`);
      const [role, name, token] = parts as [string, string, string];
      if (!roles.includes(role as AccessRole)) throw new SecurityConfigError(`${where}: role "${role}" is not one of ${roles.join(', ')}`);
      if (!/^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/.test(name)) throw new SecurityConfigError(`${where}: "${name}" is not a credential name (1-64 letters, digits, '_', '.', '@', '-')`);
      if (token.length < authTokenBytesMin) throw new SecurityConfigError(`${where}: the token is shorter than ${authTokenBytesMin} characters`);
      if (names.has(name)) throw new SecurityConfigError(`${where}: credential name "${name}" is used twice`);
      const digest = digestOf(token);
      if (digests.has(digest.toString('hex'))) throw new SecurityConfigError(`${where}: the same token is given twice`);
      names.add(name);
      digests.add(digest.toString('hex'));
      if (role === 'peer') peerToken ??= token;
      creds.push({ name, role: role as AccessRole, digest });
      if (creds.length > authCredentialsMax) throw new SecurityConfigError(`${source}: more than ${authCredentialsMax} credentials`);
    }
    if (creds.length === 0) throw new SecurityConfigError(`${source}: no credentials (lines "<role> <name> <token>")`);
    return new Authenticator(creds, peerToken);
  }

  static fromFile(path: string, label: string): Authenticator {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new SecurityConfigError(`${label}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    return Authenticator.parse(text, path);
  }

  /** The credential `token` names, or null. Constant time in which one (or whether one) matched. */
  check(token: string): Credential | null {
    const digest = digestOf(token);
    let found: StoredCredential | null = null;
    for (const c of this.credentials) {
      if (timingSafeEqual(c.digest, digest) && found === null) found = c;
    }
    return found === null ? null : { name: found.name, role: found.role };
  }
}

/** TLS material for the binary port and peer links. */
export interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  /** Verifies peers' certificates (mutual TLS between nodes). */
  readonly ca: Buffer;
}

export function loadTls(paths: { cert: string; key: string; ca: string }, labels: { cert: string; key: string; ca: string }): TlsMaterial {
  const read = (p: string, label: string): Buffer => {
    try {
      return readFileSync(p);
    } catch (err) {
      throw new SecurityConfigError(`${label}: cannot read ${p}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  return { cert: read(paths.cert, labels.cert), key: read(paths.key, labels.key), ca: read(paths.ca, labels.ca) };
}

/** The verified identity of a TLS peer: its certificate's common name, or null when unverified. */
export function verifiedPeerName(socket: TLSSocket): string | null {
  if (!socket.authorized) return null;
  const cn = socket.getPeerCertificate().subject?.CN;
  return typeof cn === 'string' && cn !== '' ? cn : null;
}

/**
 * Requests per second per connection, as a token bucket holding up to one second of
 * requests. take() says how long to wait (ms) when empty, 0 when the request may go.
 */
export class RateBucket {
  private tokens: number;
  private lastMs: number;

  constructor(private readonly perSecond: number, nowMs: number) {
    this.tokens = perSecond;
    this.lastMs = nowMs;
  }

  take(nowMs: number): number {
    this.tokens = Math.min(this.perSecond, this.tokens + ((nowMs - this.lastMs) * this.perSecond) / 1000);
    this.lastMs = nowMs;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - this.tokens) * 1000) / this.perSecond);
  }
}

/** A node's security settings, loaded and checked at start (config.ts). */
export interface NodeSecurity {
  /** null: plaintext on the binary port and peer links. */
  readonly tls: TlsMaterial | null;
  /** null: no credentials asked (anyone who reaches the port may do anything). */
  readonly auth: Authenticator | null;
  /** Requests per second per connection; 0 = unlimited. */
  readonly requestRatePerConnection: number;
  readonly connectionsMax: number;
}

export const openSecurity: NodeSecurity = { tls: null, auth: null, requestRatePerConnection: 0, connectionsMax };

/**
 * A connection from this node to another (peer link, join request): TLS with this
 * node's certificate when TLS is on, checking that the other side's certificate is
 * signed by the cluster CA and (when known) names `expectedId`; `onReady` runs once
 * the bytes may flow (after the handshake under TLS).
 */
export function dialNode(host: string, port: number, security: NodeSecurity, expectedId: string | null, onReady: () => void): Socket {
  const material = security.tls;
  if (material === null) {
    const socket = netConnect({ host, port });
    socket.once('connect', onReady);
    return socket;
  }
  const socket = tlsConnect({
    host, port, cert: material.cert, key: material.key, ca: material.ca,
    // Nodes are named by id, not by host name: the certificate's CN must be the id dialed.
    checkServerIdentity: (_host, cert) => {
      const cn = cert.subject?.CN;
      if (expectedId !== null && cn !== expectedId) return new Error(`certificate names "${String(cn)}", expected node ${expectedId}`);
      return undefined;
    },
  });
  socket.once('secureConnect', onReady);
  return socket;
}
