import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { NDArray, createPool, type Pool, type PoolOptions } from '../src/index.js';
import { FIXTURES, lines, memoryLogger, rejection, tempFile, until } from './helpers/pool.js';

const WORKLOADS = path.join(FIXTURES, 'workloads.py');

async function pool(options: Partial<PoolOptions> = {}): Promise<Pool> {
  return createPool({ module: WORKLOADS, workers: 1, logger: memoryLogger(), ...options });
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe('concurrency inside a worker', () => {
  it('200 async calls share one worker at once, each a real asyncio Task on the worker\'s loop', async () => {
    const p = await pool({ concurrency: 200 });
    try {
      const t0 = performance.now();
      const rs = await Promise.all(Array.from({ length: 200 }, () => p.execute<{ task: boolean; same_loop: boolean; mine: boolean; pid: number }>('asleep', { ms: 50 })));
      const ms = performance.now() - t0;
      assert.ok(ms < 1_500, `200 calls of 50 ms took ${Math.round(ms)} ms on one worker`);
      assert.ok(rs.every((r) => r.task && r.same_loop && r.mine), 'current_task, the on_start loop, contextvars per task');
      assert.equal(new Set(rs.map((r) => r.pid)).size, 1);
    } finally {
      await p.close();
    }
  });

  it('threaded commands run on threads of the worker, several at once', async () => {
    const p = await pool({ concurrency: 4 });
    try {
      const t0 = performance.now();
      const rs = await Promise.all(Array.from({ length: 4 }, () => p.execute<boolean>('tsleep', { ms: 200 })));
      assert.ok(rs.every((x) => x === true), 'not on the main thread');
      assert.ok(performance.now() - t0 < 700, 'four 200 ms calls ran at once');
    } finally {
      await p.close();
    }
  });

  it('max_concurrency caps one command per worker', async () => {
    const p = await pool({ concurrency: 8 });
    try {
      const rs = await Promise.all(Array.from({ length: 4 }, () => p.execute<number>('solo', { ms: 30 })));
      assert.deepEqual(rs, [1, 1, 1, 1], 'never two at once');
    } finally {
      await p.close();
    }
  });

  it('a plain def runs alone: never beside async calls on the same worker', async () => {
    const p = await pool({ concurrency: 8 });
    try {
      const slow = Promise.all([p.execute('asleep', { ms: 150 }), p.execute('asleep', { ms: 150 })]);
      await until(() => p.stats().workers[0].inflight === 2);
      const sum = p.execute<number>('add', { a: 1, b: 1 });
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(p.stats().queue.length, 1, 'the def waits for the async calls');
      assert.equal(await sum, 2);
      await slow;
    } finally {
      await p.close();
    }
  });

  it('cancelling one async call cancels its task only (CancelledError, finally runs); the worker serves on', async () => {
    const p = await pool({ concurrency: 4 });
    try {
      const file = tempFile('acancel.log');
      const other = p.execute('asleep', { ms: 300 });
      const err = await rejection(p.execute('acancellable', { ms: 5_000, path: file }, { timeoutMs: 100 }));
      assert.equal(err.code, 'PYFLEET_TIMEOUT');
      await until(() => lines(file).includes('cancelled'));
      assert.equal(((await other) as { task: boolean }).task, true, 'the other task was not cancelled');
      assert.equal(p.stats().restarts.total, 0);
    } finally {
      await p.close();
    }
  });

  it('a threaded call sees ctx.cancelled', async () => {
    const p = await pool({ concurrency: 2 });
    try {
      const file = tempFile('tcancel.log');
      const err = await rejection(p.execute('tcancellable', { ms: 5_000, path: file }, { timeoutMs: 100 }));
      assert.equal(err.code, 'PYFLEET_TIMEOUT');
      await until(() => lines(file).includes('saw-cancel'));
      assert.equal(await p.execute('add', { a: 2, b: 2 }), 4);
    } finally {
      await p.close();
    }
  });

  it('a handler that blocks the event loop: heartbeats still flow, the call times out, the worker stays when it acknowledges', async () => {
    const p = await pool({ concurrency: 2, healthCheck: { intervalMs: 50, maxMissed: 3 }, cancelGraceMs: 2_000 });
    try {
      const pid = p.pids()[0];
      const err = await rejection(p.execute('blocks_loop', { ms: 600 }, { timeoutMs: 200 }));
      assert.equal(err.code, 'PYFLEET_TIMEOUT');
      assert.equal(await p.execute('add', { a: 1, b: 2 }), 3);
      assert.equal(p.pids()[0], pid);
      assert.equal(p.stats().restarts.total, 0, 'not killed for missed heartbeats');
    } finally {
      await p.close();
    }
  });

  it('a worker that dies with several async calls fails or re-sends each by the idempotency rule', async () => {
    const p = await pool({ workers: 1, concurrency: 8, policy: { connection_error: { delays: [10] } } });
    try {
      const calls = Array.from({ length: 3 }, () => p.execute('asleep', { ms: 400 }, { detailed: true }));
      const once = rejection(p.execute('acancellable', { ms: 400, path: tempFile('x.log') }));
      await until(() => p.stats().workers.some((w) => w.inflight === 4));
      const victim = p.stats().workers.find((w) => w.inflight === 4)!;
      process.kill(victim.pid!, 'SIGKILL');
      for (const r of await Promise.all(calls)) assert.equal((r as { attempts: number }).attempts, 2);
      const e = await once;
      assert.equal(e.code, 'PYFLEET_WORKER_CRASHED');
      assert.equal(e.details?.running, true, 'every concurrent call was running');
    } finally {
      await p.close();
    }
  });

  it('@command(timeout=S) is the default timeout; the call\'s own wins', async () => {
    const p = await pool();
    try {
      const e = await rejection(p.execute('slow_default', { ms: 1_000 }));
      assert.equal(e.code, 'PYFLEET_TIMEOUT');
      assert.equal(e.details?.timeoutMs, 200);
      assert.equal(await p.execute('slow_default', { ms: 300 }, { timeoutMs: 2_000 }), 'done');
    } finally {
      await p.close();
    }
  });
});

describe('streams', () => {
  it('a def generator and an async def generator, item by item', async () => {
    const p = await pool({ concurrency: 4 });
    try {
      assert.deepEqual(await collect(p.stream<number>('gen', { n: 5 })), [0, 1, 2, 3, 4]);
      assert.deepEqual(await collect(p.stream('agen', { n: 3 })), [{ i: 0 }, { i: 1 }, { i: 2 }]);
      assert.deepEqual(await collect(p.stream('add', { a: 1, b: 2 })), [3], 'an ordinary command yields its value once');
      assert.equal(p.stats().calls.succeeded, 3);
    } finally {
      await p.close();
    }
  });

  it('backpressure: the generator never runs more than highWaterMark items ahead of a slow consumer', async () => {
    // One worker, so the probe lands where the generator runs; concurrency 2, so the two share its
    // event loop. The loop serves the probe only once the generator awaits credit (it awaits nothing
    // else), so the count the probe reads is where the credit stopped it, however loaded the machine.
    const hwm = 4;
    const p = await pool({ workers: 1, concurrency: 2 });
    try {
      const it = p.stream<number>('agen_count', { n: 1_000 }, { highWaterMark: hwm });
      assert.equal((await it.next()).value, 0);
      const produced = await p.execute<number>('produced', {});
      assert.equal(produced, hwm, `the generator produced ${produced} items while the consumer had taken 1 (highWaterMark ${hwm})`);
      // Credit comes back as the consumer takes items: the rest arrives, in order.
      const rest: number[] = [];
      for await (const x of it) rest.push(x);
      assert.deepEqual(rest, Array.from({ length: 999 }, (_, i) => i + 1));
      assert.equal(await p.execute<number>('produced', {}), 1_000);
    } finally {
      await p.close();
    }
  });

  it('break closes the generator in Python: its finally runs, and the worker serves the next call', async () => {
    const p = await pool({ concurrency: 2 });
    try {
      for (const cmd of ['gen', 'agen']) {
        const file = tempFile(`${cmd}.log`);
        let n = 0;
        for await (const _ of p.stream(cmd, { n: 100_000, path: file })) if (++n === 3) break;
        await until(() => lines(file).includes('closed'));
      }
      assert.equal(await p.execute('add', { a: 1, b: 1 }), 2);
      assert.equal(p.stats().calls.failed, 0, 'a stopped stream is not a failure');
    } finally {
      await p.close();
    }
  });

  it('an exception mid-stream ends it with a PoolError carrying the traceback, after the items before it', async () => {
    const p = await pool();
    try {
      const got: number[] = [];
      const err = await rejection(
        (async () => {
          for await (const x of p.stream<number>('gen_fail', {})) got.push(x);
        })(),
      );
      assert.deepEqual(got, [1, 2]);
      assert.equal(err.code, 'PYFLEET_PYTHON_ERROR');
      assert.match(err.python?.traceback ?? '', /broke after two/);
    } finally {
      await p.close();
    }
  });

  it('a value JSON cannot carry ends the stream with an error naming it; the worker serves on', async () => {
    const p = await pool();
    try {
      const err = await rejection(collect(p.stream('gen_unsendable', {})));
      assert.equal(err.code, 'PYFLEET_PYTHON_ERROR');
      assert.match(err.message, /set/);
      assert.equal(await p.execute('add', { a: 1, b: 1 }), 2);
      assert.equal(p.stats().restarts.total, 0);
    } finally {
      await p.close();
    }
  });

  it('a worker death after the first item: PYFLEET_STREAM_BROKEN, never re-sent', async () => {
    const p = await pool({ workers: 2 });
    try {
      const got: number[] = [];
      const err = await rejection(
        (async () => {
          for await (const x of p.stream<number>('gen_die', {})) got.push(x);
        })(),
      );
      assert.deepEqual(got, [1]);
      assert.equal(err.code, 'PYFLEET_STREAM_BROKEN');
      assert.equal(err.category, 'connection_error');
      assert.match(err.message, /after 1 item/);
      assert.equal(p.stats().calls.retries, 0);
    } finally {
      await p.close();
    }
  });

  it('chunkTimeoutMs: the longest wait for the next item', async () => {
    const p = await pool();
    try {
      const err = await rejection(collect(p.stream('gen_slow', { ms: 2_000 }, { chunkTimeoutMs: 150 })));
      assert.equal(err.code, 'PYFLEET_TIMEOUT');
      assert.match(err.message, /chunkTimeoutMs/);
    } finally {
      await p.close();
    }
  });

  it('sessions work with streams: the stream holds the session until it ends', async () => {
    const p = await pool();
    try {
      const s = p.session('st');
      const a = collect(p.stream<number>('session_gen', { n: 3 }, { sessionId: 'st' }));
      const b = s.execute('recall', {});
      assert.deepEqual(await a, [1, 1, 1]);
      await b;
      assert.deepEqual(await collect(p.stream<number>('session_gen', { n: 2 }, { sessionId: 'st' })), [2, 2]);
    } finally {
      await p.close();
    }
  });

  it('bad input is refused at the call site', async () => {
    const p = await pool();
    try {
      const e = await rejection(p.execute('gen', { n: 1 }));
      assert.equal(e.code, 'PYFLEET_INVALID_ARGS');
      assert.match(e.message, /generator.*pool\.stream/);
      for (const bad of [0, -1, 1.5]) assert.throws(() => p.stream('gen', { n: 1 }, { highWaterMark: bad }), /highWaterMark must be an integer >= 1/);
      assert.throws(() => p.stream('gen', { n: 1 }, { chunkTimeoutMs: 0 }), /chunkTimeoutMs/);
      assert.equal(p.stats().calls.total, 0, 'nothing was sent');
    } finally {
      await p.close();
    }
  });
});

describe('binary data, arrays and NaN', () => {
  it('Buffers and typed arrays arrive as read-only memoryviews of their format; an NDArray with its shape', async () => {
    const p = await pool();
    try {
      const r = await p.execute<Record<string, { type: string; format: string; shape: number[]; readonly: boolean; nbytes: number }>>('describe', {
        buf: Buffer.from('hello'),
        f64: new Float64Array([1, 2, 3]),
        i32: new Int32Array(4),
        nd: new NDArray(new Float32Array(6), [2, 3]),
      });
      assert.deepEqual(r.buf, { type: 'memoryview', format: 'B', shape: [5], readonly: true, nbytes: 5 });
      assert.deepEqual(r.f64, { type: 'memoryview', format: 'd', shape: [3], readonly: true, nbytes: 24 });
      assert.equal(r.i32.format, 'i');
      assert.deepEqual(r.nd.shape, [2, 3]);
      assert.equal(r.nd.format, 'f');
    } finally {
      await p.close();
    }
  });

  it('bytes, bytearray, memoryview and array.array come back as Buffers and typed arrays', async () => {
    const p = await pool();
    try {
      const r = await p.execute<{ bytes: Buffer; doubles: Float64Array; ints: Int32Array; nested: Buffer[] }>('make_binary', { n: 1_000 });
      assert.ok(Buffer.isBuffer(r.bytes));
      assert.equal(r.bytes.length, 1_000);
      assert.equal(r.bytes[257], 1);
      assert.ok(r.doubles instanceof Float64Array);
      assert.deepEqual([...r.doubles], [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5]);
      assert.deepEqual([...r.ints], [1, -2, 3]);
      assert.equal(r.nested[0].toString(), 'abc');
    } finally {
      await p.close();
    }
  });

  it('a 16 MiB Buffer round trip, bytes intact', async () => {
    const p = await pool();
    try {
      const data = Buffer.alloc(16 << 20);
      for (let i = 0; i < data.length; i += 4099) data[i] = i & 0xff;
      const back = await p.execute<Buffer>('echo', data);
      assert.equal(back.length, data.length);
      assert.ok(back.equals(data));
    } finally {
      await p.close();
    }
  });

  it('NaN and ±Infinity become null both ways; nonFinite: "error" refuses them naming the path', async () => {
    const p = await pool();
    try {
      assert.deepEqual(await p.execute('nan', {}), { nan: null, inf: null, list: [1, null] });
      assert.deepEqual(await p.execute('echo', { x: NaN, y: [Infinity] }), { x: null, y: [null] });
    } finally {
      await p.close();
    }
    const strict = await pool({ nonFinite: 'error' });
    try {
      const e = await rejection(strict.execute('echo', { a: { b: [1, NaN] } }));
      assert.equal(e.code, 'PYFLEET_INVALID_ARGS');
      assert.match(e.message, /\$\.a\.b\[1\]/);
      const r = await rejection(strict.execute('nan', {}));
      assert.equal(r.code, 'PYFLEET_PYTHON_ERROR');
      assert.match(r.message, /nan|NaN/);
    } finally {
      await strict.close();
    }
  });

  it('arguments JSON would silently change are refused, naming the path; the documented conversions happen', async () => {
    const p = await pool();
    try {
      for (const [args, where] of [
        [{ m: new Map() }, /\$\.m/],
        [{ s: { t: new Set([1]) } }, /\$\.s\.t/],
        [{ f: () => 1 }, /\$\.f/],
        [{ sym: Symbol('x') }, /\$\.sym/],
        [{ c: new (class Point {})() }, /\$\.c/],
      ] as const) {
        const e = await rejection(p.execute('echo', args));
        assert.equal(e.code, 'PYFLEET_INVALID_ARGS', String(where));
        assert.match(e.message, where);
      }
      const when = new Date('2026-12-01T00:00:00Z');
      assert.deepEqual(await p.execute('echo', { u: undefined, d: when, n: 1 }), { d: when.toISOString(), n: 1 });
      assert.equal(p.stats().calls.total, 1, 'refused calls were never sent');
    } finally {
      await p.close();
    }
  });

  it('a result that cannot be encoded says which value, at which path, and why', async () => {
    const p = await pool();
    try {
      const e = await rejection(p.execute('unsendable', {}));
      assert.equal(e.code, 'PYFLEET_PYTHON_ERROR');
      assert.match(e.message, /\$\.rows\[1\]\.when/);
      assert.match(e.message, /object/);
    } finally {
      await p.close();
    }
  });

  it('a typed array over maxFrameBytes is refused at the call site', async () => {
    const p = await pool({ maxFrameBytes: 1 << 20 });
    try {
      const e = await rejection(p.execute('echo', { big: new Float64Array(200_000) }));
      assert.equal(e.code, 'PYFLEET_FRAME_TOO_LARGE');
      assert.match(e.message, /binary parts included/);
    } finally {
      await p.close();
    }
  });
});
