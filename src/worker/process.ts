import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { groupTracebacks } from './tracebacks.js';

const BOOT = 'from pyfleet._worker import main; main()';
const MAX_LOG_LINE = 16 * 1024;
/** After the process exits, how long to wait for the rest of its protocol output. */
const DRAIN_AFTER_EXIT_MS = 250;

export interface ProcessSpec {
  python: string;
  module: string;
  cwd: string | undefined;
  env: Record<string, string>;
}

export interface ProcessEvents {
  /** Bytes from the worker's fd 4 (the protocol). */
  onData(chunk: Buffer): void;
  /** A line the worker printed on stdout or stderr; a traceback on stderr comes whole, with `err`. */
  onLine(stream: 'stdout' | 'stderr', line: string, err?: Error): void;
  /** The interpreter could not be started at all. */
  onSpawnError(err: Error): void;
  /** The process is gone, and what it wrote on fd 4 before dying has been delivered. */
  onExit(code: number | null, signal: NodeJS.Signals | null): void;
}

/**
 * One Python process and its pipes: fd 3 in, fd 4 out, stdout and stderr as log lines. It knows
 * nothing of the protocol; `Worker` does.
 */
export class PythonProcess {
  readonly pid: number | null;
  private readonly child: ChildProcess | null;
  private readonly input: Writable | null;

  constructor(spec: ProcessSpec, events: ProcessEvents) {
    let child: ChildProcess | null = null;
    try {
      child = spawn(spec.python, ['-c', BOOT, spec.module], {
        cwd: spec.cwd,
        env: spec.env,
        stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'],
        windowsHide: true,
      });
    } catch (e) {
      this.child = null;
      this.input = null;
      this.pid = null;
      queueMicrotask(() => events.onSpawnError(e as Error));
      return;
    }
    this.child = child;
    this.pid = child.pid ?? null;
    this.input = child.stdio[3] as Writable;
    const output = child.stdio[4] as Readable;
    // EPIPE when the process is gone: its exit is reported on its own.
    this.input.on('error', () => {});
    output.on('data', (chunk: Buffer) => events.onData(chunk));
    output.on('error', () => {});
    pipeLines(child.stdout as Readable, 'stdout', events);
    pipeLines(child.stderr as Readable, 'stderr', events);
    child.on('error', (e) => {
      if (this.pid === null) events.onSpawnError(e);
    });
    child.on('exit', (code, signal) => {
      let reported = false;
      const done = () => {
        if (reported) return;
        reported = true;
        // Our ends of the pipes go too: a process that inherited them (a fork of the worker) sees EOF.
        this.input?.destroy();
        output.destroy();
        events.onExit(code, signal);
      };
      if (output.readableEnded || output.destroyed) return done();
      const t = setTimeout(done, DRAIN_AFTER_EXIT_MS);
      output.once('close', () => {
        clearTimeout(t);
        done();
      });
    });
  }

  /** Writes to fd 3 (several buffers: one frame with binary parts); false when the pipe's buffer is full (wait for `onceDrained`). */
  write(data: Buffer | readonly Buffer[]): boolean {
    const input = this.input;
    if (input === null || input.destroyed) return true;
    if (!Array.isArray(data)) return input.write(data);
    input.cork();
    let ok = true;
    for (const b of data) ok = input.write(b);
    // Flushed together when the event loop turns: one writev for the frame's pieces.
    process.nextTick(() => input.uncork());
    return ok;
  }

  onceDrained(fn: () => void): void {
    this.input?.once('drain', fn);
  }

  /** Closes fd 3: the worker exits on EOF. */
  endInput(): void {
    this.input?.end();
  }

  signal(sig: NodeJS.Signals): void {
    const c = this.child;
    if (c !== null && c.exitCode === null && c.signalCode === null) {
      try {
        c.kill(sig);
      } catch {
        // already gone
      }
    }
  }
}

function pipeLines(stream: Readable, name: 'stdout' | 'stderr', events: ProcessEvents): void {
  const out = name === 'stderr' ? groupTracebacks((line, err) => events.onLine(name, line, err)) : { line: (line: string) => events.onLine(name, line), end() {} };
  let carry = '';
  stream.setEncoding('utf8');
  stream.on('data', (text: string) => {
    const lines = (carry + text).split('\n');
    carry = lines.pop()!;
    if (carry.length > MAX_LOG_LINE) {
      lines.push(carry);
      carry = '';
    }
    for (const line of lines) out.line(line.length > MAX_LOG_LINE ? `${line.slice(0, MAX_LOG_LINE)}...` : line);
  });
  stream.on('end', () => {
    if (carry !== '') out.line(carry);
    out.end();
  });
  stream.on('error', () => {});
}
