import { test } from 'node:test';
import { RETRY_DELAYS, delayAt } from '../src/errors/policy.js';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  DecorrelatedJitterBackoff,
  ScheduleBackoff,
  computeDelay,
  createBackoff,
  fibonacci,
  type BackoffStrategy,
} from '../src/resilience/backoff.js';
import { retry } from '../src/resilience/retry.js';
import { FakeClock } from './helpers/fake-clock.js';

/** Deterministic [0, 1) generator (mulberry32). */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function seq(strategy: BackoffStrategy, n: number, baseDelayMs: number, maxDelayMs = 30_000): number[] {
  const b = createBackoff(strategy, { baseDelayMs, maxDelayMs });
  return Array.from({ length: n }, (_, i) => b.next(i + 1));
}

test('linear: attempt * base, capped at maxDelay', () => {
  assert.deepEqual(seq('linear', 5, 100), [100, 200, 300, 400, 500]);
  assert.deepEqual(seq('linear', 5, 100, 250), [100, 200, 250, 250, 250]);
});

test('exponential: 2^(attempt-1) * base, capped at maxDelay', () => {
  assert.deepEqual(seq('exponential', 6, 100), [100, 200, 400, 800, 1600, 3200]);
  assert.deepEqual(seq('exponential', 6, 100, 1000), [100, 200, 400, 800, 1000, 1000]);
  // Huge attempt numbers overflow to Infinity and are capped, never NaN.
  assert.equal(computeDelay('exponential', 5000, { baseDelayMs: 100, maxDelayMs: 7000 }), 7000);
});

test('fibonacci: fib(attempt) * base, iterative, capped at maxDelay', () => {
  assert.deepEqual(seq('fibonacci', 8, 100), [100, 100, 200, 300, 500, 800, 1300, 2100]);
  assert.deepEqual(seq('fibonacci', 8, 100, 600), [100, 100, 200, 300, 500, 600, 600, 600]);
  assert.deepEqual([0, 1, 2, 3, 4, 5, 10].map(fibonacci), [0, 1, 1, 2, 3, 5, 55]);
  assert.equal(fibonacci(70), 190392490709135); // recursion would never finish
  assert.equal(computeDelay('fibonacci', 1000, { baseDelayMs: 100, maxDelayMs: 9000 }), 9000);
});

test('none is 0, constant is the base delay', () => {
  assert.deepEqual(seq('none', 3, 100), [0, 0, 0]);
  assert.deepEqual(seq('constant', 3, 100), [100, 100, 100]);
  assert.deepEqual(seq('constant', 2, 100, 40), [40, 40]);
});

test('custom function: gets the attempt, result rounded and capped; negative or NaN gives 0', () => {
  const seen: number[] = [];
  const f = (a: number) => {
    seen.push(a);
    return a * 333.4;
  };
  assert.deepEqual(seq(f, 4, 100, 1000), [333, 667, 1000, 1000]);
  assert.deepEqual(seen, [1, 2, 3, 4]);
  assert.equal(computeDelay(() => -5, 1), 0);
  assert.equal(computeDelay(() => Number.NaN, 1), 0);
});

test('defaults are the seed numbers: base 1000, max 30000', () => {
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6].map((a) => computeDelay('exponential', a)),
    [1000, 2000, 4000, 8000, 16000, 30000],
  );
});

test('unknown strategy is a clear TypeError', () => {
  assert.throws(() => createBackoff('quadratic' as BackoffStrategy), /Unknown backoff strategy "quadratic"/);
  assert.throws(() => computeDelay('quadratic' as BackoffStrategy, 1), TypeError);
});

test('decorrelated jitter: base <= d <= min(max, 3 * last) over many draws', () => {
  for (const [base, max] of [
    [100, 5000],
    [100, 250],
    [7, 1_000_000],
  ]) {
    const b = new DecorrelatedJitterBackoff({ baseDelayMs: base, maxDelayMs: max, random: seeded(42 + base) });
    let last = base;
    let sawBelowCap = false;
    for (let i = 1; i <= 10_000; i++) {
      const d = b.next(i);
      assert.ok(Number.isInteger(d), `integer delay, got ${d}`);
      assert.ok(d >= base, `draw ${i}: ${d} < base ${base}`);
      assert.ok(d <= Math.min(max, 3 * last), `draw ${i}: ${d} > min(${max}, 3*${last})`);
      if (d < max) sawBelowCap = true;
      last = d;
    }
    assert.ok(sawBelowCap, 'draws are spread out, not stuck at the cap');
  }
});

test('decorrelated jitter: extremes of random() give base and 3 * last', () => {
  const lo = new DecorrelatedJitterBackoff({ baseDelayMs: 100, maxDelayMs: 10_000, random: () => 0 });
  assert.deepEqual([1, 2, 3].map((a) => lo.next(a)), [100, 100, 100]);
  const hi = new DecorrelatedJitterBackoff({ baseDelayMs: 100, maxDelayMs: 10_000, random: () => 0.9999999 });
  assert.deepEqual([1, 2, 3, 4, 5].map((a) => hi.next(a)), [300, 900, 2700, 8100, 10_000]);
});

test('decorrelated jitter: each sequence has its own state', () => {
  const a = createBackoff('decorrelated_jitter', { baseDelayMs: 100, maxDelayMs: 10_000, random: () => 0.9999999 });
  const b = createBackoff('decorrelated_jitter', { baseDelayMs: 100, maxDelayMs: 10_000, random: () => 0.9999999 });
  assert.equal(a.next(1), 300);
  assert.equal(a.next(2), 900);
  assert.equal(b.next(1), 300, 'b starts from the base, not from a\'s last delay');
});

test('decorrelated jitter: two concurrent retry() calls do not share state', async () => {
  async function run(concurrentWithOther: boolean): Promise<number[]> {
    const clock = new FakeClock();
    const delaysA: number[] = [];
    const fail = () => Promise.reject(new Error('boom'));
    const common = { maxAttempts: 8, backoff: 'decorrelated_jitter' as const, baseDelayMs: 100, maxDelayMs: 20_000, clock };
    const a = retry(fail, { ...common, random: seeded(7), onRetry: (_e, _a, d) => delaysA.push(d) });
    const ra = assert.rejects(a, /boom/);
    const rb = concurrentWithOther ? assert.rejects(retry(fail, { ...common, random: seeded(99) }), /boom/) : undefined;
    await clock.advance(1_000_000);
    await ra;
    await rb;
    return delaysA;
  }
  const alone = await run(false);
  const together = await run(true);
  assert.equal(alone.length, 7);
  assert.deepEqual(together, alone);
});

test('the seed lists (one table, RETRY_DELAYS in errors/policy); delayAt repeats the last element beyond the end', () => {
  assert.deepEqual(RETRY_DELAYS.immediate_retry, [0, 100, 200]);
  assert.deepEqual(RETRY_DELAYS.backoff_retry, [1000, 2000, 4000, 8000, 16000]);
  assert.deepEqual(RETRY_DELAYS.exponential, [1000, 3000, 9000, 27000]);
  assert.ok(Object.isFrozen(RETRY_DELAYS.backoff_retry));
  const list = RETRY_DELAYS.backoff_retry;
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 100].map((a) => delayAt(list, a)), [1000, 2000, 4000, 8000, 16000, 16000, 16000, 16000]);
  assert.equal(delayAt(RETRY_DELAYS.immediate_retry, 1), 0);
  assert.equal(delayAt(RETRY_DELAYS.exponential, 9), 27000);
  assert.equal(delayAt([], 3), 0);
  assert.equal(delayAt([5, 6], 0), 5);
  assert.deepEqual([1, 2, 3, 4].map((a) => new ScheduleBackoff(RETRY_DELAYS.exponential, 10_000).next(a)), [1000, 3000, 9000, 10_000]);
});

test('property: every strategy gives an integer in [0, maxDelay] for any attempt', () => {
  const strategies: BackoffStrategy[] = ['none', 'constant', 'linear', 'exponential', 'fibonacci', 'decorrelated_jitter', (a) => a * 1.7 - 3];
  fc.assert(
    fc.property(
      fc.constantFrom(...strategies),
      fc.integer({ min: 0, max: 100_000 }),
      fc.integer({ min: 0, max: 1_000_000 }),
      fc.array(fc.integer({ min: 1, max: 10_000 }), { minLength: 1, maxLength: 20 }),
      fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
      (strategy, base, max, attempts, r) => {
        const b = createBackoff(strategy, { baseDelayMs: base, maxDelayMs: max, random: () => r });
        for (const a of attempts) {
          const d = b.next(a);
          if (!(Number.isInteger(d) && d >= 0 && d <= max)) return false;
        }
        return true;
      },
    ),
  );
});

// ---- what mutation testing found untested (npm run mutate) ----

test('computeDelay: decorrelated jitter draws as a first retry would; an unknown strategy is named with the known ones', () => {
  assert.equal(computeDelay('decorrelated_jitter', 1, { baseDelayMs: 100, maxDelayMs: 10_000, random: () => 0.5 }), 200, 'between base and 3 x base');
  assert.equal(computeDelay('decorrelated_jitter', 7, { baseDelayMs: 100, maxDelayMs: 150, random: () => 0.99 }), 150, 'capped');
  const d = computeDelay('decorrelated_jitter', 1, { baseDelayMs: 100 });
  assert.ok(d >= 100 && d <= 300, `Math.random by default: ${d}`);
  const known = 'none, constant, linear, exponential, fibonacci, decorrelated_jitter';
  assert.throws(() => computeDelay('nope' as never, 1), (e: unknown) => e instanceof TypeError && e.message === `Unknown backoff strategy "nope"; use one of ${known} or a function`);
  assert.throws(() => createBackoff('nope' as never), (e: unknown) => e instanceof TypeError && e.message === `Unknown backoff strategy "nope"; use one of ${known} or a function`);
});

test('DecorrelatedJitterBackoff remembers its last delay, starting from the base', () => {
  const b = new DecorrelatedJitterBackoff({ baseDelayMs: 100, maxDelayMs: 10_000, random: () => 1 });
  assert.equal(b.lastDelay, 100);
  assert.equal(b.next(1), 300);
  assert.equal(b.lastDelay, 300);
  assert.equal(b.next(2), 900);
});
