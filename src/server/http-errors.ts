import { ERROR_CODES } from '../errors/codes.js';
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
