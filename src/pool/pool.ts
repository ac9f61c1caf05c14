import { setMaxListeners } from 'node:events';
import type { Adapter } from '../adapters/adapter.js';
import type { ArgsCheck } from '../call/admission.js';
import { CallCore, nextOwnerId } from '../call/core.js';
import { badCall, closedError, sessionLostError } from '../call/errors.js';
import { PoolSession } from '../call/session.js';
import type { Caller, DetailedResult, ExecuteOptions, StreamOptions } from '../call/types.js';
import { PoolError } from '../errors/pool-error.js';
import type { CommandInfo } from '../protocol/messages.js';
import { POOL_OPERATIONS } from '../resilience/circuit-registry.js';
import { RecoveryOrchestrator } from '../resilience/recovery/orchestrator.js';
import { channels, subscribe, type EventName, type EventPayloads } from '../telemetry/channels.js';
import type { CommandMap, Typed } from '../typing/typed-pool.js';
import { defaultLogger } from '../util/logger.js';
import { resolvePython } from '../worker/python-path.js';
import type { Worker } from '../worker/worker.js';
import { PoolCall, type Attempt } from './call.js';
import { ChaosMonkey } from './chaos.js';
import { Counters } from '../call/counters.js';
import { PoisonTracker } from '../call/poison.js';
import { PoolCircuits } from './circuits.js';
import { Dispatcher } from './dispatcher.js';
import { Durability } from './durability.js';
import { forgetAtExit, keepUntilExit } from './exit-hook.js';
import { Incidents } from './incidents.js';
import { resolveOptions, type PoolOptions, type ResolvedOptions } from './options.js';
import { SessionTable } from './sessions.js';
import { budgetStats, workerStats, type PoolStats } from './stats.js';
import { Supervisor } from './supervisor.js';

export type { DetailedResult, ExecuteOptions, StreamOptions, Via } from '../call/types.js';
export type { PoolStats, WorkerStats } from './stats.js';
export { PoolSession } from '../call/session.js';

const NO_COMMANDS: Record<string, CommandInfo> = Object.freeze({}) as Record<string, CommandInfo>;


/** A `Pool` whose `execute`, `stream` and `session` check command names, args and results at compile time. */
export type TypedPool<C extends CommandMap<C>> = Typed<Pool, C>;

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
  // Ajv is loaded only by pools that validate (it takes tens of ms to import).
  const validator = resolved.validateArgs ? new (await import('../validate/args-validator.js')).ArgsValidator({ schemas: (c) => pool.registeredCommands[c]?.args }) : null;
  const pool: Pool = new Pool(resolved, python, validator);
  await pool.start();
  return pool;
}

/**
 * The pool: a facade over its parts (see README, Architecture). The call core (`CallCore`:
 * admission, the call policy, streams, counters) decides what happens to a call; the
 * `Dispatcher` is its target, putting each attempt on a worker or in the queue; the
 * `Supervisor` owns the worker processes; `Incidents` answers what it reports (deaths, failed
 * starts, memory) with `PoolCircuits` and the recovery's worker actions.
 */
export class Pool implements Adapter, Caller {
  readonly id = nextOwnerId();
  readonly name: string;
  readonly options: Readonly<ResolvedOptions>;
  readonly python: string;
  private readonly sessions: SessionTable;
  private readonly circuits: PoolCircuits;
  private readonly incidents: Incidents;
  private readonly chaos: ChaosMonkey | null;
  private readonly orchestrator: RecoveryOrchestrator;
  private readonly supervisor: Supervisor;
  private readonly dispatcher: Dispatcher;
  private readonly core: CallCore<PoolCall>;
  private readonly closeController = new AbortController();
  private readonly durability: Durability | null;
  private commands: Record<string, CommandInfo> = NO_COMMANDS;
  private closed = false;
  private closePromise: Promise<void> | null = null;
  private drained: (() => void) | null = null;

  constructor(
    options: ResolvedOptions,
    python: string,
    private readonly validator: ArgsCheck | null = null,
  ) {
    this.options = options;
    this.python = python;
    this.name = `pool:${options.module}`;
    const logger = options.logger ?? defaultLogger();
    setMaxListeners(0, this.closeController.signal);
    const circuits = (this.circuits = new PoolCircuits(this.id, options, logger));
    this.chaos = options.chaos === null ? null : new ChaosMonkey(options.chaos);
    this.orchestrator = new RecoveryOrchestrator({
      circuitName: POOL_OPERATIONS,
      poolId: this.id,
      strategies: options.recovery.strategies,
      timeLimits: options.recovery.timeLimits,
      actions: {
        replaceWorker: (id, reason) => this.supervisor.replace(id, reason),
        recycleWorker: (id, reason) => this.supervisor.recycle(id, reason),
        openCircuit: (name, reason) => circuits.registry.get(name).trip(reason),
      },
    });
    const counters = new Counters();
    const poison = new PoisonTracker(options.poison.maxDeaths, options.poison.coolDownMs);
    const durability = (this.durability =
      options.sessionStore === null
        ? null
        : new Durability({
            poolId: this.id,
            store: options.sessionStore === 'memory' ? null : options.sessionStore,
            keys: options.sessionKeys,
            persistent: options.persistentSessions,
            ttlMs: options.sessionTtlMs,
            requestTimeoutMs: options.requestTimeoutMs,
            maxFrameBytes: options.maxFrameBytes,
            logger,
            poison,
            maxDeaths: options.poison.maxDeaths,
            failUnsaved: options.snapshotFailure === 'fail',
          }));
    this.sessions = new SessionTable({
      drop: (e, workerId, keepSnapshot) => {
        if (workerId !== null) this.supervisor.worker(workerId)?.post(`{"t":"drop_session","sid":${JSON.stringify(e.id)}}`);
        return keepSnapshot ? durability?.settledSaves(e) : durability?.forget(e);
      },
      advanced: (e) => this.dispatcher.sessionAdvanced(e),
    });
    this.supervisor = new Supervisor(this.id, python, options, this.chaos, this.closeController.signal, {
      ready: (w) => this.workerReady(w),
      available: (w) => {
        this.dispatcher.onAvailable(w);
        if (this.closePromise !== null) this.checkDrained();
      },
      exited: (w, info, died) => this.incidents.workerExited(w, info, died),
      startFailed: (err) => this.incidents.startFailed(err),
      abandonedDied: (w, a) => this.core.policy.blame((a as Attempt).call, w.id),
      memoryOver: (w, rss) => this.incidents.memoryOver(w, rss),
      tick: (now) => {
        for (const s of this.sessions.expired(now, options.sessionTtlMs)) void this.closeSession(s.id);
        poison.purge();
      },
      restarted: (reason) => counters.restart(reason),
      sessionsOn: (id) => this.sessions.pinnedOn(id, durability !== null),
      log: (w, stream, line, err) => {
        logger[err === undefined ? 'info' : 'warn']({ poolId: this.id, workerId: w.id, workerPid: w.pid, stream, err }, line);
        if (channels['worker:log'].hasSubscribers) channels['worker:log'].publish({ poolId: this.id, workerId: w.id, stream, line: err?.stack ?? line });
      },
      bug: (w, err) => logger.error({ poolId: this.id, workerId: w.id, err }, err.message),
      binaryIn: (n) => (counters.binary.fromPython += n),
    });
    this.dispatcher = new Dispatcher({
      options,
      sessions: this.sessions,
      workers: () => this.supervisor.workers,
      worker: (id) => this.supervisor.worker(id),
      poolOperations: circuits.poolOps,
      commandCircuit: (command) => circuits.command(command),
      chaos: this.chaos,
      grow: () => this.supervisor.grow(this.dispatcher.queue.length),
      idle: (w) => this.supervisor.idle(w),
      durability,
      binary: counters.binary,
      commands: () => this.commands,
      allWorkersDown: () => this.supervisor.allWorkersDown(),
    });
    this.core = new CallCore<PoolCall>({
      ownerId: this.id,
      settings: options,
      counters,
      poison,
      target: this.dispatcher,
      logger,
      recovery: this.orchestrator,
      nonFinite: options.nonFinite,
      closeSignal: this.closeController.signal,
      closing: () => this.closePromise !== null,
      closedError,
      check: (command, args, encoded) => {
        const wrong = this.validator?.check(command, args) ?? null;
        if (wrong !== null) throw wrong;
        checkSize(encoded.json, encoded.parts, command, options.maxFrameBytes);
      },
      make: (init) => {
        const sid = init.sessionId;
        // A store that outlives the pool may hold the state of a session new to this pool.
        const session = sid === null ? null : this.sessions.open(sid, performance.now(), options.persistentSessions ? 'maybe' : 'no');
        if (session !== null && session.lost !== null) throw sessionLostError(session, init.command);
        return new PoolCall(init, session);
      },
      enqueue: (call) => {
        const s = call.session!;
        if (s.lost !== null) throw sessionLostError(s, call.command, call);
        this.sessions.enqueue(s, call);
      },
      settled: (call) => {
        if (call.session !== null) this.sessions.settled(call.session, call, performance.now());
        if (this.closePromise !== null) this.checkDrained();
      },
    });
    this.incidents = new Incidents({
      poolId: this.id,
      options,
      logger,
      counters,
      sessions: this.sessions,
      dispatcher: this.dispatcher,
      supervisor: this.supervisor,
      orchestrator: this.orchestrator,
      circuits,
      durableSessions: durability !== null,
      closing: () => this.closePromise !== null,
      checkDrained: () => this.checkDrained(),
    });
  }

  // ---- lifecycle ---------------------------------------------------------

  /** Starts `min` workers at once (at least one, to learn the module's commands). */
  async start(): Promise<void> {
    keepUntilExit(this);
    try {
      await this.supervisor.start();
    } catch (e) {
      await this.close();
      throw e;
    }
  }

  /**
   * Stops taking calls and settles every call before it resolves: queued ones and those waiting
   * to retry are rejected with PYFLEET_POOL_CLOSED, in-flight ones finish (killed after
   * `timeoutMs`, default requestTimeoutMs + cancelGraceMs). Then every worker stops and every
   * process is reaped, and no timer of the pool is left to keep Node alive.
   */
  close(options: { timeoutMs?: number } = {}): Promise<void> {
    this.closePromise ??= this.doClose(options.timeoutMs ?? this.options.requestTimeoutMs + this.options.cancelGraceMs);
    return this.closePromise;
  }

  private async doClose(timeoutMs: number): Promise<void> {
    if (channels['pool:closing'].hasSubscribers) channels['pool:closing'].publish({ poolId: this.id });
    this.supervisor.beginClose();
    this.closeController.abort(closedError(null));
    this.orchestrator.abortAll('the pool is closing');
    this.dispatcher.rejectQueued(() => true, (a) => closedError(a.call));
    if (!this.isDrained()) {
      const t = setTimeout(() => this.supervisor.killAll('pool closed'), timeoutMs);
      await new Promise<void>((r) => {
        this.drained = r;
        this.checkDrained();
      });
      clearTimeout(t);
    }
    await this.supervisor.stopAll('pool closed');
    this.closed = true;
    forgetAtExit(this);
    await this.core.fallback?.close?.();
  }

  /** SIGKILL every worker now (process exit, close timeout). */
  killAll(): void {
    this.supervisor.killAll('pool closed');
  }

  private isDrained(): boolean {
    return this.core.counters.calls.inFlight === 0 && this.supervisor.load === 0;
  }

  private checkDrained(): void {
    if (this.drained !== null && this.isDrained()) {
      const r = this.drained;
      this.drained = null;
      r();
    }
  }

  // ---- calls -------------------------------------------------------------

  /** Runs `command(args)` on a worker. Resolves with the handler's value, or rejects with a PoolError. */
  execute<T = unknown>(command: string, args?: unknown, options?: ExecuteOptions & { detailed?: false }): Promise<T>;
  execute<T = unknown>(command: string, args: unknown, options: ExecuteOptions & { detailed: true }): Promise<DetailedResult<T>>;
  execute<T = unknown>(command: string, args?: unknown, options: ExecuteOptions = {}): Promise<T | DetailedResult<T>> {
    return this.core.execute<T>(command, args, options);
  }

  /**
   * Streams the items a generator command yields (`def` + `yield` or `async def` + `yield`); an
   * ordinary command yields its one value. Options as `execute`'s (`timeoutMs` for the whole
   * stream), plus `highWaterMark` (items the worker may send ahead of the consumer, default 16)
   * and `chunkTimeoutMs` (the longest wait for the next item). Bad input throws here; the call is
   * sent when iteration starts. `break` closes the generator in Python (its `finally` runs).
   */
  stream<T = unknown>(command: string, args?: unknown, options: StreamOptions = {}): AsyncIterableIterator<T> {
    return this.core.stream<T>(command, args, options);
  }

  /** A handle whose calls all carry `sessionId`; `close()` drops the session's state in its worker. */
  session(sessionId: string): PoolSession {
    if (typeof sessionId !== 'string' || sessionId === '') throw badCall('session id must be a non-empty string');
    return new PoolSession(this, sessionId);
  }

  /**
   * Drops a session's state once the calls made before it settled, and resolves then; calls made
   * after it start a new, empty session. A lost session can be used again after this. With
   * `keepSnapshot`, only this pool's copy goes: the store keeps the snapshot, for another pool
   * sharing the store (a fleet host handing the session over) or this one later.
   */
  closeSession(sessionId: string, options: { keepSnapshot?: boolean } = {}): Promise<void> {
    return this.sessions.close(sessionId, options.keepSnapshot === true);
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

  // ---- what the supervisor reports ----------------------------------------

  private workerReady(w: Worker): void {
    // Worker 1 describes the commands with their schemas; another may say hello first.
    if (this.commands === NO_COMMANDS || w.id === 1) {
      this.commands = w.commands;
      // Compiled now rather than on each command's first call (20-45 ms each, once).
      if (this.validator !== null) for (const c of Object.keys(w.commands)) this.validator.check(c, undefined);
    }
    this.circuits.workerReady();
  }

  // ---- stats -------------------------------------------------------------

  stats(): PoolStats {
    const now = Date.now();
    const core = this.core;
    const c = core.counters.snapshot();
    return {
      poolId: this.id,
      module: this.options.module,
      closed: this.closed,
      workers: this.supervisor.workers.map((w) => workerStats(w, this.sessions.countOn(w.id), now)),
      queue: { length: this.dispatcher.queue.length, max: this.options.maxQueue },
      sessions: this.sessions.stats(this.durability?.restored ?? 0),
      calls: c.calls,
      errorsByCategory: c.errorsByCategory,
      restarts: c.restarts,
      circuits: this.circuits.registry.snapshot(),
      recoveries: this.orchestrator.metrics(),
      retryBudget: budgetStats(core.budget),
      poison: { quarantined: core.poison.size, refused: core.counters.poisonRefused },
      binary: { ...core.counters.binary },
      chaos: this.chaos === null ? null : { seed: this.chaos.config.seed, injected: { ...this.chaos.injected } },
    };
  }

  /** Worker pids alive now (tests and the chaos report check for orphans with it). */
  pids(): number[] {
    return this.supervisor.workers.map((w) => w.pid).filter((p): p is number => p !== null);
  }
}

/** Arguments over maxFrameBytes are refused at the call site. */
function checkSize(json: string, parts: readonly { data: ArrayBufferView }[], command: string, max: number): void {
  let binary = 0;
  for (const p of parts) binary += p.data.byteLength + 8;
  // A UTF-8 byte takes at most 3 bytes per UTF-16 unit: most calls skip the exact count.
  if (json.length * 3 + binary + 256 <= max) return;
  const bytes = Buffer.byteLength(json) + binary + 256 + command.length;
  if (bytes > max) {
    throw new PoolError({
      code: 'PYFLEET_FRAME_TOO_LARGE',
      command,
      message: `The arguments of ${command} take ${bytes} bytes${binary > 0 ? ` (binary parts included)` : ''}, over maxFrameBytes (${max}). Pass a path or a reference instead, or raise maxFrameBytes.`,
    });
  }
}
