/**
 * Metrics of the workloads beyond the seed, against real pools: calls in flight per worker,
 * streams (open, and how they ended), durable sessions (snapshots, restores, the sessions
 * gauges), stream items and binary bytes, scraped over HTTP.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { MemorySessionStore, fileSessionStore, type SessionStore } from '../src/index.js';
import { createPool, type Pool } from '../src/pool/pool.js';
import { createServer, type PyfleetServer } from '../src/server/app.js';
import type { EventPayloads } from '../src/telemetry/channels.js';
import { PyfleetMetrics } from '../src/telemetry/metrics.js';
import { FIXTURES, alive, quiet, rejection, until } from './helpers/pool.js';

const WORKLOADS = path.join(FIXTURES, 'workloads.py');
const SESSIONS = path.join(FIXTURES, 'sessions.py');

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

function reader(m: Map<string, number>, pool: string) {
  return (name: string, labels: Record<string, string> = {}): number | undefined =>
    m.get(`pyfleet_${name}{${Object.entries({ pool, ...labels }).map(([k, v]) => `${k}=${v}`).sort().join(',')}}`);
}

const pools: Pool[] = [];
const servers: PyfleetServer[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
  const pids = pools.flatMap((p) => p.pids());
  await Promise.all(pools.map((p) => p.close()));
  await until(() => pids.every((pid) => !alive(pid)));
});

async function served(options: Parameters<typeof createPool>[0]): Promise<{ pool: Pool; scrape: () => Promise<ReturnType<typeof reader>> }> {
  const pool = await createPool({ logger: quiet, ...options });
  pools.push(pool);
  const metrics = new PyfleetMetrics({ registry: new Registry() });
  metrics.attach(pool, { name: 'w' });
  const server = await createServer({ pool, metrics });
  servers.push(server);
  const url = await server.listen({ port: 0 });
  return { pool, scrape: async () => reader(parse(await (await fetch(`${url}/metrics`)).text()), 'w') };
}

async function drain(it: AsyncIterable<unknown>): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe('metrics: concurrency, streams, sessions', () => {
  it('calls in flight per worker, against the capacity concurrency gives', async () => {
    const { pool, scrape } = await served({ module: WORKLOADS, workers: 2, concurrency: 4 });
    const calls = [1, 2, 3].map(() => pool.execute('asleep', { ms: 400 }));
    await until(() => pool.stats().workers.reduce((n, w) => n + w.inflight, 0) === 3);
    const v = await scrape();
    const byWorker = pool.stats().workers.map((w) => v('worker_inflight', { worker: String(w.id) }));
    assert.deepEqual(byWorker.sort(), pool.stats().workers.map((w) => w.inflight).sort());
    assert.equal(byWorker.reduce((a, b) => a! + b!, 0), 3);
    assert.equal(v('worker_capacity'), 4);
    await Promise.all(calls);
    const idle = await scrape();
    for (const w of pool.stats().workers) assert.equal(idle('worker_inflight', { worker: String(w.id) }), 0);
  });

  it('streams: open while iterated, then counted by how they ended (ok, error, broken)', async () => {
    const { pool, scrape } = await served({ module: WORKLOADS, workers: 2 });
    const it = pool.stream<number>('gen_slow', { ms: 300 });
    assert.equal((await it.next()).value, 0);
    assert.equal((await scrape())('streams_open'), 1);
    assert.deepEqual(await drain(it), [1]);
    assert.deepEqual(await drain(pool.stream('gen', { n: 3 })), [0, 1, 2]);
    // Stopped by its consumer: an ok end, not a failure.
    for await (const x of pool.stream('gen', { n: 100 })) if (x === 1) break;
    assert.equal((await rejection(drain(pool.stream('gen_fail', {})))).code, 'PYFLEET_PYTHON_ERROR');
    assert.equal((await rejection(drain(pool.stream('gen_die', {})))).code, 'PYFLEET_STREAM_BROKEN');
    await pool.execute('add', { a: 1, b: 1 });
    await until(() => pool.stats().calls.inFlight === 0);
    const v = await scrape();
    assert.equal(v('streams_open'), 0);
    assert.equal(v('streams_total', { command: 'gen_slow', outcome: 'ok' }), 1);
    assert.equal(v('streams_total', { command: 'gen', outcome: 'ok' }), 2);
    assert.equal(v('streams_total', { command: 'gen_fail', outcome: 'error' }), 1);
    assert.equal(v('streams_total', { command: 'gen_die', outcome: 'broken' }), 1);
    assert.equal(v('streams_total', { command: 'add', outcome: 'ok' }), undefined, 'an ordinary call is no stream');
  });

  it('stream items are counted; pool.stream() on an ordinary command is a stream of one item, execute none', async () => {
    const { pool, scrape } = await served({ module: WORKLOADS, workers: 1 });
    await drain(pool.stream('gen', { n: 3 }));
    await drain(pool.stream('add', { a: 1, b: 2 }));
    await pool.execute('add', { a: 1, b: 2 });
    const v = await scrape();
    assert.equal(v('stream_items_total', { command: 'gen' }), 3);
    assert.equal(v('stream_items_total', { command: 'add' }), 1);
    assert.equal(v('streams_total', { command: 'add', outcome: 'ok' }), 1);
  });

  it('binary bytes are counted both ways, in stats().binary and the metrics', async () => {
    const { pool, scrape } = await served({ module: WORKLOADS, workers: 1 });
    await pool.execute('echo', { b: Buffer.alloc(1000) });
    assert.deepEqual(pool.stats().binary, { toPython: 1000, fromPython: 1000 });
    const v = await scrape();
    assert.equal(v('binary_bytes_total', { direction: 'to_python' }), 1000);
    assert.equal(v('binary_bytes_total', { direction: 'from_python' }), 1000);
  });

  it('durable sessions: snapshots with their sizes, a restore after the worker died, the gauges, a store that fails', async () => {
    const { pool, scrape } = await served({ module: SESSIONS, workers: 2 });
    const s = pool.session('m1');
    const pid = await s.execute<number>('put', { k: 'a', v: 'x'.repeat(5_000) });
    await s.execute('put', { k: 'b', v: 1 });
    let v = await scrape();
    assert.equal(v('session_snapshots_total', { outcome: 'ok' }), 2);
    assert.equal(v('session_snapshot_bytes_count'), 2);
    assert.equal(v('session_snapshot_bytes_bucket', { le: '256' }), 1, 'the second call stored only its small key');
    assert.equal(v('session_snapshot_bytes_bucket', { le: '4096' }), 1, 'the first one holds the 5 000 characters');
    assert.equal(v('session_snapshot_bytes_bucket', { le: '16384' }), 2);
    assert.ok(v('session_snapshot_seconds_count')! === 2);
    assert.equal(v('sessions', { state: 'total' }), 1);
    assert.equal(v('sessions', { state: 'bound' }), 1);
    assert.equal(v('sessions', { state: 'durable' }), 1);
    process.kill(pid, 'SIGKILL');
    await until(() => !pool.pids().includes(pid));
    assert.equal((await scrape())('sessions', { state: 'bound' }), 0, 'its worker is gone; the state is in the store');
    assert.equal(await s.execute('get', { k: 'b' }), 1);
    v = await scrape();
    assert.equal(v('session_restores_total', { outcome: 'ok' }), 1);
    assert.equal(v('session_restore_seconds_count', { outcome: 'ok' }), 1);
    assert.equal(v('sessions', { state: 'bound' }), 1);
    assert.equal(pool.stats().sessions.restored, 1);
    // Not durable: said once.
    await s.execute('put_lock', {});
    await s.execute('put', { k: 'c', v: 2 });
    assert.equal((await scrape())('sessions_not_durable_total'), 1);

    const failing: SessionStore = Object.assign(new MemorySessionStore(), {
      set: async () => {
        throw new Error('disk full');
      },
    });
    const other = await served({ module: SESSIONS, workers: 1, sessionStore: failing, sessionKey: 'k'.repeat(32) });
    await other.pool.session('f').execute('put', { k: 'a', v: 1 });
    const w = await other.scrape();
    assert.equal(w('session_snapshots_total', { outcome: 'error' }), 1);
    assert.equal(w('session_snapshots_total', { outcome: 'ok' }), 0);
  });

  it('a snapshot the pool refuses before any worker sees it is published as a failed restore', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pyfleet-refused-'));
    const writer = await createPool({ module: SESSIONS, workers: 1, logger: quiet, sessionStore: fileSessionStore(dir), sessionKey: 'one key' });
    await writer.session('r').execute('put', { k: 'a', v: 1 });
    await writer.close();
    const { pool, scrape } = await served({ module: SESSIONS, workers: 1, sessionStore: fileSessionStore(dir), sessionKey: 'another key' });
    const seen: Array<EventPayloads['session:restore']> = [];
    const off = pool.on('session:restore', (e) => seen.push(e));
    assert.equal((await rejection(pool.session('r').execute('get', { k: 'a' }))).code, 'PYFLEET_SESSION_REFUSED');
    off();
    assert.equal(seen.length, 1);
    assert.equal(seen[0].ok, false);
    assert.equal((await scrape())('session_restores_total', { outcome: 'error' }), 1);
  });
});

