/**
 * Values both ways through a real worker: NaN, results JSON cannot carry (each refusal names
 * the value, its path and why), dataclasses, tuples, numbers, and the rows of the table of
 * conversions (docs/values.md) that issue 19 added (big ints, colliding keys, numpy's zero-size,
 * bool, datetime and masked arrays).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ArgsError } from '../src/protocol/args.js';
import { NDArray } from '../src/protocol/ndarray.js';
import { numpyPython, RawWorker, RUNTIME_FIXTURES } from './helpers/raw-worker.js';

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
      ['surrogate', /\$\.s\[1\] is a string that UTF-8 \(and so JSON\) cannot carry \(a lone surrogate/, 'UnicodeEncodeError'],
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
      const huge = await w.call('values', { kind: 'int_huge' });
      assert.equal(huge.k, 'python', '10**400 does not arrive as Infinity');
      assert.match(huge.e!.message, /\$\.n is the integer of 1329 bits, beyond 2\^53/);
      assert.throws(
        () => w.send('echo', { rows: [{ x: 1 }, { x: NaN }] }, {}, { nonFinite: 'error' }),
        (e: unknown) => e instanceof ArgsError && e.path === '$.rows[1].x' && /NaN/.test(e.message),
      );
    } finally {
      w.kill();
    }
  });
});

/** The table of conversions (docs/values.md), both ways where it applies: nothing outside it happens silently. */
describe('runtime: the table of conversions', () => {
  let w: RawWorker;
  before(async () => {
    w = await RawWorker.start({ module: HANDLERS });
  });
  after(async () => {
    assert.deepEqual(w.invalid, []);
    w.kill();
    await w.exited;
  });

  const refusal = async (kind: string, type: string, message: RegExp) => {
    const m = await w.call('values', { kind });
    assert.equal(m.t, 'err', `${kind}: ${JSON.stringify(m).slice(0, 300)}`);
    assert.equal(m.k, 'python', kind);
    assert.equal(m.e?.type, type, kind);
    assert.match(m.e!.message, message, kind);
  };

  it('a Python int beyond 2^53 is refused with its path (10**400 too); 2^53 itself and int keys pass', async () => {
    assert.deepEqual(await w.value('values', { kind: 'int_edges' }), { max: 2 ** 53, min: -(2 ** 53), keys: { [String(2n ** 60n)]: 'a key is a string: any int' } });
    await refusal('int_over', 'OverflowError', /^the result of values cannot be sent as JSON: \$\.n\[1\] is the integer 9007199254740993, beyond 2\^53 in magnitude, .*return str\(v\) \(exact\) or float\(v\)/);
    await refusal('int_under', 'OverflowError', /\$\.n is the integer -9007199254740993, beyond 2\^53/);
    await refusal('int_huge', 'OverflowError', /\$\.n is the integer of 1329 bits, beyond 2\^53/);
  });

  it('an integer-valued number beyond 2^53 from Node travels as a float, so an echo of it is not refused', async () => {
    const args = { x: 1e20, y: [-1e20, 2 ** 53 + 2, 1e300, 2 ** 53, -(2 ** 53)], z: { deep: [[123456789012345680000]] } };
    assert.deepEqual(await w.value('echo', args), args);
    assert.deepEqual(await w.value('types', args), { x: 'float', y: ['float', 'float', 'float', 'int', 'int'], z: { deep: [['float']] } });
  });

  it('a dict whose keys collide as JSON keys (1 and "1", True and "true", None and "null") is refused, not collapsed', async () => {
    await refusal('keys_collide', 'ValueError', /\$\.x\[0\] has the keys 1 \(int\) and '1' \(str\), which are the same JSON key "1"/);
    await refusal('keys_collide_str_first', 'ValueError', /^the result of values cannot be sent as JSON: \$ has the keys '1' \(str\) and 1 \(int\)/);
    await refusal('keys_collide_bool', 'ValueError', /\$\.x has the keys True \(bool\) and 'true' \(str\)/);
    await refusal('keys_collide_none', 'ValueError', /\$\.x has the keys None \(NoneType\) and 'null' \(str\)/);
    assert.deepEqual(await w.value('values', { kind: 'keys_nonstr' }), { '1': 'a', '2.5': 'b', false: 'c', null: 'd' });
  });

  it('values that only look like big ints or number keys in the JSON text arrive as they are', async () => {
    assert.deepEqual(await w.value('values', { kind: 'lookalikes' }), {
      '2023-01-01': 1,
      '-x': ['12345678901234567', 0.30000000000000004, 1234567890123456.0, 1e16, -1e-300],
      true: 1,
      null: 2,
      n: 9007199254740992,
    });
  });
});

describe('runtime: the table of conversions, numpy', () => {
  const py = numpyPython();
  let w: RawWorker;
  before(async () => {
    if (py !== null) w = await RawWorker.start({ module: `${RUNTIME_FIXTURES}numpy_handlers.py`, python: py });
  });
  after(async () => {
    if (py === null) return;
    assert.deepEqual(w.invalid, []);
    w.kill();
    await w.exited;
  });
  const skip = py === null ? 'numpy is not importable by python3 or /usr/bin/python3 (apt-get install python3-numpy)' : false;
  const refusal = async (kind: string, message: RegExp) => {
    const m = await w.call('np_case', { case: kind });
    assert.equal(m.t, 'err', `${kind}: ${JSON.stringify(m).slice(0, 300)}`);
    assert.equal(m.k, 'python', kind);
    assert.match(m.e!.message, /^the result of np_case cannot be sent as JSON: /, kind);
    assert.match(m.e!.message, message, kind);
  };

  it('a zero-size NDArray keeps its shape both ways ([0, 3], [2, 0, 4])', { skip }, async () => {
    for (const [data, shape, dtype] of [
      [new Float64Array(0), [0, 3], 'float64'],
      [new Int16Array(0), [2, 0, 4], 'int16'],
      [new Float32Array(0), [0], 'float32'],
    ] as const) {
      const got = await w.value<{ shape: number[]; dtype: string; back: unknown }>('np_shape', { m: new NDArray(data, shape) });
      assert.deepEqual([got.shape, got.dtype], [shape, dtype], `numpy sees ${JSON.stringify(shape)}`);
      if (shape.length > 1) assert.deepEqual(got.back, new NDArray(data, shape), 'and it comes back with its shape');
      else assert.deepEqual(got.back, data, 'a 1-D array comes back as a typed array');
    }
    const v = await w.value<Record<string, unknown>>('np_case', { case: 'zero_size' });
    assert.deepEqual(v, { a: new NDArray(new Float64Array(0), [0, 3]), b: new NDArray(new Int16Array(0), [2, 0, 4]), c: new Float32Array(0) });
  });

  it("a bool array keeps bool as its dtype both ways (NDArray dtype 'bool')", { skip }, async () => {
    const v = await w.value<Record<string, unknown>>('np_case', { case: 'bools' });
    assert.deepEqual(v, {
      one: new NDArray(new Uint8Array([1, 0, 1]), [3], 'bool'),
      two: new NDArray(new Uint8Array([1, 0]), [2, 1], 'bool'),
      empty: new NDArray(new Uint8Array(0), [0, 2], 'bool'),
      scalar: false,
    });
    for (const shape of [[2, 2], [4], [0, 2]]) {
      const n = shape.reduce((a, b) => a * b, 1);
      const m = new NDArray(new Uint8Array(n).map((_, i) => i % 2), shape, 'bool');
      const got = await w.value<{ shape: number[]; dtype: string; back: NDArray }>('np_shape', { m });
      assert.deepEqual([got.shape, got.dtype], [shape, 'bool']);
      assert.deepEqual(got.back, m);
    }
  });

  it('np.datetime64 and timedelta64 values (scalars and arrays) are refused with the path and a hint, as datetime is', { skip }, async () => {
    await refusal('dt_scalar', /\$\.at\[0\] is numpy\.datetime64, which JSON has no type for: return str\(v\) \(an ISO string\) or an integer/);
    await refusal('td_scalar', /\$\.took is numpy\.timedelta64, .*timedelta64\[ms\]/);
    await refusal('dt_array', /\$\.when is a numpy array of dtype datetime64\[ns\], which JSON has no type for: return ISO strings \(a\.astype\(str\)\.tolist\(\)\)/);
    await refusal('dt_empty', /\$\.when is a numpy array of dtype datetime64\[s\]/);
  });

  it('a masked array is refused, not unmasked; object, string and complex arrays are refused with what to return', { skip }, async () => {
    await refusal('masked', /\$\.m is a masked array \(numpy\.ma\), whose mask JSON cannot carry: return a\.filled\(fill_value\), or a\.tolist\(\)/);
    await refusal('masked_constant', /\$\.m is a masked array/);
    await refusal('objects', /\$\.o is a numpy array of Python objects \(dtype object\).*a\.tolist\(\)/);
    await refusal('strings', /\$\.s is a numpy array of dtype <U2 \(strings\).*a\.tolist\(\)/);
    await refusal('complex', /\$\.z is a numpy array of dtype complex128 \(complex\)/);
  });

  it('numpy integers beyond 2^53 are refused; numpy keys are turned into strings, and refused when they collide', { skip }, async () => {
    await refusal('int64_big', /\$\.n is the integer 1152921504606846976, beyond 2\^53/);
    await refusal('uint64_max', /\$\.n\[0\] is the integer 18446744073709551615/);
    assert.deepEqual(await w.value('np_case', { case: 'numpy_keys' }), { by_label: { a: 1, b: 2 }, by_int: { '3': 'three' }, arr: new BigInt64Array([0n, 1n]) });
    await refusal('numpy_keys_collide', /\$\.k has the keys (np\.int64\(1\)|1) \(numpy\.int64\) and '1' \(str\)/);
  });
});
