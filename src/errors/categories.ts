/** The nine failure categories of the seed's error model. */
export const ERROR_CATEGORIES = [
  'initialization_error',
  'connection_error',
  'communication_error',
  'timeout_error',
  'resource_error',
  'health_check_error',
  'session_error',
  'python_error',
  'system_error',
] as const;
export type ErrorCategory = (typeof ERROR_CATEGORIES)[number];

/** Ordered from least to most severe; `upgradeSeverity` walks this order. */
export const SEVERITIES = ['warning', 'minor', 'major', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];

export const STRATEGIES = ['immediate_retry', 'backoff_retry', 'circuit_break', 'failover', 'abandon'] as const;
export type RecoveryStrategy = (typeof STRATEGIES)[number];

export const BACKOFFS = ['none', 'linear', 'exponential'] as const;
export type MatrixBackoff = (typeof BACKOFFS)[number];

export function isErrorCategory(x: unknown): x is ErrorCategory {
  return typeof x === 'string' && (ERROR_CATEGORIES as readonly string[]).includes(x);
}
