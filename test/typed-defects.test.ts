/**
 * Three defects of typed commands, from their Python hints (read by the real runtime):
 * generated names that shadow TypeScript's globals, a wrong field inside an Optional[TypedDict]
 * blamed on the union, and a DataView refused where a memoryview is hinted.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { declarations } from '../src/typing/declarations.js';
import { describeModule } from '../src/typing/introspect.js';
import type { ModuleSchemas } from '../src/typing/schema.js';
import { ArgsValidator } from '../src/validate/args-validator.js';
import { ROOT } from './helpers/cli.js';

const HANDLERS = `
from dataclasses import dataclass
from typing import Optional, TypedDict
from pyfleet import command

class Record(TypedDict):          # as TypeScript's Record<K, V>
    data: bytes
    counts: dict[str, int]

@dataclass
class Buffer:                     # as Node's Buffer
    size: int

class StoreCommand(TypedDict):    # as the interface generated for the command "store"
    ok: bool

class Inner(TypedDict):
    val: int

class Outer(TypedDict):
    name: str
    next: Optional[Inner]

@command
def store(args: Record, ctx) -> Buffer:
    return Buffer(len(args["data"]))

@command
def check(args: StoreCommand, ctx) -> bytes:
    return b""

@command
def walk(args: Outer, ctx) -> int:
    return 0

@command
def view(args: memoryview, ctx) -> int:
    return len(args)
`;

const USAGE = `import type { Commands } from './handlers.js';
const args: Commands['store']['args'] = { data: new Uint8Array([1]), counts: { a: 1 } };
const out: Commands['check']['result'] = Buffer.from('x');
const size: number = (null as unknown as Commands['store']['result']).size;
const view: Commands['view']['args'] = new DataView(new ArrayBuffer(2));
export { args, out, size, view };
`;

let dir: string;
let mod: ModuleSchemas;

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'pyfleet-typed-defects-'));
  writeFileSync(path.join(dir, 'handlers.py'), HANDLERS);
  mod = await describeModule(path.join(dir, 'handlers.py'));
});

after(() => rmSync(dir, { recursive: true, force: true }));

function tsc(files: string[]): Promise<{ code: number; out: string }> {
  const flags = ['--noEmit', '--strict', '--target', 'es2022', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--types', 'node', '--typeRoots', path.join(ROOT, 'node_modules/@types'), '--pretty', 'false'];
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), ...flags, ...files], { cwd: dir, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, out: stdout + stderr });
    });
  });
}

describe('typed commands: three defects', () => {
  it('pyfleet types output compiles when Python types are named Record, Buffer or like a generated interface', async () => {
    const text = declarations(mod, { module: 'handlers.py' });
    assert.doesNotMatch(text, /export (interface|type) (Record|Buffer)\b/, text);
    assert.equal(text.match(/export (interface|type) StoreCommand\b/g)?.length, 1, text);
    writeFileSync(path.join(dir, 'handlers.ts'), text);
    writeFileSync(path.join(dir, 'usage.ts'), USAGE);
    writeFileSync(path.join(dir, 'package.json'), '{"type": "module"}\n');
    const r = await tsc(['handlers.ts', 'usage.ts']);
    assert.equal(r.code, 0, `${r.out}\n${text}`);
  });

  it('validateArgs names the wrong field inside an Optional[TypedDict]', () => {
    const v = new ArgsValidator({ schemas: (c) => mod.commands[c]?.args });
    assert.equal(v.check('walk', { name: 'a', next: { val: 'x' } })?.details?.field, 'args.next.val');
    assert.match(v.check('walk', { name: 'a', next: { val: 'x' } })!.message, /args\.next\.val must be an integer \(got "x"\)/);
    assert.match(v.check('walk', { name: 'a', next: {} })!.message, /args\.next is missing required key "val"/);
    assert.match(v.check('walk', { name: 'a', next: 5 })!.message, /args\.next must be an object or null \(got 5\)/);
    assert.equal(v.check('walk', { name: 'a', next: null }), null);
    assert.equal(v.check('walk', { name: 'a', next: { val: 1 } }), null);
  });

  it('validateArgs accepts a DataView (and any typed array) for a memoryview hint, nothing else', () => {
    const v = new ArgsValidator({ schemas: (c) => mod.commands[c]?.args });
    assert.equal(v.check('view', new DataView(new ArrayBuffer(4))), null);
    assert.equal(v.check('view', new Float64Array(2)), null);
    assert.equal(v.check('view', Buffer.from('ab')), null);
    assert.match(v.check('view', [1, 2])!.message, /args must be binary data \(a Buffer, a typed array or a DataView\)/);
  });
});
