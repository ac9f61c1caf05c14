/** The Python runtime's unit tests (test/fixtures/runtime/test_units.py), run in-process by unittest. */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { PYTHON_DIR, RUNTIME_FIXTURES } from './helpers/raw-worker.js';

it('python3 -m unittest test_units passes', () => {
  const r = spawnSync('python3', ['-m', 'unittest', '-v', 'test_units'], {
    cwd: RUNTIME_FIXTURES,
    env: { ...process.env, PYTHONPATH: PYTHON_DIR },
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stderr, /^OK$/m);
});
