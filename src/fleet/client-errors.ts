import { ERROR_CODES } from '../errors/codes.js';
import { PoolError, isPoolError } from '../errors/pool-error.js';

/** The fleet client's own errors, each saying what to do (what a call core error says, it says once: src/call/errors.ts). */

/** What an error needs to name the call it is about. */
interface CallRef {
  command: string;
  sessionId: string | null;
}

/** What counts against a host's circuit (the codes table's hostFailure): the host failing, not the call or the user's code. */
export const isHostFailure = (e: unknown): boolean => isPoolError(e) && (ERROR_CODES[e.code].hostFailure || (e.code === 'PYFLEET_TIMEOUT' && e.details?.noReply === true));

export function closedError(fleet: string, command: string | null, cause?: unknown): PoolError {
  return new PoolError({ code: 'PYFLEET_POOL_CLOSED', command, cause, message: `The fleet client (${fleet}) is closed or closing; the call was not sent (or not sent again). Call connectFleet again to send more calls.` });
}

/** A request or a heartbeat of another fleet protocol: refused, naming both versions. */
export function protocolError(what: string, theirs: number, ours: number): PoolError {
  return new PoolError({
    code: 'PYFLEET_PROTOCOL_ERROR',
    retryable: false,
    message: `${what} speaks fleet protocol ${theirs || 1} and this side ${ours}: a fleet's hosts and clients must be the same pyfleet release; upgrade the older side.`,
    details: { protocol: theirs, expected: ours },
  });
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
