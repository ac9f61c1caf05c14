import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { subscribe } from '../src/telemetry/channels.js';
import { ROOT } from './helpers/cli.js';
import { FAULTS, FIXTURES, alive, lines, quiet, rejection, tempFile, testPool, until } from './helpers/pool.js';
import { createPool } from '../src/index.js';

type ErrorEvent = { code: string; category: string; severity: string; strategy: string; attempt: number; command: string | null };

function collect(pool: { on: (n: 'pool:error', fn: (e: ErrorEvent) => void) => () => void }): { events: ErrorEvent[]; off: () => void } {
  const events: ErrorEvent[] = [];
  const off = pool.on('pool:error', (e) => events.push(e));
  return { events, off };
}

describe('every failure is classified, counted and reported once, with what the pool did', () => {
  for (const maxAttempts of [1, 3]) {
    it(`retry.maxAttempts ${maxAttempts}: a Python exception, a crash, and deaths toward poison`, async () => {
      const pool = await testPool({ workers: 2, retry: { maxAttempts } });
      const { events, off } = collect(pool);
      try {
        const py = await rejection(pool.execute('boom', {}));
        assert.equal(py.code, 'PYFLEET_PYTHON_ERROR');
        assert.equal(py.strategy, 'abandon', 'no fallback: the pool gave up, it did not fail over');
        assert.equal(pool.stats().errorsByCategory.python_error, 1);
        assert.deepEqual(
          events.map((e) => [e.code, e.strategy, e.attempt]),
          [['PYFLEET_PYTHON_ERROR', 'abandon', 1]],
        );

        const crash = await rejection(pool.execute('side_effect_then_die', { path: tempFile('se.log'), token: 't' }));
        assert.equal(crash.code, 'PYFLEET_WORKER_CRASHED');
        assert.equal(crash.strategy, 'abandon', 'not idempotent: not re-sent');
        assert.equal(pool.stats().errorsByCategory.connection_error, 1);
        assert.equal(events.length, 2);
        assert.deepEqual([events[1].code, events[1].strategy], ['PYFLEET_WORKER_CRASHED', 'abandon']);

        // A call that kills every worker it runs on: its deaths count toward poison on every
        // attempt, the last one included (maxDeaths 2).
        const file = tempFile('poison.log');
        const first = await rejection(pool.execute('always_die', { path: file }));
        if (maxAttempts === 1) {
          assert.equal(first.code, 'PYFLEET_WORKER_CRASHED');
          assert.equal(pool.stats().poison.quarantined, 0);
          const second = await rejection(pool.execute('always_die', { path: file }));
          assert.equal(second.code, 'PYFLEET_POISON_CALL');
        } else {
          assert.equal(first.code, 'PYFLEET_POISON_CALL');
        }
        assert.equal(pool.stats().poison.quarantined, 1);
        assert.equal(lines(file).length, 2, 'two deaths, then quarantined');
        const s = pool.stats();
        assert.equal(s.errorsByCategory.connection_error, 3, 'each failed attempt once');
        assert.equal(events.length, 4);
        assert.equal(s.calls.failed, s.calls.total);
      } finally {
        off();
        await pool.close();
      }
    });
  }

  it('a timeout that was not retried says abandon; one re-sent by the recovery says backoff_retry', async () => {
    const pool = await testPool();
    const { events, off } = collect(pool);
    try {
      const e = await rejection(pool.execute('sleep', { ms: 2_000 }, { timeoutMs: 100, idempotent: false }));
      assert.equal(e.code, 'PYFLEET_TIMEOUT');
      assert.equal(e.strategy, 'abandon');
      const r = await pool.execute('slow_once', { path: tempFile('so.log'), token: 'x', ms: 400 }, { timeoutMs: 150, detailed: true });
      assert.equal(r.via, 'recovery');
      assert.deepEqual(
        events.map((x) => [x.code, x.strategy]),
        [
          ['PYFLEET_TIMEOUT', 'abandon'],
          ['PYFLEET_TIMEOUT', 'backoff_retry'],
        ],
      );
    } finally {
      off();
      await pool.close();
    }
  });
});

describe('circuits have the right scope', () => {
  it('one command\'s timeouts open that command\'s circuit only; other commands keep being served', async () => {
    const pool = await testPool({ workers: 2, circuitBreaker: { failureThreshold: 3 } });
    try {
      for (let i = 0; i < 3; i++) assert.equal((await rejection(pool.execute('sleep', { ms: 1_000 }, { timeoutMs: 80, idempotent: false }))).code, 'PYFLEET_TIMEOUT');
      assert.equal(await pool.execute('add', { a: 1, b: 2 }), 3);
      const c = pool.stats().circuits;
      assert.equal(c['worker_commands:sleep'].state, 'open');
      assert.equal(c.pool_operations.state, 'closed');
      assert.equal(c.pool_operations.failures, 0, 'a timeout is not a failure of the workers');
      const refused = await rejection(pool.execute('sleep', { ms: 1 }));
      assert.equal(refused.code, 'PYFLEET_CIRCUIT_OPEN');
      assert.equal(refused.strategy, 'abandon', 'refused before any attempt');
      assert.match(refused.message, /worker_commands:sleep/);
    } finally {
      await pool.close();
    }
  });

  it('a full or timed-out queue is load shedding: it never counts on pool_operations', async () => {
    const pool = await testPool({ workers: 1, maxQueue: 2, queueTimeoutMs: 30, circuitBreaker: { failureThreshold: 2 } });
    try {
      const busy = pool.execute('sleep', { ms: 400 });
      const codes = await Promise.all(Array.from({ length: 6 }, () => rejection(pool.execute('add', { a: 1, b: 1 })).then((e) => e.code)));
      assert.deepEqual(new Set(codes), new Set(['PYFLEET_QUEUE_FULL', 'PYFLEET_QUEUE_TIMEOUT']));
      await busy;
      assert.equal(pool.stats().circuits.pool_operations.state, 'closed');
      assert.equal(pool.stats().circuits.pool_operations.failures, 0);
      assert.equal(await pool.execute('add', { a: 1, b: 1 }), 2);
    } finally {
      await pool.close();
    }
  });

  it('worker deaths open pool_operations, once per death', async () => {
    const pool = await testPool({ workers: 2, circuitBreaker: { failureThreshold: 2 }, poison: { maxDeaths: 100 } });
    try {
      await rejection(pool.execute('side_effect_then_die', { path: tempFile('a.log'), token: 'a' }));
      assert.equal(pool.stats().circuits.pool_operations.failures, 1);
      await rejection(pool.execute('side_effect_then_die', { path: tempFile('b.log'), token: 'b' }));
      assert.equal(pool.stats().circuits.pool_operations.state, 'open');
    } finally {
      await pool.close();
    }
  });
});

describe('a timed-out call never costs its neighbours their sessions', () => {
  it('the worker acknowledged the cancel: it stays, the neighbour session keeps its state, and the caller did not wait for any replacement', async () => {
    const pool = await testPool({ workers: 1, cancelGraceMs: 2_000 });
    try {
      const neighbour = pool.session('neighbour');
      await neighbour.execute('remember', { x: 42 });
      const t0 = performance.now();
      const err = await rejection(pool.execute('slow_cleanup', { ms: 10_000, cleanup_ms: 0, path: tempFile('c.log') }, { timeoutMs: 150 }));
      assert.equal(err.code, 'PYFLEET_TIMEOUT');
      assert.ok(performance.now() - t0 < 1_000, `the timeout took ${Math.round(performance.now() - t0)} ms to reach the caller`);
      assert.equal(await neighbour.execute('recall', {}), 42);
      assert.equal(pool.stats().restarts.total, 0);
    } finally {
      await pool.close();
    }
  });
});

describe('retry with a larger timeout', () => {
  it('at the defaults\' proportions (recovery limit = half the request timeout), the re-send gets twice the expired timeout', async () => {
    // Defaults: requestTimeoutMs 30 s, major recovery limit 30 s halved to 15 s for a waiting
    // caller. Scaled down 75x: 400 ms and 400 ms -> 200 ms. The handler needs 600 ms.
    const pool = await testPool({ requestTimeoutMs: 400, recovery: { timeLimits: { major: 400 } } });
    try {
      const r = await pool.execute<number>('sleep', { ms: 600 }, { detailed: true });
      assert.equal(r.value, 600);
      assert.equal(r.via, 'recovery');
      assert.equal(r.attempts, 2);
    } finally {
      await pool.close();
    }
  });
});

describe('one owner replaces dead workers', () => {
  it('a crash is replaced by the supervisor; the recovery does not claim it', async () => {
    const pool = await testPool({ workers: 1 });
    try {
      const pid = pool.pids()[0];
      process.kill(pid, 'SIGKILL');
      await until(() => pool.stats().workers.some((w) => w.state === 'ready' && w.pid !== pid));
      const s = pool.stats();
      assert.equal(s.restarts.byReason.crash, 1);
      assert.equal(s.recoveries.initiated, 0);
      assert.equal(s.recoveries.byStrategy.replace_worker.succeeded, 0);
      assert.equal(await pool.execute('add', { a: 2, b: 3 }), 5);
    } finally {
      await pool.close();
    }
  });
});

describe('close() settles every call and leaves nothing running', () => {
  function runScript(name: string): Promise<{ code: number | null; out: string; err: string; exitMs: number }> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', path.join(FIXTURES, name)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PYFLEET_LOG_LEVEL: 'silent' } });
      let out = '';
      let err = '';
      let closedAt = 0;
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        if (closedAt === 0 && out.includes('closed')) closedAt = performance.now();
      });
      child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
      const t = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`${name} did not exit within 20 s\n${out}\n${err}`));
      }, 20_000);
      child.on('close', (code) => {
        clearTimeout(t);
        resolve({ code, out, err, exitMs: closedAt === 0 ? Infinity : performance.now() - closedAt });
      });
    });
  }

  it('a call waiting out a retry backoff: close() rejects it with PYFLEET_POOL_CLOSED and the script exits at once', async () => {
    const r = await runScript('close-during-backoff.ts');
    assert.equal(r.code, 0, r.err);
    const result = JSON.parse(r.out.split('\n').find((l) => l.startsWith('{'))!);
    assert.equal(result.code, 'PYFLEET_POOL_CLOSED');
    assert.ok(result.closeMs < 2_000, `close() took ${result.closeMs} ms (the backoff was 30 s)`);
    assert.ok(r.exitMs < 2_000, `the process exited ${Math.round(r.exitMs)} ms after close() resolved`);
  });

  it('a worker start waiting out its backoff: close() resolves and the script exits at once', async () => {
    const r = await runScript('close-during-spawn-backoff.ts');
    assert.equal(r.code, 0, r.err);
    const result = JSON.parse(r.out.split('\n').find((l) => l.startsWith('{'))!);
    assert.ok(result.closeMs < 2_000, `close() took ${result.closeMs} ms (the start backoff was 60 s)`);
    assert.ok(r.exitMs < 2_000, `the process exited ${Math.round(r.exitMs)} ms after close() resolved`);
  });
});

describe('deaths the pool caused itself never count toward poison', () => {
  it('injected kills (chaos) fail the calls but never quarantine them', async () => {
    const pool = await createPool({ module: FAULTS, workers: 2, logger: quiet, chaos: { seed: 7, kill: 1 }, circuitBreaker: { failureThreshold: 100 }, policy: { connection_error: { delays: [10] } } });
    try {
      for (let i = 0; i < 3; i++) {
        const e = await rejection(pool.execute('add', { a: 1, b: 1 }));
        assert.equal(e.code, 'PYFLEET_WORKER_CRASHED', e.message);
      }
      assert.equal(pool.stats().poison.quarantined, 0);
    } finally {
      await pool.close();
    }
  });

  it('a worker the pool killed (its cancel not acknowledged) takes the calls running beside it: they are re-sent, never counted toward poison', async () => {
    const pool = await createPool({ module: path.join(FIXTURES, 'workloads.py'), workers: 1, concurrency: 2, cancelGraceMs: 200, poison: { maxDeaths: 1 }, logger: quiet, policy: { connection_error: { delays: [10] } } });
    try {
      // An async call runs beside a threaded one that ignores its cancel: the grace expires, the pool kills the worker.
      const neighbour = pool.execute<unknown>('asleep', { ms: 1_000 }, { detailed: true });
      await until(() => pool.stats().workers[0]?.inflight === 1);
      const deaf = await rejection(pool.execute('tsleep', { ms: 10_000 }, { timeoutMs: 100, idempotent: false }));
      assert.equal(deaf.code, 'PYFLEET_TIMEOUT');
      // One death toward poison (maxDeaths 1) would quarantine it: it is re-sent instead.
      const r = (await neighbour) as unknown as { attempts: number };
      assert.equal(r.attempts, 2);
      const s = pool.stats();
      assert.deepEqual(s.restarts.byReason, { cancel_timeout: 1 });
      assert.equal(s.poison.quarantined, 0);
      assert.equal(s.poison.refused, 0);
    } finally {
      await pool.close();
    }
  });
});

describe('recovery after a worker death takes milliseconds', () => {
  it('the re-send of an idempotent call goes at once to the free worker, not after the backoff', async () => {
    const pool = await testPool({ workers: 2, policy: {} });
    const busyAt: Array<{ workerId: number; at: number }> = [];
    let workersAtResend = -1;
    const off = subscribe('worker:transition', (e) => {
      if (e.poolId !== pool.id || e.to !== 'busy') return;
      busyAt.push({ workerId: e.workerId, at: performance.now() });
      if (busyAt.length === 2) workersAtResend = pool.stats().workers.length;
    });
    try {
      const p = pool.execute<number>('sleep', { ms: 300 });
      await until(() => pool.stats().workers.some((w) => w.inflight === 1));
      const victim = pool.stats().workers.find((w) => w.inflight === 1)!;
      const killedAt = performance.now();
      process.kill(victim.pid!, 'SIGKILL');
      assert.equal(await p, 300);
      const resend = busyAt.find((b) => b.at > killedAt);
      assert.ok(resend !== undefined);
      assert.notEqual(resend.workerId, victim.id);
      const ms = resend.at - killedAt;
      // The target is under 20 ms (bench/RESULTS.md measures it); the matrix's backoff would be 1 000 ms.
      assert.ok(ms < 250, `re-sent ${Math.round(ms)} ms after the kill`);
      // The replacement's spawn (milliseconds of blocked event loop) comes after the re-send.
      assert.equal(workersAtResend, 1, 'no replacement was spawned before the re-send');
    } finally {
      off();
      await pool.close();
    }
  });
});

describe('hello after the start-up timeout', () => {
  it('a worker whose hello arrives after it was given up never becomes ready', async () => {
    const pidFile = tempFile('hello-child.pid');
    const transitions: string[] = [];
    const off = subscribe('worker:transition', (e) => transitions.push(`${e.from}->${e.to}`));
    try {
      const err = await rejection(
        createPool({ module: path.join(FIXTURES, 'hello_after_timeout.py'), workers: 1, startupTimeoutMs: 400, logger: quiet, env: { HELLO_CHILD_PID_FILE: pidFile } }),
      );
      assert.equal(err.code, 'PYFLEET_STARTUP_TIMEOUT');
      await until(() => readFileSync(pidFile, 'utf8') !== '');
      const child = Number(readFileSync(pidFile, 'utf8'));
      // The child said hello to a pipe nobody reads any more, then saw EOF and exited.
      await until(() => !alive(child), 5_000);
      assert.ok(!transitions.includes('initializing->ready'), transitions.join(', '));
    } finally {
      off();
    }
  });
});

describe('one id per call', () => {
  it('ctx.request_id is the call\'s id, the same on every attempt, with ctx.attempt beside it', async () => {
    const pool = await testPool({ workers: 2 });
    const starts: number[] = [];
    const off = pool.on('call:start', (e) => starts.push(e.callId));
    try {
      const file = tempFile('ids.log');
      const r = await pool.execute<number>('ids_then_die_once', { path: file }, { detailed: true });
      const [first, second] = lines(file);
      assert.deepEqual([first, second], [`${r.value} 1`, `${r.value} 2`]);
      assert.equal(r.attempts, 2);
      assert.deepEqual(starts, [r.value], 'call:start names the call by the same id');
    } finally {
      off();
      await pool.close();
    }
  });
});
