import { isServing, workerCapacity, type ObservedPool, type ObservedSessions, type ObservedStats, type ObservedWorker } from '../telemetry/source.js';
import { watchStreams, type StreamWatch } from '../telemetry/streams.js';
import { CommandStats, type CommandRow } from './command-stats.js';

export interface LiveOptions {
  /** Width of one bar of the error chart (default 10 000 ms). */
  bucketMs?: number;
  /** Bars kept (default 30: five minutes of 10 s). */
  buckets?: number;
  /** How often stats are sampled and pushed (default 1 000 ms). */
  sampleMs?: number;
  /** Shortest gap between two pushes when events arrive (default 150 ms). */
  throttleMs?: number;
  /** How long a worker that exited stays on the dashboard as a red tile (default 20 000 ms). */
  keepExitedMs?: number;
}

export interface LiveWorker extends ObservedWorker {
  /** For a worker that exited: how (e.g. `killed by SIGKILL`). */
  exit?: { code: number | null; signal: string | null; reason: string; at: number };
}

export interface FeedItem {
  at: number;
  kind: 'error' | 'recovery' | 'circuit' | 'exit' | 'session' | 'stream';
  text: string;
  level: 'info' | 'warn' | 'error';
}

/** What the dashboard draws; sent over SSE as JSON. */
export interface LiveSnapshot {
  at: number;
  pool: { id: number; module: string; closed: boolean; draining: boolean; uptimeMs: number };
  workers: LiveWorker[];
  /** Calls one worker may hold at once (the larger of concurrency and pipelineDepth): the tiles show in-flight against it. */
  capacity: number;
  serving: number;
  queue: { length: number; max: number; series: number[] };
  calls: ObservedStats['calls'] & { perSecond: number };
  /** Per command: calls/s over the last sample, p50 and p99 latency of the last 1000 calls within a minute. */
  commands: CommandRow[];
  circuits: Record<string, { state: string; failures: number; retryAfterMs: number; opened: number; rejected: number }>;
  recoveries: ObservedStats['recoveries'];
  restarts: ObservedStats['restarts'];
  errors: { bucketMs: number; totals: Record<string, number>; buckets: Array<{ t: number; counts: Record<string, number> }> };
  /** `stats().sessions` and what the session events said since the dashboard started; null when the pool has no session stats. */
  sessions: LiveSessions;
  streams: LiveStreams;
  /** Bytes of binary values to and from the workers. */
  binary: { toPython: number; fromPython: number };
  feed: FeedItem[];
}

export interface LiveSessions extends ObservedSessions {
  snapshots: { ok: number; failed: number; bytes: number; maxBytes: number; ms: number };
  restores: { ok: number; failed: number; ms: number };
  notDurable: number;
}

export interface LiveStreams {
  open: number;
  ok: number;
  broken: number;
  error: number;
  /** Items of the streams that ended. */
  items: number;
}

type Listener = (s: LiveSnapshot) => void;

/**
 * The dashboard's model: samples `pool.stats()` every `sampleMs`, keeps the error counts per
 * category in time buckets, the queue length over the last minutes, the workers that just
 * exited and a short feed of events, and pushes a snapshot to its listeners on every sample
 * and (throttled) whenever a worker, circuit or recovery changes.
 */
export class LiveState {
  readonly bucketMs: number;
  readonly bucketCount: number;
  private readonly pool: ObservedPool;
  private readonly opts: Required<LiveOptions>;
  private readonly startedAt = Date.now();
  private readonly buckets: Array<{ t: number; counts: Record<string, number> }> = [];
  private readonly queueSeries: number[] = [];
  private readonly exited = new Map<number, LiveWorker>();
  private readonly feed: FeedItem[] = [];
  private readonly listeners = new Set<Listener>();
  private readonly unsubscribe: Array<() => void> = [];
  private lastErrors: Record<string, number> | null = null;
  private lastCalls: { total: number; at: number } | null = null;
  private perSecond = 0;
  private timer: NodeJS.Timeout | null = null;
  private pushTimer: NodeJS.Timeout | null = null;
  private lastPush = 0;
  private lastStats: ObservedStats | null = null;
  private readonly streamWatch: StreamWatch;
  private readonly commandStats = new CommandStats();
  private readonly streamTotals: LiveStreams = { open: 0, ok: 0, broken: 0, error: 0, items: 0 };
  private readonly sessionTotals = { snapshots: { ok: 0, failed: 0, bytes: 0, maxBytes: 0, ms: 0 }, restores: { ok: 0, failed: 0, ms: 0 }, notDurable: 0 };
  draining = false;

  constructor(pool: ObservedPool, options: LiveOptions = {}) {
    this.pool = pool;
    this.opts = {
      bucketMs: options.bucketMs ?? 10_000,
      buckets: options.buckets ?? 30,
      sampleMs: options.sampleMs ?? 1_000,
      throttleMs: options.throttleMs ?? 150,
      keepExitedMs: options.keepExitedMs ?? 20_000,
    };
    this.bucketMs = this.opts.bucketMs;
    this.bucketCount = this.opts.buckets;
    this.unsubscribe.push(
      pool.on('worker:exit', (e) => {
        const last = this.lastStats?.workers.find((w) => w.id === e.workerId);
        this.exited.set(e.workerId, {
          id: e.workerId,
          pid: e.pid,
          state: 'terminated',
          health: 'unknown',
          requests: last?.requests ?? 0,
          restarts: last?.restarts ?? 0,
          inflight: 0,
          rssMb: last?.rssMb ?? null,
          exit: { code: e.exitCode, signal: e.signal, reason: e.reason, at: Date.now() },
        });
        this.note('exit', `worker ${e.workerId} (pid ${e.pid ?? '?'}) exited: ${e.reason}`, e.signal === null && e.exitCode === 0 ? 'info' : 'warn');
        this.changed();
      }),
      pool.on('worker:transition', (e) => {
        // ready <-> busy happens on every call; the sampled snapshot shows it.
        if (e.to !== 'busy' && e.from !== 'busy') this.changed();
      }),
      pool.on('call:end', (e) => this.commandStats.ended(e.command, e.ok, e.durationMs)),
      pool.on('pool:error', (e) => {
        this.note('error', `${e.category} (${e.severity}) ${e.command ?? ''} attempt ${e.attempt}: ${firstLine(e.message)}`, e.severity === 'critical' ? 'error' : 'warn');
      }),
      pool.on('circuit:opened', (e) => {
        this.note('circuit', `circuit ${e.circuit} opened after ${e.failures} failures`, 'error');
        this.changed();
      }),
      pool.on('circuit:half_open', (e) => {
        this.note('circuit', `circuit ${e.circuit} half-open: trial calls`, 'warn');
        this.changed();
      }),
      pool.on('circuit:closed', (e) => {
        this.note('circuit', `circuit ${e.circuit} closed`, 'info');
        this.changed();
      }),
      pool.on('recovery:complete', (e) => {
        this.note('recovery', `recovery ${e.strategy} for ${e.category}: ${e.result} in ${Math.round(e.durationMs)} ms`, e.result === 'ok' ? 'info' : 'warn');
        this.changed();
      }),
      pool.on('session:snapshot', (e) => {
        const t = this.sessionTotals.snapshots;
        if (e.ok) t.ok++;
        else {
          t.failed++;
          this.note('session', `session ${e.sessionId}: snapshot (version ${e.version}) not stored: ${e.error ?? 'store failed'}`, 'warn');
        }
        t.bytes += e.bytes;
        t.ms += e.durationMs;
        if (e.bytes > t.maxBytes) t.maxBytes = e.bytes;
      }),
      pool.on('session:restore', (e) => {
        const t = this.sessionTotals.restores;
        if (e.ok) t.ok++;
        else t.failed++;
        t.ms += e.durationMs;
        this.note('session', e.ok ? `session ${e.sessionId} restored (${e.bytes} bytes, version ${e.version}) in ${Math.round(e.durationMs)} ms` : `session ${e.sessionId}: restore failed: ${firstLine(e.error ?? '')}`, e.ok ? 'info' : 'warn');
        this.changed();
      }),
      pool.on('session:not_durable', (e) => {
        this.sessionTotals.notDurable++;
        this.note('session', `session ${e.sessionId} is not durable: ${firstLine(e.reason)}`, 'warn');
        this.changed();
      }),
    );
    this.streamWatch = watchStreams(pool, {
      end: (e) => {
        const t = this.streamTotals;
        t[e.outcome]++;
        t.items += e.items;
        if (e.outcome === 'broken') {
          this.note('stream', `stream ${e.command} broken after ${e.items} items (its worker died)`, 'warn');
          this.changed();
        }
      },
    });
    this.unsubscribe.push(() => this.streamWatch.close());
    this.sample();
    this.timer = setInterval(() => {
      this.sample();
      this.push();
    }, this.opts.sampleMs);
    this.timer.unref();
  }

  /** Calls `fn` with every new snapshot; returns the unsubscribe. */
  onSnapshot(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => {
      this.listeners.delete(fn);
    };
  }

  close(): void {
    for (const u of this.unsubscribe.splice(0)) u();
    if (this.timer) clearInterval(this.timer);
    if (this.pushTimer) clearTimeout(this.pushTimer);
    this.timer = null;
    this.pushTimer = null;
    this.listeners.clear();
  }

  /** Reads the stats into the series (the error buckets grow by the counts' deltas). */
  sample(): void {
    let s: ObservedStats;
    try {
      s = this.pool.stats();
    } catch {
      return;
    }
    this.lastStats = s;
    const now = Date.now();
    const t = Math.floor(now / this.bucketMs) * this.bucketMs;
    let cur = this.buckets.at(-1);
    if (cur === undefined || cur.t !== t) {
      cur = { t, counts: {} };
      this.buckets.push(cur);
      while (this.buckets.length > this.bucketCount) this.buckets.shift();
    }
    if (this.lastErrors !== null) {
      for (const [cat, n] of Object.entries(s.errorsByCategory)) {
        const d = n - (this.lastErrors[cat] ?? 0);
        if (d > 0) cur.counts[cat] = (cur.counts[cat] ?? 0) + d;
      }
    }
    this.lastErrors = { ...s.errorsByCategory };
    this.queueSeries.push(s.queue.length);
    while (this.queueSeries.length > 120) this.queueSeries.shift();
    if (this.lastCalls !== null && now > this.lastCalls.at) this.perSecond = ((s.calls.total - this.lastCalls.total) * 1000) / (now - this.lastCalls.at);
    this.lastCalls = { total: s.calls.total, at: now };
    this.commandStats.sample();
    for (const [id, w] of this.exited) if (now - (w.exit?.at ?? 0) > this.opts.keepExitedMs) this.exited.delete(id);
  }

  snapshot(): LiveSnapshot {
    const s = this.pool.stats();
    this.lastStats = s;
    const now = Date.now();
    const live = new Set(s.workers.map((w) => w.id));
    const workers: LiveWorker[] = s.workers.map((w) => ({ id: w.id, pid: w.pid, state: w.state, health: w.health, requests: w.requests, restarts: w.restarts, inflight: w.inflight, rssMb: w.rssMb }));
    for (const w of this.exited.values()) if (!live.has(w.id)) workers.push(w);
    workers.sort((a, b) => a.id - b.id);
    // Fill empty buckets up to now so the chart's time axis is continuous.
    const t0 = Math.floor(now / this.bucketMs) * this.bucketMs;
    const byT = new Map(this.buckets.map((b) => [b.t, b.counts]));
    const buckets: LiveSnapshot['errors']['buckets'] = [];
    for (let i = this.bucketCount - 1; i >= 0; i--) {
      const t = t0 - i * this.bucketMs;
      buckets.push({ t, counts: byT.get(t) ?? {} });
    }
    const circuits: LiveSnapshot['circuits'] = {};
    for (const [name, c] of Object.entries(s.circuits)) circuits[name] = { state: c.state, failures: c.failures, retryAfterMs: c.retryAfterMs, opened: c.opened, rejected: c.rejected };
    return {
      at: now,
      pool: { id: s.poolId, module: s.module, closed: s.closed, draining: this.draining, uptimeMs: now - this.startedAt },
      workers,
      capacity: workerCapacity(this.pool),
      serving: s.workers.filter(isServing).length,
      queue: { length: s.queue.length, max: s.queue.max, series: this.queueSeries.slice() },
      calls: { ...s.calls, perSecond: Math.round(this.perSecond * 10) / 10 },
      commands: this.commandStats.rows(),
      circuits,
      recoveries: s.recoveries,
      restarts: s.restarts,
      errors: { bucketMs: this.bucketMs, totals: { ...s.errorsByCategory }, buckets },
      sessions: sessionsOf(s.sessions, this.sessionTotals),
      streams: { ...this.streamTotals, open: this.streamWatch.open },
      binary: { toPython: s.binary.toPython, fromPython: s.binary.fromPython },
      feed: this.feed.slice(-15).reverse(),
    };
  }

  private note(kind: FeedItem['kind'], text: string, level: FeedItem['level']): void {
    this.feed.push({ at: Date.now(), kind, text: text.length > 200 ? `${text.slice(0, 197)}...` : text, level });
    if (this.feed.length > 50) this.feed.splice(0, this.feed.length - 50);
  }

  /** Something a viewer should see now: push soon, at most every `throttleMs`. */
  private changed(): void {
    if (this.pushTimer !== null || this.listeners.size === 0) return;
    const wait = Math.max(0, this.lastPush + this.opts.throttleMs - Date.now());
    this.pushTimer = setTimeout(() => {
      this.pushTimer = null;
      this.push();
    }, wait);
    this.pushTimer.unref();
  }

  private push(): void {
    if (this.listeners.size === 0) return;
    this.lastPush = Date.now();
    let snap: LiveSnapshot;
    try {
      snap = this.snapshot();
    } catch {
      return;
    }
    for (const l of this.listeners) {
      try {
        l(snap);
      } catch {
        // a broken stream is dropped by its own close handler
      }
    }
  }
}

function sessionsOf(s: ObservedSessions, t: Pick<LiveSessions, 'snapshots' | 'restores' | 'notDurable'>): LiveSessions {
  return {
    total: s.total,
    bound: s.bound,
    durable: s.durable,
    restored: s.restored,
    snapshots: { ...t.snapshots },
    restores: { ...t.restores },
    notDurable: t.notDurable,
  };
}

function firstLine(s: string): string {
  const i = s.indexOf('\n');
  return i < 0 ? s : s.slice(0, i);
}
