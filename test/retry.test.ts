import { getEventListeners } from 'node:events';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PoolError } from '../src/errors/pool-error.js';
import { RETRY_DELAYS } from '../src/errors/policy.js';
import { RetryBudget } from '../src/resilience/budget.js';
import { retry, validateRetryOptions } from '../src/resilience/retry.js';
import { subscribe, type EventPayloads } from '../src/telemetry/channels.js';
import { FakeClock, flush } from './helpers/fake-clock.js';

/** Captures a promise's outcome right away, so a rejection is never unhandled while the clock moves. */
function outcome<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  return p.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
}

/** An fn that fails with the given errors, in order, then resolves with `value`. */
function failing<T>(errors: unknown[], value: T) {
  const attempts: number[] = [];
  const fn = (attempt: number) => {
    attempts.push(attempt);
    const e = errors[attempts.length - 1];
    return e === undefined ? Promise.resolve(value) : Promise.reject(e);
  };
  return { fn, attempts };
}

test('first attempt succeeds: one call, no timer, value passed through', async () => {
  const clock = new FakeClock();
  const { fn, attempts } = failing([], 'ok');
  assert.equal(await retry(fn, { clock }), 'ok');
  assert.deepEqual(attempts, [1]);
  assert.deepEqual(clock.scheduled, []);
  assert.equal(await retry(() => Promise.resolve(5)), 5, 'works without options');
});

test('resolves after N failures, waiting the backoff delays in between', async () => {
  const clock = new FakeClock();
  const { fn, attempts } = failing([new Error('a'), new Error('b')], 42);
  const r = outcome(retry(fn, { clock, maxAttempts: 3, baseDelayMs: 100 }));
  await clock.advance(99);
  assert.deepEqual(attempts, [1], 'still waiting the first 100 ms');
  await clock.advance(1);
  assert.deepEqual(attempts, [1, 2]);
  await clock.advance(200);
  assert.deepEqual(await r, { ok: true, value: 42 });
  assert.deepEqual(attempts, [1, 2, 3]);
  assert.deepEqual(clock.scheduled, [100, 200], 'exponential by default');
  assert.equal(clock.pending, 0);
});

test('exact delay sequences reach the timer for each strategy', async () => {
  for (const [backoff, expected] of [
    ['linear', [100, 200, 300, 400]],
    ['exponential', [100, 200, 400, 800]],
    ['fibonacci', [100, 100, 200, 300]],
  ] as const) {
    const clock = new FakeClock();
    const r = outcome(retry(() => Promise.reject(new Error('x')), { clock, backoff, baseDelayMs: 100, maxDelayMs: 350, maxAttempts: 5 }));
    await clock.advance(10_000);
    assert.equal((await r).ok, false);
    assert.deepEqual(clock.scheduled, expected.map((d) => Math.min(d, 350)), backoff);
  }
});

test('exhausted: rejects with the last error object, unchanged', async () => {
  const clock = new FakeClock();
  const errors = [new Error('first'), new Error('second'), new PoolError({ code: 'PYFLEET_TIMEOUT', message: 'third' })];
  const { fn, attempts } = failing(errors, 'never');
  const r = outcome(retry(fn, { clock, maxAttempts: 3, baseDelayMs: 10 }));
  await clock.advance(1000);
  const o = await r;
  assert.equal(o.ok, false);
  if (!o.ok) assert.equal(o.error, errors[2]);
  assert.equal((errors[2] as PoolError).attempt, 1, 'not modified');
  assert.deepEqual(attempts, [1, 2, 3]);
});

test('maxAttempts 1 means no retry', async () => {
  const err = new Error('once');
  const { fn, attempts } = failing([err], 0);
  await assert.rejects(retry(fn, { maxAttempts: 1, clock: new FakeClock() }), (e) => e === err);
  assert.deepEqual(attempts, [1]);
});

test('a synchronous throw from fn is a failed attempt', async () => {
  const clock = new FakeClock();
  let n = 0;
  const r = retry(
    () => {
      if (++n < 3) throw new Error('sync');
      return Promise.resolve('third time');
    },
    { clock, baseDelayMs: 1 },
  );
  await clock.advance(10);
  assert.equal(await r, 'third time');
});

test('shouldRetry false: stops at once with that error', async () => {
  const clock = new FakeClock();
  const err = new Error('fatal');
  const calls: [unknown, number][] = [];
  const { fn, attempts } = failing([err, err], 1);
  await assert.rejects(
    retry(fn, { clock, shouldRetry: (e, a) => (calls.push([e, a]), false) }),
    (e) => e === err,
  );
  assert.deepEqual(calls, [[err, 1]]);
  assert.deepEqual(attempts, [1]);
  assert.deepEqual(clock.scheduled, []);
});

test('default shouldRetry: errors with retryable false are not retried', async () => {
  const err = new PoolError({ code: 'PYFLEET_INVALID_ARGS', message: 'bad args' });
  assert.equal(err.retryable, false);
  const { fn, attempts } = failing([err], 1);
  await assert.rejects(retry(fn, { clock: new FakeClock() }), (e) => e === err);
  assert.deepEqual(attempts, [1]);
});

test('shouldRetry { delayMs } overrides the delay of that retry only', async () => {
  const clock = new FakeClock();
  const onRetry: number[] = [];
  const { fn } = failing([new Error('a'), new Error('b'), new Error('c')], 'done');
  const r = retry(fn, {
    clock,
    maxAttempts: 4,
    baseDelayMs: 100,
    shouldRetry: (_e, attempt) => (attempt === 2 ? { delayMs: 1234 } : true),
    onRetry: (_e, _a, d) => onRetry.push(d),
  });
  await clock.advance(5000);
  assert.equal(await r, 'done');
  assert.deepEqual(clock.scheduled, [100, 1234, 400]);
  assert.deepEqual(onRetry, [100, 1234, 400]);
});

test('onRetry gets the error, the failed attempt and the delay', async () => {
  const clock = new FakeClock();
  const e1 = new Error('1');
  const e2 = new Error('2');
  const seen: [unknown, number, number][] = [];
  const { fn } = failing([e1, e2], 'v');
  const r = retry(fn, { clock, backoff: 'linear', baseDelayMs: 50, onRetry: (e, a, d) => seen.push([e, a, d]) });
  await clock.advance(1000);
  assert.equal(await r, 'v');
  assert.deepEqual(seen, [
    [e1, 1, 50],
    [e2, 2, 100],
  ]);
});

test('explicit delays schedule overrides backoff; 0 means retry without a timer', async () => {
  const clock = new FakeClock();
  const seen: number[] = [];
  const r = outcome(
    retry(() => Promise.reject(new Error('x')), {
      clock,
      maxAttempts: 5,
      backoff: 'fibonacci',
      delays: RETRY_DELAYS.immediate_retry,
      onRetry: (_e, _a, d) => seen.push(d),
    }),
  );
  await clock.advance(10_000);
  assert.equal((await r).ok, false);
  assert.deepEqual(seen, [0, 100, 200, 200]);
  assert.deepEqual(clock.scheduled, [100, 200, 200]);
});

test('fn receives the attempt number and the signal', async () => {
  const clock = new FakeClock();
  const ac = new AbortController();
  const got: [number, AbortSignal | undefined][] = [];
  const r = retry(
    (attempt, signal) => {
      got.push([attempt, signal]);
      return attempt < 2 ? Promise.reject(new Error('x')) : Promise.resolve('ok');
    },
    { clock, signal: ac.signal, baseDelayMs: 5 },
  );
  await clock.advance(5);
  assert.equal(await r, 'ok');
  assert.deepEqual(got, [
    [1, ac.signal],
    [2, ac.signal],
  ]);
});

test('abort during the wait: rejects PYFLEET_ABORTED at once, timer cleared, no further attempt', async () => {
  const clock = new FakeClock();
  const ac = new AbortController();
  const last = new Error('backend down');
  const { fn, attempts } = failing([last, last, last], 'never');
  const r = outcome(retry(fn, { clock, signal: ac.signal, baseDelayMs: 60_000 }));
  await flush();
  assert.equal(clock.pending, 1, 'waiting for the retry');
  const reason = new Error('caller gave up');
  ac.abort(reason);
  await flush(); // no clock movement: it must not wait for the timer
  const o = await r;
  assert.equal(o.ok, false);
  if (!o.ok) {
    assert.ok(o.error instanceof PoolError);
    assert.equal(o.error.code, 'PYFLEET_ABORTED');
    assert.equal(o.error.cause, reason);
    assert.equal(o.error.details?.lastError, last);
  }
  assert.equal(clock.pending, 0, 'no timer left behind');
  await clock.advance(120_000);
  assert.deepEqual(attempts, [1]);
});

test('already aborted signal: no attempt at all', async () => {
  const ac = new AbortController();
  ac.abort();
  let called = false;
  await assert.rejects(
    retry(() => ((called = true), Promise.resolve(1)), { signal: ac.signal }),
    (e) => e instanceof PoolError && e.code === 'PYFLEET_ABORTED' && e.cause === ac.signal.reason,
  );
  assert.equal(called, false);
});

test('signal aborted while an attempt runs: no retry is started', async () => {
  const clock = new FakeClock();
  const ac = new AbortController();
  const { fn, attempts } = failing([new Error('x'), new Error('y')], 'v');
  const r = outcome(
    retry(
      (a) => {
        ac.abort('stop');
        return fn(a);
      },
      { clock, signal: ac.signal, delays: [0] },
    ),
  );
  const o = await r;
  assert.equal(o.ok, false);
  if (!o.ok) assert.equal((o.error as PoolError).code, 'PYFLEET_ABORTED');
  assert.deepEqual(attempts, [1]);
});

test('a signal that never aborts leaves no listener behind', async () => {
  const clock = new FakeClock();
  const ac = new AbortController();
  const { fn } = failing([new Error('x'), new Error('y')], 'v');
  const r = retry(fn, { clock, signal: ac.signal, baseDelayMs: 10 });
  await flush();
  assert.equal(getEventListeners(ac.signal, 'abort').length, 1, 'listening only while waiting');
  await clock.advance(100);
  assert.equal(await r, 'v');
  assert.equal(getEventListeners(ac.signal, 'abort').length, 0);
  assert.equal(clock.pending, 0);
});

test('deadline: no retry starts whose delay would reach it; rejects with the last error', async () => {
  const clock = new FakeClock();
  const errors = [new Error('e1'), new Error('e2'), new Error('e3')];
  const { fn, attempts } = failing(errors, 'never');
  const r = outcome(retry(fn, { clock, maxAttempts: 10, baseDelayMs: 100, deadlineMs: 250 }));
  await clock.advance(10_000);
  const o = await r;
  // t=0 fails, wait 100 (ends at 100 < 250); t=100 fails, next wait 200 would end at 300 >= 250.
  assert.deepEqual(attempts, [1, 2]);
  assert.deepEqual(clock.scheduled, [100]);
  assert.equal(o.ok, false);
  if (!o.ok) assert.equal(o.error, errors[1]);
});

test('deadline counts time from the call, including slow attempts', async () => {
  const clock = new FakeClock();
  const attempts: number[] = [];
  const r = outcome(
    retry(
      async (a) => {
        attempts.push(a);
        await new Promise((res) => clock.setTimeout(() => res(undefined), 400));
        throw new Error(`slow ${a}`);
      },
      { clock, maxAttempts: 10, backoff: 'constant', baseDelayMs: 100, deadlineMs: 1000 },
    ),
  );
  await clock.advance(10_000);
  // attempt 1 ends at 400, retry at 500; attempt 2 ends at 900, a retry at 1000 would reach the deadline.
  assert.deepEqual(attempts, [1, 2]);
  const o = await r;
  assert.equal(!o.ok && (o.error as Error).message, 'slow 2');
});

test('budget: records each call and denies retries beyond it', async () => {
  const clock = new FakeClock();
  const budget = new RetryBudget({ ratio: 0.5, minRetriesPerSecond: 0, clock });
  budget.recordCall(); // another call elsewhere; with this one: 2 calls, 1 retry allowed
  const errors = [new Error('e1'), new Error('e2'), new Error('e3')];
  const { fn, attempts } = failing(errors, 'never');
  const r = outcome(retry(fn, { clock, budget, maxAttempts: 5, baseDelayMs: 10 }));
  await clock.advance(1000);
  const o = await r;
  assert.deepEqual(attempts, [1, 2]);
  assert.equal(!o.ok && o.error, errors[1]);
  assert.deepEqual({ calls: budget.stats().calls, retries: budget.stats().retries, denied: budget.stats().denied }, { calls: 2, retries: 1, denied: 1 });
});

test('budget: an empty budget means the first failure is final', async () => {
  const budget = new RetryBudget({ ratio: 0, minRetriesPerSecond: 0, clock: new FakeClock() });
  const err = new Error('no budget');
  const { fn, attempts } = failing([err], 1);
  await assert.rejects(retry(fn, { budget, clock: new FakeClock() }), (e) => e === err);
  assert.deepEqual(attempts, [1]);
});

test('publishes retry:attempt and retry:exhausted with fields read off the error', async () => {
  const clock = new FakeClock();
  const got: { attempt: EventPayloads['retry:attempt'][]; exhausted: EventPayloads['retry:exhausted'][] } = { attempt: [], exhausted: [] };
  const off1 = subscribe('retry:attempt', (p) => got.attempt.push(p));
  const off2 = subscribe('retry:exhausted', (p) => got.exhausted.push(p));
  try {
    const pe = new PoolError({ code: 'PYFLEET_TIMEOUT', message: 't', command: 'predict' });
    const plain = new Error('plain');
    const r = outcome(retry(failing([pe, plain], 0).fn, { clock, maxAttempts: 2, baseDelayMs: 100 }));
    await clock.advance(1000);
    assert.deepEqual(await r, { ok: false, error: plain }, 'the last attempt\'s error, as it was thrown');
    assert.deepEqual(got.attempt, [{ command: 'predict', attempt: 1, delayMs: 100, category: 'timeout_error', code: 'PYFLEET_TIMEOUT' }]);
    assert.deepEqual(got.exhausted, [{ command: null, attempts: 2, category: null, code: null, reason: 'max_attempts' }]);

    got.exhausted.length = 0;
    const once = failing([pe], 0);
    await assert.rejects(retry(once.fn, { clock, shouldRetry: () => false }), (e) => e === pe);
    assert.deepEqual(once.attempts, [1], 'not retried');
    assert.deepEqual(got.exhausted, [{ command: 'predict', attempts: 1, category: 'timeout_error', code: 'PYFLEET_TIMEOUT', reason: 'not_retryable' }]);
  } finally {
    off1();
    off2();
  }
});

test('validateRetryOptions: bad options are PYFLEET_INVALID_OPTIONS', async () => {
  for (const bad of [{ maxAttempts: 0 }, { maxAttempts: 1.5 }, { baseDelayMs: -1 }, { backoff: 'nope' as never }, { delays: [1, -2] }, { deadlineMs: -5 }]) {
    assert.throws(() => validateRetryOptions(bad), (e) => e instanceof PoolError && e.code === 'PYFLEET_INVALID_OPTIONS', JSON.stringify(bad));
  }
  validateRetryOptions({ maxAttempts: 2, backoff: (a) => a, delays: [0, 1] });
  // retry() checks them once a retry is needed.
  await assert.rejects(retry(() => Promise.reject(new Error('x')), { maxAttempts: 0 }), (e) => e instanceof PoolError && e.code === 'PYFLEET_INVALID_OPTIONS');
});

test('many concurrent retry() calls settle independently', async () => {
  const clock = new FakeClock();
  const results = Array.from({ length: 50 }, (_, i) => {
    const { fn } = failing(Array.from({ length: i % 3 }, () => new Error('x')), i);
    return outcome(retry(fn, { clock, baseDelayMs: 10, backoff: 'decorrelated_jitter', random: Math.random }));
  });
  await clock.advance(10_000);
  const all = await Promise.all(results);
  assert.deepEqual(all, Array.from({ length: 50 }, (_, i) => ({ ok: true, value: i })));
  assert.equal(clock.pending, 0);
});

