/**
 * Schemas from hints: real Python (`python -m pyfleet._schema`) on test/fixtures/typed/, one
 * assertion per hint kind; hints it cannot use become open schemas with a warning; the
 * dataclass converter builds instances and names the field of a mismatch.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { describeModule } from '../src/typing/introspect.js';
import type { JsonSchemaObject, ModuleSchemas } from '../src/typing/schema.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/typed/', import.meta.url));
const PYTHON_DIR = fileURLToPath(new URL('../python', import.meta.url));

let mod: ModuleSchemas;
before(async () => {
  mod = await describeModule(`${FIXTURES}handlers.py`);
});

/** The properties of the named def in a command's args schema. */
function props(command: string): Record<string, unknown> {
  const s = mod.commands[command].args as JsonSchemaObject;
  const name = (s.$ref as string).split('/').pop() as string;
  return (s.$defs?.[name] as JsonSchemaObject).properties as Record<string, unknown>;
}

describe('schemas from Python type hints', () => {
  it('TypedDict: a closed object in $defs; total=False with Required, NotRequired', () => {
    const add = mod.commands.add;
    assert.deepEqual(add.args, {
      $ref: '#/$defs/AddArgs',
      $defs: { AddArgs: { type: 'object', properties: { a: { type: 'integer' }, b: { type: 'integer' } }, required: ['a', 'b'], additionalProperties: false } },
    });
    assert.deepEqual(add.result, { type: 'integer' });
    assert.equal(add.item, null);
    assert.equal(add.doc, 'Adds two integers.');
    assert.equal(add.idempotent, true);
    const search = (mod.commands.search.args as JsonSchemaObject).$defs?.SearchArgs as JsonSchemaObject;
    assert.deepEqual(search.required, ['query']);
    const hit = (mod.commands.search.result as JsonSchemaObject).$defs?.Hit as JsonSchemaObject;
    assert.deepEqual(hit.required, ['id', 'score']);
  });

  it('Literal, Optional / X | None, list[...], float, bool, None, Union, dict[str, ...], tuple', () => {
    const s = props('search');
    assert.deepEqual(s.mode, { enum: ['fast', 'slow'] });
    assert.deepEqual(s.limit, { anyOf: [{ type: 'integer' }, { type: 'null' }] });
    assert.deepEqual(s.tags, { type: 'array', items: { type: 'string' } });
    const result = mod.commands.search.result as JsonSchemaObject;
    assert.deepEqual(result.items, { $ref: '#/$defs/Hit' });
    assert.deepEqual((result.$defs?.Hit as JsonSchemaObject).properties?.score, { type: 'number' });
    const x = props('shapes');
    assert.deepEqual(x.pair, { type: 'array', prefixItems: [{ type: 'integer' }, { type: 'string' }], minItems: 2, items: false });
    assert.deepEqual(x.many, { type: 'array', items: { type: 'number' } });
    assert.deepEqual(x.either, { anyOf: [{ type: 'integer' }, { type: 'string' }] });
    assert.deepEqual(x.scores, { type: 'object', additionalProperties: { type: 'number' } });
    assert.deepEqual(x.nothing, { type: 'null' });
    assert.deepEqual(x.flag, { type: 'boolean' });
    assert.deepEqual(mod.commands.shapes.result, { type: 'array', prefixItems: [{ type: 'integer' }, { type: 'boolean' }], minItems: 2, items: false });
  });

  it('dataclasses: defaults make args fields optional; as a result every field is present', () => {
    const args = mod.commands.length.args as JsonSchemaObject;
    assert.deepEqual((args.$defs?.Path as JsonSchemaObject).required, ['points']);
    assert.deepEqual((args.$defs?.Point as JsonSchemaObject).required, ['x', 'y']);
    assert.equal((args.$defs?.Point as JsonSchemaObject).description, 'A point on the plane.');
    const result = mod.commands.length.result as JsonSchemaObject;
    assert.deepEqual((result.$defs?.Point as JsonSchemaObject).required, ['x', 'y', 'label']);
  });

  it('a recursive TypedDict refers to itself through $defs', () => {
    assert.deepEqual(mod.commands.count_nodes.args, {
      $ref: '#/$defs/Tree',
      $defs: {
        Tree: {
          type: 'object',
          properties: { name: { type: 'string' }, children: { type: 'array', items: { $ref: '#/$defs/Tree' } } },
          required: ['name', 'children'],
          additionalProperties: false,
          description: 'A recursive tree.',
        },
      },
    });
  });

  it('bytes and memoryview are marked binary', () => {
    assert.deepEqual(props('checksum'), { data: { 'x-pyfleet-binary': 'bytes' }, view: { 'x-pyfleet-binary': 'buffer' } });
    assert.deepEqual(mod.commands.checksum.result, { 'x-pyfleet-binary': 'bytes' });
  });

  it('generators (def and async def) have an item schema and no result', () => {
    assert.deepEqual(mod.commands.tokens, { args: { type: 'object', additionalProperties: { type: 'integer' } }, result: null, item: { type: 'string' }, doc: 'Streams tokens.', idempotent: true });
    assert.equal(mod.commands.ticks.result, null);
    assert.deepEqual(mod.commands.ticks.item, { type: 'number' });
  });

  it('a command without hints is open; an unknown hint is open too, with a warning naming command, place and hint', () => {
    assert.deepEqual(mod.commands.untyped, { args: {}, result: {}, item: null, doc: null, idempotent: false });
    assert.deepEqual(props('weird').odd, {});
    assert.deepEqual(props('weird').ok, { type: 'integer' });
    assert.deepEqual(mod.commands.weird.result, {});
    assert.deepEqual(mod.warnings, [
      "command 'weird': unsupported hint set[int] at args (Weird.odd); its schema is left open",
      "command 'weird': unsupported hint frozenset[str] at result; its schema is left open",
    ]);
  });

  it('unresolvable forward references, non-string dict keys, enums, callables and a bad generator hint never fail', async () => {
    const broken = await describeModule(`${FIXTURES}broken_hints.py`);
    assert.deepEqual(Object.keys(broken.commands), ['fine', 'gen', 'odd', 'unresolved']);
    assert.deepEqual(broken.commands.unresolved.args, {});
    assert.deepEqual(broken.commands.gen.item, {});
    assert.deepEqual(broken.commands.fine.result, { type: 'null' });
    const text = broken.warnings.join('\n');
    for (const part of [/'unresolved': parameter args: hint NoSuchType cannot be resolved/, /'unresolved': result: hint AlsoMissing/, /dict\[int, str\] at args \(Odd\.by_id\).*keys are strings/, /hint Color at args \(Odd\.color\)/, /Callable\[\[int\], int\] at result/, /'gen': item: .*got list\[int\]/]) {
      assert.match(text, part);
    }
  });

  it('arg_converter builds nested dataclasses and names the field of a mismatch', async () => {
    const out = await new Promise<string>((resolve, reject) => {
      execFile('python3', [`${FIXTURES}convert.py`], { env: { ...process.env, PYTHONPATH: PYTHON_DIR } }, (err, stdout, stderr) => (err ? reject(new Error(stderr)) : resolve(stdout)));
    });
    const rows = out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, string | null>);
    assert.deepEqual(rows[0], { command: 'length', ok: "Path(points=[Point(x=1, y=2.5, label=None), Point(x=0, y=0, label='origin')], closed=True, tags=[])", result: 'Point(x=1, y=2.5, label=None)' });
    assert.deepEqual(rows[1], { command: 'length', error: 'TypeError', message: "args.points[1].x: expected a number, got 'a' (str)" });
    assert.deepEqual(rows[2], { command: 'length', error: 'ValueError', message: "args.points[0]: missing required field 'y' of Point" });
    assert.deepEqual(rows[3], { command: 'length', error: 'ValueError', message: "args: unexpected field 'colour' for Path (its fields: closed, points, tags)" });
    assert.deepEqual(rows[4], { command: 'length', error: 'TypeError', message: "args.points: expected a list, got 'none' (str)" });
    // No dataclass in the hint: no converter, the runtime passes the args as they are.
    assert.deepEqual(rows[5], { command: 'add', converter: null });
  });
});
