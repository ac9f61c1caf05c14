/**
 * One call at a time from Node to a raw worker (no pool): calls per second of the same trivial
 * handler as a plain `def`, an `async def` and a threaded `def`, and optionally of another
 * runtime (e.g. an older python/ directory, `def` only). Variants run interleaved, round after
 * round, order rotating; prints each variant's median and the median per-round ratio to `def`.
 *
 *   node --import tsx bench/runtime_rate.ts [calls] [rounds] [other python dir]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Readable, Writable } from 'node:stream';
import { FrameDecoder } from '../src/protocol/frame.js';

const PYTHON_DIR = fileURLToPath(new URL('../python', import.meta.url));
const calls = Number(process.argv[2] ?? 5000);
const rounds = Number(process.argv[3] ?? 15);
const other = process.argv[4];

const dir = mkdtempSync(path.join(tmpdir(), 'pyfleet-rate-'));
const full = path.join(dir, 'handlers.py');
writeFileSync(
  full,
  `from pyfleet import command

@command(idempotent=True)
def add(args, ctx):
    return args["a"] + args["b"]

@command(idempotent=True)
async def aadd(args, ctx):
    return args["a"] + args["b"]

@command(idempotent=True, threaded=True)
def tadd(args, ctx):
    return args["a"] + args["b"]
`,
);
const defOnly = path.join(dir, 'def_only.py');
writeFileSync(defOnly, 'from pyfleet import command\n\n@command(idempotent=True)\ndef add(args, ctx):\n    return args["a"] + args["b"]\n');

class Worker {
  private child: ChildProcess;
  private input: Writable;
  private waiting: ((m: { t: string; v?: unknown }) => void) | null = null;
  ready: Promise<void>;

  constructor(pythonDir: string, module: string) {
    const env = { ...process.env, PYTHONPATH: pythonDir, PYFLEET_MAX_FRAME: String(64 << 20), PYFLEET_HEARTBEAT_MS: '1000', PYFLEET_PARENT_PID: String(process.pid) };
    this.child = spawn('python3', ['-c', 'from pyfleet._worker import main; main()', module], { env, stdio: ['ignore', 'inherit', 'inherit', 'pipe', 'pipe'] });
    this.input = this.child.stdio[3] as Writable;
    const decoder = new FrameDecoder(64 << 20, { onMessage: (m) => this.onMessage(m as { t: string }), onError: (e) => console.error(e) });
    (this.child.stdio[4] as Readable).on('data', (c: Buffer) => decoder.push(c));
    this.ready = new Promise((r) => (this.waiting = () => r()));
  }

  private onMessage(m: { t: string; v?: unknown }): void {
    if (m.t === 'hb') return;
    const w = this.waiting;
    this.waiting = null;
    w?.(m);
  }

  async rate(cmd: string, n: number): Promise<number> {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const json = `{"t":"call","id":${i + 1},"cmd":"${cmd}","a":{"a":${i},"b":1},"dl":${Date.now() + 30_000}}`;
      const buf = Buffer.allocUnsafe(4 + json.length);
      buf.writeUInt32BE(json.length, 0);
      buf.write(json, 4, 'latin1');
      const got = new Promise<{ t: string; v?: unknown }>((r) => (this.waiting = r));
      this.input.write(buf);
      const m = await got;
      if (m.v !== i + 1) throw new Error(`bad answer ${JSON.stringify(m)}`);
    }
    return n / ((performance.now() - t0) / 1000);
  }

  close(): void {
    this.child.kill('SIGKILL');
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const mine = new Worker(PYTHON_DIR, full);
const theirs = other ? new Worker(path.resolve(other), defOnly) : null;
await mine.ready;
await theirs?.ready;
const variants: Array<[string, () => Promise<number>]> = [
  ['def', () => mine.rate('add', calls)],
  ['async', () => mine.rate('aadd', calls)],
  ['threaded', () => mine.rate('tadd', calls)],
];
if (theirs) variants.push(['other def', () => theirs.rate('add', calls)]);
for (const [, f] of variants) await f(); // warm-up
const rates: Record<string, number[]> = {};
const ratios: Record<string, number[]> = {};
for (let r = 0; r < rounds; r++) {
  const order = [...variants.slice(r % variants.length), ...variants.slice(0, r % variants.length)];
  const got: Record<string, number> = {};
  for (const [name, f] of order) got[name] = await f();
  for (const [name] of variants) {
    (rates[name] ??= []).push(got[name]);
    (ratios[name] ??= []).push(got[name] / got.def);
  }
}
mine.close();
theirs?.close();
rmSync(dir, { recursive: true, force: true });
console.log(`${calls} calls per variant per round, ${rounds} rounds (medians):`);
for (const [name] of variants) console.log(`  ${name.padEnd(10)} ${median(rates[name]).toFixed(0).padStart(6)} calls/s   vs def ${median(ratios[name]).toFixed(3)}`);
