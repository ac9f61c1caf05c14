/**
 * TypeScript from schemas: `pyfleet types` on test/fixtures/typed/handlers.py (real Python).
 * The committed test/fixtures/typed/handlers.d.ts is the reviewed snapshot: `--check` holds it
 * equal to what the generator writes, and the compile-time test imports it.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { declarations } from '../src/typing/declarations.js';
import { describeModule } from '../src/typing/introspect.js';
import type { ModuleSchemas } from '../src/typing/schema.js';
import { typeOf } from '../src/typing/to-typescript.js';
import { cli } from './helpers/cli.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/typed/', import.meta.url));
const MODULE = 'test/fixtures/typed/handlers.py';
const SNAPSHOT = 'test/fixtures/typed/handlers.d.ts';

let mod: ModuleSchemas;
let text: string;
before(async () => {
  mod = await describeModule(`${FIXTURES}handlers.py`);
  text = declarations(mod, { module: 'handlers.py', regenerate: "npx pyfleet types --module handlers.py --out handlers.d.ts (from this file's folder)" });
});

/** The body of `export interface NAME {...}` in the generated text. */
function iface(name: string): string {
  const m = new RegExp(`export interface ${name} \\{\\n([\\s\\S]*?)\\n\\}`).exec(text);
  assert.ok(m, `no interface ${name} in:\n${text}`);
  return m[1];
}

describe('TypeScript from the schemas', () => {
  it('each hint kind becomes its TypeScript type', () => {
    assert.match(iface('AddArgs'), /^ {2}a: number;\n {2}b: number;$/);
    assert.match(iface('SearchArgs'), /query: string;\n {2}mode\?: "fast" \| "slow";\n {2}limit\?: number \| null;\n {2}tags\?: string\[\];/);
    assert.match(iface('Shapes'), /pair: \[number, string\];/);
    assert.match(iface('Shapes'), /many: number\[\];/);
    assert.match(iface('Shapes'), /either: number \| string;/);
    assert.match(iface('Shapes'), /scores: Record<string, number>;/);
    assert.match(iface('Shapes'), /nothing: null;\n {2}flag: boolean;/);
    assert.match(iface('ShapesCommand'), /result: \[number, boolean\];/);
    assert.match(iface('Tree'), /children: Tree\[\];/);
    assert.match(iface('SearchCommand'), /args: SearchArgs;\n {2}result: Hit\[\];/);
  });

  it('binary: Uint8Array (or any typed array for memoryview) going in, Buffer coming out', () => {
    assert.match(iface('Blob'), /data: Uint8Array;\n {2}view: ArrayBufferView;/);
    assert.match(iface('ChecksumCommand'), /result: Buffer;/);
  });

  it('a float is a number, with the note that NaN and ±Infinity travel as null', () => {
    assert.match(iface('Hit'), /\/\*\* float: NaN and ±Infinity travel as null\. \*\/\n {2}score: number;/);
    assert.match(iface('TicksCommand'), /\/\*\* float: NaN and ±Infinity travel as null\. \*\/\n {2}item: number;/);
  });

  it('generators have an item and no result; untyped and unknown hints are unknown', () => {
    assert.match(iface('TokensCommand'), /^ {2}args: Record<string, number>;\n {2}item: string;$/);
    assert.match(iface('UntypedCommand'), /^ {2}args: unknown;\n {2}result: unknown;$/);
    assert.match(iface('Weird'), /odd: unknown;/);
    assert.match(text, /^\/\/ warning: command 'weird': unsupported hint set\[int\] at args \(Weird\.odd\)/m);
  });

  it('docstrings become TSDoc; a dataclass as result (all fields present) gets its own name', () => {
    assert.match(text, /\/\*\*\n \* Searches the index\.\n \*\n \* Scores are floats\.\n \*\/\nexport interface SearchCommand/);
    assert.match(text, /\/\*\* A point on the plane\. \*\/\nexport interface Point \{/);
    assert.match(iface('Point'), /label\?: string \| null;/);
    assert.match(iface('PointResult'), /label: string \| null;/);
    assert.match(iface('LengthCommand'), /args: Path;\n {2}result: PointResult;/);
  });

  it('the Commands map lists every command by its Python name', () => {
    assert.equal(iface('Commands').trim().split('\n').length, Object.keys(mod.commands).length);
    assert.match(iface('Commands'), /count_nodes: CountNodesCommand;/);
  });

  it('typeOf handles what the runtime may send beyond the fixture', () => {
    const ctx = { role: 'result' as const, refName: (n: string) => n };
    assert.equal(typeOf({ type: ['number', 'null'] }, ctx), 'number | null');
    assert.equal(typeOf({ const: 'x' }, ctx), '"x"');
    assert.equal(typeOf({ type: 'array', items: { anyOf: [{ type: 'string' }, { type: 'integer' }] } }, ctx), '(string | number)[]');
    assert.equal(typeOf({ type: 'object' }, ctx), 'Record<string, unknown>');
    assert.equal(typeOf({ type: 'object', properties: { 'not an id': { type: 'string' } }, required: [] }, ctx), '{\n  "not an id"?: string;\n}');
    assert.equal(typeOf({ anyOf: [{ type: 'string' }, {}] }, ctx), 'unknown');
    assert.equal(typeOf(false, ctx), 'never');
  });
});

describe('pyfleet types', () => {
  it('--check passes on the committed file (the reviewed snapshot)', async () => {
    const r = await cli(['types', '--module', MODULE, '--out', SNAPSHOT, '--check']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /is up to date/);
    assert.equal(readFileSync(SNAPSHOT, 'utf8'), text);
  });

  it('--check exits 1 on a stale or missing file, and writes nothing', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pyfleet-types-'));
    copyFileSync(`${FIXTURES}handlers.py`, path.join(dir, 'handlers.py'));
    const out = path.join(dir, 'handlers.d.ts');
    const stale = text.replace('  b: number;\n', '');
    writeFileSync(out, stale);
    const r = await cli(['types', '--module', path.join(dir, 'handlers.py'), '--out', out, '--check']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /handlers\.d\.ts is out of date \(first difference at line \d+\): run pyfleet types --module/);
    assert.equal(readFileSync(out, 'utf8'), stale);
    const missing = await cli(['types', '--module', path.join(dir, 'handlers.py'), '--out', path.join(dir, 'none.d.ts'), '--check']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /none\.d\.ts does not exist/);
  });

  it('writes the file (the same text from any working directory), warns on stderr, and exits 2 on --check without --out', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pyfleet-types-'));
    copyFileSync(`${FIXTURES}handlers.py`, path.join(dir, 'handlers.py'));
    const out = path.join(dir, 'handlers.d.ts');
    const r = await cli(['types', '--module', path.join(dir, 'handlers.py'), '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(out, 'utf8'), readFileSync(SNAPSHOT, 'utf8'));
    assert.match(r.stderr, /warning: command 'weird': unsupported hint set\[int\]/);
    const usage = await cli(['types', '--module', MODULE, '--check']);
    assert.equal(usage.code, 2);
  });
});
