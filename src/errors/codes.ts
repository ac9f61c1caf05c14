import type { ErrorCategory } from './categories.js';

/**
 * Every `PoolError.code`, with the category it belongs to and whether trying again can help.
 * `retryable: false` means the same input will fail the same way (a caller bug or a decision
 * already taken), so no policy may retry it.
 */
export const ERROR_CODES = {
  PYFLEET_INVALID_OPTIONS: { category: 'initialization_error', retryable: false },
  PYFLEET_SPAWN_FAILED: { category: 'initialization_error', retryable: true },
  PYFLEET_INIT_FAILED: { category: 'initialization_error', retryable: false },
  PYFLEET_STARTUP_TIMEOUT: { category: 'initialization_error', retryable: true },
  PYFLEET_WORKER_CRASHED: { category: 'connection_error', retryable: true },
  PYFLEET_PROTOCOL_ERROR: { category: 'communication_error', retryable: true },
  PYFLEET_INVALID_ARGS: { category: 'communication_error', retryable: false },
  PYFLEET_FRAME_TOO_LARGE: { category: 'communication_error', retryable: false },
  PYFLEET_TIMEOUT: { category: 'timeout_error', retryable: true },
  PYFLEET_QUEUE_TIMEOUT: { category: 'timeout_error', retryable: true },
  PYFLEET_QUEUE_FULL: { category: 'resource_error', retryable: false },
  PYFLEET_POOL_CLOSED: { category: 'resource_error', retryable: false },
  PYFLEET_NO_WORKERS: { category: 'resource_error', retryable: true },
  PYFLEET_MEMORY_LIMIT: { category: 'resource_error', retryable: true },
  PYFLEET_CIRCUIT_OPEN: { category: 'resource_error', retryable: false },
  PYFLEET_HEALTH_CHECK_FAILED: { category: 'health_check_error', retryable: true },
  PYFLEET_SESSION_LOST: { category: 'session_error', retryable: false },
  PYFLEET_PYTHON_ERROR: { category: 'python_error', retryable: true },
  PYFLEET_UNKNOWN_COMMAND: { category: 'python_error', retryable: false },
  PYFLEET_POISON_CALL: { category: 'system_error', retryable: false },
  PYFLEET_ABORTED: { category: 'system_error', retryable: false },
  PYFLEET_INTERNAL: { category: 'system_error', retryable: false },
  // A fleet on NATS (src/fleet/).
  /** NATS cannot be reached: at start-up, or for longer than queueTimeoutMs during an outage. */
  PYFLEET_NATS_UNAVAILABLE: { category: 'connection_error', retryable: true },
  /** The NATS server refused the credentials (token or user/password). */
  PYFLEET_NATS_AUTH_FAILED: { category: 'initialization_error', retryable: false },
  /** No live host serves the command within queueTimeoutMs. */
  PYFLEET_NO_HOSTS: { category: 'resource_error', retryable: true },
  /** The host that took the call died or stopped answering: the call may have run. */
  PYFLEET_HOST_LOST: { category: 'connection_error', retryable: true },
  /** A stream's source died after its first chunk; streams are never re-sent then. */
  PYFLEET_STREAM_BROKEN: { category: 'connection_error', retryable: false },
} as const satisfies Record<string, { category: ErrorCategory; retryable: boolean }>;

export type ErrorCode = keyof typeof ERROR_CODES;
