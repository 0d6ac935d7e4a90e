// Typed operating errors of the storage layer, each with a stable code, so callers
// can tell "the disk lied" from "we are overloaded" from a programmer error.

/** A WAL segment or snapshot file is damaged somewhere other than a torn tail: refuse to start. */
export class WalCorruptionError extends Error {
  override name = 'WalCorruptionError';
  readonly code = 'WAL_CORRUPT';
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly reason: string,
  ) {
    super(`WAL corruption in ${file} at byte offset ${offset}: ${reason}`);
  }
}

/** The writer failed (write or fsync error): nothing more can be made durable; restart the node. */
export class WalFailedError extends Error {
  override name = 'WalFailedError';
  readonly code = 'WAL_FAILED';
}

/** append() would exceed walPendingBytesMax of queued records: slow down (nothing was written). */
export class WalOverloadError extends Error {
  override name = 'WalOverloadError';
  readonly code = 'WAL_OVERLOADED';
}

/** The WAL is closed (or closing) and takes no more records. */
export class WalClosedError extends Error {
  override name = 'WalClosedError';
  readonly code = 'WAL_CLOSED';
}
