import { invalidOption } from '../errors/invalid.js';
import { PoolError } from '../errors/pool-error.js';
import { channels } from '../telemetry/channels.js';
import { realClock, type Clock } from '../util/clock.js';
import { DEFAULTS } from '../defaults.js';
import {
  ScheduleBackoff,
  createBackoff,
  isBackoffStrategy,
  type Backoff,
  type BackoffStrategy,
} from './backoff.js';
import type { RetryBudget } from './budget.js';

/**
 * What `shouldRetry` may answer: retry or not, retry after exactly `delayMs` (not capped by
 * `maxDelayMs`), or stop for a named reason (a caller that applies its own budget or attempt limit
 * says so in the `retry:exhausted` event).
 */
export type RetryDecision = boolean | { delayMs: number } | { stop: RetryStopReason };

/** Why a retry loop gave up (the `reason` of the `retry:exhausted` event). */
export type RetryStopReason = 'max_attempts' | 'max_retries' | 'not_retryable' | 'refused' | 'strategy' | 'not_idempotent' | 'poison' | 'session_lost' | 'stream_started' | 'closing' | 'deadline' | 'budget' | 'aborted';

export interface RetryOptions {
  /** Attempts in all, the first included (default 3). */
  maxAttempts?: number;
  /** Delay strategy (default 'exponential'). Ignored when `delays` is given. */
  backoff?: BackoffStrategy;
  /** Base delay for `backoff` (default 1000 ms, as the seed). */
  baseDelayMs?: number;
  /** Cap for every computed delay (default 30_000 ms). */
  maxDelayMs?: number;
  /** Explicit schedule: delay after failed attempt n is `delays[n - 1]`, the last one past the end. */
  delays?: readonly number[];
  /** Cancels the retry loop: a wait in progress ends at once with `PYFLEET_ABORTED`. Also passed to `fn`. */
  signal?: AbortSignal;
  /** Overall deadline in ms from the call, by `clock`: no retry starts whose delay would reach it. */
  deadlineMs?: number;
  /**
   * Decides whether to retry after failed attempt `attempt` (1-based). An object overrides the
   * delay for that retry. Default: retry unless the error says `retryable: false` (as `PoolError` does).
   */
  shouldRetry?: (err: unknown, attempt: number) => RetryDecision;
  /** Called just before waiting `delayMs` to retry after failed attempt `attempt`. */
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
  /** Shared budget: `recordCall()` per `retry()` call, `tryAcquireRetry()` before each retry. */
  budget?: RetryBudget;
  clock?: Clock;
  /** Uniform [0, 1) source for `decorrelated_jitter` (tests pass a seeded one). */
  random?: () => number;
  /** The pool the calls belong to, carried by the retry events (pools set it). */
  poolId?: number;
}

export type RetryFn<T> = (attempt: number, signal?: AbortSignal) => Promise<T>;

const NO_OPTIONS: RetryOptions = Object.freeze({});

/**
 * Runs `fn` until it resolves, retrying failures with backoff (the seed's `with_retry`).
 * `fn` gets the 1-based attempt number and the signal.
 *
 * Resolves with `fn`'s value. Rejects with the last error, unchanged, when attempts are used up,
 * `shouldRetry` says no, the budget refuses, or the next retry would cross the deadline; rejects
 * with a `PoolError` `PYFLEET_ABORTED` (cause: the signal's reason) when the signal aborts.
 *
 * The first attempt costs one `.then`: no timer, no listener, no clock read unless a deadline
 * or budget needs one. Everything else happens only after a failure.
 */
export function retry<T>(fn: RetryFn<T>, options: RetryOptions = NO_OPTIONS): Promise<T> {
  const signal = options.signal;
  if (signal !== undefined && signal.aborted) return Promise.reject(abortedError(signal, 0, undefined));
  if (options.budget !== undefined) options.budget.recordCall();
  const start = options.deadlineMs === undefined ? 0 : (options.clock ?? realClock).now();
  let p: Promise<T>;
  try {
    p = fn(1, signal);
  } catch (err) {
    return retryAfterFailure(fn, options, err, start);
  }
  return p.then(undefined, (err: unknown) => retryAfterFailure(fn, options, err, start));
}

/** Checks retry options once (e.g. when a pool is created), so mistakes surface before the first failure. */
export function validateRetryOptions(options: RetryOptions): void {
  const bad = (what: string) => {
    throw invalidOption(what, 'retry options');
  };
  const { maxAttempts, baseDelayMs, maxDelayMs, deadlineMs, delays, backoff } = options;
  if (maxAttempts !== undefined && !(Number.isInteger(maxAttempts) && maxAttempts >= 1)) bad(`maxAttempts must be an integer >= 1, got ${String(maxAttempts)}`);
  if (baseDelayMs !== undefined && !(baseDelayMs >= 0 && Number.isFinite(baseDelayMs))) bad(`baseDelayMs must be a finite number >= 0, got ${String(baseDelayMs)}`);
  if (maxDelayMs !== undefined && !(maxDelayMs >= 0)) bad(`maxDelayMs must be a number >= 0, got ${String(maxDelayMs)}`);
  if (deadlineMs !== undefined && !(deadlineMs >= 0)) bad(`deadlineMs must be a number >= 0, got ${String(deadlineMs)}`);
  if (backoff !== undefined && !isBackoffStrategy(backoff)) bad(`unknown backoff ${JSON.stringify(backoff)}`);
  if (delays !== undefined && !(Array.isArray(delays) && delays.every((d) => typeof d === 'number' && d >= 0))) bad('delays must be an array of numbers >= 0');
  if (options.shouldRetry !== undefined && typeof options.shouldRetry !== 'function') bad('shouldRetry must be a function');
  if (options.onRetry !== undefined && typeof options.onRetry !== 'function') bad('onRetry must be a function');
}

/** The retry loop proper, entered only after attempt 1 failed. */
async function retryAfterFailure<T>(fn: RetryFn<T>, o: RetryOptions, firstError: unknown, start: number): Promise<T> {
  validateRetryOptions(o);
  const maxAttempts = o.maxAttempts ?? DEFAULTS.retry.maxAttempts;
  const clock = o.clock ?? realClock;
  const signal = o.signal;
  const shouldRetry = o.shouldRetry ?? defaultShouldRetry;
  const maxDelayMs = o.maxDelayMs ?? DEFAULTS.retry.maxDelayMs;
  const backoff: Backoff =
    o.delays !== undefined
      ? new ScheduleBackoff(o.delays, maxDelayMs)
      : createBackoff(o.backoff ?? DEFAULTS.retry.backoff, { baseDelayMs: o.baseDelayMs ?? DEFAULTS.retry.baseDelayMs, maxDelayMs, random: o.random });

  let err = firstError;
  for (let attempt = 1; ; attempt++) {
    // `attempt` has just failed with `err`.
    if (attempt >= maxAttempts) throw exhausted(err, attempt, 'max_attempts', o.poolId);
    const decision = shouldRetry(err, attempt);
    if (decision === false) throw exhausted(err, attempt, 'not_retryable', o.poolId);
    if (typeof decision === 'object' && 'stop' in decision) throw exhausted(err, attempt, decision.stop, o.poolId);
    let delayMs: number;
    if (typeof decision === 'object' && decision !== null) {
      const d = Math.round(decision.delayMs);
      delayMs = d > 0 ? d : 0;
    } else {
      delayMs = backoff.next(attempt);
    }
    if (o.deadlineMs !== undefined && clock.now() - start + delayMs >= o.deadlineMs) throw exhausted(err, attempt, 'deadline', o.poolId);
    if (signal !== undefined && signal.aborted) throw abortExhausted(signal, attempt, err, o.poolId);
    if (o.budget !== undefined && !o.budget.tryAcquireRetry()) throw exhausted(err, attempt, 'budget', o.poolId);

    if (o.onRetry !== undefined) o.onRetry(err, attempt, delayMs);
    if (channels['retry:attempt'].hasSubscribers) {
      const e = { command: field(err, 'command'), attempt, delayMs, category: field(err, 'category'), code: field(err, 'code') };
      channels['retry:attempt'].publish(o.poolId === undefined ? e : { ...e, poolId: o.poolId });
    }
    if (delayMs > 0) {
      try {
        await sleep(delayMs, clock, signal);
      } catch {
        throw abortExhausted(signal!, attempt, err, o.poolId);
      }
    }
    try {
      return await fn(attempt + 1, signal);
    } catch (e) {
      err = e;
    }
  }
}

function defaultShouldRetry(err: unknown): boolean {
  return !(typeof err === 'object' && err !== null && (err as { retryable?: unknown }).retryable === false);
}

/** Publishes `retry:exhausted` and returns the error to throw (the last one, unchanged). */
function exhausted(err: unknown, attempts: number, reason: RetryStopReason, poolId: number | undefined): unknown {
  if (channels['retry:exhausted'].hasSubscribers) {
    const e = { command: field(err, 'command'), attempts, category: field(err, 'category'), code: field(err, 'code'), reason };
    channels['retry:exhausted'].publish(poolId === undefined ? e : { ...e, poolId });
  }
  return err;
}

function abortExhausted(signal: AbortSignal, attempts: number, lastError: unknown, poolId: number | undefined): PoolError {
  const e = abortedError(signal, attempts, lastError);
  exhausted(lastError, attempts, 'aborted', poolId);
  return e;
}

function abortedError(signal: AbortSignal, attempts: number, lastError: unknown): PoolError {
  const message =
    attempts === 0
      ? 'The call was aborted before its first attempt.'
      : `The call was aborted while waiting to retry, after ${attempts} failed attempt${attempts === 1 ? '' : 's'}; the last error is in details.lastError.`;
  return new PoolError({
    code: 'PYFLEET_ABORTED',
    message,
    attempt: attempts,
    cause: signal.reason,
    details: attempts === 0 ? undefined : { attempts, lastError },
  });
}

function field(err: unknown, key: 'command' | 'category' | 'code'): string | null {
  if (typeof err !== 'object' || err === null) return null;
  const v = (err as Record<string, unknown>)[key];
  return typeof v === 'string' ? v : null;
}

/** Waits `ms` on `clock`; rejects as soon as `signal` aborts, clearing the timer and the listener. */
export function sleep(ms: number, clock: Clock = realClock, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal === undefined) {
      clock.setTimeout(resolve, ms);
      return;
    }
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clock.clearTimeout(handle);
      reject(signal.reason);
    };
    const handle = clock.setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
