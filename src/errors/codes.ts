import type { ErrorCategory } from './categories.js';

/** What the call core, the fleet and the HTTP server know about every `PoolError.code`, in one table. */
export interface CodeFacts {
  category: ErrorCategory;
  /** Trying again can help; `false` means the same input fails the same way, so no policy retries it. */
  retryable: boolean;
  /** The HTTP status `pyfleet serve` answers a call failing with it: the caller's mistake 4xx, ours 5xx. */
  httpStatus: number;
  /**
   * A failure of the workers themselves (a death, a failed start, a corrupt protocol): the only
   * failures that count on the `pool_operations` circuit. Timeouts count on their command's
   * circuit; load shedding (full or timed-out queue), the user's code and the caller's input on none.
   */
  infrastructure: boolean;
  /** Logged at debug, not warn: it reaches its caller anyway and would flood the log at call rate. */
  quiet: boolean;
  /**
   * Refused before any attempt ran (bad input, an open circuit, a full or timed-out queue, no
   * member): never retried in place, and a call failing with it says `strategy: 'abandon'`
   * (unless a fallback answers it). `null`: the decision matrix says.
   */
  strategy: 'abandon' | null;
  /** Not taken (nothing ran) by one member: the call may go to another member (another host) whatever its idempotency. */
  movableUntaken: boolean;
  /** Taken, then lost with its member (it died, broke, went silent): an idempotent call goes at once to another member. */
  movableTaken: boolean;
  /** Counts against a fleet host's circuit on a client: the host failing, not the call or the user's code. */
  hostFailure: boolean;
}

type Flag = 'infrastructure' | 'quiet' | 'refused' | 'movableUntaken' | 'movableTaken' | 'hostFailure';

const f = (category: ErrorCategory, retryable: boolean, httpStatus: number, ...flags: Flag[]): CodeFacts =>
  Object.freeze({
    category,
    retryable,
    httpStatus,
    infrastructure: flags.includes('infrastructure'),
    quiet: flags.includes('quiet'),
    strategy: flags.includes('refused') ? 'abandon' : null,
    movableUntaken: flags.includes('movableUntaken'),
    movableTaken: flags.includes('movableTaken'),
    hostFailure: flags.includes('hostFailure'),
  });

// HTTP: 502 the worker or host failed, 503 refused for now (Retry-After when known), 504 a timeout.
export const ERROR_CODES = Object.freeze({
  PYFLEET_INVALID_OPTIONS: f('initialization_error', false, 500, 'refused'),
  PYFLEET_SPAWN_FAILED: f('initialization_error', true, 503, 'infrastructure', 'hostFailure'),
  PYFLEET_INIT_FAILED: f('initialization_error', false, 503, 'infrastructure', 'hostFailure'),
  PYFLEET_STARTUP_TIMEOUT: f('initialization_error', true, 503, 'infrastructure', 'hostFailure'),
  PYFLEET_WORKER_CRASHED: f('connection_error', true, 502, 'infrastructure', 'movableTaken'),
  PYFLEET_PROTOCOL_ERROR: f('communication_error', true, 502, 'infrastructure', 'movableTaken'),
  PYFLEET_INVALID_ARGS: f('communication_error', false, 400, 'quiet', 'refused'),
  PYFLEET_FRAME_TOO_LARGE: f('communication_error', false, 413, 'quiet', 'refused'),
  PYFLEET_TIMEOUT: f('timeout_error', true, 504),
  /** Waited queueTimeoutMs for a worker: fails once, never waits again. */
  PYFLEET_QUEUE_TIMEOUT: f('timeout_error', true, 504, 'refused'),
  PYFLEET_QUEUE_FULL: f('resource_error', false, 503, 'quiet', 'refused', 'movableUntaken'),
  /** The pool (or a draining host) takes no calls. */
  PYFLEET_POOL_CLOSED: f('resource_error', false, 503, 'quiet', 'refused', 'movableUntaken'),
  PYFLEET_NO_WORKERS: f('resource_error', true, 503, 'refused', 'movableUntaken', 'movableTaken', 'hostFailure'),
  PYFLEET_MEMORY_LIMIT: f('resource_error', true, 503),
  PYFLEET_CIRCUIT_OPEN: f('resource_error', false, 503, 'quiet', 'refused', 'movableUntaken'),
  PYFLEET_HEALTH_CHECK_FAILED: f('health_check_error', true, 502, 'infrastructure', 'movableTaken'),
  PYFLEET_SESSION_LOST: f('session_error', false, 409),
  /** A session's snapshot was refused (bad signature, another session's, older, killed its workers): nothing was unpickled. */
  PYFLEET_SESSION_REFUSED: f('session_error', false, 409),
  /** The call ran, but its session's snapshot was not stored (snapshotFailure: 'fail'): the store is the server's trouble. */
  PYFLEET_SESSION_NOT_SAVED: f('session_error', false, 503),
  PYFLEET_PYTHON_ERROR: f('python_error', true, 500, 'quiet'),
  PYFLEET_UNKNOWN_COMMAND: f('python_error', false, 404, 'quiet', 'refused'),
  PYFLEET_POISON_CALL: f('system_error', false, 422),
  /** The caller went away; nobody reads its status (nginx's "client closed request"). */
  PYFLEET_ABORTED: f('system_error', false, 499, 'quiet'),
  PYFLEET_INTERNAL: f('system_error', false, 500),
  /** An optional peer dependency (fastify, the NATS client, prom-client, ajv, @opentelemetry/api) is not installed: the message names the `npm install` line. */
  PYFLEET_MISSING_DEPENDENCY: f('initialization_error', false, 500),
  /** A stream's source died after its first item; a stream is never re-sent then. */
  PYFLEET_STREAM_BROKEN: f('connection_error', false, 502, 'infrastructure'),
  // A fleet on NATS (src/fleet/).
  /** NATS cannot be reached: at start-up, or for longer than queueTimeoutMs during an outage. */
  PYFLEET_NATS_UNAVAILABLE: f('connection_error', true, 503, 'refused'),
  /** The NATS server refused the credentials (token or user/password). */
  PYFLEET_NATS_AUTH_FAILED: f('initialization_error', false, 503),
  /** No live host serves the command within queueTimeoutMs. */
  PYFLEET_NO_HOSTS: f('resource_error', true, 503, 'refused'),
  /** The host that took the call died or stopped answering: the call may have run. */
  PYFLEET_HOST_LOST: f('connection_error', true, 502, 'movableUntaken', 'movableTaken', 'hostFailure'),
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
