import { PoolError } from '../errors/pool-error.js';
import { DEFAULTS } from '../pool/options.js';
import type { Attempt } from '../worker/attempt.js';
import { encodeFrame } from '../protocol/frame.js';
import { resolvePython } from '../worker/python-path.js';
import { PYTHON_PACKAGE_DIR, Worker } from '../worker/worker.js';
import { defaultLogger, type Logger } from '../util/logger.js';
import type { Adapter, AdapterCallOptions } from './adapter.js';

export interface SingleProcessOptions {
  module: string;
  python?: string;
  requestTimeoutMs?: number;
  startupTimeoutMs?: number;
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
  private rid = 0;
  private starts = 0;
  private readonly logger: Logger;
  private closed = false;

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
    const w = await this.ready();
    const timeoutMs = options.timeoutMs ?? this.options.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs;
    const rid = ++this.rid;
    let json: string | undefined;
    try {
      json = JSON.stringify(args ?? null);
    } catch (e) {
      throw new PoolError({ code: 'PYFLEET_INVALID_ARGS', command, cause: e, message: `The arguments of ${command} cannot be sent as JSON: ${(e as Error).message}.` });
    }
    const frame = encodeFrame(`{"t":"call","id":${rid},"cmd":${JSON.stringify(command)},"a":${json},"dl":${Date.now() + timeoutMs}}`, DEFAULTS.maxFrameBytes);
    return new Promise((resolve, reject) => {
      const signal = options.signal;
      const onAbort = (): void => w.abandon(rid, new PoolError({ code: 'PYFLEET_ABORTED', command, taken: true, message: `${command} was aborted by its AbortSignal.` }));
      const attempt: Attempt = {
        rid,
        command,
        sessionId: null,
        idempotent: false,
        timeoutMs,
        frame,
        deadline: Infinity,
        resolve: (v) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(v);
        },
        reject: (e) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      w.send(attempt);
    });
  }

  private async ready(): Promise<Worker> {
    if (this.worker?.accepting) return this.worker;
    if (this.worker !== null && this.worker.alive) await this.worker.exited();
    this.starting ??= this.spawn().finally(() => {
      this.starting = null;
    });
    return this.starting;
  }

  private async spawn(): Promise<Worker> {
    const python = await resolvePython(this.options.python ?? process.env.PYFLEET_PYTHON ?? DEFAULTS.python);
    const w = new Worker(
      {
        poolId: 0,
        id: ++this.starts,
        restarts: 0,
        python,
        module: this.options.module,
        cwd: this.options.cwd,
        env: {
          ...(process.env as Record<string, string>),
          ...this.options.env,
          PYTHONPATH: process.env.PYTHONPATH ? `${PYTHON_PACKAGE_DIR}:${process.env.PYTHONPATH}` : PYTHON_PACKAGE_DIR,
          PYFLEET_HEARTBEAT_MS: '0',
          PYFLEET_MAX_FRAME: String(DEFAULTS.maxFrameBytes),
          PYFLEET_PARENT_PID: String(process.pid),
        },
        maxFrameBytes: DEFAULTS.maxFrameBytes,
        startupTimeoutMs: this.options.startupTimeoutMs ?? DEFAULTS.startupTimeoutMs,
        // No heartbeats are sent (PYFLEET_HEARTBEAT_MS=0) and none are checked here.
        heartbeatMs: 1_000,
        maxMissedHeartbeats: 3,
        cancelGraceMs: DEFAULTS.cancelGraceMs,
      },
      { onAvailable: () => {}, onExit: () => {}, onLog: (_w, stream, line) => this.logger.info({ adapter: this.name, pid: w.pid, stream }, line) },
    );
    this.worker = w;
    await w.start();
    return w;
  }
}
