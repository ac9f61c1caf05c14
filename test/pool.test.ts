import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { PoolError, createPool } from '../src/index.js';
import { FAULTS, FIXTURES, alive, lines, memoryLogger, nextPoolEvent, tempFile, testPool, until, rejection } from './helpers/pool.js';

describe('pool: calls on real Python workers', () => {
  it('answers calls, concurrently, on several workers', async () => {
    const pool = await testPool({ workers: 2 });
    try {
      assert.equal(await pool.execute('add', { a: 1, b: 2 }), 3);
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => pool.execute<number>('add', { a: i, b: i })));
      assert.deepEqual(results, Array.from({ length: 50 }, (_, i) => 2 * i));
      const stats = pool.stats();
      assert.equal(stats.workers.length, 2);
      for (const w of stats.workers) {
        assert.equal(w.state, 'ready');
        assert.equal(w.health, 'healthy');
        assert.equal(typeof w.pid, 'number');
        assert.equal(w.restarts, 0);
      }
      assert.equal(stats.calls.succeeded, 51);
    } finally {
      await pool.close();
    }
  });

  it('reports a Python exception with its type, message and traceback, and keeps serving', async () => {
    const pool = await testPool();
    try {
      const err = await rejection(pool.execute('boom', {}));
      assert.equal(err.code, 'PYFLEET_PYTHON_ERROR');
      assert.equal(err.category, 'python_error');
      assert.equal(err.python?.type, 'KeyError');
      assert.equal(err.python?.message, "'missing-key'");
      assert.match(err.python?.traceback ?? '', /in inner/);
      assert.match(err.message, /boom raised KeyError/);
      assert.equal(await pool.execute('add', { a: 2, b: 2 }), 4);
      assert.equal(pool.stats().circuits.pool_operations.state, 'closed');
    } finally {
      await pool.close();
    }
  });

  it('logs what a handler prints, with the worker id, outside the protocol', async () => {
    const pool = await testPool();
    try {
      assert.equal(await pool.execute('noisy', { tag: 'T1' }), 'quiet');
      await until(() => pool.logs.some((l) => l.msg === 'raw fd1 write'));
      const printed = pool.logs.find((l) => l.msg === 'hello from python T1');
      assert.ok(printed, 'print() output is logged');
      assert.equal(printed.obj.stream, 'stdout');
      assert.equal(printed.obj.workerId, pool.stats().workers[0].id);
    } finally {
      await pool.close();
    }
  });

  it('times out a hung call, cancels it in the worker, and serves again', async () => {
    const pool = await testPool({ cancelGraceMs: 1_000 });
    try {
      const path = tempFile('cancel.log');
      const started = performance.now();
      const err = await rejection(pool.execute('cancellable', { ms: 10_000, path }, { timeoutMs: 200, idempotent: false }));
      assert.equal(err.code, 'PYFLEET_TIMEOUT');
      assert.equal(err.category, 'timeout_error');
      assert.equal(err.taken, true);
      assert.ok(performance.now() - started < 3_000);
      // The cancel reached the handler: its finally block ran.
      await until(() => lines(path).includes('cleanup'));
      assert.equal(await pool.execute('add', { a: 1, b: 1 }), 2);
    } finally {
      await pool.close();
    }
  });

  it('a timed-out call that was not idempotent: its handler cleans up, and its worker stays in service', async () => {
    const pool = await testPool({ cancelGraceMs: 3_000 });
    try {
      const path = tempFile('cleanup.log');
      const pid = await pool.execute<number>('pid');
      const err = await rejection(pool.execute('slow_cleanup', { ms: 10_000, cleanup_ms: 300, path }, { timeoutMs: 200 }));
      assert.equal(err.code, 'PYFLEET_TIMEOUT');
      // The cancel was acknowledged once the cleanup ran to its end; the same worker answers next.
      assert.equal(await pool.execute('pid'), pid);
      assert.deepEqual(lines(path), ['cleanup']);
      assert.equal(pool.stats().restarts.total, 0);
    } finally {
      await pool.close();
    }
  });

  it('rejects an unknown command at the call site without touching a worker', async () => {
    const pool = await testPool();
    try {
      const before = pool.stats().workers[0].requests;
      const err = await rejection(pool.execute('no_such_command', {}));
      assert.equal(err.code, 'PYFLEET_UNKNOWN_COMMAND');
      assert.match(err.message, /registered: .*add/);
      assert.equal(pool.stats().workers[0].requests, before);
    } finally {
      await pool.close();
    }
  });

  it('rejects unserializable arguments (BigInt, cycles) at the call site and keeps serving', async () => {
    const pool = await testPool();
    try {
      const cyclic: Record<string, unknown> = { a: 1 };
      cyclic.self = cyclic;
      for (const args of [{ a: 1n, b: 2 }, cyclic, () => 1]) {
        const err = await rejection(pool.execute('add', args));
        assert.equal(err.code, 'PYFLEET_INVALID_ARGS');
        assert.equal(err.retryable, false);
      }
      assert.equal(pool.stats().workers[0].requests, 0);
      assert.equal(await pool.execute('add', { a: 1, b: 2 }), 3);
    } finally {
      await pool.close();
    }
  });

  it('answers a result JSON cannot carry, or arguments nested too deep for Python, with a python_error; the worker lives', async () => {
    const pool = await testPool();
    try {
      const pid = await pool.execute<number>('pid');
      for (const kind of ['set', 'cycle', 'deep']) {
        const err = await rejection(pool.execute('unsendable', { kind }));
        assert.equal(err.code, 'PYFLEET_PYTHON_ERROR', kind);
        assert.match(err.message, /cannot be sent as JSON/, kind);
      }
      // Protocol 2 (docs/protocol.md, "Values"): NaN is null on the wire unless the pool runs with nonFinite: 'error'.
      assert.equal(await pool.execute('unsendable', { kind: 'nan' }), null);
      // JSON.stringify goes deeper than Python's decoder: the worker refuses the call instead of dying on it.
      let deep: unknown = 1;
      for (let i = 0; i < 2000; i++) deep = [deep];
      const err = await rejection(pool.execute('depth', deep));
      assert.equal(err.code, 'PYFLEET_PYTHON_ERROR');
      assert.equal(err.python?.type, 'RecursionError');
      assert.equal(await pool.execute('depth', [[[0]]]), 3);
      assert.equal(await pool.execute('pid'), pid);
      assert.equal(pool.stats().restarts.total, 0);
    } finally {
      await pool.close();
    }
  });

  it('refuses arguments over maxFrameBytes at the call site', async () => {
    const pool = await testPool({ maxFrameBytes: 64 * 1024 });
    try {
      const err = await rejection(pool.execute('add', { a: 'x'.repeat(100_000), b: '' }));
      assert.equal(err.code, 'PYFLEET_FRAME_TOO_LARGE');
      assert.equal(await pool.execute('add', { a: 1, b: 2 }), 3);
    } finally {
      await pool.close();
    }
  });

  it('returns a 5 MB result', async () => {
    const pool = await testPool();
    try {
      const s = await pool.execute<string>('big', { n: 5 * 1024 * 1024 });
      assert.equal(s.length, 5 * 1024 * 1024);
    } finally {
      await pool.close();
    }
  });

  it('treats garbage bytes and an absurd length prefix on the protocol pipe as communication errors, and recovers', async () => {
    const pool = await testPool({ maxFrameBytes: 1024 * 1024 });
    try {
      const pid0 = pool.stats().workers[0].pid;
      for (const command of ['garbage', 'huge_prefix']) {
        const err = await rejection(pool.execute(command, {}, { idempotent: false }));
        assert.equal(err.code, 'PYFLEET_PROTOCOL_ERROR', command);
        assert.equal(err.category, 'communication_error');
        assert.match(err.message, /may have run/);
      }
      assert.equal(await pool.execute('add', { a: 1, b: 2 }), 3);
      assert.notEqual(pool.stats().workers[0].pid, pid0, 'the broken worker was replaced');
      assert.ok((pool.stats().restarts.byReason.protocol_error ?? 0) >= 2);
    } finally {
      await pool.close();
    }
  });

  it('replaces a worker SIGKILLed while idle', async () => {
    const pool = await testPool();
    try {
      const pid = pool.stats().workers[0].pid!;
      process.kill(pid, 'SIGKILL');
      await until(() => pool.stats().workers.some((w) => w.pid !== pid && w.state === 'ready'));
      assert.equal(await pool.execute('add', { a: 1, b: 2 }), 3);
      const w = pool.stats().workers[0];
      assert.equal(w.restarts, 1);
      assert.equal(pool.stats().restarts.byReason.crash, 1);
    } finally {
      await pool.close();
    }
  });

  it('re-sends an idempotent call whose worker was SIGKILLed while busy', async () => {
    const pool = await testPool({ workers: 2 });
    try {
      const call = pool.execute<number>('sleep', { ms: 400 }, { detailed: true });
      await until(() => pool.stats().workers.some((w) => w.inflight === 1));
      const busy = pool.stats().workers.find((w) => w.inflight === 1)!;
      process.kill(busy.pid!, 'SIGKILL');
      const r = await call;
      assert.equal(r.value, 400);
      assert.equal(r.attempts, 2);
      assert.notEqual(r.workerId, busy.id);
    } finally {
      await pool.close();
    }
  });

  it('does not re-send a non-idempotent call whose worker died: connection_error, side effect once', async () => {
    const pool = await testPool({ workers: 2 });
    try {
      const path = tempFile('effects.log');
      const err = await rejection(pool.execute('side_effect_then_die', { path, token: 'once' }));
      assert.equal(err.code, 'PYFLEET_WORKER_CRASHED');
      assert.equal(err.category, 'connection_error');
      assert.equal(err.taken, true);
      assert.match(err.message, /may have run/);
      assert.deepEqual(lines(path), ['once']);
      assert.equal(await pool.execute('add', { a: 1, b: 2 }), 3);
    } finally {
      await pool.close();
    }
  });

  it('aborts a running call with its AbortSignal, and the worker survives', async () => {
    const pool = await testPool();
    try {
      const pid = pool.stats().workers[0].pid;
      const ac = new AbortController();
      const path = tempFile('abort.log');
      const p = pool.execute('cancellable', { ms: 10_000, path }, { signal: ac.signal });
      setTimeout(() => ac.abort(new Error('user went away')), 100);
      const err = await rejection(p);
      assert.equal(err.code, 'PYFLEET_ABORTED');
      assert.match(err.message, /user went away/);
      await until(() => lines(path).includes('cleanup'));
      assert.equal(await pool.execute('add', { a: 1, b: 2 }), 3);
      assert.equal(pool.stats().workers[0].pid, pid, 'a cancelled call does not cost the worker');
      const already = await rejection(pool.execute('add', { a: 1, b: 2 }, { signal: AbortSignal.abort() }));
      assert.equal(already.code, 'PYFLEET_ABORTED');
    } finally {
      await pool.close();
    }
  });

  it('refuses calls at once when the queue is full, and times out waiting ones', async () => {
    const pool = await testPool({ maxQueue: 2, queueTimeoutMs: 5_000 });
    try {
      const running = pool.execute('sleep', { ms: 300 });
      await until(() => pool.stats().workers[0].inflight === 1);
      const waiting = [pool.execute('add', { a: 1, b: 1 }), pool.execute('add', { a: 2, b: 2 })];
      const t0 = performance.now();
      const err = await rejection(pool.execute('add', { a: 3, b: 3 }, { idempotent: false }));
      assert.equal(err.code, 'PYFLEET_QUEUE_FULL');
      assert.equal(err.category, 'resource_error');
      assert.ok(performance.now() - t0 < 50, 'overflow is refused immediately');
      assert.deepEqual(await Promise.all([running, ...waiting]), [300, 2, 4]);
    } finally {
      await pool.close();
    }
    const slow = await testPool({ queueTimeoutMs: 100, retry: { maxAttempts: 1 } });
    try {
      const running = slow.execute('sleep', { ms: 600 });
      await until(() => slow.stats().workers[0].inflight === 1);
      const err = await rejection(slow.execute('add', { a: 1, b: 1 }));
      assert.equal(err.code, 'PYFLEET_QUEUE_TIMEOUT');
      assert.equal(err.taken, false);
      await running;
    } finally {
      await slow.close();
    }
  });

  it('keeps a session on its worker; without a session store, says so when the worker holding it died', async () => {
    const pool = await testPool({ workers: 3, sessionStore: false });
    try {
      const s = pool.session('user-42');
      const pid = await s.execute<number>('remember', { x: 'state' });
      for (let i = 0; i < 5; i++) assert.equal(await s.execute('recall', {}), 'state');
      assert.equal(await pool.execute('recall', {}, { sessionId: 'someone-else' }), null);
      process.kill(pid, 'SIGKILL');
      await until(() => !pool.stats().workers.some((w) => w.pid === pid));
      const err = await rejection(s.execute('recall', {}));
      assert.equal(err.code, 'PYFLEET_SESSION_LOST');
      assert.equal(err.category, 'session_error');
      assert.match(err.message, /lost its state/);
      // Still lost until the caller closes it: never silently re-created empty.
      assert.equal((await rejection(s.execute('recall', {}))).code, 'PYFLEET_SESSION_LOST');
      await s.close();
      assert.equal(await s.execute('recall', {}), null);
    } finally {
      await pool.close();
    }
  });

  it('drops idle sessions after sessionTtlMs and frees their state in the worker', async () => {
    const pool = await testPool({ sessionTtlMs: 200, healthCheck: { intervalMs: 50, maxMissed: 20 } });
    try {
      await pool.execute('remember', { x: 1 }, { sessionId: 's' });
      assert.equal(pool.stats().sessions.total, 1);
      await until(() => pool.stats().sessions.total === 0);
      assert.equal(await pool.execute('recall', {}, { sessionId: 's' }), null);
    } finally {
      await pool.close();
    }
  });

  it('grows toward max while calls wait and shrinks back to min when idle', async () => {
    const pool = await testPool({ workers: { min: 1, max: 3 }, idleTimeoutMs: 300, healthCheck: { intervalMs: 50, maxMissed: 20 } });
    try {
      await Promise.all(Array.from({ length: 6 }, () => pool.execute('sleep', { ms: 300 })));
      assert.ok(pool.stats().workers.length > 1, 'grew while calls waited');
      await until(() => pool.stats().workers.length === 1, 5_000);
    } finally {
      await pool.close();
    }
  });

  it('recycles a worker after recycle.maxRequests', async () => {
    const pool = await testPool({ recycle: { maxRequests: 5 } });
    try {
      const first = await pool.execute<number>('pid', {});
      for (let i = 0; i < 4; i++) assert.equal(await pool.execute('pid', {}), first);
      await until(() => pool.stats().workers.some((w) => w.pid !== first && w.state === 'ready'));
      assert.notEqual(await pool.execute('pid', {}), first);
      assert.equal(pool.stats().restarts.byReason.recycle, 1);
    } finally {
      await pool.close();
    }
  });

  it('recycles a worker whose Python process grows past recycle.maxMemoryMb', async () => {
    const pool = await testPool({ recycle: { maxMemoryMb: 60 }, healthCheck: { intervalMs: 50, maxMissed: 20 } });
    try {
      const first = await pool.execute<number>('pid', {});
      await pool.execute('grow', { mb: 80 });
      await until(() => pool.stats().recoveries.byStrategy.recycle_worker.succeeded === 1);
      assert.ok(pool.stats().workers.some((w) => w.pid !== first && w.state === 'ready'));
      assert.ok(!pool.stats().workers.some((w) => w.pid === first));
      assert.equal(pool.stats().recoveries.byStrategy.recycle_worker.initiated, 1);
    } finally {
      await pool.close();
    }
  });

  it('replaces a worker whose heartbeats stop', async () => {
    const pool = await testPool({ chaos: { heartbeatStall: 1, heartbeatStallMs: 5_000, seed: 1 }, healthCheck: { intervalMs: 50, maxMissed: 3 } });
    try {
      const first = pool.stats().workers[0].pid;
      await pool.execute('add', { a: 1, b: 1 });
      await until(() => (pool.stats().restarts.byReason.health_check ?? 0) >= 1);
      assert.ok(!pool.stats().workers.some((w) => w.pid === first));
    } finally {
      await pool.close();
    }
  });

  it('kills a worker that ignores a cancel after cancelGraceMs, not before and not much later', async () => {
    const grace = 300;
    const pool = await testPool({ chaos: { hangUncancellable: 1, seed: 1 }, cancelGraceMs: grace });
    try {
      const first = pool.stats().workers[0].pid!;
      const exited = nextPoolEvent(pool, 'worker:exit', (e) => e.pid === first);
      const err = await rejection(pool.execute('add', { a: 1, b: 1 }, { timeoutMs: 100, idempotent: false }));
      // The cancel went out with the timeout, just before the caller heard of it.
      const cancelledAt = performance.now();
      assert.equal(err.code, 'PYFLEET_TIMEOUT');
      const exit = await exited;
      assert.equal(exit.signal, 'SIGKILL');
      assert.match(exit.reason, new RegExp(`not acknowledged within ${grace} ms`));
      const after = exit.at - cancelledAt;
      // The lower bound holds on any machine; the upper one has room for a loaded one.
      assert.ok(after >= grace - 50, `killed ${Math.round(after)} ms after the cancel, before cancelGraceMs (${grace})`);
      assert.ok(after < grace + 2_000, `killed ${Math.round(after)} ms after the cancel (cancelGraceMs ${grace})`);
      assert.ok(!alive(first));
    } finally {
      await pool.close();
    }
  });
});

describe('pool: pipelining', () => {
  it('sends up to pipelineDepth idempotent calls to one worker, and re-sends them all if it dies', async () => {
    const pool = await testPool({ pipelineDepth: 16 });
    try {
      const results = await Promise.all(Array.from({ length: 200 }, (_, i) => pool.execute<number>('add', { a: i, b: 1 })));
      assert.deepEqual(results, Array.from({ length: 200 }, (_, i) => i + 1));
      const sleepers = Array.from({ length: 8 }, () => pool.execute<number>('sleep', { ms: 100 }, { detailed: true }));
      await until(() => pool.stats().workers[0]?.inflight === 8);
      process.kill(pool.stats().workers[0].pid!, 'SIGKILL');
      const done = await Promise.all(sleepers);
      assert.ok(done.every((r) => r.value === 100 && r.attempts === 2));
    } finally {
      await pool.close();
    }
  });

  it('never pipelines a non-idempotent call behind others', async () => {
    const pool = await testPool({ pipelineDepth: 16 });
    try {
      const a = pool.execute('sleep', { ms: 200 });
      const b = pool.execute('sleep', { ms: 200 });
      await until(() => pool.stats().workers[0].inflight === 2);
      const c = pool.execute('remember', { x: 1 });
      assert.equal(pool.stats().workers[0].inflight, 2, 'the non-idempotent call waits for an idle worker');
      assert.equal(pool.stats().queue.length, 1);
      await Promise.all([a, b, c]);
    } finally {
      await pool.close();
    }
  });
});

describe('pool: start-up, options and shutdown', () => {
  it('rejects createPool with initialization_error and the Python message when the module fails to import', async () => {
    const t0 = performance.now();
    const err = await rejection(createPool({ module: `${FIXTURES}bad_import.py`, workers: 2, logger: memoryLogger() }));
    assert.equal(err.code, 'PYFLEET_INIT_FAILED');
    assert.equal(err.category, 'initialization_error');
    assert.equal(err.python?.type, 'ModuleNotFoundError');
    assert.match(err.message, /a_module_that_does_not_exist_anywhere/);
    assert.ok(performance.now() - t0 < 10_000);
  });

  it('validates options with messages that name the option', async () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{}, /module is required/],
      [{ module: FAULTS, workers: 0 }, /workers must be an integer >= 1/],
      [{ module: FAULTS, workers: { min: 3, max: 2 } }, /workers.max \(2\) must be >= workers.min \(3\)/],
      [{ module: FAULTS, requestTimeoutMs: -1 }, /requestTimeoutMs/],
      [{ module: FAULTS, retries: 3 }, /retries is not an option/],
      [{ module: FAULTS, policy: { python_error: { maxRetries: -1 } } }, /policy/],
      [{ module: FAULTS, chaos: { kill: 2 } }, /chaos.kill must be a rate/],
    ];
    for (const [opts, re] of cases) {
      const err = await rejection(createPool(opts as never));
      assert.equal(err.code, 'PYFLEET_INVALID_OPTIONS');
      assert.match(err.message, re);
    }
  });

  it('close() drains in-flight calls, refuses new ones and leaves no process', async () => {
    const pool = await testPool({ workers: 2 });
    const pids = pool.pids();
    assert.equal(pids.length, 2);
    const inflight = pool.execute('sleep', { ms: 200 });
    await until(() => pool.stats().workers.some((w) => w.inflight === 1));
    const closing = pool.close();
    assert.equal((await rejection(pool.execute('add', { a: 1, b: 1 }))).code, 'PYFLEET_POOL_CLOSED');
    assert.equal(await inflight, 200);
    await closing;
    for (const pid of pids) assert.equal(alive(pid), false, `worker ${pid} reaped`);
    assert.deepEqual(pool.pids(), []);
  });

  it('close() under load: every call settles once, with a value or PYFLEET_POOL_CLOSED, and every process is reaped', async () => {
    const pool = await testPool({ workers: 2, maxQueue: 1_000 });
    const pids = pool.pids();
    const outcomes = await Promise.allSettled([
      ...Array.from({ length: 300 }, (_, i) => pool.execute('add', { a: i, b: 0 })),
      ...Array.from({ length: 4 }, () => pool.execute('sleep', { ms: 100 })),
      pool.close(),
    ]);
    const calls = outcomes.slice(0, -1);
    const ok = calls.filter((o) => o.status === 'fulfilled').length;
    const closed = calls.filter((o) => o.status === 'rejected' && (o.reason as PoolError).code === 'PYFLEET_POOL_CLOSED').length;
    assert.equal(ok + closed, calls.length, 'nothing else than a value or a shutdown error');
    assert.ok(ok >= 1 && closed >= 1, `both kinds seen (ok ${ok}, closed ${closed})`);
    for (const pid of pids) assert.equal(alive(pid), false);
  });

  it('leaves no Python process when the host is killed with SIGKILL', async () => {
    const script = `
      import { createPool } from ${JSON.stringify(new URL('../src/index.ts', import.meta.url).href)};
      const pool = await createPool({ module: ${JSON.stringify(FAULTS)}, workers: 2, logger: { info() {}, warn() {}, error() {} } });
      void pool.execute('sleep', { ms: 60000 });
      setTimeout(() => console.log(JSON.stringify(pool.pids())), 100);
      setInterval(() => {}, 1000);
    `;
    const host = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const pids = await new Promise<number[]>((resolve, reject) => {
      let out = '';
      host.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(JSON.parse(out.trim()) as number[]);
      });
      host.on('exit', (code) => reject(new Error(`host exited early (${code})`)));
    });
    assert.equal(pids.length, 2);
    for (const pid of pids) assert.ok(alive(pid));
    host.kill('SIGKILL');
    await until(() => pids.every((pid) => !alive(pid)), 5_000);
  });
});
