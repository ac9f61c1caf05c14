/**
 * One table of facts per code (src/errors/codes.ts) and what follows from it: refusals are never
 * retried and say `abandon`; a queue timeout fails once; a fleet's options are checked as a
 * pool's are.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { connectFleet } from '../src/fleet/index.js';
import { ERROR_CODES, type ErrorCode } from '../src/errors/codes.js';
import { PoolError } from '../src/errors/pool-error.js';
import { createPool } from '../src/pool/pool.js';
import { statusOf } from '../src/server/http-errors.js';
import type { EventPayloads } from '../src/telemetry/channels.js';
import { FAULTS, quiet, rejection } from './helpers/pool.js';

const REFUSALS: ErrorCode[] = ['PYFLEET_QUEUE_TIMEOUT', 'PYFLEET_QUEUE_FULL', 'PYFLEET_CIRCUIT_OPEN', 'PYFLEET_INVALID_OPTIONS', 'PYFLEET_INVALID_ARGS', 'PYFLEET_UNKNOWN_COMMAND'];

describe('the codes table', () => {
  it('says abandon for every call refused before any attempt, whatever the matrix says of its category', () => {
    for (const code of REFUSALS) {
      assert.equal(ERROR_CODES[code].strategy, 'abandon', code);
      assert.equal(new PoolError({ code, message: 'x' }).strategy, 'abandon', `${code} says abandon from birth`);
    }
    assert.equal(ERROR_CODES.PYFLEET_TIMEOUT.strategy, null, 'a timeout is the matrix\'s to decide');
  });

  it('holds the HTTP status the server answers with', () => {
    for (const code of Object.keys(ERROR_CODES) as ErrorCode[]) assert.equal(statusOf(new PoolError({ code, message: 'x' })), ERROR_CODES[code].httpStatus);
    assert.equal(ERROR_CODES.PYFLEET_INVALID_ARGS.httpStatus, 400);
    assert.equal(ERROR_CODES.PYFLEET_TIMEOUT.httpStatus, 504);
  });
});

describe('a queue timeout', () => {
  it('fails once, within queueTimeoutMs, saying abandon (it is never retried in place)', async () => {
    const pool = await createPool({ module: FAULTS, workers: 1, queueTimeoutMs: 400, logger: quiet });
    const failed: EventPayloads['pool:error'][] = [];
    const off = pool.on('pool:error', (e) => failed.push(e));
    try {
      const busy = pool.execute('sleep', { ms: 4_000 }).catch(() => undefined);
      const t0 = performance.now();
      const e = await rejection(pool.execute('add', { a: 1, b: 2 }));
      const ms = performance.now() - t0;
      assert.equal(e.code, 'PYFLEET_QUEUE_TIMEOUT');
      assert.equal(e.strategy, 'abandon');
      assert.equal(e.attempt, 1);
      assert.ok(ms < 1_500, `failed after ${Math.round(ms)} ms (queueTimeoutMs 400)`);
      assert.deepEqual(failed.filter((f) => f.command === 'add').map((f) => f.code), ['PYFLEET_QUEUE_TIMEOUT']);
      await busy;
    } finally {
      off();
      await pool.close();
    }
  });
});

describe('a fleet\'s options', () => {
  it('are checked before connecting, as a pool\'s are: PYFLEET_INVALID_OPTIONS naming the option', async () => {
    const bad = async (o: unknown, what: RegExp): Promise<void> => {
      const e = await rejection(connectFleet(o as never));
      assert.equal(e.code, 'PYFLEET_INVALID_OPTIONS');
      assert.match(e.message, what);
    };
    await bad({ servers: 'nats://127.0.0.1:1', fleet: 'a.b' }, /fleet must be 1-64 characters/);
    await bad({ servers: 'nats://127.0.0.1:1', fleet: 'f', requestTimeout: 5 }, /requestTimeout is not an option/);
    await bad({ servers: 'nats://127.0.0.1:1', fleet: 'f', heartbeat: { suspect: 1 } }, /heartbeat\.suspect is not an option/);
    await bad({ servers: 'nats://127.0.0.1:1', fleet: 'f', retry: { maxAttempts: 0 } }, /retry\.maxAttempts must be an integer >= 1/);
    await bad({ servers: 'nats://127.0.0.1:1', fleet: 'f', queueTimeoutMs: 'soon' }, /queueTimeoutMs must be a number/);
    await bad({ fleet: 'f' }, /servers is required/);
  });
});
