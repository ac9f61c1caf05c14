import os from 'node:os';
import { DEFAULTS } from '../defaults.js';
import { CALL_OPTION_KEYS, resolveCallOptions, type CallOptions, type CallSettings } from '../call/options.js';
import { randomBytes } from 'node:crypto';
import type { SessionStore } from '../sessions/store.js';
import { OptionChecks, int, ms, show } from '../errors/invalid.js';
import { validateChaos, type ChaosOptions, type ChaosConfig } from './chaos.js';

export { DEFAULTS };

/** What `createPool` accepts. Every default lives in `DEFAULTS` (src/defaults.ts) and in the README's table. */
export interface PoolOptions extends CallOptions {
  /** A `.py` file path or a dotted module name whose `@command` handlers the workers serve. Required. */
  module: string;
  /** The interpreter (default: `$PYFLEET_PYTHON` or `python3`). Resolved to its real path once. */
  python?: string;
  /** Worker count: a number (min = max), or bounds. Default min 1, max = CPU count. */
  workers?: number | { min?: number; max?: number };
  /** Time for a worker to start and say hello (default 10 000 ms). */
  startupTimeoutMs?: number;
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
  /** Extra environment for the workers. */
  env?: Record<string, string>;
  /** Working directory for the workers (default: the host's). */
  cwd?: string;
  /** Fault injection; off unless given (see README, Chaos). */
  chaos?: ChaosOptions;
}

/** Options after defaults and validation. */
export interface ResolvedOptions extends CallSettings {
  module: string;
  python: string;
  min: number;
  max: number;
  startupTimeoutMs: number;
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
  /** null: sessions are not durable; 'memory': their records are kept in the pool itself. */
  sessionStore: SessionStore | 'memory' | null;
  /** The store outlives the pool (not the default memory store). */
  persistentSessions: boolean;
  /** The signing key first. */
  sessionKeys: Buffer[];
  maxSessionBytes: number;
  snapshotFailure: 'warn' | 'fail';
  env: Record<string, string>;
  cwd: string | undefined;
  chaos: ChaosConfig | null;
}

const KNOWN = new Set<string>([
  ...CALL_OPTION_KEYS, 'module', 'python', 'workers', 'startupTimeoutMs', 'maxQueue', 'idleTimeoutMs', 'sessionTtlMs', 'pipelineDepth', 'concurrency',
  'nonFinite', 'validateArgs', 'maxFrameBytes', 'cancelGraceMs', 'healthCheck', 'recycle', 'restart', 'sessionStore', 'sessionKey', 'maxSessionBytes', 'snapshotFailure', 'env', 'cwd', 'chaos',
]);

const check: OptionChecks = new OptionChecks('pool options');
const num = check.num.bind(check);
const obj = check.obj.bind(check);
const onlyKeys = check.onlyKeys.bind(check);
const bool = check.bool.bind(check);

/** A session key: a secret string (UTF-8), or bytes. */
export type SessionKey = string | Uint8Array;

function sessionOptions(o: Partial<PoolOptions>, maxFrameBytes: number): Pick<ResolvedOptions, 'sessionStore' | 'persistentSessions' | 'sessionKeys' | 'maxSessionBytes' | 'snapshotFailure'> {
  const store = o.sessionStore ?? DEFAULTS.sessionStore;
  const snapshotFailure = o.snapshotFailure ?? DEFAULTS.snapshotFailure;
  if (snapshotFailure !== 'warn' && snapshotFailure !== 'fail') check.fail(`snapshotFailure must be 'warn' or 'fail', got ${show(snapshotFailure)}`);
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
    check.fail(`sessionStore must be 'memory', false, or a SessionStore (an object with get, set and delete), got ${show(store)}`);
  }
  const given = o.sessionKey === undefined ? [] : Array.isArray(o.sessionKey) ? o.sessionKey : [o.sessionKey];
  const keys = (given as unknown[]).map((k, i) => {
    if (typeof k === 'string' && k !== '') return Buffer.from(k, 'utf8');
    if (k instanceof Uint8Array && k.byteLength > 0) return Buffer.from(k);
    check.fail(`sessionKey${Array.isArray(o.sessionKey) ? `[${i}]` : ''} must be a non-empty string or bytes`);
  });
  if (keys.length === 0) {
    if (persistent) check.fail('sessionKey is required with a sessionStore other than \'memory\': the snapshots it keeps outlive this pool, and only the key lets a pool trust them (pass the same key to every pool that shares the store)');
    // The memory store lives and dies with this pool: a key of its own is enough.
    keys.push(randomBytes(32));
  }
  return { sessionStore, persistentSessions: persistent, sessionKeys: keys, maxSessionBytes, snapshotFailure };
}

function nonFinite(v: unknown): 'null' | 'error' {
  if (v === undefined) return DEFAULTS.nonFinite;
  if (v !== 'null' && v !== 'error') check.fail(`nonFinite must be 'null' or 'error', got ${show(v)}`);
  return v;
}

/** Validates `createPool`'s options and fills in every default. Throws `PYFLEET_INVALID_OPTIONS` with the first problem found. */
export function resolveOptions(input: PoolOptions, cpuCount = os.availableParallelism()): ResolvedOptions {
  const o = obj(input, 'options') as Partial<PoolOptions> & Record<string, unknown>;
  for (const k of Object.keys(o)) if (!KNOWN.has(k)) check.fail(`${k} is not an option`);
  if (typeof o.module !== 'string' || o.module.trim() === '') {
    check.fail(`module is required: a .py file path or a dotted module name, got ${show(o.module)}`);
  }
  const python = o.python ?? process.env.PYFLEET_PYTHON ?? DEFAULTS.python;
  if (typeof python !== 'string' || python === '') check.fail(`python must be an interpreter name or path, got ${show(python)}`);

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
    if (max < min) check.fail(`workers.max (${max}) must be >= workers.min (${min})`);
  }

  const hc = obj(o.healthCheck, 'healthCheck');
  onlyKeys(hc, 'healthCheck', ['intervalMs', 'maxMissed']);
  const rc = obj(o.recycle, 'recycle');
  onlyKeys(rc, 'recycle', ['maxRequests', 'maxMemoryMb']);
  const rs = obj(o.restart, 'restart');
  onlyKeys(rs, 'restart', ['baseDelayMs', 'maxDelayMs']);

  const env = obj(o.env, 'env');
  for (const [k, v] of Object.entries(env)) if (typeof v !== 'string') check.fail(`env.${k} must be a string, got ${show(v)}`);
  if (o.cwd !== undefined && typeof o.cwd !== 'string') check.fail(`cwd must be a directory path, got ${show(o.cwd)}`);

  const maxFrameBytes = num(o.maxFrameBytes, DEFAULTS.maxFrameBytes, 'maxFrameBytes', (v) => int(1024)(v) && v < 2 ** 32, 'an integer from 1024 to 4 GiB - 1');
  return {
    ...resolveCallOptions(o, check, { requestTimeoutMs: DEFAULTS.requestTimeoutMs, queueTimeoutMs: DEFAULTS.queueTimeoutMs, maxAttempts: DEFAULTS.retry.maxAttempts, circuitBreaker: DEFAULTS.circuitBreaker }),
    module: o.module,
    python,
    min,
    max,
    startupTimeoutMs: num(o.startupTimeoutMs, DEFAULTS.startupTimeoutMs, 'startupTimeoutMs', ms(1), 'a number of ms >= 1'),
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
    ...sessionOptions(o, maxFrameBytes),
    env: env as Record<string, string>,
    cwd: o.cwd,
    chaos: o.chaos === undefined ? null : validateChaos(o.chaos),
  };
}
