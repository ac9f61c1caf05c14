/** The worker lifecycle of the seed series (Doc 3). */
export const WORKER_STATES = ['initializing', 'ready', 'busy', 'degraded', 'terminating', 'terminated'] as const;
export type WorkerState = (typeof WORKER_STATES)[number];

export const WORKER_HEALTH = ['healthy', 'unhealthy', 'unknown'] as const;
export type WorkerHealth = (typeof WORKER_HEALTH)[number];

/** Allowed transitions (Doc 3). A worker that dies while starting goes straight to terminated. */
export const TRANSITIONS: Readonly<Record<WorkerState, readonly WorkerState[]>> = Object.freeze({
  initializing: ['ready', 'terminated'],
  ready: ['busy', 'degraded', 'terminating'],
  busy: ['ready', 'degraded', 'terminating'],
  degraded: ['ready', 'terminating'],
  terminating: ['terminated'],
  terminated: [],
});

export function canTransition(from: WorkerState, to: WorkerState): boolean {
  return TRANSITIONS[from].includes(to);
}

/**
 * Strict mode (the tests turn it on with PYFLEET_STRICT=1): an illegal transition throws, so a
 * bug in the lifecycle fails the test that caused it. In production it is logged and ignored:
 * the worker keeps its state rather than crashing the host.
 */
export const STRICT_TRANSITIONS = process.env.PYFLEET_STRICT === '1';

export class IllegalTransitionError extends Error {
  constructor(
    readonly from: WorkerState,
    readonly to: WorkerState,
    readonly reason: string,
  ) {
    super(`illegal worker state transition ${from} -> ${to} (${reason}); this is a pyfleet bug, please report it`);
    this.name = 'IllegalTransitionError';
  }
}

export interface Transition {
  from: WorkerState;
  to: WorkerState;
  reason: string;
  /** Epoch ms of the transition. */
  at: number;
  /** Time spent in `from`. */
  durationMs: number;
}
