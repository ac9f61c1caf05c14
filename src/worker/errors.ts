import { PoolError } from '../errors/pool-error.js';
import type { ErrMessage, InitErrorMessage } from '../protocol/messages.js';
import type { Attempt } from './attempt.js';

/** The errors a worker settles its attempts with, in one place. */

function base(workerId: number, a: Attempt) {
  return { workerId, sessionId: a.sessionId, command: a.command, callId: a.callId };
}

/** The worker answered `err`. */
export function answerError(workerId: number, a: Attempt, m: ErrMessage): PoolError {
  const b = { ...base(workerId, a), taken: true, python: m.e };
  switch (m.k) {
    case 'python':
      return new PoolError({ ...b, code: 'PYFLEET_PYTHON_ERROR', message: `${a.command} raised ${m.e.type}: ${m.e.message}` });
    case 'unknown_command':
      return new PoolError({ ...b, taken: false, code: 'PYFLEET_UNKNOWN_COMMAND', message: `No command named ${JSON.stringify(a.command)} is registered in the worker. Register it with @command.` });
    case 'cancelled':
      return new PoolError({ ...b, code: 'PYFLEET_ABORTED', message: `${a.command} was cancelled in the worker.` });
    case 'session':
      return new PoolError({ ...b, taken: false, code: 'PYFLEET_SESSION_REFUSED', message: `Session ${JSON.stringify(a.sessionId)} was refused by worker ${workerId}: ${m.e.message}. Nothing of its snapshot was unpickled; close the session (session.close()) to start it again.` });
    default:
      return new PoolError({ ...b, code: 'PYFLEET_INTERNAL', message: `The worker refused request ${a.id}: ${m.e.message}. This is a pyfleet bug; please report it.` });
  }
}

export function timeoutError(workerId: number, a: Attempt): PoolError {
  return new PoolError({
    ...base(workerId, a),
    code: 'PYFLEET_TIMEOUT',
    taken: true,
    message: `${a.command} did not answer within ${a.timeoutMs} ms on worker ${workerId}; it was cancelled. Raise timeoutMs (or requestTimeoutMs) if the work is expected to take longer.`,
    details: { timeoutMs: a.timeoutMs },
  });
}

export interface DeathFacts {
  pid: number | null;
  code: number | null;
  signal: NodeJS.Signals | null;
  reason: string;
  /** The worker was killed or stopped by the pool, not by its call. */
  byPool: boolean;
  /** The fault that ended the worker, when it was one (protocol error, missed heartbeats). */
  fault: PoolError | null;
}

/**
 * An attempt the worker held when it died. `running`: it is the one the worker was running (the
 * others waited behind it): only that one is evidence against the call.
 */
export function deathError(workerId: number, a: Attempt, d: DeathFacts, running: boolean): PoolError {
  const protocol = d.fault?.code === 'PYFLEET_PROTOCOL_ERROR';
  const how = d.signal ? `was killed by ${d.signal}` : `exited with code ${d.code}`;
  if (a.items > 0) {
    return new PoolError({
      ...base(workerId, a),
      code: 'PYFLEET_STREAM_BROKEN',
      taken: true,
      message: `The stream of ${a.command} broke after ${a.items} item${a.items === 1 ? '' : 's'}: worker ${workerId} (pid ${d.pid}) ${protocol ? 'broke the protocol' : how} (${d.reason}). A stream is never re-sent once items arrived; start it again if that is safe.`,
      details: { exitCode: d.code, signal: d.signal, running, byPool: d.byPool, items: a.items },
    });
  }
  return new PoolError({
    ...base(workerId, a),
    code: protocol ? 'PYFLEET_PROTOCOL_ERROR' : 'PYFLEET_WORKER_CRASHED',
    taken: true,
    message: protocol
      ? `${a.command} was lost: ${d.fault!.message} The call may have run.`
      : `Worker ${workerId} (pid ${d.pid}) ${how} while ${running ? 'running' : 'holding'} ${a.command} (${d.reason}); the call may have run.`,
    details: { exitCode: d.code, signal: d.signal, running, byPool: d.byPool },
  });
}

/** A worker silent for `silentMs` (`missed` heartbeats) while idle: it is killed. */
export function healthCheckError(workerId: number, pid: number | null, silentMs: number, missed: number): PoolError {
  return new PoolError({
    code: 'PYFLEET_HEALTH_CHECK_FAILED',
    workerId,
    message: `Worker ${workerId} (pid ${pid}) sent no heartbeat for ${Math.round(silentMs)} ms (${missed} missed): it was killed and will be replaced.`,
  });
}

/** The worker wrote what is not the protocol: it is killed. */
export function protocolError(workerId: number, pid: number | null, what: string): PoolError {
  return new PoolError({
    code: 'PYFLEET_PROTOCOL_ERROR',
    workerId,
    message: `Worker ${workerId} (pid ${pid}) broke the protocol (${what}); it was killed and will be replaced. Something in the worker wrote to fd 4, or the worker is broken.`,
  });
}

/**
 * The worker answered init_error: `python` is the interpreter the pool started (the `python`
 * option, resolved), named with the version the worker reported.
 */
export function initError(workerId: number, module: string, python: string, m: InitErrorMessage): PoolError {
  const exe = m.executable || python;
  const under = m.python ? `${exe} (Python ${m.python})` : exe;
  let message: string;
  if (m.stage === 'python') {
    message = `Worker ${workerId} cannot run ${module}: ${m.e.message}.`;
  } else if (m.stage === 'on_start') {
    message = `The @on_start hook ${m.hook ?? ''} of ${module} raised ${m.e.type}: ${m.e.message} (worker ${workerId}, under ${under}); the worker did not start. Its traceback is in error.python.traceback.`;
  } else {
    const missing = m.e.type === 'ModuleNotFoundError' ? ` If the module is installed for another interpreter, set the \`python\` option to that one.` : '';
    message = `Worker could not load ${module} under ${under}: ${m.e.type}: ${m.e.message}. Fix the module (or its imports, PYTHONPATH, cwd) and create the pool again.${missing}`;
  }
  return new PoolError({ code: 'PYFLEET_INIT_FAILED', message, python: m.e, workerId, details: { stage: m.stage ?? 'import', python: m.python ?? null, executable: exe } });
}

/** The process ended before its hello, saying nothing of why on the protocol. */
export function exitedAtStartError(workerId: number, module: string, code: number | null, signal: NodeJS.Signals | null): PoolError {
  return new PoolError({
    code: 'PYFLEET_INIT_FAILED',
    workerId,
    message: `Worker for ${module} exited during start-up (${signal ? `signal ${signal}` : `code ${code}`}) before saying hello. Check the worker's stderr in the log.`,
  });
}
