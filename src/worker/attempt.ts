import type { PoolError } from '../errors/pool-error.js';

/**
 * One attempt of a call on one worker, as the worker sees it. The pool creates it; the worker
 * owns it from the moment its frame is written until it settles, which happens exactly once.
 */
export interface Attempt {
  /** The attempt's id on the wire (the frame's `id`), unique in the pool; the worker answers with it. */
  readonly id: number;
  /** The call's id, the same on every attempt (Python's `ctx.request_id`). */
  readonly callId: number;
  readonly command: string;
  readonly sessionId: string | null;
  readonly idempotent: boolean;
  readonly timeoutMs: number;
  /** The encoded call frame. */
  readonly frame: Buffer;
  /** When the worker gives up on it (performance.now() ms); the worker sets it when it writes the frame. */
  deadline: number;
  resolve(value: unknown): void;
  reject(err: PoolError): void;
}
