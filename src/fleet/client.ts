import type { Msg, NatsConnection } from '@nats-io/transport-node';
import type { Adapter } from '../adapters/adapter.js';
import { CallCore, nextOwnerId } from '../call/core.js';
import { Counters } from '../call/counters.js';
import { badCall } from '../call/errors.js';
import { PoisonTracker } from '../call/poison.js';
import { PoolSession } from '../call/session.js';
import type { Caller, DetailedResult, ExecuteOptions, StreamOptions } from '../call/types.js';
import { DEFAULTS } from '../defaults.js';
import { RecoveryOrchestrator } from '../resilience/recovery/orchestrator.js';
import { subscribe, type EventName, type EventPayloads } from '../telemetry/channels.js';
import { defaultLogger } from '../util/logger.js';
import { FleetCall } from './call.js';
import { resolveFleetOptions, type FleetOptions, type FleetSettings, type FleetStats } from './client-options.js';
import { argsTooLargeError, closedError, isHostFailure, notReadyError } from './client-errors.js';
import { ClientState } from './client-state.js';
import { connectNats } from './connection.js';
import { parseAnnouncement } from './heartbeat.js';
import { HostTable } from './host-table.js';
import { RequestTable } from './requests.js';
import { Router } from './routing.js';
import type { SessionPlace } from './session-map.js';
import { fleetSubjects, type FleetSubjects } from './subjects.js';
import { FleetTarget } from './target.js';
import { argsPayload } from './values.js';
import { encodeText } from './wire.js';

const TICK_MS = 100;

/**
 * Connects to NATS and returns a `Fleet` once connected (hosts are discovered from their
 * heartbeats; a call made before any host answered waits for one within queueTimeoutMs).
 * Rejects within `startupTimeoutMs` with PYFLEET_NATS_UNAVAILABLE (naming the address) or at once
 * with PYFLEET_NATS_AUTH_FAILED; bad options reject with PYFLEET_INVALID_OPTIONS before connecting.
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
 * A facade, as the pool is: the call core (`CallCore`) decides what happens to a call, exactly as
 * in a pool; its target (`FleetTarget`) sends each attempt to a host, through the router (which
 * host), the request table (what is in flight, and its replies) and the host table (who is
 * alive). This class follows the connection and the hosts' heartbeats.
 */
export class Fleet implements Adapter, Caller {
  readonly id = nextOwnerId();
  readonly name: string;
  readonly fleet: string;
  private readonly subjects: FleetSubjects;
  private readonly queueTimeoutMs: number;
  private readonly state = new ClientState();
  private readonly closeController = new AbortController();
  private readonly table: HostTable;
  private readonly requests: RequestTable;
  private readonly router: Router;
  private readonly target: FleetTarget;
  private readonly core: CallCore<FleetCall>;
  private readonly recovery: RecoveryOrchestrator;
  private readonly sent = { resent: 0, settledTwice: 0 };
  /** The payload admission made for the call it is about to create. */
  private payload: Uint8Array | null = null;
  private tick: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    s: FleetSettings,
    readonly nc: NatsConnection,
  ) {
    this.fleet = s.fleet;
    this.name = `fleet:${s.fleet}`;
    this.subjects = fleetSubjects(s.fleet);
    this.queueTimeoutMs = s.queueTimeoutMs;
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
    this.requests = new RequestTable(nc, this.subjects, this.table, this.state, this.sent, s.queueTimeoutMs);
    this.router = new Router(nc, this.subjects, this.table, this.state, { fleet: this.fleet, servers: () => s.servers, queueTimeoutMs: s.queueTimeoutMs, sessionMapTtlMs: s.sessionMapTtlMs });
    this.target = new FleetTarget(this.fleet, this.table, this.router, this.requests, this.subjects, s.queueTimeoutMs);
    // A fleet client has no workers: its hosts' pools recover their own. It times and counts the call steps.
    this.recovery = new RecoveryOrchestrator({ poolId: this.id, strategies: s.recovery.strategies, timeLimits: s.recovery.timeLimits });
    this.core = new CallCore<FleetCall>({
      ownerId: this.id,
      settings: s,
      counters: new Counters(),
      poison: new PoisonTracker(s.poison.maxDeaths, s.poison.coolDownMs),
      target: this.target,
      logger: s.logger ?? defaultLogger(),
      recovery: this.recovery,
      nonFinite: 'null',
      closeSignal: this.closeController.signal,
      closing: () => this.state.closing,
      closedError: (call, command, cause) => closedError(this.fleet, call?.command ?? command ?? null, cause),
      check: (command, _args, encoded) => {
        const payload = argsPayload(encoded);
        // Headers take well under 1 KiB; what is over is refused here rather than by the server.
        if (payload.length + 1024 > this.maxPayload) throw argsTooLargeError(command, payload.length, this.maxPayload);
        this.payload = payload;
      },
      make: (init) => {
        const payload = this.payload!;
        this.payload = null;
        return new FleetCall(init, this.requests.wireId(init.id), payload);
      },
      // The router sends a session's calls in the order they were made; its host runs them so.
      enqueue: () => {},
      settled: () => {},
    });
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
  execute<T = unknown>(command: string, args?: unknown, options: ExecuteOptions = {}): Promise<T | DetailedResult<T>> {
    if (this.unknownYet(command)) return this.learn(command, options.signal).then(() => this.core.execute<T>(command, args, options));
    return this.core.execute<T>(command, args, options);
  }

  /**
   * Streams the items of `command` from a host (src/fleet/stream-server.ts has the protocol): as
   * a pool's stream, with credit across the network. Bad options throw here; the call is sent
   * when iteration starts. Before the first item a failure follows the retry rules (another
   * host); after it, PYFLEET_STREAM_BROKEN.
   */
  stream<T = unknown>(command: string, args?: unknown, options: StreamOptions = {}): AsyncIterableIterator<T> {
    if (this.unknownYet(command)) return this.streamLater<T>(command, args, options);
    return this.core.stream<T>(command, args, options);
  }

  /** No host has announced itself yet: what the command is will be known from the first one's heartbeat. */
  private unknownYet(command: string): boolean {
    return typeof command === 'string' && this.target.command(command) === undefined && this.table.alive().length === 0 && !this.state.closing;
  }

  /** Waits, within queueTimeoutMs, for a host; the call is then admitted as usual (and refused if no host has its command). */
  private async learn(command: string, signal: AbortSignal | undefined): Promise<void> {
    const deadline = performance.now() + this.queueTimeoutMs;
    while (this.table.alive().length === 0 && !this.state.closing && signal?.aborted !== true) {
      const left = deadline - performance.now();
      if (left <= 0) throw this.router.noHost({ command, sessionId: null });
      await this.state.changed(Math.min(left, 250));
    }
  }

  private async *streamLater<T>(command: string, args: unknown, options: StreamOptions): AsyncGenerator<T, void, undefined> {
    await this.learn(command, options.signal);
    yield* this.core.stream<T>(command, args, options);
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
    const core = this.core;
    const c = core.counters.snapshot();
    const b = core.budget?.stats();
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
      calls: { ...c.calls, resent: this.sent.resent, settledTwice: c.calls.settledTwice + this.sent.settledTwice },
      errorsByCategory: c.errorsByCategory,
      retryBudget: b === undefined ? null : { calls: b.calls, retries: b.retries, denied: b.denied },
      recoveries: this.recovery.metrics(),
      poison: { quarantined: core.poison.size, refused: core.counters.poisonRefused },
      sessions: this.router.sessionMap?.size ?? 0,
    };
  }

  /** Listens to one of pyfleet's events, for this client only (its calls, and its view of the hosts); returns the unsubscribe. */
  on<K extends EventName>(name: K, fn: (payload: EventPayloads[K]) => void): () => void {
    return subscribe(name, (p) => {
      const q = p as { fleetId?: number; poolId?: number };
      if ((q.fleetId ?? q.poolId) === this.id) fn(p);
    });
  }

  /** Waits for calls in flight (up to `timeoutMs`, default 10 s), then closes the connection. New calls are refused. */
  async close(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.closed) return;
    this.state.closing = true;
    this.state.wake();
    const until = performance.now() + (options.timeoutMs ?? DEFAULTS.fleet.closeTimeoutMs);
    // Calls waiting to be sent again end now; those on a host are given the time to answer.
    this.closeController.abort();
    this.recovery.abortAll('the fleet client is closing');
    while (this.requests.size > 0 && performance.now() < until) await new Promise((r) => setTimeout(r, 20));
    this.requests.failAll();
    if (this.tick) clearInterval(this.tick);
    this.router.sessionMap?.close();
    this.closed = true;
    await this.nc.drain().catch(() => this.nc.close());
  }
}
