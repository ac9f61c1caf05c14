import os from 'node:os';
import { DEFAULTS } from '../defaults.js';
import { validatePolicyOverrides, type PolicyOverrides } from '../errors/policy.js';
import { isBackoffStrategy, type BackoffStrategy } from '../resilience/backoff.js';
import type { RecoveryTableOverrides, RecoveryTimeLimits } from '../resilience/recovery/types.js';
import type { Adapter } from '../adapters/adapter.js';
import type { Logger } from '../util/logger.js';
import { randomBytes } from 'node:crypto';
import type { SessionStore } from '../sessions/store.js';
import { invalidOption } from './invalid.js';
import { validateChaos, type ChaosOptions, type ChaosConfig } from './chaos.js';

export { DEFAULTS };

/** What `createPool` accepts. Every default lives in `DEFAULTS` (src/defaults.ts) and in the README's table. */
export interface PoolOptions {
  /** A `.py` file path or a dotted module name whose `@command` handlers the workers serve. Required. */
  module: string;
  /** The interpreter (default: `$PYFLEET_PYTHON` or `python3`). Resolved to its real path once. */
  python?: string;
  /** Worker count: a number (min = max), or bounds. Default min 1, max = CPU count. */
  workers?: number | { min?: number; max?: number };
  /** Time for one attempt on one worker (default 30 000 ms). */
  requestTimeoutMs?: number;
  /** Time for a worker to start and say hello (default 10 000 ms). */
  startupTimeoutMs?: number;
  /** Time a call may wait for a free worker (default 5 000 ms). */
  queueTimeoutMs?: number;
  /** Calls that may wait for a worker; one more is refused at once (default 1 000). */
  maxQueue?: number;
  /** A worker above `min` idle this long is stopped (default 30 000 ms). */
  idleTimeoutMs?: number;
  /** A session unused this long is dropped, its state freed in the worker (default 300 000 ms). */
  sessionTtlMs?: number;
  /** Idempotent plain `def` calls sent to one worker before the first answer (default 1: no pipelining). */
  pipelineDepth?: number;
  /** `async def` and `@command(threaded=True)` calls one worker runs at once (default 1). */
  concurrency?: number;
  /** NaN and ±Infinity in args and results: `'null'` (default, as JSON) or `'error'` (refused, naming the path). */
  nonFinite?: 'null' | 'error';
  /** Check each call's args against its command's schema (from its Python type hints) at the call site (default false). */
  validateArgs?: boolean;
  /** Largest protocol frame in either direction (default 64 MiB). */
  maxFrameBytes?: number;
  /** After a timeout or abort, time the worker gets to acknowledge the cancel before it is killed (default 2 000 ms). */
  cancelGraceMs?: number;
  healthCheck?: { intervalMs?: number; maxMissed?: number };
  recycle?: { maxRequests?: number; maxMemoryMb?: number };
  /** Delay before starting a worker again after starts keep failing (default 100 ms doubling to 10 s). */
  restart?: { baseDelayMs?: number; maxDelayMs?: number };
  retry?: {
    /** Attempts per call, the first included (default 3, as the seed's `with_retry`). */
    maxAttempts?: number;
    /** Overrides the policy's per-category schedules with one backoff for every retry. */
    backoff?: BackoffStrategy;
    baseDelayMs?: number;
    maxDelayMs?: number;
    /** Retries allowed as a share of recent calls, plus a floor; `false` disables the budget. */
    budget?: false | { ratio?: number; minRetriesPerSecond?: number; windowMs?: number };
  };
  circuitBreaker?: { failureThreshold?: number; successThreshold?: number; openTimeoutMs?: number; halfOpenRequests?: number };
  /** Per-category overrides of the decision matrix. */
  policy?: PolicyOverrides;
  /** Per-category, per-severity overrides of the recovery table, and time limits. */
  recovery?: { strategies?: RecoveryTableOverrides; timeLimits?: Partial<RecoveryTimeLimits> };
  /** Where failover sends a call: another pool, a single process, or a function. */
  fallback?: Adapter | ((command: string, args: unknown) => unknown);
  /** Worker deaths a call may cause before it is quarantined, and for how long identical calls are refused. */
  poison?: { maxDeaths?: number; coolDownMs?: number };
  /**
   * Where session snapshots go, so a session survives its worker: `'memory'` (default, in this
   * host), `false` (sessions die with their worker: PYFLEET_SESSION_LOST), or a `SessionStore`
   * (`fileSessionStore(dir)`, `natsSessionStore(...)`, your own), which requires `sessionKey`.
   */
  sessionStore?: 'memory' | false | SessionStore;
  /** HMAC key(s) that sign and verify snapshots; a list rotates keys: the first signs, all verify. */
  sessionKey?: SessionKey | readonly SessionKey[];
  /** A session whose pickle is larger is not durable (default 16 MiB; below maxFrameBytes). */
  maxSessionBytes?: number;
  /**
   * When the store refuses a call's snapshot: `'warn'` (default) resolves the call and logs it
   * (the session is lost rather than restored older if its worker then goes); `'fail'` rejects
   * the call with PYFLEET_SESSION_NOT_SAVED (it ran), so no success is ever older than the store.
   * For a store shared with other pools, whose own memory of the failure dies with them.
   */
  snapshotFailure?: 'warn' | 'fail';
  /** A pino-compatible logger (default: pino at `info` to stderr). */
  logger?: Logger;
  /** Extra environment for the workers. */
  env?: Record<string, string>;
  /** Working directory for the workers (default: the host's). */
  cwd?: string;
  /** Fault injection; off unless given (see README, Chaos). */
  chaos?: ChaosOptions;
}

/** Options after defaults and validation. */
export interface ResolvedOptions {
  module: string;
  python: string;
  min: number;
  max: number;
  requestTimeoutMs: number;
  startupTimeoutMs: number;
  queueTimeoutMs: number;
  maxQueue: number;
  idleTimeoutMs: number;
  sessionTtlMs: number;
  pipelineDepth: number;
  concurrency: number;
  nonFinite: 'null' | 'error';
  validateArgs: boolean;
  maxFrameBytes: number;
  cancelGraceMs: number;
  healthCheck: { intervalMs: number; maxMissed: number };
  recycle: { maxRequests: number; maxMemoryMb: number };
  restart: { baseDelayMs: number; maxDelayMs: number };
  retry: {
    maxAttempts: number;
    backoff: BackoffStrategy | undefined;
    baseDelayMs: number;
    maxDelayMs: number;
    budget: false | { ratio: number; minRetriesPerSecond: number; windowMs: number };
  };
  circuitBreaker: { failureThreshold: number; successThreshold: number; openTimeoutMs: number; halfOpenRequests: number };
  policy: PolicyOverrides;
  recovery: { strategies?: RecoveryTableOverrides; timeLimits?: Partial<RecoveryTimeLimits> };
  fallback: PoolOptions['fallback'];
  poison: { maxDeaths: number; coolDownMs: number };
  /** null: sessions are not durable; 'memory': their records are kept in the pool itself. */
  sessionStore: SessionStore | 'memory' | null;
  /** The store outlives the pool (not the default memory store). */
  persistentSessions: boolean;
  /** The signing key first. */
  sessionKeys: Buffer[];
  maxSessionBytes: number;
  snapshotFailure: 'warn' | 'fail';
  logger: Logger | undefined;
  env: Record<string, string>;
  cwd: string | undefined;
  chaos: ChaosConfig | null;
}

const KNOWN = new Set([
  'module', 'python', 'workers', 'requestTimeoutMs', 'startupTimeoutMs', 'queueTimeoutMs', 'maxQueue', 'idleTimeoutMs',
  'sessionTtlMs', 'pipelineDepth', 'concurrency', 'nonFinite', 'validateArgs', 'maxFrameBytes', 'cancelGraceMs', 'healthCheck', 'recycle', 'restart', 'retry',
  'circuitBreaker', 'policy', 'recovery', 'fallback', 'poison', 'sessionStore', 'sessionKey', 'maxSessionBytes', 'snapshotFailure', 'logger', 'env', 'cwd', 'chaos',
]);

function show(x: unknown): string {
  if (typeof x === 'string') return JSON.stringify(x);
  if (typeof x === 'object' && x !== null) return Array.isArray(x) ? 'an array' : 'an object';
  return String(x);
}

type Check = (value: number) => boolean;
const int = (min: number): Check => (v) => Number.isInteger(v) && v >= min;
const ms = (min: number): Check => (v) => Number.isFinite(v) && v >= min;

function num(value: unknown, fallback: number, name: string, ok: Check, rule: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !ok(value)) throw invalidOption(`${name} must be ${rule}, got ${show(value)}`);
  return value;
}

function obj(value: unknown, name: string): Record<string, unknown> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalidOption(`${name} must be an object, got ${show(value)}`);
  return value as Record<string, unknown>;
}

function onlyKeys(o: Record<string, unknown>, name: string, keys: readonly string[]): void {
  for (const k of Object.keys(o)) {
    if (!keys.includes(k)) throw invalidOption(`${name}.${k} is not an option (known: ${keys.join(', ')})`);
  }
}

/** A session key: a secret string (UTF-8), or bytes. */
export type SessionKey = string | Uint8Array;

function sessionOptions(o: Partial<PoolOptions>, maxFrameBytes: number): Pick<ResolvedOptions, 'sessionStore' | 'persistentSessions' | 'sessionKeys' | 'maxSessionBytes' | 'snapshotFailure'> {
  const store = o.sessionStore ?? DEFAULTS.sessionStore;
  const snapshotFailure = o.snapshotFailure ?? DEFAULTS.snapshotFailure;
  if (snapshotFailure !== 'warn' && snapshotFailure !== 'fail') throw invalidOption(`snapshotFailure must be 'warn' or 'fail', got ${show(snapshotFailure)}`);
  const maxSessionBytes = num(o.maxSessionBytes, Math.min(DEFAULTS.maxSessionBytes, maxFrameBytes - 1024), 'maxSessionBytes', (v) => int(1)(v) && v <= maxFrameBytes - 1024, `an integer from 1 to maxFrameBytes - 1024 (${maxFrameBytes - 1024})`);
  if (store === false) return { sessionStore: null, persistentSessions: false, sessionKeys: [], maxSessionBytes, snapshotFailure };
  let persistent = true;
  let sessionStore: SessionStore | 'memory';
  if (store === 'memory') {
    persistent = false;
    sessionStore = 'memory';
  } else if (typeof store === 'object' && store !== null && typeof store.get === 'function' && typeof store.set === 'function' && typeof store.delete === 'function') {
    sessionStore = store;
  } else {
    throw invalidOption(`sessionStore must be 'memory', false, or a SessionStore (an object with get, set and delete), got ${show(store)}`);
  }
  const given = o.sessionKey === undefined ? [] : Array.isArray(o.sessionKey) ? o.sessionKey : [o.sessionKey];
  const keys = (given as unknown[]).map((k, i) => {
    if (typeof k === 'string' && k !== '') return Buffer.from(k, 'utf8');
    if (k instanceof Uint8Array && k.byteLength > 0) return Buffer.from(k);
    throw invalidOption(`sessionKey${Array.isArray(o.sessionKey) ? `[${i}]` : ''} must be a non-empty string or bytes`);
  });
  if (keys.length === 0) {
    if (persistent) throw invalidOption('sessionKey is required with a sessionStore other than \'memory\': the snapshots it keeps outlive this pool, and only the key lets a pool trust them (pass the same key to every pool that shares the store)');
    // The memory store lives and dies with this pool: a key of its own is enough.
    keys.push(randomBytes(32));
  }
  return { sessionStore, persistentSessions: persistent, sessionKeys: keys, maxSessionBytes, snapshotFailure };
}

function bool(v: unknown, fallback: boolean, name: string): boolean {
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') throw invalidOption(`${name} must be true or false, got ${show(v)}`);
  return v;
}

function nonFinite(v: unknown): 'null' | 'error' {
  if (v === undefined) return DEFAULTS.nonFinite;
  if (v !== 'null' && v !== 'error') throw invalidOption(`nonFinite must be 'null' or 'error', got ${show(v)}`);
  return v;
}

/** Validates `createPool`'s options and fills in every default. Throws `PYFLEET_INVALID_OPTIONS` with the first problem found. */
export function resolveOptions(input: PoolOptions, cpuCount = os.availableParallelism()): ResolvedOptions {
  const o = obj(input, 'options') as Partial<PoolOptions> & Record<string, unknown>;
  for (const k of Object.keys(o)) if (!KNOWN.has(k)) throw invalidOption(`${k} is not an option`);
  if (typeof o.module !== 'string' || o.module.trim() === '') {
    throw invalidOption(`module is required: a .py file path or a dotted module name, got ${show(o.module)}`);
  }
  const python = o.python ?? process.env.PYFLEET_PYTHON ?? DEFAULTS.python;
  if (typeof python !== 'string' || python === '') throw invalidOption(`python must be an interpreter name or path, got ${show(python)}`);

  let min: number;
  let max: number;
  if (typeof o.workers === 'number' || o.workers === undefined) {
    const n = num(o.workers, NaN, 'workers', int(1), 'an integer >= 1');
    min = Number.isNaN(n) ? DEFAULTS.minWorkers : n;
    max = Number.isNaN(n) ? Math.max(min, cpuCount) : n;
  } else {
    const w = obj(o.workers, 'workers');
    onlyKeys(w, 'workers', ['min', 'max']);
    min = num(w.min, DEFAULTS.minWorkers, 'workers.min', int(0), 'an integer >= 0');
    max = num(w.max, Math.max(min, 1, cpuCount), 'workers.max', int(1), 'an integer >= 1');
    if (max < min) throw invalidOption(`workers.max (${max}) must be >= workers.min (${min})`);
  }

  const hc = obj(o.healthCheck, 'healthCheck');
  onlyKeys(hc, 'healthCheck', ['intervalMs', 'maxMissed']);
  const rc = obj(o.recycle, 'recycle');
  onlyKeys(rc, 'recycle', ['maxRequests', 'maxMemoryMb']);
  const rs = obj(o.restart, 'restart');
  onlyKeys(rs, 'restart', ['baseDelayMs', 'maxDelayMs']);
  const rt = obj(o.retry, 'retry');
  onlyKeys(rt, 'retry', ['maxAttempts', 'backoff', 'baseDelayMs', 'maxDelayMs', 'budget']);
  const cb = obj(o.circuitBreaker, 'circuitBreaker');
  onlyKeys(cb, 'circuitBreaker', ['failureThreshold', 'successThreshold', 'openTimeoutMs', 'halfOpenRequests']);
  const po = obj(o.poison, 'poison');
  onlyKeys(po, 'poison', ['maxDeaths', 'coolDownMs']);
  const rec = obj(o.recovery, 'recovery');
  onlyKeys(rec, 'recovery', ['strategies', 'timeLimits']);

  if (rt.backoff !== undefined && !isBackoffStrategy(rt.backoff)) {
    throw invalidOption(`retry.backoff must be 'linear', 'exponential', 'fibonacci', 'decorrelated_jitter' or a function, got ${show(rt.backoff)}`);
  }
  let budget: ResolvedOptions['retry']['budget'];
  if (rt.budget === false) budget = false;
  else {
    const b = obj(rt.budget, 'retry.budget');
    onlyKeys(b, 'retry.budget', ['ratio', 'minRetriesPerSecond', 'windowMs']);
    budget = {
      ratio: num(b.ratio, DEFAULTS.retryBudget.ratio, 'retry.budget.ratio', ms(0), 'a number >= 0'),
      minRetriesPerSecond: num(b.minRetriesPerSecond, DEFAULTS.retryBudget.minRetriesPerSecond, 'retry.budget.minRetriesPerSecond', ms(0), 'a number >= 0'),
      windowMs: num(b.windowMs, DEFAULTS.retryBudget.windowMs, 'retry.budget.windowMs', ms(1), 'a number of ms >= 1'),
    };
  }

  const fallback = o.fallback;
  if (fallback !== undefined && typeof fallback !== 'function' && (typeof fallback !== 'object' || fallback === null || typeof (fallback as Adapter).execute !== 'function')) {
    throw invalidOption('fallback must be an Adapter (an object with execute(command, args)) or a function (command, args) => value');
  }
  const logger = o.logger;
  if (logger !== undefined && (typeof logger !== 'object' || logger === null || typeof logger.info !== 'function' || typeof logger.error !== 'function' || typeof logger.warn !== 'function')) {
    throw invalidOption('logger must be pino-compatible (with info, warn and error methods)');
  }
  const env = obj(o.env, 'env');
  for (const [k, v] of Object.entries(env)) if (typeof v !== 'string') throw invalidOption(`env.${k} must be a string, got ${show(v)}`);
  if (o.cwd !== undefined && typeof o.cwd !== 'string') throw invalidOption(`cwd must be a directory path, got ${show(o.cwd)}`);

  const maxFrameBytes = num(o.maxFrameBytes, DEFAULTS.maxFrameBytes, 'maxFrameBytes', (v) => int(1024)(v) && v < 2 ** 32, 'an integer from 1024 to 4 GiB - 1');
  let policy: PolicyOverrides;
  try {
    policy = validatePolicyOverrides(o.policy);
  } catch (e) {
    throw invalidOption(`policy: ${(e as Error).message}`);
  }

  return {
    module: o.module,
    python,
    min,
    max,
    requestTimeoutMs: num(o.requestTimeoutMs, DEFAULTS.requestTimeoutMs, 'requestTimeoutMs', ms(1), 'a number of ms >= 1'),
    startupTimeoutMs: num(o.startupTimeoutMs, DEFAULTS.startupTimeoutMs, 'startupTimeoutMs', ms(1), 'a number of ms >= 1'),
    queueTimeoutMs: num(o.queueTimeoutMs, DEFAULTS.queueTimeoutMs, 'queueTimeoutMs', ms(0), 'a number of ms >= 0'),
    maxQueue: num(o.maxQueue, DEFAULTS.maxQueue, 'maxQueue', int(0), 'an integer >= 0'),
    idleTimeoutMs: num(o.idleTimeoutMs, DEFAULTS.idleTimeoutMs, 'idleTimeoutMs', ms(1), 'a number of ms >= 1'),
    sessionTtlMs: num(o.sessionTtlMs, DEFAULTS.sessionTtlMs, 'sessionTtlMs', ms(1), 'a number of ms >= 1'),
    pipelineDepth: num(o.pipelineDepth, DEFAULTS.pipelineDepth, 'pipelineDepth', int(1), 'an integer >= 1'),
    concurrency: num(o.concurrency, DEFAULTS.concurrency, 'concurrency', (v) => int(1)(v) && v <= 10_000, 'an integer from 1 to 10000'),
    nonFinite: nonFinite(o.nonFinite),
    validateArgs: bool(o.validateArgs, DEFAULTS.validateArgs, 'validateArgs'),
    maxFrameBytes,
    cancelGraceMs: num(o.cancelGraceMs, DEFAULTS.cancelGraceMs, 'cancelGraceMs', ms(0), 'a number of ms >= 0'),
    healthCheck: {
      intervalMs: num(hc.intervalMs, DEFAULTS.healthCheck.intervalMs, 'healthCheck.intervalMs', ms(10), 'a number of ms >= 10'),
      maxMissed: num(hc.maxMissed, DEFAULTS.healthCheck.maxMissed, 'healthCheck.maxMissed', int(1), 'an integer >= 1'),
    },
    recycle: {
      maxRequests: num(rc.maxRequests, DEFAULTS.recycle.maxRequests, 'recycle.maxRequests', int(0), 'an integer >= 0 (0: never)'),
      maxMemoryMb: num(rc.maxMemoryMb, DEFAULTS.recycle.maxMemoryMb, 'recycle.maxMemoryMb', ms(0), 'a number >= 0 (0: never)'),
    },
    restart: {
      baseDelayMs: num(rs.baseDelayMs, DEFAULTS.restart.baseDelayMs, 'restart.baseDelayMs', ms(0), 'a number of ms >= 0'),
      maxDelayMs: num(rs.maxDelayMs, DEFAULTS.restart.maxDelayMs, 'restart.maxDelayMs', ms(0), 'a number of ms >= 0'),
    },
    retry: {
      maxAttempts: num(rt.maxAttempts, DEFAULTS.retry.maxAttempts, 'retry.maxAttempts', int(1), 'an integer >= 1'),
      backoff: rt.backoff as BackoffStrategy | undefined,
      baseDelayMs: num(rt.baseDelayMs, DEFAULTS.retry.baseDelayMs, 'retry.baseDelayMs', ms(0), 'a number of ms >= 0'),
      maxDelayMs: num(rt.maxDelayMs, DEFAULTS.retry.maxDelayMs, 'retry.maxDelayMs', ms(0), 'a number of ms >= 0'),
      budget,
    },
    circuitBreaker: {
      failureThreshold: num(cb.failureThreshold, DEFAULTS.circuitBreaker.failureThreshold, 'circuitBreaker.failureThreshold', int(1), 'an integer >= 1'),
      successThreshold: num(cb.successThreshold, DEFAULTS.circuitBreaker.successThreshold, 'circuitBreaker.successThreshold', int(1), 'an integer >= 1'),
      openTimeoutMs: num(cb.openTimeoutMs, DEFAULTS.circuitBreaker.openTimeoutMs, 'circuitBreaker.openTimeoutMs', ms(0), 'a number of ms >= 0'),
      halfOpenRequests: num(cb.halfOpenRequests, DEFAULTS.circuitBreaker.halfOpenRequests, 'circuitBreaker.halfOpenRequests', int(1), 'an integer >= 1'),
    },
    policy,
    recovery: { strategies: rec.strategies as RecoveryTableOverrides | undefined, timeLimits: rec.timeLimits as Partial<RecoveryTimeLimits> | undefined },
    fallback,
    poison: {
      maxDeaths: num(po.maxDeaths, DEFAULTS.poison.maxDeaths, 'poison.maxDeaths', int(1), 'an integer >= 1'),
      coolDownMs: num(po.coolDownMs, DEFAULTS.poison.coolDownMs, 'poison.coolDownMs', ms(0), 'a number of ms >= 0'),
    },
    ...sessionOptions(o, maxFrameBytes),
    logger,
    env: env as Record<string, string>,
    cwd: o.cwd,
    chaos: o.chaos === undefined ? null : validateChaos(o.chaos),
  };
}
