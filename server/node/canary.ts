// Deliberate bugs a node can be started with (DSYNC_CANARY=name[,name]) so that the fault
// runner proves its checkers catch what they claim (test/chaos): each breaks one promise
// of one service. Like the WAL failpoint (DSYNC_FAILPOINT_WAL), only tests set it; a node
// started with one says so in its log at warn level, and an unknown name stops it.

export const serverCanaries = {
  /** Cache: a home that must invalidate several copies before a write skips one (a stale read follows). */
  'cache-skip-invalidation': 'cache homes skip one invalidation per write',
  /** Queues: a failed delivery attempt (deadline, nack, consumer gone) counts as done (the message is lost). */
  'queue-forget-failed': 'queue partitions forget failed delivery attempts instead of redelivering',
} as const;

export type ServerCanary = keyof typeof serverCanaries;

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
