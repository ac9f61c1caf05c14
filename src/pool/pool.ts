import { classify } from '../errors/classify.js';
import type { ErrorCategory } from '../errors/categories.js';
import { ERROR_CATEGORIES } from '../errors/categories.js';
import { formatForLogging, logFields } from '../errors/format.js';
import { ErrorPolicy } from '../errors/policy.js';
import { PoolError, isPoolError } from '../errors/pool-error.js';
import type { Adapter, AdapterCallOptions } from '../adapters/adapter.js';
import { toAdapter } from '../adapters/function-adapter.js';
import { encodeFrame, FrameError } from '../protocol/frame.js';
import type { CommandInfo } from '../protocol/messages.js';
import { computeDelay } from '../resilience/backoff.js';
import { RetryBudget } from '../resilience/budget.js';
import type { CircuitBreaker, CircuitSnapshot } from '../resilience/circuit-breaker.js';
import { CircuitRegistry, POOL_OPERATIONS, WORKER_COMMANDS } from '../resilience/circuit-registry.js';
import { RecoveryOrchestrator } from '../resilience/recovery/orchestrator.js';
import type { RecoveryCall, RecoveryMetrics } from '../resilience/recovery/types.js';
import { retryAfterFirstFailure, sleep } from '../resilience/retry.js';
import { channels, subscribe, type EventName, type EventPayloads } from '../telemetry/channels.js';
import { defaultLogger, type Logger } from '../util/logger.js';
import { resolvePython } from '../worker/python-path.js';
import type { Transition, WorkerHealth, WorkerState } from '../worker/states.js';
import { PYTHON_PACKAGE_DIR, Worker, type ExitInfo, type WorkerHooks } from '../worker/worker.js';
import { CallAttempt, type AttemptFailed, type AttemptOk, type AttemptOwner, type Job } from './call.js';
import { ChaosMonkey } from './chaos.js';
import { resolveOptions, type PoolOptions, type ResolvedOptions } from './options.js';
import { PoisonTracker } from './poison.js';
import { WaitQueue } from './queue.js';
import { SessionTable, type SessionEntry } from './sessions.js';
import type { CommandMap, TypedPool } from '../typing/typed-pool.js';

export interface ExecuteOptions {
  /** Run on the worker that holds this session's state. */
  sessionId?: string;
  /** Time for one attempt (default: the pool's requestTimeoutMs). */
  timeoutMs?: number;
  /** Cancels the call: a queued call leaves the queue, a running one is cancelled in the worker. */
  signal?: AbortSignal;
  /** May the call be sent again after a worker took it (default: what the command declared in Python)? */
  idempotent?: boolean;
  /** Resolve with `{ value, via, attempts, workerId, durationMs }` instead of the value. */
  detailed?: boolean;
}

/** Where a value came from: a worker, a recovery's re-send with a larger timeout, or the fallback. */
export type Via = 'pool' | 'recovery' | 'fallback';

export interface DetailedResult<T> {
  value: T;
  via: Via;
  attempts: number;
  workerId: number | null;
  durationMs: number;
}

export interface WorkerStats {
  id: number;
  pid: number | null;
  state: WorkerState;
  health: WorkerHealth;
  requests: number;
  restarts: number;
  inflight: number;
  sessions: number;
  rssMb: number | null;
  python: string;
  uptimeMs: number;
  lastTransition: Transition | null;
}

export interface PoolStats {
  poolId: number;
  module: string;
  closed: boolean;
  workers: WorkerStats[];
  queue: { length: number; max: number };
  sessions: number;
  calls: { total: number; succeeded: number; failed: number; inFlight: number; retries: number; viaRecovery: number; viaFallback: number };
  errorsByCategory: Record<ErrorCategory, number>;
  restarts: { total: number; byReason: Record<string, number> };
  circuits: Record<string, CircuitSnapshot>;
  recoveries: RecoveryMetrics;
  retryBudget: { calls: number; retries: number; denied: number } | null;
  poison: { quarantined: number; refused: number };
  chaos: { seed: number; injected: Record<string, number> } | null;
}

/** Errors that say the backend (the workers) failed, as opposed to the caller or the user's code. */
const INFRA_CODES = new Set<string>([
  'PYFLEET_WORKER_CRASHED',
  'PYFLEET_PROTOCOL_ERROR',
  'PYFLEET_TIMEOUT',
  'PYFLEET_QUEUE_TIMEOUT',
  'PYFLEET_NO_WORKERS',
  'PYFLEET_HEALTH_CHECK_FAILED',
  'PYFLEET_SPAWN_FAILED',
  'PYFLEET_INIT_FAILED',
  'PYFLEET_STARTUP_TIMEOUT',
]);
/**
 * One worker death counts once: the calls pipelined behind the one that was running failed with
 * it, but they are not separate evidence that the backend is down.
 */
const isInfraFailure = (e: unknown): boolean => isPoolError(e) && INFRA_CODES.has(e.code) && e.details?.running !== false;
const isCommandTimeout = (e: unknown): boolean => isPoolError(e) && e.code === 'PYFLEET_TIMEOUT';
const noop = (): void => {};
const NO_COMMANDS: Record<string, CommandInfo> = Object.freeze({}) as Record<string, CommandInfo>;

let poolSeq = 0;
const livePools = new Set<Pool>();
let exitHookInstalled = false;

/** Kills every worker when the host exits without closing its pools (SIGKILL is covered in the worker: PDEATHSIG and EOF). */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const p of livePools) p.killAll();
  });
}

/** Creates a pool and resolves once its `min` workers said hello (started concurrently). */
export function createPool(options: PoolOptions): Promise<Pool>;
/** The same pool, typed by a commands map (`pyfleet types` writes one): names, args and results are checked at compile time. */
export function createPool<C extends CommandMap<C>>(options: PoolOptions): Promise<TypedPool<C>>;
// Both overloads return this same Pool; a TypedPool is only a narrower compile-time view of it.
export async function createPool(options: PoolOptions): Promise<Pool | TypedPool<never>> {
  const resolved = resolveOptions(options);
  let python: string;
  try {
    python = await resolvePython(resolved.python);
  } catch (e) {
    throw new PoolError({
      code: 'PYFLEET_SPAWN_FAILED',
      message: `Cannot find the Python interpreter ${JSON.stringify(resolved.python)}: ${(e as Error).message}. Set the python option or $PYFLEET_PYTHON.`,
      cause: e,
    });
  }
  const pool = new Pool(resolved, python);
  await pool.start();
  return pool;
}

export class Pool implements Adapter {
  readonly id = ++poolSeq;
  readonly name: string;
  readonly options: Readonly<ResolvedOptions>;
  readonly python: string;
  private readonly logger: Logger;
  private readonly workers: Worker[] = [];
  private readonly byId = new Map<number, Worker>();
  private readonly queue = new WaitQueue<CallAttempt>();
  private readonly sessions = new SessionTable();
  private readonly policy: ErrorPolicy;
  private readonly circuits: CircuitRegistry;
  private readonly poolOps: CircuitBreaker;
  private readonly workerCmds: CircuitBreaker;
  private readonly budget: RetryBudget | undefined;
  private readonly orchestrator: RecoveryOrchestrator;
  private readonly poison: PoisonTracker;
  private readonly fallback: Adapter | null;
  private readonly chaos: ChaosMonkey | null;
  private readonly hooks: WorkerHooks;
  private readonly baseEnv: Record<string, string>;
  private commands: Record<string, CommandInfo> = NO_COMMANDS;
  private nextWorkerId = 0;
  private rid = 0;
  private callSeq = 0;
  /** pool_operations was opened because no worker could start (see spawnWorker). */
  private openedWhileDown = false;
  private starting = 0;
  private startFailures = 0;
  private readonly replacements = new Map<number, Promise<Worker | null>>();
  private tick: NodeJS.Timeout | null = null;
  private closing = false;
  private started = false;
  private closed = false;
  private closePromise: Promise<void> | null = null;
  private readonly counts = { total: 0, succeeded: 0, failed: 0, inFlight: 0, retries: 0, viaRecovery: 0, viaFallback: 0 };
  private readonly errorsByCategory = Object.fromEntries(ERROR_CATEGORIES.map((c) => [c, 0])) as Record<ErrorCategory, number>;
  private readonly restarts = { total: 0, byReason: {} as Record<string, number> };
  private poisonRefused = 0;
  /** Workers already handed to the orchestrator for their memory (samples keep coming while they drain). */
  private readonly overMemory = new WeakSet<Worker>();
  private readonly drainWaiters: Array<() => void> = [];

  constructor(options: ResolvedOptions, python: string) {
    this.options = options;
    this.python = python;
    this.name = `pool:${options.module}`;
    this.logger = options.logger ?? defaultLogger();
    this.policy = new ErrorPolicy(options.policy);
    this.circuits = new CircuitRegistry({ ...options.circuitBreaker, poolId: this.id });
    this.poolOps = this.circuits.get(POOL_OPERATIONS, { isFailure: isInfraFailure });
    this.workerCmds = this.circuits.get(WORKER_COMMANDS, { isFailure: isCommandTimeout });
    this.circuits.onStateChange((c) => this.logger[c.to === 'open' ? 'warn' : 'info']({ poolId: this.id, circuit: c.circuit, from: c.from, to: c.to, reason: c.reason }, `circuit ${c.circuit} ${c.to}`));
    const b = options.retry.budget;
    this.budget = b === false ? undefined : new RetryBudget(b);
    this.poison = new PoisonTracker(options.poison.maxDeaths, options.poison.coolDownMs);
    this.fallback = options.fallback === undefined ? null : toAdapter(options.fallback);
    this.chaos = options.chaos === null ? null : new ChaosMonkey(options.chaos);
    this.orchestrator = new RecoveryOrchestrator({
      baseTimeoutMs: options.requestTimeoutMs,
      circuitName: POOL_OPERATIONS,
      poolId: this.id,
      strategies: options.recovery.strategies,
      timeLimits: options.recovery.timeLimits,
      actions: {
        replaceWorker: (id, reason) => this.replaceWorker(id, reason),
        recycleWorker: (id, reason) => this.recycleWorker(id, reason),
        retryWithLargerTimeout: (call) => this.resend(call),
        openCircuit: (name, reason) => {
          this.circuits.get(name).trip(reason);
        },
        failover: (call) => this.failover(call),
      },
    });
    const pyPath = process.env.PYTHONPATH ? `${PYTHON_PACKAGE_DIR}:${process.env.PYTHONPATH}` : PYTHON_PACKAGE_DIR;
    this.baseEnv = {
      ...(process.env as Record<string, string>),
      ...options.env,
      PYTHONPATH: options.env.PYTHONPATH ? `${PYTHON_PACKAGE_DIR}:${options.env.PYTHONPATH}` : pyPath,
      PYFLEET_MAX_FRAME: String(options.maxFrameBytes),
      PYFLEET_HEARTBEAT_MS: String(options.healthCheck.intervalMs),
      PYFLEET_PARENT_PID: String(process.pid),
    };
    delete this.baseEnv.PYFLEET_CHAOS;
    this.hooks = {
      onAvailable: (w) => this.onAvailable(w),
      onExit: (w, info) => this.onWorkerExit(w, info),
      onLog: (w, stream, line) => {
        this.logger.info({ poolId: this.id, workerId: w.id, pid: w.pid, stream }, line);
        if (channels['worker:log'].hasSubscribers) channels['worker:log'].publish({ poolId: this.id, workerId: w.id, stream, line });
      },
    };
  }

  // ---- lifecycle ---------------------------------------------------------

  /** Starts `min` workers at once (at least one, to learn the module's commands). */
  async start(): Promise<void> {
    livePools.add(this);
    installExitHook();
    const n = Math.max(1, this.options.min);
    const results = await Promise.allSettled(Array.from({ length: n }, () => this.spawnWorker(0, false)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await this.close();
      throw failed.reason;
    }
    this.started = true;
    this.tick = setInterval(() => this.onTick(), this.options.healthCheck.intervalMs);
    this.tick.unref();
  }

  /**
   * Stops taking calls, lets in-flight ones finish (queued ones are rejected with
   * PYFLEET_POOL_CLOSED), then stops every worker and waits until every process is reaped.
   * After `timeoutMs` (default: requestTimeoutMs + cancelGraceMs) the remaining workers are killed.
   */
  close(options: { timeoutMs?: number } = {}): Promise<void> {
    this.closePromise ??= this.doClose(options.timeoutMs ?? this.options.requestTimeoutMs + this.options.cancelGraceMs);
    return this.closePromise;
  }

  private async doClose(timeoutMs: number): Promise<void> {
    this.closing = true;
    if (channels['pool:closing'].hasSubscribers) channels['pool:closing'].publish({ poolId: this.id });
    if (this.tick) clearInterval(this.tick);
    this.orchestrator.abortAll('the pool is closing');
    for (const a of this.queue.drain()) a.reject(this.closedError(a.job));
    const inflight = (): number => this.workers.reduce((n, w) => n + w.load, 0);
    if (inflight() > 0) {
      const t = setTimeout(() => this.killAll(), timeoutMs);
      await new Promise<void>((r) => {
        this.drainWaiters.push(r);
        this.checkDrained();
      });
      clearTimeout(t);
    }
    await Promise.all(this.workers.map((w) => w.stop('pool closed')));
    this.closed = true;
    livePools.delete(this);
    await this.fallback?.close?.();
  }

  /** SIGKILL every worker now (process exit, close timeout). */
  killAll(): void {
    for (const w of this.workers) w.kill('pool closed');
  }

  private checkDrained(): void {
    if (this.drainWaiters.length === 0) return;
    if (this.workers.every((w) => w.load === 0)) for (const r of this.drainWaiters.splice(0)) r();
  }

  // ---- calls -------------------------------------------------------------

  /** Runs `command(args)` on a worker. Resolves with the handler's value, or rejects with a PoolError. */
  execute<T = unknown>(command: string, args?: unknown, options?: ExecuteOptions & { detailed?: false }): Promise<T>;
  execute<T = unknown>(command: string, args: unknown, options: ExecuteOptions & { detailed: true }): Promise<DetailedResult<T>>;
  execute<T = unknown>(command: string, args?: unknown, options: ExecuteOptions = {}): Promise<T | DetailedResult<T>> {
    let job: Job;
    try {
      job = this.admit(command, args, options);
    } catch (e) {
      return Promise.reject(e);
    }
    if (channels['call:start'].hasSubscribers) channels['call:start'].publish({ poolId: this.id, callId: job.callId, command, sessionId: job.session?.id ?? null });
    // The seed's execute_in_session: each attempt through the circuits, retries, then recovery.
    // The first attempt settles the caller's promise straight from the worker's answer; the
    // retry loop is set up only after a failure, so a call that succeeds at once pays for none of it.
    const first = new Promise<unknown>((resolve, reject) => {
      job.resolve = resolve;
      job.reject = reject;
      job.attempts = 1;
      this.attempt(job, job.timeoutMs, null, this.firstOk, this.firstFailed);
    });
    // Counted once the frame is written, so the worker starts sooner: nothing settles synchronously.
    this.counts.total++;
    this.counts.inFlight++;
    if (job.session) job.session.inflight++;
    this.budget?.recordCall();
    // After a failed first attempt, the retries, the recovery and the fallback run in the
    // caller's async context (its AsyncLocalStorage: the trace span, a fallback's own context),
    // not in the context of the worker's pipe that delivered the failure.
    return first.then(undefined, (e: unknown) => this.afterFirstFailure(job, e)) as Promise<T | DetailedResult<T>>;
  }

  // Attempt 1 settles the caller's promise itself: it has no promise of its own.
  private readonly firstOk = (value: unknown, job: Job): void => job.resolve(this.succeeded(job, value, 'pool', job.detailed));
  private readonly firstFailed = (err: PoolError, job: Job): void => job.reject(err);

  private afterFirstFailure(job: Job, first: unknown): Promise<unknown> {
    return this.retryThenRecover(job, first).then(
      (r) => this.succeeded(job, r.value, r.via, job.detailed),
      (e: PoolError) => {
        this.settled(job, false, 'pool', e);
        throw e;
      },
    );
  }

  private succeeded<T>(job: Job, value: unknown, via: Via, detailed: boolean): T | DetailedResult<T> {
    this.settled(job, true, via, null);
    return detailed ? { value: value as T, via, attempts: job.attempts, workerId: job.workerId, durationMs: performance.now() - job.startedAt } : (value as T);
  }

  /** A handle whose calls all carry `sessionId`; `close()` drops the session's state in its worker. */
  session(sessionId: string): PoolSession {
    if (typeof sessionId !== 'string' || sessionId === '') throw this.badCall('session id must be a non-empty string');
    return new PoolSession(this, sessionId);
  }

  /** Forgets a session and frees its state in the worker. A lost session can be used again after this. */
  closeSession(sessionId: string): void {
    const workerId = this.sessions.delete(sessionId);
    if (workerId !== null) this.byId.get(workerId)?.post(`{"t":"drop_session","sid":${JSON.stringify(sessionId)}}`);
  }

  /** The commands the workers registered, with their idempotency. */
  get registeredCommands(): Readonly<Record<string, CommandInfo>> {
    return this.commands;
  }

  /** Listens to one of pyfleet's events, for this pool only; returns the function that unsubscribes. */
  on<K extends EventName>(name: K, fn: (payload: EventPayloads[K]) => void): () => void {
    return subscribe(name, (p) => {
      if ((p as { poolId?: number }).poolId === this.id) fn(p);
    });
  }

  /** Validates a call at the call site; throws a PoolError for bad input without touching a worker. */
  private admit(command: string, args: unknown, options: ExecuteOptions): Job {
    if (this.closing) throw this.closedError(null, command);
    if (typeof command !== 'string' || command === '') throw this.badCall(`command must be a non-empty string, got ${typeof command}`);
    if (typeof options !== 'object' || options === null) throw this.badCall('options must be an object');
    const info = this.commands[command];
    if (info === undefined) {
      throw new PoolError({
        code: 'PYFLEET_UNKNOWN_COMMAND',
        command,
        message: `No command named ${JSON.stringify(command)} in ${this.options.module}; registered: ${Object.keys(this.commands).join(', ') || 'none'}. Decorate the handler with @command.`,
      });
    }
    const timeoutMs = options.timeoutMs ?? this.options.requestTimeoutMs;
    if (typeof timeoutMs !== 'number' || !(timeoutMs > 0) || !Number.isFinite(timeoutMs)) throw this.badCall(`timeoutMs must be a number of ms > 0, got ${String(timeoutMs)}`, command);
    if (options.idempotent !== undefined && typeof options.idempotent !== 'boolean') throw this.badCall('idempotent must be a boolean', command);
    const signal = options.signal;
    if (signal?.aborted) throw this.abortedError(command, options.sessionId ?? null, signal);
    const argsJson = serializeArgs(args, command);
    if (argsJson.length * 3 + 128 > this.options.maxFrameBytes) {
      const bytes = Buffer.byteLength(argsJson) + 128 + command.length;
      if (bytes > this.options.maxFrameBytes) {
        throw new PoolError({
          code: 'PYFLEET_FRAME_TOO_LARGE',
          command,
          message: `The arguments of ${command} take ${bytes} bytes, over maxFrameBytes (${this.options.maxFrameBytes}). Pass a path or a reference instead, or raise maxFrameBytes.`,
        });
      }
    }
    if (this.poison.active) {
      const left = this.poison.quarantinedFor(PoisonTracker.key(command, argsJson));
      if (left > 0) {
        this.poisonRefused++;
        throw new PoolError({
          code: 'PYFLEET_POISON_CALL',
          command,
          message: `This exact call to ${command} killed ${this.options.poison.maxDeaths} workers and is quarantined for ${Math.ceil(left / 1000)} s more; it was refused without being run. Fix the input or the handler.`,
          details: { retryAfterMs: left },
        });
      }
    }
    let session: SessionEntry | null = null;
    if (options.sessionId !== undefined) {
      if (typeof options.sessionId !== 'string' || options.sessionId === '') throw this.badCall('sessionId must be a non-empty string', command);
      session = this.sessions.open(options.sessionId, performance.now());
      if (session.lost !== null) throw this.sessionLostError(session, command);
      session.lastUsed = performance.now();
    }
    return {
      callId: ++this.callSeq,
      command,
      args,
      argsJson,
      session,
      idempotent: options.idempotent ?? info.idempotent,
      timeoutMs,
      signal,
      startedAt: performance.now(),
      attempts: 0,
      workerId: null,
      poisoned: null,
      detailed: options.detailed === true,
      resolve: noop,
      reject: noop,
    };
  }

  private async retryThenRecover(job: Job, first: unknown): Promise<{ value: unknown; via: Via }> {
    try {
      const value = await retryAfterFirstFailure((attempt) => this.attemptOnce(job, attempt), {
        maxAttempts: this.options.retry.maxAttempts,
        poolId: this.id,
        signal: job.signal,
        budget: this.budget,
        shouldRetry: (err, attempt) => this.shouldRetry(job, err, attempt),
        onRetry: () => {
          this.counts.retries++;
        },
      }, first);
      return { value, via: 'pool' };
    } catch (e) {
      const err = this.asPoolError(e, job);
      if (job.poisoned) throw job.poisoned;
      return this.recover(job, err);
    }
  }

  private attemptOnce(job: Job, attempt: number): Promise<unknown> {
    job.attempts = attempt;
    if (this.closing) return Promise.reject(this.closedError(job));
    if (job.session?.lost) return Promise.reject(this.sessionLostError(job.session, job.command));
    return this.attemptAsPromise(job, job.timeoutMs, null);
  }

  /**
   * After failed attempt `attempt`: the decision matrix (with idempotency) says whether to try
   * again and after what delay. Timeouts are left to the recovery (re-sent with a larger
   * timeout); a call that killed its worker twice is quarantined.
   */
  private shouldRetry(job: Job, e: unknown, attempt: number): boolean | { delayMs: number } {
    const err = this.asPoolError(e, job);
    err.attempt = attempt;
    const allDown = this.allWorkersDown();
    if (err.code === 'PYFLEET_WORKER_CRASHED' && err.details?.running === true && this.recordPoison(job, err)) return false;
    const d = this.policy.decide(err, { attempt, affectingAllWorkers: allDown, idempotent: job.idempotent });
    err.severity = d.severity;
    err.strategy = d.strategy;
    this.reportError(err, job);
    if (!d.retry || this.closing || err.code === 'PYFLEET_TIMEOUT') return false;
    const r = this.options.retry;
    if (r.backoff !== undefined) return { delayMs: computeDelay(r.backoff, attempt, { baseDelayMs: r.baseDelayMs, maxDelayMs: r.maxDelayMs }) };
    return { delayMs: Math.min(d.delayMs, r.maxDelayMs) };
  }

  private recordPoison(job: Job, err: PoolError): boolean {
    if (!this.poison.recordDeath(PoisonTracker.key(job.command, job.argsJson))) return false;
    job.poisoned = new PoolError({
      code: 'PYFLEET_POISON_CALL',
      command: job.command,
      sessionId: job.session?.id ?? null,
      workerId: err.workerId,
      attempt: job.attempts,
      cause: err,
      message: `${job.command} killed ${this.options.poison.maxDeaths} workers with these arguments; it was quarantined for ${Math.round(this.options.poison.coolDownMs / 1000)} s instead of being retried on another worker. Fix the input or the handler (last death: ${err.message})`,
    });
    this.logger.error({ poolId: this.id, command: job.command, code: 'PYFLEET_POISON_CALL' }, job.poisoned.message);
    return true;
  }

  /** The recovery orchestrator on the error the retries ended with; the original error when it has nothing better. */
  private async recover(job: Job, err: PoolError): Promise<{ value: unknown; via: Via }> {
    if (this.closing) throw err;
    if (err.code === 'PYFLEET_CIRCUIT_OPEN' && this.fallback !== null) {
      const value = await this.callFallback(job.command, job.args, job.signal, err);
      return { value, via: 'fallback' };
    }
    const wantsRecovery = err.code === 'PYFLEET_TIMEOUT' || (err.category === 'python_error' && err.code !== 'PYFLEET_UNKNOWN_COMMAND' && this.fallback !== null);
    if (!wantsRecovery) throw err;
    const result = await this.orchestrator.handle(err, {
      command: job.command,
      args: job.args,
      sessionId: job.session?.id ?? null,
      workerId: err.workerId,
      timeoutMs: job.timeoutMs,
      idempotent: job.idempotent,
      userFacing: true,
      affectingAllWorkers: this.allWorkersDown(),
      signal: job.signal,
    });
    if (result.outcome === 'recovered') return { value: result.value, via: result.type === 'failover' ? 'fallback' : 'recovery' };
    if (result.error !== undefined && isPoolError(result.error) && result.error !== err && result.type === 'retry_with_backoff') throw result.error;
    throw err;
  }

  /** `attempt` as a promise, for the retries and the recovery's re-sends. */
  private attemptAsPromise(job: Job, timeoutMs: number, avoid: number | null): Promise<unknown> {
    return new Promise((resolve, reject) => this.attempt(job, timeoutMs, avoid, resolve, reject));
  }

  /**
   * One attempt, the seed's execute_in_session: through the pool_operations and worker_commands
   * circuits, then onto a worker that can take it now or into the queue. Reports to `onOk` or
   * `onFailed` exactly once (CallAttempt guards it), after the circuits have counted it.
   */
  private attempt(job: Job, timeoutMs: number, avoid: number | null, onOk: AttemptOk, onFailed: AttemptFailed): void {
    let poolTicket: number;
    let workerTicket: number;
    let a: CallAttempt;
    try {
      poolTicket = this.poolOps.enter();
    } catch (e) {
      return onFailed(e as PoolError, job);
    }
    try {
      workerTicket = this.workerCmds.enter();
    } catch (e) {
      this.poolOps.leaveFailed(poolTicket, e);
      return onFailed(e as PoolError, job);
    }
    const rid = ++this.rid;
    try {
      a = new CallAttempt(job, rid, this.frame(job, rid, timeoutMs), timeoutMs, avoid, poolTicket, workerTicket, this.attemptOwner, onOk, onFailed);
    } catch (e) {
      this.workerCmds.leaveFailed(workerTicket, e);
      this.poolOps.leaveFailed(poolTicket, e);
      return onFailed(e as PoolError, job);
    }
    const signal = job.signal;
    if (signal?.aborted) return a.reject(this.abortedError(job.command, job.session?.id ?? null, signal, rid));
    const w = this.pick(job, avoid);
    if (w !== null) this.sendTo(w, a);
    else this.enqueue(a);
    if (signal !== undefined && !a.settled) {
      a.onAbort = () => {
        const err = this.abortedError(job.command, job.session?.id ?? null, signal, rid);
        if (a.worker === null) {
          this.queue.remove(a);
          a.reject(err);
        } else {
          err.taken = true;
          a.worker.abandon(rid, err);
        }
      };
      signal.addEventListener('abort', a.onAbort, { once: true });
    }
  }

  /** Told every attempt's outcome: the circuits count it, then the attempt's caller hears it. */
  private readonly attemptOwner: AttemptOwner = {
    attemptSucceeded: (a, value) => {
      this.workerCmds.leaveOk(a.workerTicket);
      this.poolOps.leaveOk(a.poolTicket);
      a.onOk(value, a.job);
    },
    attemptFailed: (a, err) => {
      this.workerCmds.leaveFailed(a.workerTicket, err);
      this.poolOps.leaveFailed(a.poolTicket, err);
      a.onFailed(err, a.job);
    },
  };

  private frame(job: Job, rid: number, timeoutMs: number): Buffer {
    let json = `{"t":"call","id":${rid},"cmd":${JSON.stringify(job.command)},"a":${job.argsJson},"dl":${Date.now() + timeoutMs}`;
    if (job.session !== null) json += `,"sid":${JSON.stringify(job.session.id)}`;
    if (this.chaos !== null) {
      const fault = this.chaos.forCall();
      if (fault !== undefined) json += `,"x":${JSON.stringify(fault)}`;
    }
    try {
      return encodeFrame(`${json}}`, this.options.maxFrameBytes);
    } catch (e) {
      if (e instanceof FrameError) {
        throw new PoolError({ code: 'PYFLEET_FRAME_TOO_LARGE', command: job.command, message: `The call to ${job.command} is over maxFrameBytes (${this.options.maxFrameBytes}). Pass smaller arguments or raise maxFrameBytes.` });
      }
      throw e;
    }
  }

  private pick(job: Job, avoid: number | null): Worker | null {
    const depth = this.options.pipelineDepth;
    const bound = job.session?.workerId ?? null;
    if (bound !== null) {
      const w = this.byId.get(bound);
      return w !== undefined && w.canTake(job.idempotent, depth) ? w : null;
    }
    let best: Worker | null = null;
    let fallbackPick: Worker | null = null;
    for (const w of this.workers) {
      if (!w.canTake(job.idempotent, depth)) continue;
      if (w.id === avoid) {
        fallbackPick = w;
        continue;
      }
      if (best === null || w.load < best.load) {
        best = w;
        if (w.load === 0) break;
      }
    }
    return best ?? fallbackPick;
  }

  private sendTo(w: Worker, a: CallAttempt): void {
    a.worker = w;
    const s = a.job.session;
    if (s !== null && s.workerId === null) this.sessions.bind(s, w.id);
    w.send(a);
  }

  private enqueue(a: CallAttempt): void {
    const job = a.job;
    if (this.queue.length >= this.options.maxQueue) {
      a.reject(
        new PoolError({
          code: 'PYFLEET_QUEUE_FULL',
          command: job.command,
          sessionId: job.session?.id ?? null,
          message: `All workers are busy and ${this.queue.length} calls are already waiting (maxQueue ${this.options.maxQueue}); the call was refused. Slow down, add workers (workers.max) or raise maxQueue.`,
        }),
      );
      return;
    }
    this.queue.push(a);
    a.queueTimer = setTimeout(() => {
      this.queue.remove(a);
      const none = this.workers.length === 0;
      a.reject(
        new PoolError({
          code: none ? 'PYFLEET_NO_WORKERS' : 'PYFLEET_QUEUE_TIMEOUT',
          command: job.command,
          sessionId: job.session?.id ?? null,
          message: none
            ? `No worker could be started to run ${job.command} within queueTimeoutMs (${this.options.queueTimeoutMs} ms); see the log for why workers fail to start.`
            : `${job.command} waited ${this.options.queueTimeoutMs} ms (queueTimeoutMs) for a free worker${job.session ? ` (its session is bound to worker ${job.session.workerId})` : ''}. Add workers (workers.max), raise queueTimeoutMs, or send fewer calls at once.`,
        }),
      );
    }, this.options.queueTimeoutMs);
    this.grow();
  }

  /** A worker can take work: hand it queued calls, oldest first. */
  private onAvailable(w: Worker): void {
    if (this.queue.length > 0) {
      const depth = this.options.pipelineDepth;
      this.queue.takeWhile(
        (a) => {
          const bound = a.job.session?.workerId ?? null;
          if ((bound !== null && bound !== w.id) || !w.canTake(a.job.idempotent, depth)) return false;
          this.sendTo(w, a);
          return true;
        },
        () => !w.canTake(true, depth),
      );
    }
    if (this.closing) this.checkDrained();
    else if (w.load === 0 && this.options.recycle.maxRequests > 0 && w.requests >= this.options.recycle.maxRequests && !w.draining) {
      void this.recycle(w, `served ${w.requests} requests (recycle.maxRequests ${this.options.recycle.maxRequests})`);
    }
  }

  private settled(job: Job, ok: boolean, via: Via, err: PoolError | null): void {
    this.counts.inFlight--;
    if (ok) {
      this.counts.succeeded++;
      if (via === 'fallback') this.counts.viaFallback++;
      else if (via === 'recovery') this.counts.viaRecovery++;
    } else this.counts.failed++;
    if (job.session) {
      job.session.inflight--;
      job.session.lastUsed = performance.now();
    }
    if (channels['call:end'].hasSubscribers) {
      channels['call:end'].publish({
        poolId: this.id,
        callId: job.callId,
        command: job.command,
        sessionId: job.session?.id ?? null,
        ok,
        durationMs: performance.now() - job.startedAt,
        attempts: job.attempts,
        code: err?.code ?? null,
        via: via === 'fallback' ? 'fallback' : 'pool',
      });
    }
  }

  private reportError(err: PoolError, job: Job): void {
    this.errorsByCategory[err.category]++;
    const ch = channels['pool:error'];
    if (ch.hasSubscribers) {
      ch.publish({
        poolId: this.id,
        code: err.code,
        category: err.category,
        severity: err.severity,
        strategy: err.strategy,
        workerId: err.workerId,
        sessionId: err.sessionId,
        command: err.command,
        attempt: err.attempt,
        durationMs: performance.now() - job.startedAt,
        message: err.message,
      });
    }
    // Fast refusals and the user's own exceptions would flood the log at call rate; they reach the caller anyway.
    const quiet = err.category === 'python_error' || err.code === 'PYFLEET_CIRCUIT_OPEN' || err.code === 'PYFLEET_QUEUE_FULL' || err.code === 'PYFLEET_ABORTED';
    if (quiet) this.logger.debug?.({ poolId: this.id, ...logFields(err) }, err.message);
    else this.logger.warn({ poolId: this.id, ...logFields(err) }, formatForLogging(err));
  }

  // ---- recovery actions --------------------------------------------------

  /** Re-sends a timed-out call with the recovery's larger timeout, preferring another worker, through the circuits. */
  private resend(call: RecoveryCall): Promise<unknown> {
    const job = this.jobFromRecovery(call);
    if (this.closing) return Promise.reject(this.closedError(job));
    return this.attemptAsPromise(job, call.timeoutMs, call.workerId);
  }

  private jobFromRecovery(call: RecoveryCall): Job {
    const session = call.sessionId === null ? null : (this.sessions.get(call.sessionId) ?? null);
    if (session?.lost) throw this.sessionLostError(session, call.command);
    return {
      command: call.command,
      args: call.args,
      callId: ++this.callSeq,
      argsJson: serializeArgs(call.args, call.command),
      session,
      idempotent: call.idempotent,
      timeoutMs: call.timeoutMs,
      signal: call.signal,
      startedAt: performance.now(),
      attempts: call.attempt,
      workerId: null,
      poisoned: null,
      detailed: false,
      resolve: noop,
      reject: noop,
    };
  }

  private failover(call: RecoveryCall): Promise<unknown> {
    if (this.fallback === null) return Promise.reject(new Error('no fallback is configured (createPool({ fallback }))'));
    return this.callFallback(call.command, call.args, call.signal, call.error);
  }

  private async callFallback(command: string, args: unknown, signal: AbortSignal | undefined, original: PoolError): Promise<unknown> {
    const fb = this.fallback!;
    try {
      const opts: AdapterCallOptions = signal === undefined ? {} : { signal };
      const value = await fb.execute(command, args, opts);
      this.logger.warn({ poolId: this.id, command, fallback: fb.name, code: original.code }, `${command} answered by fallback ${fb.name} after ${original.code}`);
      return value;
    } catch (e) {
      throw new PoolError({
        code: original.code,
        command,
        cause: e,
        python: original.python,
        message: `${original.message} The fallback ${fb.name} failed too: ${(e as Error)?.message ?? String(e)}`,
      });
    }
  }

  /** Kills worker `id` if it is still alive and resolves once its replacement said hello. */
  private async replaceWorker(id: number, reason: string): Promise<void> {
    const w = this.byId.get(id);
    if (w !== undefined && w.alive) {
      // Marked as the pool's own doing, so its exit is not taken for a crash to recover from again.
      w.draining = true;
      this.restarts.total++;
      this.restarts.byReason.replaced = (this.restarts.byReason.replaced ?? 0) + 1;
      // A worker still cancelling a timed-out call exits once the handler acknowledged the cancel
      // (its cleanup ran), or is killed after cancelGraceMs; killing it now would skip the cleanup.
      if (w.cancelPending) void w.stop(`replaced: ${reason}`);
      else w.kill(`replaced: ${reason}`);
      await w.exited();
    }
    await this.awaitReplacement(id);
  }

  /** Drains worker `id`, stops it, and resolves once its replacement said hello. */
  private async recycleWorker(id: number, reason: string): Promise<void> {
    const w = this.byId.get(id);
    if (w !== undefined && w.alive) await this.recycle(w, reason);
    await this.awaitReplacement(id);
  }

  private async awaitReplacement(id: number): Promise<void> {
    const r = this.replacements.get(id);
    if (r === undefined) {
      if (this.closing) throw new Error('the pool is closing');
      return;
    }
    const w = await r;
    if (w === null) throw new Error(`no replacement for worker ${id} could be started`);
  }

  private async recycle(w: Worker, reason: string): Promise<void> {
    if (w.draining) return w.exited();
    this.logger.info({ poolId: this.id, workerId: w.id, pid: w.pid, reason }, `recycling worker ${w.id}: ${reason}`);
    // Start the replacement first so capacity does not dip while the old one drains.
    this.restarts.total++;
    this.restarts.byReason.recycle = (this.restarts.byReason.recycle ?? 0) + 1;
    this.replacements.set(w.id, this.spawnWorker(w.restarts + 1, true).catch(() => null));
    await w.stop(`recycled: ${reason}`);
  }

  // ---- workers -----------------------------------------------------------

  private async spawnWorker(restarts: number, backoff: boolean): Promise<Worker> {
    this.starting++;
    let counted = true;
    try {
      if (backoff && this.startFailures > 0) {
        const r = this.options.restart;
        await sleep(Math.min(r.maxDelayMs, r.baseDelayMs * 2 ** (this.startFailures - 1)));
      }
      if (this.closing) throw this.closedError(null);
      const id = ++this.nextWorkerId;
      // Start-up faults spare the first workers, so createPool itself is not what chaos tests.
      const env = this.chaos === null ? this.baseEnv : { ...this.baseEnv, ...this.chaos.forStart(id <= Math.max(1, this.options.min)) };
      const w = new Worker(
        {
          poolId: this.id,
          id,
          restarts,
          python: this.python,
          module: this.options.module,
          cwd: this.options.cwd,
          env,
          maxFrameBytes: this.options.maxFrameBytes,
          startupTimeoutMs: this.options.startupTimeoutMs,
          heartbeatMs: this.options.healthCheck.intervalMs,
          maxMissedHeartbeats: this.options.healthCheck.maxMissed,
          cancelGraceMs: this.options.cancelGraceMs,
        },
        this.hooks,
      );
      this.workers.push(w);
      this.byId.set(id, w);
      this.starting--;
      counted = false;
      await w.start();
      if (this.commands === NO_COMMANDS) this.commands = w.commands;
      // A circuit opened because no worker could start need not wait out its timeout once one
      // has: trial calls find out at once. (Not after crashes: a new worker is no evidence that
      // the calls which killed the old ones are gone, and trials would feed it to them.)
      if (this.openedWhileDown) {
        this.openedWhileDown = false;
        this.poolOps.halfOpen('worker_ready');
      }
      this.startFailures = 0;
      return w;
    } catch (e) {
      if (counted) this.starting--;
      if (isPoolError(e) && e.category === 'initialization_error') this.startFailures++;
      throw e;
    }
  }

  private onWorkerExit(w: Worker, info: ExitInfo): void {
    const i = this.workers.indexOf(w);
    if (i >= 0) this.workers.splice(i, 1);
    this.byId.delete(w.id);
    const lost = this.sessions.markLost(w.id, info.expected ? `its worker ${w.id} was stopped (${info.reason})` : `its worker ${w.id} died (${info.reason})`);
    if (lost.length > 0) {
      const set = new Set(lost);
      for (const a of this.queue.drain((x) => x.job.session !== null && set.has(x.job.session.id))) a.reject(this.sessionLostError(a.job.session!, a.job.command));
    }
    if (this.closing) {
      this.checkDrained();
      return;
    }
    const readyOnce = w.readyAt !== null;
    if (!info.expected) {
      this.logger[readyOnce ? 'warn' : 'error']({ poolId: this.id, workerId: w.id, pid: w.pid, exitCode: info.code, signal: info.signal, reason: info.reason }, `worker ${w.id} exited: ${info.reason}`);
      if (readyOnce) {
        this.restarts.total++;
        const key = info.error?.code === 'PYFLEET_PROTOCOL_ERROR' ? 'protocol_error' : info.error?.code === 'PYFLEET_HEALTH_CHECK_FAILED' ? 'health_check' : 'crash';
        this.restarts.byReason[key] = (this.restarts.byReason[key] ?? 0) + 1;
      }
    }
    // A worker that died is always replaced (the pool shrinks later if idle); a failed start is
    // retried while below min. Before createPool resolved, the failure is createPool's to report.
    const needed = (!info.expected && readyOnce) || this.workers.length + this.starting < this.options.min || this.queue.length > 0;
    if (this.started && !this.replacements.has(w.id) && needed) {
      this.replacements.set(
        w.id,
        this.spawnWorker(readyOnce ? w.restarts + 1 : w.restarts, true).catch((e: unknown) => {
          this.onStartFailure(e);
          return null;
        }),
      );
    }
    if (!info.expected && readyOnce) this.recoverFromExit(w, info);
    if (this.replacements.size > 64) for (const k of [...this.replacements.keys()].slice(0, 32)) this.replacements.delete(k);
  }

  /** A worker died on its own or was killed for a fault: the orchestrator decides what more to do (replace, open the circuit). */
  private recoverFromExit(w: Worker, info: ExitInfo): void {
    const err =
      info.error ??
      new PoolError({
        code: 'PYFLEET_WORKER_CRASHED',
        workerId: w.id,
        message: `Worker ${w.id} (pid ${w.pid}) ${info.signal ? `was killed by ${info.signal}` : `exited with code ${info.code}`}.`,
        details: { exitCode: info.code, signal: info.signal },
      });
    const allDown = this.allWorkersDown();
    err.severity = this.policy.severity(err.category, { attempt: 1, affectingAllWorkers: allDown });
    void this.orchestrator.handle(err, { workerId: w.id, affectingAllWorkers: allDown }).then((r) => {
      if (!r.ok) this.logger.warn({ poolId: this.id, workerId: w.id, recovery: r.id, type: r.type }, r.reason);
    });
  }

  private onStartFailure(e: unknown): void {
    if (this.closing) return;
    const err = this.asPoolError(e, null);
    this.errorsByCategory[err.category]++;
    this.logger.error({ poolId: this.id, ...logFields(err) }, formatForLogging(err));
    // The worker that failed to start may not have exited yet: it does not count as up.
    if (this.allWorkersDown(err.workerId)) {
      // Nobody can serve: let the orchestrator open the circuit so callers fail fast instead of queueing.
      err.severity = 'critical';
      this.openedWhileDown = true;
      void this.orchestrator.handle(err, { affectingAllWorkers: true });
    }
    // Keep trying to reach min, with backoff (spawnWorker waits before each new attempt).
    this.ensureWorkers();
  }

  private ensureWorkers(): void {
    if (this.closing) return;
    while (this.workers.length + this.starting < Math.max(this.options.min, this.queue.length > 0 ? 1 : 0)) {
      this.spawnWorker(0, true).catch((e: unknown) => this.onStartFailure(e));
    }
  }

  /** One more worker while calls wait, up to max. */
  private grow(): void {
    if (this.closing) return;
    const live = this.workers.length + this.starting;
    const coming = this.starting + this.workers.filter((w) => w.state === 'initializing').length;
    if (live < this.options.max && coming < this.queue.length) {
      this.spawnWorker(0, true).catch((e: unknown) => this.onStartFailure(e));
    } else if (live === 0) this.ensureWorkers();
  }

  private onTick(): void {
    const now = performance.now();
    for (const w of [...this.workers]) w.checkHealth(now);
    this.expireSessions(now);
    this.shrink();
    const limit = this.options.recycle.maxMemoryMb;
    for (const w of this.workers) {
      void w.sampleRss().then((rss) => {
        if (limit > 0 && rss !== null && rss > limit * 1024 * 1024 && !w.draining && !this.closing) this.memoryOver(w, rss);
      });
    }
  }

  private memoryOver(w: Worker, rss: number): void {
    if (this.overMemory.has(w)) return;
    this.overMemory.add(w);
    const err = new PoolError({
      code: 'PYFLEET_MEMORY_LIMIT',
      workerId: w.id,
      severity: 'minor',
      message: `Worker ${w.id} (pid ${w.pid}) uses ${Math.round(rss / 1048576)} MB, over recycle.maxMemoryMb (${this.options.recycle.maxMemoryMb}); it is recycled to free the memory.`,
    });
    this.errorsByCategory.resource_error++;
    this.logger.warn({ poolId: this.id, ...logFields(err) }, err.message);
    void this.orchestrator.handle(err, { workerId: w.id });
  }

  private expireSessions(now: number): void {
    for (const s of this.sessions.expired(now, this.options.sessionTtlMs)) this.closeSession(s.id);
  }

  private shrink(): void {
    const idleMs = this.options.idleTimeoutMs;
    let live = this.workers.filter((w) => !w.draining).length;
    const now = performance.now();
    for (const w of this.workers) {
      if (live <= this.options.min) return;
      if (w.draining || w.load > 0 || w.state !== 'ready' || this.sessions.countOn(w.id) > 0) continue;
      // Time in 'ready' is time idle: a worker is busy while it holds a call.
      if (w.stateAgeMs(now) >= idleMs) {
        live--;
        void w.stop(`idle for ${idleMs} ms above workers.min`);
      }
    }
  }

  /**
   * The seed's "affecting all workers": no worker is serving, recovering (degraded after a
   * timeout) or starting. A pool whose only worker crashed is not down while its replacement starts.
   */
  private allWorkersDown(except: number | null = null): boolean {
    return this.starting === 0 && !this.workers.some((w) => w.id !== except && w.state !== 'terminating' && w.state !== 'terminated');
  }

  // ---- stats & errors ----------------------------------------------------

  stats(): PoolStats {
    const now = Date.now();
    return {
      poolId: this.id,
      module: this.options.module,
      closed: this.closed,
      workers: this.workers.map((w) => ({
        id: w.id,
        pid: w.pid,
        state: w.state,
        health: w.health,
        requests: w.requests,
        restarts: w.restarts,
        inflight: w.load,
        sessions: this.sessions.countOn(w.id),
        rssMb: w.rssBytes === null ? null : Math.round((w.rssBytes / 1048576) * 10) / 10,
        python: w.pythonVersion,
        uptimeMs: now - w.startedAt,
        lastTransition: w.lastTransition,
      })),
      queue: { length: this.queue.length, max: this.options.maxQueue },
      sessions: this.sessions.size,
      calls: { ...this.counts },
      errorsByCategory: { ...this.errorsByCategory },
      restarts: { total: this.restarts.total, byReason: { ...this.restarts.byReason } },
      circuits: this.circuits.snapshot(),
      recoveries: this.orchestrator.metrics(),
      retryBudget: this.budget ? pickBudget(this.budget) : null,
      poison: { quarantined: this.poison.size, refused: this.poisonRefused },
      chaos: this.chaos === null ? null : { seed: this.chaos.config.seed, injected: { ...this.chaos.injected } },
    };
  }

  /** Worker pids alive now (tests and the chaos report check for orphans with it). */
  pids(): number[] {
    return this.workers.map((w) => w.pid).filter((p): p is number => p !== null);
  }

  private asPoolError(e: unknown, job: Job | null): PoolError {
    if (isPoolError(e)) {
      if (job !== null) {
        e.command ??= job.command;
        e.sessionId ??= job.session?.id ?? null;
      }
      return e;
    }
    return new PoolError({
      code: 'PYFLEET_INTERNAL',
      category: classify(e),
      command: job?.command ?? null,
      cause: e,
      message: `Unexpected failure: ${(e as Error)?.message ?? String(e)}. This is likely a pyfleet bug; please report it with this message.`,
    });
  }

  private badCall(what: string, command?: string): PoolError {
    return new PoolError({ code: 'PYFLEET_INVALID_ARGS', command: command ?? null, message: `Invalid call: ${what}.` });
  }

  private closedError(job: Job | null, command?: string): PoolError {
    return new PoolError({
      code: 'PYFLEET_POOL_CLOSED',
      command: job?.command ?? command ?? null,
      sessionId: job?.session?.id ?? null,
      message: 'The pool is closed or closing; the call was not run. Create a new pool to send more calls.',
    });
  }

  private abortedError(command: string, sessionId: string | null, signal: AbortSignal, rid?: number): PoolError {
    return new PoolError({
      code: 'PYFLEET_ABORTED',
      command,
      sessionId,
      requestId: rid ?? null,
      cause: signal.reason,
      message: `${command} was aborted by its AbortSignal${signal.reason instanceof Error ? ` (${signal.reason.message})` : ''}; it was cancelled in the worker if it had started.`,
    });
  }

  private sessionLostError(s: SessionEntry, command: string): PoolError {
    return new PoolError({
      code: 'PYFLEET_SESSION_LOST',
      command,
      sessionId: s.id,
      workerId: s.workerId,
      message: `Session ${JSON.stringify(s.id)} lost its state: ${s.lost}. It is not re-created empty behind your back; close it (session.close() or pool.closeSession(id)) and start it again.`,
    });
  }
}

/** Serializes call arguments once, at the call site: bad input is the caller's error, not a worker's. */
function serializeArgs(args: unknown, command: string): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(args === undefined ? null : args);
  } catch (e) {
    throw new PoolError({
      code: 'PYFLEET_INVALID_ARGS',
      command,
      cause: e,
      message: `The arguments of ${command} cannot be sent as JSON: ${(e as Error).message}. Convert BigInt to string or number and remove circular references.`,
    });
  }
  if (json === undefined) {
    throw new PoolError({ code: 'PYFLEET_INVALID_ARGS', command, message: `The arguments of ${command} (${typeof args}) cannot be sent as JSON. Pass an object, array, string, number, boolean or null.` });
  }
  return json;
}

function pickBudget(b: RetryBudget): { calls: number; retries: number; denied: number } {
  const s = b.stats();
  return { calls: s.calls, retries: s.retries, denied: s.denied };
}

/** `pool.session(id)`: the same calls with `sessionId` set. */
export class PoolSession {
  constructor(
    readonly pool: Pool,
    readonly id: string,
  ) {}

  execute<T = unknown>(command: string, args?: unknown, options: Omit<ExecuteOptions, 'sessionId' | 'detailed'> = {}): Promise<T> {
    return this.pool.execute<T>(command, args, { ...options, sessionId: this.id, detailed: false });
  }

  /** Drops the session's state in its worker. */
  async close(): Promise<void> {
    this.pool.closeSession(this.id);
  }
}
