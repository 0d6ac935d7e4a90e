// Protobuf base-128 varints for the hand codecs (journal appends, lock requests, queue
// entries): they write the bytes protobufjs writes without its Writer. Values are
// non-negative safe integers; division, not shifts, so values above 2^31 stay exact.

/** Bytes `v` takes as a varint. */
export function varintBytes(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

/** Writes `v` at `at`; returns the offset after it. */
export function putVarint(out: Uint8Array, at: number, v: number): number {
  while (v >= 0x80) {
    out[at++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  out[at++] = v;
  return at;
}
