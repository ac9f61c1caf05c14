/**
 * `pyfleet serve`'s error answers, over real HTTP: whatever fails (the body, its type or size,
 * the route, the URL, the headers, the token, a server shutting down), the answer is
 * `{ error: { code, category, message, ... } }` with the status the README documents.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createPool, type Pool } from '../src/pool/pool.js';
import { createServer, type PyfleetServer } from '../src/server/app.js';
import { alive, quiet, until } from './helpers/pool.js';

const EXAMPLES = fileURLToPath(new URL('../examples/handlers.py', import.meta.url));

/** The statuses documented in the README's table, by code. */
const DOCUMENTED: Record<string, number> = {
  PYFLEET_INVALID_ARGS: 400,
  PYFLEET_HTTP_ERROR: -1, // its status is the failure's: checked where it is sent
  PYFLEET_UNAUTHORIZED: 401,
  PYFLEET_FORBIDDEN: 403,
  PYFLEET_NOT_FOUND: 404,
  PYFLEET_UNKNOWN_COMMAND: 404,
  PYFLEET_FRAME_TOO_LARGE: 413,
  PYFLEET_UNSUPPORTED_MEDIA_TYPE: 415,
};

function assertShape(status: number, json: any, code: string, expectedStatus: number): void {
  assert.equal(json?.error?.code, code, JSON.stringify(json));
  assert.equal(status, expectedStatus, code);
  if (DOCUMENTED[code] !== -1) assert.equal(status, DOCUMENTED[code], `${code} answers its documented status`);
  assert.equal(typeof json.error.category, 'string');
  assert.ok(typeof json.error.message === 'string' && json.error.message.length > 10, json.error.message);
  assert.deepEqual(Object.keys(json), ['error']);
}

async function ask(url: string, p: string, init: RequestInit = {}): Promise<{ status: number; json: any }> {
  const res = await fetch(`${url}${p}`, init);
  return { status: res.status, json: await res.json() };
}

/** Bytes over a raw socket (what fetch refuses to send), until the server closes it. */
function raw(url: string, text: string): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = connect(Number(u.port), u.hostname, () => s.write(text));
    let got = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (got += d));
    s.on('close', () => resolve(got));
    s.on('error', reject);
  });
}

function bodyOf(response: string): any {
  return JSON.parse(response.slice(response.indexOf('\r\n\r\n') + 4));
}

let pool: Pool;
const servers: PyfleetServer[] = [];
before(async () => {
  pool = await createPool({ module: EXAMPLES, workers: 1, logger: quiet });
});
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
  const pids = pool.pids();
  await pool.close();
  await until(() => pids.every((p) => !alive(p)));
});

async function started(token?: string): Promise<{ url: string; server: PyfleetServer }> {
  const server = await createServer({ pool, bodyLimit: 1024, ...(token !== undefined ? { token } : {}) });
  servers.push(server);
  return { url: await server.listen({ port: 0 }), server };
}

const JSON_TYPE = { 'content-type': 'application/json' };

describe('pyfleet serve: every error answer has one shape and its documented status', () => {
  it('a body that is not JSON, of another type, or too large', async () => {
    const { url } = await started();
    let r = await ask(url, '/v1/call/add', { method: 'POST', headers: JSON_TYPE, body: '{"a": 1,' });
    assertShape(r.status, r.json, 'PYFLEET_INVALID_ARGS', 400);
    assert.match(r.json.error.message, /not JSON/);
    r = await ask(url, '/v1/stream/add', { method: 'POST', headers: JSON_TYPE, body: 'nope' });
    assertShape(r.status, r.json, 'PYFLEET_INVALID_ARGS', 400);
    r = await ask(url, '/v1/call/add', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{"a": 1, "b": 2}' });
    assertShape(r.status, r.json, 'PYFLEET_UNSUPPORTED_MEDIA_TYPE', 415);
    r = await ask(url, '/v1/call/echo', { method: 'POST', headers: JSON_TYPE, body: JSON.stringify({ s: 'x'.repeat(2000) }) });
    assertShape(r.status, r.json, 'PYFLEET_FRAME_TOO_LARGE', 413);
    assert.match(r.json.error.message, /1024 bytes/);
    assert.equal(pool.stats().calls.total, 0);
  });

  it('an unknown route, a bad URL, headers too large', async () => {
    const { url } = await started();
    let r = await ask(url, '/nope');
    assertShape(r.status, r.json, 'PYFLEET_NOT_FOUND', 404);
    r = await ask(url, '/v1/call', { method: 'POST', headers: JSON_TYPE, body: '{}' });
    assertShape(r.status, r.json, 'PYFLEET_NOT_FOUND', 404);
    r = await ask(url, '/v1/call/nope', { method: 'POST', headers: JSON_TYPE, body: '{}' });
    assertShape(r.status, r.json, 'PYFLEET_UNKNOWN_COMMAND', 404);
    r = await ask(url, '/v1/call/%zz', { method: 'POST', headers: JSON_TYPE, body: '{}' });
    assertShape(r.status, r.json, 'PYFLEET_HTTP_ERROR', 400);
    const big = await raw(url, `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    assert.match(big, /^HTTP\/1\.1 431 /);
    assertShape(431, bodyOf(big), 'PYFLEET_HTTP_ERROR', 431);
  });

  it('a missing token', async () => {
    const { url } = await started('s3cret');
    const r = await ask(url, '/v1/call/add', { method: 'POST', headers: JSON_TYPE, body: '{"a": 1, "b": 2}' });
    assertShape(r.status, r.json, 'PYFLEET_UNAUTHORIZED', 401);
  });

  it('a request pipelined behind one in flight while the server shuts down runs nothing; the one in flight is answered', async () => {
    const { url, server } = await started();
    const u = new URL(url);
    const s = connect(Number(u.port), u.hostname);
    let got = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (got += d));
    const closed = new Promise((r) => s.on('close', r));
    const body = '{"ms": 400}';
    const sleep = `POST /v1/call/sleep HTTP/1.1\r\nHost: ${u.host}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    s.write(sleep);
    await until(() => pool.stats().workers.some((w) => w.state === 'busy'));
    const before = pool.stats().calls.total;
    const closing = server.close();
    await until(() => !server.app.server.listening);
    // The same connection, still busy with the call: its next request reaches the server while it closes.
    s.write(sleep);
    await closed;
    await closing;
    assert.equal(pool.stats().calls.total, before, 'the pipelined call ran');
    const answers = got.split(/(?=HTTP\/1\.1 )/);
    assert.equal(answers.length, 1, got);
    assert.match(answers[0], /^HTTP\/1\.1 200 /);
  });
});
