/**
 * A fleet on NATS: a real nats-server, real `pyfleet host` processes with real Python workers,
 * and connectFleet clients. Faults (SIGKILL, SIGSTOP, server restart) are in fleet-faults.test.ts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connectFleet, type Fleet } from '../src/fleet/index.js';
import { PoolError } from '../src/errors/pool-error.js';
import type { Adapter } from '../src/adapters/adapter.js';
import { createPool } from '../src/pool/pool.js';
import { FAULTS, FIXTURES, quiet } from './helpers/pool.js';
import { FLEET_FIXTURE_V2, killAllHosts, nextEvent, orphansOf, startHostProc, type HostProc } from './helpers/fleet.js';
import { freePort, startNats, type NatsServer } from './helpers/nats.js';

async function rejection(p: Promise<unknown>): Promise<PoolError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof PoolError, `a PoolError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected a rejection');
}

describe('connecting', () => {
  it('rejects within its start-up timeout when no server is there, naming the address', async () => {
    const port = await freePort();
    const t0 = performance.now();
    const e = await rejection(connectFleet({ servers: `nats://127.0.0.1:${port}`, fleet: 'f', startupTimeoutMs: 1_000 }));
    const ms = performance.now() - t0;
    assert.equal(e.code, 'PYFLEET_NATS_UNAVAILABLE');
    assert.equal(e.category, 'connection_error');
    assert.match(e.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
    assert.ok(ms < 2_000, `rejected after ${Math.round(ms)} ms`);
  });

  it('validates its options at once', async () => {
    await assert.rejects(connectFleet({ servers: 'nats://127.0.0.1:1', fleet: 'bad name' }), /fleet must be/);
    await assert.rejects(connectFleet({ servers: [], fleet: 'f' }), /at least one NATS server/);
  });

  for (const kind of ['token', 'user/password'] as const) {
    it(`passes a ${kind} through connectFleet and pyfleet host; a wrong one is a clear error at once`, async () => {
      const auth = kind === 'token' ? { token: 's3cret' } : { user: 'svc', pass: 'pw' };
      const srv = await startNats(auth);
      try {
        const good = kind === 'token' ? { token: 's3cret' } : { user: 'svc', pass: 'pw' };
        const bad = kind === 'token' ? { token: 'wrong' } : { user: 'svc', pass: 'wrong' };
        const t0 = performance.now();
        const e = await rejection(connectFleet({ servers: srv.url, fleet: 'auth', ...bad, startupTimeoutMs: 5_000 }));
        assert.equal(e.code, 'PYFLEET_NATS_AUTH_FAILED');
        assert.ok(performance.now() - t0 < 1_500, 'not retried until the timeout');
        assert.match(e.message, /refused/);
        const noCred = await rejection(connectFleet({ servers: srv.url, fleet: 'auth', startupTimeoutMs: 2_000 }));
        assert.equal(noCred.code, 'PYFLEET_NATS_AUTH_FAILED');

        const hostArgs = kind === 'token' ? ['--token', 's3cret'] : ['--user', 'svc', '--password', 'pw'];
        const badArgs = kind === 'token' ? ['--token', 'wrong'] : ['--user', 'svc', '--password', 'wrong'];
        const failed = await startHostProc(srv.url, 'auth', { args: badArgs }).then(
          () => assert.fail('a host with a wrong credential must not start'),
          (err: Error & { stderr?: string }) => err,
        );
        assert.match(failed.stderr ?? '', /PYFLEET_NATS_AUTH_FAILED/);
        const host = await startHostProc(srv.url, 'auth', { args: hostArgs });
        const fleet = await connectFleet({ servers: srv.url, fleet: 'auth', ...good });
        assert.equal(await fleet.execute('add', { a: 2, b: 3 }), 5);
        await fleet.close();
        host.kill('SIGTERM');
        await host.exited;
      } finally {
        await killAllHosts();
        await srv.dispose();
      }
    });
  }
});

describe('a fleet of two hosts', () => {
  let srv: NatsServer;
  let hosts: HostProc[];
  let fleet: Fleet;
  const pids: number[] = [];

  before(async () => {
    srv = await startNats();
    hosts = await Promise.all([startHostProc(srv.url, 'two', { workers: 2 }), startHostProc(srv.url, 'two', { workers: 2 })]);
    pids.push(...hosts.map((h) => h.pid));
    fleet = await connectFleet({ servers: srv.url, fleet: 'two', requestTimeoutMs: 10_000 });
    await fleet.ready({ hosts: 2, timeoutMs: 10_000 });
  });
  after(async () => {
    await fleet?.close();
    for (const h of hosts ?? []) h.kill('SIGTERM');
    await Promise.all((hosts ?? []).map((h) => h.exited));
    await killAllHosts();
    assert.deepEqual(await orphansOf(pids), [], 'no host or worker process outlives the suite');
    await srv?.dispose();
  });

  it('answers calls, spreads them over the least loaded hosts, and says which host answered', async () => {
    assert.equal(await fleet.execute('add', { a: 1, b: 2 }), 3);
    const rs = await Promise.all(Array.from({ length: 16 }, (_, i) => fleet.execute('sleep', { ms: 50, tag: i }, { detailed: true })));
    const byHost = new Map<string, number>();
    for (const r of rs) byHost.set(r.hostId, (byHost.get(r.hostId) ?? 0) + 1);
    assert.equal(byHost.size, 2, 'both hosts took calls');
    for (const n of byHost.values()) assert.ok(n >= 4, `balanced enough: ${[...byHost.values()].join('/')}`);
    assert.deepEqual(
      rs.map((r) => (r.value as { tag: number }).tag),
      rs.map((_, i) => i),
    );
  });

  it('stats() lists every host with its pool stats, load, commands and circuit', async () => {
    const s = fleet.stats();
    assert.equal(s.connected, true);
    assert.equal(s.hosts.length, 2);
    for (const h of s.hosts) {
      assert.equal(h.state, 'alive');
      assert.ok(h.commands.includes('add'));
      assert.equal(h.pool.workers.length, 2);
      assert.ok(hosts.some((p) => p.pid === h.pid));
      assert.equal(h.circuit.state, 'closed');
    }
    assert.ok(s.calls.succeeded >= 17);
  });

  it('gives the same PoolErrors as a pool: unknown command, Python exception with traceback, bad input at the call site', async () => {
    const unknown = await rejection(fleet.execute('nope'));
    assert.equal(unknown.code, 'PYFLEET_UNKNOWN_COMMAND');
    assert.match(unknown.message, /add/);
    const py = await rejection(fleet.execute('add', { a: 1 }));
    assert.equal(py.category, 'python_error');
    assert.equal(py.python?.type, 'KeyError');
    assert.match(py.python?.traceback ?? '', /handlers\.py/);
    assert.ok(typeof py.details?.hostId === 'string');
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    assert.equal((await rejection(fleet.execute('add', circular))).code, 'PYFLEET_INVALID_ARGS');
    assert.equal((await rejection(fleet.execute('add', {}, { timeoutMs: -1 }))).code, 'PYFLEET_INVALID_ARGS');
  });

  it('refuses arguments over the server max_payload at the call site (not chunked), and a result over it on the host', async () => {
    const e = await rejection(fleet.execute('size', { s: 'y'.repeat(2 * 1024 * 1024) }));
    assert.equal(e.code, 'PYFLEET_FRAME_TOO_LARGE');
    assert.equal(e.taken, false);
    assert.match(e.message, /max_payload is 1048576/);
    assert.equal(await fleet.execute('size', { s: 'y'.repeat(900 * 1024) }), 900 * 1024);
    const r = await rejection(fleet.execute('big', { n: 2 * 1024 * 1024 }));
    assert.equal(r.code, 'PYFLEET_FRAME_TOO_LARGE');
    assert.equal(r.taken, true);
    assert.match(r.message, /cannot be sent back/);
  });

  it('streams an ordinary command across hosts as its single value', async () => {
    const got: unknown[] = [];
    for await (const x of fleet.stream('add', { a: 20, b: 22 })) got.push(x);
    assert.deepEqual(got, [42]);
  });

  it('is an Adapter: a pool fails a Python error over to the fleet', async () => {
    const host = await startHostProc(srv.url, 'fb', { module: `${FIXTURES}fallback.py` });
    pids.push(host.pid);
    const fb = await connectFleet({ servers: srv.url, fleet: 'fb' });
    try {
      const adapter: Adapter = fb;
      const pool = await createPool({ module: FAULTS, workers: 1, logger: quiet, fallback: adapter });
      try {
        const r = await pool.execute<{ from: string }>('boom', {}, { detailed: true });
        assert.equal(r.via, 'fallback');
        assert.equal(r.value.from, 'fallback');
      } finally {
        await pool.close();
      }
    } finally {
      await fb.close();
      host.kill('SIGTERM');
      await host.exited;
    }
  });

  it('routes a command only to hosts whose module has it (another module version on one host)', async () => {
    const v2 = await startHostProc(srv.url, 'two', { module: FLEET_FIXTURE_V2 });
    pids.push(v2.pid);
    try {
      await fleet.ready({ hosts: 1, command: 'newcmd', timeoutMs: 10_000 });
      const rs = await Promise.all(Array.from({ length: 12 }, () => fleet.execute('newcmd', {}, { detailed: true })));
      assert.ok(rs.every((r) => r.hostId === v2.id && r.value === 'v2'));
      const versions = new Set(fleet.stats().hosts.map((h) => h.moduleVersion));
      assert.equal(versions.size, 2);
      // `sleep` exists only in version 1: never sent to the v2 host.
      const slept = await Promise.all(Array.from({ length: 12 }, () => fleet.execute('sleep', { ms: 5 }, { detailed: true })));
      assert.ok(slept.every((r) => r.hostId !== v2.id));
    } finally {
      v2.kill('SIGTERM');
      await v2.exited;
    }
  });

  it('two client replicas using one session: its calls run one at a time, each replica in its order, on one host', async () => {
    const other = await connectFleet({ servers: srv.url, fleet: 'two' });
    try {
      await other.ready({ hosts: 2 });
      const sid = `shared-${Date.now()}`;
      const calls: Array<Promise<{ value: number[]; hostId: string }>> = [];
      for (let i = 0; i < 6; i++) {
        calls.push(fleet.execute<number[]>('append', { x: 100 + i, ms: 15 }, { sessionId: sid, detailed: true }));
        calls.push(other.execute<number[]>('append', { x: 200 + i, ms: 15 }, { sessionId: sid, detailed: true }));
      }
      const rs = await Promise.all(calls);
      assert.equal(new Set(rs.map((r) => r.hostId)).size, 1, 'one host holds the session');
      const final = await fleet.session(sid).execute<number[]>('items');
      assert.equal(final.length, 12, `no update lost (calls never overlapped): ${final.join(',')}`);
      const a = final.filter((x) => x < 200);
      const b = final.filter((x) => x >= 200);
      assert.deepEqual(a, [100, 101, 102, 103, 104, 105]);
      assert.deepEqual(b, [200, 201, 202, 203, 204, 205]);
      const place = await other.sessionPlace(sid);
      assert.equal(place?.host, rs[0].hostId);
      await other.session(sid).close();
      assert.equal(await fleet.sessionPlace(sid), null);
      assert.deepEqual(await fleet.session(sid).execute('items'), [], 'a closed session starts empty');
      await fleet.closeSession(sid);
    } finally {
      await other.close();
    }
  });

  it('SIGTERM drains a host: calls in flight finish, new calls go elsewhere, it announces leaving and exits 0', async () => {
    const extra = await startHostProc(srv.url, 'two', { workers: 2 });
    pids.push(extra.pid);
    await fleet.ready({ hosts: 3 });
    const left = nextEvent(fleet, 'host:left', (p) => p.hostId === extra.id);
    // Enough calls that the least-loaded pick gives the new host some.
    const inflight = Array.from({ length: 9 }, (_, i) => fleet.execute('sleep', { ms: 700, tag: i }, { detailed: true }));
    // Wait until the host reports (in its heartbeat) that it took calls: SIGTERM before that
    // would rightly have them refused as not taken and sent elsewhere.
    const deadline = performance.now() + 5_000;
    while ((fleet.stats().hosts.find((h) => h.id === extra.id)?.load.inFlight ?? 0) === 0) {
      assert.ok(performance.now() < deadline, 'the new host took some of the calls');
      await new Promise((r) => setTimeout(r, 10));
    }
    extra.kill('SIGTERM');
    const during = await Promise.all(Array.from({ length: 6 }, () => fleet.execute('add', { a: 1, b: 1 }, { detailed: true })));
    const rs = await Promise.all(inflight);
    assert.ok(rs.some((r) => r.hostId === extra.id), 'calls it held were answered by it');
    assert.ok(during.every((r) => r.value === 2));
    const ev = await left;
    assert.equal(ev.reason, 'SIGTERM');
    assert.deepEqual(await extra.exited, { code: 0, signal: null });
    assert.match(extra.stdout(), /left the fleet/);
    assert.deepEqual(await orphansOf([extra.pid]), []);
  });
});
