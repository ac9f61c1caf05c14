/**
 * `pyfleet serve`: the HTTP API (calls, errors with fitting statuses, sessions, health, metrics,
 * token), and the command itself: it refuses a public address without a token, and SIGTERM
 * drains in-flight calls and exits 0 with no Python process left.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createPool, type Pool } from '../src/pool/pool.js';
import { createServer, isLoopback, type PyfleetServer } from '../src/server/app.js';
import { serve } from '../src/server/serve.js';
import { alive, quiet, until } from './helpers/pool.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const EXAMPLES = fileURLToPath(new URL('../examples/handlers.py', import.meta.url));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Resolves with 'timeout' after `ms` without holding the process open. */
const deadline = (ms: number) => new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), ms).unref());

async function call(url: string, command: string, body?: string, headers: Record<string, string> = {}): Promise<{ status: number; json: any; headers: Headers }> {
  const res = await fetch(`${url}/v1/call/${command}`, { method: 'POST', body, headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers } });
  return { status: res.status, json: await res.json(), headers: res.headers };
}

const pools: Pool[] = [];
const servers: PyfleetServer[] = [];
const children: ChildProcess[] = [];
after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await Promise.all(servers.map((s) => s.close()));
  const pids = pools.flatMap((p) => p.pids());
  await Promise.all(pools.map((p) => p.close()));
  await until(() => pids.every((pid) => !alive(pid)));
});

async function started(opts: { token?: string } = {}): Promise<{ url: string; pool: Pool; server: PyfleetServer }> {
  const pool = await createPool({
    module: EXAMPLES,
    workers: 2,
    logger: quiet,
    cancelGraceMs: 500,
    recovery: { strategies: { timeout_error: { major: { type: 'abandon' } } } },
  });
  pools.push(pool);
  const server = await createServer({ pool, ...opts });
  servers.push(server);
  return { url: await server.listen({ port: 0 }), pool, server };
}

describe('pyfleet serve: HTTP API', () => {
  it('POST /v1/call/:command answers {result}, and each failure {error} with a fitting status', async () => {
    const { url } = await started();
    let r = await call(url, 'add', '{"a": 1, "b": 2}', { 'content-type': 'application/json' });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { result: 3 });
    assert.equal(r.headers.get('x-pyfleet-via'), 'pool');
    assert.equal(r.headers.get('x-pyfleet-attempts'), '1');
    assert.match(r.headers.get('x-pyfleet-worker') ?? '', /^\d+$/);
    r = await call(url, 'echo', JSON.stringify({ nested: [1, 'two', null] }), { 'content-type': 'application/json; charset=utf-8' });
    assert.deepEqual(r.json, { result: { nested: [1, 'two', null] } });
    // No body: the arguments are null.
    r = await call(url, 'echo');
    assert.deepEqual(r.json, { result: null });

    // A Python exception: 500 with the Python type, message and traceback.
    r = await call(url, 'fail', '{"message": "bad input"}');
    assert.equal(r.status, 500);
    assert.equal(r.json.error.code, 'PYFLEET_PYTHON_ERROR');
    assert.equal(r.json.error.category, 'python_error');
    assert.equal(r.json.error.severity, 'major');
    assert.equal(r.json.error.python.type, 'ValueError');
    assert.match(r.json.error.python.traceback, /raise ValueError/);
    assert.match(r.json.error.message, /bad input/);
    // Unknown command: 404. Body that is not JSON: 400. Bad per-call option: 400.
    r = await call(url, 'nope', '{}');
    assert.equal(r.status, 404);
    assert.equal(r.json.error.code, 'PYFLEET_UNKNOWN_COMMAND');
    r = await call(url, 'add', '{"a": 1,');
    assert.equal(r.status, 400);
    assert.match(r.json.error.message, /not JSON/);
    r = await call(url, 'add', '{"a": 1, "b": 1}', { 'x-pyfleet-timeout-ms': 'soon' });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, 'PYFLEET_INVALID_ARGS');
    // A timeout: 504.
    r = await call(url, 'sleep', '{"ms": 600}', { 'x-pyfleet-timeout-ms': '100' });
    assert.equal(r.status, 504);
    assert.equal(r.json.error.code, 'PYFLEET_TIMEOUT');
    assert.equal(r.json.error.category, 'timeout_error');
  });

  it('sessions by header; /v1/stats, /healthz, /metrics with Node process metrics', async () => {
    const { url, pool } = await started();
    assert.deepEqual((await call(url, 'remember', '{"x": 41}', { 'x-pyfleet-session': 'u1' })).json, { result: 1 });
    assert.deepEqual((await call(url, 'recall', '{}', { 'x-pyfleet-session': 'u1' })).json, { result: 41 });
    const stats = (await (await fetch(`${url}/v1/stats`)).json()) as { poolId: number; workers: unknown[]; sessions: { total: number; bound: number; durable: number } };
    assert.equal(stats.poolId, pool.id);
    assert.equal(stats.workers.length, 2);
    assert.equal(stats.sessions.total, 1);
    assert.equal(stats.sessions.bound, 1);
    assert.equal(stats.sessions.durable, 1, 'remember touched the session: its snapshot is stored');
    const h = await fetch(`${url}/healthz`);
    assert.equal(h.status, 200);
    assert.deepEqual(await h.json(), { status: 'ok', workers: { total: 2, serving: 2 }, queue: 0, circuits: { pool_operations: 'closed', 'worker_commands:remember': 'closed', 'worker_commands:recall': 'closed' } });
    const m = await (await fetch(`${url}/metrics`)).text();
    assert.match(m, /pyfleet_calls_total\{pool="\d+",command="remember",outcome="ok"\} 1/);
    assert.match(m, /process_cpu_user_seconds_total/);
    assert.match(m, /nodejs_eventloop_lag_seconds/);
  });

  it('a client that hangs up cancels its call', async () => {
    const { url, pool } = await started();
    const req = request(`${url}/v1/call/sleep`, { method: 'POST', headers: { 'content-type': 'application/json' } });
    req.on('error', () => {});
    req.end('{"ms": 3000}');
    await until(() => pool.stats().workers.some((w) => w.state === 'busy'));
    const t = Date.now();
    req.destroy();
    await until(() => pool.stats().calls.failed === 1 && pool.stats().workers.every((w) => w.state === 'ready'), 2_500);
    assert.ok(Date.now() - t < 2_500, 'the worker was freed long before the 3 s of work');
  });

  it('with a token: every route but /healthz and static files needs it, as a Bearer header or ?token=', async () => {
    const { url } = await started({ token: 's3cret' });
    let r = await fetch(`${url}/v1/call/add`, { method: 'POST', body: '{"a":1,"b":1}' });
    assert.equal(r.status, 401);
    assert.equal(r.headers.get('www-authenticate'), 'Bearer realm="pyfleet"');
    assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'PYFLEET_UNAUTHORIZED');
    r = await fetch(`${url}/v1/call/add`, { method: 'POST', body: '{"a":1,"b":1}', headers: { authorization: 'Bearer wrong' } });
    assert.equal(r.status, 401);
    r = await fetch(`${url}/v1/call/add`, { method: 'POST', body: '{"a":1,"b":1}', headers: { authorization: 'Bearer s3cret', 'content-type': 'application/json' } });
    assert.deepEqual(await r.json(), { result: 2 });
    assert.equal((await fetch(`${url}/metrics`)).status, 401);
    assert.equal((await fetch(`${url}/metrics?token=s3cret`)).status, 200);
    assert.equal((await fetch(`${url}/`)).status, 401);
    assert.equal((await fetch(`${url}/?token=s3cret`)).status, 200);
    assert.equal((await fetch(`${url}/events`)).status, 401);
    const events = await fetch(`${url}/events?token=s3cret`);
    assert.equal(events.status, 200);
    assert.match(events.headers.get('content-type') ?? '', /^text\/event-stream/);
    await events.body?.cancel();
    // Open: the health check, and the dashboard's static files (the page itself passes ?token= on to /events).
    assert.equal((await fetch(`${url}/healthz`)).status, 200);
    assert.equal((await fetch(`${url}/dashboard.js`)).status, 200);
    assert.equal((await fetch(`${url}/dashboard.css`)).status, 200);
  });

  it('refuses to listen beyond loopback without a token', async () => {
    assert.equal(isLoopback('127.0.0.1'), true);
    assert.equal(isLoopback('::1'), true);
    assert.equal(isLoopback('[::1]'), true);
    assert.equal(isLoopback('localhost'), true);
    assert.equal(isLoopback('0.0.0.0'), false);
    assert.equal(isLoopback('::'), false);
    assert.equal(isLoopback('10.0.0.5'), false);
    const { server } = await started();
    await assert.rejects(server.listen({ port: 0, host: '0.0.0.0' }), /without a token/);
    // serve() checks before it starts a single worker.
    await assert.rejects(serve({ pool: { module: EXAMPLES, logger: quiet }, host: '0.0.0.0', port: 0 }), /Refusing to serve on 0\.0\.0\.0 without a token/);
  });
});

/** Runs the serve command (registered as main.ts registers it) in a child process. */
function serveCli(args: string[]): { child: ChildProcess; out: () => string; err: () => string; exited: Promise<number | null> } {
  const entry = `import { Command } from 'commander'; import { register } from './src/cli/commands/serve.ts'; const p = new Command('pyfleet'); register(p); await p.parseAsync(process.argv.slice(1), { from: 'user' });`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', entry, 'serve', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, out: () => out, err: () => err, exited };
}

describe('pyfleet serve: the command', () => {
  it('SIGTERM drains: the call in flight is answered, new connections are refused, exit 0, no Python left', async () => {
    const cli = serveCli(['--module', EXAMPLES, '--port', '0', '--workers', '2', '--log-level', 'warn']);
    await until(() => /token: /.test(cli.out()), 20_000);
    const url = /at (http:\/\/127\.0\.0\.1:\d+)/.exec(cli.out())![1];
    // A random token by default, printed in the dashboard's URL and on its own.
    const token = /token: +(\S+) \(random/.exec(cli.out())![1];
    assert.ok(token.length >= 24, token);
    assert.ok(cli.out().includes(`dashboard: ${url}/?token=${token}`), cli.out());
    assert.equal((await fetch(`${url}/v1/stats`)).status, 401);
    assert.equal((await fetch(`${url}/?token=${token}`)).status, 200);
    const auth = { authorization: `Bearer ${token}` };
    const stats = (await (await fetch(`${url}/v1/stats`, { headers: auth })).json()) as { workers: Array<{ pid: number }> };
    const pids: number[] = stats.workers.map((w: { pid: number }) => w.pid);
    assert.equal(pids.length, 2);
    assert.ok(pids.every(alive));

    const inflight = call(url, 'sleep', '{"ms": 800}', auth);
    await sleep(200);
    cli.child.kill('SIGTERM');
    await sleep(100);
    await assert.rejects(fetch(`${url}/healthz`), 'the port is closed for new connections');
    const r = await inflight;
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { result: { slept_ms: 800, cancelled: false } });
    const code = await Promise.race([cli.exited, deadline(10_000)]);
    assert.equal(code, 0, `exit code (stderr: ${cli.err()})`);
    assert.match(cli.out(), /pyfleet: stopped/);
    await until(() => pids.every((p) => !alive(p)), 2_000);
  });

  it('refuses --host 0.0.0.0 with --no-token, before starting any worker', async () => {
    const cli = serveCli(['--module', EXAMPLES, '--host', '0.0.0.0', '--port', '0', '--no-token']);
    const code = await Promise.race([cli.exited, deadline(15_000)]);
    assert.equal(code, 1);
    assert.match(cli.err(), /Refusing to serve on 0\.0\.0\.0 without a token/);
    assert.equal(cli.out(), '');
  });
});
