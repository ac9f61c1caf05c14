import { PoolError } from '../errors/pool-error.js';
import { DEFAULTS } from '../defaults.js';
import { anySignal } from '../util/signals.js';
import type { ExecuteOptions, StreamOptions } from './types.js';
import type { Call, StreamSink } from './call.js';
import { badCall } from './errors.js';

/**
 * `stream()` of a pool or a fleet: its options checked now, the call prepared now (bad input
 * throws at the call site) and sent when iteration starts. The consumer's `break` aborts the call
 * as a signal would; the call's own signal still does.
 */
export function openStream<T, C extends Call>(command: string, options: StreamOptions, prepare: (execute: ExecuteOptions) => C, send: (call: C) => Promise<unknown>): PoolStream<T> {
  const { hwm, chunk } = streamLimits(command, options);
  const stopper = new AbortController();
  const both = options.signal === undefined ? null : anySignal(options.signal, stopper.signal);
  const { highWaterMark: _h, chunkTimeoutMs: _c, ...execute } = options;
  const call = prepare({ ...execute, signal: both === null ? stopper.signal : both.signal });
  return new PoolStream<T>(
    call,
    hwm,
    chunk,
    () => {
      let ended: Promise<unknown>;
      try {
        ended = send(call);
      } catch (e) {
        return Promise.reject(e);
      }
      if (both !== null) void ended.finally(both.dispose).catch(() => {});
      return ended;
    },
    () => {
      call.stoppedByConsumer = true;
      stopper.abort(new Error('the consumer stopped the stream'));
    },
  );
}

/** `pool.stream()`'s own options, checked at the call site. */
function streamLimits(command: string, options: { highWaterMark?: number; chunkTimeoutMs?: number }): { hwm: number; chunk: number | undefined } {
  if (typeof options !== 'object' || options === null) throw badCall('options must be an object', command);
  const hwm = options.highWaterMark ?? DEFAULTS.highWaterMark;
  if (!Number.isSafeInteger(hwm) || hwm < 1) throw badCall(`highWaterMark must be an integer >= 1, got ${String(options.highWaterMark)}`, command);
  const chunk = options.chunkTimeoutMs;
  if (chunk !== undefined && (typeof chunk !== 'number' || !(chunk > 0) || !Number.isFinite(chunk))) throw badCall(`chunkTimeoutMs must be a number of ms > 0, got ${String(chunk)}`, command);
  return { hwm, chunk };
}

/**
 * The consumer's side of a stream (`stream()`): an async iterator over the items a
 * generator yields in Python, with credit-based backpressure. The worker may send at most
 * `highWaterMark` items ahead of the consumer: as the consumer takes them, credit goes back in
 * batches of half the mark, so neither side buffers without bound. The call is sent when
 * iteration starts; `break`, `return()` or the signal closes the generator in Python.
 */
export class PoolStream<T> implements AsyncIterableIterator<T>, StreamSink {
  private readonly buffer: unknown[] = [];
  private waiter: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | null = null;
  private state: 'idle' | 'running' | 'ended' | 'failed' | 'closed' = 'idle';
  private error: unknown = null;
  /** Items Python may still send before it waits for credit. */
  private outstanding: number;
  private consumedSinceCredit = 0;
  private chunkTimer: NodeJS.Timeout | null = null;
  private readonly creditBatch: number;

  constructor(
    private readonly call: Call,
    highWaterMark: number,
    private readonly chunkTimeoutMs: number | undefined,
    /** Sends the call; settles when the stream ended (the item count) or failed. */
    private readonly start: () => Promise<unknown>,
    /** Stops the call: the consumer does not want more (closes the generator in Python). */
    private readonly stop: () => void,
  ) {
    this.outstanding = highWaterMark;
    this.creditBatch = Math.max(1, Math.floor(highWaterMark / 2));
    call.sink = this;
    call.credit = highWaterMark;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }

  /** An item from Python (StreamSink). */
  push(value: unknown): void {
    if (this.state !== 'running') return;
    this.outstanding--;
    this.armChunkTimer();
    const w = this.waiter;
    if (w !== null) {
      this.waiter = null;
      this.consumed();
      w.resolve({ value: value as T, done: false });
    } else this.buffer.push(value);
  }

  next(): Promise<IteratorResult<T>> {
    if (this.state === 'idle') this.begin();
    if (this.buffer.length > 0) {
      const value = this.buffer.shift() as T;
      this.consumed();
      return Promise.resolve({ value, done: false });
    }
    if (this.state === 'failed') {
      this.state = 'ended';
      return Promise.reject(this.error);
    }
    if (this.state !== 'running') return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /** The consumer is done (`break` in `for await`): the generator is closed in Python, its `finally` runs. */
  return(): Promise<IteratorResult<T>> {
    if (this.state === 'running' || this.state === 'idle') {
      const wasRunning = this.state === 'running';
      this.state = 'closed';
      this.clearChunkTimer();
      if (wasRunning) this.stop();
    }
    this.buffer.length = 0;
    this.finishWaiter({ value: undefined, done: true });
    return Promise.resolve({ value: undefined, done: true });
  }

  throw(e?: unknown): Promise<IteratorResult<T>> {
    void this.return();
    return Promise.reject(e);
  }

  private begin(): void {
    this.state = 'running';
    this.armChunkTimer();
    this.start().then(
      () => {
        this.clearChunkTimer();
        if (this.state !== 'running') return;
        this.state = 'ended';
        this.finishWaiter({ value: undefined, done: true });
      },
      (e: unknown) => {
        this.clearChunkTimer();
        if (this.state !== 'running') return;
        const w = this.waiter;
        if (w !== null) {
          this.waiter = null;
          this.state = 'ended';
          w.reject(e);
        } else {
          // Delivered after the items that arrived before it.
          this.state = 'failed';
          this.error = e;
        }
      },
    );
  }

  /** One item went to the consumer: give credit back in batches. */
  private consumed(): void {
    if (++this.consumedSinceCredit < this.creditBatch) return;
    const n = this.consumedSinceCredit;
    this.consumedSinceCredit = 0;
    const a = this.call.current;
    if (this.state !== 'running' || a === null || a.settled) return;
    this.outstanding += n;
    a.credit(n);
    this.armChunkTimer();
  }

  /**
   * The longest wait for the next item from Python: counted only while Python has credit (a
   * slow consumer is not a slow generator).
   */
  private armChunkTimer(): void {
    if (this.chunkTimeoutMs === undefined) return;
    this.clearChunkTimer();
    if (this.outstanding <= 0 || this.state !== 'running') return;
    const ms = this.chunkTimeoutMs;
    this.chunkTimer = setTimeout(() => {
      this.chunkTimer = null;
      const a = this.call.current;
      if (a === null || a.settled) return;
      a.abandon(
        new PoolError({
          code: 'PYFLEET_TIMEOUT',
          command: this.call.command,
          callId: this.call.id,
          sessionId: this.call.sessionId,
          taken: true,
          message: `The stream of ${this.call.command} sent no item within chunkTimeoutMs (${ms} ms) after ${this.call.items}; it was cancelled. Raise chunkTimeoutMs if the generator is expected to pause longer.`,
          details: { chunkTimeoutMs: ms, items: this.call.items },
        }),
      );
    }, ms);
  }

  private clearChunkTimer(): void {
    if (this.chunkTimer !== null) {
      clearTimeout(this.chunkTimer);
      this.chunkTimer = null;
    }
  }

  private finishWaiter(r: IteratorResult<T>): void {
    const w = this.waiter;
    if (w !== null) {
      this.waiter = null;
      w.resolve(r);
    }
  }
}
