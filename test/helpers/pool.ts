import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PoolError } from '../../src/errors/pool-error.js';
import { createPool, type Pool } from '../../src/pool/pool.js';
import type { PoolOptions } from '../../src/pool/options.js';
import type { Logger } from '../../src/util/logger.js';
import type { EventName, EventPayloads } from '../../src/telemetry/channels.js';

export const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
export const FAULTS = path.join(FIXTURES, 'faults.py');
export const EXAMPLES = fileURLToPath(new URL('../../examples/handlers.py', import.meta.url));

export interface LogEntry {
  level: string;
  obj: Record<string, unknown>;
  msg: string;
}

/** A pino-compatible logger that keeps what it is given, for assertions. */
export function memoryLogger(): Logger & { entries: LogEntry[] } {
  const entries: LogEntry[] = [];
  const at = (level: string) => (obj: object, msg?: string) => {
    entries.push({ level, obj: obj as Record<string, unknown>, msg: msg ?? '' });
  };
  return { entries, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** A logger that drops everything. */
export const quiet: Logger = { info() {}, warn() {}, error() {}, debug() {} };

/** Fast retry delays so tests exercise the policy without waiting seconds between attempts. */
export const FAST_POLICY: PoolOptions['policy'] = {
  connection_error: { delays: [10, 20, 40] },
  communication_error: { delays: [0, 10, 20] },
  timeout_error: { delays: [10, 20] },
  health_check_error: { delays: [10, 20, 40] },
};

export async function testPool(options: Partial<PoolOptions> = {}): Promise<Pool & { logs: LogEntry[] }> {
  const logger = memoryLogger();
  const pool = await createPool({ module: FAULTS, workers: 1, logger, policy: FAST_POLICY, ...options });
  return Object.assign(pool, { logs: logger.entries });
}

export function tempFile(name: string): string {
  return path.join(mkdtempSync(path.join(tmpdir(), 'pyfleet-test-')), name);
}

export function lines(file: string): string[] {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie still answers kill(0); it is dead for our purposes.
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

/** Polls `pred` (for things no event announces, such as another process's death). */
export async function until(pred: () => boolean, timeoutMs = 10_000, stepMs = 10): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** The PoolError `p` rejects with; fails the test if it resolves or rejects with anything else. */
export async function rejection(p: Promise<unknown>): Promise<PoolError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof PoolError, `expected a PoolError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected the call to reject');
}

/** Resolves with the first event `name` of `pool` that matches (and when it came), or rejects after `timeoutMs`. */
export function nextPoolEvent<K extends EventName>(pool: Pool, name: K, match: (p: EventPayloads[K]) => boolean = () => true, timeoutMs = 15_000): Promise<EventPayloads[K] & { at: number }> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      off();
      reject(new Error(`no ${name} event within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = pool.on(name, (p) => {
      if (!match(p)) return;
      clearTimeout(t);
      off();
      resolve({ ...p, at: performance.now() });
    });
  });
}
