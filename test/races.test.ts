import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PoisonTracker } from '../src/call/poison.js';
import { FAST_POLICY, lines, nextPoolEvent, rejection, tempFile, testPool, until } from './helpers/pool.js';

describe('races and leaks', () => {
  it('an answer that arrives after the grace kill is not a protocol error', async () => {
    // The first call of a fresh pool: its request id on the wire is 1, which the fixture's child answers.
    const pool = await testPool({ cancelGraceMs: 200 });
    try {
      const exited = nextPoolEvent(pool, 'worker:exit');
      const err = await rejection(pool.execute('answer_after_kill', {}, { timeoutMs: 100 }));
      const cancelledAt = performance.now();
      assert.equal(err.code, 'PYFLEET_TIMEOUT');
      // Killed when the grace ran out (the late answer then comes while the pipe drains), not seconds later.
      const killedAfter = (await exited).at - cancelledAt;
      assert.ok(killedAfter >= 150 && killedAfter < 2_200, `killed ${Math.round(killedAfter)} ms after the cancel (cancelGraceMs 200)`);
      await until(() => pool.stats().restarts.total === 1 && pool.stats().workers.some((w) => w.state === 'ready'));
      const s = pool.stats();
      assert.deepEqual(s.restarts.byReason, { cancel_timeout: 1 });
      assert.ok(!pool.logs.some((l) => /broke the protocol/.test(l.msg)), 'no protocol error was logged');
      assert.equal(s.errorsByCategory.communication_error, 0);
    } finally {
      await pool.close();
    }
  });

  it('the call given up on but still running is blamed for the death, not the innocent call pipelined behind it', async () => {
    const pool = await testPool({ workers: 1, pipelineDepth: 2, poison: { maxDeaths: 1 }, cancelGraceMs: 5_000 });
    try {
      const ac = new AbortController();
      const deaf = tempFile('deaf.log');
      const guilty = pool.execute('abandon_then_die', { ms: 300, path: deaf }, { signal: ac.signal });
      await until(() => lines(deaf).length === 1);
      const innocent = pool.execute<number>('sleep', { ms: 1 });
      await until(() => pool.stats().workers[0]?.inflight === 2);
      ac.abort();
      assert.equal((await rejection(guilty)).code, 'PYFLEET_ABORTED');
      // The worker dies on its own while running the abandoned call: the pipelined one is re-sent.
      assert.equal(await innocent, 1);
      assert.equal(pool.stats().poison.quarantined, 1);
      const again = await rejection(pool.execute('abandon_then_die', { ms: 300, path: deaf }));
      assert.equal(again.code, 'PYFLEET_POISON_CALL', 'the abandoned call was the one quarantined');
    } finally {
      await pool.close();
    }
  });

  it('closeSession while the session\'s call is queued: the call runs first, then the state is dropped, and no count leaks', async () => {
    const pool = await testPool({ workers: 1 });
    try {
      const s = pool.session('s1');
      const first = s.execute('remember', { x: 1 });
      const second = s.execute('recall', {});
      const closed = s.close();
      assert.equal(await second, 1, 'made before the close: it ran in the session');
      await first;
      await closed;
      const st = pool.stats();
      assert.equal(st.sessions.total, 0);
      assert.equal(st.workers[0].sessions, 0, 'the worker no longer counts the session');
      // A call made after the close starts a new, empty session.
      assert.equal(await s.execute('recall', {}), null);
    } finally {
      await pool.close();
    }
  });

  it('an abort during the recovery rejects with PYFLEET_ABORTED', async () => {
    const pool = await testPool();
    try {
      const ac = new AbortController();
      const retried = new Promise<void>((resolve) => {
        const off = pool.on('pool:error', (e) => {
          if (e.code === 'PYFLEET_TIMEOUT') {
            off();
            resolve();
          }
        });
      });
      const p = pool.execute('sleep', { ms: 2_000 }, { timeoutMs: 150, signal: ac.signal });
      await retried;
      // The recovery's re-send (timeout 300 ms) is running now.
      await until(() => pool.stats().recoveries.active === 1);
      ac.abort();
      const err = await rejection(p);
      assert.equal(err.code, 'PYFLEET_ABORTED');
    } finally {
      await pool.close();
    }
  });

  it('invalid UTF-8 in a frame is a communication_error, not a value with U+FFFD in it', async () => {
    const pool = await testPool({ workers: 1 });
    try {
      const err = await rejection(pool.execute('bad_utf8', {}, { idempotent: false }));
      assert.equal(err.code, 'PYFLEET_PROTOCOL_ERROR');
      assert.equal(err.category, 'communication_error');
      assert.match(err.message, /UTF-8/);
    } finally {
      await pool.close();
    }
  });

  it('writes respect the pipe\'s backpressure: a worker whose pipe is full is given nothing more', async () => {
    const pool = await testPool({ workers: 1, pipelineDepth: 20, policy: FAST_POLICY });
    try {
      const blob = 'x'.repeat(1 << 20);
      let maxInflight = 0;
      let maxQueued = 0;
      const calls = Array.from({ length: 12 }, () => pool.execute<number>('sleep_big', { ms: 50, blob }));
      const watch = setInterval(() => {
        const s = pool.stats();
        maxInflight = Math.max(maxInflight, s.workers[0]?.inflight ?? 0);
        maxQueued = Math.max(maxQueued, s.queue.length);
      }, 5);
      try {
        assert.deepEqual(await Promise.all(calls), calls.map(() => blob.length));
      } finally {
        clearInterval(watch);
      }
      assert.ok(maxInflight < 12, `${maxInflight} frames of 1 MiB were written to one pipe at once`);
      assert.ok(maxQueued > 0, 'the rest waited in the queue');
    } finally {
      await pool.close();
    }
  });
});

describe('poison and quarantine entries expire', () => {
  it('deaths are forgotten after their memory and quarantines after their cool-down', () => {
    let now = 0;
    const t = new PoisonTracker(2, 1_000, () => now);
    t.recordDeath('a');
    t.recordDeath('b');
    assert.equal(t.remembered, 2);
    now = 59_999;
    t.purge();
    assert.equal(t.remembered, 2);
    now = 60_000;
    t.purge();
    assert.equal(t.remembered, 0, 'a death is remembered for max(coolDownMs, 60 s)');
    t.recordDeath('c');
    assert.equal(t.recordDeath('c'), true);
    assert.equal(t.size, 1);
    now += 1_000;
    t.purge();
    assert.equal(t.size, 0, 'the quarantine ended and its entry is gone without anyone asking for it');
    assert.equal(t.active, false);
  });

  it('several identical calls on one worker that died are one death, not several', () => {
    const t = new PoisonTracker(2, 1_000, () => 0);
    assert.equal(t.recordDeath('k', 7), false);
    assert.equal(t.recordDeath('k', 7), false, 'the same worker\'s death again');
    assert.equal(t.size, 0);
    assert.equal(t.recordDeath('k', 8), true, 'present at a second death: quarantined');
  });
});

describe('per-call backoff state', () => {
  it('decorrelated jitter: each call keeps its own previous delay', async () => {
    const { nextRetryDelay } = await import('../src/call/policy.js');
    const { Call } = await import('../src/call/call.js');
    const mk = (id: number) =>
      new Call({ id, command: 'c', info: { idempotent: true, kind: 'sync', stream: false, timeout: null, maxConcurrency: null, session: 'rw' }, args: null, argsJson: 'null', sessionId: null, idempotent: true, timeoutMs: 1_000, signal: undefined, detailed: false });
    const retry = { backoff: 'decorrelated_jitter' as const, baseDelayMs: 10, maxDelayMs: 100_000 };
    const top = () => 0.999_999;
    const a = mk(1);
    const b = mk(2);
    // Alone, a call's delays grow: 3x the previous one at most (random near 1).
    const solo = mk(9);
    const alone = [1, 2, 3].map((n) => nextRetryDelay(solo, n, retry, top));
    assert.deepEqual(alone, [30, 90, 270]);
    // Interleaved with another call, each grows from its own previous delay.
    const seq: number[] = [];
    for (const n of [1, 2, 3]) {
      seq.push(nextRetryDelay(a, n, retry, top));
      nextRetryDelay(b, n, retry, top);
    }
    assert.deepEqual(seq, alone);
  });
});
