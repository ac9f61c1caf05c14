import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { PoolError, SingleProcessAdapter, subscribe, type Adapter } from '../src/index.js';
import { FIXTURES, alive, lines, memoryLogger, tempFile, testPool, until, rejection } from './helpers/pool.js';

describe('error handling and recovery, wired into pool.execute (real Python)', () => {
  it('a crashing idempotent command succeeds on retry', async () => {
    const pool = await testPool({ workers: 2 });
    try {
      const path = tempFile('die-once.log');
      const r = await pool.execute('die_once', { path, token: 't1' }, { detailed: true });
      assert.equal(r.value, 'survived');
      assert.equal(r.via, 'pool');
      assert.equal(r.attempts, 2);
      assert.deepEqual(lines(path), ['t1', 't1']);
      assert.equal(pool.stats().calls.retries, 1);
      assert.equal(pool.stats().errorsByCategory.connection_error, 1);
    } finally {
      await pool.close();
    }
  });

  it('quarantines a call that kills every worker it touches: PYFLEET_POISON_CALL after two deaths', async () => {
    const pool = await testPool({ workers: 2, poison: { maxDeaths: 2, coolDownMs: 60_000 } });
    try {
      const path = tempFile('deaths.log');
      const err = await rejection(pool.execute('always_die', { path }));
      assert.equal(err.code, 'PYFLEET_POISON_CALL');
      assert.equal(err.category, 'system_error');
      assert.equal(err.retryable, false);
      assert.equal(lines(path).length, 2, 'exactly two workers died');
      // The identical call is refused at once, without a third death.
      const t0 = performance.now();
      const again = await rejection(pool.execute('always_die', { path }));
      assert.equal(again.code, 'PYFLEET_POISON_CALL');
      assert.ok(performance.now() - t0 < 20);
      assert.equal(lines(path).length, 2);
      // Different arguments are a different call; the pool still serves.
      assert.equal(await pool.execute('add', { a: 1, b: 2 }), 3);
      assert.equal(pool.stats().poison.quarantined, 1);
    } finally {
      await pool.close();
    }
  });

  it('opens pool_operations when the backend keeps failing, fails fast, then closes through half-open trials', async () => {
    const flag = tempFile('down.flag');
    writeFileSync(flag, 'down');
    const pool = await testPool({
      workers: 2,
      // Long enough for the replacements to start on a loaded machine before a trial is let through.
      circuitBreaker: { failureThreshold: 3, successThreshold: 2, openTimeoutMs: 2_500, halfOpenRequests: 1 },
    });
    const transitions: string[] = [];
    const off = subscribe('circuit:opened', (p) => transitions.push(`opened:${p.circuit}`));
    const offClosed = subscribe('circuit:closed', (p) => transitions.push(`closed:${p.circuit}`));
    try {
      for (let i = 0; i < 3; i++) {
        const err = await rejection(pool.execute('die_while_flag', { flag, i }));
        assert.equal(err.code, 'PYFLEET_WORKER_CRASHED');
      }
      assert.equal(pool.stats().circuits.pool_operations.state, 'open');
      // Let the replacements finish starting: a spawn blocks the event loop for a few ms, which is not the fast path's cost.
      await until(() => pool.stats().workers.filter((w) => w.state === 'ready').length === 2);
      const times: number[] = [];
      let fast!: PoolError;
      for (let i = 0; i < 21; i++) {
        const t0 = performance.now();
        fast = await rejection(pool.execute('die_while_flag', { flag, i: 99 }));
        times.push(performance.now() - t0);
        assert.equal(fast.code, 'PYFLEET_CIRCUIT_OPEN');
      }
      const median = times.sort((a, b) => a - b)[10];
      assert.ok(median < 5, `failed fast in ${median.toFixed(2)} ms (median of 21)`);
      assert.match(fast.message, /will let a trial call through in \d+ ms/);
      rmSync(flag);
      // The circuit's own timer is the event here: wait out the open period it announced.
      await new Promise((r) => setTimeout(r, (fast.details?.retryAfterMs as number) + 20));
      assert.equal(await pool.execute('die_while_flag', { flag, i: 100 }), 'up');
      assert.equal(pool.stats().circuits.pool_operations.state, 'half_open');
      assert.equal(await pool.execute('die_while_flag', { flag, i: 101 }), 'up');
      assert.equal(pool.stats().circuits.pool_operations.state, 'closed');
      assert.ok(transitions.includes('opened:pool_operations') && transitions.includes('closed:pool_operations'));
    } finally {
      off();
      offClosed();
      await pool.close();
    }
  });

  it('a circuit opened because no worker could start half-opens as soon as one starts, not after openTimeoutMs', async () => {
    const flag = tempFile('import.flag');
    const pool = await testPool({
      module: path.join(FIXTURES, 'import_fails_while_flag.py'),
      env: { IMPORT_FAIL_FLAG: flag },
      circuitBreaker: { openTimeoutMs: 120_000, successThreshold: 1 },
    });
    try {
      const first = await pool.execute<number>('pid');
      const opened = new Promise<void>((resolve) => {
        const off = subscribe('circuit:opened', (p) => {
          if (p.circuit === 'pool_operations') {
            off();
            resolve();
          }
        });
      });
      writeFileSync(flag, 'down');
      process.kill(first, 'SIGKILL');
      await opened;
      const refused = await rejection(pool.execute('pid'));
      assert.equal(refused.code, 'PYFLEET_CIRCUIT_OPEN');
      assert.ok(pool.stats().errorsByCategory.initialization_error >= 1);
      rmSync(flag);
      // The supervisor keeps trying with backoff; its next start succeeds and lets a trial through.
      await until(() => pool.stats().circuits.pool_operations.state !== 'open', 30_000);
      const t0 = performance.now();
      const second = await pool.execute<number>('pid');
      assert.notEqual(second, first);
      assert.ok(performance.now() - t0 < 5_000);
      assert.equal(pool.stats().circuits.pool_operations.state, 'closed');
    } finally {
      await pool.close();
    }
  });

  it('Python exceptions do not open the infrastructure circuits', async () => {
    const pool = await testPool({ circuitBreaker: { failureThreshold: 2 } });
    try {
      for (let i = 0; i < 6; i++) assert.equal((await rejection(pool.execute('boom', {}))).code, 'PYFLEET_PYTHON_ERROR');
      const c = pool.stats().circuits;
      assert.equal(c.pool_operations.state, 'closed');
      assert.equal(c['worker_commands:boom'].state, 'closed');
      assert.equal(c['worker_commands:boom'].failures, 0);
    } finally {
      await pool.close();
    }
  });

  it('fails a Python error over to the fallback adapter and says so', async () => {
    const seen: Array<[string, unknown]> = [];
    const fallback: Adapter = {
      name: 'test-fallback',
      async execute(command, args) {
        seen.push([command, args]);
        return 'from fallback';
      },
    };
    const pool = await testPool({ fallback });
    try {
      const r = await pool.execute('boom', { k: 1 }, { detailed: true });
      assert.deepEqual({ value: r.value, via: r.via }, { value: 'from fallback', via: 'fallback' });
      assert.deepEqual(seen, [['boom', { k: 1 }]]);
      assert.equal(pool.stats().calls.viaFallback, 1);
      assert.equal(pool.stats().recoveries.byStrategy.failover.succeeded, 1);
    } finally {
      await pool.close();
    }
    const bare = await testPool();
    try {
      const err = await rejection(bare.execute('boom', {}));
      assert.equal(err.code, 'PYFLEET_PYTHON_ERROR', 'without a fallback the caller gets the original error');
    } finally {
      await bare.close();
    }
  });

  it('fails over to a single Python process (SingleProcessAdapter), which the pool closes with itself', async () => {
    const fallback = new SingleProcessAdapter({ module: `${FIXTURES}fallback.py`, logger: memoryLogger() });
    const pool = await testPool({ fallback });
    const r = await pool.execute<{ from: string; pid: number }>('boom', {}, { detailed: true });
    assert.equal(r.via, 'fallback');
    assert.equal(r.value.from, 'fallback');
    assert.ok(!pool.pids().includes(r.value.pid), 'answered by a process outside the pool');
    await pool.close();
    assert.equal(alive(r.value.pid), false);
  });

  it('fails over when the circuit is open', async () => {
    const flag = tempFile('down.flag');
    writeFileSync(flag, 'down');
    const pool = await testPool({ workers: 2, circuitBreaker: { failureThreshold: 2, openTimeoutMs: 60_000 }, fallback: (command) => `fallback:${command}` });
    try {
      for (let i = 0; i < 2; i++) await rejection(pool.execute('die_while_flag', { flag, i }));
      assert.equal(pool.stats().circuits.pool_operations.state, 'open');
      const r = await pool.execute('add', { a: 1, b: 2 }, { detailed: true });
      assert.deepEqual({ value: r.value, via: r.via }, { value: 'fallback:add', via: 'fallback' });
    } finally {
      await pool.close();
    }
  });

  it('retries a timed-out idempotent call with a larger timeout, through the orchestrator', async () => {
    const pool = await testPool({ recovery: { strategies: { timeout_error: { major: { type: 'retry_with_backoff', maxAttempts: 2, backoff: 'none', timeoutFactor: 4 } } } } });
    try {
      const timeouts: unknown[] = [];
      const off = pool.on('pool:error', (e) => timeouts.push(e.code));
      // Every attempt takes 600 ms: only a re-send whose timeout grew (300 x 4) can answer.
      const r = await pool.execute('sleep', { ms: 600 }, { timeoutMs: 300, detailed: true });
      off();
      assert.equal(r.value, 600);
      assert.equal(r.via, 'recovery');
      assert.equal(r.attempts, 2);
      assert.deepEqual(timeouts, ['PYFLEET_TIMEOUT'], 'the first attempt timed out, the re-send did not');
      const rec = pool.stats().recoveries;
      assert.equal(rec.byStrategy.retry_with_backoff.succeeded, 1);
      assert.equal(pool.stats().errorsByCategory.timeout_error, 1);
    } finally {
      await pool.close();
    }
  });

  it('a timed-out call that may not be re-sent fails at once; its worker, which acknowledged the cancel, stays', async () => {
    const pool = await testPool();
    try {
      const first = pool.stats().workers[0].pid;
      const err = await rejection(pool.execute('sleep', { ms: 5_000 }, { timeoutMs: 150, idempotent: false }));
      assert.equal(err.code, 'PYFLEET_TIMEOUT');
      assert.equal(err.strategy, 'abandon', 'not re-sent: the pool gave the call up');
      assert.equal(await pool.execute('add', { a: 1, b: 1 }), 2);
      const s = pool.stats();
      assert.equal(s.workers[0].pid, first);
      assert.equal(s.restarts.total, 0);
      assert.equal(s.recoveries.initiated, 0, 'nothing for the recovery to do');
    } finally {
      await pool.close();
    }
  });

  it('publishes pool:error and retry events with the decision', async () => {
    const pool = await testPool({ workers: 2 });
    const errors: Array<{ code: string; category: string; strategy: string; attempt: number }> = [];
    const off = pool.on('pool:error', (e) => errors.push(e));
    try {
      const path = tempFile('die-once.log');
      await pool.execute('die_once', { path, token: 'ev' });
      assert.equal(errors.length, 1);
      const { code, category, strategy, attempt } = errors[0];
      assert.deepEqual({ code, category, strategy, attempt }, { code: 'PYFLEET_WORKER_CRASHED', category: 'connection_error', strategy: 'backoff_retry', attempt: 1 });
    } finally {
      off();
      await pool.close();
    }
  });
});
