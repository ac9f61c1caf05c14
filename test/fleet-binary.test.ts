/**
 * Binary values across hosts: Buffers, typed arrays and NDArrays in args, bytes, typed arrays and
 * shaped buffers in results and stream items, as raw bytes in NATS messages (never base64).
 * One message carries a value: over the server's max_payload it is refused, not chunked.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { connect, type Msg } from '@nats-io/transport-node';
import { connectFleet, type Fleet } from '../src/fleet/index.js';
import { PoolError } from '../src/errors/pool-error.js';
import { NDArray } from '../src/protocol/ndarray.js';
import { killAllHosts, orphansOf, startHostProc, type HostProc } from './helpers/fleet.js';
import { startNats, type NatsServer } from './helpers/nats.js';

async function rejection(p: Promise<unknown>): Promise<PoolError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof PoolError, `a PoolError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected a rejection');
}

const sha = (b: ArrayBufferView): string => createHash('sha256').update(Buffer.from(b.buffer, b.byteOffset, b.byteLength)).digest('hex');

describe('binary values across hosts', () => {
  let srv: NatsServer;
  let big: NatsServer;
  let hosts: HostProc[];
  let fleet: Fleet;
  let bigFleet: Fleet;

  before(async () => {
    [srv, big] = await Promise.all([startNats(), startNats({}, [], { maxPayload: 8 * 1024 * 1024 })]);
    hosts = await Promise.all([startHostProc(srv.url, 'bin'), startHostProc(big.url, 'bin')]);
    [fleet, bigFleet] = await Promise.all([connectFleet({ servers: srv.url, fleet: 'bin' }), connectFleet({ servers: big.url, fleet: 'bin' })]);
    await Promise.all([fleet.ready(), bigFleet.ready()]);
  });
  after(async () => {
    await Promise.all([fleet?.close(), bigFleet?.close()]);
    for (const h of hosts ?? []) h.kill('SIGTERM');
    await killAllHosts();
    assert.deepEqual(await orphansOf((hosts ?? []).map((h) => h.pid)), []);
    await Promise.all([srv?.dispose(), big?.dispose()]);
  });

  it('Buffers, typed arrays and NDArrays in args arrive in Python as read-only memoryviews of their format and shape', async () => {
    const d = await fleet.execute<Record<string, { type: string; format?: string; shape?: number[]; nbytes?: number; head?: number[]; readonly?: boolean }>>('describe', {
      buf: Buffer.from([9, 8, 7, 6, 5]),
      u8: new Uint8Array([1, 2, 3]),
      f64: new Float64Array([1.5, 2.5]),
      i32: new Int32Array([1, 2, 3, 4]),
      nd: new NDArray(new Float32Array(6), [2, 3]),
      plain: 'text',
    });
    // As through a local pool: bytes-like, a read-only memoryview of format B.
    assert.deepEqual(d.buf, { type: 'memoryview', format: 'B', shape: [5], readonly: true, nbytes: 5 });
    assert.deepEqual(d.u8, { type: 'memoryview', format: 'B', shape: [3], readonly: true, nbytes: 3 });
    assert.deepEqual(d.f64, { type: 'memoryview', format: 'd', shape: [2], readonly: true, nbytes: 16 });
    assert.deepEqual(d.i32, { type: 'memoryview', format: 'i', shape: [4], readonly: true, nbytes: 16 });
    assert.deepEqual(d.nd, { type: 'memoryview', format: 'f', shape: [2, 3], readonly: true, nbytes: 24 });
    assert.deepEqual(d.plain, { type: 'str' });
  });

  it('bytes, typed arrays and shaped buffers in results arrive as Buffer, the typed array, and NDArray', async () => {
    const r = await fleet.execute<Record<string, unknown>>('make_binary', { k: 2 });
    assert.ok(Buffer.isBuffer(r.bytes));
    assert.equal((r.bytes as Buffer).length, 512);
    assert.equal((r.bytes as Buffer)[255], 255);
    assert.ok(r.doubles instanceof Float64Array);
    assert.deepEqual([...(r.doubles as Float64Array)], [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5]);
    assert.ok(r.ints instanceof Int32Array);
    assert.deepEqual([...(r.ints as Int32Array)], [1, -2, 3]);
    assert.ok(r.u8 instanceof Uint8Array && !Buffer.isBuffer(r.u8), 'a uint8 array stays a Uint8Array (not bytes)');
    assert.deepEqual([...(r.u8 as Uint8Array)], [7, 8, 9]);
    assert.ok(Buffer.isBuffer((r.nested as unknown[])[0]));
    assert.equal(((r.nested as Buffer[])[0]).toString(), 'abc');
    assert.ok(r.grid instanceof NDArray);
    assert.deepEqual((r.grid as NDArray).shape, [2, 3]);
    assert.equal((r.grid as NDArray).dtype, 'float64');
    assert.deepEqual([...(r.grid as NDArray).data], [0, 1, 2, 3, 4, 5]);
  });

  it('travels as raw bytes in the worker protocol\'s 0x01 form, never base64', async () => {
    const sniff = await connect({ servers: srv.url });
    try {
      const seen: Msg[] = [];
      const sub = sniff.subscribe('pyfleet.bin.host.*.call', { callback: (_e, m) => void seen.push(m) });
      await sniff.flush();
      const marker = Buffer.from('RAW-BYTES-\u00ff\u00fe-MARKER', 'latin1');
      const r = await fleet.execute<{ sha256: string }>('digest', { data: marker });
      assert.equal(r.sha256, sha(marker));
      await sniff.flush();
      sub.unsubscribe();
      const req = seen.find((m) => m.headers?.get('Pf-Cmd') === 'digest');
      assert.ok(req, 'the request was seen on the host subject');
      const payload = Buffer.from(req.data);
      assert.equal(payload[0], 0x01, 'binary form');
      assert.ok(payload.includes(marker), 'the bytes as they are');
      assert.ok(!payload.includes(Buffer.from(marker.toString('base64'))), 'no base64 copy');
    } finally {
      await sniff.close();
    }
  });

  it('binary stream items arrive as Buffers, in order', async () => {
    const got: Buffer[] = [];
    for await (const c of fleet.stream<Buffer>('chunks', { n: 5, size: 100_000 })) got.push(c);
    assert.equal(got.length, 5);
    got.forEach((c, i) => {
      assert.ok(Buffer.isBuffer(c));
      assert.equal(c.length, 100_000);
      assert.ok(c.every((b) => b === i));
    });
  });

  it('over the server max_payload (1 MiB here): args refused at the call site, a result refused on the host; neither is chunked', async () => {
    const e = await rejection(fleet.execute('digest', { data: Buffer.alloc(3 * 1024 * 1024) }));
    assert.equal(e.code, 'PYFLEET_FRAME_TOO_LARGE');
    assert.equal(e.taken, false);
    assert.match(e.message, /max_payload is 1048576/);
    const r = await rejection(fleet.execute('blob', { n: 3 * 1024 * 1024 }));
    assert.equal(r.code, 'PYFLEET_FRAME_TOO_LARGE');
    assert.equal(r.taken, true);
    assert.match(r.message, /cannot be sent back/);
    const ok = await fleet.execute<{ nbytes: number }>('digest', { data: Buffer.alloc(900 * 1024, 7) });
    assert.equal(ok.nbytes, 900 * 1024);
  });

  it('a few MiB each way on a server whose max_payload allows it, byte for byte', async () => {
    const data = new Float64Array(512 * 1024).map((_, i) => i * 0.25 - 7); // 4 MiB
    const r = await bigFleet.execute<{ sha256: string; nbytes: number; format: string; doubled: Float64Array }>('digest', { data, double: true });
    assert.equal(r.nbytes, 4 * 1024 * 1024);
    assert.equal(r.format, 'd');
    assert.equal(r.sha256, sha(data));
    assert.ok(r.doubled instanceof Float64Array);
    assert.equal(r.doubled.length, data.length);
    assert.ok(r.doubled.every((x, i) => x === data[i] * 2));
    const blob = await bigFleet.execute<Buffer>('blob', { n: 5 * 1024 * 1024, random: true });
    assert.ok(Buffer.isBuffer(blob));
    assert.equal(blob.length, 5 * 1024 * 1024);
  });
});
