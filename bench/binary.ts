/**
 * k. Binary: a Buffer round trip through the pool (`pool.execute('echo', buf)`, the handler
 * returns its argument) of 1, 16 and 64 MiB, against a raw echo of the same bytes between Node
 * and a Python child over the same kind of socket pair (Node writes a length and the bytes;
 * Python reads them into a preallocated buffer with recv_into and writes them back; Node reads
 * them into a buffer of the frame's size, as the pool's decoder does). And the same bytes as
 * base64 inside JSON through the pool, for scale.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { createPool, type Pool } from '../dist/pool/pool.js';
import { fmt, fmtInt, log, median, mib, pass, roundsNote, runRounds, silent, spread, targets } from './common.js';

const MODULE = fileURLToPath(new URL('./handlers.py', import.meta.url));
const MiB = 1024 * 1024;
const SIZES = [1 * MiB, 16 * MiB, 64 * MiB];
/** Round trips per measurement, per size: enough that one measurement takes tens of ms. */
const REPS: Record<number, number> = { [1 * MiB]: 16, [16 * MiB]: 2, [64 * MiB]: 1 };
/** 64 MiB of bytes plus the frame's JSON, and its base64 (4/3 larger), need more than the default 64 MiB. */
const MAX_FRAME = 128 * MiB;

const ECHO = `
import socket, struct
src = socket.socket(fileno=3)
dst = socket.socket(fileno=4)
buf = bytearray(${MAX_FRAME})
mv = memoryview(buf)
hdr = bytearray(4)
def fill(view):
    got = 0
    while got < len(view):
        k = src.recv_into(view[got:])
        if k == 0:
            raise SystemExit(0)
        got += k
while True:
    fill(memoryview(hdr))
    n = struct.unpack(">I", hdr)[0]
    fill(mv[:n])
    dst.sendall(hdr)
    dst.sendall(mv[:n])
`;

class RawEcho {
  private readonly input: Writable;
  private onData: (c: Buffer) => void = () => {};
  private constructor(private readonly child: ChildProcess) {
    this.input = child.stdio[3] as Writable;
    (child.stdio[4] as Readable).on('data', (c: Buffer) => this.onData(c));
  }
  static start(python: string): RawEcho {
    return new RawEcho(spawn(python, ['-c', ECHO], { stdio: ['ignore', 'inherit', 'inherit', 'pipe', 'pipe'] }));
  }
  /** Writes the length and the bytes (the bytes' own memory, as the pool's writev of a part); resolves with what came back. */
  echo(buf: Buffer): Promise<Buffer> {
    return new Promise((resolve) => {
      let need = -1;
      let out: Buffer | null = null;
      let pos = 0;
      let head: Buffer = Buffer.alloc(0);
      this.onData = (c) => {
        if (out === null) {
          head = head.length === 0 ? c : Buffer.concat([head, c]);
          if (head.length < 4) return;
          need = head.readUInt32BE(0);
          out = Buffer.allocUnsafeSlow(need);
          c = head.subarray(4);
        }
        c.copy(out, pos);
        pos += c.length;
        if (pos >= need) {
          this.onData = () => {};
          resolve(out);
        }
      };
      const len = Buffer.allocUnsafe(4);
      len.writeUInt32BE(buf.length, 0);
      this.input.write(len);
      this.input.write(buf);
    });
  }
  close(): void {
    this.input.end();
    this.child.kill();
  }
}

async function timed(reps: number, f: () => Promise<Buffer>, size: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) {
    const b = await f();
    if (b.length !== size) throw new Error(`echo returned ${b.length} bytes of ${size}`);
  }
  return (performance.now() - t0) / reps;
}

async function poolEcho(pool: Pool, buf: Buffer): Promise<Buffer> {
  return pool.execute<Buffer>('echo', buf);
}

/** The bytes as base64 in a JSON string, there and back; the time includes encoding and decoding in Node. */
async function base64Echo(pool: Pool, buf: Buffer): Promise<Buffer> {
  const got = await pool.execute<{ b64: string }>('echo', { b64: buf.toString('base64') });
  return Buffer.from(got.b64, 'base64');
}

export async function benchBinary(python: string): Promise<string> {
  const WANT = 7;
  /** base64 round trips per size: they take seconds at 64 MiB. */
  const B64_TIMES: Record<number, number> = { [1 * MiB]: 5, [16 * MiB]: 3, [64 * MiB]: 1 };
  log(`k. binary: ${SIZES.map(mib).join(', ')} round trips, pool vs raw socket pair; base64 in JSON`);
  const pool = await createPool({ module: MODULE, python, logger: silent, workers: 1, maxFrameBytes: MAX_FRAME });
  const raw = RawEcho.start(python);
  const bufs = new Map(SIZES.map((s) => [s, randomFillSync(Buffer.allocUnsafeSlow(s))]));
  type Got = Record<number, { raw: number; pool: number }>;
  let rounds;
  const b64: Record<number, number[]> = Object.fromEntries(SIZES.map((s) => [s, []]));
  try {
    for (const s of SIZES) {
      const b = bufs.get(s)!;
      const back = await poolEcho(pool, b);
      if (!back.equals(b)) throw new Error(`the pool's echo changed ${mib(s)}`);
      const rb = await raw.echo(b);
      if (!rb.equals(b)) throw new Error(`the raw echo changed ${mib(s)}`);
      const bb = await base64Echo(pool, b);
      if (!bb.equals(b)) throw new Error(`the base64 echo changed ${mib(s)}`);
    }
    rounds = await runRounds(WANT, 2 * WANT, 10_000, async (r): Promise<Got> => {
      const got: Got = {};
      for (const s of SIZES) {
        const b = bufs.get(s)!;
        const steps: Array<() => Promise<void>> = [
          async () => void (got[s] = { ...got[s], raw: await timed(REPS[s], () => raw.echo(b), s) }),
          async () => void (got[s] = { ...got[s], pool: await timed(REPS[s], () => poolEcho(pool, b), s) }),
        ];
        for (let k = 0; k < steps.length; k++) await steps[(k + r) % steps.length]();
      }
      return got;
    });
    for (let r = 0; r < Math.max(...Object.values(B64_TIMES)); r++) {
      for (const s of SIZES) if (r < B64_TIMES[s]) b64[s].push(await timed(1, () => base64Echo(pool, bufs.get(s)!), s));
    }
  } finally {
    raw.close();
    await pool.close();
  }
  const rate = (s: number, ms: number): number => s / MiB / (ms / 1000);
  const ratios = (s: number): number[] => rounds.used.map((g) => g[s].raw / g[s].pool);
  const ms = (s: number, k: 'raw' | 'pool'): number => median(rounds.used.map((g) => g[s][k]));
  const big = SIZES[SIZES.length - 1];
  const bigRatio = median(ratios(big));
  const vsB64 = SIZES.map((s) => median(b64[s]) / ms(s, 'pool'));
  targets.push({ name: `k. Buffer round trip through the pool vs raw socket pair, ${mib(big)}`, value: fmt(bigRatio), target: '>= 0.60', ok: bigRatio >= 0.6 });
  targets.push({ name: `k. binary vs base64 in JSON through the pool (${SIZES.map(mib).join(' / ')})`, value: vsB64.map((x) => `${fmt(x, 0)}x`).join(' / '), target: '> 20x', ok: vsB64.every((x) => x > 20) });
  return [
    '## k. Binary payloads',
    '',
    `A Buffer of random bytes round trip: \`pool.execute('echo', buf)\` (\`bench/handlers.py\`: returns its argument; the bytes travel as a binary part both ways), one worker, \`maxFrameBytes\` ${mib(MAX_FRAME)} (the default 64 MiB cannot carry 64 MiB plus the frame's JSON), unpinned. Raw: the same bytes between Node and a Python child over a socket pair on fds 3/4 as libuv makes for a worker: Node writes a 4-byte length and the Buffer; Python reads them into a preallocated bytearray with \`recv_into\` and writes them back with \`sendall\`; Node copies what arrives into a buffer of the frame's size. Times are per round trip (${SIZES.map((s) => `${REPS[s]} at ${mib(s)}`).join(', ')} per measurement); rounds interleaved. ${roundsNote(rounds)} Base64: \`{ b64: buf.toString('base64') }\` echoed and decoded back with \`Buffer.from(.., 'base64')\`, timed whole, after the rounds, ${SIZES.map((s) => `${B64_TIMES[s]} times at ${mib(s)}`).join(', ')} (median).`,
    '',
    '| size | raw: ms per round trip | raw MiB/s | pool: ms | pool MiB/s | pool / raw (median of rounds) | per round | base64 in JSON: ms | MiB/s | binary / base64 |',
    '|---|---:|---:|---:|---:|---:|---|---:|---:|---:|',
    ...SIZES.map((s, i) => {
      const b = median(b64[s]);
      return `| ${mib(s)} | ${fmt(ms(s, 'raw'), 2)} | ${fmtInt(rate(s, ms(s, 'raw')))} | ${fmt(ms(s, 'pool'), 2)} | ${fmtInt(rate(s, ms(s, 'pool')))} | ${fmt(median(ratios(s)))} | ${spread(ratios(s))} | ${fmt(b, 1)} | ${fmtInt(rate(s, b))} | ${fmt(vsB64[i], 0)}x |`;
    }),
    '',
    `${mib(big)} through the pool / raw: **${fmt(bigRatio)}** (target >= 0.60) ${pass(bigRatio >= 0.6)}; binary / base64 in JSON: **${vsB64.map((x) => `${fmt(x, 0)}x`).join(' / ')}** at ${SIZES.map(mib).join(' / ')} (target > 20x) ${pass(vsB64.every((x) => x > 20))}. MiB/s are of the payload, one way: a round trip moves it twice.`,
    '',
  ].join('\n');
}
