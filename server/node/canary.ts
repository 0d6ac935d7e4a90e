// Deliberate bugs a node can be started with (DSYNC_CANARY=name[,name]) so that the fault
// runner proves its checkers catch what they claim (test/chaos): each breaks one promise
// of one service. Like the WAL failpoint (DSYNC_FAILPOINT_WAL), only tests set it; a node
// started with one says so in its log at warn level, and an unknown name stops it.

import type { QueueCanary } from '../services/queues/service.js';

export const serverCanaries = {
  /** Cache: a home that must invalidate several copies before a write skips one (a stale read follows). */
  'cache-skip-invalidation': 'cache homes skip one invalidation per write',
  /** Queues: a failed delivery attempt (deadline, nack, consumer gone) counts as done (the message is lost). */
  'queue-forget-failed': 'queue partitions forget failed delivery attempts instead of redelivering',
  /** Queues: a publish is answered before its entry is durable on a majority (a leader change loses it). */
  'queue-ack-before-majority': 'queue leaders answer publishes before they are committed on a majority',
  /** Queues: a delivery finishes the message for its group at once (the cursor moves before the ack). */
  'queue-cursor-before-ack': 'queue partitions advance a group\'s cursor when they hand a message out, before its ack',
} as const;

export type ServerCanary = keyof typeof serverCanaries;

const queueCanaries: Partial<Record<ServerCanary, QueueCanary>> = {
  'queue-forget-failed': 'forget-failed-attempts', 'queue-ack-before-majority': 'ack-before-majority', 'queue-cursor-before-ack': 'cursor-before-ack',
};

/** The queue service's canary among `canaries` (QueueServiceOptions.canary), if any; throws if they name two. */
export function queueCanaryOf(canaries: ReadonlySet<ServerCanary>): QueueCanary | undefined {
  const named = [...canaries].filter((c) => queueCanaries[c] !== undefined);
  if (named.length > 1) throw new Error(`DSYNC_CANARY names ${named.length} queue canaries (${named.join(', ')}); a node runs at most one`);
  return named[0] === undefined ? undefined : queueCanaries[named[0]];
}

/** The canaries named by DSYNC_CANARY; throws naming an unknown one. */
export function serverCanariesFrom(env: Readonly<Record<string, string | undefined>>): Set<ServerCanary> {
  const spec = env['DSYNC_CANARY'] ?? '';
  const out = new Set<ServerCanary>();
  for (const name of spec.split(',').map((s) => s.trim()).filter((s) => s !== '')) {
    if (!Object.hasOwn(serverCanaries, name)) throw new Error(`DSYNC_CANARY names an unknown canary "${name}" (known: ${Object.keys(serverCanaries).join(', ')})`);
    out.add(name as ServerCanary);
  }
  return out;
}
