import type { EventName, EventPayloads } from './channels.js';

/**
 * What the telemetry layer needs from a pool, as a structural type: `Pool` satisfies it, and
 * telemetry (at the bottom of the import graph) never imports the pool (at the top).
 */
export interface ObservedWorker {
  id: number;
  pid: number | null;
  state: string;
  health: string;
  requests: number;
  restarts: number;
  inflight: number;
  rssMb: number | null;
}

export interface ObservedCircuit {
  state: 'closed' | 'open' | 'half_open';
  failures: number;
  retryAfterMs: number;
  rejected: number;
  opened: number;
}

export interface ObservedStats {
  poolId: number;
  module: string;
  closed: boolean;
  workers: ObservedWorker[];
  queue: { length: number; max: number };
  calls: { total: number; succeeded: number; failed: number; inFlight: number; retries: number; viaRecovery: number; viaFallback: number };
  errorsByCategory: Record<string, number>;
  restarts: { total: number; byReason: Record<string, number> };
  circuits: Record<string, ObservedCircuit>;
  recoveries: {
    initiated: number;
    succeeded: number;
    failed: number;
    active: number;
    timedOut: number;
    byStrategy: Record<string, { initiated: number; succeeded: number; failed: number }>;
  };
  /** Sessions known, bound to a worker, with their latest state stored (durable), and restored on a new worker so far. */
  sessions: ObservedSessions;
  /** Bytes of binary values (Buffers, typed arrays) that crossed the workers' pipes, every attempt counted. */
  binary: { toPython: number; fromPython: number };
}

export interface ObservedSessions {
  total: number;
  bound: number;
  durable: number;
  restored: number;
}

export interface ObservedPool {
  readonly id: number;
  /**
   * The pool's resolved options: `min` tells an idle pool shrunk to zero workers from one that
   * lost them all; `concurrency` and `pipelineDepth` say how many calls one worker may hold.
   */
  readonly options?: { readonly min?: number; readonly concurrency?: number; readonly pipelineDepth?: number };
  /** The commands the workers registered: `stream` marks a generator (its calls are streams). */
  readonly registeredCommands?: Readonly<Record<string, { readonly stream?: boolean }>>;
  stats(): ObservedStats;
  on<K extends EventName>(name: K, fn: (payload: EventPayloads[K]) => void): () => void;
  close(options?: { timeoutMs?: number }): Promise<void>;
}

/** Worker states as the pool reports them (kept here so telemetry needs nothing from src/worker). */
export const OBSERVED_WORKER_STATES = ['initializing', 'ready', 'busy', 'degraded', 'terminating', 'terminated'] as const;

/**
 * Calls one worker may hold at once: `concurrency` async or threaded calls, or `pipelineDepth`
 * idempotent plain `def` calls (whichever is larger; 1 when the pool does not say).
 */
export function workerCapacity(pool: ObservedPool): number {
  const o = pool.options;
  return Math.max(1, o?.concurrency ?? 1, o?.pipelineDepth ?? 1);
}

/** A worker that can serve: ready or busy, and healthy. */
export function isServing(w: ObservedWorker): boolean {
  return (w.state === 'ready' || w.state === 'busy') && w.health === 'healthy';
}

const closeListeners = new WeakMap<ObservedPool, Set<() => void>>();

/**
 * Calls `fn` once when `pool.close()` is first called (before the pool drains), so alerts and
 * dashboards can tell a shutdown from an outage (the pool's `pool:closing` event, shared by
 * every listener of one pool). Returns an unsubscribe.
 */
export function onPoolClosing(pool: ObservedPool, fn: () => void): () => void {
  let set = closeListeners.get(pool);
  if (set === undefined) {
    const listeners = new Set<() => void>();
    set = listeners;
    closeListeners.set(pool, listeners);
    let fired = false;
    const fire = (): void => {
      if (fired) return;
      fired = true;
      for (const l of [...listeners]) {
        try {
          l();
        } catch {
          // a listener's failure must not stop the pool from closing
        }
      }
    };
    pool.on('pool:closing', fire);
  }
  set.add(fn);
  const s = set;
  return () => {
    s.delete(fn);
  };
}
