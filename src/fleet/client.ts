import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { createInbox } from '@nats-io/transport-node';
import { ERROR_CATEGORIES, type ErrorCategory } from '../errors/categories.js';
import { PoolError, isPoolError } from '../errors/pool-error.js';
import type { Adapter } from '../adapters/adapter.js';
import type { DetailedResult, ExecuteOptions } from '../pool/pool.js';
import { RetryBudget, type RetryBudgetOptions } from '../resilience/budget.js';
import type { CircuitSnapshot } from '../resilience/circuit-breaker.js';
import { channels, subscribe, type EventName, type EventPayloads } from '../telemetry/channels.js';
import { connectNats, serverList, type NatsAuthOptions } from './connection.js';
import { parseAnnouncement } from './heartbeat.js';
import type { Heartbeat } from './heartbeat.js';
import { HostTable, type HostEntry, type HostState } from './host-table.js';
import { SessionMap, type SessionPlace } from './session-map.js';
import { StreamReceiver, type StreamControl, type StreamTransport } from './stream.js';
import { fleetSubjects, validateFleetName, type FleetSubjects } from './subjects.js';
import { encodeArgsPayload, decodePayload } from './values.js';
import { callHeaders, decodeError, encodeText, H, type CallMeta } from './wire.js';

export interface FleetOptions extends NatsAuthOptions {
  /** The fleet's name (one subject token): hosts started with the same --fleet serve it. */
  fleet: string;
  /** Time to connect to NATS at start-up (default 5 000 ms); connectFleet rejects after it. */
  startupTimeoutMs?: number;
  /** Time for one attempt on a host's pool (default 30 000 ms), as a pool's requestTimeoutMs. */
  requestTimeoutMs?: number;
  /** Time a call may wait for a host, or for NATS during an outage (default 5 000 ms). */
  queueTimeoutMs?: number;
  retry?: {
    /** Hosts a call may be sent to, the first included (default 3). */
    maxAttempts?: number;
    /** Re-sends to another host allowed as a share of recent calls, plus a floor; false: no budget. */
    budget?: false | RetryBudgetOptions;
  };
  /** The circuit each host gets on this client (default: 3 failures open it for 5 s). */
  circuitBreaker?: { failureThreshold?: number; successThreshold?: number; openTimeoutMs?: number; halfOpenRequests?: number };
  /** Silence, in the host's heartbeat intervals, before it is suspected (default 2) and dead (default 4). */
  heartbeat?: { suspectAfter?: number; deadAfter?: number };
  /**
   * Max age of the session map's entries, set when the bucket is first created (default 0: none;
   * entries go when a session is closed). An entry older than this is dropped even if the session
   * is in use, and its next call places it afresh: set it only above your longest session.
   */
  sessionMapTtlMs?: number;
  /** Connection name (default pyfleet-client:<fleet>). */
  name?: string;
}

export interface FleetStreamOptions extends Omit<ExecuteOptions, 'detailed'> {
  /** Longest wait for the next chunk (default 30 000 ms). */
  chunkTimeoutMs?: number;
  /** Chunks the host may send ahead of the consumer (default 16). */
  highWaterMark?: number;
}

export interface FleetHostStats {
  id: string;
  state: HostState;
  silentMs: number;
  version: string;
  moduleVersion: string;
  module: string;
  pid: number;
  hostname: string;
  commands: string[];
  load: Heartbeat['load'];
  sessions: number;
  durableSessions: boolean;
  /** This client's calls in flight there. */
  inFlight: number;
  circuit: CircuitSnapshot;
  /** The host pool's stats, from its last heartbeat. */
  pool: Heartbeat['pool'];
}

export interface FleetStats {
  fleetId: number;
  fleet: string;
  connected: boolean;
  server: string;
  closed: boolean;
  hosts: FleetHostStats[];
  /** `settledTwice`: a send answered a second time (a host's duplicate reply), counted where the client settles, never delivered. */
  calls: { total: number; succeeded: number; failed: number; inFlight: number; retries: number; resent: number; settledTwice: number };
  errorsByCategory: Record<ErrorCategory, number>;
  retryBudget: { calls: number; retries: number; denied: number } | null;
  sessions: number;
}

/** Not taken by the host: the call may go to another host whatever its idempotency. */
const NOT_TAKEN_MOVABLE = new Set(['PYFLEET_POOL_CLOSED', 'PYFLEET_QUEUE_FULL', 'PYFLEET_QUEUE_TIMEOUT', 'PYFLEET_CIRCUIT_OPEN', 'PYFLEET_NO_WORKERS', 'PYFLEET_HOST_LOST']);
/** Taken, then failed for the host's sake: an idempotent call may go to another host. */
const TAKEN_MOVABLE = new Set(['PYFLEET_HOST_LOST', 'PYFLEET_WORKER_CRASHED', 'PYFLEET_PROTOCOL_ERROR', 'PYFLEET_NO_WORKERS', 'PYFLEET_HEALTH_CHECK_FAILED']);
/** What counts against a host's circuit: the host failing, not the call or the user's code. */
const HOST_FAILURES = new Set(['PYFLEET_HOST_LOST', 'PYFLEET_NO_WORKERS', 'PYFLEET_SPAWN_FAILED', 'PYFLEET_STARTUP_TIMEOUT', 'PYFLEET_INIT_FAILED']);
const isHostFailure = (e: unknown): boolean => isPoolError(e) && (HOST_FAILURES.has(e.code) || (e.code === 'PYFLEET_TIMEOUT' && e.details?.noReply === true));

/** After a reconnect, hosts are still re-subscribing: "no responder" is not yet proof of death. */
const RECONNECT_GRACE_MS = 3_000;
const TICK_MS = 100;

interface Call {
  id: string;
  command: string;
  payload: Uint8Array;
  timeoutMs: number;
  idempotentOpt: boolean | undefined;
  sessionId: string | null;
  signal: AbortSignal | undefined;
  startedAt: number;
}

/** Where one attempt goes: the host, its circuit ticket, and the session's placement (zeros without a session). */
interface Route {
  host: HostEntry;
  ticket: number;
  epoch: number;
  gen: string;
  fence: number;
}

interface Pending {
  token: string;
  host: HostEntry;
  meta: CallMeta;
  payload: Uint8Array;
  reply: string;
  sends: number;
  disconnectedAt: number | null;
  settle(ok: boolean, v: unknown): void;
}

let fleetSeq = 0;

/**
 * Connects to NATS and returns a `Fleet` once connected (hosts are discovered from their
 * heartbeats; a call made before any host answered waits for one within queueTimeoutMs).
 * Rejects within `startupTimeoutMs` with PYFLEET_NATS_UNAVAILABLE (naming the address) or at once
 * with PYFLEET_NATS_AUTH_FAILED.
 */
export async function connectFleet(options: FleetOptions): Promise<Fleet> {
  const fleet = validateFleetName(options?.fleet);
  serverList(options.servers);
  const nc = await connectNats({ ...options, name: options.name ?? `pyfleet-client:${fleet}`, timeoutMs: options.startupTimeoutMs ?? 5_000 });
  const f = new Fleet(options, nc);
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
 */
export class Fleet implements Adapter {
  readonly id = ++fleetSeq;
  readonly name: string;
  readonly fleet: string;
  private readonly subjects: FleetSubjects;
  private readonly table: HostTable;
  private readonly budget: RetryBudget | undefined;
  private readonly inbox: string;
  private readonly pending = new Map<string, Pending>();
  private readonly streamInboxes = new Map<string, (m: Msg) => void>();
  private readonly waiters = new Set<() => void>();
  private readonly requestTimeoutMs: number;
  private readonly queueTimeoutMs: number;
  private readonly maxAttempts: number;
  private readonly sessionMapTtlMs: number;
  private sessionMapP: Promise<SessionMap> | null = null;
  private sessionMap: SessionMap | null = null;
  private readonly subs: Subscription[] = [];
  private tick: NodeJS.Timeout | null = null;
  private connected = true;
  private reconnectedAt = -Infinity;
  private readonly connectedAt = performance.now();
  private seq = 0;
  private tokenSeq = 0;
  private closing = false;
  private closed = false;
  private readonly counts = { total: 0, succeeded: 0, failed: 0, inFlight: 0, retries: 0, resent: 0, settledTwice: 0 };
  private readonly errorsByCategory = Object.fromEntries(ERROR_CATEGORIES.map((c) => [c, 0])) as Record<ErrorCategory, number>;
  private readonly idPrefix: string;

  constructor(
    private readonly options: FleetOptions,
    readonly nc: NatsConnection,
  ) {
    this.fleet = options.fleet;
    this.name = `fleet:${options.fleet}`;
    this.subjects = fleetSubjects(options.fleet);
    this.requestTimeoutMs = positive(options.requestTimeoutMs, 30_000, 'requestTimeoutMs');
    this.queueTimeoutMs = positive(options.queueTimeoutMs, 5_000, 'queueTimeoutMs');
    this.maxAttempts = positive(options.retry?.maxAttempts, 3, 'retry.maxAttempts');
    this.sessionMapTtlMs = options.sessionMapTtlMs === 0 || options.sessionMapTtlMs === undefined ? 0 : positive(options.sessionMapTtlMs, 0, 'sessionMapTtlMs');
    const b = options.retry?.budget;
    this.budget = b === false ? undefined : new RetryBudget(b ?? {});
    this.inbox = createInbox();
    this.idPrefix = this.inbox.slice(this.inbox.lastIndexOf('.') + 1);
    this.table = new HostTable({
      fleetId: this.id,
      fleet: this.fleet,
      suspectAfter: options.heartbeat?.suspectAfter ?? 2,
      deadAfter: options.heartbeat?.deadAfter ?? 4,
      circuitBreaker: { failureThreshold: 3, openTimeoutMs: 5_000, successThreshold: 2, halfOpenRequests: 2, ...options.circuitBreaker },
      isFailure: isHostFailure,
      probe: (h, t) => this.probe(h, t),
      onChange: () => this.wake(),
    });
  }

  async start(): Promise<void> {
    const cb = (fn: (m: Msg) => void) => (err: Error | null, m: Msg): void => {
      if (err === null) fn(m);
    };
    this.subs.push(this.nc.subscribe(this.subjects.hosts, { callback: cb((m) => this.onAnnouncement(m)) }));
    this.subs.push(this.nc.subscribe(`${this.inbox}.*`, { callback: cb((m) => this.onReply(m)) }));
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
      if (left <= 0) throw new PoolError({ code: 'PYFLEET_NO_HOSTS', message: `Fleet ${this.fleet}: ${n} of ${want} hosts alive after ${o.timeoutMs ?? this.queueTimeoutMs} ms (${this.table.describe(o.command ?? '')}).` });
      await this.changed(left);
    }
  }

  // ---- calls ---------------------------------------------------------------

  execute<T = unknown>(command: string, args?: unknown, options?: ExecuteOptions & { detailed?: false }): Promise<T>;
  execute<T = unknown>(command: string, args: unknown, options: ExecuteOptions & { detailed: true }): Promise<DetailedResult<T> & { hostId: string }>;
  execute<T = unknown>(command: string, args?: unknown, options: ExecuteOptions = {}): Promise<T | (DetailedResult<T> & { hostId: string })> {
    let call: Call;
    try {
      call = this.admit(command, args, options);
    } catch (e) {
      return Promise.reject(e);
    }
    this.counts.total++;
    this.counts.inFlight++;
    this.budget?.recordCall();
    return this.run(call).then(
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

  private admit(command: string, args: unknown, options: ExecuteOptions): Call {
    if (this.closing) throw this.closedError(command);
    if (typeof command !== 'string' || command === '') throw badCall(`command must be a non-empty string, got ${typeof command}`);
    if (typeof options !== 'object' || options === null) throw badCall('options must be an object', command);
    const timeoutMs = options.timeoutMs ?? this.requestTimeoutMs;
    if (typeof timeoutMs !== 'number' || !(timeoutMs > 0) || !Number.isFinite(timeoutMs)) throw badCall(`timeoutMs must be a number of ms > 0, got ${String(timeoutMs)}`, command);
    if (options.idempotent !== undefined && typeof options.idempotent !== 'boolean') throw badCall('idempotent must be a boolean', command);
    if (options.sessionId !== undefined && (typeof options.sessionId !== 'string' || options.sessionId === '')) throw badCall('sessionId must be a non-empty string', command);
    if (options.signal?.aborted) throw abortedError(command, options.sessionId ?? null, options.signal, false);
    if (typeof args === 'function' || typeof args === 'symbol') throw new PoolError({ code: 'PYFLEET_INVALID_ARGS', command, message: `The arguments of ${command} (${typeof args}) cannot be sent. Pass an object, array, string, number, boolean or null.` });
    const payload = encodeArgsPayload(args, command);
    const max = this.maxPayload;
    // Headers take well under 1 KiB; what is over is refused here rather than by the server.
    if (payload.length + 1024 > max) {
      throw new PoolError({
        code: 'PYFLEET_FRAME_TOO_LARGE',
        command,
        message: `The arguments of ${command} take ${payload.length} bytes, over what one NATS message carries (the server's max_payload is ${max} bytes, less 1 KiB of headers). The call was not sent. Pass a reference (a path, an object-store key) instead, or raise max_payload in nats-server's configuration.`,
        details: { bytes: payload.length, maxPayload: max },
      });
    }
    return { id: `${this.idPrefix}.${++this.seq}`, command, payload, timeoutMs, idempotentOpt: options.idempotent, sessionId: options.sessionId ?? null, signal: options.signal, startedAt: performance.now() };
  }

  /** The server's largest message (1 MiB by default). */
  get maxPayload(): number {
    return this.nc.info?.max_payload ?? 1_048_576;
  }

  private async run(call: Call): Promise<{ value: unknown; attempts: number; hostId: string }> {
    const tried = new Set<string>();
    let attempt = 0;
    for (;;) {
      attempt++;
      // A session's calls from this client are routed and sent in the order they were made.
      const release = call.sessionId === null ? null : await this.routeTurn(call.sessionId);
      let route: Route;
      try {
        route = call.sessionId === null ? await this.acquire(call, tried) : await this.acquireSession(call);
      } catch (e) {
        release?.();
        throw e;
      }
      const { host, ticket } = route;
      const idempotent = call.idempotentOpt ?? host.hb.commands[call.command]?.idempotent ?? false;
      try {
        const sent = this.send(host, call, attempt, route);
        release?.();
        const value = await sent;
        host.breaker.leaveOk(ticket);
        return { value, attempts: attempt, hostId: host.id };
      } catch (e) {
        const err = asPoolError(e, call.command);
        if (await this.sessionMoved(err, call, host, ticket, attempt)) continue;
        host.breaker.leaveFailed(ticket, err);
        err.attempt = attempt;
        const movable = err.taken ? idempotent && TAKEN_MOVABLE.has(err.code) : NOT_TAKEN_MOVABLE.has(err.code);
        if (!movable || this.closing || call.signal?.aborted) throw err;
        if (attempt >= this.maxAttempts) {
          publishExhausted(call.command, attempt, err, 'max_attempts');
          throw err;
        }
        // Not taken: nothing ran, so it costs no retry budget. Taken: a real re-send.
        if (err.taken && this.budget !== undefined && !this.budget.tryAcquireRetry()) {
          publishExhausted(call.command, attempt, err, 'budget');
          err.message += ' It was not re-sent to another host: the retry budget is spent (too many re-sends lately).';
          throw err;
        }
        this.counts.retries++;
        tried.add(host.id);
        if (channels['retry:attempt'].hasSubscribers) channels['retry:attempt'].publish({ command: call.command, attempt: attempt + 1, delayMs: 0, category: err.category, code: err.code });
      }
    }
  }

  private readonly routeTails = new Map<string, Promise<void>>();

  /** Waits for this session's earlier calls to be sent; resolves with the function that lets the next one go. */
  private routeTurn(sid: string): Promise<() => void> {
    const prev = this.routeTails.get(sid) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    this.routeTails.set(sid, tail);
    void tail.then(() => {
      if (this.routeTails.get(sid) === tail) this.routeTails.delete(sid);
    });
    return prev.then(() => release);
  }

  /**
   * The host refused a session call because the session has a later placement elsewhere (another
   * replica moved it, and this one's map cache lagged): nothing ran; look the session up afresh
   * and go there. Not a host failure, and bounded by maxAttempts like any re-send.
   */
  private async sessionMoved(err: PoolError, call: Call, host: HostEntry, ticket: number, attempt: number): Promise<boolean> {
    if (err.details?.sessionMoved !== true || err.taken || call.sessionId === null || attempt >= this.maxAttempts) return false;
    host.breaker.leaveOk(ticket);
    const map = await this.sessions();
    await map.lookup(call.sessionId).catch(() => null);
    return true;
  }

  /** A host for a session-less call: the least loaded live one that has the command. Waits within queueTimeoutMs. */
  private async acquire(call: Call, avoid: ReadonlySet<string>): Promise<Route> {
    const deadline = performance.now() + this.queueTimeoutMs;
    for (;;) {
      if (this.closing) throw this.closedError(call.command);
      if (this.connected) {
        const h = this.table.pick(call.command, avoid);
        if (h !== null) {
          try {
            return { host: h, ticket: h.breaker.enter(), epoch: 0, gen: '', fence: 0 };
          } catch {
            // half-open and its trials busy: wait for a change
          }
        } else {
          const serves = this.table.anyAliveServes(call.command);
          if (serves === false) throw this.unknownCommand(call.command);
          const open = this.table.alive().filter((x) => x.hb.commands[call.command] !== undefined);
          if (open.length > 0 && open.every((x) => !x.breaker.allowsRequests)) {
            try {
              open[0].breaker.enter();
            } catch (e) {
              throw e;
            }
          }
        }
      }
      const left = deadline - performance.now();
      if (left <= 0) throw this.noHostError(call);
      await this.changed(Math.min(left, 250));
      if (call.signal?.aborted) throw abortedError(call.command, call.sessionId, call.signal, false);
    }
  }

  /** The session's host, from the map (placing or moving the session as needed). */
  private async acquireSession(call: Call): Promise<Route> {
    const sid = call.sessionId!;
    const deadline = performance.now() + this.queueTimeoutMs;
    const map = await this.withDeadline(this.sessions(), deadline, call);
    for (;;) {
      if (this.closing) throw this.closedError(call.command);
      if (this.connected) {
        const place = map.cached(sid) ?? (await this.withDeadline(map.lookup(sid), deadline, call));
        if (place === null) {
          const to = this.table.pick(call.command, null);
          if (to !== null) {
            await this.withDeadline(map.place(sid, to.id), deadline, call);
            continue;
          }
          if (this.table.anyAliveServes(call.command) === false) throw this.unknownCommand(call.command);
        } else {
          const h = this.table.get(place.host);
          if (h !== undefined && h.state === 'alive') return { host: h, ticket: h.breaker.enter(), epoch: place.epoch, gen: place.gen, fence: place.revision };
          const warm = performance.now() - Math.max(this.connectedAt, this.reconnectedAt) > 3_000;
          if ((h === undefined && warm) || (h !== undefined && (h.state === 'dead' || h.state === 'left' || h.state === 'draining'))) {
            const to = this.table.pick(call.command, new Set([place.host]));
            if (to !== null && to.id !== place.host) {
              await this.withDeadline(map.move(sid, place, to.id), deadline, call);
              continue;
            }
          }
        }
      }
      const left = deadline - performance.now();
      if (left <= 0) throw this.noHostError(call);
      await this.changed(Math.min(left, 250));
      if (call.signal?.aborted) throw abortedError(call.command, call.sessionId, call.signal, false);
    }
  }

  private async withDeadline<T>(p: Promise<T>, deadline: number, call: Call): Promise<T> {
    let t: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        p,
        new Promise<never>((_, reject) => {
          t = setTimeout(() => reject(this.noHostError(call)), Math.max(0, deadline - performance.now()));
        }),
      ]);
    } finally {
      clearTimeout(t);
    }
  }

  private sessions(): Promise<SessionMap> {
    this.sessionMapP ??= SessionMap.open(this.nc, this.subjects.sessionBucket, this.sessionMapTtlMs).then(
      (m) => {
        this.sessionMap = m;
        return m;
      },
      (e: unknown) => {
        this.sessionMapP = null;
        throw new PoolError({ code: 'PYFLEET_NATS_UNAVAILABLE', cause: e, message: `Fleet ${this.fleet}: the session map (JetStream KV bucket ${this.subjects.sessionBucket}) cannot be opened: ${(e as Error).message}. Sessions need JetStream: start nats-server with -js.` });
      },
    );
    return this.sessionMapP;
  }

  /** One attempt on one host: resolves with the value, rejects with a PoolError; re-sent to the same host (which de-duplicates) when the reply may have been lost. */
  private send(host: HostEntry, call: Call, attempt: number, route: Route): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const token = (++this.tokenSeq).toString(36);
      const meta: CallMeta = {
        id: call.id,
        command: call.command,
        attempt,
        timeoutMs: call.timeoutMs,
        deadline: Date.now() + this.hardCapMs(call.timeoutMs),
        idempotent: call.idempotentOpt,
        sessionId: call.sessionId,
        sessionEpoch: route.epoch,
        sessionGen: route.gen,
        sessionFence: route.fence,
      };
      let done = false;
      let timer: NodeJS.Timeout | null = null;
      const subject = this.subjects.call(host.id);
      const onLost = (reason: string): void =>
        p.settle(
          false,
          new PoolError({
            code: 'PYFLEET_HOST_LOST',
            command: call.command,
            sessionId: call.sessionId,
            taken: true,
            message: `${reason}; it had taken the call to ${call.command}, which may have run.`,
            details: { hostId: host.id },
          }),
        );
      const onAbort = (): void => {
        this.control(host.id, { t: 'cancel', id: call.id });
        p.settle(false, abortedError(call.command, call.sessionId, call.signal!, true));
      };
      const p: Pending = {
        token,
        host,
        meta,
        payload: call.payload,
        reply: `${this.inbox}.${token}`,
        sends: 0,
        disconnectedAt: this.connected ? null : performance.now(),
        settle: (ok, v) => {
          if (done) {
            this.counts.settledTwice++;
            return;
          }
          done = true;
          this.pending.delete(token);
          host.inFlight--;
          host.lost.delete(onLost);
          if (timer) clearTimeout(timer);
          call.signal?.removeEventListener('abort', onAbort);
          if (ok) resolve(v);
          else reject(v);
        },
      };
      this.pending.set(token, p);
      host.inFlight++;
      host.lost.add(onLost);
      call.signal?.addEventListener('abort', onAbort, { once: true });
      this.publish(subject, p);
      // A host that is alive answers every call it took (its pool settles each one); a reply
      // that was lost is asked for again (the host answers from its reply cache or joins the
      // running call). The hard cap is for a host that is alive but broken.
      const started = performance.now();
      const cap = this.hardCapMs(call.timeoutMs);
      const poll = (): void => {
        if (done) return;
        const elapsed = performance.now() - started;
        if (elapsed >= cap) {
          p.settle(false, new PoolError({ code: 'PYFLEET_TIMEOUT', command: call.command, sessionId: call.sessionId, taken: true, message: `Host ${host.id} did not answer the call to ${call.command} within ${Math.round(elapsed)} ms although it is alive; the call may have run.`, details: { hostId: host.id, noReply: true } }));
          return;
        }
        if (this.connected) {
          this.counts.resent++;
          this.publish(subject, p);
        }
        timer = setTimeout(poll, Math.min(call.timeoutMs, cap - elapsed));
      };
      timer = setTimeout(poll, call.timeoutMs + 2_000);
    });
  }

  /** Longest a call waits for a live host's answer: its pool's own attempts and recoveries fit in it. */
  private hardCapMs(timeoutMs: number): number {
    return 4 * timeoutMs + 10_000;
  }

  private publish(subject: string, p: Pending): void {
    p.sends++;
    try {
      this.nc.publish(subject, p.payload, { reply: p.reply, headers: callHeaders(p.meta) });
    } catch (e) {
      p.settle(false, new PoolError({ code: 'PYFLEET_NATS_UNAVAILABLE', command: p.meta.command, taken: p.sends > 1, cause: e, message: `The call to ${p.meta.command} could not be sent: ${(e as Error).message}.` }));
    }
  }

  private onReply(m: Msg): void {
    const token = m.subject.slice(this.inbox.length + 1);
    const stream = this.streamInboxes.get(token);
    if (stream !== undefined) {
      stream(m);
      return;
    }
    const p = this.pending.get(token);
    if (p === undefined) return; // a duplicate answer to a re-send, or one after the caller gave up
    const h = m.headers;
    if (h?.hasError === true && h.code === 503) {
      if (performance.now() - this.reconnectedAt < RECONNECT_GRACE_MS) {
        // The host may not have re-subscribed yet after a server restart: ask again shortly.
        setTimeout(() => this.pending.get(token) === p && this.publish(this.subjects.call(p.host.id), p), 200).unref();
        return;
      }
      // This call first, with what is known of it (never delivered, if sent once); then the host
      // is marked gone, which settles its other calls as lost.
      p.settle(
        false,
        new PoolError({
          code: 'PYFLEET_HOST_LOST',
          command: p.meta.command,
          sessionId: p.meta.sessionId,
          taken: p.sends > 1,
          message: p.sends > 1 ? `Host ${p.host.id} is gone (no responder on its subject) and had taken the call to ${p.meta.command}, which may have run.` : `Host ${p.host.id} is gone (no responder on its subject); the call to ${p.meta.command} was not delivered.`,
          details: { hostId: p.host.id, gone: true },
        }),
      );
      this.table.markGone(p.host.id, performance.now());
      return;
    }
    const st = h?.get(H.status) ?? '';
    if (st === 'ok') {
      let v: unknown;
      try {
        v = decodePayload(m.data, 'v');
      } catch (e) {
        p.settle(false, new PoolError({ code: 'PYFLEET_PROTOCOL_ERROR', command: p.meta.command, taken: true, message: `Host ${p.host.id} answered ${p.meta.command} with bytes that are neither JSON nor a binary value (${(e as Error).message}).` }));
        return;
      }
      p.settle(true, v);
    } else if (st === 'err') {
      p.settle(false, decodeError(m.data, p.host.id));
    }
  }

  // ---- streams -------------------------------------------------------------

  /**
   * Streams the items of `command` from a host (see src/fleet/stream.ts for the protocol). Bad
   * options throw here; the call is sent when iteration starts. Before the first item a failure
   * follows the retry rules (another host); after it, PYFLEET_STREAM_BROKEN.
   */
  stream<T = unknown>(command: string, args?: unknown, options: FleetStreamOptions = {}): AsyncIterableIterator<T> {
    const call = this.admit(command, args, options);
    const hwm = options.highWaterMark ?? 16;
    if (!Number.isInteger(hwm) || hwm < 1) throw badCall(`highWaterMark must be an integer >= 1, got ${String(hwm)}`, command);
    const chunkTimeoutMs = options.chunkTimeoutMs ?? 30_000;
    if (!(chunkTimeoutMs > 0) || !Number.isFinite(chunkTimeoutMs)) throw badCall(`chunkTimeoutMs must be a number of ms > 0, got ${String(chunkTimeoutMs)}`, command);
    return this.streamAttempts(call, hwm, chunkTimeoutMs) as AsyncIterableIterator<T>;
  }

  private async *streamAttempts(call: Call, hwm: number, chunkTimeoutMs: number): AsyncGenerator<unknown, void, undefined> {
    const tried = new Set<string>();
    for (let attempt = 1; ; attempt++) {
      // As for execute: a session's calls and streams from this client reach its host in the order they were made.
      const release = call.sessionId === null ? null : await this.routeTurn(call.sessionId);
      let route: Route;
      try {
        route = call.sessionId === null ? await this.acquire(call, tried) : await this.acquireSession(call);
      } catch (e) {
        release?.();
        throw e;
      }
      const { host, ticket } = route;
      const idempotent = call.idempotentOpt ?? host.hb.commands[call.command]?.idempotent ?? false;
      const meta: CallMeta & { hwm: number } = {
        id: call.id,
        command: call.command,
        attempt,
        timeoutMs: call.timeoutMs,
        deadline: Date.now() + this.hardCapMs(call.timeoutMs),
        idempotent: call.idempotentOpt,
        sessionId: call.sessionId,
        sessionEpoch: route.epoch,
        sessionGen: route.gen,
        sessionFence: route.fence,
        hwm,
      };
      const r = new StreamReceiver(this.streamTransport, host.id, this.subjects.stream(host.id), meta, call.payload, chunkTimeoutMs, call.signal);
      try {
        r.start();
      } finally {
        release?.(); // a send that threw must not hold up the session's later calls
      }
      let first: IteratorResult<unknown>;
      try {
        first = await r.next();
      } catch (e) {
        const err = asPoolError(e, call.command);
        if (await this.sessionMoved(err, call, host, ticket, attempt)) continue;
        host.breaker.leaveFailed(ticket, err);
        const movable = err.taken ? idempotent && TAKEN_MOVABLE.has(err.code) : NOT_TAKEN_MOVABLE.has(err.code);
        if (!movable || attempt >= this.maxAttempts || (err.taken && this.budget !== undefined && !this.budget.tryAcquireRetry())) throw err;
        tried.add(host.id);
        call.id = `${this.idPrefix}.${++this.seq}`;
        continue;
      }
      host.breaker.leaveOk(ticket);
      try {
        if (first.done === true) return;
        yield first.value;
        for (;;) {
          const n = await r.next();
          if (n.done === true) return;
          yield n.value;
        }
      } finally {
        await r.return();
      }
    }
  }

  private readonly streamTransport: StreamTransport = {
    inbox: (onMsg) => {
      const token = `s${(++this.tokenSeq).toString(36)}`;
      this.streamInboxes.set(token, onMsg);
      return { subject: `${this.inbox}.${token}`, close: () => this.streamInboxes.delete(token) };
    },
    send: (subject, payload, meta, reply) => {
      this.nc.publish(subject, payload, { reply, headers: callHeaders(meta) });
    },
    control: (hostId, c) => this.control(hostId, c),
    onHostLost: (hostId, fn) => {
      const h = this.table.get(hostId);
      if (h === undefined) return () => {};
      h.lost.add(fn);
      return () => h.lost.delete(fn);
    },
  };

  private control(hostId: string, c: StreamControl | { t: string; [k: string]: unknown }): void {
    if (this.nc.isClosed()) return;
    try {
      this.nc.publish(this.subjects.control(hostId), encodeText(JSON.stringify(c)));
    } catch {
      // best effort: the host gives up on its own after the call's timeout
    }
  }

  // ---- sessions ------------------------------------------------------------

  /** A handle whose calls all carry `sessionId`. */
  session(sessionId: string): FleetSession {
    if (typeof sessionId !== 'string' || sessionId === '') throw badCall('session id must be a non-empty string');
    return new FleetSession(this, sessionId);
  }

  /** Forgets a session: its map entry, and its state on the host that holds it. */
  async closeSession(sessionId: string): Promise<void> {
    const map = await this.sessions();
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
    const map = await this.sessions();
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
    if (!this.connected || performance.now() - this.reconnectedAt < RECONNECT_GRACE_MS) return 'silent';
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
    if (!this.connected) {
      for (const p of [...this.pending.values()]) {
        if (p.disconnectedAt !== null && now - p.disconnectedAt > this.queueTimeoutMs) {
          p.settle(
            false,
            new PoolError({
              code: 'PYFLEET_NATS_UNAVAILABLE',
              command: p.meta.command,
              sessionId: p.meta.sessionId,
              taken: true,
              message: `Lost the connection to NATS while host ${p.host.id} had the call to ${p.meta.command}, and it did not come back within queueTimeoutMs (${this.queueTimeoutMs} ms); the call may have run.`,
              details: { hostId: p.host.id },
            }),
          );
        }
      }
    }
    this.table.prune(now, 60_000);
  }

  private onDisconnect(): void {
    this.connected = false;
    this.table.pause();
    const now = performance.now();
    for (const p of this.pending.values()) p.disconnectedAt ??= now;
  }

  private onReconnect(): void {
    this.connected = true;
    const now = performance.now();
    this.reconnectedAt = now;
    this.table.resume(now);
    this.nc.publish(this.subjects.discover, encodeText(''));
    // Replies sent while we were away are lost: ask again (hosts answer a known call id from their cache).
    for (const p of this.pending.values()) {
      p.disconnectedAt = null;
      this.counts.resent++;
      this.publish(this.subjects.call(p.host.id), p);
    }
    this.wake();
  }

  private wake(): void {
    const ws = [...this.waiters];
    this.waiters.clear();
    for (const w of ws) w();
  }

  /** Resolves on the next change of the host table or the connection, or after `ms`. */
  private changed(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(t);
        this.waiters.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.waiters.add(done);
    });
  }

  // ---- errors --------------------------------------------------------------

  private noHostError(call: Call): PoolError {
    if (!this.connected) {
      return new PoolError({
        code: 'PYFLEET_NATS_UNAVAILABLE',
        command: call.command,
        sessionId: call.sessionId,
        taken: false,
        message: `NATS (${serverList(this.options.servers).join(', ')}) has been unreachable for the ${this.queueTimeoutMs} ms (queueTimeoutMs) that ${call.command} waited; the call was not sent. The client keeps reconnecting.`,
      });
    }
    return new PoolError({
      code: 'PYFLEET_NO_HOSTS',
      command: call.command,
      sessionId: call.sessionId,
      taken: false,
      message: `No live host of fleet ${this.fleet} could take ${call.command} within queueTimeoutMs (${this.queueTimeoutMs} ms); the call was not sent. Hosts: ${this.table.describe(call.command)}. Start one with: pyfleet host --fleet ${this.fleet} --module <file> --nats <url>.`,
    });
  }

  private unknownCommand(command: string): PoolError {
    const names = new Set<string>();
    for (const h of this.table.alive()) for (const c of Object.keys(h.hb.commands)) names.add(c);
    return new PoolError({
      code: 'PYFLEET_UNKNOWN_COMMAND',
      command,
      message: `No live host of fleet ${this.fleet} has a command named ${JSON.stringify(command)}; they have: ${[...names].sort().join(', ') || 'none'}. Decorate the handler with @command, and run hosts with that module.`,
    });
  }

  private closedError(command: string | null): PoolError {
    return new PoolError({ code: 'PYFLEET_POOL_CLOSED', command, message: `The fleet client (${this.fleet}) is closed or closing; the call was not sent. Call connectFleet again to send more calls.` });
  }

  // ---- stats, events, close --------------------------------------------------

  stats(): FleetStats {
    const now = performance.now();
    return {
      fleetId: this.id,
      fleet: this.fleet,
      connected: this.connected,
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
      sessions: this.sessionMap?.size ?? 0,
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
    this.closing = true;
    this.wake();
    const until = performance.now() + (options.timeoutMs ?? 10_000);
    while (this.pending.size > 0 && performance.now() < until) await new Promise((r) => setTimeout(r, 20));
    for (const p of [...this.pending.values()]) p.settle(false, new PoolError({ code: 'PYFLEET_POOL_CLOSED', command: p.meta.command, taken: true, message: `The fleet client was closed while host ${p.host.id} had the call to ${p.meta.command}; it may have run.` }));
    if (this.tick) clearInterval(this.tick);
    this.sessionMap?.close();
    this.closed = true;
    await this.nc.drain().catch(() => this.nc.close());
  }
}

/** `fleet.session(id)`: the same calls with `sessionId` set. */
export class FleetSession {
  constructor(
    readonly fleet: Fleet,
    readonly id: string,
  ) {}

  execute<T = unknown>(command: string, args?: unknown, options: Omit<ExecuteOptions, 'sessionId' | 'detailed'> = {}): Promise<T> {
    return this.fleet.execute<T>(command, args, { ...options, sessionId: this.id, detailed: false });
  }

  stream<T = unknown>(command: string, args?: unknown, options: Omit<FleetStreamOptions, 'sessionId'> = {}): AsyncIterableIterator<T> {
    return this.fleet.stream<T>(command, args, { ...options, sessionId: this.id });
  }

  close(): Promise<void> {
    return this.fleet.closeSession(this.id);
  }
}

function publishExhausted(command: string, attempts: number, err: PoolError, reason: string): void {
  if (channels['retry:exhausted'].hasSubscribers) channels['retry:exhausted'].publish({ command, attempts, category: err.category, code: err.code, reason });
}

function asPoolError(e: unknown, command: string): PoolError {
  if (isPoolError(e)) return e;
  return new PoolError({ code: 'PYFLEET_INTERNAL', command, cause: e, message: `Unexpected failure in the fleet client: ${(e as Error)?.message ?? String(e)}. This is likely a pyfleet bug; please report it.` });
}

function badCall(what: string, command?: string): PoolError {
  return new PoolError({ code: 'PYFLEET_INVALID_ARGS', command: command ?? null, message: `Invalid call: ${what}.` });
}

function abortedError(command: string, sessionId: string | null, signal: AbortSignal, taken: boolean): PoolError {
  return new PoolError({
    code: 'PYFLEET_ABORTED',
    command,
    sessionId,
    taken,
    cause: signal.reason,
    message: `${command} was aborted by its AbortSignal${signal.reason instanceof Error ? ` (${signal.reason.message})` : ''}${taken ? '; it was cancelled on its host' : '; it was not sent'}.`,
  });
}

function positive(v: number | undefined, dflt: number, name: string): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) throw new PoolError({ code: 'PYFLEET_INVALID_OPTIONS', message: `Invalid fleet options: ${name} must be a number > 0, got ${String(v)}.` });
  return v;
}
