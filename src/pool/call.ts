import { Call, type CallInit } from '../call/call.js';
import type { AttemptFailed, AttemptOk, Member, StreamAttempt } from '../call/types.js';
import type { PoolError } from '../errors/pool-error.js';
import type { CommandKind, SnapMessage } from '../protocol/messages.js';
import type { Snapshot } from '../sessions/envelope.js';
import type { Attempt as WorkerAttempt, Task } from '../worker/attempt.js';
import type { Worker } from '../worker/worker.js';
import type { Waiting } from './queue.js';
import type { SessionEntry } from './sessions.js';

/** What a call restores on its new worker first: a manifest and its records apart (in the order it names them), or a single-blob snapshot (src/pool/durability.ts makes it). */
export interface Restore {
  version: number;
  bytes: number;
  parts: Uint8Array[] | null;
  legacy: Snapshot | null;
}

/** A call as the pool holds it: the call core's, plus its session entry and the snapshot to restore. */
export class PoolCall extends Call {
  readonly session: SessionEntry | null;
  /** The session's snapshot to restore on the worker before this call (durable sessions). */
  restore: Restore | null = null;

  constructor(init: CallInit, session: SessionEntry | null) {
    super(init);
    this.session = session;
  }

  /** What a worker checks to take the call (see Worker.canTake). */
  get task(): Task {
    return this;
  }

  get kind(): CommandKind {
    return this.info.kind;
  }

  get maxConcurrency(): number | null {
    return this.info.maxConcurrency;
  }
}


/** Who placed an attempt: told its outcome first (the circuits it passed learn it there). */
export interface AttemptOwner {
  attemptSucceeded(a: Attempt, value: unknown): void;
  attemptFailed(a: Attempt, err: PoolError): void;
  /** The worker sent the session's state after the attempt (durable sessions). */
  snapshot(a: Attempt, m: SnapMessage): void;
}

/**
 * One attempt of a call on one worker: its wire id, its frame, the circuit tickets it holds, and
 * where it is (queued or on a worker). Settles once; whatever happens later (a late answer, a
 * second abort) is ignored.
 */
export class Attempt implements WorkerAttempt, Waiting, StreamAttempt {
  done = false;
  items = 0;
  worker: Worker | null = null;
  queueTimer: NodeJS.Timeout | null = null;
  settled = false;
  onAbort: (() => void) | null = null;
  deadline = Infinity;

  constructor(
    readonly call: PoolCall,
    /** The attempt's id on the wire. */
    readonly id: number,
    /** 1-based number of this attempt of the call. */
    readonly number: number,
    readonly frame: Buffer | readonly Buffer[],
    readonly timeoutMs: number,
    /** Prefer another worker than this one (the one the previous attempt failed on). */
    readonly avoid: Member | null,
    /** The tickets the circuits gave this attempt (CircuitBreaker.enter): pool_operations, then the command's. */
    readonly poolTicket: number,
    readonly commandTicket: number,
    /** The chaos fault this attempt carries: a death it causes is the pool's doing, not the call's. */
    readonly fault: string | null,
    private readonly owner: AttemptOwner,
    readonly onOk: AttemptOk,
    readonly onFailed: AttemptFailed,
  ) {}

  get callId(): number {
    return this.call.id;
  }

  get command(): string {
    return this.call.command;
  }

  get sessionId(): string | null {
    return this.call.sessionId;
  }

  get idempotent(): boolean {
    return this.call.idempotent;
  }

  get kind(): CommandKind {
    return this.call.info.kind;
  }

  get maxConcurrency(): number | null {
    return this.call.info.maxConcurrency;
  }

  snapshot(m: SnapMessage): void {
    this.owner.snapshot(this, m);
  }

  /** A stream's item: handed to the call's consumer. */
  item(value: unknown): void {
    this.call.items++;
    this.call.sink?.push(value);
  }

  /** The consumer took `n` items: the worker may send `n` more. */
  credit(n: number): void {
    this.worker?.credit(this.id, n);
  }

  /** The consumer gives up on the stream (its chunk timeout): cancelled in the worker. */
  abandon(err: PoolError): void {
    if (this.worker === null || this.settled) return;
    err.workerId = this.worker.id;
    this.worker.abandon(this.id, err);
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
    if (this.onAbort !== null) this.call.signal?.removeEventListener('abort', this.onAbort);
    if (this.worker !== null) this.call.workerId = this.worker.id;
  }
}
