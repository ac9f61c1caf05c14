import { DEFAULTS } from '../defaults.js';
import { PoolError } from '../errors/pool-error.js';
import type { Attempt } from '../worker/attempt.js';
import { encodeFrame } from '../protocol/frame.js';
import { workerEnv } from '../worker/env.js';
import { resolvePython } from '../worker/python-path.js';
import { Worker } from '../worker/worker.js';
import { defaultLogger, type Logger } from '../util/logger.js';
import type { Adapter, AdapterCallOptions } from './adapter.js';

export interface SingleProcessOptions {
  module: string;
  python?: string;
  requestTimeoutMs?: number;
  startupTimeoutMs?: number;
  cancelGraceMs?: number;
  env?: Record<string, string>;
  cwd?: string;
  /** pino-compatible; the process's stdout and stderr lines go here (default: pino to stderr). */
  logger?: Logger;
}

/**
 * One Python process, no pool: calls run one at a time, and a process that died is started
 * again on the next call. Meant as a fallback (e.g. a process with another module or
 * interpreter), or for scripts that want no pool. No retries, no circuits: the caller decides.
 */
export class SingleProcessAdapter implements Adapter {
  readonly name: string;
  private worker: Worker | null = null;
  private starting: Promise<Worker> | null = null;
  private chain: Promise<unknown> = Promise.resolve();
  private seq = 0;
  private starts = 0;
  private readonly logger: Logger;
  private closed = false;
  /** Resolves whoever waits for the worker to take work again (after a cancel was acknowledged). */
  private waiters: Array<() => void> = [];

  constructor(private readonly options: SingleProcessOptions) {
    if (typeof options?.module !== 'string' || options.module === '') {
      throw new PoolError({ code: 'PYFLEET_INVALID_OPTIONS', message: 'Invalid options: SingleProcessAdapter needs a module (a .py path or a dotted name).' });
    }
    this.name = `single-process:${options.module}`;
    this.logger = options.logger ?? defaultLogger();
  }

  execute(command: string, args: unknown, options: AdapterCallOptions = {}): Promise<unknown> {
    const run = this.chain.then(() => this.run(command, args, options));
    this.chain = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.chain;
    await this.worker?.stop('adapter closed');
  }

  private async run(command: string, args: unknown, options: AdapterCallOptions): Promise<unknown> {
    if (this.closed) throw new PoolError({ code: 'PYFLEET_POOL_CLOSED', command, message: `${this.name} is closed; the call was not run.` });
    const timeoutMs = options.timeoutMs ?? this.options.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs;
    const signal = options.signal;
    if (signal?.aborted) throw aborted(command, false);
    let json: string | undefined;
    try {
      json = JSON.stringify(args ?? null);
    } catch (e) {
      throw new PoolError({ code: 'PYFLEET_INVALID_ARGS', command, cause: e, message: `The arguments of ${command} cannot be sent as JSON: ${(e as Error).message}.` });
    }
    const w = await this.ready();
    if (signal?.aborted) throw aborted(command, false);
    const id = ++this.seq;
    const frame = encodeFrame(`{"t":"call","id":${id},"cid":${id},"at":1,"cmd":${JSON.stringify(command)},"a":${json},"dl":${Date.now() + timeoutMs}}`, DEFAULTS.maxFrameBytes);
    return new Promise((resolve, reject) => {
      const onAbort = (): void => w.abandon(id, aborted(command, true));
      const done = () => signal?.removeEventListener('abort', onAbort);
      const attempt: Attempt = {
        id,
        callId: id,
        command,
        sessionId: null,
        idempotent: false,
        timeoutMs,
        kind: 'sync',
        maxConcurrency: null,
        items: 0,
        frame,
        deadline: Infinity,
        resolve: (v) => {
          done();
          resolve(v);
        },
        reject: (e) => {
          done();
          reject(e);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      w.send(attempt);
    });
  }

  /** The worker once it can take a call: after a timeout or an abort it first acknowledges the cancel (or is killed and started again). */
  private async ready(): Promise<Worker> {
    for (;;) {
      const w = this.worker;
      if (w !== null && w.canTake(ANY_CALL)) return w;
      if (w === null || !w.alive) {
        this.starting ??= this.spawn().finally(() => {
          this.starting = null;
        });
        return this.starting;
      }
      // Degraded (a cancel not yet acknowledged) or busy: wait until it is available again or gone.
      await new Promise<void>((r) => {
        this.waiters.push(r);
        void w.exited().then(r);
      });
    }
  }

  private async spawn(): Promise<Worker> {
    const python = await resolvePython(this.options.python ?? process.env.PYFLEET_PYTHON ?? DEFAULTS.python);
    const id = ++this.starts;
    const wake = () => {
      for (const r of this.waiters.splice(0)) r();
    };
    const w = new Worker(
      {
        poolId: 0,
        id,
        restarts: 0,
        python,
        module: this.options.module,
        cwd: this.options.cwd,
        // No heartbeats are sent (0) and none are checked here.
        env: { ...workerEnv({ env: this.options.env, maxFrameBytes: DEFAULTS.maxFrameBytes, heartbeatMs: 0 }), PYFLEET_WORKER_ID: String(id) },
        maxFrameBytes: DEFAULTS.maxFrameBytes,
        startupTimeoutMs: this.options.startupTimeoutMs ?? DEFAULTS.startupTimeoutMs,
        heartbeatMs: DEFAULTS.healthCheck.intervalMs,
        maxMissedHeartbeats: DEFAULTS.healthCheck.maxMissed,
        cancelGraceMs: this.options.cancelGraceMs ?? DEFAULTS.cancelGraceMs,
        pipelineDepth: 1,
        concurrency: 1,
      },
      { onAvailable: wake, onExit: wake, onLog: (_w, stream, line, err) => this.logger[err === undefined ? 'info' : 'warn']({ adapter: this.name, workerPid: w.pid, stream, err }, line) },
    );
    this.worker = w;
    await w.start();
    return w;
  }
}

/** Calls run one at a time: the worker must be idle. */
const ANY_CALL = { command: '', idempotent: false, kind: 'sync', maxConcurrency: null } as const;

function aborted(command: string, taken: boolean): PoolError {
  return new PoolError({ code: 'PYFLEET_ABORTED', command, taken, message: `${command} was aborted by its AbortSignal${taken ? '; it was cancelled in the worker' : ''}.` });
}
