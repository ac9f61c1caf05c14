import { ERROR_CODES, HTTP_ERROR_CODES, type HttpErrorCode } from '../errors/codes.js';
import { isPoolError, type PoolError } from '../errors/pool-error.js';

/** The HTTP status for a failed call: a column of the codes table (errors/codes.ts). */
export function statusOf(err: PoolError): number {
  return ERROR_CODES[err.code]?.httpStatus ?? 500;
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
