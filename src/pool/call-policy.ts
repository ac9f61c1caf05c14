import type { ErrorPolicy } from '../errors/policy.js';
import { PoolError } from '../errors/pool-error.js';
import type { Adapter } from '../adapters/adapter.js';
import { createBackoff, type BackoffStrategy } from '../resilience/backoff.js';
import type { RetryBudget } from '../resilience/budget.js';
import type { RecoveryOrchestrator } from '../resilience/recovery/orchestrator.js';
import type { RecoveryAttempt, RecoveryPlan } from '../resilience/recovery/types.js';
import { retryAfterFirstFailure } from '../resilience/retry.js';
import { anySignal } from '../util/signals.js';
import { channels } from '../telemetry/channels.js';
import type { Logger } from '../util/logger.js';
import type { DetailedResult, Via } from '../call/types.js';
import type { Attempt, Call } from './call.js';
import type { Counters } from './counters.js';
import { decideNext, type Decision } from './decide.js';
import type { Dispatcher } from './dispatcher.js';
import { abortedError, asPoolError, closedError, poisonError, sessionLostError } from './errors.js';
import { reportFailure } from './error-report.js';
import { callFallback } from './fallback.js';
import type { ResolvedOptions } from './options.js';
import { PoisonTracker } from './poison.js';
import type { SessionTable } from './sessions.js';

export interface CallPolicyDeps {
  poolId: number;
  options: ResolvedOptions;
  policy: ErrorPolicy;
  dispatcher: Dispatcher;
  sessions: SessionTable;
  counters: Counters;
  logger: Logger;
  budget: RetryBudget | undefined;
  poison: PoisonTracker;
  orchestrator: RecoveryOrchestrator<Call>;
  fallback: Adapter | null;
  /** Aborted when the pool starts closing: waits for a retry end at once. */
  closeSignal: AbortSignal;
  allWorkersDown(): boolean;
  /** A call settled (the pool's close waits for the last one). */
  settled(): void;
}

/**
 * What happens to a call, as composed steps (cockatiel's `wrap`, undici's retry handler around
 * dispatch): the first attempt; after a failure, retries in place as the decision matrix allows;
 * then the recovery (a re-send with a larger timeout, or failover to the fallback); then the
 * caller gets the value or the error. Every failed attempt is classified, counted and reported
 * exactly once, with the strategy that says what the pool did about it; every call settles once.
 */
export class CallPolicy {
  constructor(private readonly deps: CallPolicyDeps) {}

  /** Runs `call`. The first attempt settles the caller straight from the worker's answer. */
  run<T>(call: Call): Promise<T | DetailedResult<T>> {
    const result = this.firstAttempt<T>(call);
    this.deps.counters.started();
    this.deps.budget?.recordCall();
    return result;
  }

  private firstAttempt<T>(call: Call): Promise<T | DetailedResult<T>> {
    const first = new Promise<unknown>((resolve, reject) => {
      this.deps.dispatcher.attempt(
        call,
        { timeoutMs: call.timeoutMs, avoid: null },
        // With a snapshot of its session to store, the call resolves once the store took it.
        (value) => (call.saving === null ? resolve(this.succeeded(call, value, 'pool')) : void call.saving.then((unsaved) => (unsaved === null ? resolve(this.succeeded(call, value, 'pool')) : reject(unsaved)))),
        (err, a) => {
          this.noteFailure(call, err, a);
          reject(err);
        },
      );
    });
    // The retries, the recovery and the fallback run in the caller's async context (its
    // AsyncLocalStorage: a trace span, a fallback's own context), not in the context of the
    // worker's pipe that delivered the failure: `.then` here captures the caller's.
    return first.then(undefined, (e: unknown) => this.afterFailure(call, e)) as Promise<T | DetailedResult<T>>;
  }

  /** The abandoned attempt worker `workerId` died running: its call is the one to blame. */
  blame(call: Call, workerId: number): void {
    this.recordDeath(call, null, workerId);
  }

  private async afterFailure(call: Call, first: unknown): Promise<unknown> {
    if (call.saving !== null) await call.saving;
    // A consumer that stopped its stream ended it; nothing failed.
    if (call.stoppedByConsumer) return this.succeeded(call, call.items, 'pool');
    const wait = this.waitSignal(call);
    try {
      const r = await this.retryThenRecover(call, asPoolError(first, call), wait.signal);
      return this.succeeded(call, r.value, r.via);
    } catch (e) {
      const err = asPoolError(e, call);
      this.settle(call, false, 'pool', err);
      throw err;
    } finally {
      wait.dispose();
    }
  }

  private succeeded(call: Call, value: unknown, via: Via): unknown {
    this.settle(call, true, via, null);
    return call.detailed ? { value, via, attempts: call.attempts, workerId: call.workerId, durationMs: performance.now() - call.startedAt } : value;
  }

  /** The one place a call settles: counted, published, its session moves on. A second settlement is counted, never delivered. */
  settle(call: Call, ok: boolean, via: Via, err: PoolError | null): void {
    const c = this.deps.counters;
    if (!call.markSettled()) {
      c.calls.settledTwice++;
      this.deps.logger.error({ poolId: this.deps.poolId, callId: call.id, command: call.command }, `call ${call.id} settled twice; this is a pyfleet bug, please report it`);
      return;
    }
    c.settled(ok, via);
    if (call.session !== null) this.deps.sessions.settled(call.session, call, performance.now());
    this.deps.settled();
    if (channels['call:end'].hasSubscribers) {
      channels['call:end'].publish({
        poolId: this.deps.poolId,
        callId: call.id,
        command: call.command,
        sessionId: call.session?.id ?? null,
        ok,
        durationMs: performance.now() - call.startedAt,
        attempts: call.attempts,
        code: err?.code ?? null,
        via: via === 'fallback' ? 'fallback' : 'pool',
        stream: call.sink !== null,
        items: call.items,
      });
    }
  }

  /** Retries in place, then the recovery or the fallback; rejects with the error the caller gets. */
  private async retryThenRecover(call: Call, first: PoolError, signal: AbortSignal): Promise<{ value: unknown; via: Via }> {
    let last: Decision | null = null;
    try {
      const value = await retryAfterFirstFailure(
        () => this.attemptAgain(call, call.timeoutMs),
        {
          // decideNext applies retry.maxAttempts and the budget itself, so that each failure is
          // reported with what the pool really does about it.
          maxAttempts: Number.MAX_SAFE_INTEGER,
          poolId: this.deps.poolId,
          signal,
          shouldRetry: (e) => {
            last = this.decide(call, asPoolError(e, call));
            const n = last.next;
            if (n.kind !== 'retry') return { stop: n.kind === 'stop' ? n.reason : 'strategy' };
            if (n.afterDeath) call.resentAfterDeath = true;
            this.deps.counters.calls.retries++;
            return { delayMs: n.delayMs };
          },
        },
        first,
      );
      return { value, via: 'pool' };
    } catch (e) {
      const err = asPoolError(e, call);
      if (err.code === 'PYFLEET_ABORTED' && call.signal?.aborted !== true) throw closedError(call, undefined, err.details?.lastError);
      const next = (last as Decision | null)?.next;
      if (next?.kind === 'recover') return this.recover(call, err, next.plan, signal);
      if (next?.kind === 'fallback') return { value: await callFallback(this.deps.fallback!, call, err, this.deps.logger, this.deps.poolId), via: 'fallback' };
      throw call.poisoned ?? err;
    }
  }

  /** Decides what follows a failed attempt, and reports the failure with it (once). */
  private decide(call: Call, err: PoolError): Decision {
    const { options: o, policy, budget } = this.deps;
    const r = o.retry;
    const d = decideNext(policy, {
      err,
      attempt: call.attempts,
      maxAttempts: r.maxAttempts,
      idempotent: call.idempotent,
      affectingAllWorkers: this.deps.allWorkersDown(),
      closing: this.deps.closeSignal.aborted,
      poisoned: call.poisoned !== null,
      streamStarted: call.items > 0,
      // Streams do not fail over: the fallback answers with one value.
      hasFallback: this.deps.fallback !== null && call.sink === null,
      freeWorkerElsewhere: this.deps.dispatcher.hasFreeWorker(call, err.workerId),
      resentAfterDeath: call.resentAfterDeath,
      backoffDelay: r.backoff === undefined ? undefined : () => nextRetryDelay(call, call.attempts, r),
      maxDelayMs: r.maxDelayMs,
      acquireRetry: () => budget === undefined || budget.tryAcquireRetry(),
      plan: () => this.deps.orchestrator.plan(err, this.recoveryContext(call, err, undefined)),
    });
    err.attempt = call.attempts;
    err.severity = d.severity;
    err.strategy = d.strategy;
    reportFailure(this.deps.poolId, this.deps.counters, this.deps.logger, err, performance.now() - call.startedAt);
    if (call.poisoned !== null) {
      call.poisoned.severity = d.severity;
      call.poisoned.strategy = 'abandon';
    }
    return d;
  }

  /** Another attempt of `call`, as a promise (retries and the recovery's re-sends). */
  private attemptAgain(call: Call, timeoutMs: number): Promise<unknown> {
    if (this.deps.closeSignal.aborted) return Promise.reject(closedError(call));
    const s = call.session;
    if (s?.lost) return Promise.reject(sessionLostError(s, call.command, call));
    return new Promise((resolve, reject) => {
      this.deps.dispatcher.attempt(
        call,
        { timeoutMs, avoid: call.avoid },
        (value) => (call.saving === null ? resolve(value) : void call.saving.then((unsaved) => (unsaved === null ? resolve(value) : reject(unsaved)))),
        (err, a) => {
          this.noteFailure(call, err, a);
          reject(err);
        },
      );
    });
  }

  /** Every failed attempt: where it failed (the next attempt avoids that worker), and whether its death makes the call poison. */
  private noteFailure(call: Call, err: PoolError, a: Attempt | null): void {
    call.avoid = err.workerId;
    const d = err.details;
    // Only a death the call caused counts: not one the pool caused (a kill, a stop, an injected fault).
    if (err.code === 'PYFLEET_WORKER_CRASHED' && d?.running === true && d.byPool !== true && a?.fault == null) this.recordDeath(call, err, err.workerId);
  }

  private recordDeath(call: Call, err: PoolError | null, workerId: number | null): void {
    const { poison, options } = this.deps;
    if (!poison.recordDeath(PoisonTracker.key(call.command, call.argsJson, call.argsParts), workerId) || call.poisoned !== null) return;
    const last = err ?? new PoolError({ code: 'PYFLEET_WORKER_CRASHED', command: call.command, message: `its worker died running ${call.command} after the call had been given up on` });
    call.poisoned = poisonError(call, options.poison.maxDeaths, options.poison.coolDownMs, last);
    this.deps.logger.error({ poolId: this.deps.poolId, command: call.command, code: 'PYFLEET_POISON_CALL' }, call.poisoned.message);
  }

  /** The recovery orchestrator on the error the retries ended with. */
  private async recover(call: Call, err: PoolError, plan: RecoveryPlan, signal: AbortSignal): Promise<{ value: unknown; via: Via }> {
    const result = await this.deps.orchestrator.handle(err, this.recoveryContext(call, err, signal));
    if (result.outcome === 'recovered') return { value: result.value, via: plan.type === 'failover' ? 'fallback' : 'recovery' };
    const callerSignal = call.signal;
    if (callerSignal?.aborted) throw abortedError(call, callerSignal, err);
    if (this.deps.closeSignal.aborted) throw closedError(call, undefined, err);
    if (call.poisoned !== null) throw call.poisoned;
    // A re-send's own error is the most recent word on the call; a failed fallback's says both.
    if (result.error instanceof PoolError) throw result.error;
    throw err;
  }

  private recoveryContext(call: Call, err: PoolError, signal: AbortSignal | undefined) {
    return {
      call,
      command: call.command,
      args: call.args,
      sessionId: call.session?.id ?? null,
      workerId: err.workerId,
      timeoutMs: call.timeoutMs,
      idempotent: call.idempotent,
      userFacing: true,
      affectingAllWorkers: this.deps.allWorkersDown(),
      signal,
    };
  }

  /** The recovery's re-send: another attempt of the same call, with the recovery's larger timeout. */
  readonly resend = (ra: RecoveryAttempt<Call>): Promise<unknown> => {
    const call = ra.call!;
    return this.attemptAgain(call, ra.timeoutMs).catch((e: unknown) => {
      throw call.poisoned ?? e;
    });
  };

  /** A re-send of the recovery failed: reported once, saying whether the recovery tries again. */
  readonly resendFailed = (e: unknown, willRetry: boolean, ra: RecoveryAttempt<Call>): void => {
    const call = ra.call!;
    const err = asPoolError(e, call);
    if (err.code === 'PYFLEET_POISON_CALL') return;
    err.attempt = call.attempts;
    err.strategy = willRetry ? 'backoff_retry' : 'abandon';
    reportFailure(this.deps.poolId, this.deps.counters, this.deps.logger, err, performance.now() - call.startedAt);
  };

  readonly failover = (ra: RecoveryAttempt<Call>): Promise<unknown> => {
    if (this.deps.fallback === null) return Promise.reject(new Error('no fallback is configured (createPool({ fallback }))'));
    return callFallback(this.deps.fallback, ra.call!, ra.error, this.deps.logger, this.deps.poolId, ra.signal);
  };

  /** Waits (retry backoff, recovery) end when the caller aborts or the pool closes. */
  private waitSignal(call: Call): { signal: AbortSignal; dispose: () => void } {
    return call.signal === undefined ? { signal: this.deps.closeSignal, dispose: noop } : anySignal(call.signal, this.deps.closeSignal);
  }
}

const noop = (): void => {};

/**
 * The delay of the configured `retry.backoff` after failed attempt `attempt` of `call`. The
 * sequence is the call's own (cockatiel's backoff carried per call): decorrelated jitter grows
 * from this call's previous delay, whatever other calls retry meanwhile.
 */
export function nextRetryDelay(call: Call, attempt: number, retry: { backoff?: BackoffStrategy; baseDelayMs: number; maxDelayMs: number }, random?: () => number): number {
  call.backoff ??= createBackoff(retry.backoff ?? 'exponential', { baseDelayMs: retry.baseDelayMs, maxDelayMs: retry.maxDelayMs, random });
  return call.backoff.next(attempt);
}

