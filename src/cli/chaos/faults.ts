import { InvalidArgumentError } from 'commander';
import type { ChaosOptions } from '../../index.js';

/** A fault as the CLI names it, the ChaosOptions key it sets, and its default (moderate) value. */
export interface FaultSpec {
  name: string;
  key: keyof ChaosOptions;
  defaultValue: number;
  /** A per-call rate (vs a per-start rate or a count). */
  perCall: boolean;
  what: string;
}

/**
 * Every fault, on by default at a moderate rate: per call attempt about 6% get an
 * infrastructure fault (kill, hang, garbage, ...) and 2% an injected Python exception.
 */
export const FAULTS: readonly FaultSpec[] = [
  { name: 'kill', key: 'kill', defaultValue: 0.01, perCall: true, what: 'the worker SIGKILLs itself during the call' },
  { name: 'hang', key: 'hang', defaultValue: 0.004, perCall: true, what: 'the call hangs until timed out (cancellable)' },
  { name: 'hang-uncancellable', key: 'hangUncancellable', defaultValue: 0.002, perCall: true, what: 'the call hangs with the cancel signal blocked: the worker must be killed' },
  { name: 'garbage', key: 'garbage', defaultValue: 0.004, perCall: true, what: 'bytes that are not a frame on the protocol pipe' },
  { name: 'truncated', key: 'truncated', defaultValue: 0.004, perCall: true, what: 'a truncated frame on the protocol pipe' },
  { name: 'exception', key: 'exception', defaultValue: 0.02, perCall: true, what: 'a Python RuntimeError("chaos: injected exception") before the handler' },
  { name: 'memory', key: 'memory', defaultValue: 0.01, perCall: true, what: 'the worker keeps memoryMb MB alive (recycled past recycle.maxMemoryMb)' },
  { name: 'heartbeat-stall', key: 'heartbeatStall', defaultValue: 0.003, perCall: true, what: 'heartbeats stop for heartbeatStallMs: the worker is found unhealthy' },
  { name: 'slow-start', key: 'slowStart', defaultValue: 0.2, perCall: false, what: 'share of replacement starts delayed by slowStartMs' },
  { name: 'fail-import', key: 'failImportFirst', defaultValue: 2, perCall: false, what: 'the first N replacement starts fail to import the module' },
];

/** Sizes of the faults that have one. */
export const FAULT_SIZES = { memoryMb: 48, heartbeatStallMs: 2_000, slowStartMs: 800 } as const;

const byName = new Map<string, FaultSpec>();
for (const f of FAULTS) {
  byName.set(f.name, f);
  byName.set(f.key.toLowerCase(), f);
  byName.set(f.name.replace(/-/g, '_'), f);
}
byName.set('stall', byName.get('heartbeat-stall')!);
byName.set('fail-import-first', byName.get('fail-import')!);

function lookup(name: string): FaultSpec {
  const f = byName.get(name.trim().toLowerCase());
  if (f === undefined) throw new InvalidArgumentError(`unknown fault ${JSON.stringify(name)}; known: ${FAULTS.map((x) => x.name).join(', ')}`);
  return f;
}

/** `--faults kill,hang,...` ('all' or 'none' too) to the set of enabled fault names. */
export function parseFaultList(value: string): Set<string> {
  const v = value.trim().toLowerCase();
  if (v === 'all' || v === '') return new Set(FAULTS.map((f) => f.name));
  if (v === 'none') return new Set();
  return new Set(v.split(',').filter((s) => s.trim() !== '').map((s) => lookup(s).name));
}

/** `--fault-rates kill=0.02,fail-import=1` to overrides by fault name. */
export function parseFaultRates(value: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const part of value.split(',')) {
    if (part.trim() === '') continue;
    const m = /^\s*([\w-]+)\s*=\s*([0-9.eE+-]+)\s*$/.exec(part);
    if (m === null) throw new InvalidArgumentError(`expected name=value pairs like kill=0.02, got ${JSON.stringify(part)}`);
    const f = lookup(m[1]);
    const n = Number(m[2]);
    const ok = f.key === 'failImportFirst' ? Number.isInteger(n) && n >= 0 : Number.isFinite(n) && n >= 0 && n <= 1;
    if (!ok) throw new InvalidArgumentError(`${f.name} must be ${f.key === 'failImportFirst' ? 'an integer >= 0' : 'a rate from 0 to 1'}, got ${m[2]}`);
    out.set(f.name, n);
  }
  return out;
}

/** The pool's chaos option for the enabled faults (default rates, then overrides; an override also enables its fault). */
export function chaosOptions(enabled: Set<string>, overrides: Map<string, number>, seed: number): ChaosOptions {
  const o: ChaosOptions = { seed, ...FAULT_SIZES };
  for (const f of FAULTS) {
    const value = overrides.get(f.name) ?? (enabled.has(f.name) ? f.defaultValue : 0);
    (o as Record<string, number>)[f.key] = value;
  }
  return o;
}

/** Per-call share of attempts given an infrastructure fault (everything but the Python exception). */
export function infraFaultRate(o: ChaosOptions): number {
  return FAULTS.filter((f) => f.perCall && f.key !== 'exception').reduce((s, f) => s + ((o[f.key] as number | undefined) ?? 0), 0);
}
