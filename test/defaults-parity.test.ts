import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
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
