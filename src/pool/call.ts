import type { PoolError } from '../errors/pool-error.js';
import type { BinaryPart } from '../protocol/binary.js';
import type { Snapshot } from '../sessions/envelope.js';
import type { CommandInfo, CommandKind } from '../protocol/messages.js';
import type { Backoff } from '../resilience/backoff.js';
import type { Attempt as WorkerAttempt, Task } from '../worker/attempt.js';
import type { Worker } from '../worker/worker.js';
import type { Waiting } from './queue.js';
import type { SessionEntry } from './sessions.js';

const NO_PARTS: readonly BinaryPart[] = Object.freeze([]);

/** Where a stream's items go, and the credit its consumer grants. */
export interface StreamSink {
  push(value: unknown): void;
}

/**
 * One `execute`, across all its attempts. It settles exactly once; a second settlement would be
 * a pyfleet bug: it is counted (the chaos report's "answered twice" reads the count), never
 * delivered.
 */
export class Call {
  /** The call's id: the same on every attempt, sent to Python as `ctx.request_id`. */
  readonly id: number;
  readonly command: string;
  readonly info: CommandInfo;
  readonly args: unknown;
  readonly argsJson: string;
  /** Binary values of the args, sent as parts of the frame outside the JSON text. */
  readonly argsParts: readonly BinaryPart[];
  readonly session: SessionEntry | null;
  readonly idempotent: boolean;
  readonly timeoutMs: number;
  readonly signal: AbortSignal | undefined;
  readonly detailed: boolean;
  readonly startedAt = performance.now();
  /** Attempts made so far (the number of the latest one). */
  attempts = 0;
  /** The worker of the latest attempt. */
  workerId: number | null = null;
  /** Set when the call was quarantined as poison. */
  poisoned: PoolError | null = null;
  /** This call's own backoff sequence, made at its first retry (decorrelated jitter remembers its last delay in it). */
  backoff: Backoff | null = null;
  /** The one re-send made at once, without backoff, after a worker died under this call. */
  resentAfterDeath = false;
  /** The worker the next attempt should avoid (the previous one failed there). */
  avoid: number | null = null;
  /** Stream items received, over all attempts (a stream is never re-sent once one arrived). */
  items = 0;
  /** A stream's consumer: where its items go (null for execute). */
  sink: StreamSink | null = null;
  /** A stream's initial credit (its highWaterMark); 0 for execute. */
  credit = 0;
  /** The stream's consumer stopped it (`break`): its end is a success, not an abort. */
  stoppedByConsumer = false;
  /** The session's snapshot to restore on the worker before this call (durable sessions). */
  restore: Snapshot | null = null;
  /**
   * The store is taking the snapshot this call's handler left: the call resolves after it did,
   * or fails with the error this resolves to (snapshotFailure: 'fail').
   */
  saving: Promise<PoolError | null> | null = null;
  /** The attempt on a worker now (a stream grants it credit). */
  current: Attempt | null = null;
  private settlements = 0;

  constructor(init: {
    id: number;
    command: string;
    info: CommandInfo;
    args: unknown;
    argsJson: string;
    argsParts?: readonly BinaryPart[];
    session: SessionEntry | null;
    idempotent: boolean;
    timeoutMs: number;
    signal: AbortSignal | undefined;
    detailed: boolean;
  }) {
    this.id = init.id;
    this.command = init.command;
    this.info = init.info;
    this.args = init.args;
    this.argsJson = init.argsJson;
    this.argsParts = init.argsParts ?? NO_PARTS;
    this.session = init.session;
    this.idempotent = init.idempotent;
    this.timeoutMs = init.timeoutMs;
    this.signal = init.signal;
    this.detailed = init.detailed;
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

  /** Marks the call settled; false when it already was (the second settlement must not be delivered). */
  markSettled(): boolean {
    return ++this.settlements === 1;
  }

  get settled(): boolean {
    return this.settlements > 0;
  }
}

/** Told an attempt's outcome, once. */
export type AttemptOk = (value: unknown, a: Attempt) => void;
/** `a` is null when the attempt was refused before it existed (an open circuit, arguments over the limit). */
export type AttemptFailed = (err: PoolError, a: Attempt | null) => void;

/** Who placed an attempt: told its outcome first (the circuits it passed learn it there). */
export interface AttemptOwner {
  attemptSucceeded(a: Attempt, value: unknown): void;
  attemptFailed(a: Attempt, err: PoolError): void;
  /** The worker sent the session's state after the attempt (durable sessions). */
  snapshot(a: Attempt, data: Uint8Array | undefined, err: string | undefined): void;
}

/**
 * One attempt of a call on one worker: its wire id, its frame, the circuit tickets it holds, and
 * where it is (queued or on a worker). Settles once; whatever happens later (a late answer, a
 * second abort) is ignored.
 */
export class Attempt implements WorkerAttempt, Waiting {
  done = false;
  items = 0;
  worker: Worker | null = null;
  queueTimer: NodeJS.Timeout | null = null;
  settled = false;
  onAbort: (() => void) | null = null;
  deadline = Infinity;

  constructor(
    readonly call: Call,
    /** The attempt's id on the wire. */
    readonly id: number,
    /** 1-based number of this attempt of the call. */
    readonly number: number,
    readonly frame: Buffer | readonly Buffer[],
    readonly timeoutMs: number,
    /** Prefer another worker than this one (the one the previous attempt failed on). */
    readonly avoid: number | null,
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
    return this.call.session === null ? null : this.call.session.id;
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

  snapshot(data: Uint8Array | undefined, err: string | undefined): void {
    this.owner.snapshot(this, data, err);
  }

  /** A stream's item: handed to the call's consumer. */
  item(value: unknown): void {
    this.call.items++;
    this.call.sink?.push(value);
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
