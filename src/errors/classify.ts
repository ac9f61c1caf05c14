import type { ErrorCategory } from './categories.js';
import { PoolError } from './pool-error.js';

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

/**
 * The category of any failure (the seed's `categorize_error`): a `PoolError` keeps its own; a
 * Node error by its errno code (see `ERRNO_CATEGORIES`); anything else is a `system_error`. The
 * pool uses it for what it did not make itself (a fallback's or a user hook's exception).
 */
export function classify(failure: unknown): ErrorCategory {
  if (failure instanceof PoolError) return failure.category;
  if (failure instanceof Error) {
    const code = (failure as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && Object.prototype.hasOwnProperty.call(ERRNO_CATEGORIES, code)) return ERRNO_CATEGORIES[code];
  }
  return 'system_error';
}
