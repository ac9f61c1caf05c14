/**
 * One attempt of a stream on one host, the client's side of src/fleet/stream-server.ts: the
 * request, the host's items pushed to the call's consumer (the call core's PoolStream, which
 * grants credit back and times the wait for a chunk), then its end or its error. A host dying
 * after the first item, or a gap in Pf-Seq (a message lost, e.g. across a server restart), is
 * PYFLEET_STREAM_BROKEN: a stream is never re-sent once it has been partly consumed.
 */
import type { Msg } from '@nats-io/transport-node';
import { abortedError } from '../call/errors.js';
import type { StreamAttempt } from '../call/types.js';
import { PoolError } from '../errors/pool-error.js';
import { callMeta, hardCapMs, type FleetCall, type Route } from './call.js';
import { noReplyError } from './client-errors.js';
import type { StreamControl } from './stream-server.js';
import { decodePayload } from './values.js';
import { decodeError, H, type CallMeta } from './wire.js';

/** What a stream attempt sends and receives through (the request table's inbox and control subjects). */
export interface StreamTransport {
  /** Subscribes to a fresh inbox subject for this stream; returns it and an unsubscribe. */
  inbox(onMsg: (m: Msg) => void): { subject: string; close(): void };
  send(subject: string, payload: Uint8Array, meta: CallMeta, reply: string): void;
  control(hostId: string, c: StreamControl): void;
  /** Calls `fn` if the host is taken for dead or leaves; returns the unsubscribe. */
  onHostLost(hostId: string, fn: (reason: string) => void): () => void;
}

export class HostStream implements StreamAttempt {
  settled = false;
  private received = 0;
  private readonly hostId: string;
  private readonly meta: CallMeta & { hwm: number };
  private inbox: { subject: string; close(): void } | null = null;
  private offLost: (() => void) | null = null;
  private onAbort: (() => void) | null = null;
  private cap: NodeJS.Timeout | null = null;

  constructor(
    private readonly t: StreamTransport,
    private readonly call: FleetCall,
    attempt: number,
    timeoutMs: number,
    queueMs: number,
    route: Route,
    private readonly subject: string,
    /** The first item arrived (the host's circuit learns it was well). */
    private readonly onFirst: () => void,
    private readonly ok: (items: number) => void,
    private readonly failed: (err: PoolError) => void,
  ) {
    this.hostId = route.host.id;
    this.meta = { ...callMeta(call, attempt, timeoutMs, queueMs, route), hwm: call.credit };
  }

  start(): void {
    const call = this.call;
    this.inbox = this.t.inbox((m) => this.onMsg(m));
    this.offLost = this.t.onHostLost(this.hostId, (reason) => this.lost(reason));
    const signal = call.signal;
    if (signal !== undefined) {
      this.onAbort = () => {
        const err = abortedError(call, signal);
        err.taken = true;
        this.abandon(err);
      };
      signal.addEventListener('abort', this.onAbort, { once: true });
    }
    // A host alive but broken (it never ends the stream) is given up on: its pool bounds the stream by timeoutMs.
    this.cap = setTimeout(() => this.abandon(noReplyError(call, this.hostId, hardCapMs(this.meta.timeoutMs))), hardCapMs(this.meta.timeoutMs));
    this.t.send(this.subject, call.payload, this.meta, this.inbox.subject);
  }

  credit(n: number): void {
    if (!this.settled) this.t.control(this.hostId, { t: 'credit', id: this.meta.id, at: this.meta.attempt, n });
  }

  /** The consumer (or the caller's signal) gives up on the stream: the host stops its generator. */
  abandon(err: PoolError): void {
    if (this.settled) return;
    this.t.control(this.hostId, { t: 'cancel', id: this.meta.id, at: this.meta.attempt });
    this.fail(err);
  }

  private onMsg(m: Msg): void {
    if (this.settled) return;
    if (m.headers?.hasError === true && m.headers.code === 503) {
      this.fail(new PoolError({ code: 'PYFLEET_HOST_LOST', command: this.meta.command, taken: false, message: `Host ${this.hostId} has no responder for streams: it is gone; the stream was not started.`, details: { hostId: this.hostId, gone: true } }));
      return;
    }
    const st = m.headers?.get(H.status) ?? '';
    const seq = Number(m.headers?.get(H.seq) ?? '0');
    if (st === 'item') {
      if (seq !== this.received + 1) return this.fail(this.broken(`item ${this.received + 1} never arrived (got ${seq})`));
      let v: unknown;
      try {
        v = decodePayload(m.data, 'v');
      } catch (e) {
        this.fail(new PoolError({ code: 'PYFLEET_PROTOCOL_ERROR', command: this.meta.command, taken: true, message: `Host ${this.hostId} sent a stream item that is neither JSON nor a binary value (${(e as Error).message}).` }));
        return;
      }
      if (++this.received === 1) this.onFirst();
      this.call.items++;
      this.call.sink?.push(v);
    } else if (st === 'end') {
      if (seq !== this.received) return this.fail(this.broken(`the host sent ${seq} items, ${this.received} arrived`));
      this.finish();
      this.ok(this.received);
    } else if (st === 'err') {
      const e = decodeError(m.data, this.hostId);
      this.fail(this.received > 0 && e.category === 'connection_error' ? this.broken(e.message) : e);
    }
  }

  private lost(reason: string): void {
    if (this.settled) return;
    if (this.received > 0) this.fail(this.broken(reason));
    else this.fail(new PoolError({ code: 'PYFLEET_HOST_LOST', command: this.meta.command, taken: true, message: `${reason}; the stream of ${this.meta.command} had started there and no item arrived: it may have run.`, details: { hostId: this.hostId } }));
  }

  private broken(why: string): PoolError {
    const n = this.received;
    return new PoolError({
      code: 'PYFLEET_STREAM_BROKEN',
      command: this.meta.command,
      sessionId: this.meta.sessionId,
      taken: true,
      message: `The stream of ${this.meta.command} from host ${this.hostId} broke after ${n} item${n === 1 ? '' : 's'}: ${why}. A stream is not re-sent once it has started; call it again if that is safe.`,
      details: { hostId: this.hostId, items: n },
    });
  }

  private fail(err: PoolError): void {
    if (this.settled) return;
    this.finish();
    this.failed(err);
  }

  private finish(): void {
    this.settled = true;
    if (this.cap !== null) clearTimeout(this.cap);
    this.inbox?.close();
    this.offLost?.();
    if (this.onAbort !== null) this.call.signal?.removeEventListener('abort', this.onAbort);
  }
}
