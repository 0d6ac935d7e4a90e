// The group 0 journal: opaque blobs appended through Raft, summarized as a
// count and a crc32 chain. Two replicas with equal (count, hash) applied the
// same blobs in the same order — what integration tests and bench:raft check.

import { crc32 } from 'node:zlib';
import { assert } from '../../../core/assert.js';

export class Journal {
  private blobCount = 0;
  private chain = 0;

  get count(): number {
    return this.blobCount;
  }

  get hash(): number {
    return this.chain;
  }

  apply(blob: Uint8Array): number {
    this.chain = crc32(blob, this.chain);
    this.blobCount++;
    return this.blobCount;
  }

  toSnapshot(): { count: number; hash: number } {
    return { count: this.blobCount, hash: this.chain };
  }

  restore(s: { count: number; hash: number }): void {
    assert(Number.isInteger(s.count) && s.count >= 0, 'journal snapshot count');
    this.blobCount = s.count;
    this.chain = s.hash >>> 0;
  }
}
