/** Everything public in src/errors: the error model, the decision matrix and policy, classification and formatting. */
export {
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
export { ERROR_CODES, type CodeFacts, type ErrorCode } from './codes.js';
export { DEFAULT_MATRIX, type DecisionMatrix, type MatrixRow } from './matrix.js';
export { PoolError, isPoolError, type PoolErrorInit, type PythonException } from './pool-error.js';
export {
  DEFAULT_POLICY,
  ErrorPolicy,
  FALLBACK_DELAYS,
  RETRY_DELAYS,
  RETRY_IN_PLACE,
  delayAt,
  isRetryInPlace,
  scheduleFor,
  upgradeSeverity,
  validatePolicyOverrides,
  type Decision,
  type DecisionContext,
  type DecisionReason,
  type PolicyOverrides,
  type PolicyRow,
  type SeverityContext,
} from './policy.js';
export { ERRNO_CATEGORIES, classify } from './classify.js';
export { formatForLogging, logFields, type LogValue } from './format.js';
