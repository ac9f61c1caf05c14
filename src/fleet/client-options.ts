import { CALL_OPTION_KEYS, resolveCallOptions, type CallOptions, type CallSettings } from '../call/options.js';
import type { CallCounts } from '../call/counters.js';
import type { StreamOptions } from '../call/types.js';
import { DEFAULTS } from '../defaults.js';
import type { ErrorCategory } from '../errors/categories.js';
import { OptionChecks, ms, show } from '../errors/invalid.js';
import type { CircuitSnapshot } from '../resilience/circuit-breaker.js';
import type { RecoveryMetrics } from '../resilience/recovery/types.js';
import { serverList, type NatsAuthOptions } from './connection.js';
import type { Heartbeat } from './heartbeat.js';
import type { HostState } from './host-table.js';
import { validateFleetName } from './subjects.js';

/**
 * `connectFleet`'s options: a pool's call options (requestTimeoutMs, queueTimeoutMs, retry,
 * policy, recovery, fallback, poison, logger; `circuitBreaker` is the circuit each host gets on
 * this client), the NATS connection, and what only a fleet has. Defaults: `DEFAULTS.fleet`.
 */
export interface FleetOptions extends NatsAuthOptions, CallOptions {
  /** The fleet's name (one subject token): hosts started with the same --fleet serve it. */
  fleet: string;
  /** Time to connect to NATS at start-up (default 5 000 ms); connectFleet rejects after it. */
  startupTimeoutMs?: number;
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

/** A fleet stream's options are a pool stream's. */
export type FleetStreamOptions = StreamOptions;

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
  /** A pool's call counts, and `resent`: requests published again to the same host (a reply that may have been lost). */
  calls: CallCounts & { resent: number };
  errorsByCategory: Record<ErrorCategory, number>;
  retryBudget: { calls: number; retries: number; denied: number } | null;
  recoveries: RecoveryMetrics;
  poison: { quarantined: number; refused: number };
  sessions: number;
}

/** FleetOptions checked as a pool's are (an unknown key or a bad value throws PYFLEET_INVALID_OPTIONS naming it), with every default filled in. */
export interface FleetSettings extends CallSettings {
  fleet: string;
  servers: string[];
  auth: Pick<FleetOptions, 'token' | 'user' | 'pass'>;
  name: string;
  startupTimeoutMs: number;
  /** 0: the session map's entries never expire. */
  sessionMapTtlMs: number;
  suspectAfter: number;
  deadAfter: number;
}

const KNOWN = [...CALL_OPTION_KEYS, 'servers', 'token', 'user', 'pass', 'fleet', 'name', 'startupTimeoutMs', 'heartbeat', 'sessionMapTtlMs'];

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
    ...call,
    fleet,
    servers: o.servers === undefined ? c.fail('servers is required: the NATS server URL(s), e.g. nats://127.0.0.1:4222') : serverList(o.servers),
    auth: { token: o.token, user: o.user, pass: o.pass },
    name: o.name ?? `pyfleet-client:${fleet}`,
    startupTimeoutMs: c.num(o.startupTimeoutMs, d.startupTimeoutMs, 'startupTimeoutMs', ms(1), 'a number of ms >= 1'),
    sessionMapTtlMs: c.num(o.sessionMapTtlMs, d.sessionMapTtlMs, 'sessionMapTtlMs', ms(0), 'a number of ms >= 0 (0: entries never expire)'),
    suspectAfter,
    deadAfter: c.num(hb.deadAfter, Math.max(d.heartbeat.deadAfter, suspectAfter), 'heartbeat.deadAfter', ms(suspectAfter), `a number of heartbeat intervals >= suspectAfter (${suspectAfter})`),
  };
}
