import type { Msg, NatsConnection } from '@nats-io/transport-node';
import { abortedError } from '../call/errors.js';
import { nats } from './nats.js';
import { badReplyError, closedWhileTakenError, hostGoneError, hostLostError, natsLostError, noReplyError, sendFailedError } from './client-errors.js';
import type { ClientState } from './client-state.js';
import { callMeta, hardCapMs, type FleetCall, type Route } from './call.js';
import type { HostEntry, HostTable } from './host-table.js';
import type { StreamTransport } from './stream-attempt.js';
import type { StreamControl } from './stream-server.js';
import type { FleetSubjects } from './subjects.js';
import { decodePayload } from './values.js';
import { callHeaders, decodeError, encodeText, H, type CallMeta } from './wire.js';

/** One attempt sent to a host and not yet answered. */
interface Pending {
  token: string;
  host: HostEntry;
  meta: CallMeta;
  payload: Uint8Array;
  reply: string;
  sends: number;
  disconnectedAt: number | null;
  settle(ok: boolean, v: unknown): void;
}

/**
 * This client's requests in flight on hosts. Every reply comes to one inbox subscription
 * (`<inbox>.<token>`); the token says whether it is a call's reply or a stream's message (`c` or
 * `s`, then the sequence in base 36: a bare number may spell a stream's token, "s1" is 1009). A call
 * is re-sent to the same host (which de-duplicates by call id) whenever its reply may have been
 * lost: on a poll, and after a reconnect.
 */
export class RequestTable {
  readonly inbox = nats().createInbox();
  private readonly idPrefix = this.inbox.slice(this.inbox.lastIndexOf('.') + 1);
  private tokenSeq = 0;
  private readonly pending = new Map<string, Pending>();
  private readonly streamInboxes = new Map<string, (m: Msg) => void>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly subjects: FleetSubjects,
    private readonly table: HostTable,
    private readonly state: ClientState,
    /** Requests published again to the same host (a reply that may have been lost). */
    private readonly counts: { resent: number; settledTwice: number },
    private readonly queueTimeoutMs: number,
  ) {}

  /** Calls in flight (streams not included). */
  get size(): number {
    return this.pending.size;
  }

  /** A call id unique across clients: this client's inbox nuid, then the call's own id. */
  wireId(callId: number): string {
    return `${this.idPrefix}.${callId}`;
  }

  /** One attempt on one host: resolves with the value, rejects with a PoolError; re-sent to the same host (which de-duplicates) when the reply may have been lost. */
  send(call: FleetCall, attempt: number, timeoutMs: number, route: Route): Promise<unknown> {
    const { host } = route;
    return new Promise((resolve, reject) => {
      const token = `c${(++this.tokenSeq).toString(36)}`;
      const meta = callMeta(call, attempt, timeoutMs, this.queueTimeoutMs, route);
      let done = false;
      let timer: NodeJS.Timeout | null = null;
      const subject = this.subjects.call(host.id);
      const onLost = (reason: string): void => p.settle(false, hostLostError(call, host.id, reason));
      const onAbort = (): void => {
        this.control(host.id, { t: 'cancel', id: call.wireId, at: attempt });
        const err = abortedError(call, call.signal!);
        err.taken = true;
        p.settle(false, err);
      };
      const p: Pending = {
        token,
        host,
        meta,
        payload: call.payload,
        reply: `${this.inbox}.${token}`,
        sends: 0,
        disconnectedAt: this.state.connected ? null : performance.now(),
        settle: (ok, v) => {
          if (done) {
            this.counts.settledTwice++;
            return;
          }
          done = true;
          this.pending.delete(token);
          host.inFlight--;
          host.lost.delete(onLost);
          if (timer) clearTimeout(timer);
          call.signal?.removeEventListener('abort', onAbort);
          if (ok) resolve(v);
          else reject(v);
        },
      };
      this.pending.set(token, p);
      host.inFlight++;
      host.lost.add(onLost);
      call.signal?.addEventListener('abort', onAbort, { once: true });
      this.publish(subject, p);
      // A host that is alive answers every call it took (its pool settles each one); a reply
      // that was lost is asked for again (the host answers from its reply cache or joins the
      // running call). The hard cap is for a host that is alive but broken.
      const started = performance.now();
      const cap = hardCapMs(timeoutMs);
      const poll = (): void => {
        if (done) return;
        const elapsed = performance.now() - started;
        if (elapsed >= cap) {
          p.settle(false, noReplyError(call, host.id, elapsed));
          return;
        }
        if (this.state.connected) {
          this.counts.resent++;
          this.publish(subject, p);
        }
        timer = setTimeout(poll, Math.min(timeoutMs, cap - elapsed));
      };
      timer = setTimeout(poll, timeoutMs + 2_000);
    });
  }

  private publish(subject: string, p: Pending): void {
    p.sends++;
    try {
      this.nc.publish(subject, p.payload, { reply: p.reply, headers: callHeaders(p.meta) });
    } catch (e) {
      p.settle(false, sendFailedError(p.meta.command, p.sends, e));
    }
  }

  onReply(m: Msg): void {
    const token = m.subject.slice(this.inbox.length + 1);
    const stream = this.streamInboxes.get(token);
    if (stream !== undefined) {
      stream(m);
      return;
    }
    const p = this.pending.get(token);
    if (p === undefined) return; // a duplicate answer to a re-send, or one after the caller gave up
    const h = m.headers;
    if (h?.hasError === true && h.code === 503) {
      if (this.state.inReconnectGrace(performance.now())) {
        // The host may not have re-subscribed yet after a server restart: ask again shortly.
        setTimeout(() => this.pending.get(token) === p && this.publish(this.subjects.call(p.host.id), p), 200).unref();
        return;
      }
      // This call first, with what is known of it (never delivered, if sent once); then the host
      // is marked gone, which settles its other calls as lost.
      p.settle(false, hostGoneError(p.meta, p.host.id, p.sends));
      this.table.markGone(p.host.id, performance.now());
      return;
    }
    const st = h?.get(H.status) ?? '';
    if (st === 'ok') {
      let v: unknown;
      try {
        v = decodePayload(m.data, 'v');
      } catch (e) {
        p.settle(false, badReplyError(p.meta.command, p.host.id, e));
        return;
      }
      p.settle(true, v);
    } else if (st === 'err') {
      p.settle(false, decodeError(m.data, p.host.id));
    }
  }

  control(hostId: string, c: StreamControl | { t: string; [k: string]: unknown }): void {
    if (this.nc.isClosed()) return;
    try {
      this.nc.publish(this.subjects.control(hostId), encodeText(JSON.stringify(c)));
    } catch {
      // best effort: the host gives up on its own after the call's timeout
    }
  }

  /** What a stream attempt (StreamReceiver) sends and receives through. */
  readonly streamTransport: StreamTransport = {
    inbox: (onMsg) => {
      const token = `s${(++this.tokenSeq).toString(36)}`;
      this.streamInboxes.set(token, onMsg);
      return { subject: `${this.inbox}.${token}`, close: () => this.streamInboxes.delete(token) };
    },
    send: (subject, payload, meta, reply) => {
      this.nc.publish(subject, payload, { reply, headers: callHeaders(meta) });
    },
    control: (hostId, c) => this.control(hostId, c),
    onHostLost: (hostId, fn) => {
      const h = this.table.get(hostId);
      if (h === undefined) return () => {};
      h.lost.add(fn);
      return () => h.lost.delete(fn);
    },
  };

  onDisconnect(now: number): void {
    for (const p of this.pending.values()) p.disconnectedAt ??= now;
  }

  /** While disconnected: a call whose connection stayed down over queueTimeoutMs fails (it may have run). */
  expireDisconnected(now: number): void {
    for (const p of [...this.pending.values()]) {
      if (p.disconnectedAt !== null && now - p.disconnectedAt > this.queueTimeoutMs) p.settle(false, natsLostError(p.meta, p.host.id, this.queueTimeoutMs));
    }
  }

  onReconnect(): void {
    // Replies sent while we were away are lost: ask again (hosts answer a known call id from their cache).
    for (const p of this.pending.values()) {
      p.disconnectedAt = null;
      this.counts.resent++;
      this.publish(this.subjects.call(p.host.id), p);
    }
  }

  /** The client closed with these still in flight. */
  failAll(): void {
    for (const p of [...this.pending.values()]) p.settle(false, closedWhileTakenError(p.meta.command, p.host.id));
  }
}
