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

describe('encodeArgs: what mutation testing found untested (npm run mutate)', () => {
  it('ArgsError is named as such', () => {
    assert.equal(new ArgsError('$', 'x').name, 'ArgsError');
    try {
      encodeArgs({ f: () => 1 });
      assert.fail('refused');
    } catch (e) {
      assert.equal((e as Error).name, 'ArgsError');
    }
  });

  it("with nonFinite: 'error', finite numbers pass wherever they are; the refusal says what to pass", () => {
    const e = { nonFinite: 'error' } as const;
    assert.equal(encodeArgs(5, e).json, '5');
    assert.equal(encodeArgs({ d: { toJSON: () => 3 } }, e).json, '{"d":3}');
    assert.equal(encodeArgs([1, [2.5, { x: -0 }]], e).json, '[1,[2.5,{"x":0}]]');
    refused({ x: NaN }, '$.x', /^\$\.x is NaN, which is not a JSON number: pass a finite number or null \(the pool runs with nonFinite: 'error'\)$/, e);
  });

  it('the refusals say what to do', () => {
    refused({ f: () => 1 }, '$.f', /^\$\.f is a function: functions cannot be sent to Python; pass data$/);
    refused([Symbol('s')], '$[0]', /^\$\[0\] is a symbol: symbols cannot be sent to Python; pass a string$/);
    refused({ bare: Object.create(Object.create(null)) }, '$.bare', /^\$\.bare is an instance of an object with a prototype without toJSON: /);
    const cyc: Record<string, unknown> = {};
    cyc.self = cyc;
    refused(cyc, '$.self', /^\$\.self refers to an object that contains it \(a cycle\): JSON cannot carry cycles; send a tree$/);
    // A typed array whose tag names no kind the protocol has.
    const weird = new Uint8Array(2);
    Object.defineProperty(weird, Symbol.toStringTag, { value: 'Weird' });
    refused({ w: weird }, '$.w', /^\$\.w is a Weird: the protocol carries Int8\.\.BigUint64 and Float32\/Float64 arrays; convert it$/);
  });

  it('an object whose later value changes keeps the keys before it', () => {
    const when = new Date(Date.UTC(2024, 0, 2));
    assert.equal(encodeArgs({ a: 1, b: 'x', d: when, e: 2 }).json, JSON.stringify({ a: 1, b: 'x', d: when, e: 2 }));
    assert.equal(encodeArgs([1, 'x', when, 2]).json, JSON.stringify([1, 'x', when, 2]));
  });

  it('toJSON gets the key JSON.stringify would give it: "" at the top, the property name, the index as a string', () => {
    const echo = { toJSON: (k: string) => `key=${k}` };
    for (const v of [echo, { a: echo }, [echo, echo]]) assert.equal(encodeArgs(v).json, JSON.stringify(v));
    assert.equal(encodeArgs([echo, echo]).json, '["key=0","key=1"]');
  });

  it('a SharedArrayBuffer is bytes, like an ArrayBuffer', () => {
    const sab = new SharedArrayBuffer(3);
    const { json, parts } = encodeArgs({ sab });
    assert.equal(json, '{"sab":null}');
    assert.deepEqual(parts.map((p) => [p.path, p.kind, p.data.byteLength]), [[['sab'], 'bytes', 3]]);
  });

  it('a toJSON that encodes args itself (a nested call) does not disturb the walk it runs in', () => {
    let inner = '';
    const v = { before: 1, x: { toJSON: () => ((inner = encodeArgs({ n: new Uint8Array(2) }).json), 'x') }, buf: Buffer.from('ab'), after: [2] };
    const got = encodeArgs(v);
    assert.equal(inner, '{"n":null}');
    assert.equal(got.json, '{"before":1,"x":"x","buf":null,"after":[2]}');
    assert.deepEqual(got.parts.map((p) => p.path), [['buf']]);
  });

  it('an error thrown by a toJSON is not taken for nesting too deep', () => {
    const bad = { toJSON: () => { throw new TypeError('my toJSON broke'); } };
    assert.throws(() => encodeArgs({ bad }), (e: unknown) => e instanceof TypeError && e.message === 'my toJSON broke');
    const range = { toJSON: () => { throw new RangeError('mine'); } };
    assert.throws(() => encodeArgs({ range }), (e: unknown) => e instanceof ArgsError && /nested too deeply/.test(e.message), 'a RangeError is (the stack ran out is one)');
  });

  it('nesting too deep names the first 20 steps of the path and how deep it went', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 200_000; i++) deep = { k: deep };
    assert.throws(
      () => encodeArgs(deep),
      (e: unknown) => e instanceof ArgsError && e.path === `$${'.k'.repeat(20)}...` && /^the arguments are nested too deeply \(more than \d{4,} levels\) to be sent$/.test(e.message),
    );
  });
});

describe('encodeArgs: one walk, then JSON.stringify of the same object (no copy unless something changes)', () => {
  const counted = (extra: Record<string, unknown> = {}) => {
    const reads = { n: 0 };
    const o = { ...extra };
    Object.defineProperty(o, 'g', { enumerable: true, get: () => (reads.n++, 7) });
    return { o, reads };
  };

  it('nothing to change: a getter is read by the walk, then by JSON.stringify on the very same object', () => {
    const { o, reads } = counted({ a: 1 });
    assert.equal(encodeArgs(o).json, '{"a":1,"g":7}');
    assert.equal(reads.n, 2);
    const arr = [1, 2];
    let n = 0;
    Object.defineProperty(arr, 1, { enumerable: true, get: () => (n++, 2) });
    assert.equal(encodeArgs(arr).json, '[1,2]');
    assert.equal(n, 2);
  });

  it('a value changes: the copy takes each value the walk read once, and reads no later one ahead of its turn', () => {
    const { o, reads } = counted({ d: new Date(0) });
    assert.equal(encodeArgs(o).json, '{"d":"1970-01-01T00:00:00.000Z","g":7}');
    assert.equal(reads.n, 1, 'read once, by the walk');
  });

  it('an NDArray of bytes keeps its dtype (B, not plain bytes); a view without a tag is bytes', () => {
    const { parts } = encodeArgs({ m: new NDArray(new Uint8Array(4), [2, 2]) });
    assert.deepEqual(parts.map((p) => [p.kind, p.shape]), [['B', [2, 2]]]);
    const dv = new DataView(new ArrayBuffer(2));
    Object.defineProperty(dv, Symbol.toStringTag, { value: undefined });
    assert.deepEqual(encodeArgs({ dv }).parts.map((p) => p.kind), ['bytes']);
  });
});

describe('encodeArgs: numbers beyond +-2^53 travel in exponent form (Python reads them as floats)', () => {
  const e = (x: number) => x.toExponential();
  it('wherever they are: the top, an object, an array, a toJSON result; the rest of the JSON as JSON.stringify writes it', () => {
    const big = 2 ** 60;
    assert.equal(encodeArgs(big).json, e(big));
    assert.equal(encodeArgs(-big).json, e(-big));
    assert.equal(encodeArgs({ a: big, s: 'x', t: true, f: false, n: null, u: undefined, fn: undefined, nan: NaN }).json, `{"a":${e(big)},"s":"x","t":true,"f":false,"n":null,"nan":null}`);
    assert.equal(encodeArgs([1, -big, 'y', undefined]).json, `[1,${e(-big)},"y",null]`);
    assert.equal(encodeArgs({ neg: -big }).json, `{"neg":${e(-big)}}`);
    assert.equal(encodeArgs({ d: { toJSON: () => big }, k: [{ x: 2 }] }).json, `{"d":${e(big)},"k":[{"x":2}]}`);
    assert.equal(encodeArgs({ buf: Buffer.from('a'), big }).json, `{"buf":null,"big":${e(big)}}`);
    assert.equal(encodeArgs(big, { nonFinite: 'error' }).json, e(big));
    assert.equal(encodeArgs({ a: [big] }, { nonFinite: 'error' }).json, `{"a":[${e(big)}]}`);
  });

  it('2^53 itself and everything within is an ordinary number, and without a big one the JSON is JSON.stringify\'s', () => {
    const edge = 2 ** 53;
    for (const v of [edge, -edge, { a: edge, b: -edge }, [edge, -edge], { a: 1.5, b: [2] }]) assert.equal(encodeArgs(v).json, JSON.stringify(v), JSON.stringify(v));
    assert.equal(encodeArgs({ a: edge, b: 2 ** 54 }).json, `{"a":${edge},"b":${e(2 ** 54)}}`);
  });
});
