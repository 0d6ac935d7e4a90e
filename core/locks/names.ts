// What a lock name may be, checked by the client before it sends and by the lock
// service before it proposes: names are printed by the CLI and the console, so a
// name that is empty, only whitespace or holds control characters (a newline, an
// ANSI escape) is refused with a message saying which character, not stored.

import { lockNameBytesMax } from '../constants.js';

const encoder = new TextEncoder();

/** The reason `name` is not a valid lock name, or null. */
export function lockNameProblem(name: string): string | null {
  if (name.length === 0) return 'a lock name must not be empty';
  if (name.trim().length === 0) return 'a lock name must not be only whitespace';
  const control = /\p{Cc}/u.exec(name);
  if (control !== null) {
    const code = control[0].codePointAt(0) ?? 0;
    return `a lock name must not contain control characters (U+${code.toString(16).toUpperCase().padStart(4, '0')} at position ${control.index})`;
  }
  // A UTF-16 unit takes at most 3 UTF-8 bytes: a short name is within the limit without encoding it.
  if (name.length * 3 <= lockNameBytesMax) return null;
  const bytes = encoder.encode(name).length;
  if (bytes > lockNameBytesMax) return `a lock name must be at most ${lockNameBytesMax} UTF-8 bytes (this one has ${bytes})`;
  return null;
}
