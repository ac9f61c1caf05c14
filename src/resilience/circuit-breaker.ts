import { DEFAULTS } from '../defaults.js';
import { invalidOption } from '../errors/invalid.js';
import { PoolError } from '../errors/pool-error.js';
import { channels } from '../telemetry/channels.js';
import { realClock, type Clock } from '../util/clock.js';

export type CircuitState = 'closed' | 'open' | 'half_open';

export interface CircuitBreakerOptions {
  /** Names the circuit in errors, events and snapshots. */
  name: string;
  /** Consecutive failures that open a closed circuit (default 5). */
  failureThreshold?: number;
  /** Trial successes that close a half-open circuit (default 3). */
  successThreshold?: number;
  /** How long the circuit stays open before it lets trial calls through (default 60_000 ms). */
  openTimeoutMs?: number;
  /** Trial calls allowed in flight at once while half-open (default 3). */
  halfOpenRequests?: number;
  clock?: Clock;
  /**
   * Which errors count as failures (default: all). An error it rejects counts neither way: it
   * does not add to the failure count, does not reset it, and does not count as a trial success.
   */
  isFailure?: (err: unknown) => boolean;
  /** The pool that owns the circuit, carried by its events (pools set it). */
  poolId?: number;
}

export interface CircuitSnapshot {
  name: string;
  state: CircuitState;
  /** Consecutive failures (the count that opened the circuit, while open). */
  failures: number;
  /** Trial successes so far while half-open. */
  successes: number;
  /** Trial calls in flight while half-open. */
  inFlightTrials: number;
  /** Clock time the circuit last opened, or null if it is not open or half-open. */
  openedAt: number | null;
  /** Ms until an open circuit lets a trial through (0 unless open). */
  retryAfterMs: number;
  /** Calls refused with PYFLEET_CIRCUIT_OPEN since creation. */
  rejected: number;
  /** Times the circuit opened since creation. */
  opened: number;
}

export interface CircuitStateChange {
  circuit: string;
  from: CircuitState;
  to: CircuitState;
  /** What caused it: 'failure_threshold', 'trial_failure', 'open_timeout', 'trial_successes', 'reset'. */
  reason: string;
  at: number;
}

export type CircuitListener = (change: CircuitStateChange) => void;

const CLOSED = 0;
const OPEN = 1;
const HALF_OPEN = 2;
type StateCode = typeof CLOSED | typeof OPEN | typeof HALF_OPEN;
const STATE_NAMES: readonly CircuitState[] = ['closed', 'open', 'half_open'];

const countAll = (): boolean => true;

/**
 * A circuit breaker that is a state check, not a lock (the seed serializes every call through one
 * GenServer; this does not). Closed: consecutive failures are counted and `failureThreshold` of
 * them open it. Open: calls fail fast with `PYFLEET_CIRCUIT_OPEN` until `openTimeoutMs` passed.
 * Half-open: at most `halfOpenRequests` trial calls in flight; `successThreshold` successes close
 * it, any failure re-opens it.
 *
 * Every transition starts a new generation. A call remembers the generation it was admitted in,
 * and its result counts only if the circuit is still in that generation: a call admitted while
 * closed that fails after the circuit opened cannot touch the half-open trial counts.
 */
export class CircuitBreaker {
  readonly name: string;
  readonly failureThreshold: number;
  readonly successThreshold: number;
  readonly openTimeoutMs: number;
  readonly halfOpenRequests: number;
  private readonly clock: Clock;
  private readonly poolId: number | undefined;
  private readonly isFailure: (err: unknown) => boolean;

  private code: StateCode = CLOSED;
  private generation = 0;
  private failures = 0;
  private successes = 0;
  private inFlightTrials = 0;
  private openedAt: number | null = null;
  private openReason = '';
  private rejectedCount = 0;
  private openedCount = 0;
  private listeners: CircuitListener[] = [];

  constructor(options: CircuitBreakerOptions) {
    if (options === null || typeof options !== 'object' || typeof options.name !== 'string' || options.name === '') {
      throw invalid('name must be a non-empty string');
    }
    this.name = options.name;
    const d = DEFAULTS.circuitBreaker;
    this.failureThreshold = positiveInt(options.failureThreshold, d.failureThreshold, 'failureThreshold');
    this.successThreshold = positiveInt(options.successThreshold, d.successThreshold, 'successThreshold');
    this.halfOpenRequests = positiveInt(options.halfOpenRequests, d.halfOpenRequests, 'halfOpenRequests');
    const t = options.openTimeoutMs ?? d.openTimeoutMs;
    if (!(t >= 0) || !Number.isFinite(t)) throw invalid(`openTimeoutMs must be a finite number >= 0, got ${String(t)}`);
    this.openTimeoutMs = t;
    this.clock = options.clock ?? realClock;
    this.poolId = options.poolId;
    if (options.isFailure !== undefined && typeof options.isFailure !== 'function') throw invalid('isFailure must be a function');
    this.isFailure = options.isFailure ?? countAll;
  }

  /**
   * Runs `fn` through the circuit. Closed: one state check and one `.then`. Open: rejects at once
   * with `PYFLEET_CIRCUIT_OPEN` (details: circuit, retryAfterMs). Half-open: runs `fn` as a trial
   * if a trial slot is free, else rejects the same way. Errors from `fn` pass through unchanged.
   */
  execute<T>(fn: () => Promise<T>): Promise<T> {
    let ticket: number;
    let p: Promise<T>;
    try {
      ticket = this.enter();
    } catch (err) {
      return Promise.reject(err);
    }
    try {
      p = fn();
    } catch (err) {
      p = Promise.reject(err);
    }
    return p.then(
      (v) => {
        this.leaveOk(ticket);
        return v;
      },
      (e: unknown) => {
        this.leaveFailed(ticket, e);
        throw e;
      },
    );
  }

  /**
   * `execute` in two halves, for a caller that learns the outcome in a callback rather than a
   * promise: admits one call now and returns its ticket, or throws `PYFLEET_CIRCUIT_OPEN`. Every
   * ticket must be handed back once, to `leaveOk` or `leaveFailed`.
   */
  enter(): number {
    if (this.code === CLOSED) return this.generation;
    const now = this.clock.now();
    if (this.code === OPEN) {
      this.checkOpenTimeout(now);
      if (this.code === OPEN) throw this.openError(now);
    }
    if (this.inFlightTrials >= this.halfOpenRequests) throw this.trialsBusyError();
    this.inFlightTrials++;
    return this.generation;
  }

  /** A call admitted by `enter` succeeded. Like `leaveFailed`, it counts only in the ticket's generation. */
  leaveOk(ticket: number): void {
    if (ticket !== this.generation) return;
    if (this.code === CLOSED) this.failures = 0;
    else if (this.code === HALF_OPEN) {
      this.inFlightTrials--;
      this.trialSuccess();
    }
  }

  /**
   * A call admitted by `enter` failed with `err` (which goes through `isFailure`). It counts only
   * if the circuit has not changed state since: every transition starts a new generation, and the
   * ticket is the generation the call was admitted in.
   */
  leaveFailed(ticket: number, err: unknown): void {
    if (ticket !== this.generation) return;
    if (this.code === CLOSED) {
      if (this.isFailure(err)) this.closedFailure();
    } else if (this.code === HALF_OPEN) {
      this.inFlightTrials--;
      if (this.isFailure(err)) this.open('trial_failure');
    }
  }

  /** The state now; reading it moves an open circuit whose timeout has passed to half-open. */
  get state(): CircuitState {
    if (this.code === OPEN) this.checkOpenTimeout(this.clock.now());
    return STATE_NAMES[this.code];
  }

  /** True when a call would be admitted right now (does not take a trial slot). */
  get allowsRequests(): boolean {
    const s = this.state;
    return s === 'closed' || (s === 'half_open' && this.inFlightTrials < this.halfOpenRequests);
  }

  /** Records a success seen outside `execute` (the seed's `record_success`). */
  recordSuccess(): void {
    if (this.code === OPEN) this.checkOpenTimeout(this.clock.now());
    if (this.code === CLOSED) this.failures = 0;
    else if (this.code === HALF_OPEN) this.trialSuccess();
  }

  /** Records a failure seen outside `execute` (the seed's `record_failure`); `err`, if given, goes through `isFailure`. */
  recordFailure(err?: unknown): void {
    if (err !== undefined && !this.isFailure(err)) return;
    if (this.code === OPEN) this.checkOpenTimeout(this.clock.now());
    if (this.code === CLOSED) this.closedFailure();
    else if (this.code === HALF_OPEN) this.open('trial_failure');
  }

  /** Opens the circuit now, whatever its counts (a recovery's circuit_break); no-op when already open. */
  trip(reason = 'tripped'): void {
    if (this.code !== OPEN) this.open(reason);
  }

  /** Lets trial calls through now instead of after `openTimeoutMs` (the cause went away); no-op unless open. */
  halfOpen(reason = 'probe'): void {
    if (this.code === OPEN) this.transition(HALF_OPEN, reason, true);
  }

  /** Closes the circuit and clears its counts; calls still in flight no longer count. */
  reset(): void {
    const from = this.code;
    this.failures = 0;
    this.transition(CLOSED, 'reset', from !== CLOSED);
  }

  snapshot(): CircuitSnapshot {
    const state = this.state;
    return {
      name: this.name,
      state,
      failures: this.failures,
      successes: this.successes,
      inFlightTrials: this.inFlightTrials,
      openedAt: this.openedAt,
      retryAfterMs: this.code === OPEN ? this.retryAfterMs(this.clock.now()) : 0,
      rejected: this.rejectedCount,
      opened: this.openedCount,
    };
  }

  /** Calls `fn` on every transition; returns the function that unsubscribes. */
  onStateChange(fn: CircuitListener): () => void {
    this.listeners = [...this.listeners, fn];
    return () => this.offStateChange(fn);
  }

  /** Removes a listener added with `onStateChange`. */
  offStateChange(fn: CircuitListener): void {
    this.listeners = this.listeners.filter((l) => l !== fn);
  }

  // ---- internals ----

  private closedFailure(): void {
    if (++this.failures >= this.failureThreshold) this.open('failure_threshold');
  }

  private trialSuccess(): void {
    if (++this.successes >= this.successThreshold) {
      this.failures = 0;
      this.transition(CLOSED, 'trial_successes', true);
    }
  }

  private open(reason: string): void {
    if (reason === 'trial_failure') this.failures++;
    this.openReason = reason;
    this.transition(OPEN, reason, true);
  }

  private checkOpenTimeout(now: number): void {
    if (this.openedAt !== null && now - this.openedAt >= this.openTimeoutMs) this.transition(HALF_OPEN, 'open_timeout', true);
  }

  private transition(to: StateCode, reason: string, announce: boolean): void {
    const from = this.code;
    const now = this.clock.now();
    this.generation++;
    this.code = to;
    this.successes = 0;
    this.inFlightTrials = 0;
    if (to === CLOSED) {
      this.openedAt = null;
    } else if (to === OPEN) {
      this.openedAt = now;
      this.openedCount++;
    }
    if (!announce) return;

    if (to === OPEN) {
      const ch = channels['circuit:opened'];
      if (ch.hasSubscribers) ch.publish(this.tagged({ circuit: this.name, failures: this.failures, retryAfterMs: this.openTimeoutMs }));
    } else if (to === HALF_OPEN) {
      const ch = channels['circuit:half_open'];
      if (ch.hasSubscribers) ch.publish(this.tagged({ circuit: this.name }));
    } else {
      const ch = channels['circuit:closed'];
      if (ch.hasSubscribers) ch.publish(this.tagged({ circuit: this.name }));
    }
    const listeners = this.listeners;
    if (listeners.length === 0) return;
    const change: CircuitStateChange = { circuit: this.name, from: STATE_NAMES[from], to: STATE_NAMES[to], reason, at: now };
    for (const l of listeners) {
      try {
        l(change);
      } catch (err) {
        // A listener's bug must neither break the breaker nor crash the process: report it.
        process.emitWarning(err instanceof Error ? err : new Error(String(err)), { code: 'PYFLEET_LISTENER_ERROR', detail: `in a state listener of circuit "${this.name}"` });
      }
    }
  }

  private tagged<T extends object>(payload: T): T & { poolId?: number } {
    return this.poolId === undefined ? payload : { ...payload, poolId: this.poolId };
  }

  private retryAfterMs(now: number): number {
    if (this.openedAt === null) return 0;
    return Math.max(0, Math.ceil(this.openedAt + this.openTimeoutMs - now));
  }

  private openError(now: number): PoolError {
    this.rejectedCount++;
    const retryAfterMs = this.retryAfterMs(now);
    return new PoolError({
      code: 'PYFLEET_CIRCUIT_OPEN',
      message:
        `Circuit "${this.name}" is open ${this.failures > 0 ? `after ${this.failures} consecutive failure${this.failures === 1 ? '' : 's'}` : `(${this.openReason})`}, ` +
        `so the call was refused without being tried; it will let a trial call through in ${retryAfterMs} ms.`,
      details: { circuit: this.name, retryAfterMs },
    });
  }

  private trialsBusyError(): PoolError {
    this.rejectedCount++;
    return new PoolError({
      code: 'PYFLEET_CIRCUIT_OPEN',
      message:
        `Circuit "${this.name}" is half-open and its ${this.inFlightTrials} trial call${this.inFlightTrials === 1 ? ' is' : 's are'} in flight, ` +
        'so the call was refused without being tried; try again when they settle.',
      details: { circuit: this.name, retryAfterMs: 0, inFlightTrials: this.inFlightTrials },
    });
  }
}

const invalid = (what: string): PoolError => invalidOption(what, 'circuit breaker options');

function positiveInt(v: number | undefined, dflt: number, name: string): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 1) throw invalid(`${name} must be an integer >= 1, got ${String(v)}`);
  return v;
}
