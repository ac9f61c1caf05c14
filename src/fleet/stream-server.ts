/**
 * Streams across hosts, with credit-based flow control; the host's side (the client's is
 * src/fleet/stream-attempt.ts).
 *
 * Client -> host, on the host's stream subject: a request with the call headers plus Pf-Hwm
 * (initial credit: items the host may send ahead of the consumer), reply subject = the stream's
 * own inbox subject.
 * Host -> client, on that inbox: items (Pf-St "item", Pf-Seq 1, 2, ...), then one "end" (Pf-Seq
 * = the count) or one "err" (payload: the PoolError). A host that is draining or does not know
 * the command answers "err" before any item.
 * Client -> host, on the host's control subject: {"t":"credit","id":<call id>,"at":<attempt>,"n":k}
 * as the consumer takes items (in batches of half the high-water mark), {"t":"cancel",...} when
 * the consumer stops early (break, return(), signal). The host never has more than the credit
 * granted in flight, so neither side buffers more than the high-water mark.
 *
 * A host that stops receiving credit (its client died) gives up after the stream's timeout.
 */
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import { PoolError } from '../errors/pool-error.js';
import { encodeValuePayload } from './values.js';
import { encodeError, encodeText, statusHeaders, type CallMeta } from './wire.js';

/** What a host streams from: `pool.stream` once it exists; any async iterable in tests. */
export type StreamSource = (command: string, args: unknown, options: { sessionId?: string; timeoutMs: number; idempotent?: boolean; signal: AbortSignal; highWaterMark: number }) => AsyncIterable<unknown>;

export interface StreamControl {
  t: 'credit' | 'cancel';
  /** The call's id and the attempt's number: what the host keys an attempt by. */
  id: string;
  at: number;
  n?: number;
}

/** The key a host runs one attempt of a call under (Pf-Id, Pf-Att). */
export const attemptKey = (id: string, attempt: number): string => `${id}/${attempt}`;

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
    const key = attemptKey(meta.id, meta.attempt);
    if (this.live.has(key)) return; // a duplicate request: the stream is under way
    const st = { credit: meta.hwm ?? 16, wake: null as (() => void) | null, abort: new AbortController() };
    this.live.set(key, st);
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
      this.live.delete(key);
    }
  }

  control(c: StreamControl): void {
    const st = this.live.get(attemptKey(c.id, c.at));
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
