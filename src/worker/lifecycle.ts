import { channels } from '../telemetry/channels.js';
import { IllegalTransitionError, STRICT_TRANSITIONS, canTransition, type Transition, type WorkerState } from './states.js';

/**
 * A worker's state (the seed series' Doc 3 lifecycle) and its latest transition. Every change is
 * checked against the allowed transitions and published on `worker:transition`. The latest one is
 * kept in fields, not an object: ready <-> busy happens on every call.
 */
export class Lifecycle {
  state: WorkerState = 'initializing';
  private since = performance.now();
  private prev: WorkerState | null = null;
  private lastReason = '';
  private lastDurationMs = 0;

  constructor(
    private readonly poolId: number,
    private readonly workerId: number,
    private readonly pid: () => number | null,
    /** An illegal transition outside strict mode: reported, not applied. */
    private readonly onIllegal: (err: IllegalTransitionError) => void,
  ) {}

  /** Moves to `to`; an illegal move throws in strict mode and is reported (and ignored) otherwise. */
  to(to: WorkerState, reason: string, now = performance.now()): void {
    const from = this.state;
    if (!canTransition(from, to)) {
      const err = new IllegalTransitionError(from, to, reason);
      if (STRICT_TRANSITIONS) throw err;
      return this.onIllegal(err);
    }
    const durationMs = now - this.since;
    this.prev = from;
    this.state = to;
    this.lastReason = reason;
    this.lastDurationMs = durationMs;
    this.since = now;
    if (channels['worker:transition'].hasSubscribers) {
      channels['worker:transition'].publish({ poolId: this.poolId, workerId: this.workerId, pid: this.pid(), from, to, reason, durationMs });
    }
  }

  /** Time in the current state. */
  ageMs(now = performance.now()): number {
    return now - this.since;
  }

  get last(): Transition | null {
    if (this.prev === null) return null;
    return { from: this.prev, to: this.state, reason: this.lastReason, at: Math.round(performance.timeOrigin + this.since), durationMs: this.lastDurationMs };
  }
}
