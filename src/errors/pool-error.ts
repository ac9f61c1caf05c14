import type { ErrorCategory, RecoveryStrategy, Severity } from './categories.js';
import { ERROR_CODES, type ErrorCode } from './codes.js';
import { DEFAULT_MATRIX } from './matrix.js';

/** A Python exception as the worker reported it. */
export interface PythonException {
  type: string;
  message: string;
  traceback: string;
}

export interface PoolErrorInit {
  code: ErrorCode;
  message: string;
  category?: ErrorCategory;
  severity?: Severity;
  strategy?: RecoveryStrategy;
  retryable?: boolean;
  attempt?: number;
  workerId?: number | null;
  sessionId?: string | null;
  command?: string | null;
  /** The call's id: the same on every attempt, and Python's `ctx.request_id`. */
  callId?: number | null;
  /** True when a worker took the call before failing: it may have run. */
  taken?: boolean;
  python?: PythonException;
  cause?: unknown;
  details?: Record<string, unknown>;
}

/**
 * The one error type pyfleet rejects with. `code` is stable and machine-readable;
 * `category`, `severity` and `strategy` follow the seed's error model; the message says
 * what happened and what to do.
 */
export class PoolError extends Error {
  override name = 'PoolError';
  readonly code: ErrorCode;
  category: ErrorCategory;
  severity: Severity;
  strategy: RecoveryStrategy;
  retryable: boolean;
  attempt: number;
  workerId: number | null;
  sessionId: string | null;
  command: string | null;
  callId: number | null;
  taken: boolean;
  python: PythonException | undefined;
  details: Record<string, unknown> | undefined;
  readonly timestamp: number;

  constructor(init: PoolErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    const meta = ERROR_CODES[init.code];
    this.code = init.code;
    this.category = init.category ?? meta.category;
    const row = DEFAULT_MATRIX[this.category];
    this.severity = init.severity ?? row.severity;
    // A refusal (bad input, a full queue...) is never retried, whatever the matrix says of its category.
    this.strategy = init.strategy ?? meta.strategy ?? row.strategy;
    this.retryable = init.retryable ?? meta.retryable;
    this.attempt = init.attempt ?? 1;
    this.workerId = init.workerId ?? null;
    this.sessionId = init.sessionId ?? null;
    this.command = init.command ?? null;
    this.callId = init.callId ?? null;
    this.taken = init.taken ?? false;
    this.python = init.python;
    this.details = init.details;
    this.timestamp = Date.now();
  }

  toJSON(): Record<string, unknown> {
    return {
      name: this.name,
      code: this.code,
      message: this.message,
      category: this.category,
      severity: this.severity,
      strategy: this.strategy,
      retryable: this.retryable,
      attempt: this.attempt,
      workerId: this.workerId,
      sessionId: this.sessionId,
      command: this.command,
      callId: this.callId,
      taken: this.taken,
      python: this.python,
      details: this.details,
    };
  }
}

export function isPoolError(e: unknown): e is PoolError {
  return e instanceof PoolError;
}
