/**
 * encodeArgs: what JSON.stringify would send, plus binary parts; refusals that name the path
 * and say what to do; NDArray's checks.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ArgsError, encodeArgs } from '../src/protocol/args.js';
import { NDArray } from '../src/protocol/ndarray.js';

const refused = (args: unknown, path: string, why: RegExp, opts?: Parameters<typeof encodeArgs>[1]) =>
  assert.throws(
    () => encodeArgs(args, opts),
    (e: unknown) => {
      assert.ok(e instanceof ArgsError, String(e));
      assert.equal(e.path, path);
      assert.ok(e.message.startsWith(`${path} `), e.message);
      assert.match(e.message, why);
      return true;
    },
  );

describe('encodeArgs', () => {
  it('sends plain JSON exactly as JSON.stringify does (numbers beyond 2^53 as floats), without copying the args', () => {
    const big = (x: unknown): boolean => (typeof x === 'number' ? Math.abs(x) > 2 ** 53 : typeof x === 'object' && x !== null && Object.values(x).some(big));
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const got = encodeArgs(v);
        if (big(v)) assert.deepEqual(JSON.parse(got.json), JSON.parse(JSON.stringify(v)));
        else assert.equal(got.json, JSON.stringify(v) ?? 'null');
        assert.equal(got.parts.length, 0);
      }),
      { numRuns: 500 },
    );
    const args = { a: 1, nested: { b: [1, 2] } };
    assert.equal(encodeArgs(args).json, '{"a":1,"nested":{"b":[1,2]}}');
    assert.equal(encodeArgs(undefined).json, 'null');
  });

  it('as JSON.stringify: NaN and Infinity become null, undefined properties vanish, toJSON (a Date) is used', () => {
    const when = new Date(Date.UTC(2024, 0, 2, 3, 4, 5));
    const v = { n: NaN, i: [Infinity, -Infinity, undefined], u: undefined, when, custom: { toJSON: () => ({ x: 1 }) } };
    assert.equal(encodeArgs(v).json, JSON.stringify(v));
    assert.equal(encodeArgs(v).json, '{"n":null,"i":[null,null,null],"when":"2024-01-02T03:04:05.000Z","custom":{"x":1}}');
    assert.equal(encodeArgs(Object.assign(Object.create(null) as object, { a: 1 })).json, '{"a":1}');
    assert.equal(encodeArgs([new Number(1), new String('s'), new Boolean(false)]).json, '[1,"s",false]');
  });

  it("with nonFinite: 'error', a NaN or Infinity is refused with its path", () => {
    refused({ rows: [{ x: 1 }, { x: NaN }] }, '$.rows[1].x', /is NaN, which is not a JSON number/, { nonFinite: 'error' });
    refused([1, -Infinity], '$[1]', /-Infinity/, { nonFinite: 'error' });
    refused(NaN, '$', /NaN/, { nonFinite: 'error' });
    refused({ d: { toJSON: () => Infinity } }, '$.d', /Infinity/, { nonFinite: 'error' });
  });

  it('refuses Map, Set, functions, symbols, BigInt, class instances without toJSON and cycles, naming the path and what to do', () => {
    class User {
      constructor(readonly name: string) {}
    }
    refused({ user: { tags: new Set(['a']) } }, '$.user.tags', /is a Set: convert it to an array \(\[\.\.\.set\]\)/);
    refused({ m: new Map() }, '$.m', /is a Map: convert it to an object \(Object\.fromEntries/);
    refused({ f: () => 1 }, '$.f', /is a function/);
    refused([Symbol('s')], '$[0]', /is a symbol/);
    refused({ big: 10n }, '$.big', /is a BigInt.*BigInt64Array/);
    refused({ who: new User('ann') }, '$.who', /is an instance of User without toJSON: pass a plain object .*toJSON\(\) method/);
    refused({ 'odd key': [new User('x')] }, '$["odd key"][0]', /User/);
    const cyc: Record<string, unknown> = { a: { b: [] } };
    (cyc.a as { b: unknown[] }).b.push(cyc);
    refused(cyc, '$.a.b[0]', /a cycle/);
    let deep: unknown = 1;
    for (let i = 0; i < 200_000; i++) deep = [deep];
    assert.throws(() => encodeArgs(deep), (e: unknown) => e instanceof ArgsError && /nested too deeply/.test(e.message));
  });

  it('the same object twice is not a cycle', () => {
    const shared = { x: 1 };
    assert.equal(encodeArgs({ a: shared, b: [shared, shared] }).json, '{"a":{"x":1},"b":[{"x":1},{"x":1}]}');
  });

  it('typed arrays, Buffers, DataViews, ArrayBuffers and NDArrays become binary parts with their paths; null in the JSON', () => {
    const buf = Buffer.from('abc');
    const f64 = new Float64Array([1, 2]);
    const nd = new NDArray(new Int16Array(6), [2, 3]);
    const ab = new ArrayBuffer(4);
    const dv = new DataView(ab, 1, 2);
    const args = { buf, deep: [{ f64 }], nd, ab, dv, c: new Uint8ClampedArray(2), u: new Uint8Array(1), q: new BigInt64Array(1) };
    const { json, parts } = encodeArgs(args);
    assert.equal(json, '{"buf":null,"deep":[{"f64":null}],"nd":null,"ab":null,"dv":null,"c":null,"u":null,"q":null}');
    assert.deepEqual(
      parts.map((p) => [p.path, p.kind, p.data.byteLength, p.shape]),
      [
        [['buf'], 'bytes', 3, undefined],
        [['deep', 0, 'f64'], 'd', 16, undefined],
        [['nd'], 'h', 12, [2, 3]],
        [['ab'], 'bytes', 4, undefined],
        [['dv'], 'bytes', 2, undefined],
        [['c'], 'B', 2, undefined],
        [['u'], 'bytes', 1, undefined],
        [['q'], 'q', 8, undefined],
      ],
    );
    assert.equal(parts[0].data, buf, 'the Buffer itself, not a copy');
    assert.equal(parts[1].data, f64);
    assert.equal(args.deep[0].f64, f64, 'the args are not changed');
    const top = encodeArgs(new Float32Array(3));
    assert.equal(top.json, 'null');
    assert.deepEqual(top.parts[0].path, []);
  });
});

describe('encodeArgs: the rows of the table of conversions issue 19 added', () => {
  it('writes a number beyond 2^53 as a float (Python would read its digits as an int); JSON.parse reads back the same numbers', () => {
    const args = { a: 1e20, b: [-1e20, 2 ** 53 + 2, 2 ** 53, -(2 ** 53), 1e21, 123456789012345680000], c: { d: Infinity, e: NaN, u: undefined }, s: '1e20', arr: [undefined], when: new Date(0) };
    const { json } = encodeArgs(args);
    assert.equal(json, '{"a":1e+20,"b":[-1e+20,9.007199254740994e+15,9007199254740992,-9007199254740992,1e+21,1.2345678901234568e+20],"c":{"d":null,"e":null},"s":"1e20","arr":[null],"when":"1970-01-01T00:00:00.000Z"}');
    assert.deepEqual(JSON.parse(json), JSON.parse(JSON.stringify(args)));
    assert.equal(encodeArgs(1e20).json, '1e+20');
    assert.equal(encodeArgs({ n: 2 ** 53 }).json, '{"n":9007199254740992}', 'up to 2^53 as JSON.stringify writes it');
  });

  it("a bool NDArray is a part of kind '?' with its shape, 1-D too; a byte other than 0 and 1 is refused", () => {
    const one = new NDArray(new Uint8Array([1, 0, 1]), [3], 'bool');
    const { parts } = encodeArgs({ m: one, e: new NDArray(new Uint8Array(0), [0, 2], 'bool') });
    assert.deepEqual(
      parts.map((p) => [p.path, p.kind, p.shape]),
      [
        [['m'], '?', [3]],
        [['e'], '?', [0, 2]],
      ],
    );
    refused({ rows: [new NDArray(new Uint8Array([0, 2]), [2], 'bool')] }, '$.rows[0]', /is a 'bool' NDArray holding 2 at index 1: a bool array holds 0 \(false\) and 1 \(true\) only/);
  });
});

describe('NDArray', () => {
  it("takes dtype 'bool' with a Uint8Array, and no other dtype than its data's own", () => {
    assert.equal(new NDArray(new Uint8Array(2), [2], 'bool').dtype, 'bool');
    assert.equal(new NDArray(new Float32Array(2), [2], 'float32').dtype, 'float32');
    assert.throws(() => new NDArray(new Int8Array(2), [2], 'bool'), /dtype "bool" does not fit a Int8Array: give no dtype \(it is int8\), or 'bool' with a Uint8Array/);
    assert.throws(() => new NDArray(new Float32Array(2), [2], 'float64'), /dtype "float64" does not fit a Float32Array/);
  });

  it('checks its data and shape, and knows its dtype', () => {
    const a = new NDArray(new Float32Array(6), [2, 3]);
    assert.deepEqual([a.dtype, a.ndim, a.size, a.shape], ['float32', 2, 6, [2, 3]]);
    assert.equal(new NDArray(new BigUint64Array(2), [2]).dtype, 'uint64');
    assert.equal(new NDArray(Buffer.alloc(4), [2, 2]).dtype, 'uint8');
    assert.equal(new NDArray(new Float64Array(0), [0, 5]).size, 0);
    assert.throws(() => new NDArray(new Float32Array(5), [2, 3]), /holds 6 elements, but the data has 5/);
    assert.throws(() => new NDArray(new Float32Array(1), []), /non-empty array/);
    assert.throws(() => new NDArray(new Float32Array(2), [2.5]), /not a non-negative integer/);
    assert.throws(() => new NDArray([1, 2] as unknown as Float64Array, [2]), /takes a typed array .* got Array/);
    assert.throws(() => new NDArray(new DataView(new ArrayBuffer(2)) as unknown as Uint8Array, [2]), /got DataView/);
    assert.ok(Object.isFrozen(a.shape));
  });
});
