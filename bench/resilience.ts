/**
 * Per-call overhead of the resilience layer on the happy path (closed circuit, first attempt
 * succeeds), against cockatiel 3.2.1 and opossum 9.
 *
 *   node --import tsx bench/resilience.ts
 *
 * Each variant awaits `fn()` (which resolves at once) through its wrapper, in a loop of CALLS
 * calls; a run's figure is ns per call; a variant's figure is the median of RUNS runs, taken
 * interleaved with the other variants after a warm-up. Overhead = variant - bare `await fn()`.
 */
import { pathToFileURL } from 'node:url';
import {
  ConsecutiveBreaker,
  ExponentialBackoff,
  circuitBreaker as cockatielBreaker,
  handleAll,
  retry as cockatielRetry,
  wrap,
} from 'cockatiel';
import Opossum from 'opossum';
import { CircuitBreaker } from '../dist/resilience/circuit-breaker.js';
import { retry, type RetryOptions } from '../dist/resilience/retry.js';

const CALLS = 200_000;
const RUNS = 7;
const WARMUP_CALLS = 100_000;

interface Variant {
  name: string;
  call: () => Promise<unknown>;
  /** Releases timers the library keeps (opossum's rolling window). */
  close?: () => void;
}

const fn = (): Promise<number> => Promise.resolve(1);

function variants(): Variant[] {
  const breaker = new CircuitBreaker({ name: 'bench' });
  const retryOptions: RetryOptions = { maxAttempts: 3, backoff: 'exponential' };
  const throughBreaker = () => breaker.execute(fn);

  const cockatiel = wrap(
    cockatielRetry(handleAll, { maxAttempts: 3, backoff: new ExponentialBackoff() }),
    cockatielBreaker(handleAll, { halfOpenAfter: 10_000, breaker: new ConsecutiveBreaker(5) }),
  );

  const opossum = new Opossum(fn);
  const opossumNoTimeout = new Opossum(fn, { timeout: false });

  return [
    { name: 'bare `await fn()`', call: fn },
    { name: 'pyfleet CircuitBreaker alone', call: () => breaker.execute(fn) },
    { name: 'pyfleet retry alone', call: () => retry(fn, retryOptions) },
    { name: 'pyfleet retry + CircuitBreaker', call: () => retry(throughBreaker, retryOptions) },
    { name: 'cockatiel wrap(retry, circuitBreaker)', call: () => cockatiel.execute(fn) },
    { name: 'opossum fire() (default options)', call: () => opossum.fire(), close: () => opossum.shutdown() },
    { name: 'opossum fire() (timeout: false)', call: () => opossumNoTimeout.fire(), close: () => opossumNoTimeout.shutdown() },
  ];
}

async function runOnce(call: () => Promise<unknown>, n: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await call();
  return Number(process.hrtime.bigint() - t0) / n;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

export interface ResilienceFigures {
  /** Median ns per call for each variant. */
  ns: Record<string, number>;
  /** ns per call above the bare call. */
  overhead: Record<string, number>;
  ratioCockatiel: number;
  ratioOpossum: number;
  ratioOpossumNoTimeout: number;
}

export async function measureResilience(opts: { calls?: number; runs?: number } = {}): Promise<ResilienceFigures> {
  const calls = opts.calls ?? CALLS;
  const runs = opts.runs ?? RUNS;
  const vs = variants();
  try {
    for (const v of vs) await runOnce(v.call, WARMUP_CALLS);
    const samples: Record<string, number[]> = Object.fromEntries(vs.map((v) => [v.name, []]));
    for (let r = 0; r < runs; r++) {
      for (const v of vs) samples[v.name].push(await runOnce(v.call, calls));
    }
    const ns: Record<string, number> = {};
    for (const v of vs) ns[v.name] = median(samples[v.name]);
    const bare = ns[vs[0].name];
    const overhead: Record<string, number> = {};
    for (const v of vs) overhead[v.name] = Math.max(0, ns[v.name] - bare);
    const ours = overhead['pyfleet retry + CircuitBreaker'];
    return {
      ns,
      overhead,
      ratioCockatiel: ours / overhead['cockatiel wrap(retry, circuitBreaker)'],
      ratioOpossum: ours / overhead['opossum fire() (default options)'],
      ratioOpossumNoTimeout: ours / overhead['opossum fire() (timeout: false)'],
    };
  } finally {
    for (const v of vs) v.close?.();
  }
}

/** Runs the benchmark and returns a markdown section. */
export async function benchResilience(): Promise<string> {
  const f = await measureResilience();
  const rows = Object.keys(f.ns).map((name) => `| ${name} | ${f.ns[name].toFixed(0)} | ${f.overhead[name].toFixed(0)} |`);
  const ok = f.ratioCockatiel <= 0.5 && f.ratioOpossum <= 0.25;
  return [
    '## Resilience layer: per-call overhead',
    '',
    `Happy path (closed circuit, first attempt succeeds), \`await\` in a loop; median of ${RUNS} runs of ${CALLS.toLocaleString('en')} calls after a warm-up; Node ${process.version}.`,
    '',
    '| variant | ns/call | overhead ns/call |',
    '|---|---:|---:|',
    ...rows,
    '',
    `pyfleet retry + CircuitBreaker overhead / cockatiel: **${f.ratioCockatiel.toFixed(2)}** (target <= 0.50)`,
    `pyfleet retry + CircuitBreaker overhead / opossum: **${f.ratioOpossum.toFixed(2)}** (target <= 0.25; vs opossum without its per-call timeout: ${f.ratioOpossumNoTimeout.toFixed(2)})`,
    '',
    ok ? 'Target met.' : 'Target NOT met.',
    '',
  ].join('\n');
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  benchResilience().then(
    (md) => console.log(md),
    (err) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
