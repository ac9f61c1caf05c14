/**
 * Protocol messages. Host to worker (fd 3): call, cancel, drop_session, chaos.
 * Worker to host (fd 4): hello, init_error, ok, err, hb.
 * Field names are short because every call pays for them twice.
 */
import type { PythonException } from '../errors/pool-error.js';

export const PROTOCOL_VERSION = 1;

export interface CommandInfo {
  idempotent: boolean;
}

export interface HelloMessage {
  t: 'hello';
  protocol: number;
  pid: number;
  python: string;
  commands: Record<string, CommandInfo>;
}

export interface InitErrorMessage {
  t: 'init_error';
  e: PythonException;
}

export interface OkMessage {
  t: 'ok';
  id: number;
  v: unknown;
}

/** `k`: python (handler raised), cancelled (acknowledges a cancel), unknown_command, bad_request. */
export type ErrKind = 'python' | 'cancelled' | 'unknown_command' | 'bad_request';

export interface ErrMessage {
  t: 'err';
  id: number;
  k: ErrKind;
  e: PythonException;
}

export interface HeartbeatMessage {
  t: 'hb';
}

export type WorkerMessage = HelloMessage | InitErrorMessage | OkMessage | ErrMessage | HeartbeatMessage;

const ERR_KINDS = new Set<string>(['python', 'cancelled', 'unknown_command', 'bad_request']);

function isException(e: unknown): e is PythonException {
  if (typeof e !== 'object' || e === null) return false;
  const x = e as Record<string, unknown>;
  return typeof x.type === 'string' && typeof x.message === 'string' && typeof x.traceback === 'string';
}

/**
 * Checks a decoded frame's shape. Returns an error string, or null when the message is valid.
 * `ok` and `hb` are checked with a couple of property reads: they are the hot path.
 */
export function validateWorkerMessage(m: { t: string } & Record<string, unknown>): string | null {
  switch (m.t) {
    case 'ok':
      return Number.isInteger(m.id) ? null : 'result without an integer id';
    case 'hb':
      return null;
    case 'err':
      if (!Number.isInteger(m.id)) return 'error without an integer id';
      if (typeof m.k !== 'string' || !ERR_KINDS.has(m.k)) return `error with unknown kind ${JSON.stringify(m.k)}`;
      return isException(m.e) ? null : 'error without {type, message, traceback}';
    case 'hello': {
      if (!Number.isInteger(m.pid) || typeof m.python !== 'string') return 'hello without pid or python version';
      if (m.protocol !== PROTOCOL_VERSION) return `hello with protocol ${String(m.protocol)}, expected ${PROTOCOL_VERSION}`;
      const c = m.commands;
      if (typeof c !== 'object' || c === null || Array.isArray(c)) return 'hello without a commands map';
      for (const [name, info] of Object.entries(c)) {
        if (typeof info !== 'object' || info === null || typeof (info as CommandInfo).idempotent !== 'boolean') {
          return `hello with a bad entry for command ${JSON.stringify(name)}`;
        }
      }
      return null;
    }
    case 'init_error':
      return isException(m.e) ? null : 'init_error without {type, message, traceback}';
    default:
      return `unknown message type ${JSON.stringify(m.t).slice(0, 40)}`;
  }
}
