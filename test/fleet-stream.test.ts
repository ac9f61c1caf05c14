/**
 * Streams across hosts: the transport and its credit-based flow control, against a real
 * nats-server. The host runs in this process with an async generator standing in for
 * `pool.stream` (which the pool does not have yet); everything else is the real host and client.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connectFleet, startHost, type Fleet, type FleetHost } from '../src/fleet/index.js';
import { PoolError } from '../src/errors/pool-error.js';
import { quiet } from './helpers/pool.js';
import { FLEET_FIXTURE } from './helpers/fleet.js';
import { startNats, type NatsServer } from './helpers/nats.js';

const produced = new Map<string, number>();
const finished = new Map<string, () => void>();
const finishedP = new Map<string, Promise<void>>();

/** Yields args.n numbers, counting what it produced and noting when its finally ran. */
async function* source(_command: string, args: unknown): AsyncGenerator<unknown> {
  const { n, key, failAt } = args as { n: number; key: string; failAt?: number };
  produced.set(key, 0);
  try {
    for (let i = 0; i < n; i++) {
      if (failAt === i) throw new PoolError({ code: 'PYFLEET_PYTHON_ERROR', message: `failed at ${i}`, taken: true });
      produced.set(key, i + 1);
      yield i;
      await new Promise((r) => setImmediate(r));
    }
  } finally {
    finished.get(key)?.();
  }
}

function watchFinish(key: string): Promise<void> {
  const p = new Promise<void>((r) => finished.set(key, r));
  finishedP.set(key, p);
  return p;
}

describe('streams across hosts (transport and flow control)', () => {
  let srv: NatsServer;
  let host: FleetHost;
  let fleet: Fleet;

  before(async () => {
    srv = await startNats();
    host = await startHost({ servers: srv.url, fleet: 'streams', pool: { module: FLEET_FIXTURE, workers: 1, logger: quiet }, logger: quiet, heartbeatMs: 100, streamSource: source });
    fleet = await connectFleet({ servers: srv.url, fleet: 'streams' });
    await fleet.ready();
  });
  after(async () => {
    await fleet?.close();
    await host?.close();
    await srv?.dispose();
  });

  it('delivers every item in order, then ends', async () => {
    const got: unknown[] = [];
    for await (const x of fleet.stream('add', { n: 50, key: 'all' })) got.push(x);
    assert.deepEqual(got, Array.from({ length: 50 }, (_, i) => i));
  });

  it('never lets the host run more than highWaterMark items ahead of a slow consumer', async () => {
    const it = fleet.stream('add', { n: 100, key: 'slow' }, { highWaterMark: 4 });
    assert.deepEqual(await it.next(), { value: 0, done: false });
    // Give the host every chance to run ahead: it must stop at the credit it was granted.
    for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 5));
    assert.ok(produced.get('slow')! <= 4 + 1, `produced ${produced.get('slow')} with highWaterMark 4`);
    const rest: unknown[] = [];
    for await (const x of it) rest.push(x);
    assert.equal(rest.length, 99);
  });

  it('break in the for-await cancels the source on the host (its finally runs)', async () => {
    const done = watchFinish('brk');
    const got: unknown[] = [];
    for await (const x of fleet.stream('add', { n: 1_000_000, key: 'brk' }, { highWaterMark: 8 })) {
      got.push(x);
      if (got.length === 3) break;
    }
    await done;
    assert.ok(produced.get('brk')! < 20, `stopped after ${produced.get('brk')}`);
  });

  it('an error in the source ends the iteration with its PoolError', async () => {
    const got: unknown[] = [];
    await assert.rejects(
      (async () => {
        for await (const x of fleet.stream('add', { n: 10, key: 'err', failAt: 3 })) got.push(x);
      })(),
      (e: unknown) => e instanceof PoolError && e.category === 'python_error' && /failed at 3/.test(e.message),
    );
    assert.deepEqual(got, [0, 1, 2]);
  });

  it('validates options at the call site and sends nothing until iteration starts', () => {
    assert.throws(() => fleet.stream('add', {}, { highWaterMark: 0 }), /highWaterMark/);
    assert.throws(() => fleet.stream('add', {}, { chunkTimeoutMs: -5 }), /chunkTimeoutMs/);
    const before = produced.size;
    fleet.stream('add', { n: 1, key: 'never' });
    assert.equal(produced.size, before);
  });

  it('a host that dies after the first item fails the stream with PYFLEET_STREAM_BROKEN, saying how many chunks arrived', async () => {
    const other = await startHost({ servers: srv.url, fleet: 'streams2', pool: { module: FLEET_FIXTURE, workers: 1, logger: quiet }, logger: quiet, heartbeatMs: 100, streamSource: source });
    const f2 = await connectFleet({ servers: srv.url, fleet: 'streams2' });
    try {
      await f2.ready();
      const it = f2.stream('add', { n: 1_000_000, key: 'die' }, { highWaterMark: 2 });
      assert.deepEqual(await it.next(), { value: 0, done: false });
      assert.deepEqual(await it.next(), { value: 1, done: false });
      // The host's connection goes away without a goodbye, as when its process is killed.
      await other.nc.close();
      const err = await (async () => {
        for (;;) await it.next();
      })().catch((e: unknown) => e);
      assert.ok(err instanceof PoolError);
      assert.equal(err.code, 'PYFLEET_STREAM_BROKEN');
      assert.equal(err.category, 'connection_error');
      assert.match(err.message, /broke after \d+ chunks/);
    } finally {
      await f2.close();
      await other.pool.close();
    }
  });
});
