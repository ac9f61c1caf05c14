import type { ErrorCategory } from '../errors/categories.js';
import type { RetryBudget } from '../resilience/budget.js';
import type { CircuitSnapshot } from '../resilience/circuit-breaker.js';
import type { RecoveryMetrics } from '../resilience/recovery/types.js';
import type { Transition, WorkerHealth, WorkerState } from '../worker/states.js';
import type { Worker } from '../worker/worker.js';
import type { CallCounts } from '../call/counters.js';

export interface WorkerStats {
  id: number;
  pid: number | null;
  state: WorkerState;
  health: WorkerHealth;
  requests: number;
  restarts: number;
  inflight: number;
  sessions: number;
  rssMb: number | null;
  python: string;
  uptimeMs: number;
  lastTransition: Transition | null;
}

export interface PoolStats {
  poolId: number;
  module: string;
  closed: boolean;
  workers: WorkerStats[];
  queue: { length: number; max: number };
  /** Sessions known now, bound to a worker now, with their latest state stored now (durable), and restored on a new worker so far. */
  sessions: { total: number; bound: number; durable: number; restored: number };
  calls: CallCounts;
  errorsByCategory: Record<ErrorCategory, number>;
  restarts: { total: number; byReason: Record<string, number> };
  /** `pool_operations`, and `worker_commands:<command>` for each command called so far. */
  circuits: Record<string, CircuitSnapshot>;
  recoveries: RecoveryMetrics;
  retryBudget: { calls: number; retries: number; denied: number } | null;
  poison: { quarantined: number; refused: number };
  /** Bytes of binary parts (Buffers, typed arrays, NDArrays) sent to the workers, every attempt counted, and received in results and stream items. */
  binary: { toPython: number; fromPython: number };
  chaos: { seed: number; injected: Record<string, number> } | null;
}

export function workerStats(w: Worker, sessions: number, now: number): WorkerStats {
  return {
    id: w.id,
    pid: w.pid,
    state: w.state,
    health: w.health,
    requests: w.requests,
    restarts: w.restarts,
    inflight: w.load,
    sessions,
    rssMb: w.rssBytes === null ? null : Math.round((w.rssBytes / 1048576) * 10) / 10,
    python: w.pythonVersion,
    uptimeMs: now - w.startedAt,
    lastTransition: w.lastTransition,
  };
}

export function budgetStats(b: RetryBudget | undefined): PoolStats['retryBudget'] {
  if (b === undefined) return null;
  const s = b.stats();
  return { calls: s.calls, retries: s.retries, denied: s.denied };
}
