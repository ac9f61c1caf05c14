/**
 * `npm run bench`: pyfleet against its limits, side by side in one run, written to
 * bench/RESULTS.md.
 *
 *   a. one call at a time: raw framed pipe vs pool.execute on 1 worker vs python-shell, in
 *      each CPU placement, and the Python runtime's own share of a call, in-process
 *      (bench/runtime_loop.py)
 *   b. 64 calls in flight on one worker: raw pipelined vs pool with pipelineDepth 64
 *   c. CPU-bound (~2 ms of Python) on 2 workers vs 1, and the machine's own 2-vs-1 ceiling
 *   d. time to ready: createPool({ workers: 8 }) vs 8 bare interpreters; the pyenv shim's cost
 *   e. the resilience layer's per-call overhead (bench/resilience.ts)
 *   f. telemetry's per-call cost (bench/telemetry.ts)
 *   g. a fleet on NATS against raw NATS request-reply and the local pool (bench/fleet.ts)
 *   h. recovery: SIGKILL of a worker running an idempotent call to its re-send (bench/recovery.ts)
 *   i. concurrency inside a worker: 200 async sleeps on one worker; async def vs def (bench/concurrency.ts)
 *   j. streaming: pool.stream vs raw item frames; first-item latency (bench/streaming.ts)
 *   k. binary payloads: Buffer round trips vs a raw socket-pair echo, and base64 (bench/binary.ts)
 *   l. durable sessions: per-call cost by what the session holds, a DataFrame and a model, a 10 MiB restore, a durable fleet (bench/sessions.ts)
 *   m. validateArgs through the pool (bench/validate-pool.ts)
 *
 * Handlers of h-m: bench/handlers.py. The figures measured one call at a time run in fixed CPU
 * placements (bench/common.ts, `place`; RESULTS.md, "CPU placement"). bench/compare-refs.ts
 * (not run here) compares this build with the pre-reshape one; its last output,
 * bench/COMPARE-REFS.md, is copied into RESULTS.md.
 *
 * The machines are 2-core, shared and noisy. Every benchmark runs its variants interleaved,
 * in a rotated order, round after round; a ratio is the median of the per-round ratios (the
 * variants of one round ran back to back, under the same conditions). Each round also
 * measures the CPU that processes other than this benchmark used meanwhile; rounds during
 * which they used more than DISTURBED_CPUS are counted as disturbed, more rounds are run (up
 * to a cap) to get enough undisturbed ones, and the figures are over the undisturbed rounds
 * when there are enough of them (RESULTS.md says which, and gives the all-rounds ratio too).
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { PythonShell } from 'python-shell';
import { createPool, type Pool } from '../dist/pool/pool.js';
import type { PoolOptions } from '../dist/pool/options.js';
import { resolvePython } from '../dist/worker/python-path.js';
import { PYTHON_PACKAGE_DIR } from '../dist/worker/env.js';
import { benchResilience } from './resilience.js';
import { benchTelemetry } from './telemetry.js';
import { benchFleet } from './fleet.js';
import { RawWorker, workerEnv } from './raw.js';
import { poolPipelined, poolSequential } from './loops.js';
import {
  CAN_PIN,
  DISTURBED_CPUS,
  JUDGED,
  PLACEMENTS,
  fmt,
  fmtInt,
  homeCpu,
  log,
  median,
  othersLoad,
  otherCpu,
  pass,
  percentile,
  place,
  pythonChildren,
  roundsNote,
  runRounds,
  section,
  silent,
  spread,
  targets,
  us,
  withCpu,
  withCpus,
  type Placement,
  type Rounds,
} from './common.js';
import { benchRecovery } from './recovery.js';
import { benchConcurrency } from './concurrency.js';
import { benchStreaming } from './streaming.js';
import { benchBinary } from './binary.js';
import { benchSessions } from './sessions.js';
import { benchValidate } from './validate-pool.js';

const MODULE = fileURLToPath(new URL('../examples/handlers.py', import.meta.url));
/** Section d times the worker's own start: a module with one command and no imports. */
const STARTUP_MODULE = fileURLToPath(new URL('./startup.py', import.meta.url));
const SHELL_SCRIPT = fileURLToPath(new URL('./shell_echo.py', import.meta.url));
const SPIN_SCRIPT = fileURLToPath(new URL('./spin.py', import.meta.url));
const RUNTIME_LOOP = fileURLToPath(new URL('./runtime_loop.py', import.meta.url));
const RESULTS = fileURLToPath(new URL('./RESULTS.md', import.meta.url));
/** Written by bench/compare-refs.ts (not part of `npm run bench`); copied into RESULTS.md when present. */
const COMPARE_REFS = fileURLToPath(new URL('./COMPARE-REFS.md', import.meta.url));
const PYTHON = process.env.PYFLEET_PYTHON ?? 'python3';
/** BENCH_ONLY=a,b runs only those sections (letters as in RESULTS.md) and leaves RESULTS.md alone. */
const ONLY = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',').map((x) => x.trim())) : null;
const wanted = (letter: string): boolean => ONLY === null || ONLY.has(letter);

async function newPool(options: Partial<PoolOptions>): Promise<Pool> {
  return createPool({ module: MODULE, python: PYTHON, logger: silent, ...options });
}

// ---- a. one call at a time -------------------------------------------------

/** python-shell in json mode on bench/shell_echo.py: one JSON line out, one back. */
class ShellClient {
  private waiting: ((m: { id: number; v: number }) => void) | null = null;
  private constructor(readonly shell: PythonShell) {
    shell.on('message', (m: { id: number; v: number }) => {
      const w = this.waiting;
      this.waiting = null;
      w?.(m);
    });
  }

  static start(python: string): ShellClient {
    return new ShellClient(new PythonShell(SHELL_SCRIPT, { mode: 'json', pythonPath: python, pythonOptions: ['-u'] }));
  }

  private call(id: number, a: number, b: number): Promise<{ id: number; v: number }> {
    return new Promise((resolve) => {
      this.waiting = resolve;
      this.shell.send({ id, a: { a, b } });
    });
  }

  async sequential(n: number): Promise<{ ms: number; lat: Float64Array }> {
    const lat = new Float64Array(n);
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const s = performance.now();
      const m = await this.call(i, i, 1);
      if (m.v !== i + 1) throw new Error(`python-shell answered ${JSON.stringify(m)}`);
      lat[i] = performance.now() - s;
    }
    return { ms: performance.now() - t0, lat };
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.shell.end(() => resolve()));
  }
}

interface SeqFigures {
  rate: number;
  p50: number;
  p99: number;
  /** Node's CPU per call, µs. */
  cpu: number;
  /** The Python process's CPU per call (every thread), µs. */
  py: number;
}

/** Per placement (see CPU placement in RESULTS.md), the figures of each variant: raw, pool, python-shell. */
type SeqRound = Partial<Record<Placement, SeqFigures[]>>;

async function benchSequential(python: string): Promise<string> {
  const N = 1000;
  const WANT = 15;
  log(`a. one at a time: rounds of ${N} calls per variant, placements: ${PLACEMENTS.join(', ')}`);
  const raw = await RawWorker.start(python, MODULE);
  const pool = await newPool({ workers: 1 });
  const shell = ShellClient.start(python);
  const pids = (): number[] => [raw.child.pid!, ...pool.pids(), shell.shell.childProcess.pid!];
  const names = ['raw framed pipe', 'pool.execute (1 worker)', 'python-shell (json lines)'] as const;
  const runs = [(n: number) => raw.sequential(n), (n: number) => poolSequential(pool, n), (n: number) => shell.sequential(n)];
  const variantPids = [() => [raw.child.pid!], () => pool.pids(), () => [shell.shell.childProcess.pid!]];
  let rounds: Rounds<SeqRound>;
  try {
    for (const run of runs) await run(3 * N); // warm-up (JIT, caches)
    rounds = await runRounds(WANT, 3 * WANT, 15_000, async (r) => {
      const got: SeqRound = {};
      for (let q = 0; q < PLACEMENTS.length; q++) {
        const p = PLACEMENTS[(q + r) % PLACEMENTS.length];
        place(p, pids());
        const figures: SeqFigures[] = [];
        for (let k = 0; k < runs.length; k++) {
          const i = (k + r) % runs.length;
          await runs[i](50); // settle on the new placement, not timed
          const res = await withCpus(variantPids[i](), () => runs[i](N));
          figures[i] = { rate: N / (res.ms / 1000), p50: median(res.lat), p99: percentile(res.lat, 99), cpu: res.nodeUs / N, py: res.pyUs / N };
        }
        got[p] = figures;
      }
      place('unpinned', pids());
      return got;
    });
  } finally {
    place('unpinned', pids());
    await raw.close();
    await pool.close();
    await shell.close();
  }
  const py = await runtimeLoop(python);
  const of = (p: Placement, set = rounds.used): SeqFigures[][] => set.map((g) => g[p]!);
  const col = (p: Placement, i: number, k: keyof SeqFigures): number => median(of(p).map((g) => g[i][k]));
  const ratios = (p: Placement, i: number, j: number, set = rounds.used): number[] => of(p, set).map((g) => g[i].rate / g[j].rate);
  const rVsRaw = median(ratios(JUDGED, 1, 0));
  const rVsShell = median(ratios(JUDGED, 1, 2));
  const where = JUDGED === 'one core' ? 'Node and Python on one core' : 'unpinned';
  targets.push({ name: `a. pool.execute vs raw, one at a time (${where})`, value: fmt(rVsRaw), target: '>= 0.85', ok: rVsRaw >= 0.85 });
  targets.push({ name: `a. pool.execute vs python-shell, one at a time (${where})`, value: fmt(rVsShell), target: '>= 1.00', ok: rVsShell >= 1 });
  const table = (p: Placement): string[] => [
    `**${p}**${p === JUDGED ? ' (the targets are judged here)' : ''}${p === 'one core' ? `: everything on CPU ${homeCpu()}` : p === 'two cores' ? `: Node on CPU ${homeCpu()}, Python on CPU ${otherCpu()}` : ''}`,
    '',
    '| variant | calls/s (median) | p50 latency | p99 latency | Node CPU per call | Python CPU per call | vs raw (median of rounds) |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...names.map(
      (n, i) =>
        `| ${n} | ${fmtInt(col(p, i, 'rate'))} | ${us(col(p, i, 'p50'))} | ${us(col(p, i, 'p99'))} | ${fmt(col(p, i, 'cpu'), 1)} µs | ${fmt(col(p, i, 'py'), 1)} µs | ${i === 0 ? '1.00' : fmt(median(ratios(p, i, 0)))} |`,
    ),
    '',
    `Per round, pool/raw: ${spread(ratios(p, 1, 0))}; pool/python-shell: ${spread(ratios(p, 1, 2))}. Over all ${rounds.all.length} rounds, disturbed ones included: pool/raw ${fmt(median(ratios(p, 1, 0, rounds.all)))}, pool/python-shell ${fmt(median(ratios(p, 1, 2, rounds.all)))}.`,
    '',
  ];
  return [
    '## a. One call at a time (`add`, 1 worker)',
    '',
    `Rounds of ${N.toLocaleString('en')} sequential calls per variant, interleaved (the order rotates each round), after a warm-up; ${PLACEMENTS.length > 1 ? `each round runs every variant in each CPU placement (${PLACEMENTS.join(', ')}; the order rotates), the processes being moved with \`taskset\` and given 50 untimed calls to settle` : 'without `taskset`, unpinned only'}. Latency is per call, measured in Node. Node CPU is this process's user + system time per call; Python CPU is the Python process's, every thread (/proc/<pid>/task/*/schedstat). ${roundsNote(rounds)}`,
    '',
    `pool / raw (${JUDGED}): **${fmt(rVsRaw)}** (target >= 0.85) ${pass(rVsRaw >= 0.85)}; pool / python-shell (${JUDGED}): **${fmt(rVsShell)}** (target >= 1.00) ${pass(rVsShell >= 1)}`,
    '',
    ...PLACEMENTS.flatMap(table),
    `The Python side alone, in-process (\`bench/runtime_loop.py\`: ${fmtInt(py.n)} frames fed to the worker runtime's ingest and run, answers to /dev/null; best of ${py.rounds} rounds): **${fmt(py.runtimeUs, 1)} µs** per call, against ${fmt(py.bareUs, 1)} µs for a bare loop doing the same work with \`json.loads\` and \`json.dumps\` (python-shell's side).`,
    '',
  ].join('\n');
}

/** bench/runtime_loop.py: the worker runtime's Python cost per call, without pipes or Node. */
function runtimeLoop(python: string): Promise<{ n: number; rounds: number; runtimeUs: number; bareUs: number }> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, PYTHONPATH: PYTHON_PACKAGE_DIR };
    const c = spawn(python, [RUNTIME_LOOP, '100000', '5'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.once('error', reject);
    c.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`runtime_loop.py exited with ${code}`))));
  });
}

// ---- b. pipelining ---------------------------------------------------------

async function benchPipelined(python: string): Promise<string> {
  const N = 10_000;
  const DEPTH = 64;
  const WANT = 11;
  log(`b. pipelining: rounds of ${N} calls, ${DEPTH} in flight`);
  const raw = await RawWorker.start(python, MODULE);
  const pool = await newPool({ workers: 1, pipelineDepth: DEPTH });
  const names = ['raw framed pipe, batched writes', 'raw framed pipe, one write per frame', `pool.execute, pipelineDepth ${DEPTH}`] as const;
  const runs = [() => raw.pipelined(N, DEPTH), () => raw.pipelined(N, DEPTH, true), () => poolPipelined(pool, N, DEPTH)];
  let rounds: Rounds<Array<{ rate: number; cpu: number }>>;
  try {
    for (const run of runs) await run();
    rounds = await runRounds(WANT, 3 * WANT, 15_000, async (r) => {
      const got: Array<{ rate: number; cpu: number }> = [];
      for (let k = 0; k < runs.length; k++) {
        const i = (k + r) % runs.length;
        const res = await withCpu(runs[i]);
        got[i] = { rate: N / (res.ms / 1000), cpu: res.cpuUs / N };
      }
      return got;
    });
  } finally {
    await raw.close();
    await pool.close();
  }
  const ratios = (i: number, set = rounds.used): number[] => set.map((g) => g[i].rate / g[0].rate);
  const ratio = median(ratios(2));
  targets.push({ name: `b. pool (pipelineDepth ${DEPTH}) vs raw, ${DEPTH} in flight`, value: fmt(ratio), target: '>= 0.70', ok: ratio >= 0.7 });
  return [
    `## b. Pipelining: ${DEPTH} calls in flight on one worker`,
    '',
    `Rounds of ${N.toLocaleString('en')} calls per variant, interleaved (the order rotates each round). Raw keeps ${DEPTH} frames in flight: each batch of answers read from the pipe is replaced by as many new frames, written with one write (the limit) or with one write per frame. The pool has \`pipelineDepth: ${DEPTH}\` and ${DEPTH} concurrent callers of the idempotent \`add\`. ${roundsNote(rounds)}`,
    '',
    '| variant | calls/s (median) | Node CPU per call | vs raw batched (median of rounds) |',
    '|---|---:|---:|---:|',
    ...names.map((n, i) => `| ${n} | ${fmtInt(median(rounds.used.map((g) => g[i].rate)))} | ${fmt(median(rounds.used.map((g) => g[i].cpu)), 1)} µs | ${i === 0 ? '1.00' : fmt(median(ratios(i)))} |`),
    '',
    `pool / raw: **${fmt(ratio)}** (target >= 0.70) ${pass(ratio >= 0.7)}`,
    '',
    `Per round, pool/raw: ${spread(ratios(2))}. Over all ${rounds.all.length} rounds, disturbed ones included: ${fmt(median(ratios(2, rounds.all)))}.`,
    '',
  ].join('\n');
}

// ---- c. 2 workers vs 1 on CPU-bound work ----------------------------------

async function poolConcurrent(pool: Pool, n: number, concurrency: number, args: unknown): Promise<{ ms: number }> {
  let next = 0;
  const t0 = performance.now();
  const lane = async (): Promise<void> => {
    while (next < n) {
      next++;
      await pool.execute('primes', args);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  return { ms: performance.now() - t0 };
}

/** Finds the n for which `primes` takes about `targetMs` in the worker (a sequential call's latency minus an `add`'s). */
async function tunePrimes(pool: Pool, targetMs: number): Promise<{ n: number; ms: number }> {
  const base = median((await poolSequential(pool, 200)).lat);
  let n = 4000;
  let ms = 0;
  for (let k = 0; k < 6; k++) {
    const lat: number[] = [];
    for (let i = 0; i < 30; i++) {
      const s = performance.now();
      await pool.execute('primes', { n });
      lat.push(performance.now() - s);
    }
    ms = median(lat) - base;
    if (Math.abs(ms - targetMs) / targetMs < 0.05) break;
    n = Math.max(100, Math.round(n * (targetMs / ms) ** (1 / 1.3)));
  }
  return { n, ms };
}

/** `count` bare interpreters running the same loop at once (bench/spin.py); their total calls/s. */
async function bareSpin(python: string, count: number, n: number, seconds: number): Promise<number> {
  const rates = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<number>((resolve, reject) => {
          const child = spawn(python, [SPIN_SCRIPT, String(n), String(seconds)], { stdio: ['ignore', 'pipe', 'ignore'] });
          let out = '';
          child.stdout.on('data', (d: Buffer) => (out += d.toString()));
          child.once('error', reject);
          child.once('exit', () => resolve(Number(out.trim())));
        }),
    ),
  );
  return rates.reduce((a, b) => a + b, 0);
}

async function benchScaling(python: string): Promise<string> {
  const CONCURRENCY = 4;
  const WANT = 7;
  const CALLS_1 = 250;
  const SPIN_SECONDS = 0.5;
  log(`c. scaling: concurrency ${CONCURRENCY}`);
  const one = await newPool({ workers: 1 });
  const two = await newPool({ workers: 2 });
  let tuned = { n: 0, ms: 0 };
  let rounds: Rounds<{ pool1: number; pool2: number; bare1: number; bare2: number }>;
  try {
    tuned = await tunePrimes(one, 2);
    const args = { n: tuned.n };
    await poolConcurrent(one, 100, CONCURRENCY, args);
    await poolConcurrent(two, 200, CONCURRENCY, args);
    rounds = await runRounds(WANT, 2 * WANT, 30_000, async (r) => {
      const got = { pool1: 0, pool2: 0, bare1: 0, bare2: 0 };
      const steps: Array<() => Promise<void>> = [
        async () => void (got.pool1 = CALLS_1 / ((await poolConcurrent(one, CALLS_1, CONCURRENCY, args)).ms / 1000)),
        async () => void (got.pool2 = (2 * CALLS_1) / ((await poolConcurrent(two, 2 * CALLS_1, CONCURRENCY, args)).ms / 1000)),
        async () => void (got.bare1 = await bareSpin(python, 1, tuned.n, SPIN_SECONDS)),
        async () => void (got.bare2 = await bareSpin(python, 2, tuned.n, SPIN_SECONDS)),
      ];
      for (let k = 0; k < steps.length; k++) await steps[(k + r) % steps.length]();
      return got;
    });
  } finally {
    await one.close();
    await two.close();
  }
  const poolRatios = (set = rounds.used): number[] => set.map((g) => g.pool2 / g.pool1);
  const bareRatios = (set = rounds.used): number[] => set.map((g) => g.bare2 / g.bare1);
  const ratio = median(poolRatios());
  const ceiling = median(bareRatios());
  const m = (k: 'pool1' | 'pool2' | 'bare1' | 'bare2'): string => fmtInt(median(rounds.used.map((g) => g[k])));
  targets.push({ name: `c. 2 workers vs 1, primes (~2 ms), concurrency ${CONCURRENCY}`, value: `${fmt(ratio)}x`, target: '>= 1.70x', ok: ratio >= 1.7 });
  return [
    '## c. Two workers vs one on CPU-bound work',
    '',
    `\`primes\` with n = ${tuned.n.toLocaleString('en')}, tuned to ${fmt(tuned.ms)} ms of work per call (a sequential call's median latency minus an \`add\`'s); ${CONCURRENCY} concurrent callers; rounds interleaved (${CALLS_1} calls on 1 worker, ${2 * CALLS_1} on 2, per round). The machine's own ceiling: the same loop in 1 and in 2 bare interpreters at once, for ${SPIN_SECONDS} s each (\`bench/spin.py\`: no pyfleet, no Node work). ${roundsNote(rounds)}`,
    '',
    '| variant | 1 process: calls/s (median) | 2 processes: calls/s (median) | 2 vs 1 (median of rounds) |',
    '|---|---:|---:|---:|',
    `| pool, 1 worker vs 2 workers | ${m('pool1')} | ${m('pool2')} | ${fmt(ratio)}x |`,
    `| bare interpreters (the machine's ceiling) | ${m('bare1')} | ${m('bare2')} | ${fmt(ceiling)}x |`,
    '',
    `2 workers / 1 worker: **${fmt(ratio)}x** (target >= 1.70x) ${pass(ratio >= 1.7)}; two bare interpreters give ${fmt(ceiling)}x on this machine, so the pool reaches ${fmt(ratio / ceiling)} of what its two cores give.`,
    '',
    `Per round, pool 2/1: ${spread(poolRatios())}; bare 2/1: ${spread(bareRatios())}. Over all ${rounds.all.length} rounds, disturbed ones included: pool ${fmt(median(poolRatios(rounds.all)))}x, bare ${fmt(median(bareRatios(rounds.all)))}x.`,
    '',
  ].join('\n');
}

// ---- d. start-up -----------------------------------------------------------

/** Spawns `count` interpreters at once, each printing one line; resolves with the ms until the last line arrived. */
async function bareStarts(python: string, count: number): Promise<number> {
  const t0 = performance.now();
  const exits: Promise<void>[] = [];
  const lines = Array.from({ length: count }, () => {
    const child = spawn(python, ['-c', 'print("ready")'], { stdio: ['ignore', 'pipe', 'ignore'] });
    exits.push(new Promise((r) => child.once('exit', () => r())));
    return new Promise<number>((resolve, reject) => {
      child.stdout.once('data', () => resolve(performance.now() - t0));
      child.once('error', reject);
    });
  });
  const times = await Promise.all(lines);
  await Promise.all(exits);
  return Math.max(...times);
}

/** Spawns `count` pyfleet workers by hand at once; ms until every hello. */
async function rawStarts(python: string, count: number): Promise<number> {
  const env = workerEnv();
  const t0 = performance.now();
  const ws = await Promise.all(Array.from({ length: count }, () => RawWorker.start(python, STARTUP_MODULE, env)));
  const ms = performance.now() - t0;
  await Promise.all(ws.map((w) => w.close()));
  return ms;
}

async function poolStart(python: string, count: number): Promise<number> {
  const t0 = performance.now();
  const pool = await newPool({ workers: count, python, module: STARTUP_MODULE });
  const ms = performance.now() - t0;
  await pool.close();
  return ms;
}

/** Time for one interpreter to run `-c pass` and exit. */
async function runToExit(file: string): Promise<number> {
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => {
    const child = spawn(file, ['-c', 'pass'], { stdio: 'ignore' });
    child.once('error', reject);
    child.once('exit', () => resolve());
  });
  return performance.now() - t0;
}

/** What `name` runs when looked up on PATH (here, a pyenv shim). */
function onPath(name: string): string | null {
  if (name.includes('/')) return name;
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir === '') continue;
    try {
      accessSync(`${dir}/${name}`, constants.X_OK);
      return `${dir}/${name}`;
    } catch {
      // not here
    }
  }
  return null;
}

async function benchStartup(python: string): Promise<string> {
  const W = 8;
  const WANT = 5;
  log('d. start-up');
  const sides: Array<[string, () => Promise<number>]> = [
    ['bare8', () => bareStarts(python, W)],
    ['raw8', () => rawStarts(python, W)],
    ['pool8', () => poolStart(python, W)],
    ['bare1', () => bareStarts(python, 1)],
    ['raw1', () => rawStarts(python, 1)],
    ['pool1', () => poolStart(python, 1)],
  ];
  for (const [, run] of sides) await run(); // warm the page cache and Node's module cache
  const rounds = await runRounds(WANT, 2 * WANT, 45_000, async (r) => {
    const got: Record<string, number> = {};
    for (let j = 0; j < sides.length; j++) {
      const [k, run] = sides[(j + r) % sides.length];
      got[k] = await run();
    }
    return got;
  });
  const m = (k: string): number => median(rounds.used.map((g) => g[k]));
  const ratios = (set = rounds.used): number[] => set.map((g) => g.pool8 / g.bare8);
  const ratio = median(ratios());
  const rawRatio = median(rounds.used.map((g) => g.raw8 / g.bare8));
  const poolVsRaw = median(rounds.used.map((g) => g.pool8 / g.raw8));
  targets.push({ name: `d. createPool({ workers: ${W} }) vs ${W} bare interpreters, time to ready`, value: `${fmt(ratio)}x`, target: '<= 1.25x', ok: ratio <= 1.25 });

  // The shim: the same interpreter through pyenv's script vs its real path, one at a time.
  const shim = onPath(PYTHON);
  let shimRows: string[] = [];
  if (shim !== null && shim !== python) {
    const viaShim: number[] = [];
    const direct: number[] = [];
    await runToExit(shim);
    await runToExit(python);
    for (let r = 0; r < 7; r++) {
      viaShim.push(await runToExit(shim));
      direct.push(await runToExit(python));
    }
    shimRows = [
      `Spawning the interpreter through its shim vs its real path (\`-c pass\`, run to exit, one at a time, interleaved, median of ${viaShim.length}):`,
      '',
      '| interpreter | ms |',
      '|---|---:|',
      `| \`${shim}\` | ${fmt(median(viaShim), 1)} |`,
      `| \`${python}\` | ${fmt(median(direct), 1)} |`,
      `| cost of the shim per spawn | ${fmt(median(viaShim) - median(direct), 1)} |`,
      '',
    ];
  }
  return [
    `## d. Time to ready: ${W} workers vs ${W} bare interpreters`,
    '',
    `Interpreter resolved once before timing: \`${python}\` (from \`${PYTHON}\`); the pool is given that path. Rounds interleaved (the order rotates), after a warm-up. Bare: \`python -c 'print("ready")'\`, until its line arrived. By hand: the pyfleet worker spawned as the pool spawns it, until its hello. Pool: \`await createPool({ workers })\` (closing is not timed). The module is \`bench/startup.py\` (one command, no imports of its own): what is timed is the worker's own start, not a module's imports. The worker's own Python modules are compiled on every start when \`PYTHONDONTWRITEBYTECODE\` is set (${process.env.PYTHONDONTWRITEBYTECODE ? 'it is, in this run' : 'it is not, in this run'}). ${roundsNote(rounds)}`,
    '',
    '| start-up | 1 process (ms, median) | 8 at once (ms, median) | 8 vs 1 |',
    '|---|---:|---:|---:|',
    `| bare interpreter, prints a line | ${fmt(m('bare1'), 1)} | ${fmt(m('bare8'), 1)} | ${fmt(m('bare8') / m('bare1'))}x |`,
    `| pyfleet worker spawned by hand (hello) | ${fmt(m('raw1'), 1)} | ${fmt(m('raw8'), 1)} | ${fmt(m('raw8') / m('raw1'))}x |`,
    `| createPool | ${fmt(m('pool1'), 1)} | ${fmt(m('pool8'), 1)} | ${fmt(m('pool8') / m('pool1'))}x |`,
    '',
    `createPool(${W}) / ${W} bare: **${fmt(ratio)}x** (target <= 1.25x) ${pass(ratio <= 1.25)}. Of that, ${W} workers by hand / ${W} bare: ${fmt(rawRatio)}x (the Python runtime's own start-up), createPool / by hand: ${fmt(poolVsRaw)}x (the Node side).`,
    '',
    `Per round, pool/bare: ${spread(ratios())}. Over all ${rounds.all.length} rounds, disturbed ones included: ${fmt(median(ratios(rounds.all)))}x.`,
    '',
    ...shimRows,
  ].join('\n');
}

// ---- main ------------------------------------------------------------------

function pythonVersion(python: string): Promise<string> {
  return new Promise((resolve) => {
    const c = spawn(python, ['-c', 'import sys; print(sys.version.split()[0])'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let s = '';
    c.stdout.on('data', (d: Buffer) => (s += d.toString()));
    c.once('exit', () => resolve(s.trim()));
  });
}

/** What RESULTS.md says about CPU placement, once, before the sections. */
function placementNote(): string {
  return [
    '## CPU placement (one call at a time)',
    '',
    CAN_PIN
      ? 'On these 2-core VMs a round trip one call at a time is bimodal: when Node and the Python worker run on the same core, each hand-over is a context switch on that core; when they run on different cores, each one is a cross-core wake-up of a core that went idle, several times slower (section a gives the raw round trip\'s p50 in each placement). Unpinned, the scheduler moves the processes between these two states from one round to the next, so unpinned one-at-a-time ratios swing far more from round to round than the effects measured (section a\'s unpinned row shows the per-round spread of this run). So every one-at-a-time comparison (sections a, i, l, m) runs each variant in a fixed placement set with `taskset -a -p` (every thread of Node and of each Python process): **one core** (Node and its workers on the same CPU: the CPU that other processes used least just before the section), and in sections a and i also **two cores** (Node on that CPU, Python on the other) and **unpinned** (the scheduler\'s choice, what a deployment gets by default), all interleaved in the same rounds. The targets are judged on **one core**: its figures are stable from round to round, and with nothing overlapping, the ratio of two variants is the ratio of what each call costs in CPU on both sides, which is what a pool adds; on a machine whose cores are all busy (a pool sized to the CPU count under load) that cost is not hidden by an idle second core. The other two placements are reported beside it, in the same tables. Sections measuring throughput with many calls in flight, start-up, recovery, streaming and large payloads (b, c, d, g, h, j, k, and the restore in l) run unpinned: there both cores are meant to work, and their figures are milliseconds or throughput, not the few microseconds of a wake-up. Sections e (no Python) and f run as before, unpinned; f\'s one-at-a-time workload is exposed to the bimodality, which its A/A control row measures.'
      : 'This run had no `taskset` (or a single CPU): every figure is unpinned, including the one-at-a-time ones, which on 2-core VMs are bimodal (Node and Python on the same core or not) and swing from round to round.',
  ].join('\n');
}

interface CompareRefsFigures {
  date: string;
  seq: number;
  pipe: number;
}

/** bench/COMPARE-REFS.md, written by bench/compare-refs.ts; its figures become rows of the Targets table. */
function compareRefs(): { md: string | null; targets: Array<{ name: string; value: string; target: string; ok: boolean }> } {
  if (!existsSync(COMPARE_REFS)) return { md: null, targets: [] };
  const md = readFileSync(COMPARE_REFS, 'utf8');
  const m = /<!-- compare-refs: (\{.*\}) -->/.exec(md);
  if (m === null) return { md, targets: [] };
  const f = JSON.parse(m[1]) as CompareRefsFigures;
  return {
    md,
    targets: [
      { name: `1. reshaped vs pre-reshape pool (838536a), one at a time: ratio of their pool/raw ratios (compare-refs, ${f.date})`, value: fmt(f.seq, 3), target: '>= 0.95', ok: f.seq >= 0.95 },
      { name: `1. reshaped vs pre-reshape pool (838536a), 64 in flight: ratio of their pool/raw ratios (compare-refs, ${f.date})`, value: fmt(f.pipe, 3), target: '>= 0.95', ok: f.pipe >= 0.95 },
    ],
  };
}

async function main(): Promise<void> {
  const started = performance.now();
  const python = await resolvePython(PYTHON);
  const pyVersion = await pythonVersion(python);
  const sections: string[] = [];
  if (wanted('a')) sections.push(await section(() => benchSequential(python)));
  if (wanted('b')) sections.push(await section(() => benchPipelined(python)));
  if (wanted('c')) sections.push(await section(() => benchScaling(python)));
  if (wanted('d')) sections.push(await section(() => benchStartup(python)));
  if (wanted('e')) {
    log('e. resilience layer');
    const resilience = await section(benchResilience);
    const m = /overhead \/ cockatiel: \*\*([\d.]+)\*\*[\s\S]*?overhead \/ opossum: \*\*([\d.]+)\*\*/.exec(resilience);
    targets.push({
      name: 'e. retry + CircuitBreaker overhead vs cockatiel / opossum',
      value: m ? `${m[1]} / ${m[2]}` : 'see below',
      target: '<= 0.50 / <= 0.25',
      ok: resilience.includes('Target met.'),
    });
    sections.push(resilience);
  }
  if (wanted('f')) {
    log('f. telemetry overhead');
    const telemetry = await section(() => benchTelemetry());
    const m = /one at a time ([+-][\d.]+%) \/ ([+-][\d.]+%); 64 in flight ([+-][\d.]+%) \/ ([+-][\d.]+%)/.exec(telemetry);
    targets.push({
      name: 'f. telemetry cost, no subscribers / Prometheus (1 at a time; 64 in flight)',
      value: m ? `${m[1]} / ${m[2]}; ${m[3]} / ${m[4]}` : 'see below',
      target: '<= +5% / <= +15%',
      ok: telemetry.includes('**met**'),
    });
    sections.push(telemetry);
  }
  if (wanted('g')) {
    log('g. a fleet on NATS');
    const fleet = await section(() => benchFleet());
    targets.push({ name: 'g. fleet.execute p50 <= pool p50 + 1.5 x raw NATS p50', value: 'see g', target: 'met', ok: /Latency target:[^\n]*: met\./.test(fleet) });
    targets.push({ name: 'g. fleet 64 in flight >= 0.5 x raw NATS 64 in flight', value: 'see g', target: 'met', ok: /Throughput target:[^\n]*: met\./.test(fleet) });
    sections.push(fleet);
  }
  if (wanted('h')) sections.push(await section(() => benchRecovery(python)));
  if (wanted('i')) sections.push(await section(() => benchConcurrency(python)));
  if (wanted('j')) sections.push(await section(() => benchStreaming(python)));
  if (wanted('k')) sections.push(await section(() => benchBinary(python)));
  if (wanted('l')) sections.push(await section(() => benchSessions(python)));
  if (wanted('m')) sections.push(await section(() => benchValidate(python)));
  const compare = compareRefs();
  const left = pythonChildren();
  const seconds = (performance.now() - started) / 1000;
  const md = [
    '# pyfleet benchmarks',
    '',
    `Run on ${new Date().toISOString().slice(0, 10)} with \`npm run bench\` (${fmt(seconds, 0)} s): Node ${process.version}, Python ${pyVersion} (\`${python}\`), ${os.availableParallelism()} CPUs (${os.cpus()[0]?.model.trim() ?? 'unknown'}).`,
    '',
    `The machines are 2-core, shared and noisy. Variants run interleaved, round after round; figures are medians and each ratio is the median of per-round ratios of variants run back to back. Each round also measures the CPU used by processes other than this benchmark; rounds where they used ${DISTURBED_CPUS} CPU or more count as disturbed, and the figures are over the undisturbed rounds when there are enough (each section says). During this run other processes used between ${fmt(Math.min(...othersLoad))} and ${fmt(Math.max(...othersLoad))} CPUs on average per section.`,
    '',
    '## Targets',
    '',
    '| target | measured | wanted | result |',
    '|---|---:|---:|---|',
    ...targets.map((t) => `| ${t.name} | ${t.value} | ${t.target} | ${pass(t.ok)} |`),
    ...compare.targets.map((t) => `| ${t.name} | ${t.value} | ${t.target} | ${pass(t.ok)} |`),
    '',
    ...(compare.targets.length > 0 ? ['_The last rows come from `bench/compare-refs.ts`, which `npm run bench` does not run (it needs a second tree); see "Reshaped pool vs pre-reshape pool" at the end._', ''] : []),
    placementNote(),
    '',
    ...sections,
    ...(compare.md === null ? [] : [compare.md.trimEnd(), '']),
    `Python processes left behind by the benchmark: ${left.length === 0 ? '0' : `${left.length} (${left.join(', ')})`}.`,
    '',
  ].join('\n');
  // A partial run (BENCH_ONLY) is for iterating; RESULTS.md holds only complete runs.
  if (ONLY === null) writeFileSync(RESULTS, md);
  process.stdout.write(md);
  if (left.length > 0) {
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    process.exitCode = 1;
  }
}

await main();
