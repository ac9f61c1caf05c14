import { DEFAULTS } from '../defaults.js';
import { delayAt } from '../errors/policy.js';

/**
 * How long to wait before the next attempt. Pure arithmetic, no timers: `retry` owns the waiting.
 *
 * `attempt` is always the 1-based number of the attempt that just failed, as in the seed's
 * `calculate_delay(attempt, ...)`: after the first failure the exponential delay is `base`,
 * then `2 * base`, `4 * base`, ...
 */

/** A named strategy, or a function from the failed attempt's number to a delay in ms. */
export type BackoffStrategy =
  | 'none'
  | 'constant'
  | 'linear'
  | 'exponential'
  | 'fibonacci'
  | 'decorrelated_jitter'
  | ((attempt: number) => number);

export const BACKOFF_STRATEGIES = [
  'none',
  'constant',
  'linear',
  'exponential',
  'fibonacci',
  'decorrelated_jitter',
] as const;

export interface BackoffOptions {
  /** Base delay in ms (seed: 1000). */
  baseDelayMs?: number;
  /** Every delay is capped at this (seed: 30_000). */
  maxDelayMs?: number;
  /** Uniform [0, 1) source for `decorrelated_jitter`; defaults to `Math.random`. Tests pass a seeded one. */
  random?: () => number;
}

const DEFAULT_BASE_DELAY_MS = DEFAULTS.retry.baseDelayMs;
const DEFAULT_MAX_DELAY_MS = DEFAULTS.retry.maxDelayMs;

/** The n-th Fibonacci number with fib(1) = fib(2) = 1 (iterative; fib(0) = 0). */
export function fibonacci(n: number): number {
  if (n <= 0) return 0;
  let a = 0;
  let b = 1;
  for (let i = 1; i < n; i++) {
    const t = a + b;
    a = b;
    b = t;
  }
  return b;
}

/** Caps at `max`, rounds, and turns anything negative or not a number into 0. */
export function capDelay(d: number, max: number): number {
  if (!(d > 0)) return 0; // also catches NaN
  return Math.round(d < max ? d : max);
}

/**
 * Delay after failed attempt `attempt` for the deterministic strategies. `decorrelated_jitter`
 * depends on the previous delay: here it draws as if it were the first retry; use
 * `createBackoff` to get the per-call sequence.
 */
export function computeDelay(strategy: BackoffStrategy, attempt: number, options: BackoffOptions = {}): number {
  const base = options.baseDelayMs ?? DEFAULT_BASE_DELAY_MS;
  const max = options.maxDelayMs ?? DEFAULT_MAX_DELAY_MS;
  switch (strategy) {
    case 'none':
      return 0;
    case 'constant':
      return capDelay(base, max);
    case 'linear':
      return capDelay(attempt * base, max);
    case 'exponential':
      return capDelay(2 ** (attempt - 1) * base, max);
    case 'fibonacci':
      return capDelay(fibonacci(attempt) * base, max);
    case 'decorrelated_jitter':
      return jitterDraw(base, base, max, options.random ?? Math.random);
    default:
      if (typeof strategy === 'function') return capDelay(strategy(attempt), max);
      throw new TypeError(`Unknown backoff strategy ${JSON.stringify(strategy)}; use one of ${BACKOFF_STRATEGIES.join(', ')} or a function`);
  }
}

/** AWS "decorrelated jitter": min(max, random_between(base, last * 3)), never below base (unless max < base). */
function jitterDraw(base: number, last: number, max: number, random: () => number): number {
  const hi = last * 3;
  const d = hi > base ? base + random() * (hi - base) : base;
  return capDelay(d, max);
}

/** A per-call delay sequence. Stateful only for `decorrelated_jitter`; create one per `retry()` call. */
export interface Backoff {
  /** Delay after failed attempt `attempt` (1-based). */
  next(attempt: number): number;
}

class StatelessBackoff implements Backoff {
  constructor(
    private readonly strategy: BackoffStrategy,
    private readonly options: BackoffOptions,
  ) {}
  next(attempt: number): number {
    return computeDelay(this.strategy, attempt, this.options);
  }
}

/** Decorrelated jitter with its own memory of the last delay: two concurrent retries never share state. */
export class DecorrelatedJitterBackoff implements Backoff {
  private last: number;
  private readonly base: number;
  private readonly max: number;
  private readonly random: () => number;

  constructor(options: BackoffOptions = {}) {
    this.base = options.baseDelayMs ?? DEFAULT_BASE_DELAY_MS;
    this.max = options.maxDelayMs ?? DEFAULT_MAX_DELAY_MS;
    this.random = options.random ?? Math.random;
    this.last = this.base;
  }
  /** The previous delay this sequence returned (the base before the first). */
  get lastDelay(): number {
    return this.last;
  }
  next(_attempt: number): number {
    const d = jitterDraw(this.base, this.last, this.max, this.random);
    // Keep growing from the base even when a delay was 0 (base 0 stays 0).
    this.last = d > 0 ? d : this.base;
    return d;
  }
}

/** Delays from a fixed list (see `delayAt`), capped at `maxDelayMs` when given. */
export class ScheduleBackoff implements Backoff {
  constructor(
    private readonly delays: readonly number[],
    private readonly maxDelayMs: number = Infinity,
  ) {}
  next(attempt: number): number {
    return capDelay(delayAt(this.delays, attempt), this.maxDelayMs);
  }
}

/** A fresh delay sequence for one retry loop. */
export function createBackoff(strategy: BackoffStrategy, options: BackoffOptions = {}): Backoff {
  if (strategy === 'decorrelated_jitter') return new DecorrelatedJitterBackoff(options);
  if (typeof strategy !== 'function' && !(BACKOFF_STRATEGIES as readonly string[]).includes(strategy)) {
    throw new TypeError(`Unknown backoff strategy ${JSON.stringify(strategy)}; use one of ${BACKOFF_STRATEGIES.join(', ')} or a function`);
  }
  return new StatelessBackoff(strategy, options);
}

export function isBackoffStrategy(x: unknown): x is BackoffStrategy {
  return typeof x === 'function' || (typeof x === 'string' && (BACKOFF_STRATEGIES as readonly string[]).includes(x));
}
