import { invalidOption as invalidOptions } from '../errors/invalid.js';

const invalidOption = (what: string) => invalidOptions(what, 'pool options');

/**
 * Fault injection, chosen on the host with a seeded random source so a failing run can be
 * replayed with the same seed. The worker only carries out the fault named in a call; a pool
 * created without `chaos` never names one, and its workers ignore the field.
 */
export interface ChaosOptions {
  /** Seed of the random source (default: random; printed in the stats so a run can be replayed). */
  seed?: number;
  /** Share of calls (0..1) whose worker SIGKILLs itself during the call. */
  kill?: number;
  /** Share of calls that hang until the pool times them out (cancellable). */
  hang?: number;
  /** Share of calls that hang with the cancel signal blocked, so the pool must kill the worker. */
  hangUncancellable?: number;
  /** Share of calls during which the worker writes bytes that are not a frame on the protocol pipe. */
  garbage?: number;
  /** Share of calls during which the worker writes a truncated frame. */
  truncated?: number;
  /** Share of calls that raise a Python exception before the handler runs. */
  exception?: number;
  /** Share of calls that each keep `memoryMb` MB alive in the worker (memory blow-up until recycled). */
  memory?: number;
  memoryMb?: number;
  /** Share of calls after which the worker's heartbeats stop for `heartbeatStallMs`. */
  heartbeatStall?: number;
  heartbeatStallMs?: number;
  /** Share of worker starts delayed by `slowStartMs`. */
  slowStart?: number;
  slowStartMs?: number;
  /** The first N worker starts fail to import the module. */
  failImportFirst?: number;
}

export type CallFaultKind = 'kill' | 'hang' | 'hang_uncancellable' | 'garbage' | 'truncated' | 'exception' | 'memory' | 'stall';
export const CALL_FAULTS: readonly CallFaultKind[] = ['kill', 'hang', 'hang_uncancellable', 'garbage', 'truncated', 'exception', 'memory', 'stall'];

export interface CallFault {
  kind: CallFaultKind;
  mb?: number;
  ms?: number;
}

export interface ChaosConfig {
  seed: number;
  rates: Record<CallFaultKind, number>;
  memoryMb: number;
  heartbeatStallMs: number;
  slowStart: number;
  slowStartMs: number;
  failImportFirst: number;
}

const RATE_KEYS: Record<CallFaultKind, keyof ChaosOptions> = {
  kill: 'kill',
  hang: 'hang',
  hang_uncancellable: 'hangUncancellable',
  garbage: 'garbage',
  truncated: 'truncated',
  exception: 'exception',
  memory: 'memory',
  stall: 'heartbeatStall',
};

const KNOWN = new Set<string>([...Object.values(RATE_KEYS), 'seed', 'memoryMb', 'heartbeatStallMs', 'slowStart', 'slowStartMs', 'failImportFirst']);

function rate(v: unknown, name: string): number {
  if (v === undefined) return 0;
  if (typeof v !== 'number' || !(v >= 0 && v <= 1)) throw invalidOption(`chaos.${name} must be a rate from 0 to 1, got ${String(v)}`);
  return v;
}

function count(v: unknown, name: string, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw invalidOption(`chaos.${name} must be an integer >= 0, got ${String(v)}`);
  return v;
}

export function validateChaos(input: unknown): ChaosConfig {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw invalidOption('chaos must be an object of fault rates');
  const o = input as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!KNOWN.has(k)) throw invalidOption(`chaos.${k} is not a fault (known: ${[...KNOWN].join(', ')})`);
  const rates = {} as Record<CallFaultKind, number>;
  let total = 0;
  for (const kind of CALL_FAULTS) total += rates[kind] = rate(o[RATE_KEYS[kind]], RATE_KEYS[kind]);
  if (total > 1) throw invalidOption(`chaos rates add up to ${total.toFixed(3)}, over 1`);
  return {
    seed: count(o.seed, 'seed', Math.floor(Math.random() * 2 ** 31)),
    rates,
    memoryMb: count(o.memoryMb, 'memoryMb', 64),
    heartbeatStallMs: count(o.heartbeatStallMs, 'heartbeatStallMs', 5_000),
    slowStart: rate(o.slowStart, 'slowStart'),
    slowStartMs: count(o.slowStartMs, 'slowStartMs', 1_500),
    failImportFirst: count(o.failImportFirst, 'failImportFirst', 0),
  };
}

/** mulberry32: small, fast, and good enough to pick faults reproducibly. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Picks the fault for each call and each worker start from one seeded sequence. */
export class ChaosMonkey {
  private readonly random: () => number;
  private starts = 0;
  readonly injected: Record<CallFaultKind | 'slow_start' | 'fail_import', number>;

  constructor(readonly config: ChaosConfig) {
    this.random = seededRandom(config.seed);
    this.injected = { kill: 0, hang: 0, hang_uncancellable: 0, garbage: 0, truncated: 0, exception: 0, memory: 0, stall: 0, slow_start: 0, fail_import: 0 };
  }

  /** The fault for the next call, or undefined. */
  forCall(): CallFault | undefined {
    let r = this.random();
    for (const kind of CALL_FAULTS) {
      const p = this.config.rates[kind];
      if (r < p) {
        this.injected[kind]++;
        if (kind === 'memory') return { kind, mb: this.config.memoryMb };
        if (kind === 'stall') return { kind, ms: this.config.heartbeatStallMs };
        return { kind };
      }
      r -= p;
    }
    return undefined;
  }

  /** Environment for a worker start; `initial` starts (createPool's own) get no start-up fault. */
  forStart(initial: boolean): Record<string, string> {
    const env: Record<string, string> = { PYFLEET_CHAOS: '1' };
    if (initial) return env;
    this.starts++;
    if (this.starts <= this.config.failImportFirst) {
      env.PYFLEET_CHAOS_FAIL_IMPORT = '1';
      this.injected.fail_import++;
    }
    if (this.config.slowStart > 0 && this.random() < this.config.slowStart) {
      env.PYFLEET_CHAOS_SLOW_START_MS = String(this.config.slowStartMs);
      this.injected.slow_start++;
    }
    return env;
  }
}
