/**
 * Protocol messages (docs/protocol.md, version 2).
 * Host to worker (fd 3): call, cancel, credit, drop_session, restore.
 * Worker to host (fd 4): hello, init_error, ok, err, item, end, hb, snap.
 * Field names are short because every call pays for them twice.
 */
import type { PythonException } from '../errors/pool-error.js';
import type { JsonSchema } from '../typing/schema.js';

export const PROTOCOL_VERSION = 3;

export type CommandKind = 'sync' | 'async' | 'thread';

/** What the worker says about each command in hello ("Command info in hello"). */
export interface CommandInfo {
  idempotent: boolean;
  /** sync: a plain def, runs alone; async: an asyncio task; thread: a def on a worker thread. */
  kind: CommandKind;
  /** A generator: it must be called as a stream. */
  stream: boolean;
  /** @command(timeout=S), in seconds: the call's default timeout. */
  timeout: number | null;
  /** @command(max_concurrency=N): calls of it one worker runs at once. */
  maxConcurrency: number | null;
  /** rw, or read for @command(session="read") (no snapshot after its calls). */
  session: 'rw' | 'read';
  /** JSON Schemas derived from the handler's type hints (typed commands), when the worker was asked for them. */
  args?: JsonSchema;
  result?: JsonSchema | null;
  item?: JsonSchema | null;
  /** The handler's docstring. */
  doc?: string | null;
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
  /** What failed: the interpreter's version (`python`), the module's import, or an @on_start hook. */
  stage?: 'python' | 'import' | 'on_start';
  /** The interpreter's version and sys.executable. */
  python?: string;
  executable?: string;
  /** The @on_start hook that raised: `name (file:line)`. */
  hook?: string;
}

export interface OkMessage {
  t: 'ok';
  id: number;
  v: unknown;
}

/**
 * `k`: python (handler raised, or its result cannot be encoded), cancelled (acknowledges a
 * cancel), unknown_command, bad_request (the call frame was malformed), session (a snapshot was
 * refused, or the call's session was refused earlier).
 */
export type ErrKind = 'python' | 'cancelled' | 'unknown_command' | 'bad_request' | 'session';

export interface ErrMessage {
  t: 'err';
  id: number;
  k: ErrKind;
  e: PythonException;
}

export interface ItemMessage {
  t: 'item';
  id: number;
  v: unknown;
}

export interface EndMessage {
  t: 'end';
  id: number;
  /** Items the generator yielded. */
  n: number;
}

export interface HeartbeatMessage {
  t: 'hb';
}

/**
 * The records of the keys request `id` may have changed (`k` their names, `v` their pickles, `d`
 * the names of keys deleted; `full`: every key, `ms`: the pickling's time), or why the session is
 * not durable (`err`).
 */
export type SnapMessage =
  | { t: 'snap'; id: number; sid: string; k: string[]; v: Buffer[]; d: string[]; full: boolean; ms: number; err?: undefined }
  | { t: 'snap'; id: number; sid: string; err: string; v?: undefined };

export type WorkerMessage = HelloMessage | InitErrorMessage | OkMessage | ErrMessage | ItemMessage | EndMessage | HeartbeatMessage | SnapMessage;

/** A call (host to worker). `a` may hold binary parts (see encodeArgs). */
export interface CallMessage {
  t: 'call';
  id: number;
  cid?: number | string;
  at?: number;
  cmd: string;
  a: unknown;
  dl: number;
  sid?: string;
  cr?: number;
  x?: unknown;
}

export const ERR_KINDS: ReadonlySet<string> = new Set<string>(['python', 'cancelled', 'unknown_command', 'bad_request', 'session']);
const KINDS = new Set<string>(['sync', 'async', 'thread']);

function isException(e: unknown): e is PythonException {
  if (typeof e !== 'object' || e === null) return false;
  const x = e as Record<string, unknown>;
  return typeof x.type === 'string' && typeof x.message === 'string' && typeof x.traceback === 'string';
}

const isCount = (n: unknown): boolean => Number.isSafeInteger(n) && (n as number) >= 0;

/** The problem with one command's info in hello, or null. Fields it does not know are ignored. */
export function commandInfoProblem(info: unknown): string | null {
  if (typeof info !== 'object' || info === null || Array.isArray(info)) return 'is not an object';
  const c = info as Record<string, unknown>;
  if (typeof c.idempotent !== 'boolean') return 'has no boolean idempotent';
  if (typeof c.kind !== 'string' || !KINDS.has(c.kind)) return `has kind ${JSON.stringify(c.kind)}, not sync, async or thread`;
  if (typeof c.stream !== 'boolean') return 'has no boolean stream';
  if (c.timeout !== null && !(typeof c.timeout === 'number' && c.timeout > 0 && Number.isFinite(c.timeout))) return 'has a timeout that is neither null nor a positive number of seconds';
  if (c.maxConcurrency !== null && !(Number.isSafeInteger(c.maxConcurrency) && (c.maxConcurrency as number) >= 1)) return 'has a maxConcurrency that is neither null nor a positive integer';
  if (c.session !== 'rw' && c.session !== 'read') return 'has a session that is neither "rw" nor "read"';
  return null;
}

/**
 * Checks a decoded frame's shape. Returns an error string, or null when the message is valid.
 * `ok`, `item` and `hb` are checked with a couple of property reads: they are the hot path.
 */
export function validateWorkerMessage(m: { t: string } & Record<string, unknown>): string | null {
  switch (m.t) {
    case 'ok':
      return Number.isInteger(m.id) ? null : 'result without an integer id';
    case 'item':
      return Number.isInteger(m.id) ? null : 'stream item without an integer id';
    case 'hb':
      return null;
    case 'err':
      if (!Number.isInteger(m.id)) return 'error without an integer id';
      if (typeof m.k !== 'string' || !ERR_KINDS.has(m.k)) return `error with unknown kind ${JSON.stringify(m.k)}`;
      return isException(m.e) ? null : 'error without {type, message, traceback}';
    case 'end':
      if (!Number.isInteger(m.id)) return 'stream end without an integer id';
      return isCount(m.n) ? null : 'stream end without an item count';
    case 'snap':
      if (!Number.isInteger(m.id)) return 'snapshot without an integer id';
      if (typeof m.sid !== 'string') return 'snapshot without a session id';
      if (m.err !== undefined) return typeof m.err === 'string' && m.v == null ? null : 'snapshot with an err that is not a string, or with both err and data';
      if (!Array.isArray(m.v) || !m.v.every((b) => b instanceof Uint8Array)) return 'snapshot without its records (bytes parts in the list v) or an err';
      if (!Array.isArray(m.k) || m.k.length !== m.v.length || !m.k.every((n) => typeof n === 'string')) return 'snapshot without a name (k) for each record';
      if (!Array.isArray(m.d) || !m.d.every((n) => typeof n === 'string')) return 'snapshot without the names of the keys deleted (d)';
      return typeof m.full === 'boolean' && typeof m.ms === 'number' ? null : 'snapshot without full (a boolean) and ms (a number)';
    case 'hello': {
      if (!Number.isInteger(m.pid) || typeof m.python !== 'string') return 'hello without pid or python version';
      if (m.protocol !== PROTOCOL_VERSION) return `hello with protocol ${String(m.protocol)}, expected ${PROTOCOL_VERSION}`;
      const c = m.commands;
      if (typeof c !== 'object' || c === null || Array.isArray(c)) return 'hello without a commands map';
      for (const [name, info] of Object.entries(c)) {
        const problem = commandInfoProblem(info);
        if (problem !== null) return `hello with a bad entry for command ${JSON.stringify(name)}: it ${problem}`;
      }
      return null;
    }
    case 'init_error':
      return isException(m.e) ? null : 'init_error without {type, message, traceback}';
    default:
      return `unknown message type ${JSON.stringify(m.t).slice(0, 40)}`;
  }
}
