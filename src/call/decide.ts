import type { RecoveryStrategy, Severity } from '../errors/categories.js';
import { ERROR_CODES } from '../errors/codes.js';
import type { ErrorPolicy } from '../errors/policy.js';
import type { PoolError } from '../errors/pool-error.js';
import type { RecoveryPlan } from '../resilience/recovery/types.js';
import type { RetryStopReason } from '../resilience/retry.js';

/** What follows a failed attempt: the steps of the call core (first attempt, retry, re-send, fallback). */
export type Next =
  /** Send the call again, after `delayMs` (in place, or to another member). */
  | { kind: 'retry'; delayMs: number; afterDeath: boolean }
  /** Re-send it with a larger timeout (the recovery's retry_with_backoff plan). */
  | { kind: 'resend'; plan: RecoveryPlan }
  /** Send it to the fallback: a Python error by the recovery's failover plan, an open circuit at once (no plan). */
  | { kind: 'fallback'; plan: RecoveryPlan | null }
  /** Give up: the caller gets the error. */
  | { kind: 'stop'; reason: RetryStopReason };

export interface Decision {
  next: Next;
  severity: Severity;
  /** What the pool does about this failure, as `PoolError.strategy` says it. */
  strategy: RecoveryStrategy;
}

/** Everything the decision depends on, so it can be tested without a pool. */
export interface DecisionInput {
  err: PoolError;
  /** The number of the attempt that failed. */
  attempt: number;
  maxAttempts: number;
  idempotent: boolean;
  affectingAllWorkers: boolean;
  closing: boolean;
  poisoned: boolean;
  /** A stream whose first item arrived: it is never sent again. */
  streamStarted: boolean;
  hasFallback: boolean;
  /** A member other than the one that failed can take the call now. */
  freeWorkerElsewhere: boolean;
  /** Nothing ran, and another member than the one that refused it can take it (a fleet's hosts: the codes table's movableUntaken). */
  movable: boolean;
  /** The call already had its one immediate re-send after a worker death. */
  resentAfterDeath: boolean;
  /** The configured backoff's delay for this retry; undefined: the matrix's schedule. */
  backoffDelay: (() => number) | undefined;
  maxDelayMs: number;
  /** Takes one retry from the retry budget; false when the budget refuses. */
  acquireRetry: () => boolean;
  /** The recovery the table names for this error. */
  plan: () => RecoveryPlan;
}

/**
 * The decision matrix applied to one failed attempt, with the pool's own rules on top:
 *  - a refusal (bad input, a full or timed-out queue, an open circuit: the codes table's
 *    `strategy: 'abandon'`) is never retried, and says `abandon`;
 *  - a call a member refused without running it goes at once to another member, if there is one;
 *  - a timeout is never retried in place: it is re-sent with a larger timeout when the recovery
 *    table says so and it may be re-sent (idempotent), else the caller gets it at once;
 *  - `retry.maxAttempts` bounds every attempt of a call, re-sends included;
 *  - a retry in place needs the matrix's yes (retryable, immediate/backoff strategy, within
 *    maxRetries, idempotent once a worker took it), `retry.maxAttempts` and the retry budget;
 *  - the first re-send after a worker death goes at once to another free worker (a dead worker is
 *    not a struggling backend); backoff applies from the next failure, or when no worker is free;
 *  - a stream is re-sent only before its first item;
 *  - after retries: a Python error goes to the fallback by the recovery's plan (idempotent calls
 *    only), an open circuit straight to the fallback; otherwise the call fails.
 */
export function decideNext(policy: ErrorPolicy, i: DecisionInput): Decision {
  const { err } = i;
  const d = policy.decide(err, { attempt: i.attempt, affectingAllWorkers: i.affectingAllWorkers, idempotent: i.idempotent });
  const severity = d.severity;
  const facts = ERROR_CODES[err.code];
  const stop = (reason: RetryStopReason): Decision => ({ next: { kind: 'stop', reason }, severity, strategy: 'abandon' });
  if (i.closing) return stop('closing');
  if (i.poisoned) return stop('poison');
  if (i.streamStarted) return stop('stream_started');

  const more = i.attempt < i.maxAttempts;
  if (i.movable && more) return { next: { kind: 'retry', delayMs: 0, afterDeath: false }, severity, strategy: 'immediate_retry' };

  if (err.code === 'PYFLEET_TIMEOUT') {
    const plan = i.plan();
    if (plan.type === 'retry_with_backoff') return more ? { next: { kind: 'resend', plan }, severity, strategy: 'backoff_retry' } : stop('max_attempts');
    return stop(plan.insteadOf !== undefined ? 'not_idempotent' : 'strategy');
  }

  let reason: RetryStopReason = facts.strategy === 'abandon' ? 'refused' : d.reason === 'retry' ? 'max_attempts' : d.reason;
  if (d.retry && facts.strategy === null && more) {
    const afterDeath = facts.movableTaken && !i.resentAfterDeath && i.freeWorkerElsewhere;
    if (i.acquireRetry()) {
      const delayMs = afterDeath ? 0 : (i.backoffDelay?.() ?? Math.min(d.delayMs, i.maxDelayMs));
      return { next: { kind: 'retry', delayMs, afterDeath }, severity, strategy: d.strategy };
    }
    reason = 'budget';
  }

  if (i.hasFallback) {
    if (err.code === 'PYFLEET_CIRCUIT_OPEN') return { next: { kind: 'fallback', plan: null }, severity, strategy: 'failover' };
    if (err.category === 'python_error' && err.code !== 'PYFLEET_UNKNOWN_COMMAND') {
      const plan = i.plan();
      if (plan.type === 'failover') return { next: { kind: 'fallback', plan }, severity, strategy: 'failover' };
      if (plan.insteadOf !== undefined) reason = 'not_idempotent';
    }
  }
  return stop(reason);
}
