import type { ErrorCategory } from './categories.js';

/** What the pool knows about every `PoolError.code`, in one table. */
export interface CodeFacts {
  category: ErrorCategory;
  /** Trying again can help; `false` means the same input fails the same way, so no policy retries it. */
  retryable: boolean;
  /**
   * A failure of the workers themselves (a death, a failed start, a corrupt protocol): the only
   * failures that count on the `pool_operations` circuit. Timeouts count on their command's
   * circuit; load shedding (full or timed-out queue), the user's code and the caller's input on none.
   */
  infrastructure: boolean;
  /** Logged at debug, not warn: it reaches its caller anyway and would flood the log at call rate. */
  quiet: boolean;
}

const f = (category: ErrorCategory, retryable: boolean, infrastructure = false, quiet = false): CodeFacts =>
  Object.freeze({ category, retryable, infrastructure, quiet });

export const ERROR_CODES = Object.freeze({
  PYFLEET_INVALID_OPTIONS: f('initialization_error', false),
  PYFLEET_SPAWN_FAILED: f('initialization_error', true, true),
  PYFLEET_INIT_FAILED: f('initialization_error', false, true),
  PYFLEET_STARTUP_TIMEOUT: f('initialization_error', true, true),
  PYFLEET_WORKER_CRASHED: f('connection_error', true, true),
  PYFLEET_PROTOCOL_ERROR: f('communication_error', true, true),
  PYFLEET_INVALID_ARGS: f('communication_error', false, false, true),
  PYFLEET_FRAME_TOO_LARGE: f('communication_error', false, false, true),
  PYFLEET_TIMEOUT: f('timeout_error', true),
  PYFLEET_QUEUE_TIMEOUT: f('timeout_error', true),
  PYFLEET_QUEUE_FULL: f('resource_error', false, false, true),
  PYFLEET_POOL_CLOSED: f('resource_error', false, false, true),
  PYFLEET_NO_WORKERS: f('resource_error', true),
  PYFLEET_MEMORY_LIMIT: f('resource_error', true),
  PYFLEET_CIRCUIT_OPEN: f('resource_error', false, false, true),
  PYFLEET_HEALTH_CHECK_FAILED: f('health_check_error', true, true),
  PYFLEET_SESSION_LOST: f('session_error', false),
  /** A session's snapshot was refused (bad signature, another session's, older, killed its workers): nothing was unpickled. */
  PYFLEET_SESSION_REFUSED: f('session_error', false),
  /** The call ran, but its session's snapshot was not stored (snapshotFailure: 'fail'). */
  PYFLEET_SESSION_NOT_SAVED: f('session_error', false),
  PYFLEET_PYTHON_ERROR: f('python_error', true, false, true),
  PYFLEET_UNKNOWN_COMMAND: f('python_error', false, false, true),
  PYFLEET_POISON_CALL: f('system_error', false),
  PYFLEET_ABORTED: f('system_error', false, false, true),
  PYFLEET_INTERNAL: f('system_error', false),
  /** An optional peer dependency (fastify, the NATS client, prom-client, ajv, @opentelemetry/api) is not installed: the message names the `npm install` line. */
  PYFLEET_MISSING_DEPENDENCY: f('initialization_error', false),
  /** A stream's source died after its first item; a stream is never re-sent then. */
  PYFLEET_STREAM_BROKEN: f('connection_error', false, true),
  // A fleet on NATS (src/fleet/).
  /** NATS cannot be reached: at start-up, or for longer than queueTimeoutMs during an outage. */
  PYFLEET_NATS_UNAVAILABLE: f('connection_error', true),
  /** The NATS server refused the credentials (token or user/password). */
  PYFLEET_NATS_AUTH_FAILED: f('initialization_error', false),
  /** No live host serves the command within queueTimeoutMs. */
  PYFLEET_NO_HOSTS: f('resource_error', true),
  /** The host that took the call died or stopped answering: the call may have run. */
  PYFLEET_HOST_LOST: f('connection_error', true),
} satisfies Record<string, CodeFacts>);

export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * The HTTP server's own refusals, made before any call (never a `PoolError`'s code), with their
 * status; `PYFLEET_HTTP_ERROR` is any other failure of the request itself (a bad URL, headers
 * too large, the server shutting down), its status as the failure. All are `communication_error`.
 */
export const HTTP_ERROR_CODES = Object.freeze({
  PYFLEET_UNAUTHORIZED: 401,
  PYFLEET_FORBIDDEN: 403,
  PYFLEET_NOT_FOUND: 404,
  PYFLEET_UNSUPPORTED_MEDIA_TYPE: 415,
  PYFLEET_HTTP_ERROR: null,
} satisfies Record<string, number | null>);

export type HttpErrorCode = keyof typeof HTTP_ERROR_CODES;
