import type { Msg, NatsConnection } from '@nats-io/transport-node';
import { ERROR_CATEGORIES, type ErrorCategory } from '../errors/categories.js';
import type { Adapter } from '../adapters/adapter.js';
import type { Caller, DetailedResult, ExecuteOptions } from '../call/types.js';
import { PoolSession } from '../call/session.js';
import { DEFAULTS } from '../defaults.js';
import { RetryBudget } from '../resilience/budget.js';
import { subscribe, type EventName, type EventPayloads } from '../telemetry/channels.js';
import { Attempts } from './attempts.js';
import { fleetStreamLimits, resolveFleetOptions, type CallCounts, type FleetOptions, type FleetSettings, type FleetStats, type FleetStreamOptions } from './client-options.js';
import { abortedError, argsTooLargeError, asPoolError, badCall, closedError, isHostFailure, notReadyError, unsendableArgsError } from './client-errors.js';
import { ClientState } from './client-state.js';
import { connectNats } from './connection.js';
import type { FleetCall } from './fleet-call.js';
import { parseAnnouncement } from './heartbeat.js';
import { HostTable } from './host-table.js';
import { RequestTable } from './requests.js';
import { Router } from './routing.js';
import type { SessionPlace } from './session-map.js';
import { fleetSubjects, type FleetSubjects } from './subjects.js';
import { encodeArgsPayload } from './values.js';
import { encodeText } from './wire.js';

const TICK_MS = 100;

let fleetSeq = 0;

/**
 * Connects to NATS and returns a `Fleet` once connected (hosts are discovered from their
 * heartbeats; a call made before any host answered waits for one within queueTimeoutMs).
 * Rejects within `startupTimeoutMs` with PYFLEET_NATS_UNAVAILABLE (naming the address) or at once
 * with PYFLEET_NATS_AUTH_FAILED.
 */
export async function connectFleet(options: FleetOptions): Promise<Fleet> {
  const s = resolveFleetOptions(options);
  const nc = await connectNats({ servers: s.servers, ...s.auth, name: s.name, timeoutMs: s.startupTimeoutMs });
  const f = new Fleet(s, nc);
  try {
    await f.start();
  } catch (e) {
    await nc.close().catch(() => {});
    throw e;
  }
  return f;
}

/**
 * Python calls spread over the hosts of a fleet, with a pool's API: `execute`, `stream`,
 * `session`, `stats`, `close`, `on`, and the same PoolErrors. It is an `Adapter`, so it can be a
 * pool's `fallback`.
 *
 * The work is done by its parts: the host table (who is alive), the router (which host takes an
 * attempt), the request table (what is in flight, and its replies), the attempts (re-sends to
 * another host). This class checks calls, counts them, and follows the connection.
 */
export class Fleet implements Adapter, Caller {
  readonly id = ++fleetSeq;
  readonly name: string;
  readonly fleet: string;
  private readonly subjects: FleetSubjects;
  private readonly requestTimeoutMs: number;
  private readonly queueTimeoutMs: number;
  private readonly budget: RetryBudget | undefined;
  private readonly state = new ClientState();
  private readonly table: HostTable;
  private readonly requests: RequestTable;
  private readonly router: Router;
  private readonly attempts: Attempts;
  private tick: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly counts: CallCounts = { total: 0, succeeded: 0, failed: 0, inFlight: 0, retries: 0, resent: 0, settledTwice: 0 };
  private readonly errorsByCategory = Object.fromEntries(ERROR_CATEGORIES.map((c) => [c, 0])) as Record<ErrorCategory, number>;

  constructor(
    s: FleetSettings,
    readonly nc: NatsConnection,
  ) {
    this.fleet = s.fleet;
    this.name = `fleet:${s.fleet}`;
    this.subjects = fleetSubjects(s.fleet);
    this.requestTimeoutMs = s.requestTimeoutMs;
    this.queueTimeoutMs = s.queueTimeoutMs;
    this.budget = s.budget === false ? undefined : new RetryBudget(s.budget);
    this.table = new HostTable({
      fleetId: this.id,
      fleet: this.fleet,
      suspectAfter: s.suspectAfter,
      deadAfter: s.deadAfter,
      circuitBreaker: s.circuitBreaker,
      isFailure: isHostFailure,
      probe: (h, t) => this.probe(h, t),
      onChange: () => this.state.wake(),
    });
    this.requests = new RequestTable(nc, this.subjects, this.table, this.state, this.counts, s.queueTimeoutMs);
    this.router = new Router(nc, this.subjects, this.table, this.state, { fleet: this.fleet, servers: () => s.servers, queueTimeoutMs: s.queueTimeoutMs, maxAttempts: s.maxAttempts, sessionMapTtlMs: s.sessionMapTtlMs });
    this.attempts = new Attempts(this.router, this.requests, this.subjects, this.state, this.counts, this.budget, s.maxAttempts);
  }

  async start(): Promise<void> {
    const cb = (fn: (m: Msg) => void) => (err: Error | null, m: Msg): void => {
      if (err === null) fn(m);
    };
    this.nc.subscribe(this.subjects.hosts, { callback: cb((m) => this.onAnnouncement(m)) });
    this.nc.subscribe(`${this.requests.inbox}.*`, { callback: cb((m) => this.requests.onReply(m)) });
    await this.nc.flush();
    this.nc.publish(this.subjects.discover, encodeText(''));
    this.tick = setInterval(() => this.onTick(), TICK_MS);
    this.tick.unref();
    void (async () => {
      for await (const s of this.nc.status()) {
        if (s.type === 'disconnect') this.onDisconnect();
        else if (s.type === 'reconnect') this.onReconnect();
      }
    })().catch(() => {});
  }

  /** Resolves once `hosts` hosts are alive (serving `command`, if given); rejects with PYFLEET_NO_HOSTS after `timeoutMs`. */
  async ready(o: { hosts?: number; command?: string; timeoutMs?: number } = {}): Promise<void> {
    const want = o.hosts ?? 1;
    const deadline = performance.now() + (o.timeoutMs ?? this.queueTimeoutMs);
    for (;;) {
      const n = this.table.alive().filter((h) => o.command === undefined || h.hb.commands[o.command] !== undefined).length;
      if (n >= want) return;
      const left = deadline - performance.now();
      if (left <= 0) throw notReadyError(this.fleet, n, want, o.timeoutMs ?? this.queueTimeoutMs, this.table.describe(o.command ?? ''));
      await this.state.changed(left);
    }
  }

  // ---- calls ---------------------------------------------------------------

  execute<T = unknown>(command: string, args?: unknown, options?: ExecuteOptions & { detailed?: false }): Promise<T>;
  execute<T = unknown>(command: string, args: unknown, options: ExecuteOptions & { detailed: true }): Promise<DetailedResult<T> & { hostId: string }>;
  execute<T = unknown>(command: string, args?: unknown, options: ExecuteOptions = {}): Promise<T | (DetailedResult<T> & { hostId: string })> {
    let call: FleetCall;
    try {
      call = this.admit(command, args, options);
    } catch (e) {
      return Promise.reject(e);
    }
    this.started();
    return this.attempts.run(call).then(
      (r) => {
        this.counts.inFlight--;
        this.counts.succeeded++;
        if (options.detailed === true) return { value: r.value as T, via: 'pool', attempts: r.attempts, workerId: null, durationMs: performance.now() - call.startedAt, hostId: r.hostId };
        return r.value as T;
      },
      (e: unknown) => {
        this.counts.inFlight--;
        this.counts.failed++;
        const err = asPoolError(e, command);
        this.errorsByCategory[err.category]++;
        throw err;
      },
    );
  }

  /**
   * Streams the items of `command` from a host (see src/fleet/stream.ts for the protocol). Bad
   * options throw here; the call is sent when iteration starts. Before the first item a failure
   * follows the retry rules (another host); after it, PYFLEET_STREAM_BROKEN.
   */
  stream<T = unknown>(command: string, args?: unknown, options: FleetStreamOptions = {}): AsyncIterableIterator<T> {
    const call = this.admit(command, args, options);
    const { hwm, chunkTimeoutMs } = fleetStreamLimits(command, options);
    return this.counted(call, this.attempts.stream(call, hwm, chunkTimeoutMs)) as AsyncIterableIterator<T>;
  }

  private started(): void {
    this.counts.total++;
    this.counts.inFlight++;
    this.budget?.recordCall();
  }

  /** A stream in `stats().calls` as a call: from its first `next()`; a consumer's `break` ends it well. */
  private async *counted(call: FleetCall, items: AsyncGenerator<unknown, void, undefined>): AsyncGenerator<unknown, void, undefined> {
    this.started();
    let failed = false;
    try {
      yield* items;
    } catch (e) {
      failed = true;
      const err = asPoolError(e, call.command);
      this.errorsByCategory[err.category]++;
      throw err;
    } finally {
      this.counts.inFlight--;
      if (failed) this.counts.failed++;
      else this.counts.succeeded++;
    }
  }

  private admit(command: string, args: unknown, options: ExecuteOptions): FleetCall {
    if (this.state.closing) throw closedError(this.fleet, command);
    if (typeof command !== 'string' || command === '') throw badCall(`command must be a non-empty string, got ${typeof command}`);
    if (typeof options !== 'object' || options === null) throw badCall('options must be an object', command);
    const timeoutMs = options.timeoutMs ?? this.requestTimeoutMs;
    if (typeof timeoutMs !== 'number' || !(timeoutMs > 0) || !Number.isFinite(timeoutMs)) throw badCall(`timeoutMs must be a number of ms > 0, got ${String(timeoutMs)}`, command);
    if (options.idempotent !== undefined && typeof options.idempotent !== 'boolean') throw badCall('idempotent must be a boolean', command);
    if (options.sessionId !== undefined && (typeof options.sessionId !== 'string' || options.sessionId === '')) throw badCall('sessionId must be a non-empty string', command);
    if (options.signal?.aborted) throw abortedError(command, options.sessionId ?? null, options.signal, false);
    if (typeof args === 'function' || typeof args === 'symbol') throw unsendableArgsError(command, args);
    const payload = encodeArgsPayload(args, command);
    const max = this.maxPayload;
    // Headers take well under 1 KiB; what is over is refused here rather than by the server.
    if (payload.length + 1024 > max) throw argsTooLargeError(command, payload.length, max);
    return { id: this.requests.nextCallId(), command, payload, timeoutMs, idempotentOpt: options.idempotent, sessionId: options.sessionId ?? null, signal: options.signal, startedAt: performance.now() };
  }

  /** The server's largest message (1 MiB by default). */
  get maxPayload(): number {
    return this.nc.info?.max_payload ?? 1_048_576;
  }

  // ---- sessions ------------------------------------------------------------

  /** A handle whose calls all carry `sessionId`. */
  session(sessionId: string): PoolSession {
    if (typeof sessionId !== 'string' || sessionId === '') throw badCall('session id must be a non-empty string');
    return new PoolSession(this, sessionId);
  }

  /** Forgets a session: its map entry, and its state on the host that holds it. */
  async closeSession(sessionId: string): Promise<void> {
    const map = await this.router.sessions();
    const place = map.cached(sessionId) ?? (await map.lookup(sessionId));
    await map.remove(sessionId);
    if (place === null) return;
    // The holder drops the state and its snapshot; if it is gone, a live host with durable
    // sessions deletes the snapshot, so that the session, placed again, starts empty.
    const h = this.table.get(place.host);
    const to = h !== undefined && h.state !== 'dead' && h.state !== 'left' ? h : this.table.alive().find((x) => x.hb.durableSessions);
    if (to !== undefined) {
      await this.nc.request(this.subjects.control(to.id), encodeText(JSON.stringify({ t: 'close_session', sid: sessionId, fence: place.revision })), { timeout: 2_000 }).catch(() => {});
    }
  }

  /** Where a session lives now (null: nowhere yet). */
  async sessionPlace(sessionId: string): Promise<SessionPlace | null> {
    const map = await this.router.sessions();
    return map.lookup(sessionId);
  }

  // ---- hosts, liveness, connection ------------------------------------------

  private onAnnouncement(m: Msg): void {
    const a = parseAnnouncement(m.data);
    if (a === null) return;
    if (a.t === 'bye') this.table.onBye(a.id, a.reason);
    else if (a.fleet === this.fleet) this.table.onHeartbeat(a, performance.now());
  }

  private async probe(hostId: string, timeoutMs: number): Promise<'alive' | 'gone' | 'silent'> {
    if (!this.state.connected || this.state.inReconnectGrace(performance.now())) return 'silent';
    try {
      await this.nc.request(this.subjects.control(hostId), encodeText('{"t":"ping"}'), { timeout: Math.max(100, timeoutMs) });
      return 'alive';
    } catch (e) {
      const err = e as { name?: string; message?: string; code?: unknown };
      if (err?.name === 'NoRespondersError' || /no responders/i.test(err?.message ?? '') || (err as { cause?: { name?: string } })?.cause?.name === 'NoRespondersError') return 'gone';
      return 'silent';
    }
  }

  private onTick(): void {
    const now = performance.now();
    this.table.tick(now);
    if (!this.state.connected) this.requests.expireDisconnected(now);
    this.table.prune(now, 60_000);
  }

  private onDisconnect(): void {
    this.state.connected = false;
    this.table.pause();
    this.requests.onDisconnect(performance.now());
  }

  private onReconnect(): void {
    this.state.connected = true;
    const now = performance.now();
    this.state.reconnectedAt = now;
    this.table.resume(now);
    this.nc.publish(this.subjects.discover, encodeText(''));
    this.requests.onReconnect();
    this.state.wake();
  }

  // ---- stats, events, close --------------------------------------------------

  stats(): FleetStats {
    const now = performance.now();
    return {
      fleetId: this.id,
      fleet: this.fleet,
      connected: this.state.connected,
      server: this.nc.getServer(),
      closed: this.closed,
      hosts: this.table.all().map((h) => ({
        id: h.id,
        state: h.state,
        silentMs: Math.round(now - h.lastSeen),
        version: h.hb.version,
        moduleVersion: h.hb.moduleVersion,
        module: h.hb.module,
        pid: h.hb.pid,
        hostname: h.hb.hostname,
        commands: Object.keys(h.hb.commands).sort(),
        load: h.hb.load,
        sessions: h.hb.sessions,
        durableSessions: h.hb.durableSessions,
        inFlight: h.inFlight,
        circuit: h.breaker.snapshot(),
        pool: h.hb.pool,
      })),
      calls: { ...this.counts },
      errorsByCategory: { ...this.errorsByCategory },
      retryBudget: this.budget ? (({ calls, retries, denied }) => ({ calls, retries, denied }))(this.budget.stats()) : null,
      sessions: this.router.sessionMap?.size ?? 0,
    };
  }

  /** Listens to one of pyfleet's events; host events only for this client's fleet. Returns the unsubscribe. */
  on<K extends EventName>(name: K, fn: (payload: EventPayloads[K]) => void): () => void {
    return subscribe(name, (p) => {
      const fid = (p as { fleetId?: number }).fleetId;
      if (fid === undefined || fid === this.id) fn(p);
    });
  }

  /** Waits for calls in flight (up to `timeoutMs`, default 10 s), then closes the connection. New calls are refused. */
  async close(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.closed) return;
    this.state.closing = true;
    this.state.wake();
    const until = performance.now() + (options.timeoutMs ?? DEFAULTS.fleet.closeTimeoutMs);
    while (this.requests.size > 0 && performance.now() < until) await new Promise((r) => setTimeout(r, 20));
    this.requests.failAll();
    if (this.tick) clearInterval(this.tick);
    this.router.sessionMap?.close();
    this.closed = true;
    await this.nc.drain().catch(() => this.nc.close());
  }
}
