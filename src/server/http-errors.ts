import { HTTP_ERROR_CODES, type ErrorCode, type HttpErrorCode } from '../errors/codes.js';
import { isPoolError, type PoolError } from '../errors/pool-error.js';

/**
 * The HTTP status for a failed call: the caller's mistake is 4xx, the workers' failure 5xx.
 * 502: the worker process failed (crash, garbage on the pipe, bad health); 503: the pool
 * refuses work for now (open circuit, full queue, no worker, closing; with Retry-After when
 * known); 504: a timeout; 500: the Python handler raised.
 */
const STATUS = {
  PYFLEET_INVALID_OPTIONS: 500,
  PYFLEET_INVALID_ARGS: 400,
  PYFLEET_FRAME_TOO_LARGE: 413,
  PYFLEET_UNKNOWN_COMMAND: 404,
  PYFLEET_SESSION_LOST: 409,
  PYFLEET_SESSION_REFUSED: 409,
  // It ran; the session store did not keep its state: the store is the server's trouble.
  PYFLEET_SESSION_NOT_SAVED: 503,
  PYFLEET_POISON_CALL: 422,
  PYFLEET_PYTHON_ERROR: 500,
  PYFLEET_INTERNAL: 500,
  PYFLEET_MISSING_DEPENDENCY: 500,
  PYFLEET_WORKER_CRASHED: 502,
  PYFLEET_PROTOCOL_ERROR: 502,
  PYFLEET_HEALTH_CHECK_FAILED: 502,
  PYFLEET_STREAM_BROKEN: 502,
  PYFLEET_HOST_LOST: 502,
  PYFLEET_SPAWN_FAILED: 503,
  PYFLEET_INIT_FAILED: 503,
  PYFLEET_STARTUP_TIMEOUT: 503,
  PYFLEET_CIRCUIT_OPEN: 503,
  PYFLEET_QUEUE_FULL: 503,
  PYFLEET_NO_WORKERS: 503,
  PYFLEET_POOL_CLOSED: 503,
  PYFLEET_MEMORY_LIMIT: 503,
  PYFLEET_NATS_UNAVAILABLE: 503,
  PYFLEET_NATS_AUTH_FAILED: 503,
  PYFLEET_NO_HOSTS: 503,
  PYFLEET_TIMEOUT: 504,
  PYFLEET_QUEUE_TIMEOUT: 504,
  // The client went away; nobody reads this (nginx's "client closed request").
  PYFLEET_ABORTED: 499,
} satisfies Record<ErrorCode, number>;

export function statusOf(err: PoolError): number {
  return STATUS[err.code] ?? 500;
}

/** `{ error: {...} }` for the response body: what a client needs to act, the traceback included. */
export function errorBody(e: unknown): { status: number; body: { error: Record<string, unknown> }; retryAfterS: number | null } {
  if (!isPoolError(e)) {
    return { status: 500, body: { error: { code: 'PYFLEET_INTERNAL', category: 'system_error', message: `Unexpected failure: ${(e as Error)?.message ?? String(e)}` } }, retryAfterS: null };
  }
  const error: Record<string, unknown> = {
    code: e.code,
    category: e.category,
    severity: e.severity,
    strategy: e.strategy,
    message: e.message,
    retryable: e.retryable,
    attempt: e.attempt,
    command: e.command,
    workerId: e.workerId,
    sessionId: e.sessionId,
  };
  if (e.python !== undefined) error.python = e.python;
  if (e.details !== undefined) error.details = e.details;
  const ms = e.details?.retryAfterMs;
  const retryAfterS = typeof ms === 'number' && ms > 0 ? Math.ceil(ms / 1000) : null;
  return { status: statusOf(e), body: { error }, retryAfterS };
}

export interface ErrorAnswer {
  status: number;
  body: { error: Record<string, unknown> };
}

/** A refusal of the server itself, in the shape of a failed call's answer. */
export function httpError(code: HttpErrorCode | 'PYFLEET_INVALID_ARGS' | 'PYFLEET_FRAME_TOO_LARGE', message: string, status?: number): ErrorAnswer {
  const s = status ?? (code === 'PYFLEET_INVALID_ARGS' ? 400 : code === 'PYFLEET_FRAME_TOO_LARGE' ? 413 : (HTTP_ERROR_CODES[code as HttpErrorCode] ?? 500));
  return { status: s, body: { error: { code, category: 'communication_error', message, retryable: s >= 500 } } };
}

/** fastify's own errors (the body's media type or size, a bad URL, ...) in our shape. */
export function fromFastify(err: Error & { statusCode?: number; code?: string }, contentType: string | undefined, bodyLimit: number): ErrorAnswer {
  switch (err.code) {
    case 'PYFLEET_INVALID_ARGS':
      return httpError('PYFLEET_INVALID_ARGS', err.message);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return httpError('PYFLEET_UNSUPPORTED_MEDIA_TYPE', `The body must be JSON sent as Content-Type: application/json (got ${contentType ?? 'none'}): curl --json, fetch with that header, Python requests' json=.`);
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return httpError('PYFLEET_FRAME_TOO_LARGE', `The request body is over the server's limit of ${bodyLimit} bytes (bodyLimit).`);
  }
  const status = err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
  return status >= 500 && err.code === undefined ? errorBody(err) : httpError('PYFLEET_HTTP_ERROR', err.message, status);
}
