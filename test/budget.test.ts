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
