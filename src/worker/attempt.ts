import type { PoolError } from '../errors/pool-error.js';

/**
 * One attempt of a call on one worker. The pool creates it; the worker owns it from the
 * moment its frame is written until it settles, which happens exactly once.
 */
export interface Attempt {
  /** Request id, unique in the pool; the worker answers with it. */
  readonly rid: number;
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
