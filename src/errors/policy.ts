import {
  BACKOFFS,
  ERROR_CATEGORIES,
  SEVERITIES,
  STRATEGIES,
  isErrorCategory,
  type ErrorCategory,
  type MatrixBackoff,
  type RecoveryStrategy,
  type Severity,
} from './categories.js';
import { DEFAULT_MATRIX, type MatrixRow } from './matrix.js';
import { invalidOption } from './invalid.js';
import type { PoolError } from './pool-error.js';

/**
 * The decision policy: the seed's `PoolErrorHandler` (`determine_severity`,
 * `determine_recovery_strategy`, `should_retry?`, `get_retry_delay`) driven by the decision
 * matrix as data (DESIGN.md, "The decision matrix").
 *
 * The seed's delay lists live here, once: errors/ sits at the bottom of the import graph, and
 * resilience/ (the recovery's backoff) reads them from here.
 */

/** The seed's `@retry_delays`, verbatim. */
export const RETRY_DELAYS = Object.freeze({
  immediate_retry: Object.freeze([0, 100, 200]),
  backoff_retry: Object.freeze([1_000, 2_000, 4_000, 8_000, 16_000]),
  exponential: Object.freeze([1_000, 3_000, 9_000, 27_000]),
}) satisfies Readonly<Record<string, readonly number[]>>;

/** The seed's `get_retry_delay` fallback for a strategy without a list (`Map.get(..., [1_000])`). */
export const FALLBACK_DELAYS: readonly number[] = Object.freeze([1_000]);

/**
 * Which schedule a row uses. The seed keys its lists by *strategy* only, so its `exponential`
 * list is never reached; the matrix also names a *backoff* per row. We combine the two:
 *
 * | row                                   | delays after failed attempt 1, 2, 3, ...          |
 * |---------------------------------------|---------------------------------------------------|
 * | `delays` given (user override)        | that list                                         |
 * | backoff `none`                        | 0 (retry at once; e.g. session_error)             |
 * | strategy `immediate_retry`            | seed `immediate_retry`: 0, 100, 200               |
 * | `backoff_retry` + backoff exponential | seed `exponential`: 1000, 3000, 9000, 27000       |
 * | `backoff_retry` + backoff linear      | seed `backoff_retry`: 1000, 2000, 4000, 8000, 16000 |
 * | any other strategy                    | seed fallback: 1000                               |
 *
 * Past the end of a list the last element repeats (seed: `Enum.at(delays, attempt - 1, List.last(delays))`).
 * With the default matrix: connection_error and timeout_error wait 1 s, 3 s, 9 s, 27 s;
 * health_check_error 1 s, 2 s, 4 s; communication_error 0, 100, 200 ms; session_error 0.
 */
export function scheduleFor(row: PolicyRow, strategy: RecoveryStrategy): readonly number[] {
  if (row.delays !== undefined) return row.delays;
  if (row.backoff === 'none') return NO_DELAY;
  if (strategy === 'immediate_retry') return RETRY_DELAYS.immediate_retry;
  if (strategy === 'backoff_retry') return row.backoff === 'exponential' ? RETRY_DELAYS.exponential : RETRY_DELAYS.backoff_retry;
  return FALLBACK_DELAYS;
}

const NO_DELAY: readonly number[] = Object.freeze([0]);

/** Element `attempt - 1` of `list`, the last one past the end, the first one before the start, 0 for an empty list. */
export function delayAt(list: readonly number[], attempt: number): number {
  const n = list.length;
  if (n === 0) return 0;
  const i = !(attempt >= 1) ? 0 : attempt > n ? n - 1 : Math.floor(attempt) - 1;
  return list[i];
}

/** A matrix row plus an optional explicit delay schedule (ms after failed attempt 1, 2, ...). */
export interface PolicyRow extends MatrixRow {
  delays?: readonly number[];
}

/** Per-category partial rows, as given to `createPool({ policy })`. */
export type PolicyOverrides = Partial<Record<ErrorCategory, Partial<PolicyRow>>>;

export interface SeverityContext {
  /** The number of the attempt that just failed (1-based). */
  attempt: number;
  /** True when the failure hits every worker (e.g. all of them crashed or timed out). */
  affectingAllWorkers?: boolean;
}

export interface DecisionContext {
  /** The attempt that just failed; defaults to `err.attempt`. */
  attempt?: number;
  affectingAllWorkers?: boolean;
  /** May the call be re-sent after a worker took it? Unset means no (DESIGN.md, idempotency). */
  idempotent?: boolean;
}

/** Why `decide` said what it said. */
export type DecisionReason =
  | 'retry'
  | 'not_retryable' // the error says the same input fails the same way
  | 'max_retries' // attempt > row.maxRetries
  | 'strategy' // the strategy does not retry in place (circuit_break, failover, abandon)
  | 'not_idempotent'; // a worker took the call and it may not be re-sent

export interface Decision {
  severity: Severity;
  strategy: RecoveryStrategy;
  retry: boolean;
  /** Wait before the retry; 0 when `retry` is false. */
  delayMs: number;
  reason: DecisionReason;
}

/** Strategies that re-run the call on this pool. failover goes to the pool's fallback instead. */
export const RETRY_IN_PLACE: readonly RecoveryStrategy[] = Object.freeze(['immediate_retry', 'backoff_retry']);

export function isRetryInPlace(strategy: RecoveryStrategy): boolean {
  return strategy === 'immediate_retry' || strategy === 'backoff_retry';
}

/** One step more severe along warning < minor < major < critical; critical stays critical. */
export function upgradeSeverity(s: Severity): Severity {
  const i = SEVERITIES.indexOf(s);
  return SEVERITIES[Math.min(i + 1, SEVERITIES.length - 1)];
}

const ROW_KEYS = ['severity', 'strategy', 'maxRetries', 'backoff', 'delays'] as const;

/**
 * Checks `createPool({ policy })` input and returns it typed. Throws a `PoolError`
 * `PYFLEET_INVALID_OPTIONS` naming the bad key and the allowed values. `undefined` and `null`
 * mean "no overrides".
 */
export function validatePolicyOverrides(input: unknown): PolicyOverrides {
  if (input === undefined || input === null) return {};
  if (!isPlainObject(input)) invalid(`policy must be an object keyed by error category, got ${describe(input)}`);
  const out: PolicyOverrides = {};
  for (const [category, row] of Object.entries(input)) {
    if (!isErrorCategory(category)) {
      invalid(`policy has unknown category ${JSON.stringify(category)}; use one of ${ERROR_CATEGORIES.join(', ')}`);
    }
    const at = `policy.${category}`;
    if (!isPlainObject(row)) invalid(`${at} must be an object with any of ${ROW_KEYS.join(', ')}, got ${describe(row)}`);
    const checked: Partial<PolicyRow> = {};
    for (const [key, value] of Object.entries(row)) {
      if (value === undefined) continue;
      switch (key) {
        case 'severity':
          if (!(SEVERITIES as readonly unknown[]).includes(value)) invalid(`${at}.severity is ${describe(value)}; use one of ${SEVERITIES.join(', ')}`);
          checked.severity = value as Severity;
          break;
        case 'strategy':
          if (!(STRATEGIES as readonly unknown[]).includes(value)) invalid(`${at}.strategy is ${describe(value)}; use one of ${STRATEGIES.join(', ')}`);
          checked.strategy = value as RecoveryStrategy;
          break;
        case 'backoff':
          if (!(BACKOFFS as readonly unknown[]).includes(value)) invalid(`${at}.backoff is ${describe(value)}; use one of ${BACKOFFS.join(', ')}`);
          checked.backoff = value as MatrixBackoff;
          break;
        case 'maxRetries':
          if (!(typeof value === 'number' && Number.isInteger(value) && value >= 0)) {
            invalid(`${at}.maxRetries is ${describe(value)}; use an integer >= 0 (0 = never retried)`);
          }
          checked.maxRetries = value;
          break;
        case 'delays':
          if (!(Array.isArray(value) && value.length > 0 && value.every((d) => typeof d === 'number' && Number.isFinite(d) && d >= 0))) {
            invalid(`${at}.delays is ${describe(value)}; use a non-empty array of finite numbers >= 0 (ms after failed attempt 1, 2, ...)`);
          }
          checked.delays = Object.freeze([...(value as number[])]);
          break;
        default:
          invalid(`${at} has unknown key ${JSON.stringify(key)}; use any of ${ROW_KEYS.join(', ')}`);
      }
    }
    out[category] = checked;
  }
  return out;
}

/**
 * The decision matrix with the user's overrides merged in per category, and the seed's rules
 * on top of it. Immutable once built.
 */
export class ErrorPolicy {
  private readonly rows: Readonly<Record<ErrorCategory, Readonly<PolicyRow>>>;

  /** `overrides` are validated (see `validatePolicyOverrides`), so untyped user input is safe here. */
  constructor(overrides?: PolicyOverrides) {
    const checked = validatePolicyOverrides(overrides);
    const rows = {} as Record<ErrorCategory, Readonly<PolicyRow>>;
    for (const c of ERROR_CATEGORIES) rows[c] = Object.freeze({ ...DEFAULT_MATRIX[c], ...checked[c] });
    this.rows = Object.freeze(rows);
  }

  /** The merged row for `category`. */
  row(category: ErrorCategory): Readonly<PolicyRow> {
    return this.rows[category] ?? this.rows.system_error;
  }

  /** The whole merged matrix (for stats and docs). */
  matrix(): Readonly<Record<ErrorCategory, Readonly<PolicyRow>>> {
    return this.rows;
  }

  /**
   * The seed's `determine_severity`: the row's severity; critical when the failure affects all
   * workers; otherwise one step higher once attempt > 3 (minor -> major -> critical).
   *
   * The seed's `cond` tests `attempt > 3` first, so an attempt-4 failure hitting all workers
   * would only be raised one step; we give the more severe answer (critical). Its
   * `upgrade_severity` leaves warning alone; we walk the whole order (warning -> minor), as
   * DESIGN.md says "rises one step".
   */
  severity(category: ErrorCategory, ctx: SeverityContext): Severity {
    const base = this.row(category).severity;
    if (ctx.affectingAllWorkers === true) return 'critical';
    if (ctx.attempt > 3) return upgradeSeverity(base);
    return base;
  }

  /**
   * The seed's `determine_recovery_strategy`: a critical failure past the second attempt is
   * abandoned; otherwise the row's strategy. Where the seed's code disagrees with its table
   * the table wins (initialization_error and resource_error -> circuit_break, system_error ->
   * abandon, communication_error -> immediate_retry at any severity).
   */
  strategy(category: ErrorCategory, severity: Severity, ctx: SeverityContext): RecoveryStrategy {
    if (severity === 'critical' && ctx.attempt > 2) return 'abandon';
    return this.row(category).strategy;
  }

  /** The delay before the retry after failed attempt `attempt` under `strategy` (see `scheduleFor`). */
  delay(category: ErrorCategory, strategy: RecoveryStrategy, attempt: number): number {
    return delayAt(scheduleFor(this.row(category), strategy), attempt);
  }

  /**
   * Everything the pool needs after attempt `ctx.attempt` failed with `err`. A retry in place
   * requires all of:
   *  - `err.retryable` (the same input would not just fail the same way);
   *  - strategy `immediate_retry` or `backoff_retry` (circuit_break, failover and abandon do
   *    not re-run the call here; failover is the pool's fallback);
   *  - `attempt <= row.maxRetries` (attempt 1 failed -> retry 1; maxRetries 0 never retries);
   *  - idempotency: if a worker took the call (`err.taken`), `ctx.idempotent` must be true.
   */
  decide(err: PoolError, ctx: DecisionContext = {}): Decision {
    const attempt = ctx.attempt ?? err.attempt;
    const sctx: SeverityContext = { attempt, affectingAllWorkers: ctx.affectingAllWorkers };
    const category = err.category;
    const severity = this.severity(category, sctx);
    const strategy = this.strategy(category, severity, sctx);
    const row = this.row(category);
    let reason: DecisionReason = 'retry';
    if (!err.retryable) reason = 'not_retryable';
    else if (!isRetryInPlace(strategy)) reason = 'strategy';
    else if (attempt > row.maxRetries) reason = 'max_retries';
    else if (err.taken && ctx.idempotent !== true) reason = 'not_idempotent';
    const retry = reason === 'retry';
    return { severity, strategy, retry, delayMs: retry ? this.delay(category, strategy, attempt) : 0, reason };
  }
}

/** The policy with no overrides: the seed's table. */
export const DEFAULT_POLICY: ErrorPolicy = new ErrorPolicy();

function invalid(what: string): never {
  throw invalidOption(what);
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return false;
  const proto = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

function describe(x: unknown): string {
  if (x === undefined) return 'undefined';
  if (typeof x === 'number' || typeof x === 'boolean' || x === null) return String(x);
  if (typeof x === 'string') return JSON.stringify(x);
  if (Array.isArray(x)) {
    try {
      return JSON.stringify(x);
    } catch {
      return 'an array';
    }
  }
  if (typeof x === 'object') return 'an object';
  return `a ${typeof x}`;
}
