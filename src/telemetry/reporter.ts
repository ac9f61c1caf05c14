import type { Logger } from '../util/logger.js';
import { Alerter, type AlertOptions } from './alerts.js';
import { PyfleetMetrics, type MetricsOptions } from './metrics.js';
import type { ObservedPool } from './source.js';
import { isInstalled } from '../util/optional.js';
import { instrument, type TracedPool, type TracingOptions } from './tracing.js';

export interface ReporterOptions {
  /**
   * Logs what the pool does not log itself: each recovery's result (info when it worked,
   * warn when it failed) with its id, strategy and duration. Default: no extra logging.
   */
  logger?: Logger;
  /** Prometheus metrics: an existing `PyfleetMetrics`, or options for a new one. Default: none. */
  metrics?: PyfleetMetrics | MetricsOptions;
  /** The `pool` label of this pool's series (default: the pool id). */
  metricsName?: string;
  /** Alert webhook. Default: none. */
  alerts?: AlertOptions;
  /** A span per execute (no-op until an OpenTelemetry SDK is registered). Default: on where @opentelemetry/api is installed. */
  tracing?: boolean | TracingOptions;
}

/**
 * The seed's ErrorReporter, real: subscribes to the pool's events and turns them into log
 * lines, Prometheus metrics, webhook alerts and OpenTelemetry spans. Every part is optional;
 * `close()` detaches all of them.
 */
export class ErrorReporter {
  readonly metrics: PyfleetMetrics | null;
  readonly alerter: Alerter | null;
  private readonly undo: Array<() => void> = [];

  constructor(pool: ObservedPool & Partial<Pick<TracedPool, 'execute'>>, options: ReporterOptions = {}) {
    const log = options.logger;
    if (log !== undefined) {
      this.undo.push(
        pool.on('recovery:complete', (e) => {
          const fields = { poolId: pool.id, recovery: e.id, category: e.category, strategy: e.strategy, action: e.action, result: e.result, durationMs: Math.round(e.durationMs) };
          if (e.result === 'ok') log.info(fields, `Recovery completed: ok in ${Math.round(e.durationMs)} ms (${e.strategy} for ${e.category})`);
          else log.warn(fields, `Recovery failed after ${Math.round(e.durationMs)} ms (${e.strategy} for ${e.category})`);
        }),
      );
    }
    if (options.metrics !== undefined) {
      this.metrics = options.metrics instanceof PyfleetMetrics ? options.metrics : new PyfleetMetrics(options.metrics);
      this.undo.push(this.metrics.attach(pool, options.metricsName === undefined ? {} : { name: options.metricsName }));
    } else this.metrics = null;
    if (options.alerts !== undefined) {
      const alerter = new Alerter(pool, { logger: log, ...options.alerts });
      this.alerter = alerter;
      this.undo.push(() => alerter.close());
    } else this.alerter = null;
    // By default, spans only where the app has @opentelemetry/api (without it no SDK can record them).
    if (options.tracing !== false && typeof pool.execute === 'function' && (options.tracing !== undefined || isInstalled('@opentelemetry/api'))) {
      this.undo.push(instrument(pool as TracedPool, typeof options.tracing === 'object' ? options.tracing : {}));
    }
  }

  /** Detaches everything; alerts already being delivered finish on their own. */
  close(): void {
    for (const u of this.undo.splice(0).reverse()) u();
  }
}

/** `new ErrorReporter(pool, options)`. */
export function attachReporter(pool: ObservedPool & Partial<Pick<TracedPool, 'execute'>>, options: ReporterOptions = {}): ErrorReporter {
  return new ErrorReporter(pool, options);
}
