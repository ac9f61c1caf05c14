/**
 * A real Python worker spawned without the pool: the same command line and fds as the pool's
 * (calls on fd 3, answers on fd 4), frames written and decoded with src/protocol. Tests drive the
 * runtime message by message and see every frame it sends.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { Readable, Writable } from 'node:stream';
import { encodeArgs, type EncodeArgsOptions } from '../../src/protocol/args.js';
import type { BinaryPart } from '../../src/protocol/binary.js';
import { FrameDecoder, encodeFrame, encodeFrameParts, type FrameError } from '../../src/protocol/frame.js';
import { validateWorkerMessage, type HelloMessage } from '../../src/protocol/messages.js';

export const PYTHON_DIR = fileURLToPath(new URL('../../python', import.meta.url));
export const RUNTIME_FIXTURES = fileURLToPath(new URL('../fixtures/runtime/', import.meta.url));
export const BOOT = 'from pyfleet._worker import main; main()';
export const DEFAULT_MAX_FRAME = 64 * 1024 * 1024;

/** A decoded message from the worker (binary parts placed in `v`). */
export type Msg = { t: string; id?: number; v?: unknown; k?: string; e?: { type: string; message: string; traceback: string }; n?: number; sid?: string; err?: string } & Record<string, unknown>;

export interface RawWorkerOptions {
  module: string;
  python?: string;
  env?: Record<string, string | undefined>;
  maxFrameBytes?: number;
  /** PYFLEET_HEARTBEAT_MS (default 0: no heartbeats, so tests see only what they asked for). */
  heartbeatMs?: number;
  /** Resolve once the process is up, without waiting for hello (start-up failure tests). */
  noHello?: boolean;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

interface Waiter {
  pred: (m: Msg) => boolean;
  resolve: (m: Msg) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** The environment a worker gets from the pool, plus the test's own variables. */
export function workerEnv(opts: RawWorkerOptions): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('PYFLEET_')) env[k] = v;
  env.PYTHONPATH = process.env.PYTHONPATH ? `${PYTHON_DIR}:${process.env.PYTHONPATH}` : PYTHON_DIR;
  env.PYFLEET_MAX_FRAME = String(opts.maxFrameBytes ?? DEFAULT_MAX_FRAME);
  env.PYFLEET_HEARTBEAT_MS = String(opts.heartbeatMs ?? 0);
  env.PYFLEET_PARENT_PID = String(process.pid);
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

export class RawWorker {
  readonly child: ChildProcess;
  readonly input: Writable;
  /** Every message received, in order. */
  readonly messages: Msg[] = [];
  stderr = '';
  stdout = '';
  hello: HelloMessage | null = null;
  frameError: FrameError | null = null;
  /** Problems validateWorkerMessage found in what the worker sent (a test asserts it stays empty). */
  readonly invalid: string[] = [];
  readonly exited: Promise<Exit>;
  exit: Exit | null = null;
  private readonly maxFrame: number;
  private waiters: Waiter[] = [];
  private nextId = 1;

  private constructor(child: ChildProcess, maxFrame: number) {
    this.child = child;
    this.maxFrame = maxFrame;
    this.input = child.stdio[3] as Writable;
    this.input.on('error', () => {});
    const out = child.stdio[4] as Readable;
    const decoder = new FrameDecoder(maxFrame, {
      onMessage: (m) => this.onMessage(m as Msg),
      onError: (e) => {
        this.frameError = e;
        this.failWaiters(new Error(`worker sent a bad frame: ${e.message}`));
      },
    });
    out.on('data', (chunk: Buffer) => decoder.push(chunk));
    out.on('error', () => {});
    (child.stderr as Readable).setEncoding('utf8').on('data', (t: string) => (this.stderr += t));
    (child.stdout as Readable).setEncoding('utf8').on('data', (t: string) => (this.stdout += t));
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        // Answers written just before the exit may still be in the pipe.
        const done = () => {
          this.failWaiters(new Error(`worker exited (code ${code}, signal ${signal}); stderr: ${this.stderr.slice(-2000)}`));
          resolve({ code, signal });
        };
        if (out.readableEnded || out.destroyed) done();
        else out.once('close', done);
      });
    });
  }

  static async start(opts: RawWorkerOptions): Promise<RawWorker> {
    const maxFrame = opts.maxFrameBytes ?? DEFAULT_MAX_FRAME;
    const child = spawn(opts.python ?? 'python3', ['-c', BOOT, opts.module], {
      env: workerEnv(opts),
      stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'],
    });
    const w = new RawWorker(child, maxFrame);
    if (opts.noHello) return w;
    const first = await w.next((m) => m.t === 'hello' || m.t === 'init_error', 20_000);
    if (first.t === 'init_error') {
      await w.exited;
      throw new Error(`init_error: ${first.e?.type}: ${first.e?.message}\n${first.e?.traceback}`);
    }
    w.hello = first as unknown as HelloMessage;
    return w;
  }

  get pid(): number {
    return this.child.pid!;
  }

  private onMessage(m: Msg): void {
    const problem = validateWorkerMessage(m);
    if (problem !== null) this.invalid.push(`${problem}: ${JSON.stringify(m).slice(0, 200)}`);
    this.messages.push(m);
    for (const w of [...this.waiters]) {
      if (w.pred(m)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        clearTimeout(w.timer);
        w.resolve(m);
      }
    }
  }

  private failWaiters(e: Error): void {
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(e);
    }
  }

  /** The first message from now on (or already received, with `past`) that matches. */
  next(pred: (m: Msg) => boolean, timeoutMs = 10_000, past = false): Promise<Msg> {
    if (past) {
      const got = this.messages.find(pred);
      if (got !== undefined) return Promise.resolve(got);
    }
    if (this.exit !== null) return Promise.reject(new Error(`worker already exited (${JSON.stringify(this.exit)}); stderr: ${this.stderr.slice(-2000)}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.splice(
          this.waiters.findIndex((w) => w.timer === timer),
          1,
        );
        reject(new Error(`no matching message within ${timeoutMs} ms; last messages: ${JSON.stringify(this.messages.slice(-5)).slice(0, 1000)}`));
      }, timeoutMs);
      this.waiters.push({ pred, resolve, reject, timer });
    });
  }

  /** The final answer (ok, err or end) of request `id`. */
  answer(id: number, timeoutMs = 10_000): Promise<Msg> {
    return this.next((m) => m.id === id && (m.t === 'ok' || m.t === 'err' || m.t === 'end'), timeoutMs, true);
  }

  /** Everything received for request `id`, in order. */
  of(id: number): Msg[] {
    return this.messages.filter((m) => m.id === id);
  }

  newId(): number {
    return this.nextId++;
  }

  /** Writes buffers as one burst (one writev when the socket allows). */
  write(bufs: Buffer | Buffer[]): void {
    const list = Array.isArray(bufs) ? bufs : [bufs];
    this.input.cork();
    for (const b of list) this.input.write(b);
    this.input.uncork();
  }

  /** Sends a message object (with binary parts when given). */
  post(msg: Record<string, unknown>, parts: BinaryPart[] = []): void {
    this.write(encodeFrameParts(JSON.stringify(msg), parts, this.maxFrame));
  }

  /**
   * Sends a call (args through encodeArgs, so typed arrays become binary parts) and returns its id.
   * `extra` adds or overrides fields of the call message (sid, cr, cid, at, x, dl, ...).
   */
  send(cmd: string, args: unknown = null, extra: Record<string, unknown> = {}, encode?: EncodeArgsOptions): number {
    const id = (extra.id as number | undefined) ?? this.newId();
    const { json, parts } = encodeArgs(args, encode);
    let text = `{"t":"call","id":${id},"cmd":${JSON.stringify(cmd)},"a":${json},"dl":${Date.now() + 60_000}`;
    for (const [k, v] of Object.entries(extra)) if (k !== 'id') text += `,${JSON.stringify(k)}:${JSON.stringify(v)}`;
    this.write(encodeFrameParts(`${text}}`, parts, this.maxFrame));
    return id;
  }

  /** Sends a call and waits for its final answer. */
  async call(cmd: string, args: unknown = null, extra: Record<string, unknown> = {}, timeoutMs = 10_000): Promise<Msg> {
    return this.answer(this.send(cmd, args, extra), timeoutMs);
  }

  /** Sends a call and returns its value; throws with the worker's error otherwise. */
  async value<T = unknown>(cmd: string, args: unknown = null, extra: Record<string, unknown> = {}): Promise<T> {
    const m = await this.call(cmd, args, extra);
    if (m.t !== 'ok') throw new Error(`${cmd} answered ${JSON.stringify(m).slice(0, 2000)}`);
    return m.v as T;
  }

  /** Cancels request `id` as the pool does: a cancel frame, then SIGUSR1. */
  cancel(id: number, signal = true): void {
    this.write(encodeFrame(`{"t":"cancel","id":${id}}`, this.maxFrame));
    if (signal) this.child.kill('SIGUSR1');
  }

  credit(id: number, n: number): void {
    this.write(encodeFrame(`{"t":"credit","id":${id},"n":${n}}`, this.maxFrame));
  }

  /** Closes fd 3 (a clean stop) and waits for the exit. */
  async stop(): Promise<Exit> {
    this.input.end();
    return this.exited;
  }

  kill(): void {
    if (this.exit === null) this.child.kill('SIGKILL');
  }
}

/** Starts a worker for the test and kills it when the test ends. */
export async function withWorker<T>(opts: RawWorkerOptions, fn: (w: RawWorker) => Promise<T>): Promise<T> {
  const w = await RawWorker.start(opts);
  try {
    return await fn(w);
  } finally {
    w.kill();
    await w.exited;
  }
}

/** An interpreter that can import numpy, Debian's own first (python3-numpy lives under /usr/bin/python3), or null. */
export function numpyPython(): string | null {
  for (const py of [process.env.PYFLEET_NUMPY_PYTHON, '/usr/bin/python3', 'python3']) {
    if (!py) continue;
    const r = spawnSync(py, ['-c', 'import numpy'], { stdio: 'ignore' });
    if (r.status === 0) return py;
  }
  return null;
}

export async function exitOf(child: ChildProcess): Promise<Exit> {
  if (child.exitCode !== null || child.signalCode !== null) return { code: child.exitCode, signal: child.signalCode };
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  return { code, signal };
}
