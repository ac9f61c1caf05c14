import type { Adapter, AdapterCallOptions } from '../adapters/adapter.js';
import { PoolError } from '../errors/pool-error.js';
import type { Logger } from '../util/logger.js';
import type { Call } from './call.js';

/**
 * Failover: runs `call` on the fallback, within the call's own timeout (a plain function fallback
 * cannot be cancelled, so the pool stops waiting for it), and says so in the log. A failure
 * carries the original error's code and both messages.
 */
export async function callFallback(fb: Adapter, call: Call, original: PoolError, logger: Logger, poolId: number, signal?: AbortSignal): Promise<unknown> {
  const timeoutMs = call.timeoutMs;
  const ac = new AbortController();
  const onAbort = () => ac.abort(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  const callerSignal = call.signal;
  const onCallerAbort = () => ac.abort(callerSignal?.reason);
  callerSignal?.addEventListener('abort', onCallerAbort, { once: true });
  let timer: NodeJS.Timeout | undefined;
  try {
    const opts: AdapterCallOptions = { signal: ac.signal, timeoutMs };
    const value = await Promise.race([
      fb.execute(call.command, call.args, opts),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          const e = new Error(`it did not answer within ${timeoutMs} ms (the call's timeoutMs)`);
          ac.abort(e);
          reject(e);
        }, timeoutMs);
        ac.signal.addEventListener('abort', () => reject(ac.signal.reason ?? new Error('aborted')), { once: true });
      }),
    ]);
    logger.warn({ poolId, command: call.command, fallback: fb.name, code: original.code }, `${call.command} answered by fallback ${fb.name} after ${original.code}`);
    return value;
  } catch (e) {
    throw new PoolError({
      code: original.code,
      command: call.command,
      sessionId: call.sessionId,
      callId: call.id,
      workerId: original.workerId,
      attempt: call.attempts,
      severity: original.severity,
      strategy: 'failover',
      cause: e,
      python: original.python,
      message: `${original.message} The fallback ${fb.name} failed too: ${(e as Error)?.message ?? String(e)}`,
    });
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
    callerSignal?.removeEventListener('abort', onCallerAbort);
  }
}
