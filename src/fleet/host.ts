import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { DEFAULTS } from '../defaults.js';
import { PoolError, isPoolError } from '../errors/pool-error.js';
import { createPool, type Pool } from '../pool/pool.js';
import type { PoolOptions } from '../pool/options.js';
import { defaultLogger, type Logger } from '../util/logger.js';
import { connectNats, type NatsAuthOptions } from './connection.js';
import type { Goodbye, Heartbeat } from './heartbeat.js';
import { hostPoolOptions, type HostSessionOptions, type StoreGuard } from './host-pool-options.js';
import { HostSessions } from './host-sessions.js';
import { ReplyCache, type CachedReply } from './reply-cache.js';
import { SessionMap } from './session-map.js';
import { StreamServer, attemptKey, type StreamControl, type StreamSource } from './stream-server.js';
import { protocolError } from './client-errors.js';
import { decodePayload, encodeValuePayload } from './values.js';
import { fleetSubjects, validateHostId, type FleetSubjects } from './subjects.js';
import { decodeText, encodeError, encodeText, readCallMeta, statusHeaders, type CallMeta } from './wire.js';
import type { SessionStore } from '../sessions/store.js';
import { FLEET_PROTOCOL, PYFLEET_VERSION } from './version.js';
import type { CommandInfo } from '../protocol/messages.js';

export interface HostOptions extends NatsAuthOptions, HostSessionOptions {
  fleet: string;
  /** The local pool (module, workers, timeouts...). */
  pool: PoolOptions;
  /** Unique in the fleet (default: hostname-pid-random). A restarted host gets a new one. */
  hostId?: string;
  /** Heartbeat period (default 500 ms); clients judge silence in these intervals. */
  heartbeatMs?: number;
  /** Announced with the commands (default: a hash of the module file, or the module name). */
  moduleVersion?: string;
  /** Time for the first connection to NATS (default 5 000 ms). */
  connectTimeoutMs?: number;
  /** How long a reply is kept for a re-sent request (default 60 000 ms), and how many (default 100 000). */
  replyCache?: { ttlMs?: number; maxEntries?: number };
  logger?: Logger;
  /** @internal Where streams come from (default: pool.stream when the pool has it, else the command's single value). */
  streamSource?: StreamSource;
}

const NOT_DRAINING = 0;
const DRAINING = 1;

function moduleVersionOf(module: string): string {
  try {
    return createHash('sha256').update(readFileSync(module)).digest('hex').slice(0, 12);
  } catch {
    return module;
  }
}

/**
 * The host's streams come from its pool. The host pulls an item only when the remote consumer has
 * credit for it, so the pool's own credit to Python follows the consumer across NATS.
 */
export function poolStreamSource(pool: Pool): StreamSource {
  return (command, args, o) => pool.stream(command, args, o);
}

/** Starts a host: the local pool, its subscriptions, its heartbeats. */
export async function startHost(o: HostOptions): Promise<FleetHost> {
  const subjects = fleetSubjects(o.fleet);
  const id = validateHostId(o.hostId ?? `${os.hostname().replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 32)}-${process.pid}-${randomBytes(3).toString('hex')}`);
  // The guard asks the host, which exists only once the pool does.
  let guard: StoreGuard = { fence: () => undefined };
  const { options, durableSessions, store } = hostPoolOptions(o.pool, o, { fence: (sid) => guard.fence(sid) });
  const nc = await connectNats({ ...o, name: `pyfleet-host:${o.fleet}:${id}`, timeoutMs: o.connectTimeoutMs ?? DEFAULTS.fleet.startupTimeoutMs });
  let pool: Pool;
  try {
    // One attempt per message: every retry, re-send and decision of the matrix is the client's.
    pool = await createPool({ ...options, retry: { ...options.retry, maxAttempts: 1, budget: false } });
  } catch (e) {
    await nc.close();
    throw e;
  }
  const host = new FleetHost(o, id, subjects, nc, pool, durableSessions, store);
  guard = host.guard;
  try {
    await host.start();
  } catch (e) {
    await host.close();
    throw e;
  }
  return host;
}

export class FleetHost {
  readonly fleet: string;
  readonly moduleVersion: string;
  private readonly logger: Logger;
  private readonly heartbeatMs: number;
  private readonly replies: ReplyCache;
  private readonly streams: StreamServer;
  private readonly subs: Subscription[] = [];
  private readonly sessions: HostSessions;
  /** Abort controllers of calls in flight, by call id (a client's cancel). */
  private readonly aborts = new Map<string, AbortController>();
  private seq = 0;
  private timer: NodeJS.Timeout | null = null;
  private state = NOT_DRAINING;
  private streamsInFlight = 0;
  private drainPromise: Promise<void> | null = null;
  private closed = false;
  private readonly startedAt = Date.now();
  private readonly idleWaiters: Array<() => void> = [];

  constructor(
    private readonly o: HostOptions,
    readonly id: string,
    private readonly subjects: FleetSubjects,
    readonly nc: NatsConnection,
    readonly pool: Pool,
    readonly durableSessions: boolean,
    store: SessionStore | null,
  ) {
    this.fleet = o.fleet;
    this.logger = o.logger ?? defaultLogger();
    this.heartbeatMs = o.heartbeatMs ?? DEFAULTS.fleet.heartbeatMs;
    this.moduleVersion = o.moduleVersion ?? moduleVersionOf(o.pool.module);
    const rc = DEFAULTS.fleet.replyCache;
    this.replies = new ReplyCache(o.replyCache?.ttlMs ?? rc.ttlMs, o.replyCache?.maxEntries ?? rc.maxEntries);
    this.streams = new StreamServer(nc, id, o.streamSource ?? poolStreamSource(pool));
    this.sessions = new HostSessions(id, pool, durableSessions, store);
  }

  /** What the shared session store asks of this host (fences, sessions being dropped). */
  get guard(): StoreGuard {
    return this.sessions;
  }

  async start(): Promise<void> {
    const s = this.subjects;
    const cb = (fn: (m: Msg) => void) => (err: Error | null, m: Msg): void => {
      if (err === null) fn(m);
    };
    this.subs.push(this.nc.subscribe(s.call(this.id), { callback: cb((m) => this.onCall(m)) }));
    this.subs.push(this.nc.subscribe(s.stream(this.id), { callback: cb((m) => this.onStream(m)) }));
    this.subs.push(this.nc.subscribe(s.control(this.id), { callback: cb((m) => this.onControl(m)) }));
    this.subs.push(this.nc.subscribe(s.discover, { callback: cb(() => this.heartbeat()) }));
    if (this.durableSessions) this.sessions.map = await SessionMap.open(this.nc, s.sessionBucket, 0, (sid, place) => this.sessions.placed(sid, place));
    await this.nc.flush();
    this.heartbeat();
    this.timer = setInterval(() => this.heartbeat(), this.heartbeatMs);
    this.timer.unref();
    void (async () => {
      for await (const st of this.nc.status()) {
        if (st.type === 'reconnect') {
          this.logger.info({ hostId: this.id, server: st.server }, 'reconnected to NATS');
          this.heartbeat();
        } else if (st.type === 'disconnect') this.logger.warn({ hostId: this.id }, 'disconnected from NATS; reconnecting');
      }
    })().catch(() => {});
  }

  /** Calls and streams running here now. */
  get inFlight(): number {
    return this.replies.inFlight + this.streamsInFlight;
  }

  get draining(): boolean {
    return this.state === DRAINING;
  }

  heartbeatMessage(): Heartbeat {
    const stats = this.pool.stats();
    const depth = this.pool.options.pipelineDepth;
    return {
      t: 'hb',
      id: this.id,
      fleet: this.fleet,
      seq: ++this.seq,
      state: this.state === DRAINING ? 'draining' : 'up',
      intervalMs: this.heartbeatMs,
      protocol: FLEET_PROTOCOL,
      version: PYFLEET_VERSION,
      moduleVersion: this.moduleVersion,
      module: this.o.pool.module,
      commands: Object.fromEntries(Object.entries(this.pool.registeredCommands).map(([k, v]) => [k, callFacts(v)])),
      load: { inFlight: this.inFlight, queued: stats.queue.length, capacity: Math.max(1, this.pool.options.max * depth) },
      sessions: this.sessions.size,
      durableSessions: this.durableSessions,
      pid: process.pid,
      hostname: os.hostname(),
      startedAt: this.startedAt,
      pool: stats,
    };
  }

  private heartbeat(): void {
    if (this.closed || this.nc.isClosed()) return;
    try {
      this.nc.publish(this.subjects.hosts, encodeText(JSON.stringify(this.heartbeatMessage())));
    } catch (e) {
      this.logger.warn({ hostId: this.id, err: e }, 'heartbeat not sent');
    }
    this.sessions.expire(performance.now());
  }

  private onCall(m: Msg): void {
    const meta = readCallMeta(m.headers);
    if (typeof meta === 'string') {
      this.respond(m, { status: 'err', payload: encodeError(new PoolError({ code: 'PYFLEET_INVALID_ARGS', message: `Malformed fleet request: ${meta}.` }), this.id) });
      return;
    }
    // A re-send of an attempt this host has (or had): join it, or answer it again.
    const key = attemptKey(meta.id, meta.attempt);
    const known = this.replies.lookup(key);
    if (known !== undefined) {
      if (known instanceof Promise) void known.then((r) => this.respond(m, r));
      else this.respond(m, known);
      return;
    }
    const refusal = this.refuse(meta);
    if (refusal !== null) {
      this.respond(m, { status: 'err', payload: encodeError(refusal, this.id) });
      return;
    }
    let args: unknown;
    try {
      args = decodePayload(m.data, 'a');
    } catch (e) {
      this.respond(m, { status: 'err', payload: encodeError(badArgs(meta, this.id, e), this.id) });
      return;
    }
    void this.replies.run(key, () => this.runCall(meta, key, args)).then((r) => {
      this.respond(m, r);
      this.checkIdle();
    });
  }

  /** Not taken: the client may send the call elsewhere, whatever its idempotency. */
  private refuse(meta: CallMeta): PoolError | null {
    if (meta.protocol !== FLEET_PROTOCOL) {
      const e = protocolError(`The client's request for ${meta.command}`, meta.protocol, FLEET_PROTOCOL);
      e.command = meta.command;
      return e;
    }
    if (this.state === DRAINING || this.closed) {
      return new PoolError({ code: 'PYFLEET_POOL_CLOSED', command: meta.command, taken: false, message: `Host ${this.id} is draining (shutting down) and takes no new calls; the call was not run.` });
    }
    if (meta.deadline > 0 && Date.now() > meta.deadline) {
      return new PoolError({ code: 'PYFLEET_TIMEOUT', command: meta.command, taken: false, message: `The call to ${meta.command} reached host ${this.id} after its caller's deadline; it was not run.` });
    }
    return meta.sessionId === null ? null : this.sessions.refuse(meta, this.id);
  }

  private async runCall(meta: CallMeta, key: string, args: unknown): Promise<CachedReply> {
    const ac = new AbortController();
    this.aborts.set(key, ac);
    try {
      // The client's timeout for this attempt: the call's, else the command's, else its default.
      const exec = (): Promise<unknown> =>
        this.pool.execute(meta.command, args, {
          timeoutMs: meta.timeoutMs,
          signal: ac.signal,
          ...(meta.idempotent !== undefined ? { idempotent: meta.idempotent } : {}),
          ...(meta.sessionId !== null ? { sessionId: meta.sessionId } : {}),
        });
      const value = meta.sessionId === null ? await exec() : await this.sessions.run(meta, exec);
      const payload = encodeValuePayload(value);
      const max = this.maxPayload;
      if (payload.length > max - 1024) {
        return {
          status: 'err',
          payload: encodeError(
            new PoolError({ code: 'PYFLEET_FRAME_TOO_LARGE', command: meta.command, taken: true, message: `The result of ${meta.command} takes ${payload.length} bytes, over the NATS server's max_payload (${max}) less 1 KiB for headers; it ran on host ${this.id} but cannot be sent back. Return a reference (a path, a key) instead, or raise max_payload on the server.`, details: { bytes: payload.length, maxPayload: max } }),
            this.id,
          ),
        };
      }
      return { status: 'ok', payload };
    } catch (e) {
      if (isPoolError(e) && e.code === 'PYFLEET_POOL_CLOSED') e.taken = false;
      return { status: 'err', payload: encodeError(e, this.id) };
    } finally {
      this.aborts.delete(key);
    }
  }

  /** The server's largest message. */
  get maxPayload(): number {
    return this.nc.info?.max_payload ?? 1_048_576;
  }

  private onStream(m: Msg): void {
    const meta = readCallMeta(m.headers);
    if (typeof meta === 'string' || !m.reply) return;
    const refusal = this.refuse(meta);
    if (refusal !== null) {
      this.nc.publish(m.reply, encodeError(refusal, this.id), { headers: statusHeaders('err', this.id, 0) });
      return;
    }
    let args: unknown;
    try {
      args = decodePayload(m.data, 'a');
    } catch (e) {
      this.nc.publish(m.reply, encodeError(badArgs(meta, this.id, e), this.id), { headers: statusHeaders('err', this.id, 0) });
      return;
    }
    this.streamsInFlight++;
    const run = (): Promise<void> => this.streams.serve(m, meta, args, this.maxPayload);
    const p = meta.sessionId === null ? run() : this.sessions.run(meta, run);
    void p.finally(() => {
      this.streamsInFlight--;
      this.checkIdle();
    });
  }

  private onControl(m: Msg): void {
    let c: { t?: string; id?: string; at?: number; n?: number; sid?: string; fence?: number };
    try {
      c = JSON.parse(decodeText(m.data)) as typeof c;
    } catch {
      return;
    }
    switch (c.t) {
      case 'ping':
        m.respond(encodeText(JSON.stringify({ id: this.id, state: this.state === DRAINING ? 'draining' : 'up' })));
        return;
      case 'credit':
      case 'cancel':
        if (typeof c.id === 'string' && typeof c.at === 'number') {
          this.streams.control(c as StreamControl);
          if (c.t === 'cancel') this.aborts.get(attemptKey(c.id, c.at))?.abort(new Error('cancelled by the caller'));
        }
        return;
      case 'close_session':
        if (typeof c.sid === 'string') {
          void this.sessions.close(c.sid, typeof c.fence === 'number' ? c.fence : 0).then(
            () => m.respond(encodeText('{"ok":true}')),
            () => m.respond(encodeText('{"ok":false}')),
          );
        }
        return;
      default:
    }
  }

  private respond(m: Msg, r: CachedReply): void {
    if (!m.reply || this.nc.isClosed()) return;
    try {
      m.respond(r.payload, { headers: statusHeaders(r.status, this.id) });
    } catch (e) {
      this.logger.warn({ hostId: this.id, err: e }, 'reply not sent');
    }
  }

  private checkIdle(): void {
    if (this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  /**
   * SIGTERM: stop taking calls (clients see 'draining' at once and stop routing here; a call
   * that still arrives is refused as not taken, so the client sends it elsewhere), finish the
   * calls in flight, close the pool, announce leaving, and close the connection.
   */
  drain(reason = 'drained'): Promise<void> {
    this.drainPromise ??= this.doDrain(reason);
    return this.drainPromise;
  }

  private async doDrain(reason: string): Promise<void> {
    this.state = DRAINING;
    this.heartbeat();
    if (this.inFlight > 0) await new Promise<void>((r) => this.idleWaiters.push(r));
    await this.pool.close();
    await this.leave(reason);
  }

  private async leave(reason: string): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.sessions.map?.close();
    this.streams.cancelAll('the host is closing');
    if (!this.nc.isClosed()) {
      const bye: Goodbye = { t: 'bye', id: this.id, reason };
      try {
        this.nc.publish(this.subjects.hosts, encodeText(JSON.stringify(bye)));
        await this.nc.drain();
      } catch {
        await this.nc.close().catch(() => {});
      }
    }
  }

  /** Closes now: calls in flight get the pool's close (drained within its timeout), then leave. */
  async close(): Promise<void> {
    this.state = DRAINING;
    await this.pool.close();
    await this.leave('closed');
  }

  /** Worker pids (the orphan checks use them). */
  pids(): number[] {
    return this.pool.pids();
  }
}

function badArgs(meta: CallMeta, hostId: string, e: unknown): PoolError {
  return new PoolError({ code: 'PYFLEET_INVALID_ARGS', command: meta.command, cause: e, message: `The arguments of ${meta.command} that reached host ${hostId} are neither JSON nor a valid binary value (${(e as Error)?.message ?? String(e)}).` });
}

/** What a client needs to know of a command to call it (its hello entry without the schemas and docs). */
function callFacts(c: CommandInfo): CommandInfo {
  return { idempotent: c.idempotent, kind: c.kind, stream: c.stream, timeout: c.timeout, maxConcurrency: c.maxConcurrency, session: c.session };
}
