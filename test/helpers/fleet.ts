import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { scanWorkersOf, isAlive } from '../../src/cli/chaos/processes.js';
import type { Fleet } from '../../src/fleet/index.js';
import type { EventName, EventPayloads } from '../../src/telemetry/channels.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const FLEET_FIXTURE = fileURLToPath(new URL('../fixtures/fleet/handlers.py', import.meta.url));
export const FLEET_FIXTURE_V2 = fileURLToPath(new URL('../fixtures/fleet/handlers_v2.py', import.meta.url));

/** A `pyfleet host` process. */
export interface HostProc {
  id: string;
  pid: number;
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): void;
}

const started = new Set<HostProc>();

/** Runs `pyfleet host` and resolves once it printed its ready line (rejects with its stderr if it exits first). */
export async function startHostProc(url: string, fleet: string, o: { module?: string; workers?: number; args?: string[]; env?: Record<string, string> } = {}): Promise<HostProc> {
  const args = ['--import', 'tsx', 'src/cli/main.ts', 'host', '--module', o.module ?? FLEET_FIXTURE, '--nats', url, '--fleet', fleet, '--workers', String(o.workers ?? 1), '--heartbeat', '250', '--log-level', 'warn', ...(o.args ?? [])];
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...o.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('exit', (code, signal) => r({ code, signal })));
  const id = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`pyfleet host not ready within 30 s\nstdout: ${out}\nstderr: ${err}`)), 30_000);
    const onData = (): void => {
      const m = /pyfleet host (\S+) ready/.exec(out);
      if (m) {
        clearTimeout(t);
        child.stdout!.off('data', onData);
        resolve(m[1]);
      }
    };
    child.stdout!.on('data', onData);
    void exited.then(({ code, signal }) => {
      clearTimeout(t);
      reject(Object.assign(new Error(`pyfleet host exited (${code ?? signal}) before it was ready\nstderr: ${err}`), { stderr: err, code }));
    });
  });
  const h: HostProc = {
    id,
    pid: child.pid!,
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    kill: (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
  started.add(h);
  void exited.then(() => started.delete(h));
  return h;
}

/** SIGKILLs every host a test left running; resolves when they are gone. */
export async function killAllHosts(): Promise<void> {
  const left = [...started];
  for (const h of left) {
    h.kill('SIGCONT');
    h.kill('SIGKILL');
  }
  await Promise.all(left.map((h) => h.exited));
}

/** Worker processes still alive of the given host pids, after a short grace (the kernel may lag a kill). */
export async function orphansOf(hostPids: number[]): Promise<number[]> {
  let found: number[] = [];
  for (let i = 0; i < 30; i++) {
    found = hostPids.flatMap((p) => scanWorkersOf(p)).concat(hostPids.filter((p) => isAlive(p)));
    if (found.length === 0) return [];
    await new Promise((r) => setTimeout(r, 100));
  }
  return found;
}

/** Resolves with the first event `name` of this fleet that matches, or rejects after `timeoutMs`. */
export function nextEvent<K extends EventName>(fleet: Fleet, name: K, match: (p: EventPayloads[K]) => boolean, timeoutMs = 10_000): Promise<EventPayloads[K] & { at: number }> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      off();
      reject(new Error(`no ${name} event within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = fleet.on(name, (p) => {
      if (!match(p)) return;
      clearTimeout(t);
      off();
      resolve({ ...p, at: performance.now() });
    });
  });
}

/** The key every durable host of a test fleet shares. */
export const SESSION_KEY = 'fleet-tests-session-key-0123456789';
/** `pyfleet host` arguments for durable sessions on the fleet's NATS. */
export const DURABLE = ['--session-store', 'nats', '--session-key', SESSION_KEY];

/** The lines of `file` once it has at least `n` (a handler writes them), or rejects after `timeoutMs`. */
export async function linesOf(file: string, n: number, timeoutMs = 10_000): Promise<string[]> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    let got: string[] = [];
    try {
      got = readFileSync(file, 'utf8').split('\n').filter((l) => l !== '');
    } catch {
      // not written yet
    }
    if (got.length >= n) return got;
    if (performance.now() > deadline) throw new Error(`${file}: ${got.length} of ${n} lines after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
