import { createHash } from 'node:crypto';
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
  /** Needed only when the mix sends streams (`kinds.stream`). */
  stream?(command: string, args: unknown): AsyncIterable<unknown>;
  closeSession(id: string): Promise<void>;
}

/**
 * The newer kinds of session-less calls, all idempotent: `acompute` (async def), `tcompute`
 * (threaded), `stream` (an async generator, count_stream) and `blob` (binary args and results).
 */
export const NEWER_KINDS = ['acompute', 'tcompute', 'stream', 'blob'] as const;
export type NewerKind = (typeof NEWER_KINDS)[number];

/** The shares the pool chaos gives the newer kinds (of all session-less calls). */
export const DEFAULT_KIND_SHARES: Readonly<Record<NewerKind, number>> = Object.freeze({ acompute: 0.15, tcompute: 0.1, stream: 0.1, blob: 0.1 });

/** What one kind of call did. */
export interface KindTally {
  calls: number;
  succeeded: number;
  injectedExceptions: number;
  failedByCode: Record<string, number>;
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
  /**
   * Shares of session-less calls given to the newer kinds (the rest split by `idempotentShare`
   * as before). Default: none, the original mix (compute, record, sessions).
   */
  kinds?: Partial<Record<NewerKind, number>>;
}

interface SessionState {
  id: string;
  busy: boolean;
  lost: boolean;
  /** Values session_get may legitimately return now (null: fresh or never set). */
  allowed: Set<number | null>;
  /** Values this session held that a later call replaced (to name an older state when it comes back). */
  past: Set<number>;
}

/** How a session's state was wrong: silently empty, older than a call that succeeded, another session's, or a value nobody put. */
export type SessionStateError = 'empty' | 'older' | 'foreign' | 'unknown';

const sumOfSquaresBelow = (n: number): number => ((n - 1) * n * (2 * n - 1)) / 6;

function bump(o: Record<string, number>, k: string): void {
  o[k] = (o[k] ?? 0) + 1;
}

/**
 * The chaos workload's calls against `examples/chaos_handlers.py`, and what their outcomes say:
 * idempotent `compute` (answers checked), non-idempotent `record` (side effects in a ledger,
 * audited later), session calls (state checked: never silently empty, older than a call that
 * succeeded, or another session's), and, when `kinds` asks for them, async, threaded, streaming
 * and binary calls (answers, items and checksums checked). The pool chaos and the fleet chaos run
 * the same mix; the fleet chaos does not ask for the newer kinds.
 */
export class ChaosMix {
  readonly failedByCategory: Record<string, number> = {};
  readonly failedByCode: Record<string, number> = {};
  /** Idempotent calls (compute and the newer kinds). `brokenStreams`: streams whose worker died after their first item, which may not be re-sent (PYFLEET_STREAM_BROKEN): failures by design, like injected exceptions. */
  readonly idem = { calls: 0, succeeded: 0, injectedExceptions: 0, brokenStreams: 0, failedByCode: {} as Record<string, number> };
  readonly nonIdem = { calls: 0, succeeded: 0, failed: 0 };
  readonly sess = { calls: 0, succeeded: 0, lost: 0, reopened: 0 };
  wrongAnswers = 0;
  /** Wrong answers by kind of call (compute, record, session_put, acompute, tcompute, stream, blob). */
  readonly wrongAnswersByKind: Record<string, number> = {};
  sessionStateErrors = 0;
  readonly sessionStateErrorsByKind: Record<SessionStateError, number> = { empty: 0, older: 0, foreign: 0, unknown: 0 };
  /** Per newer kind: calls, successes, injected exceptions, failures by code. */
  readonly kinds: Record<NewerKind, KindTally> = Object.fromEntries(NEWER_KINDS.map((k) => [k, { calls: 0, succeeded: 0, injectedExceptions: 0, failedByCode: {} }])) as unknown as Record<NewerKind, KindTally>;
  /** Streams: items received in all, streams complete, and those that failed after some items (of them, PYFLEET_STREAM_BROKEN). */
  readonly streamStats = { items: 0, complete: 0, failedAfterItems: 0, broken: 0 };
  /**
   * A stream failed after items with a connection_error other than PYFLEET_STREAM_BROKEN, or
   * PYFLEET_STREAM_BROKEN said another item count than arrived (or came before any item): the
   * pool hid or misreported a broken stream.
   */
  streamBrokenMislabelled = 0;
  nonPoolErrors = 0;
  readonly nonPoolErrorSamples: string[] = [];
  injectedExceptionsSeen = 0;
  readonly tokensSent = new Set<string>();
  readonly tokensSucceeded = new Set<string>();
  /** Token -> whether its failure said the call was taken by a worker. */
  readonly tokensFailed = new Map<string, boolean>();
  private seq = 0;
  private readonly sessions: SessionState[];
  /** Which session put each session value (values are unique across sessions). */
  private readonly ownerOf = new Map<number, string>();
  private readonly kindShares: Array<[NewerKind, number]>;

  constructor(private readonly o: MixOptions) {
    this.sessions = Array.from({ length: o.sessions }, (_, i) => ({ id: `chaos-${o.runId}-s${i}`, busy: false, lost: false, allowed: new Set<number | null>([null]), past: new Set<number>() }));
    this.kindShares = NEWER_KINDS.map((k): [NewerKind, number] => [k, o.kinds?.[k] ?? 0]).filter(([, w]) => w > 0);
    const total = this.kindShares.reduce((t, [, w]) => t + w, 0);
    if (total > 1) throw new Error(`the shares of ${this.kindShares.map(([k]) => k).join(', ')} add up to ${total}, over 1`);
    if (this.kindShares.some(([k]) => k === 'stream') && o.target.stream === undefined) throw new Error('the mix sends streams, but its target has no stream()');
  }

  /** The next call to send. */
  readonly next = (): PlannedCall | null => {
    const { rnd } = this.o;
    if (this.sessions.length > 0 && rnd() < this.o.sessionShare) {
      const free = this.sessions.filter((s) => !s.busy);
      if (free.length > 0) return this.sessionCall(free[Math.floor(rnd() * free.length)]);
    }
    // Drawn only when there are newer kinds, so the original mix replays as it did for a seed.
    if (this.kindShares.length > 0) {
      let r = rnd();
      for (const [kind, share] of this.kindShares) {
        if (r < share) return this.newerCall(kind);
        r -= share;
      }
    }
    return rnd() < this.o.idempotentShare ? this.computeCall() : this.recordCall();
  };

  private wrong(kind: string): void {
    this.wrongAnswers++;
    bump(this.wrongAnswersByKind, kind);
  }

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
          if (v === null || typeof v !== 'object' || v.n !== n || v.salt !== i || v.value !== sumOfSquaresBelow(n)) this.wrong('compute');
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
          if (r.value !== token) this.wrong('record');
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
    this.ownerOf.set(v, s.id);
    const target = this.o.target;
    return {
      label: put ? 'session_put' : 'session_get',
      start: async () => {
        if (s.lost) {
          // As a client should: the session's state is gone; close it and start it again, empty.
          await target.closeSession(s.id);
          s.lost = false;
          s.allowed = new Set([null]);
          s.past.clear();
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
            if (r.value !== v) this.wrong('session_put');
            this.replaceState(s, v);
          } else {
            const got = r.value as number | null;
            if (s.allowed.has(got)) this.replaceState(s, got);
            else {
              this.sessionStateErrors++;
              this.sessionStateErrorsByKind[this.classify(s, got)]++;
              // Counted once: which of the two the session holds now is not known.
              s.allowed.add(got);
              if (got !== null) s.past.delete(got);
            }
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

  /** The session now holds `value`: only it may be read next; the values it replaced are older. */
  private replaceState(s: SessionState, value: number | null): void {
    for (const old of s.allowed) if (old !== null && old !== value) s.past.add(old);
    s.allowed = new Set([value]);
  }

  private classify(s: SessionState, got: number | null): SessionStateError {
    if (got === null) return 'empty';
    if (s.past.has(got)) return 'older';
    const owner = this.ownerOf.get(got);
    return owner !== undefined && owner !== s.id ? 'foreign' : 'unknown';
  }

  private newerCall(kind: NewerKind): PlannedCall {
    const i = this.seq++;
    const tally = this.kinds[kind];
    tally.calls++;
    this.idem.calls++;
    const plan = kind === 'stream' ? this.streamPlan(i) : kind === 'blob' ? this.blobPlan(i) : this.computePlan(kind, i);
    return {
      label: kind,
      start: plan.start,
      done: (r: Outcome) => {
        if (r.ok) {
          tally.succeeded++;
          this.idem.succeeded++;
          if (!plan.check(r.value)) this.wrong(kind);
          return;
        }
        this.failure(r.error);
        if (isInjectedException(r.error)) {
          tally.injectedExceptions++;
          this.idem.injectedExceptions++;
          return;
        }
        const code = isPoolError(r.error) ? r.error.code : 'not_a_pool_error';
        bump(tally.failedByCode, code);
        if (kind === 'stream' && code === 'PYFLEET_STREAM_BROKEN') this.idem.brokenStreams++;
        else bump(this.idem.failedByCode, code);
      },
    };
  }

  /** acompute / tcompute: compute's answer, from an asyncio task or a worker thread. */
  private computePlan(kind: 'acompute' | 'tcompute', salt: number): { start(): Promise<unknown>; check(v: unknown): boolean } {
    const n = 50 + Math.floor(this.o.rnd() * 450);
    const ms = Math.floor(this.o.rnd() * 20);
    const flag = kind === 'acompute' ? 'task' : 'thread';
    return {
      start: () => this.o.target.execute(kind, { n, salt, ms }),
      check: (value) => {
        const v = value as Record<string, unknown> | null;
        return v !== null && typeof v === 'object' && v.n === n && v.salt === salt && v.value === sumOfSquaresBelow(n) && v[flag] === true;
      },
    };
  }

  /**
   * A stream of n items {i, salt}: every item in order and of this call, and either all n of
   * them or a PoolError. One that fails after items must say so: PYFLEET_STREAM_BROKEN with the
   * count that arrived (or a timeout), never another connection_error (that would be a re-sent
   * stream, or a broken one passed off as something else).
   */
  private streamPlan(salt: number): { start(): Promise<unknown>; check(v: unknown): boolean } {
    const n = 1 + Math.floor(this.o.rnd() * 20);
    const ms = Math.floor(this.o.rnd() * 5);
    const target = this.o.target;
    const st = this.streamStats;
    let inOrder = true;
    let got = 0;
    return {
      start: async () => {
        try {
          for await (const item of target.stream!('count_stream', { n, salt, ms })) {
            const x = item as { i?: unknown; salt?: unknown } | null;
            if (x === null || typeof x !== 'object' || x.i !== got || x.salt !== salt) inOrder = false;
            got++;
            st.items++;
          }
        } catch (e) {
          if (!inOrder) this.wrong('stream');
          if (got > 0) {
            st.failedAfterItems++;
            if (isPoolError(e) && e.code === 'PYFLEET_STREAM_BROKEN') st.broken++;
          }
          if (isPoolError(e) && (e.code === 'PYFLEET_STREAM_BROKEN' ? got === 0 || e.details?.items !== got : got > 0 && e.category === 'connection_error')) this.streamBrokenMislabelled++;
          throw e;
        }
        if (got === n) st.complete++;
        return got;
      },
      // A stream that ended without an error must have ended complete and in order.
      check: (count) => inOrder && count === n,
    };
  }

  /** Binary both ways: the SHA-256 of what Python received and of what came back, and a float array reversed. */
  private blobPlan(salt: number): { start(): Promise<unknown>; check(v: unknown): boolean } {
    const rnd = this.o.rnd;
    const data = Buffer.from(Uint32Array.from({ length: 1 + Math.floor(rnd() * 16 * 1024) }, () => Math.floor(rnd() * 2 ** 32)).buffer);
    const values = Float64Array.from({ length: 1 + Math.floor(rnd() * 64) }, () => rnd() * 1e6 - 5e5);
    const n = Math.floor(rnd() * 32 * 1024);
    const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
    const shaIn = sha(data);
    const shaValues = sha(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
    return {
      start: () => this.o.target.execute('blob', { data, values, salt, n }),
      check: (value) => {
        const v = value as { sha_in?: unknown; sha_values?: unknown; out?: unknown; sha_out?: unknown; reversed?: unknown } | null;
        if (v === null || typeof v !== 'object' || v.sha_in !== shaIn || v.sha_values !== shaValues) return false;
        if (!Buffer.isBuffer(v.out) || sha(v.out) !== v.sha_out || !v.out.equals(pattern(salt, n))) return false;
        const back = v.reversed;
        return back instanceof Float64Array && back.length === values.length && back.every((x, k) => x === values[values.length - 1 - k]);
      },
    };
  }
}

/** What blob returns as `out`: the SHA-256 of the salt, repeated to n bytes (as chaos_handlers.py makes it). */
function pattern(salt: number, n: number): Buffer {
  const seed = createHash('sha256').update(String(salt)).digest();
  return Buffer.concat(Array.from({ length: Math.floor(n / seed.length) + 1 }, () => seed)).subarray(0, n);
}
