/**
 * Streams across hosts, end to end: a real nats-server, real `pyfleet host` processes, Python
 * generators in their workers, and a connectFleet client. Faults are real SIGKILLs.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connectFleet, type Fleet } from '../src/fleet/index.js';
import { PoolError } from '../src/errors/pool-error.js';
import { killAllHosts, linesOf, nextEvent, orphansOf, startHostProc, type HostProc } from './helpers/fleet.js';
import { startNats, type NatsServer } from './helpers/nats.js';

const dir = mkdtempSync(path.join(tmpdir(), 'pyfleet-fleet-stream-'));
let n = 0;
const file = (name: string): string => path.join(dir, `${name}-${++n}.txt`);

type Item = { i: number; host: number };

/** Hosts still running (an earlier test may have killed one of the suite's own). */
const running = (hs: HostProc[]): number => hs.filter((h) => h.child.exitCode === null && h.child.signalCode === null).length;

async function failure(it: AsyncIterator<unknown>, got: unknown[]): Promise<PoolError> {
  try {
    for (;;) {
      const r = await it.next();
      if (r.done === true) break;
      got.push(r.value);
    }
  } catch (e) {
    assert.ok(e instanceof PoolError, `a PoolError, got ${String(e)}`);
    return e;
  }
  assert.fail(`the stream ended without an error after ${got.length} items`);
}

describe('streams across hosts', () => {
  let srv: NatsServer;
  let hosts: HostProc[];
  let fleet: Fleet;
  const pids: number[] = [];
  const start = async (): Promise<HostProc> => {
    const h = await startHostProc(srv.url, 'streams', { workers: 2 });
    pids.push(h.pid);
    return h;
  };

  before(async () => {
    srv = await startNats();
    hosts = await Promise.all([start(), start()]);
    fleet = await connectFleet({ servers: srv.url, fleet: 'streams', requestTimeoutMs: 10_000 });
    await fleet.ready({ hosts: 2, timeoutMs: 10_000 });
  });
  after(async () => {
    await fleet?.close();
    for (const h of hosts ?? []) h.kill('SIGTERM');
    await killAllHosts();
    assert.deepEqual(await orphansOf(pids), [], 'no host or worker process outlives the suite');
    await srv?.dispose();
  });

  it("a generator's items arrive in order, and a slow consumer holds it back across NATS (credit)", async () => {
    const progress = file('progress');
    const hwm = 4;
    const it = fleet.stream<Item>('count', { n: 1_000, progress }, { highWaterMark: hwm });
    assert.equal((await it.next()).value?.i, 0);
    // What is tested is that nothing happens while the consumer waits: the generator stops at the credit chain.
    await new Promise((r) => setTimeout(r, 400));
    const produced = Number(readFileSync(progress, 'utf8'));
    // Credit: hwm at the client, one item held by the host, hwm in the host pool's buffer, one being made.
    assert.ok(produced <= 2 * hwm + 3, `the generator ran ${produced} items ahead of a consumer that took 1 (highWaterMark ${hwm})`);
    const rest: number[] = [];
    for await (const x of it) rest.push(x.i);
    assert.deepEqual(rest, Array.from({ length: 999 }, (_, i) => i + 1));
    assert.equal(Number(readFileSync(progress, 'utf8')), 1_000);
  });

  it('break in the for-await closes the generator in Python: its finally runs', async () => {
    const closed = file('closed');
    const progress = file('progress');
    const got: number[] = [];
    for await (const x of fleet.stream<Item>('count', { n: 1_000_000, closed, progress }, { highWaterMark: 8 })) {
      got.push(x.i);
      if (got.length === 3) break;
    }
    assert.deepEqual(got, [0, 1, 2]);
    assert.deepEqual(await linesOf(closed, 1), ['closed']);
    assert.ok(Number(readFileSync(progress, 'utf8')) < 40, 'stopped near the break, not run to the end');
  });

  it('an exception mid-stream ends the iteration with its PoolError and traceback, after the items before it', async () => {
    const got: unknown[] = [];
    const e = await failure(fleet.stream('gen_fail', {}), got);
    assert.deepEqual(got, [1, 2]);
    assert.equal(e.category, 'python_error');
    assert.equal(e.python?.type, 'ValueError');
    assert.match(e.python?.message ?? '', /broke after two/);
    assert.match(e.python?.traceback ?? '', /handlers\.py/);
    assert.ok(typeof e.details?.hostId === 'string');
    // The hosts keep serving.
    assert.equal(await fleet.execute('add', { a: 1, b: 1 }), 2);
  });

  it('streams in a session follow the client\'s per-session order, and hold the session until they end', async () => {
    const s = fleet.session(`stream-order-${Date.now()}`);
    // Made in this order without waiting: the append (slow) must run before the stream, which
    // must end before the next append; a stream sent ahead would see no items.
    const first = s.execute<number[]>('append', { x: 1, ms: 200 });
    const items: unknown[] = [];
    const streamed = (async () => {
      for await (const x of s.stream('session_items', { then: 2 })) items.push(x);
    })();
    const last = s.execute<number[]>('append', { x: 3 });
    assert.deepEqual(await first, [1]);
    await streamed;
    assert.deepEqual(items, [1]);
    assert.deepEqual(await last, [1, 2, 3]);
    await s.close();
  });

  it('a host SIGKILLed after the first item: PYFLEET_STREAM_BROKEN saying how many items arrived, never re-sent', async () => {
    const [a, b] = await Promise.all([start(), start()]);
    const f = await connectFleet({ servers: srv.url, fleet: 'streams', requestTimeoutMs: 10_000 });
    try {
      await f.ready({ hosts: running([a, b, ...hosts]) });
      const starts = file('starts');
      const it = f.stream<Item>('ticks', { n: 50, ms: 300, starts }, { highWaterMark: 2 });
      const first = await it.next();
      assert.equal(first.value?.i, 0);
      const victim = [a, b, ...hosts].find((h) => h.pid === first.value!.host)!;
      victim.kill('SIGKILL');
      const got: unknown[] = [];
      const e = await failure(it, got);
      assert.equal(e.code, 'PYFLEET_STREAM_BROKEN');
      assert.equal(e.category, 'connection_error');
      assert.equal(e.taken, true);
      assert.match(e.message, /broke after 1 item\b/);
      assert.equal(e.details?.items, 1, 'details.items, as a pool says it');
      assert.deepEqual(await linesOf(starts, 1), [String(victim.pid)], 'started once, on the killed host');
      assert.equal((await victim.exited).signal, 'SIGKILL');
      assert.deepEqual(await orphansOf([victim.pid]), []);
      assert.deepEqual(readFileSync(starts, 'utf8').trim().split('\n'), [String(victim.pid)], 'not re-sent after the failure either');
    } finally {
      await f.close();
      for (const h of [a, b]) h.kill('SIGTERM');
      await Promise.all([a.exited, b.exited]);
    }
  });

  it('a stream whose signal fires before iteration starts is not sent, and counts as one failed call', async () => {
    const f = await connectFleet({ servers: srv.url, fleet: 'streams', requestTimeoutMs: 10_000 });
    try {
      await f.ready({ hosts: 1 });
      const ac = new AbortController();
      const progress = file('aborted');
      const it = f.stream<Item>('count', { n: 3, progress }, { signal: ac.signal });
      ac.abort(new Error('caller left'));
      const e = await failure(it, []);
      assert.equal(e.code, 'PYFLEET_ABORTED');
      assert.equal(e.taken, false);
      await new Promise((r) => setTimeout(r, 300));
      assert.throws(() => readFileSync(progress), /ENOENT/, 'the generator never ran');
      const calls = f.stats().calls;
      assert.deepEqual([calls.total, calls.failed, calls.inFlight], [1, 1, 0]);
      assert.equal(f.stats().errorsByCategory.system_error, 1);
    } finally {
      await f.close();
    }
  });

  it('a host SIGKILLed before the first item: the idempotent stream is re-sent to another host and completes', async () => {
    const [a, b] = await Promise.all([start(), start()]);
    const f = await connectFleet({ servers: srv.url, fleet: 'streams', requestTimeoutMs: 10_000 });
    try {
      await f.ready({ hosts: running([a, b, ...hosts]) });
      const starts = file('starts');
      const items: Item[] = [];
      const done = (async () => {
        for await (const x of f.stream<Item>('ticks', { n: 5, first_ms: 1_500, starts })) items.push(x);
      })();
      const [firstHost] = await linesOf(starts, 1);
      const victim = [a, b, ...hosts].find((h) => h.pid === Number(firstHost))!;
      const dead = nextEvent(f, 'host:dead', (p) => p.hostId === victim.id);
      const killedAt = performance.now();
      victim.kill('SIGKILL');
      await dead;
      await done;
      assert.deepEqual(
        items.map((x) => x.i),
        [0, 1, 2, 3, 4],
      );
      const lines = readFileSync(starts, 'utf8').trim().split('\n');
      assert.equal(lines.length, 2, 'started twice: on the killed host, then on another');
      assert.notEqual(lines[1], firstHost);
      assert.ok(items.every((x) => x.host === Number(lines[1])));
      assert.ok(performance.now() - killedAt < 1_500 + 2_000, 'answered within the generator\'s own wait plus 2 s');
      const calls = f.stats().calls;
      assert.deepEqual([calls.total, calls.succeeded, calls.failed, calls.inFlight, calls.retries], [1, 1, 0, 0, 1], 'the stream counts as one call, re-sent once');
    } finally {
      await f.close();
      for (const h of [a, b]) h.kill('SIGTERM');
      await Promise.all([a.exited, b.exited]);
    }
  });
});
