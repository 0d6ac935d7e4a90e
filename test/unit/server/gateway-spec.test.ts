// Checks that docs/api.yaml (parsed with the `yaml` package) and the gateway's route table
// (server/node/gateway.ts) describe the same API, both ways: every method + path on one
// side is on the other, with the same operationId and tag, the same path and query
// parameters, and request and reply schemas equal to what the route's field declarations
// stand for (toJsonSchema; $refs resolved, descriptions ignored). It also proves the check
// bites: a route, a body field or a reply field added on one side only is reported. And it
// checks the declarations' validation (400 messages naming the field) and the status of
// every stable error code.

import t from 'tap';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { ErrorCode } from '../../../protocol/errors.js';
import { apiSpecUrl, errorBody, type GatewayRoute, gatewayRoutes, httpStatusOf } from '../../../server/node/gateway.js';
import { FieldError, int, type Json, obj, opt, parseParameter, str, toJsonSchema, validate } from '../../../server/node/gateway-fields.js';
import { DsyncError } from '../../../protocol/errors.js';

type Doc = Record<string, unknown>;
const ignoredKeys = new Set(['description', 'title', 'example', 'examples', 'summary']);
const methods = ['get', 'post', 'put', 'delete', 'patch', 'head', 'options'];

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A schema with every $ref resolved against the document and descriptions dropped. */
function resolved(doc: Doc, schema: unknown, depth = 0): unknown {
  if (depth > 32) throw new Error('$ref cycle in the spec');
  if (Array.isArray(schema)) return schema.map((x) => resolved(doc, x, depth + 1));
  if (!isObject(schema)) return schema;
  const ref = schema['$ref'];
  if (typeof ref === 'string') {
    const target = ref.replace(/^#\//, '').split('/').reduce<unknown>((at, key) => (isObject(at) ? at[key] : undefined), doc);
    if (target === undefined) throw new Error(`unresolved $ref ${ref}`);
    return resolved(doc, target, depth + 1);
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(schema)) {
    if (ignoredKeys.has(k)) continue;
    if (k === 'properties' && isObject(v)) out[k] = Object.fromEntries(Object.entries(v).map(([pk, pv]) => [pk, resolved(doc, pv, depth + 1)]));
    else if (k === 'required' && Array.isArray(v)) out[k] = [...(v as string[])].sort();
    else out[k] = resolved(doc, v, depth + 1);
  }
  return out;
}

/** Where two schemas differ ('' when equal), by path. */
function diff(a: unknown, b: unknown, at: string): string[] {
  if (isObject(a) && isObject(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].flatMap((k) => {
      if (!(k in a)) return [`${at}.${k}: only in the spec`];
      if (!(k in b)) return [`${at}.${k}: only in the route table`];
      return diff(a[k], b[k], `${at}.${k}`);
    });
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [`${at}: route table ${JSON.stringify(a)} vs spec ${JSON.stringify(b)}`];
}

/** Every difference between the spec and the route table. */
function specDifferences(doc: Doc, routes: readonly GatewayRoute[]): string[] {
  const problems: string[] = [];
  const paths = isObject(doc['paths']) ? doc['paths'] : {};
  const inSpec = new Map<string, Record<string, unknown>>();
  for (const [path, item] of Object.entries(paths)) {
    if (!isObject(item)) continue;
    for (const m of methods) {
      const op = item[m];
      if (isObject(op)) inSpec.set(`${m.toUpperCase()} ${path}`, op);
    }
  }
  const inTable = new Map(routes.map((r) => [`${r.method} ${r.path}`, r]));
  for (const key of inSpec.keys()) if (!inTable.has(key)) problems.push(`${key}: in the spec, not served`);
  for (const [key, route] of inTable) {
    const op = inSpec.get(key);
    if (op === undefined) {
      problems.push(`${key}: served, not in the spec`);
      continue;
    }
    if (op['operationId'] !== route.operationId) problems.push(`${key}: operationId ${String(op['operationId'])} vs ${route.operationId}`);
    if (JSON.stringify(op['tags']) !== JSON.stringify([route.tag])) problems.push(`${key}: tags ${JSON.stringify(op['tags'])} vs [${route.tag}]`);
    const params = (Array.isArray(op['parameters']) ? op['parameters'] : []).map((p) => resolved(doc, p)) as Record<string, unknown>[];
    for (const where of ['path', 'query'] as const) {
      const declared = where === 'path' ? route.params : route.query;
      const listed = params.filter((p) => p['in'] === where);
      for (const p of listed) {
        const name = String(p['name']);
        const f = declared[name];
        if (f === undefined) {
          problems.push(`${key}: ${where} parameter ${name} only in the spec`);
          continue;
        }
        const required = where === 'path' ? true : f.optional !== true;
        if (p['required'] !== required) problems.push(`${key}: ${where} parameter ${name} required ${String(p['required'])} vs ${required}`);
        problems.push(...diff(toJsonSchema(f), p['schema'], `${key} ${where} parameter ${name}`));
      }
      for (const name of Object.keys(declared)) {
        if (!listed.some((p) => p['name'] === name)) problems.push(`${key}: ${where} parameter ${name} only in the route table`);
      }
    }
    const body = resolved(doc, op['requestBody']);
    const bodySchema = isObject(body) && isObject(body['content']) && isObject(body['content']['application/json']) ? body['content']['application/json']['schema'] : undefined;
    if (route.body === null && bodySchema !== undefined) problems.push(`${key}: the spec has a request body, the route takes none`);
    if (route.body !== null && bodySchema === undefined) problems.push(`${key}: the route takes a body, the spec has none`);
    if (route.body !== null && bodySchema !== undefined) problems.push(...diff(toJsonSchema(route.body), bodySchema, `${key} body`));
    const responses = isObject(op['responses']) ? op['responses'] : {};
    const ok = resolved(doc, responses['200']);
    const replySchema = isObject(ok) && isObject(ok['content']) && isObject(ok['content']['application/json']) ? ok['content']['application/json']['schema'] : undefined;
    if (replySchema === undefined) problems.push(`${key}: no 200 JSON reply in the spec`);
    else problems.push(...diff(toJsonSchema(route.reply), replySchema, `${key} reply`));
    if (responses['default'] === undefined) problems.push(`${key}: no default (error) response in the spec`);
  }
  return problems;
}

/** The object at `keys` inside `root` (throws when it is not one). */
function at(root: unknown, ...keys: string[]): Record<string, unknown> {
  const found = keys.reduce<unknown>((o, k) => (isObject(o) ? o[k] : undefined), root);
  if (!isObject(found)) throw new Error(`no object at ${keys.join('.')}`);
  return found;
}

const specPath = fileURLToPath(apiSpecUrl);
const doc = parse(readFileSync(specPath, 'utf8')) as Doc;
const routes = gatewayRoutes();

t.test('docs/api.yaml and the route table describe the same API', async (t) => {
  t.equal(doc['openapi'], '3.1.0', 'OpenAPI 3.1');
  t.same(specDifferences(doc, routes), [], 'no route, parameter or field on one side only');
  t.equal(new Set(routes.map((r) => `${r.method} ${r.path}`)).size, routes.length, 'no route twice');
  t.equal(new Set(routes.map((r) => r.operationId)).size, routes.length, 'operationIds unique');
  t.ok(routes.length >= 30, `every operation is routed (${routes.length})`);
});

t.test('the check reports what is added on one side only', async (t) => {
  const clone = (): Doc => structuredClone(doc);
  // A route only in the table.
  const extra: GatewayRoute = { ...routes[0] as GatewayRoute, path: '/v1/cluster/extra', operationId: 'extra' };
  t.match(specDifferences(doc, [...routes, extra]), [/GET \/v1\/cluster\/extra: served, not in the spec/]);
  // A route only in the spec.
  const more = clone();
  at(more, 'paths', '/v1/cluster/status')['post'] = { operationId: 'x' };
  t.match(specDifferences(more, routes), [/POST \/v1\/cluster\/status: in the spec, not served/]);
  // A body field only in the table.
  const acquire = routes.find((r) => r.operationId === 'lockAcquire') as GatewayRoute;
  const widened: GatewayRoute = { ...acquire, body: obj({ ...(acquire.body?.properties ?? {}), priority: opt(int()) }) };
  t.match(specDifferences(doc, routes.map((r) => (r === acquire ? widened : r))), [/POST \/v1\/locks\/\{name\}\/acquire body\.properties\.priority: only in the route table/]);
  // A body field only in the spec.
  const specField = clone();
  (at(specField, 'paths', '/v1/sessions', 'post', 'requestBody', 'content', 'application/json', 'schema', 'properties'))['name'] = { type: 'string' };
  t.match(specDifferences(specField, routes), [/POST \/v1\/sessions body\.properties\.name: only in the spec/]);
  // A reply field only in the table; a type changed in the spec.
  const status = routes.find((r) => r.operationId === 'clusterStatus') as GatewayRoute;
  const richer: GatewayRoute = { ...status, reply: obj({ ...status.reply.properties, version: str() }) };
  t.match(specDifferences(doc, routes.map((r) => (r === status ? richer : r))), [/GET \/v1\/cluster\/status reply\.properties\.version: only in the route table/]);
  const retyped = clone();
  const lockDelay = at(retyped, 'paths', '/v1/sessions', 'post', 'requestBody', 'content', 'application/json', 'schema', 'properties', 'lockDelayMs');
  lockDelay['type'] = 'string';
  t.match(specDifferences(retyped, routes), [/POST \/v1\/sessions body\.properties\.lockDelayMs\.type/]);
});

t.test('validation names the field that is wrong', async (t) => {
  const body = obj({ session: int({ minimum: 1 }), mode: opt(str({ enum: ['exclusive', 'shared'], default: 'exclusive' })) });
  t.same(validate(body, { session: 3 }, 'body'), { session: 3, mode: 'exclusive' }, 'defaults filled in');
  const fails = (v: unknown, message: RegExp): void => {
    let thrown: unknown = null;
    try {
      validate(body, v, 'body');
    } catch (err) {
      thrown = err;
    }
    t.ok(thrown instanceof FieldError && message.test(thrown.message), `${JSON.stringify(v)}: ${String(message)} (${String(thrown)})`);
  };
  fails({}, /body\.session is required/);
  fails({ session: '3' }, /body\.session must be an integer \(got string\)/);
  fails({ session: 1.5 }, /body\.session must be an integer/);
  fails({ session: 0 }, /body\.session must be at least 1/);
  fails({ session: 1, mode: 'both' }, /body\.mode must be one of exclusive, shared/);
  fails({ session: 1, colour: 'red' }, /body\.colour is not a field here/);
  fails([1], /body must be an object \(got array\)/);
  fails(null, /body must be an object \(got null\)/);
  t.equal(parseParameter(int({ minimum: 1 }), '42', 'p'), 42);
  t.throws(() => parseParameter(int(), '4x', 'path parameter session'), /path parameter session must be an integer/);
  t.same(toJsonSchema(body), { type: 'object', properties: { session: { type: 'integer', minimum: 1 },
    mode: { type: 'string', enum: ['exclusive', 'shared'], default: 'exclusive' } }, required: ['session'], additionalProperties: false } satisfies Json);
});

t.test('every stable code has a fitting HTTP status', async (t) => {
  for (const code of Object.values(ErrorCode)) {
    const status = httpStatusOf(code);
    t.ok(status >= 400 && status < 600, `${code} -> ${status}`);
  }
  t.equal(httpStatusOf(ErrorCode.DEADLOCK), 409);
  t.equal(httpStatusOf(ErrorCode.NOT_LEADER), 503);
  t.equal(httpStatusOf(ErrorCode.UNAVAILABLE), 503);
  t.equal(httpStatusOf(ErrorCode.BAD_REQUEST), 400);
  t.equal(httpStatusOf(ErrorCode.FRAME_TOO_LARGE), 413);
  t.equal(httpStatusOf(ErrorCode.TOO_MANY_REQUESTS), 429);
  t.equal(httpStatusOf(ErrorCode.UNAUTHORIZED), 401);
  t.equal(httpStatusOf(ErrorCode.FORBIDDEN), 403);
  t.same(errorBody(new DsyncError(ErrorCode.NOT_LEADER, 'go there', { leaderId: 'n2', leaderAddress: '127.0.0.1:7402' })),
    { error: { code: 'NOT_LEADER', message: 'go there', leaderId: 'n2', leaderAddress: '127.0.0.1:7402' } });
});
