import { PoolError } from '../errors/pool-error.js';
import type { ErrorCode } from '../errors/codes.js';
import { FrameDecoder, encodeFrame, type FrameError } from '../protocol/frame.js';
import { validateWorkerMessage, type CommandInfo, type ErrMessage, type WorkerMessage } from '../protocol/messages.js';
import { channels } from '../telemetry/channels.js';
import type { Attempt, Task } from './attempt.js';
import { answerError, deathError, exitedAtStartError, healthCheckError, initError, protocolError, timeoutError, type DeathFacts } from './errors.js';
import { InFlight } from './inflight.js';
import { PythonProcess } from './process.js';
import type { ExitInfo, WorkerConfig, WorkerHooks } from './types.js';

export type { ExitInfo, WorkerConfig, WorkerHooks } from './types.js';
import { readRss } from './rss.js';
import { Lifecycle } from './lifecycle.js';
import type { Transition, WorkerHealth, WorkerState } from './states.js';

/** A graceful stop that takes longer than this ends with SIGKILL. */
const STOP_GRACE_MS = 2_000;

/**
 * One Python worker: its process, its protocol and its lifecycle. It settles the attempts it was
 * given, exactly once each: with the answer, or with a PoolError when the attempt times out, is
 * abandoned, or the process dies or talks garbage. It never decides to retry; the pool does.
 */
export class Worker {
  readonly id: number;
  readonly restarts: number;
  pid: number | null = null;
  health: WorkerHealth = 'unknown';
  /** Calls answered (ok or Python error). */
  requests = 0;
  rssBytes: number | null = null;
  commands: Record<string, CommandInfo> = {};
  pythonVersion = '';
  readonly startedAt = Date.now();
  readyAt: number | null = null;
  /** Set once the pool stops giving it work (recycle, shrink, close, replace). */
  draining = false;
  /** Attempts written and not answered, and those given up on until their cancel is acknowledged. */
  private readonly inflight = new InFlight((due) => {
    for (const a of due) this.abandon(a.id, timeoutError(this.id, a));
  });
  /** fd 3's buffer is full: nothing more is written until it drains. */
  private congested = false;
  private proc: PythonProcess | null = null;
  private readonly decoder: FrameDecoder;
  private readonly lifecycle: Lifecycle;
  private lastSeen = performance.now();
  private startTimer: NodeJS.Timeout | null = null;
  private startSettle: ((err: PoolError | null) => void) | null = null;
  private exitInfo: ExitInfo | null = null;
  private fault: PoolError | null = null;
  private stopReason: string | null = null;
  /** The pool sent SIGKILL, or closed fd 3: how it knows a death was its own doing. */
  private killedByPool = false;
  private inputClosed = false;
  private finished = false;
  private readonly exitWaiters: Array<() => void> = [];

  constructor(
    private readonly config: WorkerConfig,
    private readonly hooks: WorkerHooks<Worker>,
  ) {
    this.id = config.id;
    this.restarts = config.restarts;
    this.lifecycle = new Lifecycle(config.poolId, config.id, () => this.pid, (err) => hooks.onBug?.(this, err));
    this.decoder = new FrameDecoder(config.maxFrameBytes, {
      onMessage: (m) => this.onMessage(m as WorkerMessage),
      onError: (e: FrameError) => this.protocolFault(e.message),
    });
  }

  /** Work goes only to a worker that is ready or busy, healthy, not draining, with room in its pipe. */
  get accepting(): boolean {
    return (this.state === 'ready' || this.state === 'busy') && this.health === 'healthy' && !this.draining && !this.congested;
  }

  get alive(): boolean {
    return this.state !== 'terminated';
  }

  /** A cancel was sent and the worker has not acknowledged it yet. */
  get cancelPending(): boolean {
    return this.inflight.cancelPending;
  }

  /** Attempts in flight. */
  get load(): number {
    return this.inflight.size;
  }

  /** Whether `t` may be written now (see `InFlight.admits`). */
  canTake(t: Task): boolean {
    return this.accepting && this.inflight.admits(t, this.config);
  }

  /** Nothing more can be written now, of any kind. */
  get saturated(): boolean {
    return !this.accepting || this.inflight.full(this.config);
  }

  /** Calls running at once now (async and threaded), for stats. */
  get concurrentLoad(): number {
    return this.inflight.concurrent;
  }

  /** The consumer of stream attempt `id` took `n` more items: the worker may send `n` more. */
  credit(id: number, n: number): void {
    if (this.inflight.get(id) !== undefined) this.post(`{"t":"credit","id":${id},"n":${n}}`);
  }

  /** Spawns the process; resolves when it said hello, rejects with a PoolError when it could not start. */
  start(): Promise<void> {
    const cfg = this.config;
    return new Promise<void>((resolve, reject) => {
      this.startSettle = (err) => {
        this.startSettle = null;
        if (this.startTimer) clearTimeout(this.startTimer);
        if (err) reject(err);
        else resolve();
      };
      const proc = new PythonProcess(cfg, {
        onData: (chunk) => {
          this.lastSeen = performance.now();
          this.decoder.push(chunk);
        },
        onLine: (stream, line, err) => this.hooks.onLog(this, stream, line, err),
        onSpawnError: (e) => {
          this.failStart('PYFLEET_SPAWN_FAILED', `Could not start ${cfg.python}: ${e.message}. Check the python option or $PYFLEET_PYTHON.`, e);
          this.finish({ code: null, signal: null, reason: 'spawn failed', expected: false, byPool: false, error: this.fault });
        },
        onExit: (code, signal) => this.onProcessExit(code, signal),
      });
      this.proc = proc;
      this.pid = proc.pid;
      this.startTimer = setTimeout(() => {
        this.failStart(
          'PYFLEET_STARTUP_TIMEOUT',
          `Worker ${this.id} did not start within startupTimeoutMs (${cfg.startupTimeoutMs} ms): importing ${cfg.module} is slow or stuck. Raise startupTimeoutMs or make the import cheaper.`,
        );
        this.stopReason ??= 'start-up timed out';
        this.sigkill();
      }, cfg.startupTimeoutMs);
    });
  }

  /** Writes an attempt's frame and starts its timer. The caller checked canTake. */
  send(attempt: Attempt): void {
    // Written first: the bookkeeping below then overlaps the worker's work instead of preceding it.
    if (!this.proc!.write(attempt.frame)) this.congest();
    const now = performance.now();
    this.inflight.add(attempt, now);
    if (this.state === 'ready') this.transition('busy', 'call', now);
  }

  /**
   * Gives up on an attempt the caller no longer wants (timeout, abort). The attempt is rejected
   * with `err`; the worker is asked to cancel it, and killed if it does not acknowledge in time.
   */
  abandon(id: number, err: PoolError): void {
    const sent = this.inflight.sentOrder(id);
    const a = this.inflight.take(id);
    if (a === undefined) return;
    a.reject(err);
    this.requestCancel(a, err.code === 'PYFLEET_TIMEOUT' ? 'timeout' : 'aborted', sent);
  }

  /** Kills the process now (SIGKILL); a fault given as `err` is what its attempts fail with. */
  kill(reason: string, err?: PoolError): void {
    if (this.finished) return;
    if (err && this.fault === null) this.fault = err;
    this.stopReason ??= reason;
    if (this.state !== 'initializing' && this.state !== 'terminating') this.transition('terminating', reason);
    this.sigkill();
  }

  private sigkill(): void {
    this.killedByPool = true;
    this.proc?.signal('SIGKILL');
  }

  /** Stops taking work, waits for in-flight calls, then closes the input pipe (the worker exits on EOF); SIGKILL if it lingers. */
  async stop(reason: string): Promise<void> {
    this.draining = true;
    this.stopReason ??= reason;
    if (this.finished) return;
    if (this.state === 'initializing') {
      this.sigkill();
      return this.exited();
    }
    if (this.inflight.size === 0 && !this.inflight.cancelPending) this.closeInput(reason);
    return this.exited();
  }

  /** Resolves once the process is gone and the worker is terminated. */
  exited(): Promise<void> {
    if (this.finished) return Promise.resolve();
    return new Promise((r) => this.exitWaiters.push(r));
  }

  /** Sends a message to the worker outside any call (drop_session). */
  post(json: string): void {
    if (this.proc !== null && !this.finished && this.state !== 'terminating') {
      if (!this.proc.write(encodeFrame(json, this.config.maxFrameBytes))) this.congest();
    }
  }

  /**
   * Health from heartbeats: every frame counts as a sign of life. Missing one interval makes the
   * worker unhealthy (no new work); missing `maxMissedHeartbeats` kills an idle one (a busy one is
   * governed by its call's timeout: a handler holding the GIL also stops the heartbeat thread).
   * Returns true when the worker was killed.
   */
  checkHealth(now: number): boolean {
    if (this.state === 'initializing' || this.state === 'terminating' || this.state === 'terminated') return false;
    const interval = this.config.heartbeatMs;
    const missed = Math.floor((now - this.lastSeen) / interval) - 1;
    if (missed < 1) {
      if (this.health !== 'healthy') this.setHealth('healthy');
      return false;
    }
    if (this.health !== 'unhealthy') this.setHealth('unhealthy');
    if (missed >= this.config.maxMissedHeartbeats && this.inflight.size === 0) {
      this.kill(
        'health check failed',
        healthCheckError(this.id, this.pid, now - this.lastSeen, missed),
      );
      return true;
    }
    return false;
  }

  /** Refreshes `rssBytes` from /proc. */
  async sampleRss(): Promise<number | null> {
    if (this.pid === null || this.finished) return null;
    const rss = await readRss(this.pid);
    if (rss !== null) this.rssBytes = rss;
    return rss;
  }

  get state(): WorkerState {
    return this.lifecycle.state;
  }

  /** Time in the current state. */
  stateAgeMs(now = performance.now()): number {
    return this.lifecycle.ageMs(now);
  }

  get exit(): ExitInfo | null {
    return this.exitInfo;
  }

  /** The latest state change (stats show it; every change is published on `worker:transition`). */
  get lastTransition(): Transition | null {
    return this.lifecycle.last;
  }

  // ---- protocol ----------------------------------------------------------

  private onMessage(m: WorkerMessage): void {
    if (this.finished) return;
    const problem = validateWorkerMessage(m as unknown as { t: string } & Record<string, unknown>);
    if (problem !== null) return this.protocolFault(`worker sent an invalid message: ${problem}`);
    // Binary parts of values (a snapshot's are the session events' to count).
    if ((m.t === 'ok' || m.t === 'item') && this.hooks.onBinaryIn !== undefined) {
      const b = (m as { b?: Array<{ n: number }> }).b;
      if (b !== undefined) this.hooks.onBinaryIn(partBytes(b));
    }
    switch (m.t) {
      case 'ok':
        return this.answer(m.id, null, m.v);
      case 'item':
        return this.item(m.id, m.v);
      case 'end':
        return this.answer(m.id, null, m.n);
      case 'snap': {
        // Also for an attempt given up on: the worker's session state changed all the same.
        const a = this.inflight.lookup(m.id);
        if (a === undefined) return this.protocolFault(`worker sent the session snapshot of request ${m.id}, which it was not given`);
        a.snapshot?.(m);
        return;
      }
      case 'err':
        return this.answer(m.id, m, undefined);
      case 'hb':
        return;
      case 'hello':
        if (this.state !== 'initializing') return this.protocolFault('worker said hello twice');
        // A hello after the start-up timed out (or failed otherwise) comes from a worker that is
        // being killed: it must not become ready and take work.
        if (this.startSettle === null) return;
        this.commands = m.commands;
        this.pythonVersion = m.python;
        this.readyAt = Date.now();
        this.health = 'healthy';
        this.transition('ready', 'hello');
        this.startSettle(null);
        this.hooks.onAvailable(this);
        return;
      case 'init_error': {
        const err = initError(this.id, this.config.module, this.config.python, m);
        this.failStart(err.code, err.message, undefined, err.python, err.details);
        return;
      }
    }
  }

  private item(id: number, value: unknown): void {
    const a = this.inflight.get(id);
    if (a === undefined) {
      // Items sent before the worker saw the cancel of a stream we gave up on.
      if (this.inflight.isCancelling(id)) return;
      return this.protocolFault(`worker sent an item of request ${id}, which it was not given or already answered`);
    }
    if (a.item === undefined) return this.protocolFault(`worker sent an item of request ${id}, which is not a stream`);
    a.items++;
    a.item(value);
  }

  private answer(id: number, err: ErrMessage | null, value: unknown): void {
    // The worker finished or acknowledged an attempt we had already given up on.
    const cancel = this.inflight.answerToCancel(id);
    if (cancel !== undefined) {
      if (cancel === 'acknowledged') this.afterCancelSettled();
      return;
    }
    const a = this.inflight.take(id);
    if (a === undefined) return this.protocolFault(`worker answered request ${id}, which it was not given`);
    this.requests++;
    if (err === null) a.resolve(value);
    else a.reject(answerError(this.id, a, err));
    // The answer's chunk arrived at lastSeen: no need to read the clock again.
    if (this.inflight.size === 0) this.becomeIdle(this.lastSeen);
    this.hooks.onAvailable(this);
  }

  private requestCancel(a: Attempt, why: string, sent: number): void {
    if (this.finished || this.state === 'terminating') return;
    const grace = this.config.cancelGraceMs;
    this.inflight.cancel(a, grace, () => this.kill(`cancel of request ${a.id} not acknowledged within ${grace} ms`), sent);
    if (this.state === 'ready' || this.state === 'busy') this.transition('degraded', why);
    if (!this.proc!.write(encodeFrame(`{"t":"cancel","id":${a.id}}`, this.config.maxFrameBytes))) this.congest();
    this.proc!.signal('SIGUSR1');
  }

  private afterCancelSettled(): void {
    if (this.inflight.cancelPending || this.state !== 'degraded') return;
    this.transition('ready', 'cancel acknowledged');
    if (this.inflight.size > 0) this.transition('busy', 'calls in flight');
    else this.becomeIdle();
    this.hooks.onAvailable(this);
  }

  private becomeIdle(now?: number): void {
    if (this.state === 'busy') this.transition('ready', 'idle', now);
    if (this.draining && !this.inflight.cancelPending && this.state === 'ready') this.closeInput(this.stopReason ?? 'stop');
  }

  /** Backpressure: the worker takes nothing more until fd 3 drained. */
  private congest(): void {
    if (this.congested) return;
    this.congested = true;
    this.proc!.onceDrained(() => {
      this.congested = false;
      if (!this.finished) this.hooks.onAvailable(this);
    });
  }

  private closeInput(reason: string): void {
    if (this.state === 'ready' || this.state === 'busy' || this.state === 'degraded') this.transition('terminating', reason);
    this.inputClosed = true;
    this.proc?.endInput();
    const t = setTimeout(() => this.sigkill(), STOP_GRACE_MS);
    t.unref();
  }

  private protocolFault(what: string): void {
    this.kill('protocol error', protocolError(this.id, this.pid, what));
  }

  private failStart(code: ErrorCode, message: string, cause?: unknown, python?: PoolError['python'], details?: PoolError['details']): void {
    const err = new PoolError({ code, message, cause, python, workerId: this.id, details });
    if (this.fault === null) this.fault = err;
    this.startSettle?.(err);
  }

  // ---- process -----------------------------------------------------------

  private onProcessExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.finished) return;
    const byPool = this.killedByPool || (this.inputClosed && code === 0);
    const expected = this.fault === null && byPool && this.draining;
    let reason = this.stopReason ?? (signal ? `killed by ${signal}` : `exited with code ${code}`);
    if (this.state === 'initializing' && this.startSettle) {
      const err = this.fault?.python ? this.fault : exitedAtStartError(this.id, this.config.module, code, signal);
      this.failStart(err.code, err.message, undefined, err.python, err.details);
      reason = 'start-up failed';
    }
    this.finish({ code, signal, reason, expected, byPool, error: this.fault });
  }

  private finish(info: ExitInfo): void {
    if (this.finished) return;
    this.finished = true;
    this.exitInfo = info;
    if (this.startTimer) clearTimeout(this.startTimer);
    const held = this.inflight.atDeath();
    const facts: DeathFacts = { pid: this.pid, code: info.code, signal: info.signal, reason: info.reason, byPool: info.byPool, fault: info.error };
    for (const a of held.attempts) a.reject(deathError(this.id, a, facts, held.running(a)));
    this.draining = true;
    if (this.state !== 'initializing' && this.state !== 'terminating' && this.state !== 'terminated') this.transition('terminating', info.reason);
    this.transition('terminated', info.reason);
    this.health = 'unknown';
    if (channels['worker:exit'].hasSubscribers) {
      channels['worker:exit'].publish({ poolId: this.config.poolId, workerId: this.id, pid: this.pid, exitCode: info.code, signal: info.signal, reason: info.reason });
    }
    if (!info.byPool) for (const a of held.abandonedRunning) this.hooks.onAbandonedDied?.(this, a, info);
    this.hooks.onExit(this, info);
    for (const w of this.exitWaiters.splice(0)) w();
  }

  private setHealth(h: WorkerHealth): void {
    this.health = h;
    if (h === 'healthy') this.hooks.onAvailable(this);
  }

  private transition(to: WorkerState, reason: string, now?: number): void {
    this.lifecycle.to(to, reason, now);
  }

}

function partBytes(descriptors: ReadonlyArray<{ n: number }>): number {
  let n = 0;
  for (const d of descriptors) n += d.n;
  return n;
}
