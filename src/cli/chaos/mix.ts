import { isPoolError } from '../../errors/pool-error.js';
import type { Outcome, PlannedCall } from '../workload.js';

/** The exception chaos injects into a call (a pyfleet fault, not the handler's). */
export const INJECTED_EXCEPTION = { type: 'RuntimeError', message: 'chaos: injected exception' } as const;

export function isInjectedException(e: unknown): boolean {
  return isPoolError(e) && e.category === 'python_error' && e.python?.type === INJECTED_EXCEPTION.type && e.python.message === INJECTED_EXCEPTION.message;
}

/** What the mix calls: a pool, or a fleet. */
export interface ChaosTarget {
  execute(command: string, args: unknown, options?: { sessionId?: string }): Promise<unknown>;
  closeSession(id: string): Promise<void>;
}

export interface MixOptions {
  target: ChaosTarget;
  /** Makes tokens and session ids unique to this run. */
  runId: string;
  sessions: number;
  /** Share of calls that are session calls (when a session is free). */
  sessionShare: number;
  /** Share of the other calls that are idempotent `compute` (the rest: non-idempotent `record`). */
  idempotentShare: number;
  rnd: () => number;
}

interface SessionState {
  id: string;
  busy: boolean;
  lost: boolean;
  /** Values session_get may legitimately return now (null: fresh or never set). */
  allowed: Set<number | null>;
}

const sumOfSquaresBelow = (n: number): number => ((n - 1) * n * (2 * n - 1)) / 6;

function bump(o: Record<string, number>, k: string): void {
  o[k] = (o[k] ?? 0) + 1;
}

/**
 * The chaos workload's calls against `examples/chaos_handlers.py`, and what their outcomes say:
 * idempotent `compute` (answers checked), non-idempotent `record` (side effects in a ledger,
 * audited later), and session calls (state checked: never silently empty or another's). The pool
 * chaos and the fleet chaos run the same mix.
 */
export class ChaosMix {
  readonly failedByCategory: Record<string, number> = {};
  readonly failedByCode: Record<string, number> = {};
  readonly idem = { calls: 0, succeeded: 0, injectedExceptions: 0, failedByCode: {} as Record<string, number> };
  readonly nonIdem = { calls: 0, succeeded: 0, failed: 0 };
  readonly sess = { calls: 0, succeeded: 0, lost: 0, reopened: 0 };
  wrongAnswers = 0;
  sessionStateErrors = 0;
  nonPoolErrors = 0;
  readonly nonPoolErrorSamples: string[] = [];
  injectedExceptionsSeen = 0;
  readonly tokensSent = new Set<string>();
  readonly tokensSucceeded = new Set<string>();
  /** Token -> whether its failure said the call was taken by a worker. */
  readonly tokensFailed = new Map<string, boolean>();
  private seq = 0;
  private readonly sessions: SessionState[];

  constructor(private readonly o: MixOptions) {
    this.sessions = Array.from({ length: o.sessions }, (_, i) => ({ id: `chaos-${o.runId}-s${i}`, busy: false, lost: false, allowed: new Set<number | null>([null]) }));
  }

  /** The next call to send. */
  readonly next = (): PlannedCall | null => {
    const { rnd } = this.o;
    if (this.sessions.length > 0 && rnd() < this.o.sessionShare) {
      const free = this.sessions.filter((s) => !s.busy);
      if (free.length > 0) return this.sessionCall(free[Math.floor(rnd() * free.length)]);
    }
    return rnd() < this.o.idempotentShare ? this.computeCall() : this.recordCall();
  };

  private failure(e: unknown): void {
    if (!isPoolError(e)) {
      this.nonPoolErrors++;
      if (this.nonPoolErrorSamples.length < 5) this.nonPoolErrorSamples.push((e as Error)?.stack ?? String(e));
      bump(this.failedByCategory, 'not_a_pool_error');
      return;
    }
    bump(this.failedByCategory, e.category);
    bump(this.failedByCode, e.code);
    if (isInjectedException(e)) this.injectedExceptionsSeen++;
  }

  private computeCall(): PlannedCall {
    const i = this.seq++;
    const n = 50 + Math.floor(this.o.rnd() * 450);
    this.idem.calls++;
    return {
      label: 'compute',
      start: () => this.o.target.execute('compute', { n, salt: i }),
      done: (r: Outcome) => {
        if (r.ok) {
          this.idem.succeeded++;
          const v = r.value as { n?: unknown; salt?: unknown; value?: unknown } | null;
          if (v === null || typeof v !== 'object' || v.n !== n || v.salt !== i || v.value !== sumOfSquaresBelow(n)) this.wrongAnswers++;
          return;
        }
        this.failure(r.error);
        if (isInjectedException(r.error)) this.idem.injectedExceptions++;
        else bump(this.idem.failedByCode, isPoolError(r.error) ? r.error.code : 'not_a_pool_error');
      },
    };
  }

  private recordCall(): PlannedCall {
    const token = `${this.o.runId}-${this.seq++}`;
    this.tokensSent.add(token);
    this.nonIdem.calls++;
    return {
      label: 'record',
      start: () => this.o.target.execute('record', { token }),
      done: (r: Outcome) => {
        if (r.ok) {
          this.nonIdem.succeeded++;
          this.tokensSucceeded.add(token);
          if (r.value !== token) this.wrongAnswers++;
          return;
        }
        this.nonIdem.failed++;
        this.failure(r.error);
        this.tokensFailed.set(token, isPoolError(r.error) ? r.error.taken : true);
      },
    };
  }

  private sessionCall(s: SessionState): PlannedCall {
    s.busy = true;
    this.sess.calls++;
    const put = this.o.rnd() < 0.5;
    const v = this.seq++;
    const target = this.o.target;
    return {
      label: put ? 'session_put' : 'session_get',
      start: async () => {
        if (s.lost) {
          // As a client should: the session's state is gone; close it and start it again, empty.
          await target.closeSession(s.id);
          s.lost = false;
          s.allowed = new Set([null]);
          this.sess.reopened++;
        }
        // Unique arguments: identical ones would share one poison-quarantine key (command + args),
        // so two chance deaths under chaos would get every later session_get refused for the cool-down.
        return put ? target.execute('session_put', { v }, { sessionId: s.id }) : target.execute('session_get', { nonce: v }, { sessionId: s.id });
      },
      done: (r: Outcome) => {
        s.busy = false;
        if (r.ok) {
          this.sess.succeeded++;
          if (put) {
            if (r.value !== v) this.wrongAnswers++;
            s.allowed = new Set([v]);
          } else {
            const got = r.value as number | null;
            if (!s.allowed.has(got)) this.sessionStateErrors++;
            s.allowed = new Set([got]);
          }
          return;
        }
        this.failure(r.error);
        if (isPoolError(r.error) && r.error.category === 'session_error') {
          s.lost = true;
          this.sess.lost++;
          return;
        }
        // A put that failed after it was taken may have run.
        if (put && !isInjectedException(r.error)) s.allowed.add(v);
      },
    };
  }
}
