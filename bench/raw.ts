/**
 * The limit the pool is measured against: the same Python worker runtime, spawned by hand with
 * the same command line and environment as the pool's, and driven with hand-written call
 * frames on fd 3, answers read from fd 4. No queue, no retry, no circuit, no timers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { PYTHON_PACKAGE_DIR } from '../dist/worker/env.js';

const BOOT = 'from pyfleet._worker import main; main()';
const MAX_FRAME = 64 * 1024 * 1024;

/** The environment the pool gives its workers (see Pool's constructor); `packageDir` holds the `pyfleet` Python package (another build's, for bench/compare-refs.ts). */
export function workerEnv(packageDir = PYTHON_PACKAGE_DIR): Record<string, string> {
  const env = { ...(process.env as Record<string, string>) };
  env.PYTHONPATH = env.PYTHONPATH ? `${packageDir}:${env.PYTHONPATH}` : packageDir;
  env.PYFLEET_MAX_FRAME = String(MAX_FRAME);
  env.PYFLEET_HEARTBEAT_MS = '1000';
  env.PYFLEET_PARENT_PID = String(process.pid);
  delete env.PYFLEET_CHAOS;
  return env;
}

/** A call frame exactly as the pool writes one (pool.ts `frame`). */
export function addFrame(id: number, a: number, b: number): Buffer {
  const json = `{"t":"call","id":${id},"cmd":"add","a":{"a":${a},"b":${b}},"dl":${Date.now() + 30_000}}`;
  const len = Buffer.byteLength(json);
  const buf = Buffer.allocUnsafe(4 + len);
  buf.writeUInt32BE(len, 0);
  buf.write(json, 4, 'latin1');
  return buf;
}

interface Msg {
  t: string;
  id?: number;
  v?: unknown;
}

export class RawWorker {
  private input: Writable;
  private pending: Buffer | null = null;
  private onMsgs: (msgs: Msg[]) => void = () => {};
  private nextId = 0;
  readonly exited: Promise<void>;

  private constructor(readonly child: ChildProcess) {
    this.input = child.stdio[3] as Writable;
    this.input.on('error', () => {});
    (child.stdout as Readable).resume();
    (child.stderr as Readable).resume();
    const out = child.stdio[4] as Readable;
    out.on('data', (chunk: Buffer) => this.onData(chunk));
    out.on('error', () => {});
    this.exited = new Promise((r) => child.once('exit', () => r()));
  }

  /** Spawns the worker; resolves once it said hello. */
  static start(python: string, module: string, env = workerEnv()): Promise<RawWorker> {
    const child = spawn(python, ['-c', BOOT, module], { env, stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'] });
    const w = new RawWorker(child);
    return new Promise((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`raw worker exited with ${code} before hello`)));
      w.onMsgs = (msgs) => {
        if (msgs.some((m) => m.t === 'hello')) {
          w.onMsgs = () => {};
          resolve(w);
        } else if (msgs.some((m) => m.t === 'init_error')) reject(new Error('raw worker: init_error'));
      };
    });
  }

  private onData(chunk: Buffer): void {
    let buf = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
    this.pending = null;
    const msgs: Msg[] = [];
    let off = 0;
    while (buf.length - off >= 4) {
      const len = buf.readUInt32BE(off);
      if (buf.length - off - 4 < len) break;
      msgs.push(JSON.parse(buf.toString('utf8', off + 4, off + 4 + len)) as Msg);
      off += 4 + len;
    }
    if (off < buf.length) this.pending = buf.subarray(off);
    if (msgs.length > 0) this.onMsgs(msgs);
  }

  /**
   * n calls of `add`, one at a time. Returns the elapsed ms and each call's latency in ms.
   */
  sequential(n: number): Promise<{ ms: number; lat: Float64Array }> {
    const lat = new Float64Array(n);
    return new Promise((resolve, reject) => {
      let i = 0;
      let sentAt = 0;
      let waitingFor = -1;
      const t0 = performance.now();
      const sendNext = (): void => {
        waitingFor = ++this.nextId;
        sentAt = performance.now();
        this.input.write(addFrame(waitingFor, i, 1));
      };
      this.onMsgs = (msgs) => {
        for (const m of msgs) {
          if (m.t === 'hb') continue;
          if (m.t !== 'ok' || m.id !== waitingFor) return reject(new Error(`raw: unexpected ${JSON.stringify(m)}`));
          lat[i] = performance.now() - sentAt;
          i++;
          if (i === n) {
            this.onMsgs = () => {};
            return resolve({ ms: performance.now() - t0, lat });
          }
          sendNext();
        }
      };
      sendNext();
    });
  }

  /**
   * n calls of `add` with `depth` in flight: each batch of answers read from the pipe is
   * replaced by as many new frames, written with one write (the cheapest way to keep the
   * window full), or with one write per frame when `oneWritePerFrame`. Returns the elapsed ms.
   */
  pipelined(n: number, depth: number, oneWritePerFrame = false): Promise<{ ms: number }> {
    return new Promise((resolve, reject) => {
      let sent = 0;
      let got = 0;
      const t0 = performance.now();
      const batch = (k: number): void => {
        const frames: Buffer[] = [];
        for (let j = 0; j < k && sent < n; j++, sent++) {
          const f = addFrame(++this.nextId, sent, 1);
          if (oneWritePerFrame) this.input.write(f);
          else frames.push(f);
        }
        if (frames.length > 0) this.input.write(frames.length === 1 ? frames[0] : Buffer.concat(frames));
      };
      this.onMsgs = (msgs) => {
        let answered = 0;
        for (const m of msgs) {
          if (m.t === 'hb') continue;
          if (m.t !== 'ok') return reject(new Error(`raw: unexpected ${JSON.stringify(m)}`));
          answered++;
        }
        got += answered;
        if (got === n) {
          this.onMsgs = () => {};
          return resolve({ ms: performance.now() - t0 });
        }
        batch(answered);
      };
      batch(depth);
    });
  }

  /** Closes fd 3 (the worker exits on EOF) and waits for the process to be gone. */
  async close(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.input.end();
      const t = setTimeout(() => this.child.kill('SIGKILL'), 2_000);
      await this.exited;
      clearTimeout(t);
    }
  }
}
