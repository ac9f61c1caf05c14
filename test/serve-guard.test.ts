/**
 * `pyfleet serve` against what a web page can make a browser send (the class of Ollama's
 * CVE-2024-28224): a cross-origin form or text/plain POST (no preflight), and a Host of another
 * name (DNS rebinding). Over real HTTP to a real pool whose handler writes a file: each refusal
 * is checked by its answer and by the file not being there, and the allowed requests by it being there.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createPool, type Pool } from '../src/pool/pool.js';
import { createServer, type PyfleetServer, type ServerOptions } from '../src/server/app.js';
import { alive, quiet, until } from './helpers/pool.js';

const TOUCH = fileURLToPath(new URL('./fixtures/http_touch.py', import.meta.url));
const dir = mkdtempSync(path.join(tmpdir(), 'pyfleet-guard-'));
let n = 0;

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  json: any;
}

/** A raw HTTP request (fetch would not let us set Host): what a browser or a rebinding page sends. */
function send(url: string, p: string, headers: Record<string, string>, body?: string, method = 'POST'): Promise<Answer> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path: p, method, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, json: text === '' ? null : JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** POSTs a call of `touch` for a fresh file; says whether the handler wrote it. */
async function touch(url: string, headers: Record<string, string>, encode: (args: object) => string = JSON.stringify): Promise<Answer & { wrote: boolean }> {
  const file = path.join(dir, `f${++n}`);
  const a = await send(url, '/v1/call/touch', headers, encode({ path: file }));
  return { ...a, wrote: existsSync(file) };
}

const JSON_TYPE = { 'content-type': 'application/json' };
const EVIL = 'https://evil.example';

let pool: Pool;
const servers: PyfleetServer[] = [];
before(async () => {
  pool = await createPool({ module: TOUCH, workers: 1, logger: quiet });
});
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
  const pids = pool.pids();
  await pool.close();
  await until(() => pids.every((p) => !alive(p)));
  rmSync(dir, { recursive: true, force: true });
});

async function started(o: Omit<ServerOptions, 'pool'> = {}): Promise<string> {
  const s = await createServer({ pool, ...o });
  servers.push(s);
  return s.listen({ port: 0 });
}

describe('pyfleet serve refuses what a web page can send, with its defaults (loopback, no token)', () => {
  it('a cross-origin text/plain or form POST (no preflight): 403, the handler does not run', async () => {
    const url = await started();
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
      const r = await touch(url, { 'content-type': type, origin: EVIL });
      assert.equal(r.status, 403, type);
      assert.equal(r.json.error.code, 'PYFLEET_FORBIDDEN');
      assert.equal(r.json.error.category, 'communication_error');
      assert.match(r.json.error.message, /evil\.example.*--allow-origin/);
      assert.equal(r.wrote, false, `${type}: the handler ran`);
    }
    // JSON from that origin too (a browser would preflight it: the preflight gets no CORS answer).
    const r = await touch(url, { ...JSON_TYPE, origin: EVIL });
    assert.equal(r.status, 403);
    assert.equal(r.wrote, false);
    const pre = await send(url, '/v1/call/touch', { origin: EVIL, 'access-control-request-method': 'POST' }, undefined, 'OPTIONS');
    assert.equal(pre.status, 403);
    assert.equal(pre.headers['access-control-allow-origin'], undefined);
    // An opaque origin (a sandboxed frame, a file:// page) is refused as well.
    assert.equal((await touch(url, { ...JSON_TYPE, origin: 'null' })).status, 403);
    assert.equal(pool.stats().calls.total, 0, 'no call reached the pool');
  });

  it('a Host of another name (DNS rebinding): 403, the handler does not run', async () => {
    const url = await started();
    for (const host of ['attacker.example', `attacker.example:${new URL(url).port}`, 'localhost.attacker.example']) {
      const r = await touch(url, { ...JSON_TYPE, host });
      assert.equal(r.status, 403, host);
      assert.equal(r.json.error.code, 'PYFLEET_FORBIDDEN');
      assert.match(r.json.error.message, /Host .*attacker\.example.*--allow-host/);
      assert.equal(r.wrote, false, `${host}: the handler ran`);
    }
    // The rebound page is same-origin with itself: its Origin matches its Host, and both are refused.
    const r = await touch(url, { ...JSON_TYPE, host: 'attacker.example', origin: 'http://attacker.example' });
    assert.equal(r.status, 403);
    assert.equal(r.wrote, false);
    // Not only calls: the stats and metrics are not readable by that page either.
    assert.equal((await send(url, '/v1/stats', { host: 'attacker.example' }, undefined, 'GET')).status, 403);
  });

  it('a body that is not application/json, from any client: 415, the handler does not run', async () => {
    const url = await started();
    for (const headers of [{ 'content-type': 'text/plain' }, { 'content-type': 'application/x-www-form-urlencoded' }, {} as Record<string, string>]) {
      const r = await touch(url, headers);
      assert.equal(r.status, 415, JSON.stringify(headers));
      assert.equal(r.json.error.code, 'PYFLEET_UNSUPPORTED_MEDIA_TYPE');
      assert.match(r.json.error.message, /application\/json/);
      assert.equal(r.wrote, false);
    }
  });

  it('local clients that send JSON keep working: no Origin, an IP or localhost Host, the page of the server itself', async () => {
    const url = await started();
    const port = new URL(url).port;
    for (const headers of [
      JSON_TYPE as Record<string, string>,
      { 'content-type': 'application/json; charset=utf-8', host: `localhost:${port}` },
      { ...JSON_TYPE, host: `[::1]:${port}` },
      { ...JSON_TYPE, origin: `http://127.0.0.1:${port}` },
    ]) {
      const r = await touch(url, headers);
      assert.equal(r.status, 200, JSON.stringify(headers));
      assert.deepEqual(r.json, { result: true });
      assert.equal(r.wrote, true);
    }
    // Node's fetch with the JSON header.
    const file = path.join(dir, 'fetch');
    const res = await fetch(`${url}/v1/call/touch`, { method: 'POST', headers: JSON_TYPE, body: JSON.stringify({ path: file }) });
    assert.equal(res.status, 200);
    assert.ok(existsSync(file));
  });

  it('allowedOrigins and allowedHosts let the named ones in, with CORS headers for an allowed page', async () => {
    const url = await started({ allowedOrigins: ['https://app.example'], allowedHosts: ['pyfleet.internal'] });
    let r = await touch(url, { ...JSON_TYPE, origin: 'https://app.example' });
    assert.equal(r.status, 200);
    assert.equal(r.wrote, true);
    assert.equal(r.headers['access-control-allow-origin'], 'https://app.example');
    assert.match(String(r.headers['access-control-expose-headers']), /x-pyfleet-via/);
    const pre = await send(url, '/v1/call/touch', { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' }, undefined, 'OPTIONS');
    assert.equal(pre.status, 204);
    assert.equal(pre.headers['access-control-allow-origin'], 'https://app.example');
    assert.match(String(pre.headers['access-control-allow-headers']), /content-type/);
    r = await touch(url, { ...JSON_TYPE, host: 'pyfleet.internal:7700' });
    assert.equal(r.status, 200);
    assert.equal(r.wrote, true);
    // Another origin and another name stay refused; an allowed page still cannot send text/plain.
    assert.equal((await touch(url, { ...JSON_TYPE, origin: EVIL })).status, 403);
    assert.equal((await touch(url, { ...JSON_TYPE, host: 'attacker.example' })).status, 403);
    r = await touch(url, { 'content-type': 'text/plain', origin: 'https://app.example' });
    assert.equal(r.status, 415);
    assert.equal(r.wrote, false);
  });
});
