import type { PoolError } from '../errors/pool-error.js';
import type { Attempt } from './attempt.js';
import type { ProcessSpec } from './process.js';

export interface WorkerConfig extends ProcessSpec {
  poolId: number;
  id: number;
  /** How many workers this one replaces in its slot (shown as `restarts`). */
  restarts: number;
  maxFrameBytes: number;
  startupTimeoutMs: number;
  heartbeatMs: number;
  maxMissedHeartbeats: number;
  cancelGraceMs: number;
  /** Idempotent sync calls one worker may hold at once (the pool's pipelineDepth). */
  pipelineDepth: number;
  /** Async and threaded calls one worker runs at once (the pool's concurrency). */
  concurrency: number;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Why the worker stopped, as the pool or the worker saw it. */
  reason: string;
  /** True when the pool asked it to stop (recycle, shrink, close), false when it died or was killed for a fault. */
  expected: boolean;
  /** The pool ended it (a stop, or a kill for a fault or a cancel not acknowledged): not a death its calls caused. */
  byPool: boolean;
  /** The error that ended it, when it was a fault. */
  error: PoolError | null;
}

/** What a worker tells its owner; `W` is the worker (generic, so this file needs no import of it). */
export interface WorkerHooks<W> {
  /** The worker can take more work (after hello, an answer, a cancel acknowledged, a drained pipe). */
  onAvailable(w: W): void;
  /** The process is gone and every attempt it held has been settled. */
  onExit(w: W, info: ExitInfo): void;
  /** A line the worker printed; a Python traceback (stderr) comes as one record, with `err` (type, message, the traceback as its stack). */
  onLog(w: W, stream: 'stdout' | 'stderr', line: string, err?: Error): void;
  /**
   * The worker died while running an attempt the pool had already given up on (timed out or
   * aborted, cancel not yet acknowledged): that attempt, not an innocent one queued behind it,
   * is the one to blame.
   */
  onAbandonedDied?(w: W, a: Attempt, info: ExitInfo): void;
  /** Something that should not happen (an illegal state transition outside strict mode). */
  onBug?(w: W, err: Error): void;
  /** A result or stream item arrived with binary parts of `bytes` bytes in all. */
  onBinaryIn?(bytes: number): void;
}
