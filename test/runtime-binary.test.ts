/**
 * Binary parts through a real worker: args arrive as read-only memoryviews (no copy), results
 * with buffers arrive as Buffers, typed arrays and NDArrays; 1 KiB to 64 MiB round trips with
 * every byte checked; the receive buffer is reused only when nothing still views it; a worker
 * killed in the middle of a large frame; malformed binary frames from the host.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Readable } from 'node:stream';
import { NDArray } from '../src/protocol/ndarray.js';
import { numpyPython, RawWorker, RUNTIME_FIXTURES } from './helpers/raw-worker.js';

const HANDLERS = `${RUNTIME_FIXTURES}handlers.py`;
const MAX = 80 * 1024 * 1024;

/** n bytes of (i * 31 + seed) % 251: a period (251, prime) that no power-of-two chunking lines up with. */
function pattern(n: number, seed: number): Buffer {
  const period = Buffer.allocUnsafe(251);
  for (let i = 0; i < 251; i++) period[i] = (i * 31 + seed) % 251;
  return n === 0 ? Buffer.alloc(0) : Buffer.alloc(n, period);
}

const bytesOf = (v: ArrayBufferView): Buffer => Buffer.from(v.buffer, v.byteOffset, v.byteLength);

describe('runtime: binary parts', () => {
  let w: RawWorker;
  before(async () => {
    w = await RawWorker.start({ module: HANDLERS, maxFrameBytes: MAX });
  });
  after(async () => {
    assert.deepEqual(w.invalid, []);
    w.kill();
    await w.exited;
  });

  it('args: a Buffer arrives as a read-only bytes view, a typed array as a memoryview of its format, an NDArray of its shape', async () => {
    const got = await w.value<Record<string, Record<string, unknown>>>('bin_info', {
      raw: Buffer.from('hello'),
      u8: new Uint8Array([1, 2, 3]),
      dv: new DataView(new Uint8Array([9, 8]).buffer),
      clamped: new Uint8ClampedArray([255, 1]),
      i8: new Int8Array([-1, -2]),
      i16: new Int16Array([-300, 300]),
      u16: new Uint16Array([65535]),
      i32: new Int32Array([-5, 5, 7]),
      u32: new Uint32Array([4_000_000_000]),
      i64: new BigInt64Array([-(2n ** 40n), 3n]),
      u64: new BigUint64Array([2n ** 60n]),
      f32: new Float32Array([0.5, 1.5]),
      f64: new Float64Array([0.25, -1, 1e300]),
      nd: new NDArray(new Float64Array([1, 2, 3, 4, 5, 6]), [2, 3]),
      nd3: new NDArray(new Int16Array(24).map((_, i) => i), [2, 3, 4]),
      empty: new Float64Array(0),
      sub: new Float64Array([9, 10, 11, 12]).subarray(1, 3),
    });
    const f = (k: string) => [got[k].format, got[k].shape, got[k].readonly, got[k].nbytes, got[k].sum];
    assert.deepEqual(f('raw'), ['B', [5], true, 5, 532]);
    assert.deepEqual(f('u8'), ['B', [3], true, 3, 6]);
    assert.deepEqual(f('dv'), ['B', [2], true, 2, 17]);
    assert.deepEqual(f('clamped'), ['B', [2], true, 2, 256]);
    assert.deepEqual(f('i8'), ['b', [2], true, 2, -3]);
    assert.deepEqual(f('i16'), ['h', [2], true, 4, 0]);
    assert.deepEqual(f('u16'), ['H', [1], true, 2, 65535]);
    assert.deepEqual(f('i32'), ['i', [3], true, 12, 7]);
    assert.deepEqual(f('u32'), ['I', [1], true, 4, 4_000_000_000]);
    assert.deepEqual(f('i64'), ['q', [2], true, 16, -(2 ** 40) + 3]);
    assert.deepEqual(f('u64'), ['Q', [1], true, 8, String(2n ** 60n)]);
    assert.deepEqual(f('f32'), ['f', [2], true, 8, 2]);
    assert.deepEqual(f('f64'), ['d', [3], true, 24, 0.25 - 1 + 1e300]);
    assert.deepEqual(f('nd'), ['d', [2, 3], true, 48, 21]);
    assert.deepEqual(f('nd3'), ['h', [2, 3, 4], true, 48, 276]);
    assert.deepEqual(f('empty'), ['d', [0], true, 0, 0]);
    assert.deepEqual(f('sub'), ['d', [2], true, 16, 21], 'a subarray sends its own elements only');
  });

  it('results: bytes-like come back as Buffers, typed buffers as typed arrays, 2-D as NDArray, a non-contiguous view copied once', async () => {
    const bytes = await w.value<{ data: Buffer }>('bin_make', { kind: 'bytes', n: 1000 });
    assert.ok(Buffer.isBuffer(bytes.data));
    assert.equal(bytes.data.length, 1000);
    assert.equal(bytes.data[257], 1);
    const ba = await w.value<Buffer>('bin_make', { kind: 'bytearray', n: 10 });
    assert.ok(Buffer.isBuffer(ba));
    assert.deepEqual([...ba], new Array(10).fill(7));
    const d = await w.value<{ a: Float64Array }>('bin_make', { kind: 'array_d', n: 5 });
    assert.ok(d.a instanceof Float64Array);
    assert.deepEqual([...d.a], [0, 0.5, 1, 1.5, 2]);
    const q = await w.value<BigInt64Array>('bin_make', { kind: 'array_q', n: 3 });
    assert.ok(q instanceof BigInt64Array);
    assert.deepEqual([...q], [0n, -3n, -6n]);
    const l = await w.value<BigInt64Array>('bin_make', { kind: 'array_l', n: 3 });
    assert.ok(l instanceof BigInt64Array, "array('l') is int64 on LP64");
    const nc = await w.value<{ every_other: Int32Array }>('bin_make', { kind: 'noncontig', n: 4 });
    assert.deepEqual([...nc.every_other], [0, 2, 4, 6]);
    const two = await w.value<NDArray>('bin_make', { kind: '2d', n: 2 });
    assert.ok(two instanceof NDArray);
    assert.deepEqual([two.shape, two.dtype, [...two.data]], [[2, 3], 'float32', [0, 1, 2, 3, 4, 5]]);
    const empty = await w.value<{ e: Buffer; x: number }>('bin_make', { kind: 'empty', n: 0 });
    assert.deepEqual([Buffer.isBuffer(empty.e), empty.e.length, empty.x], [true, 0, 1]);
  });

  it('echo: what goes in comes back with the same type and elements (a uint8 memoryview comes back as bytes)', async () => {
    const sent = {
      b: Buffer.from([1, 2, 3]),
      i16: new Int16Array([-1, 2]),
      f64: new Float64Array([NaN, -0, Infinity]),
      u64: new BigUint64Array([1n, 2n ** 63n]),
      nd: new NDArray(new Float32Array([1, 2, 3, 4]), [2, 2]),
      list: [new Int32Array([7]), { deeper: new Uint16Array([1, 65535]) }],
      clamped: new Uint8ClampedArray([3]),
    };
    const back = await w.value<typeof sent>('bin_echo', sent);
    assert.deepEqual(back.b, sent.b);
    assert.deepEqual(back.i16, sent.i16);
    assert.deepEqual(back.f64, sent.f64);
    assert.ok(Object.is(back.f64[1], -0));
    assert.deepEqual(back.u64, sent.u64);
    assert.deepEqual(back.nd, sent.nd);
    assert.deepEqual(back.list, sent.list);
    assert.deepEqual(back.clamped, Buffer.from([3]));
  });

  it('round-trips 1 KiB to 64 MiB with every byte checked', async () => {
    const sizes = [1024, 65_535, 65_536, 65_537, 1 << 20, 16 << 20, 64 << 20];
    for (const [i, n] of sizes.entries()) {
      const data = pattern(n, i);
      const m = await w.call('bin_echo', { data, n }, {}, 60_000);
      if (m.t !== 'ok') assert.fail(`${n}: ${JSON.stringify(m).slice(0, 300)}`);
      const back = (m.v as { data: Buffer; n: number }).data;
      assert.equal(back.length, n);
      assert.ok(back.equals(data), `${n} bytes came back changed`);
      if (n >= 65_536) assert.equal(back.byteOffset % 8, 0);
    }
    const f = new Float64Array(8 << 20);
    for (let i = 0; i < f.length; i++) f[i] = i / 3;
    const m = await w.call('bin_echo', { f }, {}, 60_000);
    const back = (m.v as { f: Float64Array }).f;
    assert.ok(back instanceof Float64Array);
    assert.ok(bytesOf(back).equals(bytesOf(f)), '64 MiB of float64 came back changed');
  });

  it('reuses the receive buffer of a large frame only when nothing still views it', async () => {
    const big = (seed: number) => pattern(1 << 20, seed);
    const a = await w.value<{ owner: number; type: string }>('bin_owner', { data: big(1) });
    const b = await w.value<{ owner: number }>('bin_owner', { data: big(2) });
    assert.equal(a.type, 'bytearray');
    assert.equal(b.owner, a.owner, 'the second large frame went into the first one\'s buffer');
    // A handler keeps a slice of its argument past the call: that buffer must never be reused.
    await w.value('bin_keep', { data: big(3) });
    const c = await w.value<{ owner: number }>('bin_owner', { data: big(4) });
    assert.notEqual(c.owner, a.owner);
    for (let i = 0; i < 3; i++) await w.value('bin_echo', { data: big(10 + i) });
    const kept = await w.value<string[]>('bin_kept');
    assert.equal(kept.at(-1), big(3).subarray(0, 4).toString('hex'), 'the kept view still shows its own bytes');
    // A handler keeps the view itself: the runtime released it when the call settled.
    await w.value('bin_leak', { data: big(5) });
    assert.match(await w.value<string>('bin_touch_kept'), /^released: .*released memoryview/);
  });

  it('answers a binary call whose parts do not add up bad_request, and keeps serving', async () => {
    const json = Buffer.from('{"t":"call","id":555,"cmd":"bin_info","a":{"x":null},"dl":0,"b":[{"p":["x"],"k":"d","n":16}]}');
    const pad = (8 - ((5 + json.length) % 8)) % 8;
    const body = Buffer.concat([Buffer.from([1]), Buffer.alloc(4), json, Buffer.alloc(pad), Buffer.alloc(8)]);
    body.writeUInt32BE(json.length, 1);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(body.length, 0);
    w.write([head, body]);
    const m = await w.answer(555);
    assert.equal(m.k, 'bad_request');
    assert.match(m.e!.message, /parts run past the end of the frame/);
    for (const [b, why] of [
      ['[{"p":["y"],"k":"bytes","n":8}]', /does not lead/],
      ['[{"p":["x"],"k":"e","n":8}]', /unknown kind/],
      ['[{"p":["x"],"k":"d","n":8,"s":[2]}]', /does not match/],
      ['[]', /without part descriptors/],
    ] as Array<[string, RegExp]>) {
      const j = Buffer.from(`{"t":"call","id":556,"cmd":"bin_info","a":{"x":null},"dl":0,"b":${b}}`);
      const p2 = (8 - ((5 + j.length) % 8)) % 8;
      const body2 = Buffer.concat([Buffer.from([1]), Buffer.alloc(4), j, Buffer.alloc(p2), Buffer.alloc(8)]);
      body2.writeUInt32BE(j.length, 1);
      const h2 = Buffer.alloc(4);
      h2.writeUInt32BE(body2.length, 0);
      const before = w.of(556).length;
      w.write([h2, body2]);
      const got = await w.next((x) => x.id === 556 && w.of(556).length > before);
      assert.equal(got.k, 'bad_request', b);
      assert.match(got.e!.message, why, b);
    }
    assert.equal(await w.value('add', { a: 1, b: 2 }), 3);
  });
});

describe('runtime: large frames and dying workers', () => {
  it('a worker killed in the middle of sending a large result: the host gets no partial message, the call fails with the exit', async () => {
    const w = await RawWorker.start({ module: HANDLERS, maxFrameBytes: MAX });
    const out = w.child.stdio[4] as Readable;
    const id = w.send('bin_make', { kind: 'bytes', n: 48 << 20 });
    const answer = w.answer(id, 30_000);
    // Stop reading fd 4: the worker blocks inside its writev of the 48 MiB frame.
    await new Promise<void>((resolve) => out.once('data', () => resolve()));
    out.pause();
    await new Promise((r) => setTimeout(r, 100));
    w.child.kill('SIGKILL');
    out.resume();
    await assert.rejects(answer, /worker exited \(code null, signal SIGKILL\)/);
    assert.equal(w.of(id).length, 0);
    assert.equal(w.frameError, null);
  });

  it('a worker killed while the host writes it a large frame: no hang, the write fails quietly', async () => {
    const w = await RawWorker.start({ module: HANDLERS, maxFrameBytes: MAX });
    const id = w.send('bin_sum', { data: pattern(60 << 20, 7) });
    const answer = w.answer(id, 30_000);
    setTimeout(() => w.child.kill('SIGKILL'), 5);
    await assert.rejects(answer, /worker exited/);
    assert.equal((await w.exited).signal, 'SIGKILL');
  });

  it('a 60 MiB argument arrives whole and read-only, read straight into one buffer', async () => {
    const w = await RawWorker.start({ module: HANDLERS, maxFrameBytes: MAX });
    try {
      const data = pattern(60 << 20, 3);
      const got = await w.value<{ n: number; readonly: boolean; first: number; last: number }>('bin_sum', { data });
      assert.deepEqual([got.n, got.readonly, got.first, got.last], [data.length, true, data[0], data[data.length - 1]]);
    } finally {
      w.kill();
    }
  });
});

describe('runtime: numpy', () => {
  const py = numpyPython();
  it('round-trips a 2-D float32 array: NDArray -> memoryview of its shape -> numpy -> NDArray', { skip: py === null ? 'numpy is not importable by python3 or /usr/bin/python3 (apt-get install python3-numpy)' : false }, async () => {
    const w = await RawWorker.start({ module: `${RUNTIME_FIXTURES}numpy_handlers.py`, python: py!, maxFrameBytes: MAX });
    try {
      const m = new NDArray(new Float32Array([1, 2.5, -3, 4, NaN, 6]), [3, 2]);
      const got = await w.value<{ shape: number[]; dtype: string; doubled: NDArray }>('np_double', { m });
      assert.deepEqual(got.shape, [3, 2]);
      assert.equal(got.dtype, 'float32');
      assert.ok(got.doubled instanceof NDArray);
      assert.equal(got.doubled.dtype, 'float32');
      assert.deepEqual(got.doubled.shape, [3, 2]);
      assert.deepEqual([...got.doubled.data], [2, 5, -6, 8, NaN, 12]);

      const v = await w.value<Record<string, unknown>>('np_values');
      assert.deepEqual([v.i64, v.f32, v.f64nan, v.bool, v.zero_d], [7, 1.5, null, true, 3.25]);
      assert.deepEqual(v.ints, new BigInt64Array([0n, 1n, 2n, 3n, 4n]));
      assert.deepEqual(v.u8, new Uint8Array([0, 1, 2, 3]));
      assert.deepEqual(v.bools, new NDArray(new Uint8Array([1, 0, 1]), [3], 'bool'), 'a bool array keeps its dtype');
      assert.deepEqual(v.fortran, new NDArray(new Float64Array([0, 1, 2, 3, 4, 5]), [2, 3]), 'a Fortran-ordered array arrives in C order');
      assert.deepEqual(v.be, new Int32Array([0, 1, 2]));

      const half = await w.call('np_half');
      assert.match(half.e!.message, /\$\.h is numpy\.ndarray of shape \[3\] that has elements of format 'e'/);
      const st = await w.call('np_struct');
      assert.match(st.e!.message, /\$\.s is a numpy array of dtype \[\('a', '<i4'\), \('b', '<f8'\)\] \(structured\).*a\.tolist\(\)/);

      // numpy.frombuffer over the receive buffer keeps it: later frames must not overwrite what it sees.
      const first = pattern(1 << 20, 1);
      await w.value('np_keep', { data: first });
      for (let i = 0; i < 3; i++) await w.value('np_double', { m: new NDArray(new Float32Array(pattern(1 << 20, 9 + i).buffer.slice(0, 1 << 20)), [1 << 18]) });
      assert.deepEqual(await w.value('np_kept'), [...first.subarray(0, 8)]);
    } finally {
      w.kill();
    }
  });
});
