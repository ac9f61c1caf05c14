import type { NatsConnection } from '@nats-io/transport-node';
import type { PoolError } from '../errors/pool-error.js';
import { abortedError } from '../call/errors.js';
import { closedError, natsDownError, noHostsError, sessionMapError, unknownCommandError } from './client-errors.js';
import type { ClientState } from './client-state.js';
import type { FleetCall, Route } from './call.js';
import type { HostEntry, HostTable } from './host-table.js';
import { SessionMap } from './session-map.js';
import type { FleetSubjects } from './subjects.js';

export interface RouterSettings {
  fleet: string;
  /** The NATS servers, for the error of a call that waited out an outage. */
  servers: () => string[];
  queueTimeoutMs: number;
  sessionMapTtlMs: number;
}

/** An attempt's host, and what lets the session's next call be routed once this one is sent. */
export interface Turn {
  route: Route;
  release(): void;
}

/**
 * Picks the host for each attempt: for a call without a session, the least loaded live host
 * that serves the command (avoiding those it already failed on); for a session's call, the host
 * the session map names, placing or moving the session as needed. Waits within queueTimeoutMs
 * for a host (or for NATS) to come.
 */
export class Router {
  private sessionMapP: Promise<SessionMap> | null = null;
  /** Once opened: its size is in the client's stats, and it is closed with the client. */
  sessionMap: SessionMap | null = null;
  private readonly routeTails = new Map<string, Promise<void>>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly subjects: FleetSubjects,
    private readonly table: HostTable,
    private readonly state: ClientState,
    private readonly o: RouterSettings,
  ) {}

  /**
   * Where the call's next attempt goes. A session's calls from this client are routed and sent
   * in the order they were made: the caller releases the turn once the attempt is sent (or its
   * send threw).
   */
  async take(call: FleetCall): Promise<Turn> {
    const release = call.sessionId === null ? () => {} : await this.routeTurn(call.sessionId);
    let route: Route;
    try {
      route = call.sessionId === null ? await this.acquire(call) : await this.acquireSession(call);
    } catch (e) {
      release();
      throw e;
    }
    // Aborted while it waited for its session's turn or for a host: not sent.
    if (call.signal?.aborted) {
      const err = abortedError(call, call.signal);
      route.host.breaker.leaveFailed(route.ticket, err);
      release();
      throw err;
    }
    return { route, release };
  }

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
   * and go there. Not a host failure, nor an attempt.
   */
  async sessionMoved(err: PoolError, call: FleetCall, host: HostEntry, ticket: number): Promise<boolean> {
    if (err.details?.sessionMoved !== true || err.taken || call.sessionId === null) return false;
    host.breaker.leaveOk(ticket);
    const map = await this.sessions();
    await map.lookup(call.sessionId).catch(() => null);
    return true;
  }

  /**
   * Runs `once` until it has a route, within queueTimeoutMs: while the client is disconnected, or
   * no host can take the call yet, it waits for a change of the host table or the connection.
   */
  private async waitFor(call: FleetCall, deadline: number, once: () => Promise<Route | 'again' | null>): Promise<Route> {
    for (;;) {
      if (this.state.closing) throw closedError(this.o.fleet, call.command);
      if (this.state.connected) {
        const r = await once();
        if (r === 'again') continue;
        if (r !== null) return r;
        if (this.table.anyAliveServes(call.command) === false) throw this.unknownCommand(call.command);
      }
      const left = deadline - performance.now();
      if (left <= 0) throw this.noHost(call);
      await this.state.changed(Math.min(left, 250));
      if (call.signal?.aborted) throw abortedError(call, call.signal);
    }
  }

  /** A host for a session-less call: the least loaded live one that has the command. */
  private acquire(call: FleetCall): Promise<Route> {
    return this.waitFor(call, performance.now() + this.o.queueTimeoutMs, async () => {
      const h = this.table.pick(call.command, call.tried);
      if (h !== null) {
        try {
          return { host: h, ticket: h.breaker.enter(), epoch: 0, gen: '', fence: 0 };
        } catch {
          return null; // half-open and its trials busy: wait for a change
        }
      }
      const open = this.table.alive().filter((x) => x.hb.commands[call.command] !== undefined);
      // Every circuit refuses: fail now with the circuit's own error rather than wait. (If its
      // open timeout ended just now, the ticket goes back and the next round picks the host.)
      if (open.length === 0 || open.some((x) => x.breaker.allowsRequests)) return null;
      const b = open[0].breaker;
      b.leaveFailed(b.enter(), null);
      return 'again';
    });
  }

  /** The session's host, from the map (placing or moving the session as needed). */
  private async acquireSession(call: FleetCall): Promise<Route> {
    const sid = call.sessionId!;
    const deadline = performance.now() + this.o.queueTimeoutMs;
    const map = await this.withDeadline(this.sessions(), deadline, call);
    return this.waitFor(call, deadline, async () => {
      const place = map.cached(sid) ?? (await this.withDeadline(map.lookup(sid), deadline, call));
      if (place === null) {
        const to = this.table.pick(call.command, null);
        if (to === null) return null;
        await this.withDeadline(map.place(sid, to.id), deadline, call);
        return 'again';
      }
      const h = this.table.get(place.host);
      if (h !== undefined && h.state === 'alive') return { host: h, ticket: h.breaker.enter(), epoch: place.epoch, gen: place.gen, fence: place.revision };
      const warm = performance.now() - Math.max(this.state.connectedAt, this.state.reconnectedAt) > 3_000;
      if ((h === undefined && warm) || (h !== undefined && (h.state === 'dead' || h.state === 'left' || h.state === 'draining'))) {
        const to = this.table.pick(call.command, new Set([place.host]));
        if (to !== null && to.id !== place.host) {
          await this.withDeadline(map.move(sid, place, to.id), deadline, call);
          return 'again';
        }
      }
      return null;
    });
  }

  private async withDeadline<T>(p: Promise<T>, deadline: number, call: FleetCall): Promise<T> {
    let t: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        p,
        new Promise<never>((_, reject) => {
          t = setTimeout(() => reject(this.noHost(call)), Math.max(0, deadline - performance.now()));
        }),
      ]);
    } finally {
      clearTimeout(t);
    }
  }

  /** The session map, opened on first use (a client without sessions needs no JetStream). */
  sessions(): Promise<SessionMap> {
    this.sessionMapP ??= SessionMap.open(this.nc, this.subjects.sessionBucket, this.o.sessionMapTtlMs).then(
      (m) => {
        this.sessionMap = m;
        return m;
      },
      (e: unknown) => {
        this.sessionMapP = null;
        throw sessionMapError(this.o.fleet, this.subjects.sessionBucket, e);
      },
    );
    return this.sessionMapP;
  }

  /** The error of a call no host took within queueTimeoutMs: NATS was down, or no live host has it. */
  noHost(call: { command: string; sessionId: string | null }): PoolError {
    if (!this.state.connected) return natsDownError(call, this.o.servers(), this.o.queueTimeoutMs);
    return noHostsError(call, this.o.fleet, this.o.queueTimeoutMs, this.table.describe(call.command));
  }

  private unknownCommand(command: string): PoolError {
    return unknownCommandError(this.o.fleet, command, this.table.commandNames());
  }
}
