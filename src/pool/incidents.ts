import { ERROR_CODES } from '../errors/codes.js';
import { PoolError } from '../errors/pool-error.js';
import type { RecoveryOrchestrator } from '../resilience/recovery/orchestrator.js';
import type { Logger } from '../util/logger.js';
import type { ExitInfo, Worker } from '../worker/worker.js';
import type { PoolCircuits } from './circuits.js';
import type { Counters } from '../call/counters.js';
import type { Dispatcher } from './dispatcher.js';
import { reportFailure } from '../call/report.js';
import { sessionLostError } from '../call/errors.js';
import type { ResolvedOptions } from './options.js';
import type { SessionTable } from './sessions.js';
import type { Supervisor } from './supervisor.js';

export interface IncidentDeps {
  poolId: number;
  options: ResolvedOptions;
  logger: Logger;
  counters: Counters;
  sessions: SessionTable;
  dispatcher: Dispatcher;
  supervisor: Supervisor;
  orchestrator: RecoveryOrchestrator;
  circuits: PoolCircuits;
  durableSessions: boolean;
  /** The pool is closing: an exit only counts toward the drain. */
  closing: () => boolean;
  checkDrained: () => void;
}

/**
 * What the pool does when the supervisor reports a worker gone, a start failed or a worker over
 * its memory: sessions moved or lost, the circuit fed, the recovery asked for a plan.
 */
export class Incidents {
  constructor(private readonly d: IncidentDeps) {}

  workerExited(w: Worker, info: ExitInfo, died: boolean): void {
    const d = this.d;
    const lost = d.sessions.workerGone(w.id, info.expected ? `its worker ${w.id} was stopped (${info.reason})` : `its worker ${w.id} died (${info.reason})`, d.durableSessions);
    if (lost.length > 0) {
      const set = new Set(lost);
      d.dispatcher.rejectQueued(
        (a) => a.call.session !== null && set.has(a.call.session),
        (a) => sessionLostError(a.call.session!, a.call.command, a.call),
      );
    }
    if (d.closing()) return d.checkDrained();
    if (!died) return;
    d.logger.warn({ poolId: d.poolId, workerId: w.id, workerPid: w.pid, exitCode: info.code, signal: info.signal, reason: info.reason }, `worker ${w.id} exited: ${info.reason}`);
    // A worker the pool killed after its cancel went unanswered failed no more than its call did;
    // a crash, a protocol fault or missed heartbeats are the workers' own failures.
    if (!info.byPool || info.error !== null) d.circuits.poolOps.recordFailure();
    // Missed heartbeats kill only an idle worker: no call carries that error to be reported.
    if (info.error?.code === 'PYFLEET_HEALTH_CHECK_FAILED') reportFailure(d.poolId, d.counters, d.logger, info.error, 0);
    const err =
      info.error ??
      new PoolError({
        code: 'PYFLEET_WORKER_CRASHED',
        workerId: w.id,
        message: `Worker ${w.id} (pid ${w.pid}) ${info.signal ? `was killed by ${info.signal}` : `exited with code ${info.code}`}.`,
        details: { exitCode: info.code, signal: info.signal },
      });
    // The supervisor replaces the worker; the recovery acts only when every worker is down
    // (critical: open the circuit so callers fail fast instead of queueing).
    const ctx = { workerId: w.id, affectingAllWorkers: d.supervisor.allWorkersDown() };
    if (d.orchestrator.plan(err, ctx).type === 'circuit_break') void d.orchestrator.handle(err, ctx);
  }

  startFailed(err: PoolError): void {
    const d = this.d;
    // The worker that failed to start may not have exited yet: it does not count as up.
    const allDown = d.supervisor.allWorkersDown(err.workerId);
    err.severity = allDown ? 'critical' : ERROR_CODES[err.code].category === 'initialization_error' ? 'major' : err.severity;
    err.strategy = allDown ? 'circuit_break' : 'backoff_retry';
    reportFailure(d.poolId, d.counters, d.logger, err, 0);
    d.circuits.poolOps.recordFailure();
    if (allDown) {
      // Nobody can serve: open the circuit so callers fail fast instead of queueing.
      d.circuits.markOpenedWhileDown();
      void d.orchestrator.handle(err, { affectingAllWorkers: true });
    }
  }

  memoryOver(w: Worker, rss: number): void {
    const d = this.d;
    const err = new PoolError({
      code: 'PYFLEET_MEMORY_LIMIT',
      workerId: w.id,
      severity: 'minor',
      message: `Worker ${w.id} (pid ${w.pid}) uses ${Math.round(rss / 1048576)} MB, over recycle.maxMemoryMb (${d.options.recycle.maxMemoryMb}); it is recycled to free the memory.`,
    });
    reportFailure(d.poolId, d.counters, d.logger, err, 0);
    void d.orchestrator.handle(err, { workerId: w.id });
  }
}
