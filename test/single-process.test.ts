import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { SingleProcessAdapter } from '../src/index.js';
import { FAULTS, FIXTURES, quiet, rejection, testPool } from './helpers/pool.js';

describe('SingleProcessAdapter', () => {
  it('serves the next call after a timeout: the worker acknowledged the cancel', async () => {
    const a = new SingleProcessAdapter({ module: FAULTS, logger: quiet });
    try {
      const err = await rejection(a.execute('sleep', { ms: 5_000 }, { timeoutMs: 100 }));
      assert.equal(err.code, 'PYFLEET_TIMEOUT');
      assert.equal(await a.execute('add', { a: 1, b: 2 }), 3);
    } finally {
      await a.close();
    }
  });

  it('serves the next call after an abort', async () => {
    const a = new SingleProcessAdapter({ module: FAULTS, logger: quiet });
    try {
      const ac = new AbortController();
      const p = a.execute('sleep', { ms: 5_000 }, { signal: ac.signal });
      setTimeout(() => ac.abort(), 50);
      assert.equal((await rejection(p)).code, 'PYFLEET_ABORTED');
      assert.equal(await a.execute('add', { a: 2, b: 2 }), 4);
    } finally {
      await a.close();
    }
  });

  it('starts a new process after one that ignored its cancel was killed', async () => {
    const a = new SingleProcessAdapter({ module: FAULTS, logger: quiet, cancelGraceMs: 100 });
    try {
      const first = await a.execute('pid', {});
      const err = await rejection(a.execute('answer_after_kill', {}, { timeoutMs: 100 }));
      assert.equal(err.code, 'PYFLEET_TIMEOUT');
      const second = await a.execute('pid', {});
      assert.notEqual(second, first);
    } finally {
      await a.close();
    }
  });

  it('keeps the caller\'s PYTHONPATH, after pyfleet\'s own package', async () => {
    const a = new SingleProcessAdapter({ module: path.join(FIXTURES, 'uses_pythonpath.py'), logger: quiet, env: { PYTHONPATH: path.join(FIXTURES, 'libdir') } });
    try {
      assert.equal(await a.execute('answer', {}), 42);
    } finally {
      await a.close();
    }
  });
});

describe('the pool\'s fallback', () => {
  it('a fallback that never answers fails the call within the call\'s timeout', async () => {
    const pool = await testPool({ fallback: () => new Promise(() => {}) });
    try {
      const t0 = performance.now();
      const err = await rejection(pool.execute('boom', {}, { timeoutMs: 300 }));
      assert.equal(err.code, 'PYFLEET_PYTHON_ERROR');
      assert.equal(err.strategy, 'failover');
      assert.match(err.message, /failed too: it did not answer within 300 ms/);
      assert.ok(performance.now() - t0 < 2_000);
    } finally {
      await pool.close();
    }
  });

  it('the pool\'s workers keep the caller\'s PYTHONPATH too', async () => {
    const pool = await testPool({ module: path.join(FIXTURES, 'uses_pythonpath.py'), env: { PYTHONPATH: path.join(FIXTURES, 'libdir') } });
    try {
      assert.equal(await pool.execute('answer', {}), 42);
    } finally {
      await pool.close();
    }
  });
});
