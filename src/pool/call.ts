import type { PoolError } from '../errors/pool-error.js';
import type { Attempt } from '../worker/attempt.js';
import type { Worker } from '../worker/worker.js';
import type { Waiting } from './queue.js';
import type { SessionEntry } from './sessions.js';

/** One `execute` call, across all its attempts. */
export interface Job {
  /** Names the call in `call:start` and `call:end`, across all its attempts. */
  readonly callId: number;
  readonly command: string;
  readonly args: unknown;
  readonly argsJson: string;
  readonly session: SessionEntry | null;
  readonly idempotent: boolean;
  readonly timeoutMs: number;
  readonly signal: AbortSignal | undefined;
  readonly startedAt: number;
  attempts: number;
  /** The worker of the latest attempt. */
  workerId: number | null;
  /** Set when the call was quarantined as poison. */
  poisoned: PoolError | null;
  /** The caller wants a DetailedResult. */
  readonly detailed: boolean;
  /** Settle the caller's promise (set by `execute`; no-ops for a recovery's re-send). */
  resolve: (value: unknown) => void;
  reject: (err: PoolError) => void;
}

/** Called once with an attempt's outcome. */
export type AttemptOk = (value: unknown, job: Job) => void;
export type AttemptFailed = (err: PoolError, job: Job) => void;

/** Who placed an attempt: told its outcome first (the circuits it passed learn it there). */
export interface AttemptOwner {
  attemptSucceeded(a: CallAttempt, value: unknown): void;
  attemptFailed(a: CallAttempt, err: PoolError): void;
}

/**
 * One attempt of a job: a request id, its frame, and where it is (queued or on a worker).
 * Settles once; whatever happens later (a late answer, a second abort) is ignored.
 */
export class CallAttempt implements Attempt, Waiting {
  done = false;
  worker: Worker | null = null;
  queueTimer: NodeJS.Timeout | null = null;
  settled = false;
  onAbort: (() => void) | null = null;
  deadline = Infinity;

  constructor(
    readonly job: Job,
    readonly rid: number,
    readonly frame: Buffer,
    readonly timeoutMs: number,
    /** Prefer another worker than this one (a retry after a timeout there). */
    readonly avoid: number | null,
    /** The tickets the circuits gave this attempt (CircuitBreaker.enter). */
    readonly poolTicket: number,
    readonly workerTicket: number,
    private readonly owner: AttemptOwner,
    readonly onOk: AttemptOk,
    readonly onFailed: AttemptFailed,
  ) {}

  get command(): string {
    return this.job.command;
  }

  get sessionId(): string | null {
    return this.job.session === null ? null : this.job.session.id;
  }

  get idempotent(): boolean {
    return this.job.idempotent;
  }

  resolve(value: unknown): void {
    if (this.settled) return;
    this.finish();
    this.owner.attemptSucceeded(this, value);
  }

  reject(err: PoolError): void {
    if (this.settled) return;
    this.finish();
    this.owner.attemptFailed(this, err);
  }

  private finish(): void {
    this.settled = true;
    if (this.queueTimer !== null) clearTimeout(this.queueTimer);
    if (this.onAbort !== null) this.job.signal?.removeEventListener('abort', this.onAbort);
    if (this.worker !== null) this.job.workerId = this.worker.id;
  }
}
