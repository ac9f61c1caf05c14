import { classify } from '../errors/classify.js';
import { PoolError } from '../errors/pool-error.js';
import type { Call } from './call.js';

/** The errors the call core makes (the worker's are in src/worker/errors.ts), each saying what to do. */

/** What a lost session's error says: its id, its worker, and how it was lost. */
export interface LostSession {
  readonly id: string;
  readonly workerId: number | null;
  readonly lost: string | null;
}

function of(call: Call | null, command?: string) {
  return { command: call?.command ?? command ?? null, sessionId: call?.sessionId ?? null, callId: call?.id ?? null };
}

export function badCall(what: string, command?: string): PoolError {
  return new PoolError({ code: 'PYFLEET_INVALID_ARGS', command: command ?? null, message: `Invalid call: ${what}.` });
}

export function closedError(call: Call | null, command?: string, cause?: unknown): PoolError {
  return new PoolError({
    ...of(call, command),
    code: 'PYFLEET_POOL_CLOSED',
    cause,
    message: 'The pool is closed or closing; the call was not run (or not run again). Create a new pool to send more calls.',
  });
}

export function abortedError(call: Call, signal: AbortSignal, cause: unknown = signal.reason): PoolError {
  return new PoolError({
    ...of(call),
    code: 'PYFLEET_ABORTED',
    attempt: call.attempts,
    cause,
    message: `${call.command} was aborted by its AbortSignal${signal.reason instanceof Error ? ` (${signal.reason.message})` : ''}; it was cancelled in the worker if it had started.`,
  });
}

export function sessionLostError(s: LostSession, command: string, call: Call | null = null): PoolError {
  return new PoolError({
    ...of(call, command),
    code: 'PYFLEET_SESSION_LOST',
    sessionId: s.id,
    workerId: s.workerId,
    message: `Session ${JSON.stringify(s.id)} lost its state: ${s.lost}. It is not re-created empty behind your back; close it (session.close() or pool.closeSession(id)) and start it again.`,
  });
}

export function queueFullError(call: Call, waiting: number, maxQueue: number): PoolError {
  return new PoolError({
    ...of(call),
    code: 'PYFLEET_QUEUE_FULL',
    message: `All workers are busy and ${waiting} calls are already waiting (maxQueue ${maxQueue}); the call was refused. Slow down, add workers (workers.max) or raise maxQueue.`,
  });
}

export function queueTimeoutError(call: Call, queueTimeoutMs: number, noWorkers: boolean, sessionBusy: boolean, boundTo: number | null): PoolError {
  let message: string;
  if (noWorkers) {
    message = `No worker could be started to run ${call.command} within queueTimeoutMs (${queueTimeoutMs} ms); see the log for why workers fail to start.`;
  } else if (sessionBusy) {
    message = `${call.command} waited ${queueTimeoutMs} ms (queueTimeoutMs) behind an earlier call of its session ${JSON.stringify(call.sessionId)} (a session runs one call at a time). Raise queueTimeoutMs, or do not wait on a session's calls concurrently.`;
  } else {
    message = `${call.command} waited ${queueTimeoutMs} ms (queueTimeoutMs) for a free worker${boundTo !== null ? ` (its session is bound to worker ${boundTo})` : ''}. Add workers (workers.max), raise queueTimeoutMs, or send fewer calls at once.`;
  }
  return new PoolError({ ...of(call), code: noWorkers ? 'PYFLEET_NO_WORKERS' : 'PYFLEET_QUEUE_TIMEOUT', message });
}

export function poisonError(call: Call, maxDeaths: number, coolDownMs: number, last: PoolError): PoolError {
  return new PoolError({
    ...of(call),
    code: 'PYFLEET_POISON_CALL',
    workerId: last.workerId,
    attempt: call.attempts,
    cause: last,
    message: `${call.command} killed ${maxDeaths} workers with these arguments; it was quarantined for ${Math.round(coolDownMs / 1000)} s instead of being retried on another worker. Fix the input or the handler (last death: ${last.message})`,
  });
}

export function quarantinedError(command: string, maxDeaths: number, leftMs: number): PoolError {
  return new PoolError({
    code: 'PYFLEET_POISON_CALL',
    command,
    message: `This exact call to ${command} killed ${maxDeaths} workers and is quarantined for ${Math.ceil(leftMs / 1000)} s more; it was refused without being run. Fix the input or the handler.`,
    details: { retryAfterMs: leftMs },
  });
}

/** The caller's signal fired while the call waited to be sent again; the last failure is in details.lastError. */
export function retryAbortedError(call: Call, signal: AbortSignal, last: PoolError): PoolError {
  const n = call.attempts;
  return new PoolError({
    ...of(call),
    code: 'PYFLEET_ABORTED',
    attempt: n,
    cause: signal.reason,
    details: { attempts: n, lastError: last },
    message: `The call was aborted while waiting to retry, after ${n} failed attempt${n === 1 ? '' : 's'}; the last error is in details.lastError.`,
  });
}

/** Anything that is not a PoolError yet: a pyfleet bug, said so. */
export function asPoolError(e: unknown, call: Call | null): PoolError {
  if (e instanceof PoolError) {
    if (call !== null) {
      e.command ??= call.command;
      e.sessionId ??= call.sessionId;
      e.callId ??= call.id;
    }
    return e;
  }
  return new PoolError({
    ...of(call),
    code: 'PYFLEET_INTERNAL',
    category: classify(e),
    cause: e,
    message: `Unexpected failure: ${(e as Error)?.message ?? String(e)}. This is likely a pyfleet bug; please report it with this message.`,
  });
}
