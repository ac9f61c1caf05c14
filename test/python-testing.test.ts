/**
 * The README's pytest example ("Testing handlers in Python"), run as written next to the
 * quickstart's handlers.py, with PYTHONPATH from `pyfleet python-path`, under Debian's own
 * /usr/bin/python3 with python3-pytest (skipped, saying why, where that is absent).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { cli, ROOT } from './helpers/cli.js';

const PYTHON = '/usr/bin/python3';

function pytestMissing(): string | null {
  const r = spawnSync(PYTHON, ['-c', 'import pytest'], { encoding: 'utf8' });
  if (r.error !== undefined) return `${PYTHON} cannot run (${r.error.message})`;
  return r.status === 0 ? null : `${PYTHON} has no pytest (apt-get install -y python3-pytest)`;
}

/** The first code block of `lang` after `heading` whose first line is `first`. */
function block(readme: string, heading: string, first: string): string {
  const from = readme.indexOf(heading);
  assert.ok(from >= 0, heading);
  const m = [...readme.slice(from).matchAll(/```\w+\n([\s\S]*?)```/g)].find((b) => b[1].startsWith(first));
  assert.ok(m, `${first} under ${heading}`);
  return m[1];
}

const missing = pytestMissing();
if (missing !== null) process.stdout.write(`# skipped: ${missing}\n`);

test("the README's pytest example passes with pyfleet.testing (a real ctx: session, request id, deadline, cancellation)", { skip: missing ?? false }, async () => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const dir = mkdtempSync(path.join(tmpdir(), 'pyfleet-pytest-'));
  try {
    writeFileSync(path.join(dir, 'handlers.py'), block(readme, '## Quickstart', '# handlers.py'));
    writeFileSync(path.join(dir, 'test_handlers.py'), block(readme, '### Testing handlers in Python', '# test_handlers.py'));
    const where = await cli(['python-path']);
    assert.equal(where.code, 0, where.stderr);
    const out = execFileSync(PYTHON, ['-m', 'pytest', '-q', '-p', 'no:cacheprovider', 'test_handlers.py'], { cwd: dir, encoding: 'utf8', env: { ...process.env, PYTHONPATH: where.stdout.trim() } });
    assert.match(out, /\b3 passed\b/, out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
