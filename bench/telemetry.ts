/**
 * Per-call cost of telemetry, in one run, on the same pool:
 *
 *   - compiled out: every `pyfleet:*` channel in `channels` is swapped for a plain object whose
 *     `hasSubscribers` is `false` and whose `publish` does nothing. What is left of telemetry is
 *     one property read on a plain object and a branch per publish site: the nearest a build
 *     without the publish code gets without a second build of the pool. (A call crosses about
 *     six publish sites: call:start, call:end, and ready->busy->ready transitions.)
 *   - no subscribers: the real diagnostics_channel channels, nobody listening (the default).
 *   - Prometheus reporter on: `PyfleetMetrics` attached (counter + histogram per call).
 *   - everything on (informative): metrics, alerts (webhook never called on the happy path),
 *     no-op OpenTelemetry spans (no SDK installed) and the dashboard's live model.
 *   - compiled out again: an A/A control; its distance from "compiled out" is the noise floor.
 *
 * Two workloads: `add` one call at a time on one worker (the round trip dominates), and 64
 * calls in flight on one worker with pipelineDepth 64 (the per-call host cost dominates, so
 * telemetry is the largest share it can be). Variants run interleaved, in an order shuffled
 * every round (a fixed rotation always puts the same mode after the same switch), each after a
 * short unmeasured settle run; figures are medians, ratios the median of each round's ratio.
 * A micro-benchmark of the publish path alone (no Python) shows the cost in nanoseconds.
 *
 *   node --import tsx bench/telemetry.ts
 */
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createPool, type Pool } from '../dist/pool/pool.js';
import { EVENT_NAMES, channels, subscribe, type EventName } from '../dist/telemetry/channels.js';
import { PyfleetMetrics } from '../dist/telemetry/metrics.js';
import { ErrorReporter } from '../dist/telemetry/reporter.js';
import type { ObservedPool } from '../dist/telemetry/source.js';
import { LiveState } from '../dist/server/live.js';

const MODULE = fileURLToPath(new URL('../examples/handlers.py', import.meta.url));
const silent = { info() {}, warn() {}, error() {}, debug() {} };

type Mode = 'compiled out' | 'no subscribers' | 'Prometheus reporter on' | 'everything on' | 'compiled out again (A/A)';
const MODES: Mode[] = ['compiled out', 'no subscribers', 'Prometheus reporter on', 'everything on', 'compiled out again (A/A)'];

const NOOP_CHANNEL = Object.freeze({ hasSubscribers: false, publish(): void {} });
const realChannels = { ...channels };

function setCompiledOut(on: boolean): void {
  const table = channels as unknown as Record<EventName, unknown>;
  for (const n of EVENT_NAMES) table[n] = on ? NOOP_CHANNEL : realChannels[n];
}

/** Turns one mode on; returns what turns it off. */
function enter(mode: Mode, pool: Pool): () => void {
  if (mode === 'compiled out' || mode === 'compiled out again (A/A)') {
    setCompiledOut(true);
    return () => setCompiledOut(false);
  }
  if (mode === 'no subscribers') return () => {};
  if (mode === 'Prometheus reporter on') {
    const m = new PyfleetMetrics();
    const off = m.attach(pool);
    return off;
  }
  const reporter = new ErrorReporter(pool, {
    metrics: new PyfleetMetrics(),
    alerts: { webhookUrl: 'http://127.0.0.1:9/never-called' },
    tracing: true,
  });
  const live = new LiveState(pool);
  return () => {
    live.close();
    reporter.close();
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Wall time and this process's CPU time (user + system), in µs per call. */
interface Sample {
  wall: number;
  cpu: number;
}

async function timed(n: number, body: () => Promise<void>): Promise<Sample> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await body();
  const wall = ((performance.now() - t0) * 1000) / n;
  const c = process.cpuUsage(c0);
  return { wall, cpu: (c.user + c.system) / n };
}

function sequential(pool: Pool, n: number): Promise<Sample> {
  return timed(n, async () => {
    for (let i = 0; i < n; i++) await pool.execute('add', { a: i, b: 1 });
  });
}

function pipelined(pool: Pool, n: number, depth: number): Promise<Sample> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      await pool.execute('add', { a: i, b: 1 });
    }
  };
  return timed(n, async () => {
    await Promise.all(Array.from({ length: depth }, lane));
  });
}

interface Workload {
  name: string;
  run: () => Promise<Sample>;
  /** A short unmeasured run after each switch of mode (swapping channels deoptimizes the publish sites once). */
  settle: () => Promise<unknown>;
}

/** Park-Miller: the order of the modes changes every round, the same way on every run. */
function shuffled<T>(xs: readonly T[], seed: number): T[] {
  const out = [...xs];
  let x = seed % 2147483647 || 1;
  for (let i = out.length - 1; i > 0; i--) {
    x = (x * 48271) % 2147483647;
    const j = x % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

interface WorkloadFigures {
  name: string;
  usPerCall: Record<Mode, number>;
  /** Median of per-round (mode / compiled out) ratios of wall time. */
  ratio: Record<Mode, number>;
  /** The host process's CPU time per call, and its ratios (steadier on a shared machine). */
  cpuPerCall: Record<Mode, number>;
  cpuRatio: Record<Mode, number>;
}

async function measure(pool: Pool, w: Workload, rounds: number): Promise<WorkloadFigures> {
  const per = () => Object.fromEntries(MODES.map((m) => [m, [] as number[]])) as Record<Mode, number[]>;
  const samples = per();
  const ratios = per();
  const cpu = per();
  const cpuRatios = per();
  for (let r = 0; r < rounds; r++) {
    const order = shuffled(MODES, 7919 * (r + 1));
    const got = {} as Record<Mode, Sample>;
    for (const mode of order) {
      const exit = enter(mode, pool);
      try {
        await w.settle();
        got[mode] = await w.run();
      } finally {
        exit();
      }
    }
    for (const m of MODES) {
      samples[m].push(got[m].wall);
      ratios[m].push(got[m].wall / got['compiled out'].wall);
      cpu[m].push(got[m].cpu);
      cpuRatios[m].push(got[m].cpu / got['compiled out'].cpu);
    }
  }
  const med = (x: Record<Mode, number[]>) => Object.fromEntries(MODES.map((m) => [m, median(x[m])])) as Record<Mode, number>;
  return { name: w.name, usPerCall: med(samples), ratio: med(ratios), cpuPerCall: med(cpu), cpuRatio: med(cpuRatios) };
}

/** The publish path alone: what one call costs in events (call:start, 4 transitions, call:end), in ns. */
function microPublish(iterations: number): Record<string, number> {
  const run = (): number => {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) {
      if (channels['call:start'].hasSubscribers) channels['call:start'].publish({ poolId: 1, callId: i, command: 'add', sessionId: null });
      for (let k = 0; k < 4; k++) {
        if (channels['worker:transition'].hasSubscribers) channels['worker:transition'].publish({ poolId: 1, workerId: 1, pid: 1, from: 'ready', to: 'busy', reason: 'call', durationMs: 1 });
      }
      if (channels['call:end'].hasSubscribers) {
        channels['call:end'].publish({ poolId: 1, callId: i, command: 'add', sessionId: null, ok: true, durationMs: 0.08, attempts: 1, code: null, via: 'pool' });
      }
    }
    return Number(process.hrtime.bigint() - t0) / iterations;
  };
  const fake: ObservedPool = {
    id: 1,
    stats: () => ({
      poolId: 1,
      module: 'bench',
      closed: false,
      workers: [],
      queue: { length: 0, max: 0 },
      calls: { total: 0, succeeded: 0, failed: 0, inFlight: 0, retries: 0, viaRecovery: 0, viaFallback: 0 },
      errorsByCategory: {},
      restarts: { total: 0, byReason: {} },
      circuits: {},
      recoveries: { initiated: 0, succeeded: 0, failed: 0, active: 0, timedOut: 0, byStrategy: {} },
      sessions: { total: 0, bound: 0, durable: 0, restored: 0 },
      binary: { toPython: 0, fromPython: 0 },
    }),
    on: (name, fn) => subscribe(name, fn),
    close: async () => {},
  };
  const runs: Record<string, number[]> = { 'compiled out': [], 'no subscribers': [], 'Prometheus reporter on': [] };
  for (let rep = 0; rep < 3; rep++) {
    setCompiledOut(true);
    const a = run();
    setCompiledOut(false);
    const b = run();
    const off = new PyfleetMetrics().attach(fake);
    const c = run();
    off();
    if (rep === 0) continue; // warm-up
    runs['compiled out'].push(a);
    runs['no subscribers'].push(b);
    runs['Prometheus reporter on'].push(c);
  }
  return Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, Math.min(...v)]));
}

export interface TelemetryBenchOptions {
  rounds?: number;
  sequentialCalls?: number;
  pipelinedCalls?: number;
}

export async function measureTelemetry(opts: TelemetryBenchOptions = {}): Promise<{ workloads: WorkloadFigures[]; micro: Record<string, number> }> {
  const rounds = opts.rounds ?? 25;
  const seqN = opts.sequentialCalls ?? 800;
  const pipeN = opts.pipelinedCalls ?? 8_000;
  const micro = microPublish(500_000);
  const seqPool = await createPool({ module: MODULE, workers: 1, logger: silent });
  const pipePool = await createPool({ module: MODULE, workers: 1, pipelineDepth: 64, logger: silent });
  try {
    // Warm up both pools and every mode, three times over, so that switching modes no longer
    // deoptimizes the publish sites (their inline caches have seen every channel shape).
    for (const mode of [...MODES, ...MODES, ...MODES]) {
      const exit = enter(mode, seqPool);
      await sequential(seqPool, 500);
      exit();
      const exit2 = enter(mode, pipePool);
      await pipelined(pipePool, 5_000, 64);
      exit2();
    }
    const workloads = [
      await measure(
        seqPool,
        { name: `one call at a time (\`add\`, 1 worker, ${seqN.toLocaleString('en')} calls a round)`, run: () => sequential(seqPool, seqN), settle: () => sequential(seqPool, 100) },
        rounds,
      ),
      await measure(
        pipePool,
        { name: `64 in flight (\`add\`, 1 worker, pipelineDepth 64, ${pipeN.toLocaleString('en')} calls a round)`, run: () => pipelined(pipePool, pipeN, 64), settle: () => pipelined(pipePool, 1_000, 64) },
        rounds,
      ),
    ];
    return { workloads, micro };
  } finally {
    setCompiledOut(false);
    await Promise.all([seqPool.close(), pipePool.close()]);
  }
}

/** Runs the benchmark and returns a markdown section (bench/run.ts puts it in bench/RESULTS.md). */
export async function benchTelemetry(opts: TelemetryBenchOptions = {}): Promise<string> {
  const rounds = opts.rounds ?? 25;
  const { workloads, micro } = await measureTelemetry(opts);
  const pct = (r: number) => `${r >= 1 ? '+' : ''}${((r - 1) * 100).toFixed(1)}%`;
  const lines = [
    '## Telemetry: per-call cost',
    '',
    'The same calls on the same pool with telemetry compiled out (every `pyfleet:*` channel swapped for a plain',
    '`{ hasSubscribers: false }` object, so each publish site costs one property read and a branch), with the real',
    'channels and no subscribers (the default), and with the Prometheus reporter attached; "everything on" adds',
    'alerts, no-op OpenTelemetry spans (no SDK) and the dashboard model. Variants interleaved in a shuffled order,',
    `${rounds} rounds; µs per call are medians, the change is the median of each round's ratio to "compiled out".`,
    'Wall time is what the targets are about; the host process\'s CPU time per call is steadier on a shared machine.',
    '"compiled out again" is an A/A control: its distance from "compiled out" is what noise alone does here.',
    `Node ${process.version}.`,
    '',
  ];
  let ok = true;
  for (const w of workloads) {
    lines.push(`**${w.name}**`, '', '| telemetry | wall µs/call | vs compiled out | host CPU µs/call | vs compiled out |', '|---|---:|---:|---:|---:|');
    for (const m of MODES) {
      const first = m === 'compiled out';
      lines.push(`| ${m} | ${w.usPerCall[m].toFixed(2)} | ${first ? '-' : pct(w.ratio[m])} | ${w.cpuPerCall[m].toFixed(2)} | ${first ? '-' : pct(w.cpuRatio[m])} |`);
    }
    lines.push('');
    ok &&= w.ratio['no subscribers'] <= 1.05 && w.ratio['Prometheus reporter on'] <= 1.15;
  }
  lines.push(
    'The publish path alone, no Python (one call\'s events: call:start, four worker transitions, call:end), best of 2 runs of 500,000:',
    '',
    '| telemetry | ns per call |',
    '|---|---:|',
    ...Object.entries(micro).map(([k, v]) => `| ${k} | ${v.toFixed(1)} |`),
    '',
    `Targets: no subscribers at most 5% slower than compiled out, Prometheus reporter at most 15%: ${ok ? '**met**' : '**NOT met**'} ` +
      `(one at a time ${pct(workloads[0].ratio['no subscribers'])} / ${pct(workloads[0].ratio['Prometheus reporter on'])}; ` +
      `64 in flight ${pct(workloads[1].ratio['no subscribers'])} / ${pct(workloads[1].ratio['Prometheus reporter on'])}; ` +
      `A/A noise ${pct(workloads[0].ratio['compiled out again (A/A)'])} and ${pct(workloads[1].ratio['compiled out again (A/A)'])}). ` +
      'The publish-path figures above are the cost without the noise.',
    '',
  );
  return lines.join('\n');
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  benchTelemetry().then(
    (md) => console.log(md),
    (err) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
