import type { PoolError } from '../errors/pool-error.js';
import type { RetryBudget } from '../resilience/budget.js';
import { channels } from '../telemetry/channels.js';
import type { CallCounts } from './client-options.js';
import { asPoolError, publishExhausted, resendVerdict } from './client-errors.js';
import type { ClientState } from './client-state.js';
import { callMeta, type FleetCall } from './fleet-call.js';
import type { RequestTable } from './requests.js';
import type { Router } from './routing.js';
import { StreamReceiver } from './stream.js';
import type { FleetSubjects } from './subjects.js';

/**
 * A call's attempts across hosts: each routed (Router), sent (RequestTable or a StreamReceiver),
 * and on failure re-sent to another host if `resendVerdict` allows.
 */
export class Attempts {
  constructor(
    private readonly router: Router,
    private readonly requests: RequestTable,
    private readonly subjects: FleetSubjects,
    private readonly state: ClientState,
    private readonly counts: CallCounts,
    private readonly budget: RetryBudget | undefined,
    private readonly maxAttempts: number,
  ) {}

  async run(call: FleetCall): Promise<{ value: unknown; attempts: number; hostId: string }> {
    const tried = new Set<string>();
    let attempt = 0;
    for (;;) {
      attempt++;
      const { route, release } = await this.router.take(call, tried);
      const { host, ticket } = route;
      const idempotent = call.idempotentOpt ?? host.hb.commands[call.command]?.idempotent ?? false;
      try {
        const sent = this.requests.send(call, attempt, route);
        release();
        const value = await sent;
        host.breaker.leaveOk(ticket);
        return { value, attempts: attempt, hostId: host.id };
      } catch (e) {
        const err = asPoolError(e, call.command);
        if (await this.router.sessionMoved(err, call, host, ticket, attempt)) continue;
        host.breaker.leaveFailed(ticket, err);
        this.resendOrThrow(err, call, attempt, idempotent);
        tried.add(host.id);
      }
    }
  }

  /** After a failed attempt: returns when the call goes to another host (counted, published), throws what the caller gets otherwise. */
  private resendOrThrow(err: PoolError, call: FleetCall, attempt: number, idempotent: boolean): void {
    err.attempt = attempt;
    const verdict = resendVerdict(err, { idempotent, attempt, maxAttempts: this.maxAttempts, budget: this.budget, stopped: this.state.closing || call.signal?.aborted === true });
    if (verdict === 'final') throw err;
    if (verdict !== 'resend') {
      publishExhausted(call.command, attempt, err, verdict);
      if (verdict === 'budget') err.message += ' It was not re-sent to another host: the retry budget is spent (too many re-sends lately).';
      throw err;
    }
    this.counts.retries++;
    if (channels['retry:attempt'].hasSubscribers) channels['retry:attempt'].publish({ command: call.command, attempt: attempt + 1, delayMs: 0, category: err.category, code: err.code });
  }

  /**
   * A stream's attempts: re-sent by the same rule as `run` until its first item, never after. A
   * re-send goes under a new call id: a host already tried may be picked again (when no other can
   * take the stream), and a host ignores a stream request whose id it is still serving.
   */
  async *stream(call: FleetCall, hwm: number, chunkTimeoutMs: number): AsyncGenerator<unknown, void, undefined> {
    const tried = new Set<string>();
    for (let attempt = 1; ; attempt++) {
      const { route, release } = await this.router.take(call, tried);
      const { host, ticket } = route;
      const idempotent = call.idempotentOpt ?? host.hb.commands[call.command]?.idempotent ?? false;
      const r = new StreamReceiver(this.requests.streamTransport, host.id, this.subjects.stream(host.id), { ...callMeta(call, attempt, route), hwm }, call.payload, chunkTimeoutMs, call.signal);
      try {
        r.start();
      } finally {
        release(); // a send that threw must not hold up the session's later calls
      }
      let first: IteratorResult<unknown>;
      try {
        first = await r.next();
      } catch (e) {
        const err = asPoolError(e, call.command);
        if (await this.router.sessionMoved(err, call, host, ticket, attempt)) continue;
        host.breaker.leaveFailed(ticket, err);
        this.resendOrThrow(err, call, attempt, idempotent);
        tried.add(host.id);
        call.id = this.requests.nextCallId();
        continue;
      }
      host.breaker.leaveOk(ticket);
      try {
        if (first.done === true) return;
        yield first.value;
        for (;;) {
          const n = await r.next();
          if (n.done === true) return;
          yield n.value;
        }
      } finally {
        await r.return();
      }
    }
  }
}
