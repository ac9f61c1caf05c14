import type { MatrixBackoff } from '../errors/categories.js';
import { RETRY_DELAYS, delayAt } from '../errors/policy.js';
import { PoolError } from '../errors/pool-error.js';
import { RecoveryFailure, errorText, limitText, type Done, type Run } from '../resilience/recovery/run.js';
import { sleep } from '../resilience/retry.js';
import type { Clock } from '../util/clock.js';

/** Delays between re-sends with a larger timeout, from the policy's schedules (seed `@retry_delays`). */
const BACKOFF_DELAYS: Readonly<Record<MatrixBackoff, readonly number[]>> = Object.freeze({
  none: Object.freeze([0]),
  linear: RETRY_DELAYS.backoff_retry,
  exponential: RETRY_DELAYS.exponential,
});

export interface ResendOptions {
  /** The timeout that expired: re-send i gets it times `plan.timeoutFactor` to the power i. */
  baseTimeoutMs: number;
  clock: Clock;
  /** One more attempt of the call with this timeout. */
  send(timeoutMs: number): Promise<unknown>;
  /** A re-send failed; `willRetry`: another one follows. */
  failed(err: unknown, willRetry: boolean): void;
  /** Whether the call may make one more attempt (retry.maxAttempts). */
  mayAttempt(): boolean;
}

/**
 * The recovery's retry_with_backoff, as a step of the call core: up to `plan.maxAttempts`
 * re-sends, each with the expired timeout times `timeoutFactor` per attempt (x2, x4, ...: never
 * smaller than the one that expired), with the plan's backoff between them. No re-send starts
 * after the recovery's time limit; one in flight is never cut short by it.
 */
export async function resendWithLargerTimeout(run: Run, o: ResendOptions): Promise<Done> {
  const { plan, signal } = run;
  let last: unknown = run.err;
  for (let attempt = 1; attempt <= plan.maxAttempts; attempt++) {
    if (attempt > 1) {
      const delay = delayAt(BACKOFF_DELAYS[plan.backoff], attempt - 1);
      if (o.clock.now() + delay > run.deadline) {
        run.timedOut = true;
        throw new RecoveryFailure(`Recovery retry_with_backoff stopped after ${attempt - 1} re-send(s): the next one would start after ${limitText(plan, run.ctx)}; the last error: ${errorText(last)}`, last);
      }
      if (delay > 0) await sleep(delay, o.clock, signal);
    }
    if (signal.aborted) throw signal.reason;
    if (!o.mayAttempt()) throw new RecoveryFailure(`Recovery retry_with_backoff stopped after ${attempt - 1} re-send(s): the call made every attempt retry.maxAttempts allows; the last error: ${errorText(last)}`, last);
    run.attempts += 1;
    try {
      const value = await o.send(Math.max(1, Math.round(o.baseTimeoutMs * plan.timeoutFactor ** attempt)));
      return { outcome: 'recovered', reason: `The call succeeded when retried (attempt ${attempt} of ${plan.maxAttempts}).`, value };
    } catch (e) {
      last = e;
      const fixable = !(e instanceof PoolError && !e.retryable) && !signal.aborted;
      o.failed(e, fixable && attempt < plan.maxAttempts);
      if (!fixable) throw new RecoveryFailure(`Retry ${attempt} of ${plan.maxAttempts} failed with an error that retrying cannot fix: ${errorText(e)}`, e);
    }
  }
  throw new RecoveryFailure(`All ${plan.maxAttempts} retries with a larger timeout failed; the last error: ${errorText(last)}`, last);
}

/** The recovery's failover, as a step of the call core: the call on the fallback (`call`), within the recovery's time. */
export async function failoverStep(run: Run, call: ((signal: AbortSignal) => Promise<unknown>) | null): Promise<Done> {
  run.attempts += 1;
  if (call === null) throw new RecoveryFailure('Failover failed: no fallback is configured (createPool({ fallback })).');
  try {
    return { outcome: 'recovered', reason: 'The call succeeded on the fallback.', value: await call(run.signal) };
  } catch (e) {
    if (e instanceof RecoveryFailure) throw e;
    throw new RecoveryFailure(`Failover failed: ${errorText(e)}`, e);
  }
}
