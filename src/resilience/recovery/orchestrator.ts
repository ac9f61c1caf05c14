import type { MatrixBackoff } from '../../errors/categories.js';
import { DEFAULTS } from '../../defaults.js';
import { invalidOption } from '../../errors/invalid.js';
import { PoolError } from '../../errors/pool-error.js';
import { RETRY_DELAYS, delayAt } from '../../errors/policy.js';
import { publish } from '../../telemetry/channels.js';
import { realClock, type Clock } from '../../util/clock.js';
import { abandonReason, errorText, limitText, reasonText, RecoveryFailure, untilAborted, type Done, type Run } from './run.js';
import { loadRecoveryStrategies, loadTimeLimits, planRecovery } from './strategies.js';
import {
  RECOVERY_TYPES,
  type ActiveRecovery,
  type RecoveryActionName,
  type RecoveryActions,
  type RecoveryAttempt,
  type RecoveryContext,
  type RecoveryCounts,
  type RecoveryMetrics,
  type RecoveryPlan,
  type RecoveryResult,
  type RecoveryTable,
  type RecoveryTableOverrides,
  type RecoveryTimeLimits,
  type RecoveryType,
} from './types.js';

export interface RecoveryOrchestratorOptions<C = unknown> {
  /** The real actions; the pool implements them. */
  actions: RecoveryActions<C>;
  clock?: Clock;
  /** Per category and severity overrides of `DEFAULT_RECOVERY_STRATEGIES`. */
  strategies?: RecoveryTableOverrides;
  /** Per severity overrides of `DEFAULT_TIME_LIMITS` (ms). */
  timeLimits?: Partial<RecoveryTimeLimits>;
  /** Timeout of the failed call when the context does not say (default: the pool's requestTimeoutMs default). */
  baseTimeoutMs?: number;
  /** Circuit opened by `circuit_break` when the context names none (default 'pool'). */
  circuitName?: string;
  /** The pool the orchestrator works for, carried by `recovery:complete` (pools set it). */
  poolId?: number;
  /**
   * Told of every failed re-send of retry_with_backoff, and whether the recovery will try again:
   * the pool reports each failed attempt once, saying what it does next.
   */
  onResendFailed?: (err: unknown, willRetry: boolean, attempt: RecoveryAttempt<C>) => void;
}

/** Delays between retry_with_backoff attempts, from the policy's schedules (seed `@retry_delays`). */
const BACKOFF_DELAYS: Readonly<Record<MatrixBackoff, readonly number[]>> = Object.freeze({
  none: Object.freeze([0]),
  linear: RETRY_DELAYS.backoff_retry,
  exponential: RETRY_DELAYS.exponential,
});

const ACTION_OF: Readonly<Record<RecoveryType, RecoveryActionName>> = Object.freeze({
  retry_with_backoff: 'retryWithLargerTimeout',
  failover: 'failover',
  circuit_break: 'openCircuit',
  abandon: 'none',
  replace_worker: 'replaceWorker',
  recycle_worker: 'recycleWorker',
});

let sequence = 0;

/** `recovery_<counter>_<time>`: the counter is process-wide, so ids never repeat across orchestrators. */
export function nextRecoveryId(): string {
  sequence += 1;
  return `recovery_${sequence}_${Date.now()}`;
}

/**
 * The seed's `ErrorRecoveryOrchestrator`, with real actions: for each error it picks a
 * recovery from the strategy table (category x severity), runs the pool's action for it under
 * a time limit, and reports what happened. It reports success only when the action it ran
 * succeeded; abandon, a failed or timed-out action, and an abort are failures with a reason.
 * `handle` never rejects.
 */
export class RecoveryOrchestrator<C = unknown> {
  private readonly actions: RecoveryActions<C>;
  private readonly clock: Clock;
  private readonly table: Readonly<RecoveryTable>;
  private readonly limits: Readonly<RecoveryTimeLimits>;
  private readonly baseTimeoutMs: number;
  private readonly circuitName: string;
  private readonly poolId: number | undefined;
  private readonly onResendFailed: RecoveryOrchestratorOptions<C>['onResendFailed'];
  private readonly active = new Map<string, { info: ActiveRecovery; controller: AbortController }>();
  private readonly counts: RecoveryCounts = { initiated: 0, succeeded: 0, failed: 0 };
  private timedOut = 0;
  private readonly byStrategy: Record<RecoveryType, RecoveryCounts>;

  constructor(options: RecoveryOrchestratorOptions<C>) {
    const a = options?.actions as Partial<RecoveryActions<C>> | undefined;
    for (const m of ['replaceWorker', 'recycleWorker', 'retryWithLargerTimeout', 'openCircuit', 'failover'] as const) {
      if (typeof a?.[m] !== 'function') {
        throw invalidOption(`recovery actions.${m} must be a function`);
      }
    }
    if (options.baseTimeoutMs !== undefined && !(Number.isFinite(options.baseTimeoutMs) && options.baseTimeoutMs > 0)) {
      throw invalidOption(`baseTimeoutMs must be a number of ms > 0, got ${String(options.baseTimeoutMs)}`);
    }
    this.actions = options.actions;
    this.clock = options.clock ?? realClock;
    this.table = loadRecoveryStrategies(options.strategies);
    this.limits = loadTimeLimits(options.timeLimits);
    this.baseTimeoutMs = options.baseTimeoutMs ?? DEFAULTS.requestTimeoutMs;
    this.circuitName = options.circuitName ?? 'pool';
    this.poolId = options.poolId;
    this.onResendFailed = options.onResendFailed;
    this.byStrategy = Object.fromEntries(RECOVERY_TYPES.map((t) => [t, { initiated: 0, succeeded: 0, failed: 0 }])) as Record<
      RecoveryType,
      RecoveryCounts
    >;
  }

  /** The strategy table in use. */
  strategies(): Readonly<RecoveryTable> {
    return this.table;
  }

  /** The recovery `handle` would run for this error and context (nothing is run). */
  plan(err: PoolError, ctx: RecoveryContext<C> = {}): RecoveryPlan {
    return planRecovery(this.table, this.limits, err, ctx);
  }

  /** Counts since creation, and how many run now. Returns a copy. */
  metrics(): RecoveryMetrics {
    const byStrategy = {} as Record<RecoveryType, RecoveryCounts>;
    for (const t of RECOVERY_TYPES) byStrategy[t] = { ...this.byStrategy[t] };
    return { ...this.counts, active: this.active.size, timedOut: this.timedOut, byStrategy };
  }

  /** Recoveries in progress. */
  activeRecoveries(): ActiveRecovery[] {
    return [...this.active.values()].map((r) => ({ ...r.info }));
  }

  /** Aborts every recovery in progress (e.g. on pool close); each settles as failed. */
  abortAll(reason = 'the pool is closing'): void {
    for (const r of this.active.values()) r.controller.abort(new RecoveryFailure(`Recovery aborted: ${reason}.`));
  }

  /**
   * Recovers from `err` (the seed's `handle_error`). Context fields missing are taken from the
   * error (command, session, worker). Resolves with the result once the action finished,
   * failed, or ran out of time; never rejects.
   */
  async handle(err: PoolError, ctx: RecoveryContext<C> = {}): Promise<RecoveryResult> {
    const id = nextRecoveryId();
    const plan = this.plan(err, ctx);
    const clock = this.clock;
    const startedAt = clock.now();
    const deadline = startedAt + plan.maxRecoveryTimeMs;
    const controller = new AbortController();
    const workerId = ctx.workerId ?? err.workerId;
    const command = ctx.command ?? err.command;
    this.active.set(id, {
      info: { id, type: plan.type, category: plan.category, severity: plan.severity, workerId, command, startedAt, deadline },
      controller,
    });
    this.counts.initiated += 1;
    this.byStrategy[plan.type].initiated += 1;

    // The time limit and the caller's signal both abort the run; the action sees the same signal.
    // retry_with_backoff is the exception: its limit bounds when a re-send may start, never a
    // re-send in flight, whose own timeout (larger than the one that expired) must be allowed to run.
    const run: Run<C> = { id, plan, err, ctx, signal: controller.signal, deadline, attempts: 0, timedOut: false };
    const timer =
      plan.type === 'retry_with_backoff'
        ? undefined
        : clock.setTimeout(() => {
            run.timedOut = true;
            controller.abort(new RecoveryFailure(`Recovery ${plan.type} for ${plan.category} did not finish within ${limitText(plan, ctx)}.`));
          }, plan.maxRecoveryTimeMs);
    const outer = ctx.signal;
    const onOuterAbort = () => controller.abort(new RecoveryFailure(`Recovery aborted by the caller's signal${reasonText(outer?.reason)}.`));
    if (outer !== undefined) {
      if (outer.aborted) onOuterAbort();
      else outer.addEventListener('abort', onOuterAbort, { once: true });
    }

    let done: Done | undefined;
    let failure: RecoveryFailure | undefined;
    try {
      done = await untilAborted(this.execute(run), controller.signal);
    } catch (e) {
      failure = e instanceof RecoveryFailure ? e : new RecoveryFailure(`Recovery ${plan.type} failed: ${errorText(e)}`, e);
    } finally {
      if (timer !== undefined) clock.clearTimeout(timer);
      outer?.removeEventListener('abort', onOuterAbort);
      this.active.delete(id);
    }

    const ok = done !== undefined;
    const durationMs = clock.now() - startedAt;
    if (ok) {
      this.counts.succeeded += 1;
      this.byStrategy[plan.type].succeeded += 1;
    } else {
      this.counts.failed += 1;
      this.byStrategy[plan.type].failed += 1;
      if (run.timedOut) this.timedOut += 1;
    }
    const action = ACTION_OF[plan.type];
    const event = { id, category: plan.category, strategy: plan.type, result: ok ? ('ok' as const) : ('error' as const), durationMs, action };
    publish('recovery:complete', this.poolId === undefined ? event : { ...event, poolId: this.poolId });

    const result: RecoveryResult = {
      id,
      ok,
      outcome: done?.outcome ?? 'failed',
      type: plan.type,
      action,
      category: plan.category,
      severity: plan.severity,
      reason: done?.reason ?? failure!.reason,
      durationMs,
      attempts: run.attempts,
      timedOut: !ok && run.timedOut,
      plan,
    };
    if (done !== undefined && done.outcome === 'recovered') result.value = done.value;
    if (failure?.error !== undefined) result.error = failure.error;
    return result;
  }

  /** Runs the plan's action. Resolves when it succeeded, rejects with a RecoveryFailure when not. */
  private async execute(run: Run<C>): Promise<Done> {
    const { plan, err, ctx } = run;
    const why = `${plan.category} (${plan.severity}): ${err.message}`;
    switch (plan.type) {
      case 'abandon':
        throw new RecoveryFailure(abandonReason(run));

      case 'replace_worker':
      case 'recycle_worker': {
        const workerId = ctx.workerId ?? err.workerId;
        const verb = plan.type === 'replace_worker' ? 'replace' : 'recycle';
        if (workerId === null || workerId === undefined) {
          throw new RecoveryFailure(`Could not ${verb} a worker: the error does not say which worker failed.`);
        }
        run.attempts += 1;
        try {
          if (plan.type === 'replace_worker') await this.actions.replaceWorker(workerId, why);
          else await this.actions.recycleWorker(workerId, why);
        } catch (e) {
          throw new RecoveryFailure(`Could not ${verb} worker ${workerId}: ${errorText(e)}`, e);
        }
        return { outcome: 'mitigated', reason: plan.type === 'replace_worker' ? `Replaced worker ${workerId}.` : `Recycled worker ${workerId}.` };
      }

      case 'circuit_break': {
        const name = ctx.circuit ?? this.circuitName;
        run.attempts += 1;
        try {
          this.actions.openCircuit(name, why);
        } catch (e) {
          throw new RecoveryFailure(`Could not open circuit "${name}": ${errorText(e)}`, e);
        }
        return { outcome: 'mitigated', reason: `Opened circuit "${name}"; calls are refused until it closes.` };
      }

      case 'failover': {
        run.attempts += 1;
        try {
          const value = await this.actions.failover(this.attempt(run, 1, ctx.timeoutMs ?? this.baseTimeoutMs));
          return { outcome: 'recovered', reason: 'The call succeeded on the fallback.', value };
        } catch (e) {
          if (e instanceof RecoveryFailure) throw e;
          throw new RecoveryFailure(`Failover failed: ${errorText(e)}`, e);
        }
      }

      case 'retry_with_backoff':
        return this.retryWithBackoff(run);

      default:
        throw new RecoveryFailure(`Unknown recovery type ${JSON.stringify(plan.type)}.`);
    }
  }

  /**
   * retry_with_backoff: up to maxAttempts re-sends, each with the expired timeout times
   * `timeoutFactor` per attempt (x2, x4, ...: never smaller than the one that expired), with the
   * backoff schedule between them. No re-send starts after the recovery's time limit.
   */
  private async retryWithBackoff(run: Run<C>): Promise<Done> {
    const { plan, ctx, signal } = run;
    const base = ctx.timeoutMs ?? this.baseTimeoutMs;
    const delays = BACKOFF_DELAYS[plan.backoff];
    let last: unknown;
    for (let attempt = 1; attempt <= plan.maxAttempts; attempt++) {
      if (attempt > 1) {
        const delay = delayAt(delays, attempt - 1);
        if (this.clock.now() + delay > run.deadline) {
          run.timedOut = true;
          throw new RecoveryFailure(`Recovery retry_with_backoff stopped after ${attempt - 1} re-send(s): the next one would start after ${limitText(plan, ctx)}; the last error: ${errorText(last)}`, last);
        }
        await this.sleep(delay, signal);
      }
      if (signal.aborted) throw signal.reason;
      run.attempts += 1;
      const resend = this.attempt(run, attempt, base * plan.timeoutFactor ** attempt);
      try {
        const value = await this.actions.retryWithLargerTimeout(resend);
        return { outcome: 'recovered', reason: `The call succeeded when retried (attempt ${attempt} of ${plan.maxAttempts}).`, value };
      } catch (e) {
        if (e instanceof RecoveryFailure) throw e;
        last = e;
        const fixable = !(e instanceof PoolError && !e.retryable) && !signal.aborted;
        this.onResendFailed?.(e, fixable && attempt < plan.maxAttempts, resend);
        if (!fixable) {
          throw new RecoveryFailure(`Retry ${attempt} of ${plan.maxAttempts} failed with an error that retrying cannot fix: ${errorText(e)}`, e);
        }
      }
    }
    throw new RecoveryFailure(`All ${plan.maxAttempts} retries with a larger timeout failed; the last error: ${errorText(last)}`, last);
  }

  /** One re-send (or the fallback's call) as the action receives it. */
  private attempt(run: Run<C>, attempt: number, timeoutMs: number): RecoveryAttempt<C> {
    const { ctx, err } = run;
    const command = ctx.command ?? err.command;
    if (command === null || command === undefined) {
      throw new RecoveryFailure(`Cannot ${run.plan.type === 'failover' ? 'fail over' : 'retry'}: the context does not say which command to send.`);
    }
    return {
      recoveryId: run.id,
      call: ctx.call,
      command,
      args: ctx.args,
      sessionId: ctx.sessionId ?? err.sessionId,
      workerId: ctx.workerId ?? err.workerId,
      timeoutMs: Math.max(1, Math.round(timeoutMs)),
      idempotent: ctx.idempotent === true,
      attempt,
      signal: run.signal,
      error: err,
    };
  }

  private sleep(ms: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (ms <= 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        this.clock.clearTimeout(handle);
        reject(signal.reason);
      };
      const handle = this.clock.setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}
