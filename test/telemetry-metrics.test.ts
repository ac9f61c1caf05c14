/**
 * Prometheus metrics after a scripted sequence of real failures, scraped over HTTP from the
 * server's /metrics; and the registry is the caller's.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import { createPool, type Pool } from '../src/pool/pool.js';
import { createServer, type PyfleetServer } from '../src/server/app.js';
import { serve, type Serving } from '../src/server/serve.js';
import { PyfleetMetrics, poolMetrics } from '../src/telemetry/metrics.js';
import { alive, quiet, until } from './helpers/pool.js';

const EXAMPLES = fileURLToPath(new URL('../examples/handlers.py', import.meta.url));
const FAST = { connection_error: { delays: [10, 20, 40] }, communication_error: { delays: [0, 10, 20] } };

/** Parses the text exposition format into `name{labels}` -> value (labels sorted by name). */
function parse(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m) continue;
    const labels = m[2] ? [...m[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => `${x[1]}=${x[2]}`).sort() : [];
    out.set(`${m[1]}{${labels.join(',')}}`, Number(m[3]));
  }
  return out;
}

/** `series(m, 'pyfleet_calls_total', { command: 'add', outcome: 'ok' })`: the value, or undefined. */
function value(m: Map<string, number>, name: string, labels: Record<string, string>): number | undefined {
  const key = `${name}{${Object.entries(labels).map(([k, v]) => `${k}=${v}`).sort().join(',')}}`;
  return m.get(key);
}

const PROMTOOL = process.env.PYFLEET_PROMTOOL ?? '/usr/bin/promtool';

const pools: Pool[] = [];
const servers: PyfleetServer[] = [];
const served: Serving[] = [];
after(async () => {
  await Promise.all(served.map((s) => s.close()));
  await Promise.all(servers.map((s) => s.close()));
  const pids = pools.flatMap((p) => p.pids());
  await Promise.all(pools.map((p) => p.close()));
  await until(() => pids.every((pid) => !alive(pid)));
});

describe('Prometheus metrics', () => {
  it('count a scripted sequence of failures, scraped over HTTP', async () => {
    const pool = await createPool({
      module: EXAMPLES,
      workers: 2,
      logger: quiet,
      policy: FAST,
      cancelGraceMs: 500,
      circuitBreaker: { failureThreshold: 2, openTimeoutMs: 60_000 },
      // A timed-out call is given up at once (the default would re-send it with a larger timeout).
      recovery: { strategies: { timeout_error: { major: { type: 'abandon' } } } },
    });
    pools.push(pool);
    const registry = new Registry();
    const metrics = new PyfleetMetrics({ registry });
    metrics.attach(pool, { name: 'main' });
    const server = await createServer({ pool, metrics });
    servers.push(server);
    const url = await server.listen({ port: 0 });

    // 1. three good calls
    for (let i = 0; i < 3; i++) assert.equal(await pool.execute('add', { a: i, b: 1 }), i + 1);
    // 2. two Python exceptions
    for (let i = 0; i < 2; i++) await assert.rejects(pool.execute('fail', {}), { code: 'PYFLEET_PYTHON_ERROR' });
    // 3. an idle worker SIGKILLed: the supervisor starts another
    const ready = () => pool.stats().workers.filter((w) => w.state === 'ready').length === 2;
    process.kill(pool.stats().workers[0].pid!, 'SIGKILL');
    await until(() => pool.stats().restarts.total === 1 && ready());
    // (a success between two deaths: they are not consecutive failures of pool_operations)
    assert.equal(await pool.execute('add', { a: 5, b: 5 }), 10);
    // 4. a busy worker SIGKILLed during an idempotent call: re-sent at once to the other worker
    const call = pool.execute('sleep', { ms: 300 }, { detailed: true });
    await until(() => pool.stats().workers.some((w) => w.state === 'busy'));
    process.kill(pool.stats().workers.find((w) => w.state === 'busy')!.pid!, 'SIGKILL');
    assert.equal((await call).attempts, 2);
    await until(() => pool.stats().restarts.total === 2 && ready());
    // 5. two timeouts of one command in a row: failureThreshold 2 opens that command's circuit
    for (let i = 0; i < 2; i++) await assert.rejects(pool.execute('sleep', { ms: 400 }, { timeoutMs: 80 }), { code: 'PYFLEET_TIMEOUT' });
    // 6. the next call of that command is refused fast; other commands are served
    await assert.rejects(pool.execute('sleep', { ms: 1 }), { code: 'PYFLEET_CIRCUIT_OPEN' });
    assert.equal(await pool.execute('add', { a: 1, b: 1 }), 2);
    await until(() => pool.stats().workers.every((w) => w.rssMb !== null) && pool.stats().workers.filter((w) => w.state === 'ready' && w.health === 'healthy').length === 2);

    const res = await fetch(`${url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const m = parse(await res.text());
    const v = (name: string, labels: Record<string, string> = {}) => value(m, `pyfleet_${name}`, { pool: 'main', ...labels });

    // calls by command and outcome
    assert.equal(v('calls_total', { command: 'add', outcome: 'ok' }), 5);
    assert.equal(v('calls_total', { command: 'add', outcome: 'error' }), undefined);
    assert.equal(v('calls_total', { command: 'fail', outcome: 'error' }), 2);
    assert.equal(v('calls_total', { command: 'sleep', outcome: 'ok' }), 1);
    assert.equal(v('calls_total', { command: 'sleep', outcome: 'error' }), 3);
    assert.equal(v('call_failures_total', { command: 'fail', code: 'PYFLEET_PYTHON_ERROR' }), 2);
    assert.equal(v('call_failures_total', { command: 'sleep', code: 'PYFLEET_TIMEOUT' }), 2);
    assert.equal(v('call_failures_total', { command: 'sleep', code: 'PYFLEET_CIRCUIT_OPEN' }), 1);
    // latency histogram
    assert.equal(v('call_duration_seconds_count', { command: 'add', outcome: 'ok' }), 5);
    assert.equal(v('call_duration_seconds_bucket', { command: 'add', outcome: 'ok', le: '+Inf' }), 5);
    assert.equal(v('call_duration_seconds_bucket', { command: 'sleep', outcome: 'ok', le: '0.25' }), 0, 'the retried sleep took over 300 ms');
    assert.equal(v('call_duration_seconds_bucket', { command: 'sleep', outcome: 'ok', le: '5' }), 1);
    assert.ok(v('call_duration_seconds_sum', { command: 'sleep', outcome: 'ok' })! >= 0.3);
    // errors by category and severity (one per failed attempt)
    assert.equal(v('errors_total', { category: 'python_error', severity: 'major' }), 2);
    assert.equal(v('errors_total', { category: 'connection_error', severity: 'major' }), 1);
    assert.equal(v('errors_total', { category: 'timeout_error', severity: 'major' }), 2);
    assert.equal(v('errors_total', { category: 'resource_error', severity: 'critical' }), 1, 'the refusal of the open circuit');
    // retries
    assert.equal(v('retries_total'), 1);
    // recoveries: none had anything to do (the supervisor replaced the dead workers; timeouts are given up)
    assert.equal(v('recoveries_total', { strategy: 'replace_worker', result: 'ok' }), 0);
    assert.equal(v('recoveries_active'), 0);
    // circuit state per circuit: the command's own opened, pool_operations did not
    assert.equal(v('circuit_state', { circuit: 'worker_commands:sleep', state: 'open' }), 1);
    assert.equal(v('circuit_state', { circuit: 'worker_commands:add', state: 'closed' }), 1);
    assert.equal(v('circuit_state', { circuit: 'pool_operations', state: 'closed' }), 1);
    assert.equal(v('circuit_opened_total', { circuit: 'worker_commands:sleep' }), 1);
    assert.equal(v('circuit_opened_total', { circuit: 'pool_operations' }), 0);
    assert.equal(v('circuit_rejected_total', { circuit: 'worker_commands:sleep' }), 1);
    // worker restarts by reason
    assert.equal(v('worker_restarts_total', { reason: 'crash' }), 2);
    // workers by state, queue
    assert.equal(v('workers', { state: 'ready' }), 2);
    assert.equal(v('workers', { state: 'busy' }), 0);
    assert.equal(v('workers', { state: 'terminated' }), 0);
    assert.equal(v('workers_healthy'), 2);
    assert.equal(v('queue_length'), 0);
    assert.equal(v('queue_max'), 1000);
    assert.equal(v('calls_in_flight'), 0);
    // Python RSS per live worker, and none for the dead ones
    const live = pool.stats().workers;
    for (const w of live) {
      const rss = v('worker_rss_bytes', { worker: String(w.id) });
      assert.ok(rss !== undefined && rss > 5 * 1048576 && rss < 500 * 1048576, `worker ${w.id} rss ${rss}`);
    }
    const rssSeries = [...m.keys()].filter((k) => k.startsWith('pyfleet_worker_rss_bytes{'));
    assert.equal(rssSeries.length, live.length);
    // Node's default metrics are on the same registry only when the server made it; ours was passed in.
    assert.equal([...m.keys()].some((k) => k.startsWith('process_cpu')), false);
    // The registry is the caller's: the same text comes from it directly.
    assert.match(await registry.metrics(), /pyfleet_calls_total\{pool="main",command="add",outcome="ok"\} 5/);
  });

  it('lives on a registry the caller passes, with a prefix; several pools share it by label; detach removes a pool', async () => {
    const a = await createPool({ module: EXAMPLES, workers: 1, logger: quiet });
    const b = await createPool({ module: EXAMPLES, workers: 1, logger: quiet });
    pools.push(a, b);
    const registry = new Registry();
    const m = new PyfleetMetrics({ registry, prefix: 'app_py_' });
    m.attach(a, { name: 'a' });
    const detachB = m.attach(b, { name: 'b' });
    await a.execute('add', { a: 1, b: 1 });
    await b.execute('add', { a: 1, b: 1 });
    await b.execute('add', { a: 1, b: 1 });
    let text = await registry.metrics();
    assert.match(text, /app_py_calls_total\{pool="a",command="add",outcome="ok"\} 1\n/);
    assert.match(text, /app_py_calls_total\{pool="b",command="add",outcome="ok"\} 2\n/);
    assert.match(text, /app_py_workers\{pool="b",state="ready"\} 1\n/);
    detachB();
    await b.execute('add', { a: 1, b: 1 });
    text = await registry.metrics();
    assert.doesNotMatch(text, /pool="b"/);
    assert.match(text, /app_py_calls_total\{pool="a",command="add",outcome="ok"\} 1\n/);
    // poolMetrics: the one-liner, on its own registry by default.
    const single = poolMetrics(a);
    await a.execute('add', { a: 1, b: 1 });
    assert.match(await single.metrics(), new RegExp(`pyfleet_calls_total\\{pool="${a.id}",command="add",outcome="ok"\\} 1\\n`));
    single.detach(a);
    m.detach(a);
  });

  it('/metrics of pyfleet serve passes promtool check metrics; refused calls and HTTP requests are counted', { skip: !existsSync(PROMTOOL) && !process.env.CI ? `no promtool at ${PROMTOOL} (Debian's prometheus package)` : false }, async () => {
    const s = await serve({ pool: { module: EXAMPLES, workers: 1, logger: quiet }, port: 0 });
    served.push(s);
    const call = (command: string, body: string, headers: Record<string, string> = {}) =>
      fetch(`${s.url}/v1/call/${command}`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } }).then((r) => r.status);
    assert.equal(await call('add', '{"a": 1, "b": 2}'), 200);
    assert.equal(await call('fail', '{"message": "x"}'), 500);
    assert.equal(await call('nope', '{}'), 404);
    assert.equal(await call('nope2', '{}'), 404);
    assert.equal(await call('add', '{"a": 1, "b": 2}', { 'x-pyfleet-timeout-ms': 'soon' }), 400);
    assert.equal((await fetch(`${s.url}/no/such/route`)).status, 404);
    // Refused at the call site of the pool itself too (not only over HTTP).
    await assert.rejects(s.pool.execute('missing'), { code: 'PYFLEET_UNKNOWN_COMMAND' });
    assert.throws(() => s.pool.stream('countdown', { n: 1 }, { timeoutMs: -1 }), { code: 'PYFLEET_INVALID_ARGS' });
    const text = await (await fetch(`${s.url}/metrics`)).text();
    const check = spawnSync(PROMTOOL, ['check', 'metrics'], { input: text, encoding: 'utf8' });
    assert.equal(check.status, 0, `promtool check metrics: ${check.stdout}${check.stderr}`);
    assert.equal(`${check.stdout}${check.stderr}`.trim(), '');
    const m = parse(text);
    const pool = String(s.pool.id);
    assert.equal(value(m, 'pyfleet_calls_total', { pool, command: 'add', outcome: 'ok' }), 1);
    assert.equal(value(m, 'pyfleet_calls_total', { pool, command: '(unknown)', outcome: 'refused' }), 3);
    assert.equal(value(m, 'pyfleet_call_failures_total', { pool, command: '(unknown)', code: 'PYFLEET_UNKNOWN_COMMAND' }), 3);
    assert.equal(value(m, 'pyfleet_call_failures_total', { pool, command: 'add', code: 'PYFLEET_INVALID_ARGS' }), 1);
    assert.equal(value(m, 'pyfleet_call_failures_total', { pool, command: 'countdown', code: 'PYFLEET_INVALID_ARGS' }), 1);
    assert.equal(value(m, 'pyfleet_calls_total', { pool, command: 'add', outcome: 'refused' }), 1);
    assert.equal([...m.keys()].some((k) => k.includes('nope')), false, 'an unknown name is no label');
    // The server's own requests, by route pattern and status.
    const http = (route: string, status: string, method = 'POST') => value(m, 'pyfleet_http_requests_total', { method, route, status });
    assert.equal(http('/v1/call/:command', '200'), 1);
    assert.equal(http('/v1/call/:command', '404'), 2);
    assert.equal(http('/v1/call/:command', '400'), 1);
    assert.equal(http('(none)', '404', 'GET'), 1);
    assert.equal(value(m, 'pyfleet_http_request_duration_seconds_count', { method: 'POST', route: '/v1/call/:command' }), 5);
    // Node's default metrics, less the three gauges named _total.
    for (const name of ['process_cpu_user_seconds_total', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes']) assert.ok([...m.keys()].some((k) => k.startsWith(`${name}{`)), name);
    assert.ok([...m.keys()].some((k) => k.startsWith('nodejs_active_handles{')));
    assert.equal([...m.keys()].some((k) => k.startsWith('nodejs_active_handles_total')), false);
  });
});
