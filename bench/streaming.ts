/**
 * j. Streaming: a generator of 100,000 small items through `pool.stream` (default highWaterMark),
 * consumed with `for await`, against a raw loop in which a Python process writes the same `item`
 * frames back to back to the same kind of pipe (a socket pair on fd 4, as libuv makes for a
 * worker) and Node decodes each with the pool's own FrameDecoder (dist/protocol). And the time
 * from the generator's `yield` to the consumer's loop body for the first item, on the same
 * clock (CLOCK_MONOTONIC: Python's time.monotonic_ns(), Node's process.hrtime.bigint()).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { createPool, type Pool } from '../dist/pool/pool.js';
import { FrameDecoder } from '../dist/protocol/frame.js';
import { DEFAULTS } from '../dist/defaults.js';
import { dist, fmt, fmtInt, log, median, pass, percentile, roundsNote, runRounds, silent, spread, targets } from './common.js';

const MODULE = fileURLToPath(new URL('./handlers.py', import.meta.url));
const MAX_FRAME = 64 * 1024 * 1024;

/**
 * The raw writer: for each request line on fd 3 ("<id> <n>\n"), writes n item frames to fd 4
 * exactly as the worker frames them (`send_raw`: 4-byte length + `{"t":"item","id":..,"v":i}`,
 * one write each), then the `end` frame.
 */
const WRITER = `
import os, struct
pack = struct.Struct(">I").pack
write = os.write
def write_all(b):
    while b:
        b = b[write(4, b):]
pending = b""
while True:
    data = os.read(3, 4096)
    if not data:
        break
    pending += data
    while b"\\n" in pending:
        line, pending = pending.split(b"\\n", 1)
        rid, n = map(int, line.split())
        for i in range(n):
            body = ('{"t":"item","id":%d,"v":%s}' % (rid, i)).encode()
            write_all(pack(len(body)) + body)
        body = ('{"t":"end","id":%d,"n":%d}' % (rid, n)).encode()
        write_all(pack(len(body)) + body)
`;

class RawStream {
  private readonly input: Writable;
  private onMsg: (m: { t: string; v?: unknown }) => void = () => {};
  private seq = 0;
  private constructor(private readonly child: ChildProcess) {
    this.input = child.stdio[3] as Writable;
    const decoder = new FrameDecoder(MAX_FRAME, {
      onMessage: (m) => this.onMsg(m as { t: string }),
      onError: (e) => {
        throw e;
      },
    });
    (child.stdio[4] as Readable).on('data', (c: Buffer) => decoder.push(c));
  }
  static start(python: string): RawStream {
    return new RawStream(spawn(python, ['-c', WRITER], { stdio: ['ignore', 'inherit', 'inherit', 'pipe', 'pipe'] }));
  }
  /** Items received and decoded, until the end frame; the elapsed ms. */
  run(n: number): Promise<number> {
    return new Promise((resolve, reject) => {
      let count = 0;
      const t0 = performance.now();
      this.onMsg = (m) => {
        if (m.t === 'item') count++;
        else if (m.t === 'end') {
          this.onMsg = () => {};
          if (count !== n) reject(new Error(`raw stream: ${count} items of ${n}`));
          else resolve(performance.now() - t0);
        }
      };
      this.input.write(`${++this.seq} ${n}\n`);
    });
  }
  get pid(): number {
    return this.child.pid!;
  }
  close(): void {
    this.input.end();
  }
}

async function poolStream(pool: Pool, n: number, highWaterMark?: number): Promise<number> {
  let count = 0;
  const t0 = performance.now();
  for await (const v of pool.stream<number>('items', { n }, highWaterMark === undefined ? {} : { highWaterMark })) {
    if (v !== count) throw new Error(`stream: item ${count} was ${v}`);
    count++;
  }
  const ms = performance.now() - t0;
  if (count !== n) throw new Error(`stream: ${count} items of ${n}`);
  return ms;
}

/** ms from the generator's yield of the first item to the consumer's loop body. */
async function firstItem(pool: Pool): Promise<number> {
  for await (const stamp of pool.stream<number>('stamped', { n: 1 })) {
    const now = process.hrtime.bigint();
    return Number(now - BigInt(stamp)) / 1e6;
  }
  throw new Error('stamped yielded nothing');
}

export async function benchStreaming(python: string): Promise<string> {
  const N = 100_000;
  const WANT = 7;
  const BIG_HWM = 256;
  const hwm = DEFAULTS.highWaterMark;
  log(`j. streaming: ${fmtInt(N)} items, highWaterMark ${hwm} (and ${BIG_HWM}) vs raw frames; first-item latency`);
  const pool = await createPool({ module: MODULE, python, logger: silent, workers: 1 });
  const raw = RawStream.start(python);
  const names = ['raw: Python writes the frames back to back, Node decodes', `pool.stream, highWaterMark ${hwm} (default)`, `pool.stream, highWaterMark ${BIG_HWM}`] as const;
  const runs = [() => raw.run(N), () => poolStream(pool, N), () => poolStream(pool, N, BIG_HWM)];
  let rounds;
  const first: number[] = [];
  try {
    for (const f of runs) await f();
    rounds = await runRounds(WANT, 2 * WANT, 10_000, async (r) => {
      const got: number[] = [];
      for (let k = 0; k < runs.length; k++) {
        const i = (k + r) % runs.length;
        got[i] = N / ((await runs[i]()) / 1000);
      }
      return got;
    });
    for (let i = 0; i < 20; i++) await firstItem(pool); // warm-up
    for (let i = 0; i < 200; i++) {
      first.push(await firstItem(pool));
      if (i % 10 === 9) await new Promise((res) => setTimeout(res, 1));
    }
  } finally {
    raw.close();
    await pool.close();
  }
  const ratios = (i: number): number[] => rounds.used.map((g) => g[i] / g[0]);
  const ratio = median(ratios(1));
  const p90 = percentile(first, 90);
  targets.push({ name: `j. pool.stream (highWaterMark ${hwm}) vs raw item frames, ${fmtInt(N)} items`, value: fmt(ratio), target: '>= 0.50', ok: ratio >= 0.5 });
  targets.push({ name: 'j. first item, yield to consumer (p90; p50 / max)', value: `${fmt(p90, 2)} ms (${fmt(median(first), 2)} / ${fmt(Math.max(...first), 2)})`, target: '<= 2 ms', ok: p90 <= 2 });
  return [
    '## j. Streaming',
    '',
    `\`items\` (\`bench/handlers.py\`: a \`def\` generator yielding the integers 0..${fmtInt(N - 1)}) through \`pool.stream\`, consumed with \`for await\` (one worker, unpinned), against a raw loop: a Python process of its own writes the same \`item\` frames (same bytes, one write each, as the worker does) back to back on fd 4, a socket pair as libuv makes for the worker, and Node decodes each with the pool's \`FrameDecoder\` (\`dist/protocol/frame.js\`: UTF-8 check and \`JSON.parse\` per frame). Rates are items per second including the call; rounds interleaved. ${roundsNote(rounds)}`,
    '',
    '| variant | items/s (median) | vs raw (median of rounds) | per round |',
    '|---|---:|---:|---|',
    ...names.map((n, i) => `| ${n} | ${fmtInt(median(rounds.used.map((g) => g[i])))} | ${i === 0 ? '1.00' : fmt(median(ratios(i)))} | ${i === 0 ? '' : spread(ratios(i))} |`),
    '',
    `pool.stream (default highWaterMark ${hwm}) / raw: **${fmt(ratio)}** (target >= 0.50) ${pass(ratio >= 0.5)}`,
    '',
    `**First item.** \`stamped\` yields \`time.monotonic_ns()\` (CLOCK_MONOTONIC) taken as it yields; the consumer's loop body subtracts it from \`process.hrtime.bigint()\` (the same clock, same host). ${first.length} streams one after the other, after 20 untimed: ${dist(first, 2)} (target <= 2 ms, judged on p90) ${pass(p90 <= 2)}.`,
    '',
  ].join('\n');
}
