import type { PoolError } from '../../errors/pool-error.js';
import type { RecoveryContext, RecoveryPlan } from './types.js';

/** The state of one recovery while it runs, and how it ends: what the orchestrator's actions share. */

/** How a recovery's action ended when it did not fail. */
export interface Done {
  outcome: 'recovered' | 'mitigated';
  reason: string;
  value?: unknown;
}

/** A recovery that failed, with the sentence that says why. */
export class RecoveryFailure extends Error {
  constructor(
    readonly reason: string,
    readonly error?: unknown,
  ) {
    super(reason);
  }
}

/** Mutable per-recovery state shared between `handle` and the running action (or the call core's step). */
export interface Run {
  id: string;
  plan: RecoveryPlan;
  err: PoolError;
  ctx: RecoveryContext;
  signal: AbortSignal;
  deadline: number;
  /** Action invocations made (a step counts each re-send). */
  attempts: number;
  /** Set when the time limit ended the run (a step that stops for it sets it too). */
  timedOut: boolean;
}

/**
 * A plan that sends the call again (retry_with_backoff, failover) is run by the call core: it
 * hands `handle` this step, which the orchestrator times, counts and reports like its own actions.
 */
export type RecoveryStep = (run: Run) => Promise<Done>;

export function limitText(plan: RecoveryPlan, ctx: RecoveryContext): string {
  return `${plan.maxRecoveryTimeMs} ms (the time limit for ${plan.severity} errors${ctx.userFacing === true ? ', halved because a caller is waiting' : ''})`;
}

export function abandonReason(run: Run): string {
  const { plan, err, ctx } = run;
  if (plan.insteadOf !== undefined) {
    const what = plan.insteadOf === 'failover' ? 'sent to the fallback' : 're-sent';
    const who = err.workerId !== null ? `worker ${err.workerId}` : 'a worker';
    return (
      `Recovery abandoned: call ${JSON.stringify(ctx.command ?? err.command ?? '?')} was not ${what} because ${who} already took it ` +
      `and it is not idempotent, so it may have run; declare the command idempotent if running it twice is safe.`
    );
  }
  if (plan.category === 'session_error') {
    return 'Recovery abandoned: the session\'s state is gone and nothing on the pool can bring it back; open the session again.';
  }
  return `Recovery abandoned: the strategy for ${plan.category} at severity ${plan.severity} is abandon; no automatic action is safe.`;
}

/** Settles like `p`, or rejects with the signal's reason as soon as it aborts. No listener is left behind. */
export function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    p.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

export function errorText(e: unknown): string {
  if (e instanceof Error) return e.message || e.name;
  return String(e);
}

export function reasonText(r: unknown): string {
  if (r === undefined) return '';
  if (r instanceof Error) return `: ${r.message}`;
  return `: ${String(r)}`;
}
