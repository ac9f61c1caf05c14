/** Everything public in src/telemetry: events, metrics, alerts, tracing, and the reporter that combines them. */
export { channels, publish, subscribe, EVENT_NAMES, type EventName, type EventPayloads } from './channels.js';
export { PyfleetMetrics, poolMetrics, DEFAULT_LATENCY_BUCKETS, DEFAULT_SIZE_BUCKETS, type MetricsOptions, type AttachMetricsOptions } from './metrics.js';
export { watchStreams, type StreamEnd, type StreamOutcome, type StreamWatch } from './streams.js';
export { Alerter, attachAlerts, type Alert, type AlertOptions, type AlertType, type AlerterStats } from './alerts.js';
export { instrument, startExecuteSpan, runInSpan, TRACER_NAME, type TracingOptions, type TracedPool } from './tracing.js';
export { ErrorReporter, attachReporter, type ReporterOptions } from './reporter.js';
export { onPoolClosing, isServing, workerCapacity, type ObservedPool, type ObservedStats, type ObservedWorker, type ObservedSessions } from './source.js';
