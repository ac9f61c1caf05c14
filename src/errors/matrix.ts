import type { ErrorCategory, MatrixBackoff, RecoveryStrategy, Severity } from './categories.js';

/** One row of the decision matrix: what a failure of this category means and what to do about it. */
export interface MatrixRow {
  severity: Severity;
  strategy: RecoveryStrategy;
  /** Retries after the first attempt (0 = never retried). */
  maxRetries: number;
  backoff: MatrixBackoff;
}

export type DecisionMatrix = Record<ErrorCategory, MatrixRow>;

/**
 * The seed's decision matrix (DESIGN.md): the default policy. Held as data so a user can
 * override any row with `createPool({ policy })`.
 */
export const DEFAULT_MATRIX: Readonly<DecisionMatrix> = Object.freeze({
  initialization_error: { severity: 'critical', strategy: 'circuit_break', maxRetries: 3, backoff: 'exponential' },
  connection_error: { severity: 'major', strategy: 'backoff_retry', maxRetries: 5, backoff: 'exponential' },
  communication_error: { severity: 'major', strategy: 'immediate_retry', maxRetries: 3, backoff: 'linear' },
  timeout_error: { severity: 'major', strategy: 'backoff_retry', maxRetries: 2, backoff: 'exponential' },
  resource_error: { severity: 'critical', strategy: 'circuit_break', maxRetries: 1, backoff: 'none' },
  health_check_error: { severity: 'minor', strategy: 'backoff_retry', maxRetries: 3, backoff: 'linear' },
  session_error: { severity: 'minor', strategy: 'immediate_retry', maxRetries: 2, backoff: 'none' },
  python_error: { severity: 'major', strategy: 'failover', maxRetries: 1, backoff: 'none' },
  system_error: { severity: 'critical', strategy: 'abandon', maxRetries: 0, backoff: 'none' },
} satisfies DecisionMatrix);
