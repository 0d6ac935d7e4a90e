// Cluster membership at run time, as a service on the seam (opcodes 20-39) with
// group 0's membership sub-machine. Design:
// - The addresses of a member added at run time ride in its ConfChange entry's
//   context (etcd's way): one entry changes Raft's configuration and the address
//   book together, so no replica ever has a member without an address or an
//   address for a non-member, and a snapshot at any index holds both. The
//   bootstrap members (--peers) are announced once by a leader (a Members entry).
// - Join: the leader adds the node as a learner and answers with the
//   configuration it was added with (the joiner's bootstrap configuration); the
//   leader promotes a learner once it is within learnerPromoteLagEntriesMax of
//   the log's end.
// - Remove: refused when it would leave group 0 without a quorum of voters the
//   leader heard from within memberHeardMsMax; the leader's own removal first
//   transfers leadership, then the client follows NOT_LEADER.
// - Peer links follow the table; a removed member is told MEMBER_REMOVED by the
//   members it reaches, stops its group 0 replica and logs it.
// It is node infrastructure (peer links, liveness), so it gets the node and the
// group host through its constructor rather than through ServiceContext alone.

import { randomBytes } from 'node:crypto';
import { assert } from '../../../core/assert.js';
import { clusterIdBytes, learnerPromoteLagEntriesMax, leaderTransferWaitMsMax, memberHeardMsMax, membersCheckIntervalMs, membersMax } from '../../../core/constants.js';
import type { NodeId } from '../../../core/ids.js';
import { isClusterId, isMemberAddress, type MemberAddresses, type MemberRecord, type MembersChange, MembersSnapshot,
  MembersTable } from '../../../core/members/table.js';
import { type ConfChange, ConfChangeType, type ConfState, type Entry } from '../../../core/raft/types.js';
import { DsyncError, ErrorCode } from '../../../protocol/errors.js';
import { Opcode } from '../../../protocol/frame.js';
import { schema } from '../../../protocol/index.js';
import type { PeerAddress } from '../../node/config.js';
import { decodePayload, type DsyncNode, type MemberView, removedError } from '../../node/node.js';
import { EntryKind, frameEntry, type SubMachine } from '../../raft/group0.js';
import type { GroupHost, GroupRunner } from '../../raft/runner.js';
import type { Cancel } from '../../runtime.js';
import { FeatureVersionError, featureVersionExitCode, spokenFeatureVersion } from '../../node/version.js';
import type { RequestContext, Service, ServiceContext } from '../service.js';

const nodeIdPattern = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** Group 0's membership sub-machine: the table, plus a listener the service acts through. */
export class MembersMachine implements SubMachine {
  readonly table: MembersTable;
  /** Told after every change to the table (on every replica, in log order). */
  onChange: (change: MembersChange | null) => void = () => {};

  constructor(bootstrap: ConfState) {
    this.table = new MembersTable(bootstrap);
  }

  apply(_entry: Entry, body: Uint8Array): unknown {
    const a = schema.MemberAnnounce.decode(body);
    // Proposed by a leader that checked them: anything else is corruption; every replica fails alike.
    assert(nodeIdPattern.test(a.id) && isMemberAddress(a.address) && isMemberAddress(a.peerAddress), `malformed member announcement for ${a.id}`);
    assert(a.clusterId === '' || isClusterId(a.clusterId), `malformed cluster id in an announcement by ${a.id}`);
    const id = a.id as NodeId;
    let change = this.table.announce(id, { address: a.address, peerAddress: a.peerAddress });
    if (a.featureVersion !== 0) {
      const versioned = this.table.setFeatureVersion(id, a.featureVersion);
      if (versioned.kind !== 'none') change = versioned;
    }
    if (a.clusterId !== '') {
      const identified = this.table.identify(id, a.clusterId);
      if (identified.kind !== 'none') change = identified;
    }
    this.onChange(change);
    return change;
  }

  /** Returns the configuration right after the change (a joiner's bootstrap configuration). */
  applyConfChange(_entry: Entry, change: ConfChange): ConfState {
    let addresses: MemberAddresses | null = null;
    if (change.context !== undefined) {
      const a = schema.MemberAddress.decode(change.context);
      assert(isMemberAddress(a.address) && isMemberAddress(a.peerAddress), `malformed addresses for ${change.node}`);
      addresses = { address: a.address, peerAddress: a.peerAddress };
    }
    const result = this.table.applyConfChange(change, addresses);
    this.onChange(result);
    return this.table.conf();
  }

  snapshot(): unknown {
    return this.table.snapshot();
  }

  restore(state: unknown): void {
    this.table.restore(state as MembersSnapshot);
    this.onChange(null);
  }
}

export interface MembersServiceOptions {
  readonly node: DsyncNode;
  readonly host: GroupHost;
  /** Group 0's bootstrap configuration (--peers, or what a join answered). */
  readonly bootstrap: ConfState;
  /** Peer addresses known before the table has them (a join's answer). */
  readonly hints?: readonly PeerAddress[];
}

export class MembersService implements Service {
  readonly name = 'members';
  readonly opcodes = { min: Opcode.MemberJoin, max: 39 };
  readonly machine: MembersMachine;
  readonly group0: { kind: EntryKind; machine: SubMachine };
  private runner: GroupRunner | null = null;
  private ctx: ServiceContext | null = null;
  private timer: Cancel | null = null;
  /** A promotion or announcement this leader proposed and is waiting for. */
  private dutyInFlight = false;
  private removed = false;
  /** The cluster version went past what this node speaks: it was told to stop. */
  private versionRefused = false;
  private readonly node: DsyncNode;
  private readonly host: GroupHost;
  private readonly hints: Map<NodeId, PeerAddress>;

  constructor(opts: MembersServiceOptions) {
    this.node = opts.node;
    this.host = opts.host;
    this.machine = new MembersMachine(opts.bootstrap);
    this.group0 = { kind: EntryKind.Members, machine: this.machine };
    this.hints = new Map((opts.hints ?? []).map((p) => [p.id, p]));
    for (const p of opts.node.config.peers) this.hints.set(p.id, p);
  }

  private get self(): NodeId {
    return this.node.nodeId;
  }

  private get group0Runner(): GroupRunner {
    assert(this.runner !== null, 'members service used before start');
    return this.runner;
  }

  start(ctx: ServiceContext): void {
    this.runner = ctx.groups.group0;
    this.ctx = ctx;
    this.machine.onChange = (change) => this.changed(change);
    // Group 0's snapshot was restored before this listener was set.
    if (!this.clusterVersionSpoken()) return;
    this.node.setMembersProvider(() => this.views());
    this.node.setPeerFeatureVersionFloor(() => this.machine.table.clusterVersion);
    this.node.setClusterProvider(() => ({ clusterId: this.machine.table.clusterId, clusterVersion: this.machine.table.clusterVersion }));
    this.node.setPeerAdmission((id) => {
      if (this.machine.table.isRemoved(id)) return 'removed';
      return this.machine.table.get(id) !== undefined || this.hints.has(id) ? 'member' : 'unknown';
    });
    this.node.peers.onRemoved = (by, message) => this.retire(`${by} says: ${message}`);
    // A member whose group 0 state has a cluster version above ours refuses our links; ours may lag (a quiesced leader sends nothing).
    this.node.peers.onFeatureVersionRefused = (by, message) => {
      if (this.versionRefused) return;
      this.versionRefused = true;
      this.node.fatal('a member refused this node\'s feature version', new FeatureVersionError(null, this.node.featureVersion, `the cluster (${by} says: ${message})`),
        featureVersionExitCode);
    };
    ctx.handle(Opcode.MemberJoin, (rc, payload) => this.join(rc, payload), 'admin');
    ctx.handle(Opcode.MemberRemove, (rc, payload) => this.remove(rc, payload), 'admin');
    ctx.handle(Opcode.MemberList, (rc) => {
      const runner = this.group0Runner;
      if (!runner.isLeader) throw this.node.notLeader('group 0 membership', runner.leader);
      rc.conn.reply(rc.requestId, rc.opcode, this.membersReply());
    }, 'read');
    this.timer = ctx.scheduler.every(membersCheckIntervalMs, () => this.leaderDuties());
    this.syncLinks();
  }

  stop(): void {
    this.timer?.();
    this.timer = null;
  }

  // ---- views ----

  /**
   * Where this node dials `id`: the operator's --peers entry first (it may be a proxy or a
   * NAT address only this node should use), else the table, else a join answer ('' when unknown).
   */
  private peerAddressOf(id: NodeId): string {
    if (id === this.self) return this.node.addressOfSelf();
    const configured = this.node.config.peers.find((p) => p.id === id);
    if (configured !== undefined) return `${configured.host}:${configured.port}`;
    const known = this.machine.table.get(id)?.peerAddress ?? '';
    if (known !== '') return known;
    const hint = this.hints.get(id);
    return hint === undefined ? '' : `${hint.host}:${hint.port}`;
  }

  /**
   * The peer address to record for `id` in the table: what the member said of itself (its
   * hello's advertised address; one port serves clients and peers), else how this node dials it.
   */
  private announcedPeerAddressOf(id: NodeId): string {
    if (id === this.self) return this.node.addressOfSelf();
    const advertised = this.node.advertisedAddressOf(id);
    return advertised !== '' ? advertised : this.peerAddressOf(id);
  }

  private clientAddressOf(m: MemberRecord): string {
    if (m.id === this.self) return this.node.addressOfSelf();
    if (m.address !== '') return m.address;
    const advertised = this.node.advertisedAddressOf(m.id);
    return advertised !== '' ? advertised : this.peerAddressOf(m.id);
  }

  /** Reachable: itself; on the leader, heard from within memberHeardMsMax; elsewhere, a live peer link. */
  private reachable(id: NodeId): boolean {
    if (id === this.self) return true;
    if (this.runner?.isLeader === true) return this.host.sinceHeardMs(id) <= memberHeardMsMax;
    return this.node.peers.isConnected(id);
  }

  views(): MemberView[] {
    return this.machine.table.list().map((m) => ({ id: m.id, address: this.clientAddressOf(m), connected: this.reachable(m.id),
      voter: m.role === 'voter', role: m.role, featureVersion: m.featureVersion,
      // What others should dial (a joiner opens links from it): the member's own statement, not this node's --peers route.
      peerAddress: m.id === this.self ? this.node.addressOfSelf() : m.peerAddress !== '' ? m.peerAddress : this.announcedPeerAddressOf(m.id) }));
  }

  private membersReply(): Uint8Array {
    const table = this.machine.table;
    return schema.MembersReply.encode({ members: this.views(), leaderId: this.group0Runner.leader, clusterId: table.clusterId, clusterVersion: table.clusterVersion }).finish();
  }

  // ---- reacting to the replicated table ----

  /**
   * Stops the node when the log (or a snapshot) says every member spoke a version this node
   * does not: it may not read what they write. False when it did.
   */
  private clusterVersionSpoken(): boolean {
    const required = this.machine.table.clusterVersion;
    if (required <= this.node.featureVersion) return true;
    if (!this.versionRefused) {
      this.versionRefused = true;
      this.node.fatal('the cluster requires a newer feature version', new FeatureVersionError(required, this.node.featureVersion, 'this cluster'),
        featureVersionExitCode);
    }
    return false;
  }

  private changed(change: MembersChange | null): void {
    if (!this.clusterVersionSpoken()) return;
    if (change?.kind === 'versioned' || change?.kind === 'identified') {
      this.node.log.info('group 0 membership changed', { change: change.kind, member: change.id, clusterVersion: this.machine.table.clusterVersion,
        clusterId: this.machine.table.clusterId });
    } else if (change !== null && change.kind !== 'none') {
      this.node.log.info('group 0 membership changed', { change: change.kind, member: change.id, voters: this.machine.table.conf().voters.join(','),
        learners: this.machine.table.conf().learners.join(',') });
    }
    if (change?.kind === 'removed') {
      if (change.id === this.self) {
        this.retire('its removal was applied here');
        return;
      }
      // Tell the removed node (it may never learn the commit otherwise) and stop listening to it.
      this.node.refusePeer(change.id, removedError(change.id));
    }
    this.syncLinks();
  }

  private syncLinks(): void {
    if (this.removed) return;
    const peers: PeerAddress[] = [];
    for (const m of this.machine.table.list()) {
      if (m.id === this.self) continue;
      const address = this.peerAddressOf(m.id);
      const sep = address.lastIndexOf(':');
      if (sep <= 0) continue;
      peers.push({ id: m.id, host: address.slice(0, sep).replace(/^\[(.*)\]$/, '$1'), port: Number(address.slice(sep + 1)) });
    }
    this.node.peers.sync(peers);
  }

  /** This node is no longer a member: stop its group 0 replica and its links; the process stays up to be looked at. */
  private retire(why: string): void {
    if (this.removed) return;
    this.removed = true;
    this.node.log.warn('this node was removed from the cluster; it stops taking part in group 0 (start a new node with a new --id and --join to replace it)',
      { node: this.self, why });
    this.node.peers.sync([]);
    // Not from inside the runner's apply: stop it on the next turn.
    this.ctx?.scheduler.defer(() => this.group0Runner.stop(`node ${this.self} was removed from the cluster; use another member`));
  }

  // ---- leader duties: promote caught-up learners, announce bootstrap members' addresses ----

  private leaderDuties(): void {
    const runner = this.runner;
    if (runner === null || !runner.isLeader || this.dutyInFlight || this.removed) return;
    const table = this.machine.table;
    const last = runner.raft.status().lastIndex;
    for (const m of table.list()) {
      if (m.role !== 'learner') continue;
      const progress = runner.raft.progressOf(m.id);
      if (progress === null || progress.match + learnerPromoteLagEntriesMax < last) continue;
      this.node.log.info('promoting a caught-up learner to voter', { member: m.id, match: progress.match, last });
      this.duty(runner.proposeConfChange({ type: ConfChangeType.AddVoter, node: m.id }));
      return;
    }
    for (const m of table.list()) {
      const address = m.id === this.self ? this.node.addressOfSelf() : m.address !== '' ? m.address : this.node.advertisedAddressOf(m.id);
      const peerAddress = this.announcedPeerAddressOf(m.id);
      if ((m.address !== '' || address === '') && (m.peerAddress !== '' || peerAddress === '')) continue;
      this.duty(runner.propose(frameEntry(EntryKind.Members, schema.MemberAnnounce.encode({ id: m.id, address, peerAddress }).finish())));
      return;
    }
    if (table.clusterId === '') {
      // etcd's cluster ID: chosen once, by the first leader; the cache's Redis fence names the cluster by it.
      const clusterId = randomBytes(clusterIdBytes).toString('hex');
      this.node.log.info('choosing the cluster id', { clusterId });
      this.duty(runner.propose(frameEntry(EntryKind.Members, schema.MemberAnnounce.encode({ id: this.self, address: '', peerAddress: '', clusterId }).finish())));
      return;
    }
    for (const m of table.list()) {
      const spoken = m.id === this.self ? this.node.featureVersion : this.node.featureVersionOf(m.id);
      if (spoken === 0 || spoken === m.featureVersion) continue;
      this.duty(runner.propose(frameEntry(EntryKind.Members, schema.MemberAnnounce.encode({ id: m.id, address: '', peerAddress: '', featureVersion: spoken }).finish())));
      return;
    }
  }

  private duty(p: Promise<unknown>): void {
    this.dutyInFlight = true;
    p.then(() => { this.dutyInFlight = false; }, (err: unknown) => {
      this.dutyInFlight = false;
      this.node.log.debug('membership duty not applied; will retry', { err: err instanceof Error ? err.message : String(err) });
    });
  }

  // ---- requests ----

  private answer(rc: RequestContext, work: Promise<Uint8Array>): void {
    work.then((reply) => rc.conn.reply(rc.requestId, rc.opcode, reply),
      (err: unknown) => rc.conn.replyError(rc.requestId, rc.opcode, this.node.asDsyncError(err)));
  }

  private join(rc: RequestContext, payload: Uint8Array): void {
    const req = decodePayload((b) => schema.MemberJoinRequest.decode(b), payload, 'member join');
    if (!nodeIdPattern.test(req.id)) throw new DsyncError(ErrorCode.BAD_REQUEST, `"${req.id}" is not a node id`);
    if (!isMemberAddress(req.address) || !isMemberAddress(req.peerAddress) || req.peerAddress === '') {
      throw new DsyncError(ErrorCode.BAD_REQUEST, `node ${req.id} gave addresses "${req.address}" / "${req.peerAddress}"; both must be host:port`);
    }
    const id = req.id as NodeId;
    const runner = this.group0Runner;
    if (!runner.isLeader) throw this.node.notLeader('group 0 membership', runner.leader);
    const table = this.machine.table;
    if (table.isRemoved(id)) throw removedError(id);
    if (table.get(id) !== undefined) {
      // Already added (a retried join): answer as the first time did.
      rc.conn.reply(rc.requestId, rc.opcode, this.joinReply(table.conf()));
      return;
    }
    // A join that states a version below the cluster's is refused here. One that states none
    // (an operator's add through the HTTP API, or a release before feature versions) is let in:
    // its peer links are refused below the cluster version, so such a node gets nothing (and
    // one of this release stops with exit 4).
    const stated = req.featureVersion ?? 0;
    if (stated !== 0 && spokenFeatureVersion(stated) < table.clusterVersion) {
      throw new DsyncError(ErrorCode.FEATURE_VERSION, `node ${id} speaks feature version ${stated}; this cluster requires ${table.clusterVersion} (upgrade it before it joins)`);
    }
    if (table.size >= membersMax) throw new DsyncError(ErrorCode.BAD_REQUEST, `group 0 already has ${table.size} members (at most ${membersMax})`);
    const context = schema.MemberAddress.encode({ address: req.address, peerAddress: req.peerAddress }).finish();
    this.node.log.info('adding a joining node as a learner', { member: id, address: req.address });
    this.answer(rc, runner.proposeConfChange({ type: ConfChangeType.AddLearner, node: id, context })
      .then((conf) => this.joinReply(conf as ConfState)));
  }

  private joinReply(conf: ConfState): Uint8Array {
    return schema.MemberJoinReply.encode({ voters: [...conf.voters], learners: [...conf.learners], members: this.views() }).finish();
  }

  private remove(rc: RequestContext, payload: Uint8Array): void {
    const req = decodePayload((b) => schema.MemberRemoveRequest.decode(b), payload, 'member remove');
    const id = req.id as NodeId;
    const runner = this.group0Runner;
    if (!runner.isLeader) throw this.node.notLeader('group 0 membership', runner.leader);
    const table = this.machine.table;
    const member = table.get(id);
    if (member === undefined) {
      // A retried removal that already happened answers as the first did.
      if (table.isRemoved(id)) {
        rc.conn.reply(rc.requestId, rc.opcode, this.membersReply());
        return;
      }
      throw new DsyncError(ErrorCode.NOT_FOUND, `${id} is not a member of the cluster (members: ${table.list().map((m) => m.id).join(', ')})`);
    }
    if (member.role === 'voter') this.checkQuorumAfterRemoving(id);
    if (id === this.self) {
      this.answer(rc, this.handOffLeadership());
      return;
    }
    this.node.log.info('removing a member', { member: id, role: member.role });
    this.answer(rc, runner.proposeConfChange({ type: ConfChangeType.Remove, node: id }).then(() => this.membersReply()));
  }

  /** Throws WOULD_LOSE_QUORUM unless group 0 keeps a quorum of live voters with and without `id`. */
  private checkQuorumAfterRemoving(id: NodeId): void {
    const voters = this.machine.table.conf().voters;
    if (voters.length === 1) {
      throw new DsyncError(ErrorCode.WOULD_LOSE_QUORUM, `${id} is group 0's only voter; add another member before removing it`);
    }
    const live = (v: NodeId): boolean => v === this.self || this.host.sinceHeardMs(v) <= memberHeardMsMax;
    const reachableNow = voters.filter(live);
    const quorumNow = Math.floor(voters.length / 2) + 1;
    if (reachableNow.length < quorumNow) {
      throw new DsyncError(ErrorCode.WOULD_LOSE_QUORUM, `group 0 reaches only ${reachableNow.length} of ${voters.length} voters (${reachableNow.join(', ')}); `
        + `a quorum needs ${quorumNow}, so removing ${id} could not commit. Bring ${voters.filter((v) => !live(v)).join(', ')} back first`);
    }
    const remaining = voters.filter((v) => v !== id);
    const reachable = remaining.filter(live);
    const unreachable = remaining.filter((v) => !live(v));
    const quorum = Math.floor(remaining.length / 2) + 1;
    if (reachable.length < quorum) {
      throw new DsyncError(ErrorCode.WOULD_LOSE_QUORUM, `removing ${id} would leave ${reachable.length} of ${remaining.length} voters reachable `
        + `(${reachable.join(', ')}; unreachable: ${unreachable.join(', ')}); quorum needs ${quorum}. `
        + `Bring ${unreachable.join(', ')} back or remove ${unreachable.length === 1 ? 'it' : 'them'} first`);
    }
  }

  /**
   * The leader's own removal: hand leadership to the most caught-up live voter first (a
   * transfer costs a round trip, a leader stepping down after its removal an election
   * timeout), then answer NOT_LEADER so the client asks the new leader.
   */
  private handOffLeadership(): Promise<Uint8Array> {
    const runner = this.group0Runner;
    let best: NodeId | '' = '';
    let bestMatch = -1;
    for (const v of this.machine.table.conf().voters) {
      if (v === this.self || this.host.sinceHeardMs(v) > memberHeardMsMax) continue;
      const match = runner.raft.progressOf(v)?.match ?? -1;
      if (match > bestMatch) {
        best = v;
        bestMatch = match;
      }
    }
    if (best === '') return Promise.reject(new DsyncError(ErrorCode.WOULD_LOSE_QUORUM, 'no other live voter to hand leadership to'));
    this.node.log.info('removing the leader: transferring leadership first', { to: best });
    runner.transferLeadership(best);
    const target = best;
    const ctx = this.ctx;
    assert(ctx !== null, 'members service used before start');
    return new Promise((_resolve, reject) => {
      const started = ctx.clock.nowMs();
      const cancel = ctx.scheduler.every(membersCheckIntervalMs, () => {
        if (!runner.isLeader || ctx.clock.nowMs() - started > leaderTransferWaitMsMax) {
          cancel();
          if (runner.isLeader) {
            reject(new DsyncError(ErrorCode.UNAVAILABLE, `leadership did not move to ${target} within ${leaderTransferWaitMsMax} ms; retry`,
              { retryAfterMs: membersCheckIntervalMs }));
          } else {
            reject(this.node.notLeader('group 0 membership', runner.leader));
          }
        }
      });
    });
  }
}

