// A decoded protobuf integer as a number. protobufjs hands out a number or, for 64-bit
// fields, a Long ({ low, high } halves) - always a Long for a field left at 0, which is
// absent on the wire and reads as the prototype's default. Number(long) would convert
// through a decimal string; the halves give the same value without one.

/** A decoded uint64/uint32 as a number (null/undefined: 0); anything else is NaN (callers that check refuse it). */
export function wireNumber(v: unknown): number {
  if (v === null || v === undefined) return 0;
  if (typeof v === 'number') return v;
  if (typeof v === 'object' && 'low' in v && 'high' in v && typeof v.low === 'number' && typeof v.high === 'number') {
    return (v.high >>> 0) * 0x1_0000_0000 + (v.low >>> 0);
  }
  return Number.NaN;
}
