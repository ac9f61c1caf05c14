import { inspect } from 'node:util';
import { isErrorCategory, type ErrorCategory } from './categories.js';
import { ERROR_CODES, type ErrorCode } from './codes.js';
import { DEFAULT_POLICY, type ErrorPolicy } from './policy.js';
import { PoolError, type PythonException } from './pool-error.js';

/**
 * The seed's failure tuples (`{:port_exited, status}`, `{:timeout, :checkout_timeout}`, ...)
 * as one object shape: `kind` is the tuple's tag, `detail` its payload.
 *
 *   { kind: 'port_exited', detail: 1 }
 *   { kind: 'python_exception', python: { type, message, traceback } }
 *
 * A `kind` may also be a category name (the seed's pool raises `{:resource_error, reason}`
 * and `{:system_error, reason}`; its `categorize_error` sent those to system_error, we map
 * them to the category they name).
 */
export interface FailureShape {
  kind: FailureKind | (string & {});
  /** The tuple's payload: exit status, reason, session id, ... Shown in the message. */
  detail?: unknown;
  /** Replaces the default message. */
  message?: string;
  /** For `python_exception`: the exception as the worker reported it. */
  python?: PythonException;
}

export const FAILURE_KINDS = [
  'port_exited',
  'connect_failed',
  'checkout_failed',
  'timeout',
  'encode_error',
  'decode_error',
  'health_check_failed',
  'python_exception',
  'init_failed',
  'session_not_found',
  'circuit_open',
] as const;
export type FailureKind = (typeof FAILURE_KINDS)[number];

/** The seed's `categorize_error`, one entry per tuple tag, plus `circuit_open` (raised by the seed's breaker). */
export const KIND_CATEGORIES: Readonly<Record<FailureKind, ErrorCategory>> = Object.freeze({
  port_exited: 'connection_error',
  connect_failed: 'connection_error',
  checkout_failed: 'resource_error',
  timeout: 'timeout_error',
  encode_error: 'communication_error',
  decode_error: 'communication_error',
  health_check_failed: 'health_check_error',
  python_exception: 'python_error',
  init_failed: 'initialization_error',
  session_not_found: 'session_error',
  circuit_open: 'resource_error',
});

/** The `PoolError.code` each kind becomes. */
const KIND_CODES: Readonly<Record<FailureKind, ErrorCode>> = Object.freeze({
  port_exited: 'PYFLEET_WORKER_CRASHED',
  connect_failed: 'PYFLEET_WORKER_CRASHED',
  checkout_failed: 'PYFLEET_NO_WORKERS',
  timeout: 'PYFLEET_TIMEOUT',
  encode_error: 'PYFLEET_INVALID_ARGS', // the same arguments never encode: not retryable
  decode_error: 'PYFLEET_PROTOCOL_ERROR', // garbage from one worker: another may answer
  health_check_failed: 'PYFLEET_HEALTH_CHECK_FAILED',
  python_exception: 'PYFLEET_PYTHON_ERROR',
  init_failed: 'PYFLEET_INIT_FAILED',
  session_not_found: 'PYFLEET_SESSION_LOST',
  circuit_open: 'PYFLEET_CIRCUIT_OPEN',
});

/** The code for a failure known only by its category. */
const CATEGORY_CODES: Readonly<Record<ErrorCategory, ErrorCode>> = Object.freeze({
  initialization_error: 'PYFLEET_INIT_FAILED',
  connection_error: 'PYFLEET_WORKER_CRASHED',
  communication_error: 'PYFLEET_PROTOCOL_ERROR',
  timeout_error: 'PYFLEET_TIMEOUT',
  resource_error: 'PYFLEET_NO_WORKERS',
  health_check_error: 'PYFLEET_HEALTH_CHECK_FAILED',
  session_error: 'PYFLEET_SESSION_LOST',
  python_error: 'PYFLEET_PYTHON_ERROR',
  system_error: 'PYFLEET_INTERNAL',
});

/**
 * Node system errors (`err.code`) from spawning and talking to a child process.
 * ENOENT/EACCES/EPERM: the interpreter cannot be started (bad `python` path or permissions).
 * EPIPE/ECONNRESET/ERR_STREAM_DESTROYED/ERR_IPC_CHANNEL_CLOSED: a pipe to a worker broke (it died).
 * ETIMEDOUT: an OS-level timeout. EMFILE/ENFILE/ENOMEM/EAGAIN: the host ran out of fds, memory or processes.
 */
export const ERRNO_CATEGORIES: Readonly<Record<string, ErrorCategory>> = Object.freeze({
  ENOENT: 'initialization_error',
  EACCES: 'initialization_error',
  EPERM: 'initialization_error',
  EPIPE: 'connection_error',
  ECONNRESET: 'connection_error',
  ERR_STREAM_DESTROYED: 'connection_error',
  ERR_IPC_CHANNEL_CLOSED: 'connection_error',
  ETIMEDOUT: 'timeout_error',
  EMFILE: 'resource_error',
  ENFILE: 'resource_error',
  ENOMEM: 'resource_error',
  EAGAIN: 'resource_error',
});

const ERRNO_CODES: Readonly<Partial<Record<ErrorCategory, ErrorCode>>> = Object.freeze({
  initialization_error: 'PYFLEET_SPAWN_FAILED',
  connection_error: 'PYFLEET_WORKER_CRASHED',
  timeout_error: 'PYFLEET_TIMEOUT',
  resource_error: 'PYFLEET_NO_WORKERS',
});

export function isFailureShape(x: unknown): x is FailureShape {
  return typeof x === 'object' && x !== null && typeof (x as { kind?: unknown }).kind === 'string';
}

function isFailureKind(k: string): k is FailureKind {
  return Object.prototype.hasOwnProperty.call(KIND_CATEGORIES, k);
}

function errnoOf(x: unknown): string | undefined {
  if (!(x instanceof Error)) return undefined;
  const code = (x as NodeJS.ErrnoException).code;
  return typeof code === 'string' && Object.prototype.hasOwnProperty.call(ERRNO_CATEGORIES, code) ? code : undefined;
}

/**
 * The category of any failure (the seed's `categorize_error`): a `PoolError` keeps its own;
 * a Node error by its errno code (see `ERRNO_CATEGORIES`); a `FailureShape` by its kind (or
 * the category it names); anything else is a `system_error`.
 */
export function classify(failure: unknown): ErrorCategory {
  if (failure instanceof PoolError) return failure.category;
  const errno = errnoOf(failure);
  if (errno !== undefined) return ERRNO_CATEGORIES[errno];
  if (isFailureShape(failure)) {
    const k = failure.kind;
    if (isFailureKind(k)) return KIND_CATEGORIES[k];
    if (isErrorCategory(k)) return k;
  }
  return 'system_error';
}

/** Context a failure happened in (the seed's `error_context`). */
export interface WrapContext {
  /** The attempt that failed (1-based); default: the PoolError's own, else 1. */
  attempt?: number;
  affectingAllWorkers?: boolean;
  workerId?: number | null;
  sessionId?: string | null;
  command?: string | null;
  requestId?: number | null;
  /** A worker took the call before it failed. */
  taken?: boolean;
  details?: Record<string, unknown>;
  /** Default: `DEFAULT_POLICY` (the seed's table). */
  policy?: ErrorPolicy;
}

/**
 * The seed's `wrap_pool_error`: a `PoolError` whose category comes from `classify` and whose
 * severity and strategy come from the policy for this attempt.
 *
 * An existing `PoolError` is updated in place and returned (same object, stack and code):
 * its attempt is set from the context, severity and strategy are recomputed, and worker,
 * session, command and request are filled in where it had none.
 */
export function wrapError(failure: unknown, context: WrapContext = {}): PoolError {
  const policy = context.policy ?? DEFAULT_POLICY;
  if (failure instanceof PoolError) {
    const e = failure;
    if (context.attempt !== undefined) e.attempt = context.attempt;
    if (e.workerId === null && context.workerId != null) e.workerId = context.workerId;
    if (e.sessionId === null && context.sessionId != null) e.sessionId = context.sessionId;
    if (e.command === null && context.command != null) e.command = context.command;
    if (e.requestId === null && context.requestId != null) e.requestId = context.requestId;
    if (context.taken === true) e.taken = true;
    if (context.details !== undefined) e.details = { ...e.details, ...context.details };
    applyPolicy(e, policy, context.affectingAllWorkers);
    return e;
  }

  const category = classify(failure);
  const errno = errnoOf(failure);
  let code: ErrorCode;
  let python: PythonException | undefined;
  let details: Record<string, unknown> | undefined = context.details;
  if (errno !== undefined) {
    code = ERRNO_CODES[category] ?? CATEGORY_CODES[category];
    details = { ...details, errno };
  } else if (isFailureShape(failure)) {
    code = isFailureKind(failure.kind) ? KIND_CODES[failure.kind] : CATEGORY_CODES[category];
    python = failure.python;
    details = { ...details, kind: failure.kind };
    if (failure.detail !== undefined) details.detail = failure.detail;
  } else {
    code = CATEGORY_CODES[category];
  }
  const e = new PoolError({
    code,
    category,
    message: messageFor(failure, errno),
    retryable: ERROR_CODES[code].retryable,
    attempt: context.attempt ?? 1,
    workerId: context.workerId ?? null,
    sessionId: context.sessionId ?? null,
    command: context.command ?? null,
    requestId: context.requestId ?? null,
    taken: context.taken ?? false,
    python,
    cause: failure,
    details,
  });
  applyPolicy(e, policy, context.affectingAllWorkers);
  return e;
}

function applyPolicy(e: PoolError, policy: ErrorPolicy, affectingAllWorkers: boolean | undefined): void {
  const ctx = { attempt: e.attempt, affectingAllWorkers };
  e.severity = policy.severity(e.category, ctx);
  e.strategy = policy.strategy(e.category, e.severity, ctx);
}

function detailText(detail: unknown): string {
  if (detail === undefined) return '';
  if (typeof detail === 'string' || typeof detail === 'number' || typeof detail === 'boolean') return ` (${String(detail)})`;
  return ` (${inspect(detail, { depth: 2, breakLength: Infinity })})`;
}

/** A sentence a person can act on. */
function messageFor(failure: unknown, errno: string | undefined): string {
  if (errno !== undefined) {
    const m = (failure as Error).message;
    switch (ERRNO_CATEGORIES[errno]) {
      case 'initialization_error':
        return `Could not start the Python interpreter (${m}); check the \`python\` option or $PYFLEET_PYTHON and that the file is executable.`;
      case 'connection_error':
        return `The pipe to the Python worker broke (${m}); the worker process probably died.`;
      case 'timeout_error':
        return `An operating-system operation timed out (${m}).`;
      case 'resource_error':
        return `The host ran out of resources (${m}); lower workers.max or raise the process/file limits.`;
      default:
        return `Unexpected system error (${m}).`;
    }
  }
  if (isFailureShape(failure)) {
    if (typeof failure.message === 'string' && failure.message !== '') return failure.message;
    const d = detailText(failure.detail);
    switch (failure.kind) {
      case 'port_exited':
        return `The Python worker exited unexpectedly${d}; see its stderr in the log.`;
      case 'connect_failed':
        return `Could not connect to the Python worker${d}.`;
      case 'checkout_failed':
        return `No worker could be checked out of the pool${d}; raise workers.max or queueTimeoutMs, or lower the load.`;
      case 'timeout':
        return `The operation timed out${d}; raise timeoutMs if the command is expected to be this slow.`;
      case 'encode_error':
        return `The call's arguments could not be encoded as JSON${d}; pass JSON-serializable values.`;
      case 'decode_error':
        return `The worker sent a reply that could not be decoded${d}; something in the worker may be writing to the protocol pipe.`;
      case 'health_check_failed':
        return `The worker failed its health check${d}.`;
      case 'python_exception': {
        const p = failure.python;
        return p !== undefined ? `Python raised ${p.type}: ${p.message}` : `The Python handler raised an exception${d}.`;
      }
      case 'init_failed':
        return `The Python worker failed to initialize${d}; check that the module path is right and that it imports cleanly.`;
      case 'session_not_found':
        return `The session was not found${d}: it was closed or its worker died with its state; open it again.`;
      case 'circuit_open':
        return `The circuit is open after repeated failures${d}; calls are refused until it closes.`;
      default:
        return isErrorCategory(failure.kind) ? `The pool failed with a ${failure.kind}${d}.` : `Unexpected failure ${JSON.stringify(failure.kind)}${d}.`;
    }
  }
  if (failure instanceof Error) return `Unexpected internal error: ${failure.message || failure.name}`;
  return `Unexpected failure: ${inspect(failure, { depth: 2, breakLength: Infinity })}`;
}
