export {
  BACKOFF_STRATEGIES,
  DEFAULT_BASE_DELAY_MS,
  DEFAULT_MAX_DELAY_MS,
  DecorrelatedJitterBackoff,
  RETRY_SCHEDULES,
  ScheduleBackoff,
  capDelay,
  computeDelay,
  createBackoff,
  fibonacci,
  isBackoffStrategy,
  scheduleDelay,
  type Backoff,
  type BackoffOptions,
  type BackoffStrategy,
  type RetryScheduleName,
} from './backoff.js';
export { RetryBudget, type RetryBudgetOptions, type RetryBudgetStats } from './budget.js';
export {
  retry,
  retryAfterFirstFailure,
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
export { CircuitRegistry, POOL_OPERATIONS, WORKER_COMMANDS, type CircuitDefaults } from './circuit-registry.js';
