import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RetryBudget } from '../src/resilience/budget.js';
import { FakeClock } from './helpers/fake-clock.js';

function take(b: RetryBudget, n: number): number {
  let granted = 0;
  for (let i = 0; i < n; i++) if (b.tryAcquireRetry()) granted++;
  return granted;
}

test('ratio: retries at most ratio * calls in the window', () => {
  const clock = new FakeClock();
  const b = new RetryBudget({ ratio: 0.2, minRetriesPerSecond: 0, clock });
  for (let i = 0; i < 10; i++) b.recordCall();
  assert.equal(take(b, 5), 2);
  assert.deepEqual(b.stats(), { calls: 10, retries: 2, allowed: 2, remaining: 0, denied: 3, ratio: 0.2, windowMs: 10_000, minRetries: 0 });
  for (let i = 0; i < 5; i++) b.recordCall();
  assert.equal(take(b, 5), 1, '15 calls allow 3 retries, 2 already taken');
  assert.equal(b.stats().denied, 7);
});

test('ratio: fractional allowances round down', () => {
  const b = new RetryBudget({ ratio: 0.2, minRetriesPerSecond: 0, clock: new FakeClock() });
  for (let i = 0; i < 4; i++) b.recordCall();
  assert.equal(b.tryAcquireRetry(), false, '4 * 0.2 = 0.8 < 1');
  b.recordCall();
  assert.equal(b.tryAcquireRetry(), true, '5 * 0.2 = 1');
  assert.equal(b.tryAcquireRetry(), false);
});

test('floor: minRetriesPerSecond * windowMs / 1000 retries even with no calls', () => {
  const clock = new FakeClock();
  const dflt = new RetryBudget({ clock });
  assert.equal(dflt.stats().minRetries, 100, 'defaults: 10/s over 10 s');
  assert.equal(take(dflt, 150), 100);

  const b = new RetryBudget({ ratio: 0.5, windowMs: 2000, minRetriesPerSecond: 1.5, clock });
  assert.equal(b.stats().minRetries, 3);
  for (let i = 0; i < 4; i++) b.recordCall();
  assert.equal(take(b, 10), 5, 'floor 3 + 0.5 * 4');
  assert.equal(b.stats().remaining, 0);
});

test('window slides bucket by bucket with the clock', async () => {
  const clock = new FakeClock();
  // 10 buckets of 1000 ms.
  const b = new RetryBudget({ ratio: 0.5, windowMs: 10_000, minRetriesPerSecond: 0, clock });
  for (let i = 0; i < 10; i++) b.recordCall(); // bucket [0, 1000)
  assert.equal(take(b, 10), 5);

  await clock.advance(5_000);
  for (let i = 0; i < 4; i++) b.recordCall(); // bucket [5000, 6000)
  assert.equal(take(b, 10), 2, '14 calls allow 7, 5 taken');
  assert.equal(b.stats().calls, 14);

  await clock.advance(4_999); // t = 9999: the first bucket is still in the window
  assert.equal(b.stats().calls, 14);
  assert.equal(b.tryAcquireRetry(), false);

  await clock.advance(1); // t = 10000: the first bucket (10 calls, 5 retries) falls out
  assert.deepEqual({ calls: b.stats().calls, retries: b.stats().retries }, { calls: 4, retries: 2 });
  assert.equal(b.tryAcquireRetry(), false, '4 calls allow 2, 2 taken');

  await clock.advance(5_000); // t = 15000: everything has left the window
  assert.deepEqual({ calls: b.stats().calls, retries: b.stats().retries }, { calls: 0, retries: 0 });

  await clock.advance(60_000); // a jump longer than the window clears all buckets at once
  b.recordCall();
  b.recordCall();
  assert.equal(take(b, 3), 1);
  assert.equal(b.stats().denied, 5 + 8 + 1 + 1 + 2, 'denied is cumulative, not windowed');
});

test('denied is cumulative and reset() forgets everything', () => {
  const b = new RetryBudget({ ratio: 0, minRetriesPerSecond: 0, clock: new FakeClock() });
  b.recordCall();
  assert.equal(take(b, 3), 0);
  assert.equal(b.stats().denied, 3);
  b.reset();
  assert.deepEqual(b.stats(), { calls: 0, retries: 0, allowed: 0, remaining: 0, denied: 0, ratio: 0, windowMs: 10_000, minRetries: 0 });
});

test('bad options are RangeErrors', () => {
  assert.throws(() => new RetryBudget({ ratio: -1 }), RangeError);
  assert.throws(() => new RetryBudget({ windowMs: 0 }), RangeError);
  assert.throws(() => new RetryBudget({ minRetriesPerSecond: Number.NaN }), RangeError);
  assert.throws(() => new RetryBudget({ buckets: 0 }), RangeError);
});

// ---- what mutation testing found untested (npm run mutate) ----

test('options: each bad one is a RangeError naming it; one bucket is enough', () => {
  const bad: Array<[object, string]> = [
    [{ ratio: -0.1 }, 'RetryBudget ratio must be a finite number >= 0, got -0.1'],
    [{ windowMs: 0 }, 'RetryBudget windowMs must be a finite number > 0, got 0'],
    [{ minRetriesPerSecond: -1 }, 'RetryBudget minRetriesPerSecond must be a finite number >= 0, got -1'],
    [{ minRetriesPerSecond: Infinity }, 'RetryBudget minRetriesPerSecond must be a finite number >= 0, got Infinity'],
    [{ buckets: 0 }, 'RetryBudget buckets must be an integer >= 1, got 0'],
  ];
  for (const [o, message] of bad) assert.throws(() => new RetryBudget({ clock: new FakeClock(), ...o }), (e: unknown) => e instanceof RangeError && e.message === message, message);
  const one = new RetryBudget({ buckets: 1, ratio: 0, minRetriesPerSecond: 0.1, windowMs: 10_000, clock: new FakeClock() });
  assert.equal(take(one, 2), 1);
});

test('remaining: what is left of the allowance', () => {
  const b = new RetryBudget({ ratio: 0.5, minRetriesPerSecond: 0, clock: new FakeClock() });
  for (let i = 0; i < 10; i++) b.recordCall();
  b.tryAcquireRetry();
  assert.equal(b.stats().remaining, 4);
});

test('a clock that does not start at 0: the window still slides, after a reset too', async () => {
  const clock = new FakeClock();
  await clock.advance(123_456);
  const b = new RetryBudget({ ratio: 1, minRetriesPerSecond: 0, windowMs: 10_000, clock });
  for (let i = 0; i < 4; i++) b.recordCall();
  assert.equal(b.stats().calls, 4);
  await clock.advance(10_000);
  assert.equal(b.stats().calls, 0, 'calls older than the window are forgotten');
  await clock.advance(5_555);
  b.reset();
  b.recordCall();
  await clock.advance(10_000);
  assert.equal(b.stats().calls, 0, 'and after a reset at any time');
});

test('a jump of many windows forgets everything at once', async () => {
  const clock = new FakeClock();
  const b = new RetryBudget({ ratio: 1, minRetriesPerSecond: 0, windowMs: 10_000, clock });
  for (let i = 0; i < 5; i++) b.recordCall();
  b.tryAcquireRetry();
  await clock.advance(1e15);
  assert.deepEqual([b.stats().calls, b.stats().retries], [0, 0]);
  assert.equal(b.tryAcquireRetry(), false);
});

test('a clock that goes back counts in the newest bucket, and forgets nothing when it comes forward again', () => {
  let t = 50_000;
  const clock = { now: () => t, setTimeout: () => 0, clearTimeout: () => {} };
  const b = new RetryBudget({ ratio: 1, minRetriesPerSecond: 0, windowMs: 10_000, clock });
  for (let i = 0; i < 3; i++) b.recordCall();
  t = 47_000;
  b.recordCall();
  assert.equal(b.stats().calls, 4);
  t = 50_500;
  assert.equal(b.stats().calls, 4, 'nothing fell out of the window');
});

test('times before 0 (a clock of its own) count like any other', () => {
  let t = -25_000;
  const clock = { now: () => t, setTimeout: () => 0, clearTimeout: () => {} };
  const b = new RetryBudget({ ratio: 1, minRetriesPerSecond: 0, windowMs: 10_000, clock });
  b.recordCall();
  b.recordCall();
  assert.equal(take(b, 3), 2);
  t = -24_000;
  b.recordCall();
  assert.deepEqual([b.stats().calls, b.stats().retries], [3, 2]);
  t = -14_500;
  assert.deepEqual([b.stats().calls, b.stats().retries], [1, 0], 'the first second fell out of the window');
});
