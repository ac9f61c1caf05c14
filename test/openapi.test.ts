/**
 * `pyfleet serve` and typed commands: /openapi.json (checked as OpenAPI 3.1 by
 * @seriousme/openapi-schema-validator) and request bodies validated against the args schemas
 * that real Python derived from test/fixtures/typed/handlers.py.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Validator } from '@seriousme/openapi-schema-validator';
import { createConfig, lintFromString } from '@redocly/openapi-core';
import { createPool, type Pool } from '../src/pool/pool.js';
import { createServer, type PyfleetServer } from '../src/server/app.js';
import { toHttpJson } from '../src/server/http-json.js';
import { NDArray } from '../src/protocol/ndarray.js';
import { openApiDocument } from '../src/server/openapi.js';
import { serve, type Serving } from '../src/server/serve.js';
import { describeModule } from '../src/typing/introspect.js';
import type { ModuleSchemas } from '../src/typing/schema.js';
import { alive, quiet, until } from './helpers/pool.js';

const HANDLERS = fileURLToPath(new URL('./fixtures/typed/handlers.py', import.meta.url));
const EXAMPLES = fileURLToPath(new URL('../examples/handlers.py', import.meta.url));

const pools: Pool[] = [];
const servers: PyfleetServer[] = [];
const served: Serving[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
  const pids = [...pools, ...served.map((s) => s.pool)].flatMap((p) => p.pids());
  await Promise.all([...pools.map((p) => p.close()), ...served.map((s) => s.close())]);
  await until(() => pids.every((pid) => !alive(pid)));
});

async function isOpenApi31(doc: unknown): Promise<void> {
  const v = new Validator();
  const res = await v.validate(doc as Record<string, unknown>);
  assert.equal(res.valid, true, JSON.stringify(res.errors, null, 2));
  assert.equal(v.version, '3.1');
}

/** redocly's `recommended` rules, none disabled: no problem of severity error (warnings are printed). */
async function lintsClean(doc: unknown): Promise<void> {
  const config = await createConfig({ extends: ['recommended'] });
  const problems = await lintFromString({ source: JSON.stringify(doc), absoluteRef: '/openapi.json', config });
  const errors = problems.filter((p) => p.severity === 'error').map((p) => `${p.ruleId}: ${p.message} at ${p.location[0]?.pointer}`);
  assert.deepEqual(errors, []);
  for (const p of problems) console.log(`redocly ${p.severity} ${p.ruleId}: ${p.message}`);
}

async function post(url: string, command: string, body: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(`${url}/v1/call/${command}`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  return { status: res.status, json: await res.json() };
}

let mod: ModuleSchemas;
let url: string;
before(async () => {
  mod = await describeModule(HANDLERS);
  const pool = await createPool({ module: HANDLERS, workers: 1, logger: quiet });
  pools.push(pool);
  const server = await createServer({ pool, schemas: () => mod.commands, openapi: { title: 'typed handlers', version: '0.1.0' } });
  servers.push(server);
  url = await server.listen({ port: 0 });
});

describe('pyfleet serve: /openapi.json', () => {
  it('is a valid OpenAPI 3.1 document with a POST per command, named types as components, binary as base64', async () => {
    const res = await fetch(`${url}/openapi.json`);
    assert.equal(res.status, 200);
    const doc = (await res.json()) as any;
    await isOpenApi31(doc);
    // The validator is not vacuous: a reference to a missing component fails it.
    const broken = structuredClone(doc);
    broken.paths['/v1/call/add'].post.requestBody.content['application/json'].schema = { $ref: '#/components/schemas/Nope' };
    assert.equal((await new Validator().validate(broken)).valid, false);
    await lintsClean(doc);
    // Nor is the lint: a document without servers or security fails it.
    const bare = structuredClone(doc);
    delete bare.servers;
    delete bare.security;
    await assert.rejects(lintsClean(bare), /no-empty-servers.*security-defined|security-defined.*no-empty-servers/s);
    assert.deepEqual(doc.servers, [{ url: '/', description: 'This server.' }]);
    assert.deepEqual(doc.security, [{}]);
    // Every status a call's route can answer with is documented.
    assert.deepEqual(Object.keys(doc.paths['/v1/call/add'].post.responses).sort(), ['200', '400', '403', '404', '413', '415', '500', 'default']);
    assert.deepEqual(doc.components.schemas.PyfleetError.properties.error.required, ['code', 'category', 'message']);
    assert.equal(doc.openapi, '3.1.0');
    assert.equal(doc.info.title, 'typed handlers');
    // A generator is called at /v1/stream (NDJSON), every other command at /v1/call.
    const paths = Object.keys(doc.paths);
    assert.deepEqual(paths.filter((p) => p.startsWith('/v1/call/')), ['add', 'checksum', 'count_nodes', 'length', 'search', 'shapes', 'untyped', 'weird'].map((c) => `/v1/call/${c}`));
    assert.deepEqual(paths.filter((p) => p.startsWith('/v1/stream/')), ['/v1/stream/ticks', '/v1/stream/tokens']);
    assert.equal(paths.length, 10);
    const tokens = doc.paths['/v1/stream/tokens'].post;
    assert.equal(tokens.operationId, 'stream_tokens');
    const line = tokens.responses['200'].content['application/x-ndjson'].schema;
    assert.deepEqual(line.oneOf[0].properties.item, { type: 'string' });
    assert.deepEqual(line.oneOf.slice(1), [{ $ref: '#/components/schemas/PyfleetStreamEnd' }, { $ref: '#/components/schemas/PyfleetError' }]);
    // A float item may be null (NaN), as in any response.
    assert.deepEqual(doc.paths['/v1/stream/ticks'].post.responses['200'].content['application/x-ndjson'].schema.oneOf[0].properties.item.type, ['number', 'null']);
    assert.ok(tokens.parameters.some((h: { name: string }) => h.name === 'x-pyfleet-high-water-mark'));
    const add = doc.paths['/v1/call/add'].post;
    assert.equal(add.summary, 'Adds two integers.');
    assert.deepEqual(add.requestBody.content['application/json'].schema, { $ref: '#/components/schemas/AddArgs' });
    assert.deepEqual(add.responses['200'].content['application/json'].schema, { type: 'object', properties: { result: { type: 'integer' } }, required: ['result'] });
    const s = doc.components.schemas;
    assert.deepEqual(s.Tree.properties.children, { type: 'array', items: { $ref: '#/components/schemas/Tree' } });
    assert.deepEqual(s.Blob.properties.data, { 'x-pyfleet-binary': 'bytes', type: 'string', contentEncoding: 'base64', description: 'Binary data, base64-encoded (Python bytes).' });
    assert.equal(doc.paths['/v1/call/checksum'].post.responses['200'].content['application/json'].schema.properties.result.contentEncoding, 'base64');
    // A float in a response may be null (NaN); in a request it is a number.
    assert.deepEqual(s.PointResult.properties.x.type, ['number', 'null']);
    assert.deepEqual(s.Point.properties.x, { type: 'number' });
    assert.deepEqual(doc.paths['/v1/call/untyped'].post.requestBody.content['application/json'].schema, {});
    assert.equal(doc.paths['/v1/call/untyped'].post.requestBody.required, false);
  });

  it('is valid OpenAPI 3.1 for a pool whose commands carry no schemas yet (all open), and with a token', async () => {
    const withToken = openApiDocument({ add: { args: {}, result: {}, idempotent: true } }, { token: true });
    await isOpenApi31(withToken);
    await lintsClean(withToken);
    assert.deepEqual(withToken.security, [{ bearer: [] }]);
    assert.equal((withToken.components as any).securitySchemes.bearer.scheme, 'bearer');
    assert.ok((withToken.paths as any)['/v1/call/add'].post.responses['401']);
    const pool = await createPool({ module: EXAMPLES, workers: 1, logger: quiet });
    pools.push(pool);
    const server = await createServer({ pool });
    servers.push(server);
    const u = await server.listen({ port: 0 });
    const doc = (await (await fetch(`${u}/openapi.json`)).json()) as any;
    await isOpenApi31(doc);
    assert.ok(doc.paths['/v1/call/add']);
    const r = await post(u, 'add', { a: 1, b: 2, extra: true });
    assert.deepEqual(r, { status: 200, json: { result: 3 } });
  });
});

describe('pyfleet serve: request bodies are validated', () => {
  it('refuses a wrong enum value and a missing key with 400, naming the field, without calling Python', async () => {
    const before = pools[0].stats().calls.total;
    let r = await post(url, 'search', { query: 'q', mode: 'quick' });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, 'PYFLEET_INVALID_ARGS');
    assert.match(r.json.error.message, /args\.mode must be one of "fast", "slow" \(got "quick"\)/);
    assert.equal(r.json.error.details.field, 'args.mode');
    r = await post(url, 'add', { a: 1 });
    assert.equal(r.status, 400);
    assert.match(r.json.error.message, /args is missing required key "b"/);
    r = await post(url, 'checksum', { data: 'not base64!', view: '' });
    assert.equal(r.status, 400);
    assert.match(r.json.error.message, /args\.data must be binary data as a base64 string/);
    assert.equal(pools[0].stats().calls.total, before, 'a refused body reached the pool');
  });

  it('passes a valid body to the pool, and dataclass args and results work end to end', async () => {
    assert.deepEqual(await post(url, 'add', { a: 2, b: 3 }), { status: 200, json: { result: 5 } });
    assert.deepEqual(await post(url, 'count_nodes', { name: 'r', children: [{ name: 'a', children: [] }] }), { status: 200, json: { result: 2 } });
  });

  it('encodes binary values in results as base64', () => {
    const f = new Float64Array([1]);
    assert.deepEqual(toHttpJson({ a: Buffer.from('abc'), b: [1, f], c: 'x' }), { a: 'YWJj', b: [1, 'AAAAAAAA8D8='], c: 'x' });
    const plain = { a: [1, { b: 2 }] };
    assert.equal(toHttpJson(plain), plain);
    assert.deepEqual(toHttpJson({ m: new NDArray(new Float64Array([1, 2]), [1, 2]) }), { m: { data: 'AAAAAAAA8D8AAAAAAAAAQA==', shape: [1, 2], dtype: 'float64' } });
  });
});

describe('pyfleet serve (serve()) publishes the schemas the hello carries', () => {
  it('publishes typed schemas and validates bodies', async () => {
    const s = await serve({ pool: { module: HANDLERS, workers: 1, logger: quiet }, port: 0 });
    served.push(s);
    const doc = (await (await fetch(`${s.url}/openapi.json`)).json()) as any;
    await isOpenApi31(doc);
    await lintsClean(doc);
    assert.ok(doc.components.schemas.SearchArgs);
    const r = await post(s.url, 'search', { query: 'q', mode: 'quick' });
    assert.equal(r.status, 400);
    assert.match(r.json.error.message, /args\.mode/);
  });
});
