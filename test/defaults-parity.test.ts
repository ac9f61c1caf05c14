import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { DEFAULTS } from '../src/defaults.js';
import { PYTHON_PACKAGE_DIR } from '../src/worker/env.js';

// The worker's fallbacks (for a worker started by hand) must say what DEFAULTS says.
describe('python/pyfleet/_defaults.py', () => {
  it('holds the same values as src/defaults.ts', () => {
    const out = execFileSync('python3', ['-c', 'import json; from pyfleet import _defaults as d; print(json.dumps({k: getattr(d, k) for k in dir(d) if k.isupper()}))'], {
      env: { ...process.env, PYTHONPATH: PYTHON_PACKAGE_DIR },
      encoding: 'utf8',
    });
    assert.deepEqual(JSON.parse(out), {
      MAX_FRAME: DEFAULTS.maxFrameBytes,
      HEARTBEAT_MS: DEFAULTS.healthCheck.intervalMs,
      CONCURRENCY: DEFAULTS.concurrency,
      MAX_SESSION_BYTES: DEFAULTS.maxSessionBytes,
    });
  });
});

/** The rows of every README table whose header starts `| option |`: option names (backticked) and cells by column. */
function optionTables(md: string): Array<{ options: string[]; cells: Record<string, string> }> {
  const rows: Array<{ options: string[]; cells: Record<string, string> }> = [];
  const lines = md.split('\n');
  const cellsOf = (line: string): string[] => line.trim().replace(/^\||\|$/g, '').split('|').map((c) => c.trim());
  for (let i = 0; i < lines.length; i++) {
    if (!/^\| option \|/.test(lines[i])) continue;
    const header = cellsOf(lines[i]);
    for (i += 2; i < lines.length && lines[i].startsWith('|'); i++) {
      const cells = cellsOf(lines[i]);
      const byColumn = Object.fromEntries(header.map((h, k) => [h, cells[k] ?? '']));
      rows.push({ options: [...byColumn.option.matchAll(/`([^`]+)`/g)].map((m) => m[1]), cells: byColumn });
    }
  }
  return rows;
}

/** A default as the README writes it (`30000`, `'null'`, `false`, `{ intervalMs: 1000, maxMissed: 3 }`) as a value. */
function literal(text: string): unknown {
  const json = text
    .replace(/'([^']*)'/g, '"$1"')
    .replace(/([{,]\s*)([A-Za-z_][A-Za-z0-9_]*)\s*:/g, '$1"$2":');
  return JSON.parse(json);
}

const backticked = (cell: string): string[] => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]);
const { buckets: _buckets, ...budgetDefaults } = DEFAULTS.retryBudget;

describe("README's tables of option defaults", () => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const rows = optionTables(readme);
  const row = (option: string, table: 'createPool' | 'sessions' | 'execute' | 'side by side'): Record<string, string> => {
    const headerOf: Record<typeof table, (cells: Record<string, string>) => boolean> = {
      createPool: (c) => 'meaning' in c && !('applies to' in c),
      sessions: (c) => 'meaning' in c,
      execute: (c) => 'meaning' in c,
      'side by side': (c) => 'applies to' in c,
    };
    const found = rows.filter((r) => r.options.length === 1 && r.options[0] === option && headerOf[table](r.cells));
    assert.ok(found.length > 0, `README has no "| option |" row for ${option}`);
    return found[table === 'sessions' ? found.length - 1 : 0].cells;
  };
  const def = (option: string, table: Parameters<typeof row>[1] = 'createPool'): unknown => literal(backticked(row(option, table).default)[0]);

  it('every scalar default in the createPool table is the one in DEFAULTS', () => {
    const scalars = ['requestTimeoutMs', 'startupTimeoutMs', 'queueTimeoutMs', 'maxQueue', 'idleTimeoutMs', 'sessionTtlMs', 'concurrency', 'pipelineDepth', 'nonFinite', 'validateArgs', 'maxFrameBytes', 'cancelGraceMs'] as const;
    for (const k of scalars) assert.deepEqual(def(k), DEFAULTS[k], `README's ${k}`);
  });

  it('every object default in the createPool table is the one in DEFAULTS', () => {
    for (const k of ['healthCheck', 'recycle', 'restart', 'circuitBreaker', 'poison'] as const) assert.deepEqual(def(k), { ...DEFAULTS[k] }, `README's ${k}`);
    const retry = def('retry') as { maxAttempts: number; budget: unknown };
    assert.deepEqual(retry, { maxAttempts: DEFAULTS.retry.maxAttempts, budget: budgetDefaults });
    // The delays' own defaults are written in the meaning: `baseDelayMs` (1000), `maxDelayMs` (30000).
    const meaning = row('retry', 'createPool').meaning;
    for (const k of ['baseDelayMs', 'maxDelayMs'] as const) {
      const m = new RegExp(`\`${k}\` \\((\\d+)\\)`).exec(meaning);
      assert.ok(m, `README's retry row names ${k} with its default`);
      assert.equal(Number(m[1]), DEFAULTS.retry[k], `README's retry.${k}`);
    }
    assert.match(meaning, new RegExp(`unless \`backoff\``), 'the backoff default comes from the policy');
  });

  it('workers, python and the session options say what DEFAULTS says', () => {
    assert.deepEqual(backticked(row('workers', 'createPool').default), [`{ min: ${DEFAULTS.minWorkers}, max: <CPU count> }`]);
    assert.deepEqual(backticked(row('python', 'createPool').default), ['$PYFLEET_PYTHON', DEFAULTS.python]);
    assert.equal(def('sessionStore', 'sessions'), DEFAULTS.sessionStore);
    assert.equal(def('maxSessionBytes', 'sessions'), DEFAULTS.maxSessionBytes);
    assert.equal(def('snapshotFailure', 'sessions'), DEFAULTS.snapshotFailure);
    // The createPool table's summary row of the three.
    const summary = rows.find((r) => r.options.join() === 'sessionStore,sessionKey,maxSessionBytes');
    assert.ok(summary, 'the createPool table has the sessionStore, sessionKey, maxSessionBytes row');
    assert.equal(literal(backticked(summary.cells.default)[0]), DEFAULTS.sessionStore);
    assert.match(summary.cells.default, new RegExp(`${DEFAULTS.maxSessionBytes / 1048576} MiB`));
    assert.equal(def('concurrency', 'side by side'), DEFAULTS.concurrency);
    assert.equal(def('pipelineDepth', 'side by side'), DEFAULTS.pipelineDepth);
  });

  it('the defaults written in prose: highWaterMark, the recovery time limits and timeout factor, what makes a session large', () => {
    const t = DEFAULTS.recoveryTimeLimits;
    for (const phrase of [
      `\`highWaterMark\` (items the worker may send ahead of the consumer, default ${DEFAULTS.highWaterMark})`,
      `(critical ${t.critical / 1000} s, major ${t.major / 1000} s, minor ${t.minor / 1000} s, halved when a caller waits)`,
      `(x${DEFAULTS.recoveryTimeoutFactor} per attempt`,
      `(\`DEFAULTS.sessionLarge\`: ${DEFAULTS.sessionLarge.bytes / 1048576} MiB, ${DEFAULTS.sessionLarge.pickleMs} ms)`,
    ]) {
      assert.ok(readme.includes(phrase), `README does not say: ${phrase}`);
    }
  });

  it("DEFAULTS.fleet: the defaults docs/fleet.md writes in connectFleet's signature", () => {
    const doc = readFileSync(new URL('../docs/fleet.md', import.meta.url), 'utf8');
    const line = doc.split('\n').find((l) => l.startsWith('- `connectFleet({'));
    assert.ok(line, 'docs/fleet.md gives connectFleet with its defaults');
    const written = Object.fromEntries([...line.matchAll(/(\w+) = (\d+)/g)].map((m) => [m[1], Number(m[2])]));
    const f = DEFAULTS.fleet;
    assert.deepEqual(written, { startupTimeoutMs: f.startupTimeoutMs, requestTimeoutMs: f.requestTimeoutMs, queueTimeoutMs: f.queueTimeoutMs, maxAttempts: f.maxAttempts, suspectAfter: f.heartbeat.suspectAfter, deadAfter: f.heartbeat.deadAfter, sessionMapTtlMs: f.sessionMapTtlMs });
  });

  it('no key of DEFAULTS is left out of the checks above', () => {
    // Each key is compared above; this list fails the test when DEFAULTS gains one the README does not show.
    const checked = ['python', 'minWorkers', 'requestTimeoutMs', 'startupTimeoutMs', 'queueTimeoutMs', 'maxQueue', 'idleTimeoutMs', 'sessionTtlMs', 'pipelineDepth', 'concurrency', 'nonFinite', 'highWaterMark', 'validateArgs', 'maxFrameBytes', 'cancelGraceMs', 'healthCheck', 'recycle', 'restart', 'retry', 'retryBudget', 'circuitBreaker', 'recoveryTimeLimits', 'recoveryTimeoutFactor', 'poison', 'sessionStore', 'maxSessionBytes', 'snapshotFailure', 'sessionLarge', 'fleet'];
    assert.deepEqual(Object.keys(DEFAULTS).sort(), checked.sort());
  });
});
