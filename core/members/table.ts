// Cluster membership as group 0 replicates it: who is a voter or a learner (the
// same ConfChange entries Raft applies, through the same applyConfChange, so the
// roles here always equal Raft's ConfState at the same index), each member's
// addresses (carried in the ConfChange's context, or announced later for the
// bootstrap members), and the ids removed for good (a removed id never rejoins).

import { assert, assertNever } from '../assert.js';
import { memberAddressCharsMax, membersMax, membersRemovedRememberedMax } from '../constants.js';
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
}

/** The JSON-able snapshot (group 0 snapshots are JSON documents). */
export interface MembersSnapshot {
  readonly members: readonly MemberRecord[];
  readonly removed: readonly NodeId[];
}

/** What applying one entry did, for the node to act on (links, logs). */
export type MembersChange =
  | { readonly kind: 'added'; readonly id: NodeId; readonly role: MemberRole }
  | { readonly kind: 'promoted'; readonly id: NodeId }
  | { readonly kind: 'demoted'; readonly id: NodeId }
  | { readonly kind: 'removed'; readonly id: NodeId }
  | { readonly kind: 'addressed'; readonly id: NodeId }
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
      this.members.set(cc.node, { id: cc.node, role, address, peerAddress });
      // A re-added id is a member again (only an operator's ConfChange can do that; joins refuse removed ids).
      this.removed = this.removed.filter((r) => r !== cc.node);
      if (before === undefined) change = { kind: 'added', id: cc.node, role };
      else if (before.role === role) change = { kind: 'none', id: cc.node };
      else change = role === 'voter' ? { kind: 'promoted', id: cc.node } : { kind: 'demoted', id: cc.node };
    }
    const after = this.conf();
    assert(after.voters.join() === conf.voters.join() && after.learners.join() === conf.learners.join(),
      `members table roles diverged from the conf change rule applying ${cc.type} ${cc.node}`);
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

  snapshot(): MembersSnapshot {
    return { members: this.list().map((m) => ({ ...m })), removed: [...this.removed] };
  }

  restore(state: MembersSnapshot): void {
    assert(Array.isArray(state.members) && Array.isArray(state.removed), 'members snapshot shape');
    assert(state.members.length <= membersMax && state.removed.length <= membersRemovedRememberedMax, 'members snapshot bounds');
    this.members.clear();
    for (const m of state.members) {
      assert(m.role === 'voter' || m.role === 'learner', `member ${m.id} has role ${String(m.role)}`);
      assert(!this.members.has(m.id), `member ${m.id} twice in a snapshot`);
      this.members.set(m.id, { id: m.id, role: m.role, address: m.address, peerAddress: m.peerAddress });
    }
    this.removed = [...state.removed];
  }

  private reset(conf: ConfState): void {
    this.members.clear();
    this.removed = [];
    for (const id of conf.voters) this.members.set(id, { id, role: 'voter', address: '', peerAddress: '' });
    for (const id of conf.learners) {
      assert(!this.members.has(id), `${id} is both voter and learner in the bootstrap configuration`);
      this.members.set(id, { id, role: 'learner', address: '', peerAddress: '' });
    }
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
