import type { PoolError } from '../errors/pool-error.js';
import type { BinaryPart } from '../protocol/binary.js';
import type { CommandInfo } from '../protocol/messages.js';
import type { Backoff } from '../resilience/backoff.js';
import type { DetailedResult, Member, StreamAttempt, Via } from './types.js';

const NO_PARTS: readonly BinaryPart[] = Object.freeze([]);

/** Where a stream's items go. */
export interface StreamSink {
  push(value: unknown): void;
}

export interface CallInit {
  id: number;
  command: string;
  info: CommandInfo;
  args: unknown;
  argsJson: string;
  argsParts?: readonly BinaryPart[];
  sessionId: string | null;
  idempotent: boolean;
  timeoutMs: number;
  signal: AbortSignal | undefined;
  detailed: boolean;
}

/**
 * One `execute` or `stream`, across all its attempts, whatever target they go to. It settles
 * exactly once; a second settlement would be a pyfleet bug: it is counted (the chaos report's
 * "answered twice" reads the count), never delivered. A target extends it with what it keeps per
 * call (the pool: the session entry, the snapshot to restore; the fleet: the hosts tried).
 */
export class Call {
  /** The call's id: the same on every attempt, sent to Python as `ctx.request_id`. */
  readonly id: number;
  readonly command: string;
  readonly info: CommandInfo;
  readonly args: unknown;
  readonly argsJson: string;
  /** Binary values of the args, sent as parts outside the JSON text. */
  readonly argsParts: readonly BinaryPart[];
  readonly sessionId: string | null;
  readonly idempotent: boolean;
  /** The timeout of one attempt: the call's own, else the command's, else the default. */
  readonly timeoutMs: number;
  readonly signal: AbortSignal | undefined;
  readonly detailed: boolean;
  readonly startedAt = performance.now();
  /** Attempts made so far (the number of the latest one). */
  attempts = 0;
  /** The worker of the latest attempt (on a fleet: the host's worker). */
  workerId: number | null = null;
  /** Set when the call was quarantined as poison. */
  poisoned: PoolError | null = null;
  /** This call's own backoff sequence, made at its first retry (decorrelated jitter remembers its last delay in it). */
  backoff: Backoff | null = null;
  /** The one re-send made at once, without backoff, after a member died under this call. */
  resentAfterDeath = false;
  /** The member the next attempt should avoid (the previous one failed there). */
  avoid: Member | null = null;
  /** Stream items received, over all attempts (a stream is never re-sent once one arrived). */
  items = 0;
  /** A stream's consumer: where its items go (null for execute). */
  sink: StreamSink | null = null;
  /** A stream's initial credit (its highWaterMark); 0 for execute. */
  credit = 0;
  /** The stream's consumer stopped it (`break`): its end is a success, not an abort. */
  stoppedByConsumer = false;
  /**
   * The store is taking the snapshot this call's handler left: the call resolves after it did,
   * or fails with the error this resolves to (snapshotFailure: 'fail').
   */
  saving: Promise<PoolError | null> | null = null;
  /** The stream attempt under way (its consumer grants it credit, or gives up on it). */
  current: StreamAttempt | null = null;
  private settlements = 0;

  constructor(init: CallInit) {
    this.id = init.id;
    this.command = init.command;
    this.info = init.info;
    this.args = init.args;
    this.argsJson = init.argsJson;
    this.argsParts = init.argsParts ?? NO_PARTS;
    this.sessionId = init.sessionId;
    this.idempotent = init.idempotent;
    this.timeoutMs = init.timeoutMs;
    this.signal = init.signal;
    this.detailed = init.detailed;
  }

  /** What `detailed: true` resolves with (a target may add where the call ran). */
  detailedResult<T>(value: T, via: Via): DetailedResult<T> {
    return { value, via, attempts: this.attempts, workerId: this.workerId, durationMs: performance.now() - this.startedAt };
  }

  /** Marks the call settled; false when it already was (the second settlement must not be delivered). */
  markSettled(): boolean {
    return ++this.settlements === 1;
  }

  get settled(): boolean {
    return this.settlements > 0;
  }
}
