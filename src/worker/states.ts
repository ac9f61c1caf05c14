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

export interface Transition {
  from: WorkerState;
  to: WorkerState;
  reason: string;
  /** Epoch ms of the transition. */
  at: number;
  /** Time spent in `from`. */
  durationMs: number;
}
