/**
 * The call surface both wings share, at the bottom of the call layer: what a caller passes and
 * gets back (`ExecuteOptions`, `StreamOptions`, `DetailedResult`), what a pool and a fleet both are
 * to it (`Caller`), and the seam between the call core and where an attempt goes (`Target`).
 * Nothing here imports the pool or the fleet.
 */
import type { PoolError } from '../errors/pool-error.js';
import type { CommandInfo } from '../protocol/messages.js';

export interface ExecuteOptions {
  /** Run on the worker (or host) that holds this session's state. */
  sessionId?: string;
  /** Time for one attempt (default: the command's `@command(timeout=S)`, else requestTimeoutMs). */
  timeoutMs?: number;
  /** Cancels the call: a queued call leaves the queue, a running one is cancelled in Python. */
  signal?: AbortSignal;
  /** May the call be sent again after a worker took it (default: what the command declared in Python)? */
  idempotent?: boolean;
  /** Resolve with `{ value, via, attempts, workerId, durationMs }` instead of the value. */
  detailed?: boolean;
}

/** `stream()`'s options: `execute`'s (`timeoutMs` is for the whole stream), and two of its own. */
export interface StreamOptions extends Omit<ExecuteOptions, 'detailed'> {
  /** Items Python may send ahead of the consumer before it waits (default 16). */
  highWaterMark?: number;
  /** The longest wait for the next item from Python (default: none; `timeoutMs` bounds the whole stream). */
  chunkTimeoutMs?: number;
}

export type SessionExecuteOptions = Omit<ExecuteOptions, 'sessionId'>;
export type SessionStreamOptions = Omit<StreamOptions, 'sessionId'>;

/** Where a value came from: an attempt, a recovery's re-send with a larger timeout, or the fallback. */
export type Via = 'pool' | 'recovery' | 'fallback';

export interface DetailedResult<T> {
  value: T;
  via: Via;
  attempts: number;
  workerId: number | null;
  durationMs: number;
}

/** What a pool and a fleet both are to their callers (sessions, typed views, adapters are written over it). */
export interface Caller {
  execute<T = unknown>(command: string, args?: unknown, options?: ExecuteOptions & { detailed?: false }): Promise<T>;
  execute<T = unknown>(command: string, args: unknown, options: ExecuteOptions & { detailed: true }): Promise<DetailedResult<T>>;
  stream<T = unknown>(command: string, args?: unknown, options?: StreamOptions): AsyncIterableIterator<T>;
  /** Drops a session's state (after the calls already made in it). */
  closeSession(sessionId: string): Promise<void>;
}

/** A worker (its numeric id) or a host (its id): where an attempt ran. */
export type Member = number | string;

export interface AttemptOptions {
  timeoutMs: number;
  /** Prefer another member than this one (the previous attempt failed there). */
  avoid: Member | null;
}

/** An attempt's value (told once, or its failure is). */
export type AttemptOk = (value: unknown) => void;
/**
 * An attempt failed. `where`: the member it failed on (null: refused before any member had it,
 * by the target itself). `causedDeath`: the member died of this call (not a kill, a stop or an
 * injected fault): it counts toward poison.
 */
export type AttemptFailed = (err: PoolError, where: Member | null, causedDeath: boolean) => void;

/** What a stream's consumer can do to the attempt under way: grant credit, give up on it. */
export interface StreamAttempt {
  readonly settled: boolean;
  credit(n: number): void;
  abandon(err: PoolError): void;
}

/**
 * Where an attempt goes: a pool's workers or a fleet's hosts. The call core decides everything
 * about a call (timeouts, retries, re-sends, fallback, counting); a target places one attempt of
 * it, and says what it knows of its commands and members.
 */
export interface Target<C> {
  /** What the target knows of `command` (from the workers' hello, the hosts' heartbeats). */
  command(name: string): CommandInfo | undefined;
  /** The error for a command no member serves. */
  unknownCommand(name: string): PoolError;
  /** One attempt of `call` (it counts `call.attempts`); reports to `ok` or `failed` exactly once. */
  attempt(call: C, o: AttemptOptions, ok: AttemptOk, failed: AttemptFailed): void;
  /** A member other than `avoid` could take `call` now (a re-send goes there at once). */
  hasOtherReady(call: C, avoid: Member | null): boolean;
  /** No member is serving, recovering or starting (the seed's "affecting all workers"). */
  allDown(): boolean;
}
