import type { ErrorCategory, MatrixBackoff, Severity } from '../../errors/categories.js';

/**
 * What a recovery does (the seed's `load_recovery_strategies` types, plus the two worker
 * actions the seed's placeholders stood for):
 * - `retry_with_backoff`: re-send the call with a larger timeout, up to `maxAttempts` times,
 *   waiting per `backoff` between attempts (a step of the call core).
 * - `failover`: send the call to the configured fallback (a step of the call core).
 * - `circuit_break`: open the circuit so the pool stops sending work (`actions.openCircuit`).
 * - `abandon`: do nothing; the recovery fails with the reason.
 * - `replace_worker`: kill the worker and start a fresh one (`actions.replaceWorker`).
 * - `recycle_worker`: drain the worker, then restart it to free its memory (`actions.recycleWorker`).
 */
export const RECOVERY_TYPES = ['retry_with_backoff', 'failover', 'circuit_break', 'abandon', 'replace_worker', 'recycle_worker'] as const;
export type RecoveryType = (typeof RECOVERY_TYPES)[number];

/** Recovery types that send the call again (to this pool or to the fallback): they need idempotency once a worker took the call. */
export const RESENDING_TYPES: readonly RecoveryType[] = Object.freeze(['retry_with_backoff', 'failover']);

/** One cell of the strategy table. */
export interface RecoveryEntry {
  type: RecoveryType;
  /** retry_with_backoff: attempts in all (default 1). */
  maxAttempts?: number;
  /** retry_with_backoff: wait between attempts (policy schedules: exponential 1/3/9/27 s, linear 1/2/4/8/16 s, none 0). Default none. */
  backoff?: MatrixBackoff;
  /** retry_with_backoff: each attempt's timeout is the call's timeout times this to the power of the attempt number (default 2). */
  timeoutFactor?: number;
  /**
   * Used instead of `type` when `type` would re-send a call that a worker took and that is
   * not idempotent (default `abandon`).
   */
  ifNotIdempotent?: RecoveryType;
}

export type RecoveryTable = Record<ErrorCategory, Record<Severity, RecoveryEntry>>;
export type RecoveryTableOverrides = Partial<Record<ErrorCategory, Partial<Record<Severity, RecoveryEntry>>>>;

/** Max recovery time per severity (ms), before the `userFacing` halving. */
export type RecoveryTimeLimits = Record<Severity, number>;

/** The strategy chosen for one error: the table's entry after the idempotency guard, enhanced as the seed's `enhance_strategy`. */
export interface RecoveryPlan {
  type: RecoveryType;
  /** Set when the idempotency guard replaced a re-sending type. */
  insteadOf?: RecoveryType;
  maxAttempts: number;
  backoff: MatrixBackoff;
  timeoutFactor: number;
  /** Seed `calculate_max_recovery_time`. */
  maxRecoveryTimeMs: number;
  category: ErrorCategory;
  severity: Severity;
}

/** What the pool knows about the failed call. Missing fields are taken from the error. */
export interface RecoveryContext {
  command?: string | null;
  sessionId?: string | null;
  workerId?: number | null;
  /** May the call be re-sent after a worker took it? Unset means no. */
  idempotent?: boolean;
  /** A caller is waiting: the time limit is halved (seed). */
  userFacing?: boolean;
  affectingAllWorkers?: boolean;
  /** Circuit to open for `circuit_break` (default: the orchestrator's `circuitName`). */
  circuit?: string;
  /** Stops the recovery (e.g. the caller gave up, or the pool is closing). */
  signal?: AbortSignal;
}

/**
 * The worker actions, implemented by the pool. Each resolves only when the action is done and
 * rejects when it failed; the orchestrator reports exactly that. (Re-sending the call, with a
 * larger timeout or to the fallback, is the call core's step, not an action.)
 */
export interface RecoveryActions {
  /** Kill worker `workerId`, which is alive, and start a new one in its place; rejects when it is already gone (the supervisor replaces dead workers). */
  replaceWorker(workerId: number, reason: string): Promise<void>;
  /** Let worker `workerId` finish its work, then restart it (frees its memory). */
  recycleWorker(workerId: number, reason: string): Promise<void>;
  /** Open circuit `name` now. Throws if it cannot. */
  openCircuit(name: string, reason: string): void;
}

/** The action a recovery ran (`none` for abandon, or when it could not start); the call core's steps keep the names they had as actions. */
export type RecoveryActionName = 'replaceWorker' | 'recycleWorker' | 'retryWithLargerTimeout' | 'openCircuit' | 'failover' | 'none';

/**
 * - `recovered`: the call has a value (retry or failover succeeded): give it to the caller.
 * - `mitigated`: the action succeeded but the call has no value (worker replaced or recycled,
 *   circuit opened): the caller still gets the original error.
 * - `failed`: the action failed, timed out, was aborted, or the strategy was abandon.
 */
export type RecoveryOutcome = 'recovered' | 'mitigated' | 'failed';

export interface RecoveryResult {
  id: string;
  /** outcome !== 'failed' */
  ok: boolean;
  outcome: RecoveryOutcome;
  type: RecoveryType;
  action: RecoveryActionName;
  category: ErrorCategory;
  severity: Severity;
  /** A sentence saying what was done or why it failed. */
  reason: string;
  durationMs: number;
  /** Action invocations made (retry attempts count one each). */
  attempts: number;
  timedOut: boolean;
  /** The call's result when `outcome` is `recovered`. */
  value?: unknown;
  /** The error that made the recovery fail, when an action threw. */
  error?: unknown;
  plan: RecoveryPlan;
}

export interface RecoveryCounts {
  initiated: number;
  succeeded: number;
  failed: number;
}

export interface RecoveryMetrics extends RecoveryCounts {
  /** Recoveries running now. */
  active: number;
  /** Of the failed ones: how many hit their time limit. */
  timedOut: number;
  byStrategy: Record<RecoveryType, RecoveryCounts>;
}

/** A recovery in progress. */
export interface ActiveRecovery {
  id: string;
  type: RecoveryType;
  category: ErrorCategory;
  severity: Severity;
  workerId: number | null;
  command: string | null;
  startedAt: number;
  deadline: number;
}
