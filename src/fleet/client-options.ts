import type { ErrorCategory } from '../errors/categories.js';
import { PoolError } from '../errors/pool-error.js';
import type { ExecuteOptions } from '../call/types.js';
import { streamLimits } from '../pool/stream.js';
import type { RetryBudgetOptions } from '../resilience/budget.js';
import type { CircuitSnapshot } from '../resilience/circuit-breaker.js';
import type { NatsAuthOptions } from './connection.js';
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

/** FleetOptions with its defaults applied; a bad number throws PYFLEET_INVALID_OPTIONS. */
export interface FleetSettings {
  requestTimeoutMs: number;
  queueTimeoutMs: number;
  maxAttempts: number;
  /** 0: the session map's entries never expire. */
  sessionMapTtlMs: number;
  suspectAfter: number;
  deadAfter: number;
  circuitBreaker: NonNullable<FleetOptions['circuitBreaker']>;
}

export function fleetSettings(options: FleetOptions): FleetSettings {
  return {
    requestTimeoutMs: positive(options.requestTimeoutMs, 30_000, 'requestTimeoutMs'),
    queueTimeoutMs: positive(options.queueTimeoutMs, 5_000, 'queueTimeoutMs'),
    maxAttempts: positive(options.retry?.maxAttempts, 3, 'retry.maxAttempts'),
    sessionMapTtlMs: options.sessionMapTtlMs === 0 || options.sessionMapTtlMs === undefined ? 0 : positive(options.sessionMapTtlMs, 0, 'sessionMapTtlMs'),
    suspectAfter: options.heartbeat?.suspectAfter ?? 2,
    deadAfter: options.heartbeat?.deadAfter ?? 4,
    circuitBreaker: { failureThreshold: 3, openTimeoutMs: 5_000, successThreshold: 2, halfOpenRequests: 2, ...options.circuitBreaker },
  };
}

/** A stream's own options, checked as the pool checks them, except that the chunk timeout defaults to 30 s (the pool's to none). */
export function fleetStreamLimits(command: string, options: FleetStreamOptions): { hwm: number; chunkTimeoutMs: number } {
  const { hwm, chunk } = streamLimits(command, options);
  return { hwm, chunkTimeoutMs: chunk ?? 30_000 };
}

function positive(v: number | undefined, dflt: number, name: string): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) throw new PoolError({ code: 'PYFLEET_INVALID_OPTIONS', message: `Invalid fleet options: ${name} must be a number > 0, got ${String(v)}.` });
  return v;
}
