export {
  BACKOFF_STRATEGIES,
  DecorrelatedJitterBackoff,
  ScheduleBackoff,
  capDelay,
  computeDelay,
  createBackoff,
  fibonacci,
  isBackoffStrategy,
  type Backoff,
  type BackoffOptions,
  type BackoffStrategy,
} from './backoff.js';
export { RetryBudget, type RetryBudgetOptions, type RetryBudgetStats } from './budget.js';
export {
  retry,
  sleep,
  validateRetryOptions,
  type RetryDecision,
  type RetryFn,
  type RetryOptions,
  type RetryStopReason,
} from './retry.js';
export {
  CircuitBreaker,
  type CircuitBreakerOptions,
  type CircuitListener,
  type CircuitSnapshot,
  type CircuitState,
  type CircuitStateChange,
} from './circuit-breaker.js';
export { CircuitRegistry, POOL_OPERATIONS, WORKER_COMMANDS, commandCircuitName, type CircuitDefaults } from './circuit-registry.js';
