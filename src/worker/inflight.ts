import type { Attempt, Task } from './attempt.js';

/** How much a worker may hold: its pool's `pipelineDepth` and `concurrency`. */
export interface Capacity {
  readonly pipelineDepth: number;
  readonly concurrency: number;
}

interface Cancelling {
  attempt: Attempt;
  /** When it was written, among this worker's attempts (sync ones run in that order). */
  sent: number;
  /** The kill after cancelGraceMs; null once it fired (a late answer is then simply ignored). */
  timer: NodeJS.Timeout | null;
}

/** What a worker held when it died, and which attempt was running. */
export interface HeldAtDeath {
  /** Attempts still owed an answer: the worker settles each with its death. */
  attempts: Attempt[];
  /** Whether the worker was running the attempt: every async or threaded one, and the oldest sync one (sync calls run in the order they came). */
  running(a: Attempt): boolean;
  /** Running attempts the pool had already given up on (timed out or aborted, cancel not acknowledged). */
  abandonedRunning: Attempt[];
}

/**
 * One worker's table of attempts (piscina's per-worker task table): those written and not yet
 * answered, and those given up on whose cancel the worker has not acknowledged yet. Owns the
 * single deadline timer of the worker and the grace timers of pending cancels.
 */
export class InFlight {
  private readonly attempts = new Map<number, Attempt>();
  /** Write order of the attempts in flight (wire ids are given out before writing, so they need not be in order). */
  private readonly sentAt = new Map<number, number>();
  private sends = 0;
  private readonly cancelling = new Map<number, Cancelling>();
  /** Non-idempotent sync attempts in flight: while one runs, nothing else is sent to the worker. */
  exclusive = 0;
  /** Sync attempts in flight (they run one after the other on the worker's main thread). */
  sync = 0;
  /** Async and threaded attempts in flight (they run at once). */
  concurrent = 0;
  /** Concurrent attempts per command, for `@command(max_concurrency=N)`. */
  private readonly perCommand = new Map<string, number>();
  private deadlineTimer: NodeJS.Timeout | null = null;
  private deadlineAt = Infinity;

  constructor(
    /** Called with the attempts whose deadline passed. */
    private readonly onExpired: (due: Attempt[]) => void,
  ) {}

  get size(): number {
    return this.attempts.size;
  }

  /** A cancel was sent and not acknowledged yet. */
  get cancelPending(): boolean {
    return this.cancelling.size > 0;
  }

  add(a: Attempt, now: number): void {
    this.attempts.set(a.id, a);
    this.sentAt.set(a.id, ++this.sends);
    if (a.kind === 'sync') {
      this.sync++;
      if (!a.idempotent) this.exclusive++;
    } else {
      this.concurrent++;
      if (a.maxConcurrency !== null) this.perCommand.set(a.command, (this.perCommand.get(a.command) ?? 0) + 1);
    }
    const deadline = (a.deadline = now + a.timeoutMs);
    if (deadline < this.deadlineAt) this.armDeadline(deadline);
  }

  /** When attempt `id` was written, among this worker's attempts. */
  sentOrder(id: number): number {
    return this.sentAt.get(id) ?? 0;
  }

  /** Removes and returns the attempt `id` if it is in flight. */
  take(id: number): Attempt | undefined {
    const a = this.attempts.get(id);
    if (a === undefined) return undefined;
    this.attempts.delete(id);
    this.sentAt.delete(id);
    if (a.kind === 'sync') {
      this.sync--;
      if (!a.idempotent) this.exclusive--;
    } else {
      this.concurrent--;
      if (a.maxConcurrency !== null) this.perCommand.set(a.command, this.perCommand.get(a.command)! - 1);
    }
    return a;
  }

  /** The attempt `id` if it is in flight (not taken). */
  get(id: number): Attempt | undefined {
    return this.attempts.get(id);
  }

  /** Concurrent attempts of `command` in flight. */
  countOf(command: string): number {
    return this.perCommand.get(command) ?? 0;
  }

  /**
   * Whether `t` may be written next to what is in flight. A sync call runs alone: only beside no
   * async or threaded call, and nothing is sent behind a non-idempotent one; idempotent sync
   * calls may be pipelined up to `pipelineDepth`. Async and threaded calls share the worker with
   * no sync call, up to `concurrency`, and up to their command's `maxConcurrency`.
   */
  admits(t: Task, cap: Capacity): boolean {
    if (this.exclusive > 0) return false;
    if (t.kind === 'sync') {
      if (this.concurrent > 0) return false;
      return t.idempotent ? this.sync < cap.pipelineDepth : this.sync === 0;
    }
    if (this.sync > 0 || this.concurrent >= cap.concurrency) return false;
    return t.maxConcurrency === null || this.countOf(t.command) < t.maxConcurrency;
  }

  /** Nothing more can be written next to what is in flight, of any kind. */
  full(cap: Capacity): boolean {
    if (this.exclusive > 0) return true;
    if (this.sync > 0) return this.sync >= cap.pipelineDepth;
    return this.concurrent >= cap.concurrency;
  }

  /** The attempt `id`, in flight or given up on and not acknowledged yet. */
  lookup(id: number): Attempt | undefined {
    return this.attempts.get(id) ?? this.cancelling.get(id)?.attempt;
  }

  /** An attempt given up on whose cancel is not acknowledged yet (its late items are ignored). */
  isCancelling(id: number): boolean {
    return this.cancelling.size > 0 && this.cancelling.has(id);
  }

  values(): IterableIterator<Attempt> {
    return this.attempts.values();
  }

  /** `a` was given up on; `onGraceExpired` runs if its cancel is not acknowledged within `graceMs`. */
  cancel(a: Attempt, graceMs: number, onGraceExpired: () => void, sent: number): void {
    const entry: Cancelling = { attempt: a, timer: null, sent };
    entry.timer = setTimeout(() => {
      entry.timer = null;
      onGraceExpired();
    }, graceMs);
    this.cancelling.set(a.id, entry);
  }

  /**
   * The worker answered `id`. Returns 'acknowledged' when it was a cancelled attempt (its cancel
   * is now done), 'late' when its grace had already expired (the answer is ignored), or
   * undefined when `id` was not being cancelled.
   */
  answerToCancel(id: number): 'acknowledged' | 'late' | undefined {
    if (this.cancelling.size === 0) return undefined;
    const c = this.cancelling.get(id);
    if (c === undefined) return undefined;
    if (c.timer === null) return 'late';
    clearTimeout(c.timer);
    this.cancelling.delete(id);
    return 'acknowledged';
  }

  /** Empties the table at the worker's death and says which attempts were running. */
  atDeath(): HeldAtDeath {
    if (this.deadlineTimer !== null) clearTimeout(this.deadlineTimer);
    this.deadlineTimer = null;
    // Python runs sync calls in the order it got them, so the first sync attempt written that it
    // had not answered, given up on or not, is the one that was running; async and threaded ones all ran.
    let first = Infinity;
    let runningId = -1;
    for (const a of this.attempts.values()) {
      const sent = this.sentAt.get(a.id)!;
      if (a.kind === 'sync' && sent < first) {
        first = sent;
        runningId = a.id;
      }
    }
    let abandonedSync: Attempt | null = null;
    const abandonedRunning: Attempt[] = [];
    for (const c of this.cancelling.values()) {
      if (c.timer !== null) clearTimeout(c.timer);
      if (c.attempt.kind !== 'sync') abandonedRunning.push(c.attempt);
      else if (c.sent < first) {
        first = c.sent;
        runningId = -1;
        abandonedSync = c.attempt;
      }
    }
    if (abandonedSync !== null) abandonedRunning.push(abandonedSync);
    this.cancelling.clear();
    const attempts = [...this.attempts.values()];
    for (const a of attempts) this.take(a.id);
    return { attempts, running: (a) => a.kind !== 'sync' || a.id === runningId, abandonedRunning };
  }

  /**
   * One timer per worker, at the earliest deadline in flight, instead of one per call: creating
   * and clearing a timer per call was a measurable share of a round trip. Calls with the usual
   * timeout end before the timer is due, so it is re-armed only when it fires.
   */
  private armDeadline(at: number): void {
    if (this.deadlineTimer !== null) clearTimeout(this.deadlineTimer);
    this.deadlineAt = at;
    this.deadlineTimer = setTimeout(() => this.onDeadline(), Math.max(1, Math.ceil(at - performance.now())));
    // In-flight calls keep the process alive through the worker's pipes; this timer need not.
    this.deadlineTimer.unref();
  }

  private onDeadline(): void {
    this.deadlineTimer = null;
    this.deadlineAt = Infinity;
    const now = performance.now();
    let next = Infinity;
    const due: Attempt[] = [];
    for (const a of this.attempts.values()) {
      // Timers may fire a fraction of a millisecond early.
      if (a.deadline - now < 1) due.push(a);
      else if (a.deadline < next) next = a.deadline;
    }
    if (due.length > 0) this.onExpired(due);
    if (next < Infinity && next < this.deadlineAt) this.armDeadline(next);
  }
}
