/**
 * What every section of `npm run bench` shares: statistics, the targets table, the measure of
 * how busy other processes kept the machine, rounds that skip disturbed ones, and CPU placement
 * (`taskset`) for the one-call-at-a-time figures.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import type { Logger } from '../dist/util/logger.js';

/** Other processes using more CPU than this during a round make it a disturbed round. */
export const DISTURBED_CPUS = 0.25;
/** Before each section, wait up to this long for a quiet moment. */
const QUIET_MAX_WAIT_MS = Number(process.env.BENCH_QUIET_WAIT_MS ?? 3_000);

export const silent: Logger = { info() {}, warn() {}, error() {}, debug() {} };

// ---- statistics ------------------------------------------------------------

export function median(xs: ArrayLike<number>): number {
  const s = Array.from(xs).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function percentile(xs: ArrayLike<number>, p: number): number {
  const s = Array.from(xs).sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

export const fmtInt = (x: number): string => Math.round(x).toLocaleString('en');
export const fmt = (x: number, d = 2): string => x.toFixed(d);
export const us = (ms: number): string => `${Math.round(ms * 1000)} µs`;
export const pass = (ok: boolean): string => (ok ? '**pass**' : '**FAIL**');
export const mib = (bytes: number): string => `${bytes / 1048576} MiB`;

/** "min .. max (quartiles q1 .. q3)": how much a ratio moved from round to round. */
export function spread(xs: number[], d = 2): string {
  const s = [...xs].sort((a, b) => a - b);
  return `${fmt(s[0], d)} .. ${fmt(s[s.length - 1], d)} (quartiles ${fmt(percentile(s, 25), d)} .. ${fmt(percentile(s, 75), d)})`;
}

/** "p50 x / p90 y / max z" in ms. */
export function dist(xs: number[], d = 1): string {
  return `p50 ${fmt(median(xs), d)} / p90 ${fmt(percentile(xs, 90), d)} / max ${fmt(Math.max(...xs), d)} ms`;
}

export interface Target {
  name: string;
  value: string;
  target: string;
  ok: boolean;
}
export const targets: Target[] = [];

export function log(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

/** Runs `f` and adds the CPU time this Node process spent meanwhile (µs; the Python side is not included). */
export async function withCpu<T extends object>(f: () => Promise<T>): Promise<T & { cpuUs: number }> {
  const c0 = process.cpuUsage();
  const r = await f();
  const c = process.cpuUsage(c0);
  return { ...r, cpuUs: c.user + c.system };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits until `cond()` holds (polling every few ms), or throws after `timeoutMs`. */
export async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > timeoutMs) throw new Error(`bench: timed out waiting for ${what}`);
    await sleep(2);
  }
}

/**
 * CPU time (ns) every thread of process `pid` has used so far (/proc/<pid>/task/<tid>/schedstat,
 * first field: nanoseconds, unlike /proc/<pid>/stat's 10 ms ticks); 0 when the process is gone.
 */
export function processCpuNs(pid: number): number {
  let ns = 0;
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      } catch {
        // the thread ended
      }
    }
  } catch {
    // the process is gone
  }
  return ns;
}

/** Runs `f` and adds the CPU time (µs) that this Node process and the processes `pids` spent meanwhile. */
export async function withCpus<T extends object>(pids: readonly number[], f: () => Promise<T>): Promise<T & { nodeUs: number; pyUs: number }> {
  const p0 = pids.reduce((a, pid) => a + processCpuNs(pid), 0);
  const c0 = process.cpuUsage();
  const r = await f();
  const c = process.cpuUsage(c0);
  const p1 = pids.reduce((a, pid) => a + processCpuNs(pid), 0);
  return { ...r, nodeUs: c.user + c.system, pyUs: (p1 - p0) / 1000 };
}

// ---- the machine: how busy are other processes? ----------------------------

const HZ = 100; // USER_HZ: /proc reports CPU time in 1/100 s

function procStat(pid: number | 'self'): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm)": state [0], ppid [1], utime [11], stime [12], cutime [13], cstime [14].
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** Live processes whose parent is this process. */
function children(): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const f = procStat(Number(d));
    if (f !== null && Number(f[1]) === process.pid) out.push(Number(d));
  }
  return out;
}

/** Python processes this benchmark started that are still alive. */
export function pythonChildren(): number[] {
  return children().filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('python');
    } catch {
      return false;
    }
  });
}

/** CPU seconds used so far by this process, its reaped children and its live children. */
function ownCpuSeconds(): number {
  const me = procStat('self')!;
  let ticks = Number(me[11]) + Number(me[12]) + Number(me[13]) + Number(me[14]);
  for (const pid of children()) {
    const f = procStat(pid);
    if (f !== null) ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks / HZ;
}

/** CPU seconds the machine spent busy so far: all CPUs together, and per CPU. */
function machineBusy(): { all: number; per: Map<number, number> } {
  const per = new Map<number, number>();
  let all = 0;
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^cpu(\d*)\s+(.*)$/.exec(line);
    if (m === null) continue;
    const f = m[2].trim().split(/\s+/).map(Number);
    // user nice system idle iowait irq softirq steal
    const busy = (f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] ?? 0)) / HZ;
    if (m[1] === '') all = busy;
    else per.set(Number(m[1]), busy);
  }
  return { all, per };
}

/** Starts measuring; the function returned gives the CPUs other processes used on average since. */
export function othersProbe(): () => number {
  const t0 = performance.now();
  const busy0 = machineBusy().all;
  const own0 = ownCpuSeconds();
  return () => {
    const wall = (performance.now() - t0) / 1000;
    return Math.max(0, machineBusy().all - busy0 - (ownCpuSeconds() - own0)) / wall;
  };
}

/** Waits (up to QUIET_MAX_WAIT_MS) for half a second during which other processes use less than DISTURBED_CPUS. */
async function waitForQuiet(): Promise<{ waitedMs: number; others: number; quietestCpu: number | null }> {
  const t0 = performance.now();
  for (;;) {
    const probe = othersProbe();
    const per0 = machineBusy().per;
    await sleep(500);
    const others = probe();
    const per1 = machineBusy().per;
    const waitedMs = performance.now() - t0 - 500;
    if (others < DISTURBED_CPUS || waitedMs >= QUIET_MAX_WAIT_MS) {
      let quietestCpu: number | null = null;
      let least = Infinity;
      for (const cpu of ALL_CPUS) {
        const used = (per1.get(cpu) ?? 0) - (per0.get(cpu) ?? 0);
        if (used < least) {
          least = used;
          quietestCpu = cpu;
        }
      }
      return { waitedMs, others, quietestCpu };
    }
  }
}

export interface Rounds<T> {
  /** The rounds the figures are taken over. */
  used: T[];
  all: T[];
  undisturbed: number;
  /** CPUs other processes used, per round. */
  others: number[];
  usedUndisturbed: boolean;
}

/**
 * Runs `round` until `want` rounds were undisturbed by other processes, or `maxRounds` rounds
 * or `maxMs` have passed. The figures are taken over the undisturbed rounds when at least half
 * of `want` are; otherwise over all rounds.
 */
export async function runRounds<T>(want: number, maxRounds: number, maxMs: number, round: (r: number) => Promise<T>): Promise<Rounds<T>> {
  const t0 = performance.now();
  const all: T[] = [];
  const clean: T[] = [];
  const others: number[] = [];
  for (let r = 0; r < maxRounds; r++) {
    const probe = othersProbe();
    const v = await round(r);
    const o = probe();
    all.push(v);
    others.push(o);
    if (o < DISTURBED_CPUS) clean.push(v);
    if (clean.length >= want || (r + 1 >= want && performance.now() - t0 > maxMs)) break;
  }
  const usedUndisturbed = clean.length >= Math.ceil(want / 2);
  return { used: usedUndisturbed ? clean : all, all, undisturbed: clean.length, others, usedUndisturbed };
}

export function roundsNote(r: Rounds<unknown>): string {
  const which = r.usedUndisturbed
    ? `Figures are over the ${r.used.length} rounds undisturbed by other processes (they used < ${DISTURBED_CPUS} CPU)`
    : `Only ${r.undisturbed} rounds were undisturbed by other processes (< ${DISTURBED_CPUS} CPU), too few: figures are over all rounds`;
  return `${r.all.length} rounds run. ${which}; other processes used ${fmt(median(r.others))} CPUs in the median round (max ${fmt(Math.max(...r.others))}).`;
}

export const othersLoad: number[] = [];

/** Waits for a quiet moment (up to a few seconds), and makes the CPU other processes used least meanwhile the one `place` pins to. */
export async function quietMoment(): Promise<{ waitedMs: number; others: number }> {
  const quiet = await waitForQuiet();
  if (quiet.quietestCpu !== null) HOME_CPU = quiet.quietestCpu;
  return quiet;
}

/** Runs one benchmark section after waiting for a quiet moment, and notes how busy the machine was. */
export async function section(run: () => Promise<string>): Promise<string> {
  const quiet = await quietMoment();
  const probe = othersProbe();
  const t0 = performance.now();
  let md: string;
  try {
    md = await run();
  } finally {
    place('unpinned', []);
  }
  const wall = (performance.now() - t0) / 1000;
  const others = probe();
  othersLoad.push(others);
  const waited = quiet.waitedMs > 100 ? `; it started after waiting ${fmt(quiet.waitedMs / 1000, 1)} s for a quiet moment${quiet.others < DISTURBED_CPUS ? '' : ` (none came: ${fmt(quiet.others)} CPUs busy)`}` : '';
  return `${md.trimEnd()}\n\n_Machine during this section (${fmt(wall, 1)} s): other processes used ${fmt(others)} of ${os.availableParallelism()} CPUs on average${waited}._\n`;
}

// ---- CPU placement ---------------------------------------------------------

/**
 * Where the Node process and the Python processes it talks to run, for the figures measured one
 * call at a time (see RESULTS.md, "CPU placement"):
 *
 *   one core   Node (every thread) and its Python children on the same CPU
 *   two cores  Node on one CPU, its Python children on another
 *   unpinned   wherever the scheduler puts them (what a deployment gets by default)
 *
 * Set with `taskset -a -p` (every thread of a process, Node's libuv and V8 threads included);
 * processes started while Node is pinned inherit its CPU.
 */
export type Placement = 'one core' | 'two cores' | 'unpinned';

function tasksetWorks(): boolean {
  try {
    execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** The CPUs this process may run on (its affinity when the benchmark started). */
function allowedCpus(): number[] {
  try {
    const m = /^Cpus_allowed_list:\s*(.+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m !== null) {
      const out: number[] = [];
      for (const part of m[1].trim().split(',')) {
        const [a, b] = part.split('-').map(Number);
        for (let c = a; c <= (b ?? a); c++) out.push(c);
      }
      return out;
    }
  } catch {
    // not Linux
  }
  return Array.from({ length: os.availableParallelism() }, (_, i) => i);
}

const ALL_CPUS = allowedCpus();
const ALL_LIST = ALL_CPUS.join(',');
/** `taskset` exists and there are two CPUs to place things on. */
export const CAN_PIN = ALL_CPUS.length >= 2 && tasksetWorks();
/** The CPU Node is pinned to: the one other processes used least while the section waited for a quiet moment. */
let HOME_CPU = ALL_CPUS[0];
let current: Placement = 'unpinned';

export function homeCpu(): number {
  return HOME_CPU;
}
export function otherCpu(): number {
  return ALL_CPUS.find((c) => c !== HOME_CPU) ?? HOME_CPU;
}

function setAffinity(pid: number, cpus: string): void {
  try {
    execFileSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' });
  } catch {
    // the process is gone
  }
}

/**
 * Places this process and `pids` (its Python children) as `p` says. Without `taskset` (or with
 * one CPU) it does nothing: everything is unpinned.
 */
export function place(p: Placement, pids: readonly number[]): void {
  if (!CAN_PIN) return;
  if (p === 'unpinned') {
    if (current !== 'unpinned') setAffinity(process.pid, ALL_LIST);
    for (const pid of pids) setAffinity(pid, ALL_LIST);
  } else {
    setAffinity(process.pid, String(HOME_CPU));
    const child = String(p === 'one core' ? HOME_CPU : otherCpu());
    for (const pid of pids) setAffinity(pid, child);
  }
  current = p;
}

/** The placements a section measures: all three with `taskset`, else only unpinned. */
export const PLACEMENTS: Placement[] = CAN_PIN ? ['one core', 'two cores', 'unpinned'] : ['unpinned'];
/** The placement one-at-a-time targets are judged on. */
export const JUDGED: Placement = CAN_PIN ? 'one core' : 'unpinned';
