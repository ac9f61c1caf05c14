import type { ErrorCategory } from '../../src/errors/categories.js';
import type { ErrorCode } from '../../src/errors/codes.js';
import { PoolError, type PoolErrorInit } from '../../src/errors/pool-error.js';

/** A PoolError as the pool makes one, for unit tests of what consumes it. */
export function failure(code: ErrorCode, init: Partial<PoolErrorInit> = {}): PoolError {
  return new PoolError({ code, message: `${code} (made by a test)`, ...init });
}

/** One code per category, for tests that go through every category. */
export const CODE_OF: Readonly<Record<ErrorCategory, ErrorCode>> = Object.freeze({
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
