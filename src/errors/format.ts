import { inspect } from 'node:util';
import type { PoolError } from './pool-error.js';

/**
 * The context block of a formatted error: what the fixed lines do not already show.
 * (The seed's `wrapped_error.context`.)
 */
function contextOf(err: PoolError): Record<string, unknown> {
  const ctx: Record<string, unknown> = {
    code: err.code,
    command: err.command,
    callId: err.callId,
    retryable: err.retryable,
    taken: err.taken,
  };
  if (err.details !== undefined) ctx.details = err.details;
  const cause = err.cause;
  if (cause !== undefined) ctx.cause = cause instanceof Error ? `${cause.name}: ${cause.message}` : cause;
  return ctx;
}

function orNA(v: string | number | null | undefined): string {
  return v === null || v === undefined || v === '' ? 'N/A' : String(v);
}

/**
 * The seed's `format_for_logging`: one line per field, `N/A` where a value is missing, then
 * the context; for a Python exception, its type, message and traceback follow. No trailing
 * newline (the logger adds one).
 *
 *   Pool Error: The operation timed out; raise timeoutMs ...
 *   Category: timeout_error
 *   Severity: major
 *   Recovery: backoff_retry
 *   Worker: 3
 *   Session: N/A
 *   Attempt: 1
 *   Context: { code: 'PYFLEET_TIMEOUT', command: 'predict', ... }
 */
export function formatForLogging(err: PoolError): string {
  const lines = [
    `Pool Error: ${err.message}`,
    `Category: ${err.category}`,
    `Severity: ${err.severity}`,
    `Recovery: ${err.strategy}`,
    `Worker: ${orNA(err.workerId)}`,
    `Session: ${orNA(err.sessionId)}`,
    `Attempt: ${err.attempt}`,
    `Context: ${inspect(contextOf(err), { depth: 4, breakLength: 100, compact: 3 })}`,
  ];
  const py = err.python;
  if (py !== undefined) {
    lines.push(`Python: ${py.type}: ${py.message}`);
    if (py.traceback) lines.push('Traceback:', ...py.traceback.replace(/\n+$/, '').split('\n').map((l) => `  ${l}`));
  }
  return lines.join('\n');
}

export type LogValue = string | number | boolean | null;

/**
 * The same information as `formatForLogging`, as one flat object for structured loggers
 * (pino, ...): no nesting, so every field is a column. `details` keys become
 * `details.<key>` (objects inspected to a string); the Python exception becomes
 * `pythonType`, `pythonMessage`, `pythonTraceback`; the cause becomes `cause`.
 */
export function logFields(err: PoolError): Record<string, LogValue> {
  const f: Record<string, LogValue> = {
    code: err.code,
    message: err.message,
    category: err.category,
    severity: err.severity,
    strategy: err.strategy,
    retryable: err.retryable,
    attempt: err.attempt,
    workerId: err.workerId,
    sessionId: err.sessionId,
    command: err.command,
    callId: err.callId,
    taken: err.taken,
    timestamp: err.timestamp,
  };
  const py = err.python;
  if (py !== undefined) {
    f.pythonType = py.type;
    f.pythonMessage = py.message;
    f.pythonTraceback = py.traceback;
  }
  const cause = err.cause;
  if (cause !== undefined) f.cause = cause instanceof Error ? `${cause.name}: ${cause.message}` : flat(cause);
  if (err.details !== undefined) {
    for (const [k, v] of Object.entries(err.details)) f[`details.${k}`] = flat(v);
  }
  return f;
}

function flat(v: unknown): LogValue {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') return Number.isFinite(v) ? v : String(v);
  if (v instanceof Error) return `${v.name}: ${v.message}`;
  return inspect(v, { depth: 3, breakLength: Infinity });
}
