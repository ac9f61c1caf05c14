import type { Logger } from '../util/logger.js';
import { isServing, onPoolClosing, type ObservedPool, type ObservedStats } from './source.js';

export type AlertType = 'circuit_open' | 'no_healthy_workers' | 'recovery_failing';

/** The JSON body posted to the webhook. `text` makes it readable as-is by Slack-style incoming webhooks. */
export interface Alert {
  type: AlertType;
  severity: 'critical' | 'major';
  /** One sentence saying what happened and what the pool did. */
  text: string;
  /** `pool:<module>#<id>` */
  pool: string;
  poolId: number;
  module: string;
  /** ISO time the condition was seen. */
  at: string;
  /** Alerts of the same key (type, and circuit for circuit_open) held back by `minIntervalMs` since the last one sent. */
  suppressed: number;
  details: Record<string, unknown>;
}

export interface AlertOptions {
  /** Where alerts are POSTed as JSON. */
  webhookUrl: string;
  /** At most one alert per type (per circuit for circuit_open) in this window; later ones are counted in `suppressed` (default 60 000). */
  minIntervalMs?: number;
  /** How long no worker may be serving before `no_healthy_workers` is sent; a restart is not an outage (default 3 000). */
  noHealthyWorkersMs?: number;
  /** Failed recoveries in a row that send `recovery_failing` (default 3). */
  recoveryFailures?: number;
  /** Time limit of one webhook request (default 5 000). */
  timeoutMs?: number;
  /** Webhook requests in flight at once; alerts beyond it are dropped and logged (default 4). */
  maxInFlight?: number;
  /** Extra request headers (e.g. an Authorization header). */
  headers?: Record<string, string>;
  /** Where delivery failures are logged (default: nowhere; pass the pool's logger). */
  logger?: Logger;
}

export interface AlerterStats {
  sent: number;
  delivered: number;
  failed: number;
  suppressed: number;
  dropped: number;
}

/**
 * Posts alerts to a webhook when a circuit of the pool opens, when no worker has been able to
 * serve for `noHealthyWorkersMs`, and when recoveries keep failing. Rate-limited per alert key.
 * Delivery is fire-and-forget: the event handlers only queue a `fetch`, so a slow, failing or
 * unreachable webhook never delays or breaks a call; failures are logged.
 */
export class Alerter {
  readonly options: Required<Omit<AlertOptions, 'logger' | 'headers'>> & Pick<AlertOptions, 'logger' | 'headers'>;
  private readonly pool: ObservedPool;
  private readonly lastSent = new Map<string, number>();
  private readonly held = new Map<string, number>();
  private readonly unsubscribe: Array<() => void> = [];
  private readonly inflight = new Set<Promise<void>>();
  private noHealthyTimer: NodeJS.Timeout | null = null;
  private poll: NodeJS.Timeout | null = null;
  private closing = false;
  private failedInARow = 0;
  private lastFailures: Array<{ strategy: string; category: string; action: string }> = [];
  private module: string;
  readonly counts: AlerterStats = { sent: 0, delivered: 0, failed: 0, suppressed: 0, dropped: 0 };

  constructor(pool: ObservedPool, options: AlertOptions) {
    if (typeof options?.webhookUrl !== 'string') throw new TypeError('alerts.webhookUrl must be a URL string');
    const url = new URL(options.webhookUrl);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TypeError(`alerts.webhookUrl must be http(s), got ${url.protocol}`);
    for (const k of ['minIntervalMs', 'noHealthyWorkersMs', 'recoveryFailures', 'timeoutMs', 'maxInFlight'] as const) {
      const v = options[k];
      if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v >= 0)) throw new TypeError(`alerts.${k} must be a number >= 0, got ${String(v)}`);
    }
    this.options = {
      webhookUrl: url.toString(),
      minIntervalMs: options.minIntervalMs ?? 60_000,
      noHealthyWorkersMs: options.noHealthyWorkersMs ?? 3_000,
      recoveryFailures: Math.max(1, options.recoveryFailures ?? 3),
      timeoutMs: options.timeoutMs ?? 5_000,
      maxInFlight: Math.max(1, options.maxInFlight ?? 4),
      headers: options.headers,
      logger: options.logger,
    };
    this.pool = pool;
    this.module = pool.stats().module;
    const check = (): void => this.checkWorkers();
    this.unsubscribe.push(
      pool.on('circuit:opened', (e) => this.onCircuitOpened(e.circuit, e.failures, e.retryAfterMs)),
      pool.on('recovery:complete', (e) => this.onRecovery(e.strategy, e.category, e.action, e.result)),
      pool.on('worker:transition', (e) => {
        if (e.to !== 'busy' && e.from !== 'busy') check();
      }),
      pool.on('worker:exit', check),
      onPoolClosing(pool, () => {
        this.closing = true;
        this.clearNoHealthy();
      }),
    );
    // Health can change without a transition (missed heartbeats): look again now and then.
    this.poll = setInterval(check, Math.max(250, Math.min(1_000, this.options.noHealthyWorkersMs)));
    this.poll.unref();
  }

  /** Stops watching; alerts already queued are still delivered (see `flush`). */
  close(): void {
    for (const u of this.unsubscribe.splice(0)) u();
    this.clearNoHealthy();
    if (this.poll) clearInterval(this.poll);
    this.poll = null;
  }

  /** Resolves when every webhook request in flight has finished (delivered or failed). */
  async flush(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
  }

  private onCircuitOpened(circuit: string, failures: number, retryAfterMs: number): void {
    if (this.closing) return;
    this.raise(`circuit_open:${circuit}`, {
      type: 'circuit_open',
      severity: 'critical',
      text: `pyfleet ${this.label()}: circuit ${circuit} opened after ${failures} failures; calls fail fast for ${Math.round(retryAfterMs / 1000)} s, then trial calls test the workers again.`,
      details: { circuit, failures, retryAfterMs },
    });
  }

  private onRecovery(strategy: string, category: string, action: string, result: 'ok' | 'error'): void {
    if (result === 'ok') {
      this.failedInARow = 0;
      this.lastFailures = [];
      return;
    }
    this.failedInARow++;
    this.lastFailures.push({ strategy, category, action });
    if (this.lastFailures.length > 10) this.lastFailures.shift();
    if (this.failedInARow < this.options.recoveryFailures || this.closing) return;
    const failures = this.failedInARow;
    const recent = this.lastFailures.slice();
    this.failedInARow = 0;
    this.lastFailures = [];
    this.raise('recovery_failing', {
      type: 'recovery_failing',
      severity: 'major',
      text: `pyfleet ${this.label()}: ${failures} recoveries in a row failed (last: ${strategy} for ${category}); the pool cannot heal itself, look at the log.`,
      details: { failedInARow: failures, recent },
    });
  }

  private checkWorkers(): void {
    if (this.closing) return;
    let serving: boolean;
    let total = 0;
    let states: Record<string, number> = {};
    try {
      const s = this.pool.stats();
      if (s.closed) return;
      serving = s.workers.some(isServing) || this.idle(s);
      total = s.workers.length;
      states = {};
      for (const w of s.workers) states[w.state] = (states[w.state] ?? 0) + 1;
    } catch {
      return;
    }
    if (serving) {
      this.clearNoHealthy();
      return;
    }
    if (this.noHealthyTimer !== null) return;
    const since = Date.now();
    this.noHealthyTimer = setTimeout(() => {
      this.noHealthyTimer = null;
      let still = false;
      try {
        const s = this.pool.stats();
        still = !s.closed && !s.workers.some(isServing) && !this.idle(s);
        total = s.workers.length;
        states = {};
        for (const w of s.workers) states[w.state] = (states[w.state] ?? 0) + 1;
      } catch {
        still = false;
      }
      if (!still || this.closing) return;
      this.raise('no_healthy_workers', {
        type: 'no_healthy_workers',
        severity: 'critical',
        text: `pyfleet ${this.label()}: no worker has been able to serve for ${Math.round((Date.now() - since) / 100) / 10} s (${total} workers: ${Object.entries(states).map(([k, v]) => `${v} ${k}`).join(', ') || 'none'}); calls queue and then fail.`,
        details: { workers: total, states, sinceMs: Date.now() - since },
      });
    }, this.options.noHealthyWorkersMs);
    this.noHealthyTimer.unref();
  }

  /** No worker because none is wanted (workers.min 0, nothing to do) is idle, not down. */
  private idle(s: ObservedStats): boolean {
    return (this.pool.options?.min ?? 1) === 0 && s.workers.length === 0 && s.queue.length === 0 && s.calls.inFlight === 0;
  }

  private clearNoHealthy(): void {
    if (this.noHealthyTimer !== null) clearTimeout(this.noHealthyTimer);
    this.noHealthyTimer = null;
  }

  private label(): string {
    return `pool ${this.pool.id} (${this.module})`;
  }

  /** Rate limit per key, then deliver without waiting. */
  private raise(key: string, a: Pick<Alert, 'type' | 'severity' | 'text' | 'details'>): void {
    const now = Date.now();
    const last = this.lastSent.get(key);
    if (last !== undefined && now - last < this.options.minIntervalMs) {
      this.held.set(key, (this.held.get(key) ?? 0) + 1);
      this.counts.suppressed++;
      return;
    }
    this.lastSent.set(key, now);
    const suppressed = this.held.get(key) ?? 0;
    this.held.delete(key);
    const alert: Alert = { ...a, pool: `pool:${this.module}#${this.pool.id}`, poolId: this.pool.id, module: this.module, at: new Date(now).toISOString(), suppressed };
    this.deliver(alert);
  }

  private deliver(alert: Alert): void {
    if (this.inflight.size >= this.options.maxInFlight) {
      this.counts.dropped++;
      this.options.logger?.warn({ alert: alert.type, webhookInFlight: this.inflight.size }, `alert ${alert.type} dropped: ${this.inflight.size} webhook requests still in flight`);
      return;
    }
    this.counts.sent++;
    const p = this.post(alert).finally(() => {
      this.inflight.delete(p);
    });
    this.inflight.add(p);
  }

  private async post(alert: Alert): Promise<void> {
    const started = Date.now();
    try {
      const res = await fetch(this.options.webhookUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'pyfleet-alerts', ...this.options.headers },
        body: JSON.stringify(alert),
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
      // Drain the body so the connection can be reused.
      await res.arrayBuffer().catch(() => undefined);
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      this.counts.delivered++;
      this.options.logger?.info({ alert: alert.type, ms: Date.now() - started }, `alert ${alert.type} delivered`);
    } catch (e) {
      this.counts.failed++;
      const why = e instanceof Error ? (e.cause instanceof Error ? `${e.message}: ${e.cause.message}` : e.message) : String(e);
      this.options.logger?.warn({ alert: alert.type, webhook: redact(this.options.webhookUrl), err: why, ms: Date.now() - started }, `alert ${alert.type} could not be delivered to the webhook: ${why}`);
    }
  }
}

/** The webhook URL without its query or credentials (Slack-style URLs carry a secret in the path: keep only the host). */
function redact(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}/…`;
  } catch {
    return '(invalid url)';
  }
}

/** `new Alerter(pool, options)`: alerts for one pool. Call `.close()` to stop. */
export function attachAlerts(pool: ObservedPool, options: AlertOptions): Alerter {
  return new Alerter(pool, options);
}
