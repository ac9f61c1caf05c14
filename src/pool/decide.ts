import type { RecoveryStrategy, Severity } from '../errors/categories.js';
import { ERROR_CODES } from '../errors/codes.js';
import type { ErrorPolicy } from '../errors/policy.js';
import type { PoolError } from '../errors/pool-error.js';
import type { RecoveryPlan } from '../resilience/recovery/types.js';
import type { RetryStopReason } from '../resilience/retry.js';

/** What the pool does after an attempt failed. */
export type Next =
  /** Send the call again in place, after `delayMs`. */
  | { kind: 'retry'; delayMs: number; afterDeath: boolean }
  /** Hand it to the recovery orchestrator (a re-send with a larger timeout, or the fallback). */
  | { kind: 'recover'; plan: RecoveryPlan }
  /** Send it to the fallback (the circuit is open). */
  | { kind: 'fallback' }
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
  /** A worker other than the one that failed can take the call now. */
  freeWorkerElsewhere: boolean;
  /** The call already had its one immediate re-send after a worker death. */
  resentAfterDeath: boolean;
  /** The configured backoff's delay for this retry; undefined: the matrix's schedule. */
  backoffDelay: (() => number) | undefined;
  maxDelayMs: number;
  /** Takes one retry from the retry budget; false when the budget refuses. */
  acquireRetry: () => boolean;
  /** The recovery the orchestrator would run for this error. */
  plan: () => RecoveryPlan;
}

/**
 * The decision matrix applied to one failed attempt, with the pool's own rules on top:
 *  - a refusal (bad input, a full or timed-out queue, an open circuit: the codes table's
 *    `strategy: 'abandon'`) is never retried, and says `abandon`;
 *  - a timeout is never retried in place: the recovery re-sends it with a larger timeout when it
 *    may be re-sent (idempotent), else the caller gets it at once;
 *  - a retry in place needs the matrix's yes (retryable, immediate/backoff strategy, within
 *    maxRetries, idempotent once a worker took it), `retry.maxAttempts` and the retry budget;
 *  - the first re-send after a worker death goes at once to another free worker (a dead worker is
 *    not a struggling backend); backoff applies from the next failure, or when no worker is free;
 *  - a stream is re-sent only before its first item;
 *  - after retries: a Python error goes to the fallback through the recovery (idempotent calls
 *    only), an open circuit straight to the fallback; otherwise the pool gives up.
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

  if (err.code === 'PYFLEET_TIMEOUT') {
    const plan = i.plan();
    if (plan.type === 'retry_with_backoff') return { next: { kind: 'recover', plan }, severity, strategy: 'backoff_retry' };
    return stop(plan.insteadOf !== undefined ? 'not_idempotent' : 'strategy');
  }

  let reason: RetryStopReason = facts.strategy === 'abandon' ? 'refused' : d.reason === 'retry' ? 'max_attempts' : d.reason;
  if (d.retry && facts.strategy === null && i.attempt < i.maxAttempts) {
    const afterDeath = facts.movableTaken && !i.resentAfterDeath && i.freeWorkerElsewhere;
    if (i.acquireRetry()) {
      const delayMs = afterDeath ? 0 : (i.backoffDelay?.() ?? Math.min(d.delayMs, i.maxDelayMs));
      return { next: { kind: 'retry', delayMs, afterDeath }, severity, strategy: d.strategy };
    }
    reason = 'budget';
  }

  if (i.hasFallback) {
    if (err.code === 'PYFLEET_CIRCUIT_OPEN') return { next: { kind: 'fallback' }, severity, strategy: 'failover' };
    if (err.category === 'python_error' && err.code !== 'PYFLEET_UNKNOWN_COMMAND') {
      const plan = i.plan();
      if (plan.type === 'failover') return { next: { kind: 'recover', plan }, severity, strategy: 'failover' };
      if (plan.insteadOf !== undefined) reason = 'not_idempotent';
    }
  }
  return stop(reason);
}
