/**
 * Every option default, in one place (the README's option tables list the same values). Lives at
 * the bottom of the import graph so the breaker, the backoff, the retry budget, the recovery, the
 * worker and the adapters read their defaults here instead of keeping copies.
 */
export const DEFAULTS = Object.freeze({
  python: 'python3',
  minWorkers: 1,
  requestTimeoutMs: 30_000,
  startupTimeoutMs: 10_000,
  queueTimeoutMs: 5_000,
  maxQueue: 1_000,
  idleTimeoutMs: 30_000,
  sessionTtlMs: 300_000,
  pipelineDepth: 1,
  concurrency: 1,
  nonFinite: 'null',
  highWaterMark: 16,
  validateArgs: false,
  maxFrameBytes: 64 * 1024 * 1024,
  cancelGraceMs: 2_000,
  healthCheck: Object.freeze({ intervalMs: 1_000, maxMissed: 3 }),
  recycle: Object.freeze({ maxRequests: 0, maxMemoryMb: 0 }),
  restart: Object.freeze({ baseDelayMs: 100, maxDelayMs: 10_000 }),
  retry: Object.freeze({ maxAttempts: 3, backoff: 'exponential', baseDelayMs: 1_000, maxDelayMs: 30_000 }),
  retryBudget: Object.freeze({ ratio: 0.2, minRetriesPerSecond: 10, windowMs: 10_000, buckets: 10 }),
  circuitBreaker: Object.freeze({ failureThreshold: 5, successThreshold: 3, openTimeoutMs: 60_000, halfOpenRequests: 3 }),
  /** The seed's `calculate_max_recovery_time` base times per severity (its `_ -> 10_000` is warning). */
  recoveryTimeLimits: Object.freeze({ critical: 5_000, major: 30_000, minor: 60_000, warning: 10_000 }),
  /** retry_with_backoff: each re-send's timeout is the expired one times this. */
  recoveryTimeoutFactor: 2,
  poison: Object.freeze({ maxDeaths: 2, coolDownMs: 60_000 }),
  sessionStore: 'memory',
  maxSessionBytes: 16 * 1024 * 1024,
  snapshotFailure: 'warn',
  /** `connectFleet`'s options and `pyfleet host`'s (docs/fleet.md lists them). */
  fleet: Object.freeze({
    /** Time for the first connection to NATS (the client's and a host's). */
    startupTimeoutMs: 5_000,
    requestTimeoutMs: 30_000,
    queueTimeoutMs: 5_000,
    /** Hosts a call may be sent to, the first included. */
    maxAttempts: 3,
    /** The circuit each host gets on a client. */
    circuitBreaker: Object.freeze({ failureThreshold: 3, successThreshold: 2, openTimeoutMs: 5_000, halfOpenRequests: 2 }),
    /** Silence, in a host's heartbeat intervals, before it is suspected and taken for dead. */
    heartbeat: Object.freeze({ suspectAfter: 2, deadAfter: 4 }),
    /** 0: the session map's entries never expire. */
    sessionMapTtlMs: 0,
    /** fleet.close() waits this long for calls in flight. */
    closeTimeoutMs: 10_000,
    /** A host's heartbeat period. */
    heartbeatMs: 500,
    /** How long a host keeps a reply for a re-sent request, and how many. */
    replyCache: Object.freeze({ ttlMs: 60_000, maxEntries: 100_000 }),
  }),
  /** One call's records this large, or this slow to pickle, make session:large (once per session). */
  sessionLarge: Object.freeze({ bytes: 1024 * 1024, pickleMs: 5 }),
} as const);
