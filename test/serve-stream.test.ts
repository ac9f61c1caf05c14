/**
 * `POST /v1/stream/:command` over real HTTP against a real pool: items arrive as the generator
 * yields them, a client that hangs up closes the generator in Python, an exception mid-stream is
 * the last line with the traceback, and bad requests get the statuses of /v1/call.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createPool, type Pool } from '../src/pool/pool.js';
import { createServer, type PyfleetServer } from '../src/server/app.js';
import { FIXTURES, alive, lines, quiet, tempFile, until } from './helpers/pool.js';

const MODULE = path.join(FIXTURES, 'http_streams.py');

/** `p`, or a failure after `ms` (so a missing item fails the test instead of hanging it). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p, new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms)))]).finally(() => clearTimeout(t));
}

let pool: Pool;
let server: PyfleetServer;
let url: string;

before(async () => {
  pool = await createPool({ module: MODULE, workers: 2, logger: quiet, cancelGraceMs: 1_000 });
  server = await createServer({ pool });
  url = await server.listen({ port: 0 });
});

after(async () => {
  await server.close();
  const pids = pool.pids();
  await pool.close();
  await until(() => pids.every((p) => !alive(p)));
});

/** Reads an NDJSON body line by line, as the lines arrive. */
function lineReader(body: ReadableStream<Uint8Array>): { next(): Promise<unknown | null>; cancel(): Promise<void> } {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  return {
    async next() {
      for (;;) {
        const i = buf.indexOf('\n');
        if (i >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          return JSON.parse(line) as unknown;
        }
        const { value, done } = await reader.read();
        if (done) {
          assert.equal(buf, '', 'the body ends with a complete line');
          return null;
        }
        buf += decoder.decode(value, { stream: true });
      }
    },
    cancel: () => reader.cancel(),
  };
}

const JSON_TYPE = { 'content-type': 'application/json' };

function post(command: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Response> {
  return fetch(`${url}/v1/stream/${command}`, { method: 'POST', body: body === undefined ? undefined : JSON.stringify(body), headers: { ...JSON_TYPE, ...headers }, signal });
}

async function allLines(res: Response): Promise<unknown[]> {
  const r = lineReader(res.body!);
  const out: unknown[] = [];
  for (let l = await r.next(); l !== null; l = await r.next()) out.push(l);
  return out;
}

describe('pyfleet serve: POST /v1/stream/:command (NDJSON)', () => {
  it('sends each item as the generator yields it: the first arrives while the generator still waits', async () => {
    const gate = tempFile('gate');
    const res = await post('gated', { gate });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/x-ndjson; charset=utf-8');
    const r = lineReader(res.body!);
    assert.deepEqual(await within(r.next(), 5_000, 'the first item'), { item: 'first' });
    // The generator is blocked on the gate, which nobody has opened yet: the first item came before its end.
    assert.equal(pool.stats().calls.inFlight, 1);
    writeFileSync(gate, '');
    assert.deepEqual(await r.next(), { item: 'second' });
    assert.deepEqual(await r.next(), { end: { items: 2 } });
    assert.equal(await r.next(), null);
  });

  it('a client that hangs up closes the generator in Python (its finally runs); the pool serves on', async () => {
    const file = tempFile('endless.log');
    const ac = new AbortController();
    const before = pool.stats().calls;
    const res = await post('endless', { path: file }, {}, ac.signal);
    const r = lineReader(res.body!);
    assert.deepEqual(await r.next(), { item: 0 });
    assert.deepEqual(await r.next(), { item: 1 });
    ac.abort();
    await until(() => lines(file).includes('closed'));
    await until(() => pool.stats().calls.inFlight === 0);
    const after = pool.stats().calls;
    assert.equal(after.failed, before.failed, 'a stream its reader stopped is not a failure');
    assert.equal(pool.stats().restarts.total, 0, 'the worker closed the generator; nobody was killed');
    assert.deepEqual(await allLines(await post('count', { n: 3 })), [{ item: 0 }, { item: 1 }, { item: 2 }, { end: { items: 3 } }]);
  });

  it('an exception mid-stream ends it with an error line carrying the Python traceback, after the items before it', async () => {
    const res = await post('breaks', {});
    assert.equal(res.status, 200);
    const got = (await allLines(res)) as Array<{ item?: number; error?: { code: string; category: string; python: { type: string; traceback: string } } }>;
    assert.deepEqual(got.slice(0, 2), [{ item: 1 }, { item: 2 }]);
    assert.equal(got.length, 3);
    const e = got[2].error!;
    assert.equal(e.code, 'PYFLEET_PYTHON_ERROR');
    assert.equal(e.category, 'python_error');
    assert.equal(e.python.type, 'ValueError');
    assert.match(e.python.traceback, /raise ValueError\("broke after two"\)/);
  });

  it('a failure before the first item is answered with its status, as /v1/call does', async () => {
    let res = await post('fails_first', {});
    assert.equal(res.status, 500);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    const [body] = (await allLines(res)) as Array<{ error: { code: string; python: { type: string; traceback: string } } }>;
    assert.equal(body.error.code, 'PYFLEET_PYTHON_ERROR');
    assert.equal(body.error.python.type, 'KeyError');
    assert.match(body.error.python.traceback, /nothing to stream/);
    res = await post('nope', {});
    assert.equal(res.status, 404);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'PYFLEET_UNKNOWN_COMMAND');
    // The body is checked against the command's type hints, as on /v1/call.
    res = await post('count', { n: 'three' });
    assert.equal(res.status, 400);
    const bad = (await res.json()) as { error: { code: string; message: string } };
    assert.equal(bad.error.code, 'PYFLEET_INVALID_ARGS');
    assert.match(bad.error.message, /n/);
    res = await fetch(`${url}/v1/stream/count`, { method: 'POST', body: '{"n": ', headers: JSON_TYPE });
    assert.equal(res.status, 400);
    for (const [header, value] of [
      ['x-pyfleet-high-water-mark', '0'],
      ['x-pyfleet-chunk-timeout-ms', 'soon'],
      ['x-pyfleet-timeout-ms', '-5'],
    ]) {
      res = await post('count', { n: 1 }, { [header]: value });
      assert.equal(res.status, 400, `${header}: ${value}`);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'PYFLEET_INVALID_ARGS');
    }
    assert.equal(pool.stats().calls.inFlight, 0);
  });

  it('binary items are base64 strings; an ordinary command streams its one value; sessions by header', async () => {
    assert.deepEqual(await allLines(await post('blobs', {})), [{ item: Buffer.from([0, 1, 255]).toString('base64') }, { item: { data: Buffer.from([0, 1, 2, 3]).toString('base64'), n: 4 } }, { end: { items: 2 } }]);
    assert.deepEqual(await allLines(await post('add', { a: 2, b: 3 })), [{ item: 5 }, { end: { items: 1 } }]);
    assert.deepEqual(await allLines(await post('count', { n: 2 }, { 'x-pyfleet-session': 's1', 'x-pyfleet-high-water-mark': '1' })), [{ item: 0 }, { item: 1 }, { end: { items: 2 } }]);
    assert.equal(pool.stats().sessions.total, 1);
  });

  it('/openapi.json documents each generator at /v1/stream (NDJSON), from the workers\' hello', async () => {
    const doc = (await (await fetch(`${url}/openapi.json`)).json()) as { paths: Record<string, { post: { responses: Record<string, { content?: Record<string, { schema: { oneOf: Array<{ properties?: { item?: unknown } }> } }> }> } }> };
    const paths = Object.keys(doc.paths);
    for (const g of ['blobs', 'breaks', 'count', 'endless', 'fails_first', 'gated']) {
      assert.ok(paths.includes(`/v1/stream/${g}`), g);
      assert.ok(!paths.includes(`/v1/call/${g}`), g);
    }
    assert.deepEqual(paths.filter((p) => p.startsWith('/v1/call/')), ['/v1/call/add']);
    const count = doc.paths['/v1/stream/count'].post.responses['200'].content!['application/x-ndjson'].schema;
    assert.deepEqual(count.oneOf[0].properties!.item, { type: 'integer' });
  });

  it('closing the server lets a stream in flight finish, and refuses new requests meanwhile', async () => {
    const own = await createServer({ pool });
    const ownUrl = await own.listen({ port: 0 });
    const gate = tempFile('gate-close');
    const res = await fetch(`${ownUrl}/v1/stream/gated`, { method: 'POST', body: JSON.stringify({ gate }), headers: JSON_TYPE });
    const r = lineReader(res.body!);
    assert.deepEqual(await within(r.next(), 5_000, 'the first item'), { item: 'first' });
    let closed = false;
    const closing = own.close().then(() => (closed = true));
    // A new request is refused: the port is closed, or (if it got in first) fastify answers 503 while closing.
    const late = await fetch(`${ownUrl}/v1/stream/count`, { method: 'POST', body: '{"n": 1}', headers: JSON_TYPE }).then((x) => x.status, () => 'refused');
    assert.ok(late === 'refused' || late === 503, String(late));
    assert.equal(closed, false, 'close() waits for the stream');
    writeFileSync(gate, '');
    assert.deepEqual(await r.next(), { item: 'second' });
    assert.deepEqual(await r.next(), { end: { items: 2 } });
    await closing;
  });

  it('the whole-stream timeout header ends a stream that runs too long with an error line', async () => {
    const res = await post('endless', { path: tempFile('timeout.log') }, { 'x-pyfleet-timeout-ms': '150' });
    const got = (await allLines(res)) as Array<{ item?: number; error?: { code: string } }>;
    assert.ok(got.length >= 2 && got.slice(0, -1).every((l, i) => l.item === i), JSON.stringify(got));
    assert.equal(got.at(-1)!.error?.code, 'PYFLEET_TIMEOUT');
  });
});
