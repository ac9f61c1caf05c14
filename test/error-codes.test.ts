/**
 * The codes table (src/errors/codes.ts) says what the README's table of codes says, and its two
 * other facts are the ones the README describes in words: which failures count on the
 * pool_operations circuit (infrastructure), and which are logged at debug (quiet).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ERROR_CATEGORIES } from '../src/errors/categories.js';
import { ERROR_CODES, HTTP_ERROR_CODES, type ErrorCode } from '../src/errors/codes.js';
import { PoolError } from '../src/errors/pool-error.js';

const README = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

/** The rows of the README's `| code | category | retryable | when |` table. */
function readmeCodes(): Array<{ code: string; category: string; retryable: boolean }> {
  const lines = README.split('\n');
  const start = lines.findIndex((l) => /^\| code \| category \| retryable \| when \|/.test(l));
  assert.ok(start >= 0, 'README has the table of codes');
  const rows: Array<{ code: string; category: string; retryable: boolean }> = [];
  for (let i = start + 2; i < lines.length && lines[i].startsWith('|'); i++) {
    const [code, category, retryable] = lines[i].split('|').slice(1, 4).map((c) => c.trim());
    assert.match(retryable, /^(yes|no)$/, lines[i]);
    rows.push({ code: code.replace(/`/g, ''), category, retryable: retryable === 'yes' });
  }
  return rows;
}

/** Deaths of workers, failed starts, a corrupt protocol (README, "Circuit breakers"). */
const INFRASTRUCTURE: ErrorCode[] = ['PYFLEET_SPAWN_FAILED', 'PYFLEET_INIT_FAILED', 'PYFLEET_STARTUP_TIMEOUT', 'PYFLEET_WORKER_CRASHED', 'PYFLEET_PROTOCOL_ERROR', 'PYFLEET_HEALTH_CHECK_FAILED', 'PYFLEET_STREAM_BROKEN'];
/** The caller's own input, the user's Python exceptions and fast refusals (README, "Structured logs"). */
const QUIET: ErrorCode[] = ['PYFLEET_INVALID_ARGS', 'PYFLEET_FRAME_TOO_LARGE', 'PYFLEET_QUEUE_FULL', 'PYFLEET_POOL_CLOSED', 'PYFLEET_CIRCUIT_OPEN', 'PYFLEET_PYTHON_ERROR', 'PYFLEET_UNKNOWN_COMMAND', 'PYFLEET_ABORTED'];

describe('the codes table', () => {
  it("has the README's codes, each with the README's category and retryable", () => {
    const rows = readmeCodes();
    assert.deepEqual(rows.map((r) => r.code).sort(), Object.keys(ERROR_CODES).sort(), 'the same codes');
    for (const r of rows) {
      const facts = ERROR_CODES[r.code as ErrorCode];
      assert.deepEqual({ code: r.code, category: facts.category, retryable: facts.retryable }, r);
    }
  });

  it('infrastructure: the failures of the workers themselves, and only those', () => {
    const got = Object.entries(ERROR_CODES).filter(([, f]) => f.infrastructure).map(([c]) => c);
    assert.deepEqual(got.sort(), [...INFRASTRUCTURE].sort());
  });

  it('quiet: what reaches its caller anyway at call rate, and only that', () => {
    const got = Object.entries(ERROR_CODES).filter(([, f]) => f.quiet).map(([c]) => c);
    assert.deepEqual(got.sort(), [...QUIET].sort());
  });

  it('every row is frozen, has the four facts, and a known category', () => {
    assert.ok(Object.isFrozen(ERROR_CODES));
    for (const [code, f] of Object.entries(ERROR_CODES)) {
      assert.ok(Object.isFrozen(f), code);
      assert.ok((ERROR_CATEGORIES as readonly string[]).includes(f.category), code);
      for (const k of ['retryable', 'infrastructure', 'quiet'] as const) assert.equal(typeof f[k], 'boolean', `${code}.${k}`);
    }
  });

  it('a PoolError takes its category and retryable from its code', () => {
    for (const [code, f] of Object.entries(ERROR_CODES)) {
      const e = new PoolError({ code: code as ErrorCode, message: 'x' });
      assert.deepEqual([e.category, e.retryable], [f.category, f.retryable], code);
    }
  });
});

describe("the HTTP server's own codes", () => {
  it("are those of the README's status table, each at its status (PYFLEET_HTTP_ERROR at the request's own)", () => {
    const rows = README.split('\n').filter((l) => /^\| [\d, ]+ \| /.test(l));
    const statusOf = (code: string): string => {
      const row = rows.find((l) => l.includes(`\`${code}\``));
      assert.ok(row, `README's status table names ${code}`);
      return row.split('|')[1].trim();
    };
    // Every code the table names that is not a PoolError's is one of the server's own, and none is missing.
    const named = [...new Set(rows.flatMap((l) => [...l.matchAll(/`(PYFLEET_[A-Z_]+)`/g)].map((m) => m[1])))];
    assert.deepEqual(named.filter((c) => !(c in ERROR_CODES)).sort(), Object.keys(HTTP_ERROR_CODES).sort());
    assert.ok(Object.keys(HTTP_ERROR_CODES).every((c) => !(c in ERROR_CODES)), 'none of them is a PoolError code');
    for (const [code, status] of Object.entries(HTTP_ERROR_CODES)) {
      if (status === null) assert.match(statusOf(code), /^\d+(, \d+)+$/, `${code}: several statuses`);
      else assert.equal(statusOf(code), String(status), code);
    }
    assert.ok(Object.isFrozen(HTTP_ERROR_CODES));
  });
});
