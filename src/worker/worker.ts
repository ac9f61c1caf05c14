import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Readable, Writable } from 'node:stream';
import { PoolError } from '../errors/pool-error.js';
import type { ErrorCode } from '../errors/codes.js';
import { FrameDecoder, encodeFrame, type FrameError } from '../protocol/frame.js';
import { validateWorkerMessage, type CommandInfo, type ErrMessage, type WorkerMessage } from '../protocol/messages.js';
import { channels } from '../telemetry/channels.js';
import type { Attempt } from './attempt.js';
import { readRss } from './rss.js';
import { canTransition, type Transition, type WorkerHealth, type WorkerState } from './states.js';

/** The Python package shipped next to dist/ and src/. */
export const PYTHON_PACKAGE_DIR = fileURLToPath(new URL('../../python', import.meta.url));
const BOOT = 'from pyfleet._worker import main; main()';
const MAX_LOG_LINE = 16 * 1024;
/** After the process exits, how long to wait for the rest of its protocol output. */
const DRAIN_AFTER_EXIT_MS = 250;
/** A graceful stop that takes longer than this ends with SIGKILL. */
const STOP_GRACE_MS = 2_000;

export interface WorkerConfig {
  poolId: number;
  id: number;
  /** How many workers this one replaces in its slot (shown as `restarts`). */
  restarts: number;
  python: string;
  module: string;
  cwd: string | undefined;
  env: Record<string, string>;
  maxFrameBytes: number;
  startupTimeoutMs: number;
  heartbeatMs: number;
  maxMissedHeartbeats: number;
  cancelGraceMs: number;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Why the worker stopped, as the pool or the worker saw it. */
  reason: string;
  /** True when the pool asked it to stop (recycle, shrink, close), false when it died or was killed for a fault. */
  expected: boolean;
  /** The error that ended it, when it was a fault. */
  error: PoolError | null;
}

export interface WorkerHooks {
  /** The worker can take more work (after hello, an answer, a cancel acknowledged). */
  onAvailable(w: Worker): void;
  /** The process is gone and every attempt it held has been settled. */
  onExit(w: Worker, info: ExitInfo): void;
  onLog(w: Worker, stream: 'stdout' | 'stderr', line: string): void;
}

/**
 * One Python process and its protocol. It settles the attempts it was given, exactly once
 * each: with the answer, or with a PoolError when the call times out, is aborted, or the
 * process dies or talks garbage. It never decides to retry; the pool does.
 */
export class Worker {
  readonly id: number;
  readonly restarts: number;
  pid: number | null = null;
  state: WorkerState = 'initializing';
  health: WorkerHealth = 'unknown';
  /** Calls answered (ok or Python error). */
  requests = 0;
  rssBytes: number | null = null;
  commands: Record<string, CommandInfo> = {};
  pythonVersion = '';
  readonly startedAt = Date.now();
  readyAt: number | null = null;
  /** Attempts written to this worker and not yet settled. */
  readonly inflight = new Map<number, Attempt>();
  /** Set once the pool stops giving it work (recycle, shrink, close). */
  draining = false;
  /** Attempts that timed out or were aborted, waiting for the worker to acknowledge the cancel. */
  private readonly cancelling = new Map<number, NodeJS.Timeout>();
  /** Non-idempotent attempts in flight: while one runs, nothing else is sent (see canTake). */
  private exclusive = 0;
  private child: ChildProcess | null = null;
  private input: Writable | null = null;
  private decoder: FrameDecoder;
  private stateSince = performance.now();
  // The latest transition is kept in fields, not an object: ready <-> busy happens on every call.
  private prevState: WorkerState | null = null;
  private lastReason = '';
  private lastDurationMs = 0;
  private lastSeen = performance.now();
  private startTimer: NodeJS.Timeout | null = null;
  private startSettle: ((err: PoolError | null) => void) | null = null;
  private exitInfo: ExitInfo | null = null;
  private fault: PoolError | null = null;
  private stopReason: string | null = null;
  private finished = false;
  private readonly exitWaiters: Array<() => void> = [];

  constructor(
    private readonly config: WorkerConfig,
    private readonly hooks: WorkerHooks,
  ) {
    this.id = config.id;
    this.restarts = config.restarts;
    this.decoder = new FrameDecoder(config.maxFrameBytes, {
      onMessage: (m) => this.onMessage(m as WorkerMessage),
      onError: (e) => this.onFrameError(e),
    });
  }

  /** Work goes only to a worker that is ready or busy, healthy, and not draining. */
  get accepting(): boolean {
    return (this.state === 'ready' || this.state === 'busy') && this.health === 'healthy' && !this.draining;
  }

  get alive(): boolean {
    return this.state !== 'terminated';
  }

  /** A cancel was sent and the worker has not acknowledged it yet. */
  get cancelPending(): boolean {
    return this.cancelling.size > 0;
  }

  get load(): number {
    return this.inflight.size;
  }

  /** Whether this attempt may be written now, given `depth` calls allowed in flight. */
  canTake(idempotent: boolean, depth: number): boolean {
    if (!this.accepting || this.exclusive > 0) return false;
    const n = this.inflight.size;
    return idempotent ? n < depth : n === 0;
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
      let child: ChildProcess;
      try {
        child = spawn(cfg.python, ['-c', BOOT, cfg.module], {
          cwd: cfg.cwd,
          env: cfg.env,
          stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'],
          windowsHide: true,
        });
      } catch (e) {
        this.failStart('PYFLEET_SPAWN_FAILED', `Could not start ${cfg.python}: ${(e as Error).message}. Check the python option or $PYFLEET_PYTHON.`, e);
        this.finish({ code: null, signal: null, reason: 'spawn failed', expected: false, error: this.fault });
        return;
      }
      this.child = child;
      this.pid = child.pid ?? null;
      this.input = child.stdio[3] as Writable;
      const output = child.stdio[4] as Readable;
      this.input.on('error', () => {
        // EPIPE when the process is gone: its exit is handled below.
      });
      output.on('data', (chunk: Buffer) => {
        this.lastSeen = performance.now();
        this.decoder.push(chunk);
      });
      output.on('error', () => {});
      this.pipeLog(child.stdout as Readable, 'stdout');
      this.pipeLog(child.stderr as Readable, 'stderr');
      child.on('error', (e) => {
        if (this.pid === null) {
          this.failStart('PYFLEET_SPAWN_FAILED', `Could not start ${cfg.python}: ${e.message}. Check the python option or $PYFLEET_PYTHON.`, e);
          this.finish({ code: null, signal: null, reason: 'spawn failed', expected: false, error: this.fault });
        }
      });
      child.on('exit', (code, signal) => {
        const done = () => this.onProcessExit(code, signal);
        if (output.readableEnded || output.destroyed) return done();
        const t = setTimeout(done, DRAIN_AFTER_EXIT_MS);
        output.once('close', () => {
          clearTimeout(t);
          done();
        });
      });
      this.startTimer = setTimeout(() => {
        this.failStart(
          'PYFLEET_STARTUP_TIMEOUT',
          `Worker ${this.id} did not start within startupTimeoutMs (${cfg.startupTimeoutMs} ms): importing ${cfg.module} is slow or stuck. Raise startupTimeoutMs or make the import cheaper.`,
        );
        this.signal('SIGKILL');
      }, cfg.startupTimeoutMs);
    });
  }

  /** Writes an attempt's frame and starts its timer. The caller checked canTake. */
  send(attempt: Attempt): void {
    // Written first: the bookkeeping below then overlaps the worker's work instead of preceding it.
    this.input!.write(attempt.frame);
    this.inflight.set(attempt.rid, attempt);
    if (!attempt.idempotent) this.exclusive++;
    const now = performance.now();
    const deadline = (attempt.deadline = now + attempt.timeoutMs);
    if (deadline < this.deadlineAt) this.armDeadline(deadline);
    if (this.state === 'ready') this.transition('busy', 'call', now);
  }

  /**
   * One timer per worker, at the earliest deadline in flight, instead of one per call: creating
   * and clearing a timer per call was a measurable share of a round trip. Calls with the usual
   * timeout end before the timer is due, so it is re-armed only when it fires.
   */
  private deadlineTimer: NodeJS.Timeout | null = null;
  private deadlineAt = Infinity;

  private armDeadline(at: number): void {
    if (this.deadlineTimer !== null) clearTimeout(this.deadlineTimer);
    this.deadlineAt = at;
    this.deadlineTimer = setTimeout(() => this.onDeadline(), Math.max(1, Math.ceil(at - performance.now())));
    // In-flight calls keep the process alive through the worker's pipes; this timer need not.
    this.deadlineTimer.unref();
  }

  private onDeadline(): void {
    this.deadlineTimer = null;
    this.deadlineAt = Infinity;
    const now = performance.now();
    let next = Infinity;
    const due: number[] = [];
    for (const [rid, a] of this.inflight) {
      // Timers may fire a fraction of a millisecond early.
      if (a.deadline - now < 1) due.push(rid);
      else if (a.deadline < next) next = a.deadline;
    }
    for (const rid of due) this.expire(rid);
    if (next < Infinity && !this.finished && next < this.deadlineAt) this.armDeadline(next);
  }

  /**
   * Gives up on an attempt the caller no longer wants (abort). The attempt is rejected with
   * `err`; the worker is asked to cancel it, and killed if it does not acknowledge in time.
   */
  abandon(rid: number, err: PoolError): void {
    const a = this.take(rid);
    if (a === undefined) return;
    a.reject(err);
    this.requestCancel(rid, err.code === 'PYFLEET_TIMEOUT' ? 'timeout' : 'aborted');
  }

  /** Kills the process now (SIGKILL); its attempts fail with `err`'s code when one is given. */
  kill(reason: string, err?: PoolError): void {
    if (this.finished) return;
    if (err && this.fault === null) this.fault = err;
    this.stopReason ??= reason;
    if (this.state !== 'initializing' && this.state !== 'terminating' && this.state !== 'terminated') this.transition('terminating', reason);
    this.signal('SIGKILL');
  }

  /** Stops taking work, waits for in-flight calls, then closes the input pipe (the worker exits on EOF); SIGKILL if it lingers. */
  async stop(reason: string): Promise<void> {
    this.draining = true;
    this.stopReason ??= reason;
    if (this.finished) return;
    if (this.state === 'initializing') {
      this.signal('SIGKILL');
      return this.exited();
    }
    if (this.inflight.size === 0 && this.cancelling.size === 0) this.closeInput(reason);
    return this.exited();
  }

  /** Resolves once the process is gone and the worker is terminated. */
  exited(): Promise<void> {
    if (this.finished) return Promise.resolve();
    return new Promise((r) => this.exitWaiters.push(r));
  }

  /** Sends a message to the worker outside any call (drop_session). */
  post(json: string): void {
    if (this.input && !this.finished && this.state !== 'terminating') this.input.write(encodeFrame(json, this.config.maxFrameBytes));
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
        new PoolError({
          code: 'PYFLEET_HEALTH_CHECK_FAILED',
          message: `Worker ${this.id} (pid ${this.pid}) sent no heartbeat for ${Math.round(now - this.lastSeen)} ms (${missed} missed): it was killed and will be replaced.`,
          workerId: this.id,
        }),
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

  /** Time in the current state. */
  stateAgeMs(now = performance.now()): number {
    return now - this.stateSince;
  }

  // ---- protocol ----------------------------------------------------------

  private onMessage(m: WorkerMessage): void {
    if (this.finished) return;
    const problem = validateWorkerMessage(m as unknown as { t: string } & Record<string, unknown>);
    if (problem !== null) return this.protocolFault(`worker sent an invalid message: ${problem}`);
    switch (m.t) {
      case 'ok':
        return this.answer(m.id, null, m.v);
      case 'err':
        return this.answer(m.id, m, undefined);
      case 'hb':
        return;
      case 'hello':
        if (this.state !== 'initializing') return this.protocolFault('worker said hello twice');
        this.commands = m.commands;
        this.pythonVersion = m.python;
        this.readyAt = Date.now();
        this.health = 'healthy';
        this.transition('ready', 'hello');
        this.startSettle?.(null);
        this.hooks.onAvailable(this);
        return;
      case 'init_error':
        this.failStart(
          'PYFLEET_INIT_FAILED',
          `Worker could not load ${this.config.module}: ${m.e.type}: ${m.e.message}. Fix the module (or its imports, PYTHONPATH, cwd) and create the pool again.`,
          undefined,
          m.e,
        );
        return;
    }
  }

  private answer(rid: number, err: ErrMessage | null, value: unknown): void {
    const cancelTimer = this.cancelling.size === 0 ? undefined : this.cancelling.get(rid);
    if (cancelTimer !== undefined) {
      // The worker finished or acknowledged a call we had already given up on.
      clearTimeout(cancelTimer);
      this.cancelling.delete(rid);
      this.afterCancelSettled();
      return;
    }
    const a = this.take(rid);
    if (a === undefined) return this.protocolFault(`worker answered request ${rid}, which it was not given`);
    this.requests++;
    if (err === null) a.resolve(value);
    else a.reject(this.callError(a, err));
    // The answer's chunk arrived at lastSeen: no need to read the clock again.
    if (this.inflight.size === 0) this.becomeIdle(this.lastSeen);
    this.hooks.onAvailable(this);
  }

  private callError(a: Attempt, m: ErrMessage): PoolError {
    const base = { workerId: this.id, sessionId: a.sessionId, command: a.command, requestId: a.rid, taken: true, python: m.e };
    switch (m.k) {
      case 'python':
        return new PoolError({ ...base, code: 'PYFLEET_PYTHON_ERROR', message: `${a.command} raised ${m.e.type}: ${m.e.message}` });
      case 'unknown_command':
        return new PoolError({ ...base, taken: false, code: 'PYFLEET_UNKNOWN_COMMAND', message: `No command named ${JSON.stringify(a.command)} is registered in the worker. Register it with @command.` });
      case 'cancelled':
        return new PoolError({ ...base, code: 'PYFLEET_ABORTED', message: `${a.command} was cancelled in the worker.` });
      default:
        return new PoolError({ ...base, code: 'PYFLEET_INTERNAL', message: `The worker refused request ${a.rid}: ${m.e.message}. This is a pyfleet bug; please report it.` });
    }
  }

  private take(rid: number): Attempt | undefined {
    const a = this.inflight.get(rid);
    if (a === undefined) return undefined;
    this.inflight.delete(rid);
    if (!a.idempotent) this.exclusive--;
    return a;
  }

  private expire(rid: number): void {
    const a = this.inflight.get(rid);
    if (a === undefined) return;
    this.abandon(
      rid,
      new PoolError({
        code: 'PYFLEET_TIMEOUT',
        message: `${a.command} did not answer within ${a.timeoutMs} ms on worker ${this.id}; it was cancelled. Raise timeoutMs (or requestTimeoutMs) if the work is expected to take longer.`,
        workerId: this.id,
        sessionId: a.sessionId,
        command: a.command,
        requestId: rid,
        taken: true,
        details: { timeoutMs: a.timeoutMs },
      }),
    );
  }

  private requestCancel(rid: number, why: string): void {
    if (this.finished || this.state === 'terminating') return;
    const grace = setTimeout(() => {
      this.cancelling.delete(rid);
      this.kill(`cancel of request ${rid} not acknowledged within ${this.config.cancelGraceMs} ms`);
    }, this.config.cancelGraceMs);
    this.cancelling.set(rid, grace);
    if (this.state === 'ready' || this.state === 'busy') this.transition('degraded', why);
    this.input!.write(encodeFrame(`{"t":"cancel","id":${rid}}`, this.config.maxFrameBytes));
    this.signal('SIGUSR1');
  }

  private afterCancelSettled(): void {
    if (this.cancelling.size > 0 || this.state !== 'degraded') return;
    this.transition('ready', 'cancel acknowledged');
    if (this.inflight.size > 0) this.transition('busy', 'calls in flight');
    else this.becomeIdle();
    this.hooks.onAvailable(this);
  }

  private becomeIdle(now?: number): void {
    if (this.state === 'busy') this.transition('ready', 'idle', now);
    if (this.draining && this.cancelling.size === 0) this.closeInput(this.stopReason ?? 'stop');
  }

  private closeInput(reason: string): void {
    if (this.state === 'ready' || this.state === 'busy' || this.state === 'degraded') this.transition('terminating', reason);
    this.input?.end();
    const t = setTimeout(() => this.signal('SIGKILL'), STOP_GRACE_MS);
    t.unref();
  }

  private protocolFault(what: string): void {
    this.kill(
      'protocol error',
      new PoolError({
        code: 'PYFLEET_PROTOCOL_ERROR',
        message: `Worker ${this.id} (pid ${this.pid}) broke the protocol (${what}); it was killed and will be replaced. Something in the worker wrote to fd 4, or the worker is broken.`,
        workerId: this.id,
      }),
    );
  }

  private onFrameError(e: FrameError): void {
    this.protocolFault(e.message);
  }

  private failStart(code: ErrorCode, message: string, cause?: unknown, python?: PoolError['python']): void {
    const err = new PoolError({ code, message, cause, python, workerId: this.id });
    if (this.fault === null) this.fault = err;
    this.startSettle?.(err);
  }

  // ---- process -----------------------------------------------------------

  private onProcessExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.finished) return;
    const expected = this.fault === null && this.stopReason !== null && this.draining;
    let reason = this.stopReason ?? (signal ? `killed by ${signal}` : `exited with code ${code}`);
    if (this.state === 'initializing' && this.startSettle) {
      const err = this.fault?.python
        ? this.fault
        : new PoolError({
            code: 'PYFLEET_INIT_FAILED',
            message: `Worker for ${this.config.module} exited during start-up (${signal ? `signal ${signal}` : `code ${code}`}) before saying hello. Check the worker's stderr in the log.`,
            workerId: this.id,
          });
      this.failStart(err.code, err.message, undefined, err.python);
      reason = 'start-up failed';
    }
    this.finish({ code, signal, reason, expected, error: this.fault });
  }

  private finish(info: ExitInfo): void {
    if (this.finished) return;
    this.finished = true;
    this.exitInfo = info;
    if (this.startTimer) clearTimeout(this.startTimer);
    if (this.deadlineTimer !== null) clearTimeout(this.deadlineTimer);
    for (const t of this.cancelling.values()) clearTimeout(t);
    this.cancelling.clear();
    const fault = info.error;
    // Python runs calls in the order it got them, so the oldest one in flight is the one that was running.
    let oldest = Infinity;
    for (const rid of this.inflight.keys()) if (rid < oldest) oldest = rid;
    for (const rid of [...this.inflight.keys()]) {
      const a = this.take(rid)!;
      a.reject(
        new PoolError({
          code: fault?.code === 'PYFLEET_PROTOCOL_ERROR' ? 'PYFLEET_PROTOCOL_ERROR' : 'PYFLEET_WORKER_CRASHED',
          message:
            fault?.code === 'PYFLEET_PROTOCOL_ERROR'
              ? `${a.command} was lost: ${fault.message} The call may have run.`
              : `Worker ${this.id} (pid ${this.pid}) ${info.signal ? `was killed by ${info.signal}` : `exited with code ${info.code}`} while running ${a.command} (${info.reason}); the call may have run.`,
          workerId: this.id,
          sessionId: a.sessionId,
          command: a.command,
          requestId: rid,
          taken: true,
          details: { exitCode: info.code, signal: info.signal, running: rid === oldest },
        }),
      );
    }
    this.draining = true;
    if (this.state !== 'initializing' && this.state !== 'terminating' && this.state !== 'terminated') this.transition('terminating', info.reason);
    if (this.state !== 'terminated') this.transition('terminated', info.reason);
    this.health = 'unknown';
    if (channels['worker:exit'].hasSubscribers) {
      channels['worker:exit'].publish({ poolId: this.config.poolId, workerId: this.id, pid: this.pid, exitCode: info.code, signal: info.signal, reason: info.reason });
    }
    this.hooks.onExit(this, info);
    for (const w of this.exitWaiters.splice(0)) w();
  }

  get exit(): ExitInfo | null {
    return this.exitInfo;
  }

  private signal(sig: NodeJS.Signals): void {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) {
      try {
        this.child.kill(sig);
      } catch {
        // already gone
      }
    }
  }

  private pipeLog(stream: Readable, name: 'stdout' | 'stderr'): void {
    let carry = '';
    stream.setEncoding('utf8');
    stream.on('data', (text: string) => {
      const lines = (carry + text).split('\n');
      carry = lines.pop()!;
      if (carry.length > MAX_LOG_LINE) {
        lines.push(carry);
        carry = '';
      }
      for (const line of lines) this.hooks.onLog(this, name, line.length > MAX_LOG_LINE ? `${line.slice(0, MAX_LOG_LINE)}...` : line);
    });
    stream.on('end', () => {
      if (carry !== '') this.hooks.onLog(this, name, carry);
    });
    stream.on('error', () => {});
  }

  private setHealth(h: WorkerHealth): void {
    this.health = h;
    if (h === 'healthy') this.hooks.onAvailable(this);
  }

  /** The latest state change (stats show it; every change is published on `worker:transition`). */
  get lastTransition(): Transition | null {
    if (this.prevState === null) return null;
    return { from: this.prevState, to: this.state, reason: this.lastReason, at: Math.round(performance.timeOrigin + this.stateSince), durationMs: this.lastDurationMs };
  }

  private transition(to: WorkerState, reason: string, now = performance.now()): void {
    const from = this.state;
    if (from === to || !canTransition(from, to)) return;
    const durationMs = now - this.stateSince;
    this.prevState = from;
    this.state = to;
    this.lastReason = reason;
    this.lastDurationMs = durationMs;
    this.stateSince = now;
    if (channels['worker:transition'].hasSubscribers) {
      channels['worker:transition'].publish({ poolId: this.config.poolId, workerId: this.id, pid: this.pid, from, to, reason, durationMs });
    }
  }
}
