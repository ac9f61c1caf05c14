import { ERROR_CODES } from '../errors/codes.js';
import { PoolError, isPoolError } from '../errors/pool-error.js';
import type { RetryBudget } from '../resilience/budget.js';
import { channels } from '../telemetry/channels.js';

/** The fleet client's errors, each saying what to do, and the rules for re-sending a failed attempt to another host. */

export { badCall } from '../call/errors.js';

/** What an error needs to name the call it is about (a FleetCall or a CallMeta). */
interface CallRef {
  command: string;
  sessionId: string | null;
}

// ---- re-send rules ---------------------------------------------------------

/** What counts against a host's circuit (the codes table's hostFailure): the host failing, not the call or the user's code. */
export const isHostFailure = (e: unknown): boolean => isPoolError(e) && (ERROR_CODES[e.code].hostFailure || (e.code === 'PYFLEET_TIMEOUT' && e.details?.noReply === true));

/** 'resend', or why the failure is final: it may not move ('final'), no attempt is left, or the budget refused. */
export type ResendVerdict = 'resend' | 'final' | 'max_attempts' | 'budget';

/**
 * Whether a failed attempt may go to another host. `stopped`: the caller no longer wants a
 * re-send (the client is closing, the call was aborted). The budget is asked last, as asking
 * spends a re-send.
 */
export function resendVerdict(err: PoolError, o: { idempotent: boolean; attempt: number; maxAttempts: number; budget: RetryBudget | undefined; stopped?: boolean }): ResendVerdict {
  const facts = ERROR_CODES[err.code];
  const movable = err.taken ? o.idempotent && facts.movableTaken : facts.movableUntaken;
  if (!movable || o.stopped === true) return 'final';
  if (o.attempt >= o.maxAttempts) return 'max_attempts';
  // Not taken: nothing ran, so it costs no retry budget. Taken: a real re-send.
  if (err.taken && o.budget !== undefined && !o.budget.tryAcquireRetry()) return 'budget';
  return 'resend';
}

export function publishExhausted(command: string, attempts: number, err: PoolError, reason: string): void {
  if (channels['retry:exhausted'].hasSubscribers) channels['retry:exhausted'].publish({ command, attempts, category: err.category, code: err.code, reason });
}

// ---- before sending --------------------------------------------------------

export function asPoolError(e: unknown, command: string): PoolError {
  if (isPoolError(e)) return e;
  return new PoolError({ code: 'PYFLEET_INTERNAL', command, cause: e, message: `Unexpected failure in the fleet client: ${(e as Error)?.message ?? String(e)}. This is likely a pyfleet bug; please report it.` });
}

export function abortedError(command: string, sessionId: string | null, signal: AbortSignal, taken: boolean): PoolError {
  return new PoolError({
    code: 'PYFLEET_ABORTED',
    command,
    sessionId,
    taken,
    cause: signal.reason,
    message: `${command} was aborted by its AbortSignal${signal.reason instanceof Error ? ` (${signal.reason.message})` : ''}${taken ? '; it was cancelled on its host' : '; it was not sent'}.`,
  });
}

export function closedError(fleet: string, command: string | null): PoolError {
  return new PoolError({ code: 'PYFLEET_POOL_CLOSED', command, message: `The fleet client (${fleet}) is closed or closing; the call was not sent. Call connectFleet again to send more calls.` });
}

export function unsendableArgsError(command: string, args: unknown): PoolError {
  return new PoolError({ code: 'PYFLEET_INVALID_ARGS', command, message: `The arguments of ${command} (${typeof args}) cannot be sent. Pass an object, array, string, number, boolean or null.` });
}

export function argsTooLargeError(command: string, bytes: number, maxPayload: number): PoolError {
  return new PoolError({
    code: 'PYFLEET_FRAME_TOO_LARGE',
    command,
    message: `The arguments of ${command} take ${bytes} bytes, over what one NATS message carries (the server's max_payload is ${maxPayload} bytes, less 1 KiB of headers). The call was not sent. Pass a reference (a path, an object-store key) instead, or raise max_payload in nats-server's configuration.`,
    details: { bytes, maxPayload },
  });
}

export function notReadyError(fleet: string, alive: number, want: number, timeoutMs: number, hosts: string): PoolError {
  return new PoolError({ code: 'PYFLEET_NO_HOSTS', message: `Fleet ${fleet}: ${alive} of ${want} hosts alive after ${timeoutMs} ms (${hosts}).` });
}

export function natsDownError(call: CallRef, servers: string[], queueTimeoutMs: number): PoolError {
  return new PoolError({
    code: 'PYFLEET_NATS_UNAVAILABLE',
    command: call.command,
    sessionId: call.sessionId,
    taken: false,
    message: `NATS (${servers.join(', ')}) has been unreachable for the ${queueTimeoutMs} ms (queueTimeoutMs) that ${call.command} waited; the call was not sent. The client keeps reconnecting.`,
  });
}

export function noHostsError(call: CallRef, fleet: string, queueTimeoutMs: number, hosts: string): PoolError {
  return new PoolError({
    code: 'PYFLEET_NO_HOSTS',
    command: call.command,
    sessionId: call.sessionId,
    taken: false,
    message: `No live host of fleet ${fleet} could take ${call.command} within queueTimeoutMs (${queueTimeoutMs} ms); the call was not sent. Hosts: ${hosts}. Start one with: pyfleet host --fleet ${fleet} --module <file> --nats <url>.`,
  });
}

export function unknownCommandError(fleet: string, command: string, known: Iterable<string>): PoolError {
  return new PoolError({
    code: 'PYFLEET_UNKNOWN_COMMAND',
    command,
    message: `No live host of fleet ${fleet} has a command named ${JSON.stringify(command)}; they have: ${[...known].sort().join(', ') || 'none'}. Decorate the handler with @command, and run hosts with that module.`,
  });
}

export function sessionMapError(fleet: string, bucket: string, e: unknown): PoolError {
  return new PoolError({ code: 'PYFLEET_NATS_UNAVAILABLE', cause: e, message: `Fleet ${fleet}: the session map (JetStream KV bucket ${bucket}) cannot be opened: ${(e as Error).message}. Sessions need JetStream: start nats-server with -js.` });
}

// ---- after sending ---------------------------------------------------------

export function sendFailedError(command: string, sends: number, e: unknown): PoolError {
  return new PoolError({ code: 'PYFLEET_NATS_UNAVAILABLE', command, taken: sends > 1, cause: e, message: `The call to ${command} could not be sent: ${(e as Error).message}.` });
}

export function hostLostError(call: CallRef, hostId: string, reason: string): PoolError {
  return new PoolError({
    code: 'PYFLEET_HOST_LOST',
    command: call.command,
    sessionId: call.sessionId,
    taken: true,
    message: `${reason}; it had taken the call to ${call.command}, which may have run.`,
    details: { hostId },
  });
}

/** No responder on the host's subject: taken only if an earlier send may have reached it. */
export function hostGoneError(call: CallRef, hostId: string, sends: number): PoolError {
  return new PoolError({
    code: 'PYFLEET_HOST_LOST',
    command: call.command,
    sessionId: call.sessionId,
    taken: sends > 1,
    message: sends > 1 ? `Host ${hostId} is gone (no responder on its subject) and had taken the call to ${call.command}, which may have run.` : `Host ${hostId} is gone (no responder on its subject); the call to ${call.command} was not delivered.`,
    details: { hostId, gone: true },
  });
}

export function noReplyError(call: CallRef, hostId: string, elapsedMs: number): PoolError {
  return new PoolError({ code: 'PYFLEET_TIMEOUT', command: call.command, sessionId: call.sessionId, taken: true, message: `Host ${hostId} did not answer the call to ${call.command} within ${Math.round(elapsedMs)} ms although it is alive; the call may have run.`, details: { hostId, noReply: true } });
}

export function badReplyError(command: string, hostId: string, e: unknown): PoolError {
  return new PoolError({ code: 'PYFLEET_PROTOCOL_ERROR', command, taken: true, message: `Host ${hostId} answered ${command} with bytes that are neither JSON nor a binary value (${(e as Error).message}).` });
}

export function natsLostError(call: CallRef, hostId: string, queueTimeoutMs: number): PoolError {
  return new PoolError({
    code: 'PYFLEET_NATS_UNAVAILABLE',
    command: call.command,
    sessionId: call.sessionId,
    taken: true,
    message: `Lost the connection to NATS while host ${hostId} had the call to ${call.command}, and it did not come back within queueTimeoutMs (${queueTimeoutMs} ms); the call may have run.`,
    details: { hostId },
  });
}

export function closedWhileTakenError(command: string, hostId: string): PoolError {
  return new PoolError({ code: 'PYFLEET_POOL_CLOSED', command, taken: true, message: `The fleet client was closed while host ${hostId} had the call to ${command}; it may have run.` });
}
