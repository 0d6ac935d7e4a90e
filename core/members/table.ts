// Cluster membership as group 0 replicates it: who is a voter or a learner (the
// same ConfChange entries Raft applies, through the same applyConfChange, so the
// roles here always equal Raft's ConfState at the same index), each member's
// addresses (carried in the ConfChange's context, or announced later for the
// bootstrap members), and the ids removed for good (a removed id never rejoins).
// Also the cluster's identity (a random id its first leader chose) and each member's
// feature version, from which the cluster version follows (clusterVersionAfter).

import { assert, assertNever } from '../assert.js';
import { clusterIdBytes, featureVersionBase, memberAddressCharsMax, membersMax, membersRemovedRememberedMax } from '../constants.js';
import type { NodeId } from '../ids.js';
import { applyConfChange } from '../raft/confchange.js';
import { type ConfChange, ConfChangeType, type ConfState } from '../raft/types.js';

export type MemberRole = 'voter' | 'learner';

/** Where a member is reached: `address` by clients, `peerAddress` by the other nodes ('' = not known yet). */
export interface MemberAddresses {
  readonly address: string;
  readonly peerAddress: string;
}

export interface MemberRecord extends MemberAddresses {
  readonly id: NodeId;
  readonly role: MemberRole;
  /** The feature version the member last said it speaks (0: never said; counts as featureVersionBase). */
  readonly featureVersion: number;
}

/**
 * The JSON-able snapshot (group 0 snapshots are JSON documents). clusterId and
 * clusterVersion are absent from a snapshot an older node took: '' and featureVersionBase.
 */
export interface MembersSnapshot {
  readonly members: readonly MemberRecord[];
  readonly removed: readonly NodeId[];
  readonly clusterId?: string;
  readonly clusterVersion?: number;
}

/**
 * The cluster version after a change: the lowest version every member speaks (one that
 * never said counts as featureVersionBase), but never lower than before. It does not go
 * down because snapshots in its formats may exist already: a member that speaks less
 * cannot read them (such a node refuses to start, and a join asking for less is refused).
 */
export function clusterVersionAfter(current: number, memberVersions: readonly number[]): number {
  if (memberVersions.length === 0) return current;
  const lowest = Math.min(...memberVersions.map((v) => Math.max(v, featureVersionBase)));
  return Math.max(current, lowest);
}

const clusterIdPattern = new RegExp(`^[0-9a-f]{${clusterIdBytes * 2}}$`);

/** Whether `s` is a cluster id (hex, clusterIdBytes bytes). */
export function isClusterId(s: string): boolean {
  return clusterIdPattern.test(s);
}

/** What applying one entry did, for the node to act on (links, logs). */
export type MembersChange =
  | { readonly kind: 'added'; readonly id: NodeId; readonly role: MemberRole }
  | { readonly kind: 'promoted'; readonly id: NodeId }
  | { readonly kind: 'demoted'; readonly id: NodeId }
  | { readonly kind: 'removed'; readonly id: NodeId }
  | { readonly kind: 'addressed'; readonly id: NodeId }
  | { readonly kind: 'versioned'; readonly id: NodeId; readonly featureVersion: number }
  | { readonly kind: 'identified'; readonly id: NodeId; readonly clusterId: string }
  | { readonly kind: 'none'; readonly id: NodeId };

const addressPattern = /^[^\s:]+:\d+$|^\[[^\]]+\]:\d+$/;

/** Whether `s` is a host:port a member may be reached at ('' is allowed: not known). */
export function isMemberAddress(s: string): boolean {
  return s === '' || (s.length <= memberAddressCharsMax && addressPattern.test(s));
}

export class MembersTable {
  private readonly members = new Map<NodeId, MemberRecord>();
  /** Removed ids in removal order (oldest first), bounded by membersRemovedRememberedMax. */
  private removed: NodeId[] = [];
  private clusterIdValue = '';
  private clusterVersionValue = featureVersionBase;

  constructor(bootstrap: ConfState) {
    this.reset(bootstrap);
  }

  /** The configuration these roles describe (voters and learners, sorted). */
  conf(): ConfState {
    const voters: NodeId[] = [];
    const learners: NodeId[] = [];
    for (const m of this.members.values()) (m.role === 'voter' ? voters : learners).push(m.id);
    return { voters: voters.sort(), learners: learners.sort() };
  }

  get(id: NodeId): MemberRecord | undefined {
    return this.members.get(id);
  }

  /** Every member, sorted by id. */
  list(): MemberRecord[] {
    return [...this.members.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  get size(): number {
    return this.members.size;
  }

  isRemoved(id: NodeId): boolean {
    return this.removed.includes(id);
  }

  /** The id the cluster's first leader chose ('' until that entry applied, or on an older cluster). */
  get clusterId(): string {
    return this.clusterIdValue;
  }

  /** The highest feature version every member has spoken (clusterVersionAfter). */
  get clusterVersion(): number {
    return this.clusterVersionValue;
  }

  /**
   * Applies one committed ConfChange with the addresses its context carried (null when
   * none). Roles follow core/raft's applyConfChange exactly; addresses in the context
   * replace the member's known ones, an empty one keeps what was known.
   */
  applyConfChange(cc: ConfChange, addresses: MemberAddresses | null): MembersChange {
    const before = this.members.get(cc.node);
    const conf = applyConfChange(this.conf(), cc);
    const role: MemberRole | null = conf.voters.includes(cc.node) ? 'voter' : conf.learners.includes(cc.node) ? 'learner' : null;
    let change: MembersChange;
    if (role === null) {
      if (before === undefined) return { kind: 'none', id: cc.node };
      this.members.delete(cc.node);
      this.remember(cc.node);
      change = { kind: 'removed', id: cc.node };
    } else {
      const address = addresses !== null && addresses.address !== '' ? addresses.address : before?.address ?? '';
      const peerAddress = addresses !== null && addresses.peerAddress !== '' ? addresses.peerAddress : before?.peerAddress ?? '';
      this.members.set(cc.node, { id: cc.node, role, address, peerAddress, featureVersion: before?.featureVersion ?? 0 });
      // A re-added id is a member again (only an operator's ConfChange can do that; joins refuse removed ids).
      this.removed = this.removed.filter((r) => r !== cc.node);
      if (before === undefined) change = { kind: 'added', id: cc.node, role };
      else if (before.role === role) change = { kind: 'none', id: cc.node };
      else change = role === 'voter' ? { kind: 'promoted', id: cc.node } : { kind: 'demoted', id: cc.node };
    }
    const after = this.conf();
    assert(after.voters.join() === conf.voters.join() && after.learners.join() === conf.learners.join(),
      `members table roles diverged from the conf change rule applying ${cc.type} ${cc.node}`);
    this.raiseClusterVersion();
    return change;
  }

  /**
   * Records a current member's addresses (the bootstrap members, whose addresses no
   * ConfChange carried). A non-member's announcement is ignored: it may have been removed
   * between proposal and apply.
   */
  announce(id: NodeId, addresses: MemberAddresses): MembersChange {
    const m = this.members.get(id);
    if (m === undefined) return { kind: 'none', id };
    const address = addresses.address !== '' ? addresses.address : m.address;
    const peerAddress = addresses.peerAddress !== '' ? addresses.peerAddress : m.peerAddress;
    if (address === m.address && peerAddress === m.peerAddress) return { kind: 'none', id };
    this.members.set(id, { ...m, address, peerAddress });
    return { kind: 'addressed', id };
  }

  /** Records the feature version a current member speaks (its hello said it); a non-member's is ignored. */
  setFeatureVersion(id: NodeId, featureVersion: number): MembersChange {
    assert(Number.isSafeInteger(featureVersion) && featureVersion >= featureVersionBase, `feature version ${featureVersion} of ${id}`);
    const m = this.members.get(id);
    if (m === undefined || m.featureVersion === featureVersion) return { kind: 'none', id };
    this.members.set(id, { ...m, featureVersion });
    this.raiseClusterVersion();
    return { kind: 'versioned', id, featureVersion };
  }

  /** The cluster's identity: the first id proposed wins, later ones are ignored (a new leader proposing before it applied the first). */
  identify(by: NodeId, clusterId: string): MembersChange {
    assert(isClusterId(clusterId), `cluster id "${clusterId}"`);
    if (this.clusterIdValue !== '') return { kind: 'none', id: by };
    this.clusterIdValue = clusterId;
    return { kind: 'identified', id: by, clusterId };
  }

  snapshot(): MembersSnapshot {
    return { members: this.list().map((m) => ({ ...m })), removed: [...this.removed], clusterId: this.clusterIdValue, clusterVersion: this.clusterVersionValue };
  }

  restore(state: MembersSnapshot): void {
    assert(Array.isArray(state.members) && Array.isArray(state.removed), 'members snapshot shape');
    assert(state.members.length <= membersMax && state.removed.length <= membersRemovedRememberedMax, 'members snapshot bounds');
    this.members.clear();
    for (const m of state.members) {
      assert(m.role === 'voter' || m.role === 'learner', `member ${m.id} has role ${String(m.role)}`);
      assert(!this.members.has(m.id), `member ${m.id} twice in a snapshot`);
      const featureVersion = m.featureVersion ?? 0;
      assert(Number.isSafeInteger(featureVersion) && featureVersion >= 0, `member ${m.id} has feature version ${String(featureVersion)}`);
      this.members.set(m.id, { id: m.id, role: m.role, address: m.address, peerAddress: m.peerAddress, featureVersion });
    }
    this.removed = [...state.removed];
    const clusterId = state.clusterId ?? '';
    assert(clusterId === '' || isClusterId(clusterId), `members snapshot cluster id "${clusterId}"`);
    this.clusterIdValue = clusterId;
    const clusterVersion = state.clusterVersion ?? featureVersionBase;
    assert(Number.isSafeInteger(clusterVersion) && clusterVersion >= featureVersionBase, `members snapshot cluster version ${String(clusterVersion)}`);
    this.clusterVersionValue = clusterVersion;
  }

  private reset(conf: ConfState): void {
    this.members.clear();
    this.removed = [];
    this.clusterIdValue = '';
    this.clusterVersionValue = featureVersionBase;
    for (const id of conf.voters) this.members.set(id, { id, role: 'voter', address: '', peerAddress: '', featureVersion: 0 });
    for (const id of conf.learners) {
      assert(!this.members.has(id), `${id} is both voter and learner in the bootstrap configuration`);
      this.members.set(id, { id, role: 'learner', address: '', peerAddress: '', featureVersion: 0 });
    }
  }

  private raiseClusterVersion(): void {
    this.clusterVersionValue = clusterVersionAfter(this.clusterVersionValue, [...this.members.values()].map((m) => m.featureVersion));
  }

  private remember(id: NodeId): void {
    this.removed.push(id);
    if (this.removed.length > membersRemovedRememberedMax) this.removed.shift();
  }
}

/** Names a ConfChange type for logs and errors. */
export function confChangeName(type: ConfChangeType): string {
  switch (type) {
    case ConfChangeType.AddLearner: return 'add-learner';
    case ConfChangeType.AddVoter: return 'add-voter';
    case ConfChangeType.Remove: return 'remove';
    default: return assertNever(type, 'conf change type');
  }
}
