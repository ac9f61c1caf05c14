import { BACKOFFS, ERROR_CATEGORIES, SEVERITIES, isErrorCategory, type ErrorCategory, type Severity } from '../../errors/categories.js';
import { DEFAULTS } from '../../defaults.js';
import { invalidOption } from '../../errors/invalid.js';
import type { PoolError } from '../../errors/pool-error.js';
import {
  RECOVERY_TYPES,
  RESENDING_TYPES,
  type RecoveryContext,
  type RecoveryEntry,
  type RecoveryPlan,
  type RecoveryTable,
  type RecoveryTableOverrides,
  type RecoveryTimeLimits,
} from './types.js';

const retry = (maxAttempts: number, backoff: RecoveryEntry['backoff']): RecoveryEntry =>
  Object.freeze({ type: 'retry_with_backoff', maxAttempts, backoff, timeoutFactor: DEFAULTS.recoveryTimeoutFactor, ifNotIdempotent: 'abandon' });
const only = (type: RecoveryEntry['type'], ifNotIdempotent?: RecoveryEntry['type']): RecoveryEntry =>
  Object.freeze(ifNotIdempotent === undefined ? { type } : { type, ifNotIdempotent });

/**
 * The seed's `load_recovery_strategies`, extended to all nine categories and four severities.
 * The severity of an error comes from the policy (base row, raised after attempt 3, critical
 * when all workers are affected), so the critical column is "this keeps happening" or "it
 * hits every worker". Unlike the seed's placeholders, every entry runs a real action.
 */
export const DEFAULT_RECOVERY_STRATEGIES: Readonly<RecoveryTable> = Object.freeze({
  initialization_error: Object.freeze({
    warning: only('replace_worker'), // one worker failed to start: try a fresh one in its place
    minor: only('replace_worker'), // same, still isolated
    major: only('circuit_break'), // the matrix's strategy: starting workers keeps failing, stop trying for a while
    critical: only('circuit_break'), // matrix default (base severity): bad interpreter or module, spawning more will not help
  }),
  connection_error: Object.freeze({
    warning: only('replace_worker'), // the process died or its pipe broke: a dead process cannot be
    minor: only('replace_worker'), //   "reconnected" (the seed's placeholder), so kill what is left
    major: only('replace_worker'), //   and start a fresh worker in its place (base severity)
    critical: only('circuit_break'), // seed: workers keep dying or all died: stop the traffic that kills them
  }),
  communication_error: Object.freeze({
    warning: only('replace_worker'), // garbage on the protocol pipe: the frame stream is out of sync
    minor: only('replace_worker'), //   and the worker cannot be trusted with another call,
    major: only('replace_worker'), //   so replace it (base severity; the call itself is retried by the policy)
    critical: only('circuit_break'), // every worker talks garbage: something systemic, stop sending
  }),
  timeout_error: Object.freeze({
    warning: retry(3, 'linear'), // seed minor: 3 attempts, linear; each with a larger timeout when the call may be
    minor: retry(3, 'linear'), //   re-sent. Not idempotent: nothing to do here; the worker that holds the call was
    major: retry(2, 'exponential'), //   sent a cancel, and is replaced by itself only if it does not acknowledge it (seed major: 2, exponential)
    critical: only('abandon'), // seed: timeouts past attempt 3 or on every worker: more waiting will not help
  }),
  resource_error: Object.freeze({
    warning: only('recycle_worker'), // memory or fds exhausted in a worker: drain it and restart it
    minor: only('recycle_worker'), //   to give the memory back (the seed's free_resources placeholder)
    major: only('recycle_worker'), //   (the seed's major row failed over to mock data; we free the resource instead)
    critical: only('circuit_break'), // matrix default (base severity) and seed: the pool is exhausted, shed load
  }),
  health_check_error: Object.freeze({
    warning: only('recycle_worker'), // a missed health check: the worker may still be finishing a call,
    minor: only('recycle_worker'), //   so restart it gracefully after it drains (base severity)
    major: only('replace_worker'), // failing again past attempt 3 (Doc 3: three failures remove the worker): kill it now
    critical: only('circuit_break'), // every worker is unhealthy: stop sending work
  }),
  session_error: Object.freeze({
    warning: only('abandon'), // the session's state lived in a worker and is gone or closed:
    minor: only('abandon'), //   no action on the pool brings it back, the caller must open the
    major: only('abandon'), //   session again; saying so is the honest answer
    critical: only('abandon'),
  }),
  python_error: Object.freeze({
    warning: only('failover', 'abandon'), // the handler raised: try the configured fallback (matrix strategy),
    minor: only('failover', 'abandon'), //   but only if the call may run twice: it did run in Python, and
    major: only('failover', 'abandon'), //   its side effects may have happened (base severity)
    critical: only('failover', 'abandon'), // raising on every worker: the fallback is the only other place to go
  }),
  system_error: Object.freeze({
    warning: only('abandon'), // matrix: abandon, 0 retries: an internal error, an abort or a poison call;
    minor: only('abandon'), //   nothing safe to do automatically
    major: only('abandon'),
    critical: only('abandon'),
  }),
});

const ENTRY_KEYS = ['type', 'maxAttempts', 'backoff', 'timeoutFactor', 'ifNotIdempotent'] as const;

function invalid(what: string): never {
  throw invalidOption(what);
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function show(x: unknown): string {
  return typeof x === 'string' ? JSON.stringify(x) : typeof x === 'object' && x !== null ? 'an object' : String(x);
}

function validateEntry(at: string, e: unknown): RecoveryEntry {
  if (!isObject(e)) invalid(`${at} must be an object like { type: 'replace_worker' }, got ${show(e)}`);
  for (const k of Object.keys(e)) {
    if (!(ENTRY_KEYS as readonly string[]).includes(k)) invalid(`${at} has unknown key ${JSON.stringify(k)}; use any of ${ENTRY_KEYS.join(', ')}`);
  }
  if (!(RECOVERY_TYPES as readonly unknown[]).includes(e.type)) invalid(`${at}.type is ${show(e.type)}; use one of ${RECOVERY_TYPES.join(', ')}`);
  if (e.ifNotIdempotent !== undefined && !(RECOVERY_TYPES as readonly unknown[]).includes(e.ifNotIdempotent)) {
    invalid(`${at}.ifNotIdempotent is ${show(e.ifNotIdempotent)}; use one of ${RECOVERY_TYPES.join(', ')}`);
  }
  if (e.ifNotIdempotent !== undefined && (RESENDING_TYPES as readonly unknown[]).includes(e.ifNotIdempotent)) {
    invalid(`${at}.ifNotIdempotent is ${show(e.ifNotIdempotent)}, which re-sends the call too; use one of ${RECOVERY_TYPES.filter((t) => !RESENDING_TYPES.includes(t)).join(', ')}`);
  }
  if (e.maxAttempts !== undefined && !(typeof e.maxAttempts === 'number' && Number.isInteger(e.maxAttempts) && e.maxAttempts >= 1)) {
    invalid(`${at}.maxAttempts is ${show(e.maxAttempts)}; use an integer >= 1`);
  }
  if (e.backoff !== undefined && !(BACKOFFS as readonly unknown[]).includes(e.backoff)) invalid(`${at}.backoff is ${show(e.backoff)}; use one of ${BACKOFFS.join(', ')}`);
  if (e.timeoutFactor !== undefined && !(typeof e.timeoutFactor === 'number' && Number.isFinite(e.timeoutFactor) && e.timeoutFactor >= 1)) {
    invalid(`${at}.timeoutFactor is ${show(e.timeoutFactor)}; use a finite number >= 1`);
  }
  return Object.freeze({ ...e }) as unknown as RecoveryEntry;
}

/**
 * The strategy table with per-cell overrides merged in (`{ timeout_error: { major: { type:
 * 'replace_worker' } } }`). Throws `PYFLEET_INVALID_OPTIONS` naming the bad key.
 */
export function loadRecoveryStrategies(overrides?: RecoveryTableOverrides | null): Readonly<RecoveryTable> {
  const table = {} as RecoveryTable;
  for (const c of ERROR_CATEGORIES) table[c] = { ...DEFAULT_RECOVERY_STRATEGIES[c] };
  if (overrides !== undefined && overrides !== null) {
    if (!isObject(overrides)) invalid(`strategies must be an object keyed by error category, got ${show(overrides)}`);
    for (const [c, row] of Object.entries(overrides)) {
      if (!isErrorCategory(c)) invalid(`strategies has unknown category ${JSON.stringify(c)}; use one of ${ERROR_CATEGORIES.join(', ')}`);
      if (!isObject(row)) invalid(`strategies.${c} must be an object keyed by severity, got ${show(row)}`);
      for (const [s, entry] of Object.entries(row)) {
        if (!(SEVERITIES as readonly string[]).includes(s)) invalid(`strategies.${c} has unknown severity ${JSON.stringify(s)}; use one of ${SEVERITIES.join(', ')}`);
        if (entry === undefined) continue;
        table[c][s as Severity] = validateEntry(`strategies.${c}.${s}`, entry);
      }
    }
  }
  for (const c of ERROR_CATEGORIES) Object.freeze(table[c]);
  return Object.freeze(table);
}

/** Default time limits with overrides merged in; each must be a positive finite number of ms. */
export function loadTimeLimits(overrides?: Partial<RecoveryTimeLimits> | null): Readonly<RecoveryTimeLimits> {
  const out: RecoveryTimeLimits = { ...DEFAULTS.recoveryTimeLimits };
  if (overrides !== undefined && overrides !== null) {
    if (!isObject(overrides)) invalid(`timeLimits must be an object keyed by severity, got ${show(overrides)}`);
    for (const [s, v] of Object.entries(overrides)) {
      if (!(SEVERITIES as readonly string[]).includes(s)) invalid(`timeLimits has unknown severity ${JSON.stringify(s)}; use one of ${SEVERITIES.join(', ')}`);
      if (v === undefined) continue;
      if (!(typeof v === 'number' && Number.isFinite(v) && v > 0)) invalid(`timeLimits.${s} is ${show(v)}; use a number of ms > 0`);
      out[s as Severity] = v;
    }
  }
  return Object.freeze(out);
}

/** Seed `calculate_max_recovery_time`: the severity's limit, halved when a caller is waiting. */
export function maxRecoveryTime(limits: Readonly<RecoveryTimeLimits>, severity: Severity, userFacing: boolean | undefined): number {
  const base = limits[severity] ?? DEFAULTS.recoveryTimeLimits.warning;
  return userFacing === true ? base / 2 : base;
}

/** True when `type` would send the call again and the call may not be: a worker took it and it is not idempotent. */
export function resendForbidden(err: PoolError, ctx: RecoveryContext): boolean {
  return err.taken && ctx.idempotent !== true;
}

/**
 * Seed `determine_recovery_strategy` + `enhance_strategy`: the table's cell for the error's
 * category and severity; a re-sending type swapped for its `ifNotIdempotent` when the call
 * may not be re-sent; the time limit. (The seed's circuit-breaker flag has no use here: every
 * re-send is an attempt of the pool, and every attempt passes the pool's circuits.) (The seed's `fallback_adapter` is the pool's configured fallback, reached through
 * `actions.failover`.)
 */
export function planRecovery(
  table: Readonly<RecoveryTable>,
  limits: Readonly<RecoveryTimeLimits>,
  err: PoolError,
  ctx: RecoveryContext,
): RecoveryPlan {
  const category: ErrorCategory = isErrorCategory(err.category) ? err.category : 'system_error';
  const severity: Severity = (SEVERITIES as readonly string[]).includes(err.severity) ? err.severity : 'critical';
  const entry = table[category][severity];
  let type = entry.type;
  let insteadOf: RecoveryPlan['insteadOf'];
  if (RESENDING_TYPES.includes(type) && resendForbidden(err, ctx)) {
    insteadOf = type;
    type = entry.ifNotIdempotent ?? 'abandon';
  }
  const plan: RecoveryPlan = {
    type,
    maxAttempts: entry.maxAttempts ?? 1,
    backoff: entry.backoff ?? 'none',
    timeoutFactor: entry.timeoutFactor ?? DEFAULTS.recoveryTimeoutFactor,
    maxRecoveryTimeMs: maxRecoveryTime(limits, severity, ctx.userFacing),
    category,
    severity,
  };
  if (insteadOf !== undefined) plan.insteadOf = insteadOf;
  return plan;
}
