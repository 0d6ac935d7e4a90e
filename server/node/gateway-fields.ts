// The HTTP gateway's field declarations: every route states the fields of its path,
// query, body and reply here, once. The same declaration validates requests (400 naming
// the field), turns into the JSON Schema the spec must hold (toJsonSchema), and checks
// replies in the tests, so docs/api.yaml, the validation and the answers cannot drift
// apart without test/unit/server/gateway-spec.test.ts failing.

export type Field =
  | { readonly type: 'string'; readonly optional?: true; readonly enum?: readonly string[]; readonly minLength?: number; readonly maxLength?: number;
    readonly default?: string }
  | { readonly type: 'integer'; readonly optional?: true; readonly minimum?: number; readonly maximum?: number; readonly default?: number }
  | { readonly type: 'number'; readonly optional?: true }
  | { readonly type: 'boolean'; readonly optional?: true; readonly default?: boolean }
  | { readonly type: 'array'; readonly optional?: true; readonly items: Field; readonly minItems?: number; readonly maxItems?: number }
  | ObjectField
  | { readonly type: 'map'; readonly optional?: true; readonly values: Field; readonly maxProperties?: number };

export interface ObjectField {
  readonly type: 'object';
  readonly optional?: true;
  readonly properties: Readonly<Record<string, Field>>;
}

/** A request that does not fit its declaration: answered 400 BAD_REQUEST with this message. */
export class FieldError extends Error {
  override name = 'FieldError';
}

/** A JSON value (what JSON.parse gives). */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number' && Number.isInteger(v)) return 'integer';
  return typeof v;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Checks `value` against `field` and answers it with defaults filled in; throws FieldError
 * naming the first problem by its path (`body.items[2].attempt`).
 */
export function validate(field: Field, value: unknown, path: string): unknown {
  switch (field.type) {
    case 'string': {
      if (typeof value !== 'string') throw new FieldError(`${path} must be a string (got ${kindOf(value)})`);
      if (field.enum !== undefined && !field.enum.includes(value)) throw new FieldError(`${path} must be one of ${field.enum.join(', ')} (got ${JSON.stringify(value)})`);
      if (field.minLength !== undefined && value.length < field.minLength) throw new FieldError(`${path} must have at least ${field.minLength} characters`);
      if (field.maxLength !== undefined && value.length > field.maxLength) throw new FieldError(`${path} must have at most ${field.maxLength} characters`);
      return value;
    }
    case 'integer': {
      if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw new FieldError(`${path} must be an integer (got ${kindOf(value)})`);
      if (field.minimum !== undefined && value < field.minimum) throw new FieldError(`${path} must be at least ${field.minimum} (got ${value})`);
      if (field.maximum !== undefined && value > field.maximum) throw new FieldError(`${path} must be at most ${field.maximum} (got ${value})`);
      return value;
    }
    case 'number':
      if (typeof value !== 'number' || !Number.isFinite(value)) throw new FieldError(`${path} must be a number (got ${kindOf(value)})`);
      return value;
    case 'boolean':
      if (typeof value !== 'boolean') throw new FieldError(`${path} must be true or false (got ${kindOf(value)})`);
      return value;
    case 'array': {
      if (!Array.isArray(value)) throw new FieldError(`${path} must be an array (got ${kindOf(value)})`);
      if (field.minItems !== undefined && value.length < field.minItems) throw new FieldError(`${path} must have at least ${field.minItems} items`);
      if (field.maxItems !== undefined && value.length > field.maxItems) throw new FieldError(`${path} must have at most ${field.maxItems} items`);
      return value.map((v, i) => validate(field.items, v, `${path}[${i}]`));
    }
    case 'object': {
      if (!isRecord(value)) throw new FieldError(`${path} must be an object (got ${kindOf(value)})`);
      const out: Record<string, unknown> = {};
      for (const key of Object.keys(value)) {
        if (!Object.hasOwn(field.properties, key)) {
          throw new FieldError(`${path}.${key} is not a field here (fields: ${Object.keys(field.properties).join(', ') || 'none'})`);
        }
      }
      for (const [key, f] of Object.entries(field.properties)) {
        const v = value[key];
        if (v === undefined) {
          if (f.optional !== true) throw new FieldError(`${path}.${key} is required`);
          if ('default' in f && f.default !== undefined) out[key] = f.default;
          continue;
        }
        out[key] = validate(f, v, `${path}.${key}`);
      }
      return out;
    }
    case 'map': {
      if (!isRecord(value)) throw new FieldError(`${path} must be an object (got ${kindOf(value)})`);
      const entries = Object.entries(value);
      if (field.maxProperties !== undefined && entries.length > field.maxProperties) throw new FieldError(`${path} must have at most ${field.maxProperties} entries`);
      return Object.fromEntries(entries.map(([k, v]) => [k, validate(field.values, v, `${path}.${k}`)]));
    }
  }
}

/** A path or query parameter (always a string on the wire) as its declared type. */
export function parseParameter(field: Field, raw: string, path: string): unknown {
  switch (field.type) {
    case 'integer':
      if (!/^-?\d{1,16}$/.test(raw)) throw new FieldError(`${path} must be an integer (got ${JSON.stringify(raw)})`);
      return validate(field, Number(raw), path);
    case 'boolean':
      if (raw !== 'true' && raw !== 'false') throw new FieldError(`${path} must be true or false (got ${JSON.stringify(raw)})`);
      return raw === 'true';
    case 'string':
      return validate(field, raw, path);
    case 'number': case 'array': case 'object': case 'map':
      throw new Error(`parameter ${path} declared as ${field.type}: parameters are strings, integers or booleans`);
  }
}

/** The JSON Schema (OpenAPI 3.1) a declaration stands for: what docs/api.yaml must say, description aside. */
export function toJsonSchema(field: Field): Record<string, Json> {
  switch (field.type) {
    case 'string':
      return { type: 'string', ...(field.enum === undefined ? {} : { enum: [...field.enum] }), ...(field.minLength === undefined ? {} : { minLength: field.minLength }),
        ...(field.maxLength === undefined ? {} : { maxLength: field.maxLength }), ...(field.default === undefined ? {} : { default: field.default }) };
    case 'integer':
      return { type: 'integer', ...(field.minimum === undefined ? {} : { minimum: field.minimum }), ...(field.maximum === undefined ? {} : { maximum: field.maximum }),
        ...(field.default === undefined ? {} : { default: field.default }) };
    case 'number':
      return { type: 'number' };
    case 'boolean':
      return { type: 'boolean', ...(field.default === undefined ? {} : { default: field.default }) };
    case 'array':
      return { type: 'array', items: toJsonSchema(field.items), ...(field.minItems === undefined ? {} : { minItems: field.minItems }),
        ...(field.maxItems === undefined ? {} : { maxItems: field.maxItems }) };
    case 'object': {
      const required = Object.entries(field.properties).filter(([, f]) => f.optional !== true).map(([k]) => k).sort();
      return { type: 'object', properties: Object.fromEntries(Object.entries(field.properties).map(([k, f]) => [k, toJsonSchema(f)])),
        ...(required.length === 0 ? {} : { required }), additionalProperties: false };
    }
    case 'map':
      return { type: 'object', additionalProperties: toJsonSchema(field.values), ...(field.maxProperties === undefined ? {} : { maxProperties: field.maxProperties }) };
  }
}

// ---- shorthands for the route table ----

export const str = (more: Omit<Extract<Field, { type: 'string' }>, 'type'> = {}): Field => ({ type: 'string', ...more });
export const int = (more: Omit<Extract<Field, { type: 'integer' }>, 'type'> = {}): Field => ({ type: 'integer', ...more });
export const num = (more: Omit<Extract<Field, { type: 'number' }>, 'type'> = {}): Field => ({ type: 'number', ...more });
export const bool = (more: Omit<Extract<Field, { type: 'boolean' }>, 'type'> = {}): Field => ({ type: 'boolean', ...more });
export const arr = (items: Field, more: Omit<Extract<Field, { type: 'array' }>, 'type' | 'items'> = {}): Field => ({ type: 'array', items, ...more });
export const obj = (properties: Record<string, Field>, more: { optional?: true } = {}): ObjectField => ({ type: 'object', properties, ...more });
export const map = (values: Field, more: Omit<Extract<Field, { type: 'map' }>, 'type' | 'values'> = {}): Field => ({ type: 'map', values, ...more });
export const opt = <F extends Field>(f: F): F => ({ ...f, optional: true });
