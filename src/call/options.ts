/**
 * The options of what happens to a call, the same for `createPool` and `connectFleet`: timeouts,
 * retries and their budget, circuits, the decision matrix, the recovery table, the fallback,
 * poison. Checked once here, with one set of messages.
 */
import type { Adapter } from '../adapters/adapter.js';
import { DEFAULTS } from '../defaults.js';
import { int, ms, show, type OptionChecks } from '../errors/invalid.js';
import { validatePolicyOverrides, type PolicyOverrides } from '../errors/policy.js';
import { isBackoffStrategy, type BackoffStrategy } from '../resilience/backoff.js';
import type { RetryBudgetOptions } from '../resilience/budget.js';
import type { RecoveryTableOverrides, RecoveryTimeLimits } from '../resilience/recovery/types.js';
import type { Logger } from '../util/logger.js';

export interface CircuitOptions {
  failureThreshold?: number;
  successThreshold?: number;
  openTimeoutMs?: number;
  halfOpenRequests?: number;
}

export interface CallOptions {
  /** Time for one attempt (default 30 000 ms); a command's `@command(timeout=S)` replaces it for that command. */
  requestTimeoutMs?: number;
  /** Time a call may wait for a worker or a host (default 5 000 ms). */
  queueTimeoutMs?: number;
  retry?: {
    /** Attempts per call, the first included (default 3, as the seed's `with_retry`). */
    maxAttempts?: number;
    /** Overrides the policy's per-category schedules with one backoff for every retry. */
    backoff?: BackoffStrategy;
    baseDelayMs?: number;
    maxDelayMs?: number;
    /** Retries allowed as a share of recent calls, plus a floor; `false` disables the budget. */
    budget?: false | Omit<RetryBudgetOptions, 'buckets' | 'clock'>;
  };
  circuitBreaker?: CircuitOptions;
  /** Per-category overrides of the decision matrix. */
  policy?: PolicyOverrides;
  /** Per-category, per-severity overrides of the recovery table, and time limits. */
  recovery?: { strategies?: RecoveryTableOverrides; timeLimits?: Partial<RecoveryTimeLimits> };
  /** Where failover sends a call: another pool, a fleet, a single process, or a function. */
  fallback?: Adapter | ((command: string, args: unknown) => unknown);
  /** Deaths a call may cause before it is quarantined, and for how long identical calls are refused. */
  poison?: { maxDeaths?: number; coolDownMs?: number };
  /** A pino-compatible logger (default: pino at `info` to stderr). */
  logger?: Logger;
}

export interface CallSettings {
  requestTimeoutMs: number;
  queueTimeoutMs: number;
  retry: {
    maxAttempts: number;
    backoff: BackoffStrategy | undefined;
    baseDelayMs: number;
    maxDelayMs: number;
    budget: false | { ratio: number; minRetriesPerSecond: number; windowMs: number };
  };
  circuitBreaker: Required<CircuitOptions>;
  policy: PolicyOverrides;
  recovery: { strategies?: RecoveryTableOverrides; timeLimits?: Partial<RecoveryTimeLimits> };
  fallback: CallOptions['fallback'];
  poison: { maxDeaths: number; coolDownMs: number };
  logger: Logger | undefined;
}

export const CALL_OPTION_KEYS = ['requestTimeoutMs', 'queueTimeoutMs', 'retry', 'circuitBreaker', 'policy', 'recovery', 'fallback', 'poison', 'logger'] as const;

/** Defaults that differ between the wings (a fleet's circuits are per host, so they trip sooner). */
export interface CallDefaults {
  requestTimeoutMs: number;
  queueTimeoutMs: number;
  maxAttempts: number;
  circuitBreaker: Required<CircuitOptions>;
}

export function resolveCallOptions(o: CallOptions & Record<string, unknown>, c: OptionChecks, d: CallDefaults): CallSettings {
  const rt = c.obj(o.retry, 'retry');
  c.onlyKeys(rt, 'retry', ['maxAttempts', 'backoff', 'baseDelayMs', 'maxDelayMs', 'budget']);
  const cb = c.obj(o.circuitBreaker, 'circuitBreaker');
  c.onlyKeys(cb, 'circuitBreaker', ['failureThreshold', 'successThreshold', 'openTimeoutMs', 'halfOpenRequests']);
  const po = c.obj(o.poison, 'poison');
  c.onlyKeys(po, 'poison', ['maxDeaths', 'coolDownMs']);
  const rec = c.obj(o.recovery, 'recovery');
  c.onlyKeys(rec, 'recovery', ['strategies', 'timeLimits']);
  if (rt.backoff !== undefined && !isBackoffStrategy(rt.backoff)) {
    c.fail(`retry.backoff must be 'linear', 'exponential', 'fibonacci', 'decorrelated_jitter' or a function, got ${show(rt.backoff)}`);
  }
  let budget: CallSettings['retry']['budget'] = false;
  if (rt.budget !== false) {
    const b = c.obj(rt.budget, 'retry.budget');
    c.onlyKeys(b, 'retry.budget', ['ratio', 'minRetriesPerSecond', 'windowMs']);
    const rb = DEFAULTS.retryBudget;
    budget = {
      ratio: c.num(b.ratio, rb.ratio, 'retry.budget.ratio', ms(0), 'a number >= 0'),
      minRetriesPerSecond: c.num(b.minRetriesPerSecond, rb.minRetriesPerSecond, 'retry.budget.minRetriesPerSecond', ms(0), 'a number >= 0'),
      windowMs: c.num(b.windowMs, rb.windowMs, 'retry.budget.windowMs', ms(1), 'a number of ms >= 1'),
    };
  }
  const fallback = o.fallback;
  if (fallback !== undefined && typeof fallback !== 'function' && (typeof fallback !== 'object' || fallback === null || typeof (fallback as Adapter).execute !== 'function')) {
    c.fail('fallback must be an Adapter (an object with execute(command, args)) or a function (command, args) => value');
  }
  const logger = o.logger;
  if (logger !== undefined && (typeof logger !== 'object' || logger === null || typeof logger.info !== 'function' || typeof logger.error !== 'function' || typeof logger.warn !== 'function')) {
    c.fail('logger must be pino-compatible (with info, warn and error methods)');
  }
  let policy: PolicyOverrides = {};
  try {
    policy = validatePolicyOverrides(o.policy);
  } catch (e) {
    c.fail(`policy: ${(e as Error).message}`);
  }
  const r = DEFAULTS.retry;
  return {
    requestTimeoutMs: c.num(o.requestTimeoutMs, d.requestTimeoutMs, 'requestTimeoutMs', ms(1), 'a number of ms >= 1'),
    queueTimeoutMs: c.num(o.queueTimeoutMs, d.queueTimeoutMs, 'queueTimeoutMs', ms(0), 'a number of ms >= 0'),
    retry: {
      maxAttempts: c.num(rt.maxAttempts, d.maxAttempts, 'retry.maxAttempts', int(1), 'an integer >= 1'),
      backoff: rt.backoff as BackoffStrategy | undefined,
      baseDelayMs: c.num(rt.baseDelayMs, r.baseDelayMs, 'retry.baseDelayMs', ms(0), 'a number of ms >= 0'),
      maxDelayMs: c.num(rt.maxDelayMs, r.maxDelayMs, 'retry.maxDelayMs', ms(0), 'a number of ms >= 0'),
      budget,
    },
    circuitBreaker: {
      failureThreshold: c.num(cb.failureThreshold, d.circuitBreaker.failureThreshold, 'circuitBreaker.failureThreshold', int(1), 'an integer >= 1'),
      successThreshold: c.num(cb.successThreshold, d.circuitBreaker.successThreshold, 'circuitBreaker.successThreshold', int(1), 'an integer >= 1'),
      openTimeoutMs: c.num(cb.openTimeoutMs, d.circuitBreaker.openTimeoutMs, 'circuitBreaker.openTimeoutMs', ms(0), 'a number of ms >= 0'),
      halfOpenRequests: c.num(cb.halfOpenRequests, d.circuitBreaker.halfOpenRequests, 'circuitBreaker.halfOpenRequests', int(1), 'an integer >= 1'),
    },
    policy,
    recovery: { strategies: rec.strategies as RecoveryTableOverrides | undefined, timeLimits: rec.timeLimits as Partial<RecoveryTimeLimits> | undefined },
    fallback,
    poison: {
      maxDeaths: c.num(po.maxDeaths, DEFAULTS.poison.maxDeaths, 'poison.maxDeaths', int(1), 'an integer >= 1'),
      coolDownMs: c.num(po.coolDownMs, DEFAULTS.poison.coolDownMs, 'poison.coolDownMs', ms(0), 'a number of ms >= 0'),
    },
    logger,
  };
}
