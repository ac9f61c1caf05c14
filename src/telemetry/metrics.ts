import type { Counter, Gauge, Registry } from 'prom-client';
import { requireOptional } from '../util/optional.js';
import { FastCounter, FastHistogram } from './fast-metrics.js';
import { OBSERVED_WORKER_STATES, isServing, workerCapacity, type ObservedPool, type ObservedStats } from './source.js';
import { watchStreams, type StreamWatch } from './streams.js';

/** Latency buckets (seconds): sub-millisecond round trips up to the one-minute operation timeout. */
export const DEFAULT_LATENCY_BUCKETS: readonly number[] = Object.freeze([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]);

/** Snapshot sizes (bytes): 256 B to 64 MiB, x4 per bucket (maxSessionBytes is 16 MiB by default). */
export const DEFAULT_SIZE_BUCKETS: readonly number[] = Object.freeze([256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]);

const CIRCUIT_STATES = ['closed', 'open', 'half_open'] as const;
const SESSION_STATES = ['total', 'bound', 'durable'] as const;

export interface MetricsOptions {
  /** Where the metrics are registered (default: a new `Registry`, see `.registry`). Pass prom-client's `register` to use the global one. */
  registry?: Registry;
  /** Prefix of every metric name (default `pyfleet_`). */
  prefix?: string;
  /** Buckets of the latency histogram, in seconds (default `DEFAULT_LATENCY_BUCKETS`). */
  buckets?: readonly number[];
}

export interface AttachMetricsOptions {
  /** The value of the `pool` label on this pool's series (default: the pool's id). */
  name?: string;
}

type CounterChild = { inc(v?: number): void };
type HistogramChild = { observe(v: number): void };

/** One attached pool: its label, its event subscriptions, the last stats values (for counter deltas). */
interface Attachment {
  pool: ObservedPool;
  name: string;
  unsubscribe: Array<() => void>;
  /** Per-(command, outcome) children, so a call costs one Map lookup, not a label hash. */
  calls: Map<string, { count: CounterChild; latency: HistogramChild }>;
  failures: Map<string, CounterChild>;
  errors: Map<string, CounterChild>;
  last: Map<string, number>;
  rssWorkers: Set<string>;
  circuits: Set<string>;
  streams: StreamWatch;
}

/**
 * pyfleet's Prometheus metrics on a prom-client registry you own.
 *
 * Per call (from `call:end` and `pool:error` events, so they cost nothing for pools not
 * attached): `calls_total{command,outcome}`, `call_duration_seconds{command,outcome}`,
 * `call_failures_total{command,code}`, `errors_total{category,severity}`.
 * At scrape time (from `pool.stats()`, so per pool even for events that carry no pool id):
 * `retries_total`, `recoveries_total{strategy,result}`, `recoveries_active`,
 * `circuit_state{circuit,state}` (1 for the current state), `circuit_opened_total{circuit}`,
 * `circuit_rejected_total{circuit}`, `worker_restarts_total{reason}`, `workers{state}`,
 * `workers_healthy`, `queue_length`, `queue_max`, `calls_in_flight`,
 * `worker_rss_bytes{worker}`, `worker_requests{worker}`, `worker_inflight{worker}`,
 * `worker_capacity`, `sessions{state}`, `streams_open`, `binary_bytes_total{direction}`.
 * From events: `session_snapshots_total{outcome}`,
 * `session_snapshot_bytes`, `session_snapshot_seconds`, `session_restores_total{outcome}`,
 * `session_restore_seconds`, `sessions_not_durable_total`, `streams_total{command,outcome}`,
 * `stream_items_total{command}` — all with a `pool` label.
 */
export class PyfleetMetrics {
  readonly registry: Registry;
  readonly prefix: string;
  private readonly attachments = new Map<ObservedPool, Attachment>();
  private refreshedAt = -Infinity;

  // Per-call metrics: resolved once per label set, so a call costs a few additions.
  private readonly calls: FastCounter;
  private readonly latency: FastHistogram;
  private readonly callFailures: FastCounter;
  private readonly errors: FastCounter;
  private readonly retries: Counter<'pool'>;
  private readonly recoveries: Counter<'pool' | 'strategy' | 'result'>;
  private readonly recoveriesActive: Gauge<'pool'>;
  private readonly circuitState: Gauge<'pool' | 'circuit' | 'state'>;
  private readonly circuitOpened: Counter<'pool' | 'circuit'>;
  private readonly circuitRejected: Counter<'pool' | 'circuit'>;
  private readonly restarts: Counter<'pool' | 'reason'>;
  private readonly workers: Gauge<'pool' | 'state'>;
  private readonly workersHealthy: Gauge<'pool'>;
  private readonly queueLength: Gauge<'pool'>;
  private readonly queueMax: Gauge<'pool'>;
  private readonly inFlight: Gauge<'pool'>;
  private readonly rss: Gauge<'pool' | 'worker'>;
  private readonly workerRequests: Gauge<'pool' | 'worker'>;
  private readonly workerInflight: Gauge<'pool' | 'worker'>;
  private readonly workerCapacity: Gauge<'pool'>;
  private readonly sessions: Gauge<'pool' | 'state'>;
  private readonly streamsOpen: Gauge<'pool'>;
  private readonly binaryBytes: Counter<'pool' | 'direction'>;
  // From events (sessions and streams are far rarer than calls, but cheap all the same).
  private readonly snapshots: FastCounter;
  private readonly snapshotBytes: FastHistogram;
  private readonly snapshotSeconds: FastHistogram;
  private readonly restores: FastCounter;
  private readonly restoreSeconds: FastHistogram;
  private readonly notDurable: FastCounter;
  private readonly streams: FastCounter;
  private readonly streamItems: FastCounter;

  constructor(options: MetricsOptions = {}) {
    const { Counter, Gauge, Registry } = requireOptional<typeof import('prom-client')>('prom-client', 'metrics');
    this.registry = options.registry ?? new Registry();
    const p = (this.prefix = options.prefix ?? 'pyfleet_');
    const registers = [this.registry];
    // Every scrape-time metric refreshes all of them from stats() once per scrape.
    const self = this;
    const collect = function collect(): void {
      self.refresh();
    };
    this.calls = new FastCounter({ name: `${p}calls_total`, help: 'Calls settled, by command and outcome (ok, fallback, error; refused: at the call site, before any attempt).', labelNames: ['pool', 'command', 'outcome'], registers });
    this.latency = new FastHistogram({
      name: `${p}call_duration_seconds`,
      help: 'Time from execute() to the settled result, retries and recovery included.',
      labelNames: ['pool', 'command', 'outcome'],
      buckets: options.buckets ?? DEFAULT_LATENCY_BUCKETS,
      registers,
    });
    this.callFailures = new FastCounter({ name: `${p}call_failures_total`, help: 'Calls that ended in an error or were refused at the call site, by command and error code.', labelNames: ['pool', 'command', 'code'], registers });
    this.errors = new FastCounter({ name: `${p}errors_total`, help: 'Failed attempts, by error category and severity (a call retried twice counts up to three).', labelNames: ['pool', 'category', 'severity'], registers });
    this.retries = new Counter({ name: `${p}retries_total`, help: 'Attempts sent again after a failure.', labelNames: ['pool'], registers, collect });
    this.recoveries = new Counter({ name: `${p}recoveries_total`, help: 'Recoveries run by the orchestrator, by strategy and result (ok, error).', labelNames: ['pool', 'strategy', 'result'], registers, collect });
    this.recoveriesActive = new Gauge({ name: `${p}recoveries_active`, help: 'Recoveries running now.', labelNames: ['pool'], registers, collect });
    this.circuitState = new Gauge({ name: `${p}circuit_state`, help: 'Circuit breaker state: 1 for the state the circuit is in, 0 for the others.', labelNames: ['pool', 'circuit', 'state'], registers, collect });
    this.circuitOpened = new Counter({ name: `${p}circuit_opened_total`, help: 'Times each circuit opened.', labelNames: ['pool', 'circuit'], registers, collect });
    this.circuitRejected = new Counter({ name: `${p}circuit_rejected_total`, help: 'Calls refused fast by an open circuit.', labelNames: ['pool', 'circuit'], registers, collect });
    this.restarts = new Counter({ name: `${p}worker_restarts_total`, help: 'Workers restarted, by reason (crash, protocol_error, health_check, recycle).', labelNames: ['pool', 'reason'], registers, collect });
    this.workers = new Gauge({ name: `${p}workers`, help: 'Workers by lifecycle state.', labelNames: ['pool', 'state'], registers, collect });
    this.workersHealthy = new Gauge({ name: `${p}workers_healthy`, help: 'Workers that can serve now (ready or busy, and healthy).', labelNames: ['pool'], registers, collect });
    this.queueLength = new Gauge({ name: `${p}queue_length`, help: 'Calls waiting for a free worker.', labelNames: ['pool'], registers, collect });
    this.queueMax = new Gauge({ name: `${p}queue_max`, help: 'Calls that may wait (maxQueue).', labelNames: ['pool'], registers, collect });
    this.inFlight = new Gauge({ name: `${p}calls_in_flight`, help: 'Calls started and not settled yet.', labelNames: ['pool'], registers, collect });
    this.rss = new Gauge({ name: `${p}worker_rss_bytes`, help: 'Resident memory of each Python worker process (sampled every health check).', labelNames: ['pool', 'worker'], registers, collect });
    this.workerRequests = new Gauge({ name: `${p}worker_requests`, help: 'Requests served by each live worker since it started.', labelNames: ['pool', 'worker'], registers, collect });
    this.workerInflight = new Gauge({ name: `${p}worker_inflight`, help: 'Calls in flight on each live worker now (async and threaded calls share a worker up to concurrency).', labelNames: ['pool', 'worker'], registers, collect });
    this.workerCapacity = new Gauge({ name: `${p}worker_capacity`, help: 'Calls one worker may hold at once: the larger of concurrency and pipelineDepth.', labelNames: ['pool'], registers, collect });
    this.sessions = new Gauge({ name: `${p}sessions`, help: 'Sessions now: total (known), bound (to a worker), durable (latest state stored as a snapshot).', labelNames: ['pool', 'state'], registers, collect });
    this.streamsOpen = new Gauge({ name: `${p}streams_open`, help: 'Streams started and not ended.', labelNames: ['pool'], registers, collect });
    this.binaryBytes = new Counter({ name: `${p}binary_bytes_total`, help: 'Bytes of binary values (Buffers, typed arrays) sent to (to_python) and received from (from_python) the workers, every attempt counted.', labelNames: ['pool', 'direction'], registers, collect });
    const sizes = DEFAULT_SIZE_BUCKETS;
    const seconds = options.buckets ?? DEFAULT_LATENCY_BUCKETS;
    this.snapshots = new FastCounter({ name: `${p}session_snapshots_total`, help: 'Session snapshots given to the store, by outcome (ok, error: the store failed).', labelNames: ['pool', 'outcome'], registers });
    this.snapshotBytes = new FastHistogram({ name: `${p}session_snapshot_bytes`, help: 'Size of each session snapshot (the pickled state).', labelNames: ['pool'], buckets: sizes, registers });
    this.snapshotSeconds = new FastHistogram({ name: `${p}session_snapshot_seconds`, help: 'Time the store took to accept a snapshot (the call waits for it).', labelNames: ['pool'], buckets: seconds, registers });
    this.restores = new FastCounter({ name: `${p}session_restores_total`, help: 'Sessions restored on a new worker from their snapshot, by outcome (ok, error).', labelNames: ['pool', 'outcome'], registers });
    this.restoreSeconds = new FastHistogram({ name: `${p}session_restore_seconds`, help: 'Time a worker took to verify and load a snapshot.', labelNames: ['pool', 'outcome'], buckets: seconds, registers });
    this.notDurable = new FastCounter({ name: `${p}sessions_not_durable_total`, help: 'Sessions found not durable (cannot be pickled, or over maxSessionBytes): lost with their worker.', labelNames: ['pool'], registers });
    this.streams = new FastCounter({ name: `${p}streams_total`, help: 'Streams ended, by command and outcome (ok, broken: worker died after the first item, error).', labelNames: ['pool', 'command', 'outcome'], registers });
    this.streamItems = new FastCounter({ name: `${p}stream_items_total`, help: 'Items delivered by streams, counted when each stream ends.', labelNames: ['pool', 'command'], registers });
  }

  /** Starts recording `pool`; returns the function that stops it and removes the pool's series. */
  attach(pool: ObservedPool, options: AttachMetricsOptions = {}): () => void {
    const existing = this.attachments.get(pool);
    if (existing !== undefined) return () => this.detach(pool);
    const name = options.name ?? String(pool.id);
    const streams = watchStreams(pool, {
      end: (e) => {
        this.streams.inc({ pool: name, command: e.command, outcome: e.outcome });
        if (e.items !== null) this.streamItems.inc({ pool: name, command: e.command }, e.items);
      },
    });
    const a: Attachment = { pool, name, unsubscribe: [() => streams.close()], calls: new Map(), failures: new Map(), errors: new Map(), last: new Map(), rssWorkers: new Set(), circuits: new Set(), streams };
    const labels = { pool: name };
    const snapOk = this.snapshots.child({ pool: name, outcome: 'ok' });
    const snapErr = this.snapshots.child({ pool: name, outcome: 'error' });
    const snapBytes = this.snapshotBytes.child(labels);
    const snapSeconds = this.snapshotSeconds.child(labels);
    a.unsubscribe.push(
      pool.on('session:snapshot', (e) => {
        (e.ok ? snapOk : snapErr).inc();
        snapBytes.observe(e.bytes);
        snapSeconds.observe(e.durationMs / 1000);
      }),
      pool.on('session:restore', (e) => {
        const outcome = e.ok ? 'ok' : 'error';
        this.restores.inc({ pool: name, outcome });
        this.restoreSeconds.child({ pool: name, outcome }).observe(e.durationMs / 1000);
      }),
      pool.on('session:not_durable', () => this.notDurable.inc(labels)),
    );
    a.unsubscribe.push(
      pool.on('call:end', (e) => {
        const outcome = e.ok ? (e.via === 'fallback' ? 'fallback' : 'ok') : 'error';
        const key = `${e.command}\u0000${outcome}`;
        let c = a.calls.get(key);
        if (c === undefined) {
          const labels = { pool: name, command: e.command, outcome };
          c = { count: this.calls.child(labels), latency: this.latency.child(labels) };
          a.calls.set(key, c);
        }
        c.count.inc();
        c.latency.observe(e.durationMs / 1000);
        if (!e.ok) {
          const code = e.code ?? 'unknown';
          const fkey = `${e.command}\u0000${code}`;
          let f = a.failures.get(fkey);
          if (f === undefined) {
            f = this.callFailures.child({ pool: name, command: e.command, code });
            a.failures.set(fkey, f);
          }
          f.inc();
        }
      }),
      // Refused before any attempt: counted, never timed. An unknown name is not a label (a client could make series at will).
      pool.on('call:refused', (e) => {
        const command = e.code === 'PYFLEET_UNKNOWN_COMMAND' ? '(unknown)' : e.command;
        this.calls.inc({ pool: name, command, outcome: 'refused' });
        this.callFailures.inc({ pool: name, command, code: e.code });
      }),
      pool.on('pool:error', (e) => {
        const key = `${e.category}\u0000${e.severity}`;
        let c = a.errors.get(key);
        if (c === undefined) {
          c = this.errors.child({ pool: name, category: e.category, severity: e.severity });
          a.errors.set(key, c);
        }
        c.inc();
      }),
    );
    this.attachments.set(pool, a);
    // Seed the counters' baselines so a pool attached late starts from its current totals.
    this.refreshedAt = -Infinity;
    this.refresh();
    return () => this.detach(pool);
  }

  /** Stops recording `pool` and removes its series (counters included). */
  detach(pool: ObservedPool): void {
    const a = this.attachments.get(pool);
    if (a === undefined) return;
    this.refreshedAt = -Infinity;
    this.refresh();
    for (const u of a.unsubscribe) u();
    this.attachments.delete(pool);
    const pick = { pool: a.name };
    for (const m of [this.calls, this.latency, this.callFailures, this.errors, this.snapshots, this.snapshotBytes, this.snapshotSeconds, this.restores, this.restoreSeconds, this.notDurable, this.streams, this.streamItems]) m.removeMatching(pick);
    for (const m of [
      this.retries,
      this.recoveries,
      this.recoveriesActive,
      this.circuitState,
      this.circuitOpened,
      this.circuitRejected,
      this.restarts,
      this.workers,
      this.workersHealthy,
      this.queueLength,
      this.queueMax,
      this.inFlight,
      this.rss,
      this.workerRequests,
      this.workerInflight,
      this.workerCapacity,
      this.sessions,
      this.streamsOpen,
      this.binaryBytes,
    ] as Array<{ remove(labels: Record<string, string>): void }>) {
      removeMatching(m, pick);
    }
  }

  /** The exposition text for `GET /metrics`. */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** Reads every attached pool's stats() into the scrape-time metrics (once per scrape). */
  refresh(): void {
    const now = performance.now();
    if (now - this.refreshedAt < 5) return;
    this.refreshedAt = now;
    for (const a of this.attachments.values()) {
      let s: ObservedStats;
      try {
        s = a.pool.stats();
      } catch {
        continue;
      }
      this.fromStats(a, s);
    }
  }

  private fromStats(a: Attachment, s: ObservedStats): void {
    const pool = a.name;
    const delta = (key: string, value: number, inc: (d: number) => void): void => {
      const prev = a.last.get(key);
      a.last.set(key, value);
      // The first sight creates the series (at 0 if nothing happened yet), so rate() has a start.
      if (prev === undefined) inc(value);
      else if (value !== prev) inc(value < prev ? value : value - prev);
    };
    delta('retries', s.calls.retries, (d) => this.retries.inc({ pool }, d));
    for (const [strategy, c] of Object.entries(s.recoveries.byStrategy)) {
      delta(`rec:${strategy}:ok`, c.succeeded, (d) => this.recoveries.inc({ pool, strategy, result: 'ok' }, d));
      delta(`rec:${strategy}:error`, c.failed, (d) => this.recoveries.inc({ pool, strategy, result: 'error' }, d));
    }
    this.recoveriesActive.set({ pool }, s.recoveries.active);
    for (const [circuit, c] of Object.entries(s.circuits)) {
      a.circuits.add(circuit);
      for (const st of CIRCUIT_STATES) this.circuitState.set({ pool, circuit, state: st }, c.state === st ? 1 : 0);
      delta(`circ:${circuit}:opened`, c.opened, (d) => this.circuitOpened.inc({ pool, circuit }, d));
      delta(`circ:${circuit}:rejected`, c.rejected, (d) => this.circuitRejected.inc({ pool, circuit }, d));
    }
    for (const [reason, n] of Object.entries(s.restarts.byReason)) delta(`restart:${reason}`, n, (d) => this.restarts.inc({ pool, reason }, d));
    const byState: Record<string, number> = {};
    for (const st of OBSERVED_WORKER_STATES) byState[st] = 0;
    let healthy = 0;
    const seen = new Set<string>();
    for (const w of s.workers) {
      byState[w.state] = (byState[w.state] ?? 0) + 1;
      if (isServing(w)) healthy++;
      const worker = String(w.id);
      seen.add(worker);
      if (w.rssMb !== null) this.rss.set({ pool, worker }, Math.round(w.rssMb * 1048576));
      this.workerRequests.set({ pool, worker }, w.requests);
      this.workerInflight.set({ pool, worker }, w.inflight);
    }
    for (const old of a.rssWorkers) {
      if (!seen.has(old)) {
        this.rss.remove({ pool, worker: old });
        this.workerRequests.remove({ pool, worker: old });
        this.workerInflight.remove({ pool, worker: old });
      }
    }
    this.workerCapacity.set({ pool }, workerCapacity(a.pool));
    for (const st of SESSION_STATES) this.sessions.set({ pool, state: st }, s.sessions[st]);
    this.streamsOpen.set({ pool }, a.streams.open);
    delta('binary:to', s.binary.toPython, (d) => this.binaryBytes.inc({ pool, direction: 'to_python' }, d));
    delta('binary:from', s.binary.fromPython, (d) => this.binaryBytes.inc({ pool, direction: 'from_python' }, d));
    a.rssWorkers = seen;
    for (const [state, n] of Object.entries(byState)) this.workers.set({ pool, state }, n);
    this.workersHealthy.set({ pool }, healthy);
    this.queueLength.set({ pool }, s.queue.length);
    this.queueMax.set({ pool }, s.queue.max);
    this.inFlight.set({ pool }, s.calls.inFlight);
  }
}

/** Removes every series of `metric` whose labels include `pick` (prom-client's remove needs all labels). */
function removeMatching(metric: { remove(labels: Record<string, string>): void }, pick: Record<string, string>): void {
  const hashMap = (metric as unknown as { hashMap?: Record<string, { labels: Record<string, string> }> }).hashMap;
  if (hashMap === undefined) return;
  for (const entry of Object.values(hashMap)) {
    if (Object.entries(pick).every(([k, v]) => entry.labels[k] === v)) metric.remove(entry.labels);
  }
}

/**
 * prom-client's default Node metrics on `registry`, less its three gauges named `_total`
 * (`nodejs_active_{handles,requests,resources}_total`: promtool refuses a gauge with that
 * suffix); `sum(nodejs_active_handles)` and the like give their values.
 */
export function collectNodeMetrics(registry: Registry): void {
  requireOptional<typeof import('prom-client')>('prom-client', 'metrics').collectDefaultMetrics({ register: registry });
  for (const n of ['handles', 'requests', 'resources']) registry.removeSingleMetric(`nodejs_active_${n}_total`);
}

/** `new PyfleetMetrics(options)` with `pool` attached: the one-liner for a single pool. */
export function poolMetrics(pool: ObservedPool, options: MetricsOptions & AttachMetricsOptions = {}): PyfleetMetrics {
  const m = new PyfleetMetrics(options);
  m.attach(pool, options.name === undefined ? {} : { name: options.name });
  return m;
}
