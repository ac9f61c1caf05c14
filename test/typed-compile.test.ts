/**
 * Typed pools at compile time: test/fixtures/typed/usage.ts uses createPool<Commands>() with the
 * Commands map generated from test/fixtures/typed/handlers.py. It must compile as it is, and
 * each of its `@ts-expect-error` lines must be an error: compiled without the directives, tsc
 * reports an error on exactly the lines that follow them.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIXTURE = path.join(ROOT, 'test/fixtures/typed/usage.ts');
const TSC = path.join(ROOT, 'node_modules/typescript/bin/tsc');

function tsc(file: string): Promise<{ code: number; out: string }> {
  const flags = ['--noEmit', '--strict', '--target', 'es2022', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--skipLibCheck', '--types', 'node', '--typeRoots', path.join(ROOT, 'node_modules/@types'), '--pretty', 'false'];
  return new Promise((resolve) => {
    execFile(process.execPath, [TSC, ...flags, file], { cwd: ROOT, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, out: stdout + stderr });
    });
  });
}

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('typed pools at compile time (tsc --noEmit)', () => {
  it('compiles the typed usage, whose every @ts-expect-error is a real error', async () => {
    const r = await tsc(FIXTURE);
    assert.equal(r.code, 0, r.out);
  });

  it('without the directives, tsc reports exactly the lines they guarded (wrong arg name, missing key, wrong enum, unknown command, ...)', async () => {
    const source = readFileSync(FIXTURE, 'utf8');
    const lines = source.split('\n');
    const guarded: number[] = [];
    const stripped = lines.map((line, i) => {
      if (!line.trim().startsWith('// @ts-expect-error')) return line;
      guarded.push(i + 2); // 1-based number of the next line
      return '';
    });
    assert.ok(guarded.length >= 10, `expected the fixture to guard at least 10 lines, found ${guarded.length}`);
    const dir = mkdtempSync(path.join(tmpdir(), 'pyfleet-typed-'));
    dirs.push(dir);
    writeFileSync(path.join(dir, 'package.json'), '{"type": "module"}\n');
    const absolute = (rel: string) => path.join(ROOT, 'test/fixtures/typed', rel).split(path.sep).join('/');
    const text = stripped.join('\n').replace(/from '(\.[^']+)'/g, (_m, rel: string) => `from '${absolute(rel)}'`);
    const file = path.join(dir, 'usage.ts');
    writeFileSync(file, text);
    const r = await tsc(file);
    assert.notEqual(r.code, 0, 'the stripped file compiled: the directives guard nothing');
    const errorLines = new Set([...r.out.matchAll(/usage\.ts\((\d+),\d+\): error TS\d+/g)].map((m) => Number(m[1])));
    assert.deepEqual([...errorLines].sort((a, b) => a - b), guarded, r.out);
    // The misspelt key is named in the error, as the issue asks.
    assert.match(r.out, /'bb' does not exist in type/);
    assert.match(r.out, /"quick"/);
  });
});
