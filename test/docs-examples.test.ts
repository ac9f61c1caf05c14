/**
 * The user docs' examples run: every ```ts run block of docs/workloads.md and
 * docs/durable-sessions.md is written to a file, its `pyfleet` imports pointed at src/, and run
 * with tsx from the package root against real Python workers; it must exit 0, and print what the
 * ```text block after it (before any other block) shows.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { ROOT } from './helpers/cli.js';

const DOCS = ['docs/workloads.md', 'docs/durable-sessions.md'];

interface Example {
  line: number;
  code: string;
  expected: string | null;
}

/** The run blocks of a markdown file, each with the text block that follows it, if any. */
function examples(markdown: string): Example[] {
  const out: Example[] = [];
  const lines = markdown.split('\n');
  let current: Example | null = null;
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)(.*)$/.exec(lines[i]);
    if (open === null || open[1] === '') continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && lines[i] !== '```'; i++) body.push(lines[i]);
    const text = body.join('\n');
    if (open[1] === 'ts' && /\brun\b/.test(open[2])) {
      current = { line: start + 1, code: text, expected: null };
      out.push(current);
    } else if (open[1] === 'text' && current !== null && current.expected === null) {
      current.expected = text;
      current = null;
    } else current = null;
  }
  return out;
}

// Inside the package (under node_modules/.cache), so that its dependencies (prom-client) resolve.
const DIR = path.join(ROOT, 'node_modules', '.cache');
mkdirSync(DIR, { recursive: true });
const work = mkdtempSync(path.join(DIR, 'pyfleet-docs-'));
after(() => rmSync(work, { recursive: true, force: true }));

const ENTRY: Record<string, string> = {
  pyfleet: 'src/index.ts',
  'pyfleet/telemetry': 'src/telemetry/index.ts',
  'pyfleet/server': 'src/server/index.ts',
};

function run(file: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', file], { cwd: ROOT, env: { ...process.env, PYFLEET_LOG_LEVEL: 'silent' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${file} did not finish within 60 s\n${stdout}\n${stderr}`));
    }, 60_000);
    child.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

const tidy = (s: string): string =>
  s
    .split('\n')
    .map((l) => l.trimEnd())
    .join('\n')
    .trim();

for (const doc of DOCS) {
  describe(`${doc}: its examples run`, () => {
    const found = examples(readFileSync(path.join(ROOT, doc), 'utf8'));
    it('has examples to run', () => assert.ok(found.length >= 3, `${found.length} run blocks`));
    for (const ex of found) {
      it(`the example at line ${ex.line}`, async () => {
        const code = ex.code.replace(/from '(pyfleet(?:\/\w+)?)'/g, (m, name: string) => {
          const entry = ENTRY[name];
          assert.ok(entry !== undefined, `unknown import ${name}`);
          return `from '${path.join(ROOT, entry)}'`;
        });
        const file = path.join(work, `${path.basename(doc, '.md')}-${ex.line}.mts`);
        writeFileSync(file, code);
        const r = await run(file);
        assert.equal(r.code, 0, `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
        if (ex.expected !== null) assert.equal(tidy(r.stdout), tidy(ex.expected), `stderr:\n${r.stderr}`);
      });
    }
  });
}
