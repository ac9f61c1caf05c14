import { PoolError, isPoolError } from '../errors/pool-error.js';
import { sleep } from '../resilience/retry.js';
import { realClock } from '../util/clock.js';
import type { Attempt } from '../worker/attempt.js';
import { workerEnv } from '../worker/env.js';
import { Worker, type ExitInfo } from '../worker/worker.js';
import type { ChaosMonkey } from './chaos.js';
import { closedError } from '../call/errors.js';
import type { ResolvedOptions } from './options.js';

/** What the supervisor tells the rest of the pool. */
export interface SupervisorHooks {
  /** A worker said hello (the first one teaches the pool the module's commands). */
  ready(w: Worker): void;
  /** A worker can take more work. */
  available(w: Worker): void;
  /** A worker's process is gone; its attempts are settled. Called before any replacement starts. */
  exited(w: Worker, info: ExitInfo, died: boolean): void;
  /** A worker failed to start (it is retried with backoff while below `workers.min`). */
  startFailed(err: PoolError): void;
  /** The worker died running an attempt the pool had given up on: that attempt's call is to blame. */
  abandonedDied(w: Worker, a: Attempt): void;
  /** A worker's RSS passed `recycle.maxMemoryMb` (reported once per worker). */
  memoryOver(w: Worker, rssBytes: number): void;
  /** Every health-check tick (sessions and quarantine expire on it). */
  tick(now: number): void;
  /** A worker is being restarted, for `reason` (stats count them). */
  restarted(reason: string): void;
  /** Sessions bound to a worker keep it from being shrunk away: their state would go with it. */
  sessionsOn(workerId: number): number;
  log(w: Worker, stream: 'stdout' | 'stderr', line: string, err?: Error): void;
  bug(w: Worker, err: Error): void;
  /** Bytes of binary parts a worker sent in results and stream items. */
  binaryIn(bytes: number): void;
}

/**
 * Owns the worker processes: starts them (concurrently, with backoff while starts keep failing),
 * replaces every worker that dies, recycles on request count or memory, grows toward `max` while
 * calls wait and shrinks idle workers back to `min`, and checks health on a tick. It is the one
 * owner of replacements: nothing else starts a worker.
 */
export class Supervisor {
  readonly workers: Worker[] = [];
  private readonly byId = new Map<number, Worker>();
  private readonly replacements = new Map<number, Promise<Worker | null>>();
  private readonly overMemory = new WeakSet<Worker>();
  private readonly baseEnv: Record<string, string>;
  private nextId = 0;
  private starting = 0;
  private startFailures = 0;
  private timer: NodeJS.Timeout | null = null;
  private closing = false;

  constructor(
    private readonly poolId: number,
    private readonly python: string,
    private readonly options: ResolvedOptions,
    private readonly chaos: ChaosMonkey | null,
    /** Aborted when the pool closes: a start waiting out its backoff gives up at once. */
    private readonly closeSignal: AbortSignal,
    private readonly hooks: SupervisorHooks,
  ) {
    this.baseEnv = workerEnv({
      env: options.env,
      maxFrameBytes: options.maxFrameBytes,
      heartbeatMs: options.healthCheck.intervalMs,
      extra: {
        PYFLEET_CONCURRENCY: String(options.concurrency),
        PYFLEET_NON_FINITE: options.nonFinite,
        // 0: no snapshots are made (sessionStore: false). The keys let a worker verify a restore itself.
        PYFLEET_MAX_SESSION_BYTES: String(options.sessionStore === null ? 0 : options.maxSessionBytes),
        ...(options.sessionKeys.length > 0 ? { PYFLEET_SESSION_KEYS: options.sessionKeys.map((k) => k.toString('hex')).join(',') } : {}),
        ...(chaos === null ? {} : { PYFLEET_CHAOS: '1' }),
      },
    });
  }

  worker(id: number): Worker | undefined {
    return this.byId.get(id);
  }

  /** Starts `min` workers at once (at least one, to learn the module's commands). */
  async start(): Promise<void> {
    const n = Math.max(1, this.options.min);
    const results = await Promise.allSettled(Array.from({ length: n }, () => this.spawn(0, false)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    this.timer = setInterval(() => this.onTick(), this.options.healthCheck.intervalMs);
    this.timer.unref();
  }

  /** Stops starting and replacing workers (the pool is closing). */
  beginClose(): void {
    this.closing = true;
    if (this.timer !== null) clearInterval(this.timer);
  }

  /** Stops every worker gracefully and resolves once every process is reaped. */
  async stopAll(reason: string): Promise<void> {
    await Promise.all(this.workers.map((w) => w.stop(reason)));
    await Promise.all([...this.replacements.values()]);
  }

  /** SIGKILL every worker now (process exit, close timeout). */
  killAll(reason: string): void {
    for (const w of this.workers) w.kill(reason);
  }

  /** Attempts in flight on every worker. */
  get load(): number {
    let n = 0;
    for (const w of this.workers) n += w.load;
    return n;
  }

  /**
   * The seed's "affecting all workers": no worker is serving, recovering (degraded after a
   * timeout) or starting. A pool whose only worker crashed is not down while its replacement starts.
   */
  allWorkersDown(except: number | null = null): boolean {
    return this.starting === 0 && !this.workers.some((w) => w.id !== except && w.state !== 'terminating' && w.state !== 'terminated');
  }

  /** Kills worker `id`, which must be alive, and resolves once its replacement said hello. */
  async replace(id: number, reason: string): Promise<void> {
    const w = this.byId.get(id);
    if (w === undefined || !w.alive) throw new Error(`worker ${id} is already gone (a dead worker is replaced as soon as it dies)`);
    // Marked as the pool's own doing, so its exit is not taken for a crash.
    w.draining = true;
    this.hooks.restarted('replaced');
    this.replacements.set(id, this.spawnInBackground(w.restarts + 1));
    // A worker still cancelling a timed-out call exits once the handler acknowledged the cancel
    // (its cleanup ran), or is killed after cancelGraceMs; killing it now would skip the cleanup.
    if (w.cancelPending) void w.stop(`replaced: ${reason}`);
    else w.kill(`replaced: ${reason}`);
    await w.exited();
    await this.replacement(id);
  }

  /** Drains worker `id`, stops it, and resolves once its replacement said hello. */
  async recycle(id: number, reason: string): Promise<void> {
    const w = this.byId.get(id);
    if (w === undefined || !w.alive) throw new Error(`worker ${id} is already gone`);
    await this.recycleWorker(w, reason);
    await this.replacement(id);
  }

  /** A worker with nothing in flight: recycle it if it served `recycle.maxRequests`. */
  idle(w: Worker): void {
    const max = this.options.recycle.maxRequests;
    if (max > 0 && w.requests >= max && !w.draining && !this.closing) void this.recycleWorker(w, `served ${w.requests} requests (recycle.maxRequests ${max})`);
  }

  /** One more worker while calls wait, up to max (or the first one back when none is left). */
  grow(waiting: number): void {
    if (this.closing) return;
    const live = this.workers.length + this.starting;
    const coming = this.starting + this.workers.filter((w) => w.state === 'initializing').length;
    if (live < this.options.max && coming < waiting) this.spawnInBackground(0);
    else if (live === 0) this.ensure(waiting);
  }

  private async recycleWorker(w: Worker, reason: string): Promise<void> {
    if (w.draining) return w.exited();
    // Start the replacement first so capacity does not dip while the old one drains.
    this.hooks.restarted('recycle');
    this.replacements.set(w.id, this.spawn(w.restarts + 1, true).catch(() => null));
    await w.stop(`recycled: ${reason}`);
  }

  private async replacement(id: number): Promise<void> {
    const r = this.replacements.get(id);
    if (r === undefined) {
      if (this.closing) throw new Error('the pool is closing');
      return;
    }
    if ((await r) === null) throw new Error(`no replacement for worker ${id} could be started`);
  }

  private spawnInBackground(restarts: number): Promise<Worker | null> {
    return this.spawn(restarts, true).catch((e: unknown) => {
      this.startFailed(e);
      return null;
    });
  }

  private async spawn(restarts: number, backoff: boolean): Promise<Worker> {
    this.starting++;
    let counted = true;
    try {
      if (backoff && this.startFailures > 0) {
        const r = this.options.restart;
        try {
          await sleep(Math.min(r.maxDelayMs, r.baseDelayMs * 2 ** (this.startFailures - 1)), realClock, this.closeSignal);
        } catch {
          throw closedError(null);
        }
      } else if (backoff) {
        // A replacement starts after what the death set off: a spawn blocks the event loop for
        // milliseconds, and the dead worker's calls are re-sent to the other workers first.
        await new Promise<void>((r) => setImmediate(r));
      }
      if (this.closing) throw closedError(null);
      const id = ++this.nextId;
      // Start-up faults spare the first workers, so createPool itself is not what chaos tests.
      const env = this.chaos === null ? this.baseEnv : { ...this.baseEnv, ...this.chaos.forStart(id <= Math.max(1, this.options.min)) };
      const o = this.options;
      const w = new Worker(
        {
          poolId: this.poolId,
          id,
          restarts,
          python: this.python,
          module: o.module,
          cwd: o.cwd,
          // The first worker also describes the commands' schemas (typed commands): one import of
          // typing per pool, not per worker.
          env: id === 1 ? { ...env, PYFLEET_WORKER_ID: '1', PYFLEET_DESCRIBE: '1' } : { ...env, PYFLEET_WORKER_ID: String(id) },
          maxFrameBytes: o.maxFrameBytes,
          startupTimeoutMs: o.startupTimeoutMs,
          heartbeatMs: o.healthCheck.intervalMs,
          maxMissedHeartbeats: o.healthCheck.maxMissed,
          cancelGraceMs: o.cancelGraceMs,
          pipelineDepth: o.pipelineDepth,
          concurrency: o.concurrency,
        },
        {
          onAvailable: (x) => this.hooks.available(x),
          onExit: (x, info) => this.onExit(x, info),
          onLog: (x, stream, line, err) => this.hooks.log(x, stream, line, err),
          onAbandonedDied: (x, a) => this.hooks.abandonedDied(x, a),
          onBug: (x, err) => this.hooks.bug(x, err),
          onBinaryIn: (n) => this.hooks.binaryIn(n),
        },
      );
      this.workers.push(w);
      this.byId.set(id, w);
      this.starting--;
      counted = false;
      await w.start();
      this.startFailures = 0;
      this.hooks.ready(w);
      return w;
    } catch (e) {
      if (counted) this.starting--;
      if (isPoolError(e) && e.category === 'initialization_error') this.startFailures++;
      throw e;
    }
  }

  private startFailed(e: unknown): void {
    if (this.closing) return;
    this.hooks.startFailed(e instanceof PoolError ? e : new PoolError({ code: 'PYFLEET_SPAWN_FAILED', message: `A worker could not be started: ${(e as Error)?.message ?? String(e)}.`, cause: e }));
    // Keep trying to reach min, with backoff (spawn waits before each new attempt).
    this.ensure(0);
  }

  private ensure(waiting: number): void {
    if (this.closing) return;
    while (this.workers.length + this.starting < Math.max(this.options.min, waiting > 0 ? 1 : 0)) void this.spawnInBackground(0);
  }

  private onExit(w: Worker, info: ExitInfo): void {
    const i = this.workers.indexOf(w);
    if (i >= 0) this.workers.splice(i, 1);
    this.byId.delete(w.id);
    const readyOnce = w.readyAt !== null;
    const died = !info.expected && readyOnce;
    if (died) this.hooks.restarted(restartReason(info));
    this.hooks.exited(w, info, died);
    if (this.closing) return;
    // A worker that died is always replaced (the pool shrinks later if idle); a failed start is
    // retried while below min. Before start() resolved, a failed start is createPool's to report.
    const needed = died || this.workers.length + this.starting < this.options.min;
    if (this.timer !== null && !this.replacements.has(w.id) && needed) {
      this.replacements.set(w.id, this.spawnInBackground(readyOnce ? w.restarts + 1 : w.restarts));
    }
    if (this.replacements.size > 64) for (const k of [...this.replacements.keys()].slice(0, 32)) this.replacements.delete(k);
  }

  private onTick(): void {
    const now = performance.now();
    for (const w of [...this.workers]) w.checkHealth(now);
    this.hooks.tick(now);
    this.shrink(now);
    const limit = this.options.recycle.maxMemoryMb;
    for (const w of this.workers) {
      void w.sampleRss().then((rss) => {
        if (limit > 0 && rss !== null && rss > limit * 1024 * 1024 && !w.draining && !this.closing && !this.overMemory.has(w)) {
          this.overMemory.add(w);
          this.hooks.memoryOver(w, rss);
        }
      });
    }
  }

  private shrink(now: number): void {
    const idleMs = this.options.idleTimeoutMs;
    let live = this.workers.filter((w) => !w.draining).length;
    for (const w of this.workers) {
      if (live <= this.options.min) return;
      if (w.draining || w.load > 0 || w.state !== 'ready' || this.hooks.sessionsOn(w.id) > 0) continue;
      // Time in 'ready' is time idle: a worker is busy while it holds a call.
      if (w.stateAgeMs(now) >= idleMs) {
        live--;
        void w.stop(`idle for ${idleMs} ms above workers.min`);
      }
    }
  }
}

/** Why a worker that died is restarted, as `stats().restarts.byReason` counts it. */
function restartReason(info: ExitInfo): string {
  const code = info.error?.code;
  if (code === 'PYFLEET_PROTOCOL_ERROR') return 'protocol_error';
  if (code === 'PYFLEET_HEALTH_CHECK_FAILED') return 'health_check';
  // Killed by the pool without a fault: a cancel it did not acknowledge within cancelGraceMs.
  if (info.byPool) return 'cancel_timeout';
  return 'crash';
}
