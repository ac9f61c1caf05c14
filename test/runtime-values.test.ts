/**
 * Values both ways through a real worker: NaN, results JSON cannot carry (each refusal names
 * the value, its path and why), dataclasses, tuples, numbers.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ArgsError } from '../src/protocol/args.js';
import { RawWorker, RUNTIME_FIXTURES } from './helpers/raw-worker.js';

const HANDLERS = `${RUNTIME_FIXTURES}handlers.py`;

describe('runtime: values', () => {
  let w: RawWorker;
  before(async () => {
    w = await RawWorker.start({ module: HANDLERS });
  });
  after(async () => {
    assert.deepEqual(w.invalid, []);
    w.kill();
    await w.exited;
  });

  it('NaN and +-Infinity are null both ways', async () => {
    assert.deepEqual(await w.value('values', { kind: 'nan' }), { a: null, b: [1, null, null], c: 2.5 });
    assert.deepEqual(await w.value('echo', { x: NaN, y: [Infinity, -Infinity, 1] }), { x: null, y: [null, null, 1] });
    const big = await w.value<Array<number | null>>('values', { kind: 'bignan' });
    assert.equal(big.length, 10_000);
    assert.equal(big[0], null);
    assert.equal(big[1], 1);
    assert.equal(big.filter((x) => x === null).length, 10);
  });

  it('encodes dataclasses as objects, tuples as arrays, numbers.Real as numbers', async () => {
    assert.deepEqual(await w.value('values', { kind: 'dataclass' }), { p: { x: 1.5, y: 2, tags: ['a', 'b'] } });
    assert.deepEqual(await w.value('values', { kind: 'tuple' }), [1, [2, 3], [4, [5]]]);
    assert.deepEqual(await w.value('values', { kind: 'fraction' }), { half: 0.5 });
  });

  it('refuses what JSON cannot carry with the value, its path and why; the worker keeps serving', async () => {
    const want: Array<[string, RegExp, string]> = [
      ['set', /\$\.rows\[3\]\.when is \{1, 2\} \(set\).*list/, 'TypeError'],
      ['cycle', /\$\.x\[0\] contains itself \(a cycle\)/, 'ValueError'],
      ['deep', /\$\.deep(\[0\]){19}\.\.\. is nested more than 1000 levels deep/, 'RecursionError'],
      ['surrogate', /\$\.s\[1\] is a string with a lone surrogate/, 'UnicodeEncodeError'],
      ['longdouble', /\$\.h is .*c_(longdouble|double)_Array_2 of shape \[2\] that has elements of format '<g'/, 'TypeError'],
      ['struct', /\$\.s\[0\] is .*Pair_Array_2 of shape \[2\] that has elements of format 'T\{/, 'TypeError'],
      ['object', /\$\.o is <object object at .*> \(object\)/, 'TypeError'],
      ['key', /\$ has a key \(1, 2\) \(tuple\)/, 'TypeError'],
    ];
    for (const [kind, message, type] of want) {
      const m = await w.call('values', { kind });
      assert.equal(m.t, 'err', kind);
      assert.equal(m.k, 'python', kind);
      assert.equal(m.e?.type, type, kind);
      assert.match(m.e!.message, /^the result of values cannot be sent as JSON: /, kind);
      assert.match(m.e!.message, message, kind);
    }
    assert.equal(await w.value('add', { a: 1, b: 2 }), 3);
  });
});

describe('runtime: nonFinite error', () => {
  it("PYFLEET_NON_FINITE=error makes a NaN in a result an error naming its path; encodeArgs refuses one in args", async () => {
    const w = await RawWorker.start({ module: HANDLERS, env: { PYFLEET_NON_FINITE: 'error' } });
    try {
      const m = await w.call('values', { kind: 'nan' });
      assert.equal(m.k, 'python');
      assert.equal(m.e?.type, 'ValueError');
      assert.match(m.e!.message, /\$\.a is nan, which is not a JSON number/);
      assert.deepEqual(await w.value('values', { kind: 'tuple' }), [1, [2, 3], [4, [5]]]);
      assert.throws(
        () => w.send('echo', { rows: [{ x: 1 }, { x: NaN }] }, {}, { nonFinite: 'error' }),
        (e: unknown) => e instanceof ArgsError && e.path === '$.rows[1].x' && /NaN/.test(e.message),
      );
    } finally {
      w.kill();
    }
  });
});
