// The wire protocol's public surface: frames, opcodes, errors, schemas.
export * from './errors.js';
export * from './frame.js';
export * from './wire-number.js';
export * from './writer.js';
export { dsync as schema } from './generated/dsync.js';
