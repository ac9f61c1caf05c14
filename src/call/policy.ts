import type { Adapter } from '../adapters/adapter.js';
import { ERROR_CODES } from '../errors/codes.js';
import type { ErrorPolicy } from '../errors/policy.js';
import { PoolError } from '../errors/pool-error.js';
import { createBackoff, type BackoffStrategy } from '../resilience/backoff.js';
import type { RetryBudget } from '../resilience/budget.js';
import type { RecoveryOrchestrator } from '../resilience/recovery/orchestrator.js';
import type { RecoveryContext } from '../resilience/recovery/types.js';
import { sleep, type RetryStopReason } from '../resilience/retry.js';
import { channels } from '../telemetry/channels.js';
import { realClock } from '../util/clock.js';
import type { Logger } from '../util/logger.js';
import { anySignal } from '../util/signals.js';
import type { Call } from './call.js';
import type { Counters } from './counters.js';
import { decideNext, type Decision } from './decide.js';
import { abortedError, asPoolError, poisonError, retryAbortedError } from './errors.js';
import { callFallback } from './fallback.js';
import type { CallSettings } from './options.js';
import { PoisonTracker } from './poison.js';
import { reportFailure } from './report.js';
import { failoverStep, resendWithLargerTimeout } from './resend.js';
import type { DetailedResult, Member, Target, Via } from './types.js';

export interface CallPolicyDeps<C extends Call> {
  /** The pool's (or fleet client's) id, carried by its events. */
  ownerId: number;
  settings: CallSettings;
  policy: ErrorPolicy;
  target: Target<C>;
  counters: Counters;
  logger: Logger;
  budget: RetryBudget | undefined;
  poison: PoisonTracker;
  recovery: RecoveryOrchestrator;
  fallback: Adapter | null;
  /** Aborted when the owner starts closing: waits for a retry end at once. */
  closeSignal: AbortSignal;
  closedError(call: C | null, command?: string, cause?: unknown): PoolError;
  /** A call settled (its session moves on; a closing owner checks whether it drained). */
  settled(call: C): void;
}

/**
 * What happens to a call, as composed steps (cockatiel's `wrap`, undici's retry handler around
 * dispatch): the first attempt; after a failure, `decideNext` says what follows (send it again,
 * in place or to another member; re-send it with a larger timeout; the fallback; or stop), step
 * by step until one answers. Every failed attempt is classified, counted and reported exactly
 * once, with the strategy that says what was done about it; every call settles once. The same
 * for a pool's workers and a fleet's hosts: the target only places attempts.
 */
export class CallPolicy<C extends Call> {
  constructor(private readonly d: CallPolicyDeps<C>) {}

  /** Runs `call`. The first attempt settles the caller straight from its answer. */
  run<T>(call: C): Promise<T | DetailedResult<T>> {
    const first = new Promise<unknown>((resolve, reject) => {
      this.d.target.attempt(
        call,
        { timeoutMs: call.timeoutMs, avoid: null },
        // With a snapshot of its session to store, the call resolves once the store took it.
        (value) => (call.saving === null ? resolve(this.succeeded(call, value, 'pool')) : void call.saving.then((unsaved) => (unsaved === null ? resolve(this.succeeded(call, value, 'pool')) : reject(unsaved)))),
        (err, where, died) => {
          this.noteFailure(call, err, where, died);
          reject(err);
        },
      );
    });
    this.d.counters.started();
    this.d.budget?.recordCall();
    // What follows a failure runs in the caller's async context (its AsyncLocalStorage: a trace
    // span, a fallback's own context), not in that of the pipe that delivered the failure.
    return first.then(undefined, (e: unknown) => this.afterFailure(call, e)) as Promise<T | DetailedResult<T>>;
  }

  /** An attempt the target had given up on killed its worker: its call is the one to blame. */
  blame(call: C, workerId: number): void {
    this.recordDeath(call, null, workerId);
  }

  private async afterFailure(call: C, first: unknown): Promise<unknown> {
    if (call.saving !== null) await call.saving;
    // A consumer that stopped its stream ended it; nothing failed.
    if (call.stoppedByConsumer) return this.succeeded(call, call.items, 'pool');
    const wait = call.signal === undefined ? { signal: this.d.closeSignal, dispose: noop } : anySignal(call.signal, this.d.closeSignal);
    try {
      const r = await this.steps(call, asPoolError(first, call), wait.signal);
      return this.succeeded(call, r.value, r.via);
    } catch (e) {
      const err = asPoolError(e, call);
      this.settle(call, false, 'pool', err);
      throw err;
    } finally {
      wait.dispose();
    }
  }

  private succeeded(call: C, value: unknown, via: Via): unknown {
    this.settle(call, true, via, null);
    return call.detailed ? call.detailedResult(value, via) : value;
  }

  /** The one place a call settles: counted, published, its session moves on. A second settlement is counted, never delivered. */
  settle(call: C, ok: boolean, via: Via, err: PoolError | null): void {
    const c = this.d.counters;
    if (!call.markSettled()) {
      c.calls.settledTwice++;
      this.d.logger.error({ poolId: this.d.ownerId, callId: call.id, command: call.command }, `call ${call.id} settled twice; this is a pyfleet bug, please report it`);
      return;
    }
    c.settled(ok, via);
    this.d.settled(call);
    if (channels['call:end'].hasSubscribers) {
      channels['call:end'].publish({
        poolId: this.d.ownerId,
        callId: call.id,
        command: call.command,
        sessionId: call.sessionId,
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

  /** The steps after a failed attempt, until one answers; rejects with the error the caller gets. */
  private async steps(call: C, err: PoolError, signal: AbortSignal): Promise<{ value: unknown; via: Via }> {
    for (;;) {
      const n = this.decide(call, err).next;
      if (n.kind !== 'retry') {
        this.exhausted(call, err, n.kind === 'stop' ? n.reason : 'strategy');
        if (n.kind === 'stop') throw call.poisoned ?? err;
        if (n.kind === 'fallback' && n.plan === null) {
          return { value: await callFallback(this.d.fallback!, call, err, this.d.logger, this.d.ownerId), via: 'fallback' };
        }
        return this.recover(call, err, signal);
      }
      if (n.afterDeath) call.resentAfterDeath = true;
      this.d.counters.calls.retries++;
      if (channels['retry:attempt'].hasSubscribers) {
        channels['retry:attempt'].publish({ command: call.command, attempt: call.attempts, delayMs: n.delayMs, category: err.category, code: err.code, poolId: this.d.ownerId });
      }
      if (n.delayMs > 0) {
        try {
          await sleep(n.delayMs, realClock, signal);
        } catch {
          this.exhausted(call, err, 'aborted');
          throw call.signal?.aborted === true ? retryAbortedError(call, call.signal, err) : this.d.closedError(call, undefined, err);
        }
      }
      try {
        return { value: await this.again(call, call.timeoutMs), via: 'pool' };
      } catch (e) {
        err = asPoolError(e, call);
      }
    }
  }

  /** Decides what follows a failed attempt, and reports the failure with it (once). */
  private decide(call: C, err: PoolError): Decision {
    const { settings, policy, budget, target } = this.d;
    const r = settings.retry;
    const where = call.avoid;
    const elsewhere = target.hasOtherReady(call, where);
    const d = decideNext(policy, {
      err,
      attempt: call.attempts,
      maxAttempts: r.maxAttempts,
      idempotent: call.idempotent,
      affectingAllWorkers: target.allDown(),
      closing: this.d.closeSignal.aborted,
      poisoned: call.poisoned !== null,
      streamStarted: call.items > 0,
      // Streams do not fail over: the fallback answers with one value.
      hasFallback: this.d.fallback !== null && call.sink === null,
      freeWorkerElsewhere: elsewhere,
      movable: elsewhere && where !== null && !err.taken && ERROR_CODES[err.code].movableUntaken,
      resentAfterDeath: call.resentAfterDeath,
      backoffDelay: r.backoff === undefined ? undefined : () => nextRetryDelay(call, call.attempts, r),
      maxDelayMs: r.maxDelayMs,
      acquireRetry: () => budget === undefined || budget.tryAcquireRetry(),
      plan: () => this.d.recovery.plan(err, this.recoveryContext(call, err, undefined)),
    });
    err.attempt = call.attempts;
    err.severity = d.severity;
    err.strategy = d.strategy;
    reportFailure(this.d.ownerId, this.d.counters, this.d.logger, err, performance.now() - call.startedAt);
    if (call.poisoned !== null) {
      call.poisoned.severity = d.severity;
      call.poisoned.strategy = 'abandon';
    }
    return d;
  }

  private exhausted(call: C, err: PoolError, reason: RetryStopReason): void {
    if (channels['retry:exhausted'].hasSubscribers) {
      channels['retry:exhausted'].publish({ command: call.command, attempts: call.attempts, category: err.category, code: err.code, reason, poolId: this.d.ownerId });
    }
  }

  /** Another attempt of `call`, as a promise (retries and re-sends). */
  private again(call: C, timeoutMs: number): Promise<unknown> {
    if (this.d.closeSignal.aborted) return Promise.reject(this.d.closedError(call));
    return new Promise((resolve, reject) => {
      this.d.target.attempt(
        call,
        { timeoutMs, avoid: call.avoid },
        (value) => (call.saving === null ? resolve(value) : void call.saving.then((unsaved) => (unsaved === null ? resolve(value) : reject(unsaved)))),
        (err, where, died) => {
          this.noteFailure(call, err, where, died);
          reject(err);
        },
      );
    });
  }

  /** Every failed attempt: where it failed (the next attempt avoids that member), and whether its death makes the call poison. */
  private noteFailure(call: C, err: PoolError, where: Member | null, died: boolean): void {
    call.avoid = where;
    if (died) this.recordDeath(call, err, err.workerId);
  }

  private recordDeath(call: C, err: PoolError | null, workerId: number | null): void {
    const { poison, settings } = this.d;
    if (!poison.recordDeath(PoisonTracker.key(call.command, call.argsJson, call.argsParts), workerId) || call.poisoned !== null) return;
    const last = err ?? new PoolError({ code: 'PYFLEET_WORKER_CRASHED', command: call.command, message: `its worker died running ${call.command} after the call had been given up on` });
    call.poisoned = poisonError(call, settings.poison.maxDeaths, settings.poison.coolDownMs, last);
    this.d.logger.error({ poolId: this.d.ownerId, command: call.command, code: 'PYFLEET_POISON_CALL' }, call.poisoned.message);
  }

  /** A re-send with a larger timeout, or the fallback, run by the recovery (timed, counted, reported as one). */
  private async recover(call: C, err: PoolError, signal: AbortSignal): Promise<{ value: unknown; via: Via }> {
    const fb = this.d.fallback;
    const result = await this.d.recovery.handle(err, this.recoveryContext(call, err, signal), (run) =>
      run.plan.type === 'failover'
        ? failoverStep(run, fb === null ? null : (s) => callFallback(fb, call, err, this.d.logger, this.d.ownerId, s))
        : resendWithLargerTimeout(run, {
            baseTimeoutMs: call.timeoutMs,
            clock: realClock,
            mayAttempt: () => call.attempts < this.d.settings.retry.maxAttempts,
            send: (timeoutMs) => this.again(call, timeoutMs).catch((e: unknown) => Promise.reject(call.poisoned ?? e)),
            failed: (e, willRetry) => this.resendFailed(call, e, willRetry),
          }),
    );
    if (result.outcome === 'recovered') return { value: result.value, via: result.type === 'failover' ? 'fallback' : 'recovery' };
    if (call.signal?.aborted) throw abortedError(call, call.signal, err);
    if (this.d.closeSignal.aborted) throw this.d.closedError(call, undefined, err);
    if (call.poisoned !== null) throw call.poisoned;
    // A re-send's own error is the most recent word on the call; a failed fallback's says both.
    if (result.error instanceof PoolError) throw result.error;
    throw err;
  }

  /** A re-send failed: reported once, saying whether another follows. */
  private resendFailed(call: C, e: unknown, willRetry: boolean): void {
    const err = asPoolError(e, call);
    if (err.code === 'PYFLEET_POISON_CALL') return;
    err.attempt = call.attempts;
    err.strategy = willRetry && call.attempts < this.d.settings.retry.maxAttempts ? 'backoff_retry' : 'abandon';
    reportFailure(this.d.ownerId, this.d.counters, this.d.logger, err, performance.now() - call.startedAt);
  }

  private recoveryContext(call: C, err: PoolError, signal: AbortSignal | undefined): RecoveryContext {
    return {
      command: call.command,
      sessionId: call.sessionId,
      workerId: err.workerId,
      idempotent: call.idempotent,
      userFacing: true,
      affectingAllWorkers: this.d.target.allDown(),
      signal,
    };
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
