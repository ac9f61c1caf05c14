import type { PoolError } from '../../errors/pool-error.js';
import { invalidOption } from '../../errors/invalid.js';
import { publish } from '../../telemetry/channels.js';
import { realClock, type Clock } from '../../util/clock.js';
import { abandonReason, errorText, limitText, reasonText, RecoveryFailure, untilAborted, type Done, type RecoveryStep, type Run } from './run.js';
import { loadRecoveryStrategies, loadTimeLimits, planRecovery } from './strategies.js';
import {
  RECOVERY_TYPES,
  RESENDING_TYPES,
  type ActiveRecovery,
  type RecoveryActionName,
  type RecoveryActions,
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

export interface RecoveryOrchestratorOptions {
  /** The worker actions; a pool implements them. Without them (a fleet client, whose hosts act for their own workers) a worker plan fails, saying so. */
  actions?: RecoveryActions;
  clock?: Clock;
  /** Per category and severity overrides of `DEFAULT_RECOVERY_STRATEGIES`. */
  strategies?: RecoveryTableOverrides;
  /** Per severity overrides of `DEFAULT_TIME_LIMITS` (ms). */
  timeLimits?: Partial<RecoveryTimeLimits>;
  /** Circuit opened by `circuit_break` when the context names none (default 'pool'). */
  circuitName?: string;
  /** The pool the orchestrator works for, carried by `recovery:complete` (pools set it). */
  poolId?: number;
}

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
 * recovery from the strategy table (category x severity), runs it under a time limit, and
 * reports what happened. Its own actions act on workers (replace, recycle, open the circuit);
 * the plans that send the call again (retry_with_backoff, failover) are steps of the call core,
 * which hands them to `handle` to be timed, counted and reported like any recovery. It reports
 * success only when the action it ran succeeded; abandon, a failed or timed-out action, and an
 * abort are failures with a reason. `handle` never rejects.
 */
export class RecoveryOrchestrator {
  private readonly actions: RecoveryActions | undefined;
  private readonly clock: Clock;
  private readonly table: Readonly<RecoveryTable>;
  private readonly limits: Readonly<RecoveryTimeLimits>;
  private readonly circuitName: string;
  private readonly poolId: number | undefined;
  private readonly active = new Map<string, { info: ActiveRecovery; controller: AbortController }>();
  private readonly counts: RecoveryCounts = { initiated: 0, succeeded: 0, failed: 0 };
  private timedOut = 0;
  private readonly byStrategy: Record<RecoveryType, RecoveryCounts>;

  constructor(options: RecoveryOrchestratorOptions = {}) {
    const a = options.actions as Partial<RecoveryActions> | undefined;
    for (const m of ['replaceWorker', 'recycleWorker', 'openCircuit'] as const) {
      if (a !== undefined && typeof a[m] !== 'function') throw invalidOption(`recovery actions.${m} must be a function`);
    }
    this.actions = options.actions;
    this.clock = options.clock ?? realClock;
    this.table = loadRecoveryStrategies(options.strategies);
    this.limits = loadTimeLimits(options.timeLimits);
    this.circuitName = options.circuitName ?? 'pool';
    this.poolId = options.poolId;
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
  plan(err: PoolError, ctx: RecoveryContext = {}): RecoveryPlan {
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
   * error (command, session, worker). A plan that sends the call again runs `step`, the call
   * core's. Resolves with the result once the action finished, failed, or ran out of time;
   * never rejects.
   */
  async handle(err: PoolError, ctx: RecoveryContext = {}, step?: RecoveryStep): Promise<RecoveryResult> {
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
    const run: Run = { id, plan, err, ctx, signal: controller.signal, deadline, attempts: 0, timedOut: false };
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
      done = await untilAborted(step !== undefined && RESENDING_TYPES.includes(plan.type) ? step(run) : this.execute(run), controller.signal);
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

  /** Runs the plan's own action. Resolves when it succeeded, rejects with a RecoveryFailure when not. */
  private async execute(run: Run): Promise<Done> {
    const { plan, err, ctx } = run;
    const why = `${plan.category} (${plan.severity}): ${err.message}`;
    if (plan.type === 'abandon') throw new RecoveryFailure(abandonReason(run));
    if (RESENDING_TYPES.includes(plan.type)) throw new RecoveryFailure(`Recovery ${plan.type} sends the call again: only the call core can run it.`);
    const actions = this.actions;
    if (actions === undefined) throw new RecoveryFailure(`Recovery ${plan.type} acts on workers, and this orchestrator has none (a fleet client's hosts recover their own workers).`);
    if (plan.type === 'circuit_break') {
      const name = ctx.circuit ?? this.circuitName;
      run.attempts += 1;
      try {
        actions.openCircuit(name, why);
      } catch (e) {
        throw new RecoveryFailure(`Could not open circuit "${name}": ${errorText(e)}`, e);
      }
      return { outcome: 'mitigated', reason: `Opened circuit "${name}"; calls are refused until it closes.` };
    }
    const workerId = ctx.workerId ?? err.workerId;
    const verb = plan.type === 'replace_worker' ? 'replace' : 'recycle';
    if (workerId === null || workerId === undefined) throw new RecoveryFailure(`Could not ${verb} a worker: the error does not say which worker failed.`);
    run.attempts += 1;
    try {
      if (plan.type === 'replace_worker') await actions.replaceWorker(workerId, why);
      else await actions.recycleWorker(workerId, why);
    } catch (e) {
      throw new RecoveryFailure(`Could not ${verb} worker ${workerId}: ${errorText(e)}`, e);
    }
    return { outcome: 'mitigated', reason: plan.type === 'replace_worker' ? `Replaced worker ${workerId}.` : `Recycled worker ${workerId}.` };
  }
}
