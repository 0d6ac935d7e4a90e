// One assertion helper for the whole codebase. Never compiled out: a broken
// invariant is a programmer error and must crash loudly, not corrupt state.

export class AssertionError extends Error {
  override name = 'AssertionError';
}

export function assert(condition: unknown, message = 'assertion failed'): asserts condition {
  if (!condition) throw new AssertionError(message);
}

/** For exhaustive `switch` over a union: the compiler proves this is unreachable. */
export function assertNever(value: never, what = 'value'): never {
  throw new AssertionError(`unexpected ${what}: ${JSON.stringify(value)}`);
}
