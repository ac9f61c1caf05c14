import type { PoolError } from '../errors/pool-error.js';
import type { CommandKind, SnapMessage } from '../protocol/messages.js';

/** What decides whether a worker can take an attempt now (see Worker.canTake). */
export interface Task {
  readonly command: string;
  readonly idempotent: boolean;
  /** sync: runs alone on the worker's main thread; async and thread: share the worker up to `concurrency`. */
  readonly kind: CommandKind;
  /** The command's own cap per worker, or null. */
  readonly maxConcurrency: number | null;
}

/**
 * One attempt of a call on one worker, as the worker sees it. The pool creates it; the worker
 * owns it from the moment its frame is written until it settles, which happens exactly once.
 */
export interface Attempt extends Task {
  /** The attempt's id on the wire (the frame's `id`), unique in the pool; the worker answers with it. */
  readonly id: number;
  /** The call's id, the same on every attempt (Python's `ctx.request_id`). */
  readonly callId: number;
  readonly sessionId: string | null;
  readonly timeoutMs: number;
  /** The encoded call frame: one buffer, or the buffers of a frame with binary parts. */
  readonly frame: Buffer | readonly Buffer[];
  /** When the worker gives up on it (performance.now() ms); the worker sets it when it writes the frame. */
  deadline: number;
  /** Stream items received so far (a stream is never re-sent once one arrived). */
  items: number;
  /** A stream's item (only stream attempts get them). */
  item?(value: unknown): void;
  /** The records of the session's keys the call may have changed, or why it cannot be kept: sent before the answer. */
  snapshot?(m: SnapMessage): void;
  resolve(value: unknown): void;
  reject(err: PoolError): void;
}
