/**
 * The worker runtime driven frame by frame (no pool): hello, ids, malformed calls from the
 * host, v1-shaped calls, and the plain `def` path.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { encodeFrame } from '../src/protocol/frame.js';
import { RawWorker, RUNTIME_FIXTURES } from './helpers/raw-worker.js';

const HANDLERS = `${RUNTIME_FIXTURES}handlers.py`;

describe('runtime: hello and calls', () => {
  let w: RawWorker;
  before(async () => {
    w = await RawWorker.start({ module: HANDLERS });
  });
  after(async () => {
    assert.deepEqual(w.invalid, [], 'every message the worker sent is valid');
    w.kill();
    await w.exited;
  });

  it('says hello with protocol 3 and each command kind, stream, timeout, maxConcurrency and session', () => {
    const h = w.hello!;
    assert.equal(h.protocol, 3);
    assert.equal(h.pid, w.pid);
    assert.match(h.python, /^3\.\d+\.\d+/);
    const c = h.commands;
    assert.deepEqual(c.add, { idempotent: true, kind: 'sync', stream: false, timeout: null, maxConcurrency: null, session: 'rw' });
    assert.deepEqual(c.limited, { idempotent: true, kind: 'async', stream: false, timeout: 1.5, maxConcurrency: 2, session: 'rw' });
    assert.equal(c.aadd.kind, 'async');
    assert.equal(c.tname.kind, 'thread');
    assert.deepEqual([c.count.kind, c.count.stream], ['sync', true]);
    assert.deepEqual([c.acount.kind, c.acount.stream], ['async', true]);
    assert.deepEqual([c.tcount.kind, c.tcount.stream], ['thread', true]);
    assert.equal(c.sess_read.session, 'read');
  });

  it('gives the handler the call id (the same on every attempt) and the attempt number; defaults them for a call without cid/at', async () => {
    const id = w.newId();
    const first = await w.value<Record<string, unknown>>('ctx_info', null, { id, cid: 'call-77', at: 3 });
    assert.equal(first.request_id, 'call-77');
    assert.equal(first.attempt, 3);
    assert.equal(first.cancelled, false);
    // A v1 host sends neither: the request id is the call id, the attempt is 1.
    const id2 = w.newId();
    const v1 = await w.value<Record<string, unknown>>('ctx_info', null, { id: id2 });
    assert.deepEqual([v1.request_id, v1.attempt], [id2, 1]);
    assert.ok(typeof v1.deadline === 'number' && Math.abs((v1.deadline as number) * 1000 - (Date.now() + 60_000)) < 5_000);
    const a = await w.value<Record<string, unknown>>('actx', null, { cid: 5, at: 2 });
    assert.deepEqual(a, { request_id: 5, attempt: 2, cancelled: false });
  });

  it('answers a plain call exactly as protocol 1 did (one ok frame)', async () => {
    const id = w.send('add', { a: 2, b: 40 });
    assert.deepEqual(await w.answer(id), { t: 'ok', id, v: 42 });
    assert.deepEqual(w.of(id), [{ t: 'ok', id, v: 42 }]);
  });

  it('answers unknown commands, handler exceptions and malformed calls, and keeps serving', async () => {
    const unknown = await w.call('nope');
    assert.equal(unknown.k, 'unknown_command');
    const boom = await w.call('boom');
    assert.equal(boom.k, 'python');
    assert.equal(boom.e?.type, 'KeyError');
    assert.match(boom.e!.traceback, /missing-key/);
    assert.doesNotMatch(boom.e!.traceback, /_runtime\.py/, 'the traceback starts at the handler');
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ t: 'call', id: 9001, a: null, dl: 0 }, /no command name/],
      [{ t: 'call', id: 9002, cmd: 'add', a: {}, dl: 0, sid: 12 }, /sid is not a string/],
      [{ t: 'call', id: 9003, cmd: 'count', a: {}, dl: 0, cr: -1 }, /credit/],
      [{ t: 'call', id: 9004, cmd: 'count', a: { n: 1 }, dl: 0 }, /must be called as a stream/],
      [{ t: 'call', id: 9005, cmd: 'acount', a: { n: 1 }, dl: 0 }, /must be called as a stream/],
      [{ t: 'call', id: 9006, cmd: 'tcount', a: { n: 1 }, dl: 0 }, /must be called as a stream/],
    ];
    for (const [msg, why] of cases) {
      w.post(msg);
      const m = await w.answer(msg.id as number);
      assert.equal(m.k, 'bad_request', JSON.stringify(msg));
      assert.match(m.e!.message, why);
    }
    // Bytes that are not JSON, from which the call's id can be read.
    const raw = Buffer.from('{"t":"call","id":9010,"cmd":"add","a":{oops}');
    w.write([Buffer.from([0, 0, 0, raw.length]), raw]);
    assert.equal((await w.answer(9010)).k, 'bad_request');
    assert.equal(await w.value('add', { a: 1, b: 1 }), 2);
  });

  it('ignores a cancel of a finished call, and a credit of an unknown stream', async () => {
    const id = w.send('add', { a: 1, b: 2 });
    await w.answer(id);
    w.cancel(id);
    w.credit(424242, 5);
    assert.equal(await w.value('add', { a: 3, b: 4 }), 7);
    assert.equal(w.of(id).length, 1);
  });

  it('answers arguments nested too deeply for Python as RecursionError', async () => {
    const json = `${'['.repeat(5000)}1${']'.repeat(5000)}`;
    w.write(encodeFrame(`{"t":"call","id":9100,"cmd":"echo","a":${json},"dl":0}`, 1 << 26));
    const m = await w.answer(9100);
    assert.equal(m.e?.type, 'RecursionError');
    assert.equal(await w.value('add', { a: 1, b: 1 }), 2);
  });
});

describe('runtime: what the worker cannot answer', () => {
  it('exits with code 70 and the reason on stderr when a frame has no readable id', async () => {
    const w = await RawWorker.start({ module: HANDLERS });
    w.write(encodeFrame('{"garbage": true', 1024));
    const exit = await w.exited;
    assert.equal(exit.code, 70);
    assert.match(w.stderr, /pyfleet worker: .*not JSON.*exiting/);
  });

  it('answers a frame over maxFrameBytes bad_request when its id is readable, skips its body and keeps serving', async () => {
    const w = await RawWorker.start({ module: HANDLERS, maxFrameBytes: 65536 });
    try {
      const body = Buffer.from(`{"t":"call","id":77,"cmd":"echo","a":"${'x'.repeat(300_000)}","dl":0}`);
      const head = Buffer.alloc(4);
      head.writeUInt32BE(body.length, 0);
      w.write([head, body]);
      const m = await w.answer(77);
      assert.equal(m.k, 'bad_request');
      assert.match(m.e!.message, /over maxFrameBytes/);
      assert.equal(await w.value('add', { a: 1, b: 2 }), 3);
    } finally {
      w.kill();
    }
  });

  it('exits 70 on a frame over maxFrameBytes without an id', async () => {
    const w = await RawWorker.start({ module: HANDLERS, maxFrameBytes: 65536 });
    const head = Buffer.alloc(4);
    head.writeUInt32BE(300_000, 0);
    w.write([head, Buffer.alloc(64, 0x20)]);
    assert.equal((await w.exited).code, 70);
    assert.match(w.stderr, /over maxFrameBytes/);
  });

  it('exits cleanly (code 0) when the host closes fd 3, even in the middle of a frame', async () => {
    const w = await RawWorker.start({ module: HANDLERS });
    const head = Buffer.alloc(4);
    head.writeUInt32BE(500_000, 0);
    w.write([head, Buffer.alloc(100_000, 0x20)]);
    assert.deepEqual(await w.stop(), { code: 0, signal: null });
  });
});
