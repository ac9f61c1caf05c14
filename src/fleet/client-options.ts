import type { ErrorCategory } from '../errors/categories.js';
import { DEFAULTS } from '../defaults.js';
import { OptionChecks, ms, show } from '../errors/invalid.js';
import { resolveCallOptions, type CallSettings } from '../call/options.js';
import type { ExecuteOptions } from '../call/types.js';
import { streamLimits } from '../call/stream.js';
import type { RetryBudgetOptions } from '../resilience/budget.js';
import type { CircuitSnapshot } from '../resilience/circuit-breaker.js';
import { serverList, type NatsAuthOptions } from './connection.js';
import { validateFleetName } from './subjects.js';
import type { Heartbeat } from './heartbeat.js';
import type { HostState } from './host-table.js';

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

/** The client's call counters, shared by the parts that count (FleetStats['calls'] is a copy). */
export type CallCounts = FleetStats['calls'];

/** FleetOptions checked as a pool's are (an unknown key or a bad value throws PYFLEET_INVALID_OPTIONS naming it), with every default filled in. */
export interface FleetSettings {
  fleet: string;
  servers: string[];
  auth: Pick<FleetOptions, 'token' | 'user' | 'pass'>;
  name: string;
  startupTimeoutMs: number;
  requestTimeoutMs: number;
  queueTimeoutMs: number;
  maxAttempts: number;
  budget: CallSettings['retry']['budget'];
  /** 0: the session map's entries never expire. */
  sessionMapTtlMs: number;
  suspectAfter: number;
  deadAfter: number;
  circuitBreaker: CallSettings['circuitBreaker'];
}

const KNOWN = ['servers', 'token', 'user', 'pass', 'fleet', 'name', 'startupTimeoutMs', 'requestTimeoutMs', 'queueTimeoutMs', 'retry', 'circuitBreaker', 'heartbeat', 'sessionMapTtlMs'];

export function resolveFleetOptions(input: FleetOptions): FleetSettings {
  const c: OptionChecks = new OptionChecks('fleet options');
  const o = c.obj(input, 'options') as FleetOptions & Record<string, unknown>;
  c.onlyKeys(o, null, KNOWN);
  const fleet = validateFleetName(o.fleet);
  const d = DEFAULTS.fleet;
  const call = resolveCallOptions(o, c, { requestTimeoutMs: d.requestTimeoutMs, queueTimeoutMs: d.queueTimeoutMs, maxAttempts: d.maxAttempts, circuitBreaker: d.circuitBreaker });
  const hb = c.obj(o.heartbeat, 'heartbeat');
  c.onlyKeys(hb, 'heartbeat', ['suspectAfter', 'deadAfter']);
  const suspectAfter = c.num(hb.suspectAfter, d.heartbeat.suspectAfter, 'heartbeat.suspectAfter', ms(1), 'a number of heartbeat intervals >= 1');
  for (const k of ['token', 'user', 'pass', 'name'] as const) if (o[k] !== undefined && typeof o[k] !== 'string') c.fail(`${k} must be a string, got ${show(o[k])}`);
  return {
    fleet,
    servers: o.servers === undefined ? c.fail('servers is required: the NATS server URL(s), e.g. nats://127.0.0.1:4222') : serverList(o.servers),
    auth: { token: o.token, user: o.user, pass: o.pass },
    name: o.name ?? `pyfleet-client:${fleet}`,
    startupTimeoutMs: c.num(o.startupTimeoutMs, d.startupTimeoutMs, 'startupTimeoutMs', ms(1), 'a number of ms >= 1'),
    requestTimeoutMs: call.requestTimeoutMs,
    queueTimeoutMs: call.queueTimeoutMs,
    maxAttempts: call.retry.maxAttempts,
    budget: call.retry.budget,
    sessionMapTtlMs: c.num(o.sessionMapTtlMs, d.sessionMapTtlMs, 'sessionMapTtlMs', ms(0), 'a number of ms >= 0 (0: entries never expire)'),
    suspectAfter,
    deadAfter: c.num(hb.deadAfter, Math.max(d.heartbeat.deadAfter, suspectAfter), 'heartbeat.deadAfter', (v) => ms(suspectAfter)(v), `a number of heartbeat intervals >= suspectAfter (${suspectAfter})`),
    circuitBreaker: call.circuitBreaker,
  };
}

/** A stream's own options, checked as the pool checks them, except that the chunk timeout defaults to 30 s (the pool's to none). */
export function fleetStreamLimits(command: string, options: FleetStreamOptions): { hwm: number; chunkTimeoutMs: number } {
  const { hwm, chunk } = streamLimits(command, options);
  return { hwm, chunkTimeoutMs: chunk ?? DEFAULTS.fleet.chunkTimeoutMs };
}
