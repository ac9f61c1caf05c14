import { ERROR_CODES } from '../errors/codes.js';
import { formatForLogging, logFields } from '../errors/format.js';
import type { PoolError } from '../errors/pool-error.js';
import { channels } from '../telemetry/channels.js';
import type { Logger } from '../util/logger.js';
import type { Counters } from './counters.js';

/**
 * Reports a failure once its severity and strategy say what the pool does about it: counted by
 * category, published on `pool:error`, logged (quietly for the caller's own errors and fast
 * refusals, which reach the caller anyway). Every failed attempt, and every failed worker start,
 * passes here exactly once.
 */
export function reportFailure(poolId: number, counters: Counters, logger: Logger, err: PoolError, durationMs: number): void {
  counters.errorsByCategory[err.category]++;
  const ch = channels['pool:error'];
  if (ch.hasSubscribers) {
    ch.publish({
      poolId,
      code: err.code,
      category: err.category,
      severity: err.severity,
      strategy: err.strategy,
      workerId: err.workerId,
      sessionId: err.sessionId,
      command: err.command,
      attempt: err.attempt,
      durationMs,
      message: err.message,
    });
  }
  if (ERROR_CODES[err.code].quiet) logger.debug?.({ poolId, ...logFields(err) }, err.message);
  else logger.warn({ poolId, ...logFields(err) }, formatForLogging(err));
}
