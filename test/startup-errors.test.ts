/**
 * What a pool says when its workers cannot start (issue 19, items 9 and 10): an interpreter older
 * than 3.11 (checked before anything that needs 3.11 is imported), an import error under a named
 * interpreter, two handlers under one command name, and an @on_start hook that raises. Every
 * case is PYFLEET_INIT_FAILED with a message that says what to do, from real workers.
 *
 * The old interpreters are the real ones this machine has (pyenv's, or python3.10 ... on PATH;
 * PYFLEET_OLD_PYTHON adds one), and always a small script that runs python3 but reports version
 * 3.9.0 (CI has no old Python); the test says which it used.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createPool } from '../src/pool/pool.js';
import type { PoolOptions } from '../src/pool/options.js';
import { FIXTURES, memoryLogger, rejection } from './helpers/pool.js';
import { RUNTIME_FIXTURES } from './helpers/raw-worker.js';

const MODULE = path.join(RUNTIME_FIXTURES, 'handlers.py');
const tmp = mkdtempSync(path.join(tmpdir(), 'pyfleet-startup-'));

/** sys.executable and the version an interpreter reports, or null when it does not run. */
function identify(python: string): { exe: string; version: string } | null {
  const r = spawnSync(python, ['-c', 'import sys; print(sys.executable); print("%d.%d.%d" % tuple(sys.version_info[:3]))'], { encoding: 'utf8' });
  if (r.status !== 0) return null;
  const [exe, version] = r.stdout.trim().split('\n');
  return { exe, version };
}

function oldPythons(): string[] {
  const found: string[] = [];
  const candidates = [process.env.PYFLEET_OLD_PYTHON, '/root/.pyenv/versions/3.10.13/bin/python3.10', '/root/.pyenv/versions/3.9.18/bin/python3.9', '/root/.pyenv/versions/2.7.18/bin/python2.7', 'python3.10', 'python3.9', 'python2.7'];
  for (const py of candidates) {
    if (!py || (py.includes('/') && !existsSync(py))) continue;
    const id = identify(py);
    if (id === null) continue;
    const [major, minor] = id.version.split('.').map(Number);
    if ((major < 3 || minor < 11) && !found.some((f) => identify(f)?.exe === id.exe)) found.push(py);
  }
  return found;
}

/** A Python 3.11+ that reports 3.9.0 (and its own path as sys.executable), for machines without an old one. */
function fakeOldPython(): string {
  const file = path.join(tmp, 'python3.9-fake');
  writeFileSync(
    file,
    `#!/bin/bash
# Runs python3 with sys.version_info and sys.version of 3.9.0, and itself as sys.executable.
code="$2"; shift 2
exec python3 -c 'import sys; sys.version_info = (3, 9, 0, "final", 0); sys.version = "3.9.0 (a fake for tests)"; sys.executable = sys.argv.pop(1); code = sys.argv.pop(1); exec(compile(code, "<string>", "exec"))' "$0" "$code" "$@"
`,
  );
  chmodSync(file, 0o755);
  return file;
}

async function startFailure(options: Partial<PoolOptions>) {
  return rejection(createPool({ module: MODULE, workers: 1, logger: memoryLogger(), ...options } as PoolOptions));
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('start-up: an interpreter older than 3.11', () => {
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('fails with PYFLEET_INIT_FAILED naming the interpreter, its version and the python option', async (t) => {
    const real = oldPythons();
    // The fake runs everywhere (CI has no old Python); the real ones, where this machine has them.
    const pythons = [...real, fakeOldPython()];
    t.diagnostic(real.length ? `real interpreters: ${real.join(', ')}; and a fake that reports 3.9.0` : 'no Python older than 3.11 on this machine: only a fake interpreter that reports 3.9.0');
    for (const python of pythons) {
      const id = identify(python)!;
      const err = await startFailure({ python });
      assert.equal(err.code, 'PYFLEET_INIT_FAILED', err.message);
      assert.equal(err.category, 'initialization_error');
      assert.match(
        err.message,
        new RegExp(`^Worker 1 cannot run ${escape(MODULE)}: pyfleet needs Python 3\\.11 or newer, and ${escape(id.exe)} is Python ${escape(id.version)}: set the pool's \`python\` option \\(or \\$PYFLEET_PYTHON\\) to a Python 3\\.11\\+ interpreter\\.$`),
      );
      assert.deepEqual(err.details, { stage: 'python', python: id.version, executable: id.exe });
    }
  });
});

describe('start-up: the module, its commands and its hooks', () => {
  it('an import error names the interpreter it ran under (and says where a missing module may be)', async () => {
    const id = identify('python3')!;
    const err = await startFailure({ module: path.join(FIXTURES, 'bad_import.py'), python: 'python3' });
    assert.equal(err.code, 'PYFLEET_INIT_FAILED');
    assert.equal(err.python?.type, 'ModuleNotFoundError');
    assert.match(err.message, new RegExp(`^Worker could not load .*bad_import\\.py under ${escape(id.exe)} \\(Python ${escape(id.version)}\\): ModuleNotFoundError: No module named 'a_module_that_does_not_exist_anywhere'\\. Fix the module`));
    assert.match(err.message, /If the module is installed for another interpreter, set the `python` option to that one\.$/);
    assert.equal(err.details?.stage, 'import');
  });

  it('two handlers under one command name are refused at import, naming both definitions', async () => {
    const file = path.join(FIXTURES, 'dup_commands.py');
    const err = await startFailure({ module: file });
    assert.equal(err.code, 'PYFLEET_INIT_FAILED');
    assert.equal(err.python?.type, 'ValueError');
    assert.match(err.message, new RegExp(`ValueError: @command 'predict' is defined twice, at ${escape(file)}:5 and at ${escape(file)}:10: rename one`));
  });

  it('an @on_start hook that raises is reported as such, with its own message and traceback', async () => {
    const file = path.join(RUNTIME_FIXTURES, 'hooks_fail.py');
    const err = await startFailure({ module: file });
    assert.equal(err.code, 'PYFLEET_INIT_FAILED');
    assert.match(err.message, new RegExp(`^The @on_start hook broken \\(${escape(file)}:5\\) of ${escape(file)} raised RuntimeError: on_start failed on purpose \\(worker 1, under .* \\(Python 3\\.\\d+\\.\\d+\\)\\); the worker did not start\\.`));
    assert.doesNotMatch(err.message, /could not load/);
    assert.equal(err.python?.type, 'RuntimeError');
    assert.match(err.python!.traceback, /in broken\n\s+raise RuntimeError\("on_start failed on purpose"\)/);
    assert.equal(err.details?.stage, 'on_start');
  });
});
