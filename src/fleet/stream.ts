/**
 * Streams across hosts, with credit-based flow control.
 *
 * Client -> host, on the host's stream subject: a request with the call headers plus Pf-Hwm
 * (initial credit: items the host may send ahead of the consumer), reply subject = the stream's
 * own inbox subject.
 * Host -> client, on that inbox: items (Pf-St "item", Pf-Seq 1, 2, ...), then one "end" (Pf-Seq
 * = the count) or one "err" (payload: the PoolError). A host that is draining or does not know
 * the command answers "err" before any item.
 * Client -> host, on the host's control subject: {"t":"credit","id":<stream id>,"n":k} as the
 * consumer takes items (in batches of half the high-water mark), {"t":"cancel","id":...} when the
 * consumer stops early (break, return(), signal). The host never has more than the credit
 * granted in flight, so neither side buffers more than the high-water mark.
 *
 * A host dying after the first item: the client fails the stream with PYFLEET_STREAM_BROKEN
 * (never re-sent, it has been partly consumed). A gap in Pf-Seq (a message lost, e.g. across a
 * server restart) is the same. A host that stops receiving credit (its client died) gives up
 * after the stream's timeout.
 */
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import { PoolError } from '../errors/pool-error.js';
import { decodePayload, encodeValuePayload } from './values.js';
import { decodeError, encodeError, encodeText, H, statusHeaders, type CallMeta } from './wire.js';

/** What a host streams from: `pool.stream` once it exists; any async iterable in tests. */
export type StreamSource = (command: string, args: unknown, options: { sessionId?: string; timeoutMs: number; idempotent?: boolean; signal: AbortSignal; highWaterMark: number }) => AsyncIterable<unknown>;

export interface StreamControl {
  t: 'credit' | 'cancel';
  id: string;
  n?: number;
}

/** Host side: the streams it is sending, by stream id. */
export class StreamServer {
  private readonly live = new Map<string, { credit: number; wake: (() => void) | null; abort: AbortController }>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly hostId: string,
    private readonly source: StreamSource,
  ) {}

  get size(): number {
    return this.live.size;
  }

  /** A stream request; resolves when the stream has ended, failed or been cancelled. */
  async serve(msg: Msg, meta: CallMeta, args: unknown, maxPayload = 1_048_576): Promise<void> {
    const reply = msg.reply;
    if (!reply) return;
    if (this.live.has(meta.id)) return; // a duplicate request: the stream is under way
    const st = { credit: meta.hwm ?? 16, wake: null as (() => void) | null, abort: new AbortController() };
    this.live.set(meta.id, st);
    // A consumer that stops granting credit (its process died) is given up on after the stream's timeout.
    let idleTimer: NodeJS.Timeout | null = null;
    const armIdle = (): void => {
      if (idleTimer) clearTimeout(idleTimer);
      idleTimer = setTimeout(() => st.abort.abort(new Error('no credit from the consumer within the stream timeout')), meta.timeoutMs);
      idleTimer.unref();
    };
    armIdle();
    let seq = 0;
    try {
      const it = this.source(meta.command, args, {
        ...(meta.sessionId !== null ? { sessionId: meta.sessionId } : {}),
        timeoutMs: meta.timeoutMs,
        ...(meta.idempotent !== undefined ? { idempotent: meta.idempotent } : {}),
        signal: st.abort.signal,
        highWaterMark: meta.hwm ?? 16,
      });
      for await (const item of it) {
        if (st.abort.signal.aborted) break;
        while (st.credit <= 0 && !st.abort.signal.aborted) await new Promise<void>((r) => (st.wake = r));
        if (st.abort.signal.aborted) break;
        const payload = encodeValuePayload(item);
        if (payload.length > maxPayload - 1024) {
          throw new PoolError({ code: 'PYFLEET_FRAME_TOO_LARGE', command: meta.command, taken: true, message: `Item ${seq + 1} of the stream of ${meta.command} takes ${payload.length} bytes, over the NATS server's max_payload (${maxPayload}) less 1 KiB for headers; the stream was stopped on host ${this.hostId}. Yield smaller items.`, details: { bytes: payload.length, maxPayload } });
        }
        st.credit--;
        seq++;
        this.nc.publish(reply, payload, { headers: statusHeaders('item', this.hostId, seq) });
      }
      if (!st.abort.signal.aborted) this.nc.publish(reply, encodeText(''), { headers: statusHeaders('end', this.hostId, seq) });
    } catch (e) {
      if (!st.abort.signal.aborted) this.nc.publish(reply, encodeError(e, this.hostId), { headers: statusHeaders('err', this.hostId, seq) });
    } finally {
      if (idleTimer) clearTimeout(idleTimer);
      this.live.delete(meta.id);
    }
  }

  control(c: StreamControl): void {
    const st = this.live.get(c.id);
    if (st === undefined) return;
    if (c.t === 'cancel') st.abort.abort(new Error('cancelled by the consumer'));
    else st.credit += Math.max(0, Math.floor(c.n ?? 0));
    const w = st.wake;
    st.wake = null;
    w?.();
  }

  cancelAll(reason: string): void {
    for (const st of this.live.values()) {
      st.abort.abort(new Error(reason));
      st.wake?.();
    }
  }
}

/** What the client's stream needs from the fleet client. */
export interface StreamTransport {
  /** Subscribes to a fresh inbox subject for this stream; returns it and an unsubscribe. */
  inbox(onMsg: (m: Msg) => void): { subject: string; close(): void };
  send(subject: string, payload: Uint8Array, meta: CallMeta, reply: string): void;
  control(hostId: string, c: StreamControl): void;
  /** Calls `fn` if the host is taken for dead or leaves; returns the unsubscribe. */
  onHostLost(hostId: string, fn: (reason: string) => void): () => void;
}

type Pending = { resolve: (r: IteratorResult<unknown>) => void; reject: (e: unknown) => void };

/**
 * Client side of one stream attempt: an async iterator over the host's items. `start()` sends
 * the request; `firstItem` tells the caller whether a failure may be retried elsewhere.
 */
export class StreamReceiver implements AsyncIterableIterator<unknown> {
  private readonly buf: unknown[] = [];
  private waiter: Pending | null = null;
  private done = false;
  private failure: PoolError | null = null;
  private received = 0;
  /** Items the host may still send before it waits for credit: the chunk timer runs only while this is above 0. */
  private outstanding: number;
  private consumedSinceCredit = 0;
  private chunkTimer: NodeJS.Timeout | null = null;
  private inbox: { subject: string; close(): void } | null = null;
  private offLost: (() => void) | null = null;
  private onAbort: (() => void) | null = null;

  constructor(
    private readonly t: StreamTransport,
    private readonly hostId: string,
    private readonly subject: string,
    private readonly meta: CallMeta & { hwm: number },
    private readonly payload: Uint8Array,
    private readonly chunkTimeoutMs: number,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.outstanding = meta.hwm;
  }

  get itemsReceived(): number {
    return this.received;
  }

  start(): void {
    this.inbox = this.t.inbox((m) => this.onMsg(m));
    this.offLost = this.t.onHostLost(this.hostId, (reason) => this.lost(reason));
    if (this.signal !== undefined) {
      this.onAbort = () => this.cancel(new PoolError({ code: 'PYFLEET_ABORTED', command: this.meta.command, taken: true, message: `The stream of ${this.meta.command} was aborted by its AbortSignal; it was cancelled on host ${this.hostId}.`, cause: this.signal?.reason }));
      this.signal.addEventListener('abort', this.onAbort, { once: true });
    }
    this.armChunkTimer();
    this.t.send(this.subject, this.payload, this.meta, this.inbox.subject);
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<unknown> {
    return this;
  }

  next(): Promise<IteratorResult<unknown>> {
    if (this.buf.length > 0) {
      const v = this.buf.shift();
      this.consumed();
      return Promise.resolve({ value: v, done: false });
    }
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  /** The consumer stopped early: the host's generator is closed (its finally runs). */
  return(): Promise<IteratorResult<unknown>> {
    if (!this.done && this.failure === null) {
      this.t.control(this.hostId, { t: 'cancel', id: this.meta.id });
      this.finish();
    }
    this.buf.length = 0;
    return Promise.resolve({ value: undefined, done: true });
  }

  private consumed(): void {
    if (this.done) return;
    this.consumedSinceCredit++;
    const batch = Math.max(1, this.meta.hwm >> 1);
    if (this.consumedSinceCredit >= batch) {
      this.t.control(this.hostId, { t: 'credit', id: this.meta.id, n: this.consumedSinceCredit });
      this.outstanding += this.consumedSinceCredit;
      this.consumedSinceCredit = 0;
      if (this.chunkTimer === null) this.armChunkTimer();
    }
  }

  private onMsg(m: Msg): void {
    if (this.done || this.failure !== null) return;
    if (m.headers?.hasError === true && m.headers.code === 503) {
      this.fail(new PoolError({ code: 'PYFLEET_HOST_LOST', command: this.meta.command, taken: false, message: `Host ${this.hostId} has no responder for streams: it is gone; the stream was not started.`, details: { hostId: this.hostId, gone: true } }));
      return;
    }
    const st = m.headers?.get(H.status) ?? '';
    const seq = Number(m.headers?.get(H.seq) ?? '0');
    if (st === 'item') {
      if (seq !== this.received + 1) {
        this.fail(this.broken(`item ${this.received + 1} never arrived (got ${seq})`));
        return;
      }
      this.received++;
      this.outstanding--;
      let v: unknown;
      try {
        v = decodePayload(m.data, 'v');
      } catch (e) {
        this.fail(new PoolError({ code: 'PYFLEET_PROTOCOL_ERROR', command: this.meta.command, taken: true, message: `Host ${this.hostId} sent a stream item that is neither JSON nor a binary value (${(e as Error).message}).` }));
        return;
      }
      this.armChunkTimer();
      if (this.waiter !== null) {
        const w = this.waiter;
        this.waiter = null;
        this.consumed();
        w.resolve({ value: v, done: false });
      } else this.buf.push(v);
    } else if (st === 'end') {
      if (seq !== this.received) {
        this.fail(this.broken(`the host sent ${seq} items, ${this.received} arrived`));
        return;
      }
      this.finish();
      if (this.waiter !== null && this.buf.length === 0) {
        const w = this.waiter;
        this.waiter = null;
        w.resolve({ value: undefined, done: true });
      }
    } else if (st === 'err') {
      const e = decodeError(m.data, this.hostId);
      if (this.received > 0 && e.category === 'connection_error') this.fail(this.broken(e.message));
      else this.fail(e);
    }
  }

  private lost(reason: string): void {
    if (this.done || this.failure !== null) return;
    if (this.received > 0) this.fail(this.broken(reason));
    else this.fail(new PoolError({ code: 'PYFLEET_HOST_LOST', command: this.meta.command, taken: true, message: `${reason}; the stream of ${this.meta.command} had started there and no item arrived: it may have run.`, details: { hostId: this.hostId } }));
  }

  private broken(why: string): PoolError {
    return new PoolError({
      code: 'PYFLEET_STREAM_BROKEN',
      command: this.meta.command,
      sessionId: this.meta.sessionId,
      taken: true,
      message: `The stream of ${this.meta.command} from host ${this.hostId} broke after ${this.received} item${this.received === 1 ? '' : 's'}: ${why}. A stream is not re-sent once it has started; call it again if that is safe.`,
      details: { hostId: this.hostId, items: this.received },
    });
  }

  /** A slow consumer is not a slow host: the wait for the next chunk counts only while the host has credit. */
  private armChunkTimer(): void {
    if (this.chunkTimer) clearTimeout(this.chunkTimer);
    this.chunkTimer = null;
    if (this.done || this.failure !== null || this.outstanding <= 0) return;
    const first = this.received === 0;
    const ms = first ? this.meta.timeoutMs + this.chunkTimeoutMs : this.chunkTimeoutMs;
    this.chunkTimer = setTimeout(() => {
      this.t.control(this.hostId, { t: 'cancel', id: this.meta.id });
      this.fail(
        new PoolError({
          code: 'PYFLEET_TIMEOUT',
          command: this.meta.command,
          taken: true,
          message: `No ${first ? 'first ' : 'next '}item of ${this.meta.command} from host ${this.hostId} within ${ms} ms (chunkTimeoutMs${first ? ' + timeoutMs' : ''}); the stream was cancelled after ${this.received} items.`,
          details: { hostId: this.hostId, items: this.received },
        }),
      );
    }, ms);
  }

  /** Fails the stream now (the caller's abort, a host lost, a timeout). */
  cancel(e: PoolError): void {
    if (this.done || this.failure !== null) return;
    this.t.control(this.hostId, { t: 'cancel', id: this.meta.id });
    this.fail(e);
  }

  /** Items that arrived before the failure are still delivered, then the failure. */
  private fail(e: PoolError): void {
    this.failure = e;
    this.finish();
    if (this.waiter !== null) {
      const w = this.waiter;
      this.waiter = null;
      w.reject(e);
    }
  }

  private finish(): void {
    this.done = true;
    if (this.chunkTimer) clearTimeout(this.chunkTimer);
    this.chunkTimer = null;
    this.inbox?.close();
    this.offLost?.();
    if (this.onAbort && this.signal) this.signal.removeEventListener('abort', this.onAbort);
  }

  /** The failure, if the stream failed before its first item (the caller may then retry elsewhere). */
  get failedBeforeFirstItem(): PoolError | null {
    return this.received === 0 && this.failure !== null ? this.failure : null;
  }
}
