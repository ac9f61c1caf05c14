/**
 * validateArgs: args checked against the schemas that real Python derived from
 * test/fixtures/typed/handlers.py, refused with PYFLEET_INVALID_ARGS naming the field.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { PoolError } from '../src/errors/pool-error.js';
import { describeModule } from '../src/typing/introspect.js';
import type { ModuleSchemas } from '../src/typing/schema.js';
import { ArgsValidator } from '../src/validate/args-validator.js';

const HANDLERS = fileURLToPath(new URL('./fixtures/typed/handlers.py', import.meta.url));

let mod: ModuleSchemas;
before(async () => {
  mod = await describeModule(HANDLERS);
});

function validator(mode: 'pool' | 'http' = 'pool'): ArgsValidator {
  return new ArgsValidator({ schemas: (c) => mod.commands[c]?.args, mode });
}

function refused(v: ArgsValidator, command: string, args: unknown): PoolError {
  const e = v.check(command, args);
  assert.ok(e instanceof PoolError, `expected ${JSON.stringify(args)} to be refused for ${command}`);
  assert.equal(e.code, 'PYFLEET_INVALID_ARGS');
  assert.equal(e.category, 'communication_error');
  assert.equal(e.retryable, false);
  assert.equal(e.command, command);
  return e;
}

describe('validateArgs (Ajv against the schemas from the Python hints)', () => {
  it('accepts args that fit, and checks nothing for a command without hints', () => {
    const v = validator();
    assert.equal(v.check('add', { a: 1, b: 2 }), null);
    assert.equal(v.check('search', { query: 'q', mode: 'slow', limit: null, tags: ['x'] }), null);
    assert.equal(v.check('length', { points: [{ x: 1, y: 2.5, label: null }], closed: true }), null);
    assert.equal(v.check('untyped', { anything: [1, 'two'] }), null);
    assert.equal(v.check('no_such_command', 42), null);
  });

  it('refuses a value outside a Literal, naming the field, the allowed values and the value given', () => {
    const e = refused(validator(), 'search', { query: 'q', mode: 'quick' });
    assert.equal(e.message, 'Invalid arguments for "search": args.mode must be one of "fast", "slow" (got "quick"). Nothing was sent to a worker.');
    assert.deepEqual(e.details, { field: 'args.mode', expected: 'one of "fast", "slow"', keyword: 'enum' });
  });

  it('refuses a missing required key by name', () => {
    const e = refused(validator(), 'add', { a: 1 });
    assert.match(e.message, /args is missing required key "b"/);
    assert.equal(e.details?.field, 'args.b');
  });

  it('refuses a misspelt key, and suggests the one it was probably meant to be', () => {
    const e = refused(validator(), 'search', { query: 'q', mod: 'fast' });
    assert.match(e.message, /args has an unexpected key "mod"; did you mean "mode"\? \(its keys: "query", "mode", "limit", "tags"\)/);
  });

  it('names nested fields, through dataclasses, lists, unions and recursive types', () => {
    const v = validator();
    assert.match(refused(v, 'length', { points: [{ x: 1, y: 2 }, { x: 1 }] }).message, /args\.points\[1\] is missing required key "y"/);
    assert.match(refused(v, 'search', { query: 'q', limit: '5' }).message, /args\.limit must be an integer or null \(got "5"\)/);
    assert.match(refused(v, 'count_nodes', { name: 'a', children: [{ name: 'b', children: [{ name: 1, children: [] }] }] }).message, /args\.children\[0\]\.children\[0\]\.name must be a string \(got 1\)/);
    assert.match(refused(v, 'shapes', { pair: [1, 'a', 'b'], many: [], either: 1, scores: {}, nothing: null, flag: true }).message, /args\.pair must have at most 2 items/);
    assert.match(refused(v, 'shapes', { pair: [1, 'a'], many: [], either: true, scores: {}, nothing: null, flag: true }).message, /args\.either must be an integer or a string \(got true\)/);
    assert.match(refused(v, 'search', 'q').message, /args must be an object \(got "q"\)/);
  });

  it('refuses NaN where a float is expected (it would reach Python as None)', () => {
    assert.match(refused(validator(), 'length', { points: [{ x: Number.NaN, y: 0 }] }).message, /args\.points\[0\]\.x must be a number \(got NaN\)/);
  });

  it('binary values: Buffers / typed arrays in the pool; base64 strings over HTTP, decoded to Buffers', () => {
    const pool = validator('pool');
    assert.equal(pool.check('checksum', { data: Buffer.from('abc'), view: new Float64Array(2) }), null);
    assert.match(refused(pool, 'checksum', { data: 'YWJj', view: new Uint8Array(1) }).message, /args\.data must be binary data \(a Buffer or Uint8Array\) \(got "YWJj"\)/);

    const http = validator('http');
    const holder = { args: { data: 'YWJj', view: 'AAAAAAAA8D8=' } as unknown };
    assert.equal(http.problem('checksum', holder.args, holder), null);
    const args = holder.args as { data: Buffer; view: Buffer };
    assert.ok(Buffer.isBuffer(args.data));
    assert.equal(args.data.toString(), 'abc');
    assert.equal(args.view.readDoubleLE(0), 1);
    assert.match(http.problem('checksum', { data: 'not base64!', view: '' })?.message ?? '', /args\.data must be binary data as a base64 string/);
  });

  it('compiles each command once, on its first call', () => {
    const v = validator();
    assert.equal(v.compilations, 0);
    for (let i = 0; i < 100; i++) v.check('add', { a: i, b: i });
    v.check('search', { query: 'q' });
    v.check('untyped', {});
    assert.equal(v.compilations, 2);
  });
});

describe('typed commands through a real pool', () => {
  it('the hello carries the schemas; validateArgs refuses a wrong enum value and a missing key by name, without touching a worker', async () => {
    const { createPool } = await import('../src/index.js');
    const { FIXTURES, quiet, rejection } = await import('./helpers/pool.js');
    const pool = await createPool({ module: `${FIXTURES}typed/handlers.py`, workers: 1, logger: quiet, validateArgs: true });
    try {
      assert.ok(pool.registeredCommands.search.args, 'schemas in the hello');
      const before = pool.stats().workers[0].requests;
      const wrongEnum = await rejection(pool.execute('search', { query: 'q', mode: 'quick' }));
      assert.equal(wrongEnum.code, 'PYFLEET_INVALID_ARGS');
      assert.match(wrongEnum.message, /args\.mode/);
      const missing = await rejection(pool.execute('add', { a: 1 }));
      assert.match(missing.message, /missing required key "b"/);
      assert.equal(pool.stats().workers[0].requests, before, 'nothing reached a worker');
      assert.equal(await pool.execute('add', { a: 1, b: 2 }), 3);
    } finally {
      await pool.close();
    }
  });

  it('a parameter hinted as a dataclass receives an instance; a dataclass result comes back as an object; a mismatch names the field', async () => {
    const { createPool } = await import('../src/index.js');
    const { FIXTURES, quiet, rejection } = await import('./helpers/pool.js');
    const pool = await createPool({ module: `${FIXTURES}typed/handlers.py`, workers: 1, logger: quiet });
    try {
      assert.deepEqual(await pool.execute('length', { points: [{ x: 1, y: 2 }, { x: 3, y: 4 }] }), { x: 4, y: 6, label: null });
      const e = await rejection(pool.execute('length', { points: [{ x: 1, y: 2 }, { x: 'three', y: 4 }] }));
      assert.equal(e.code, 'PYFLEET_PYTHON_ERROR');
      assert.match(e.message, /points\[1\]\.x/);
    } finally {
      await pool.close();
    }
  });
});
