/**
 * Streams through a real worker: credit-based backpressure (never an item beyond the credit),
 * generators of every kind, errors after items, items that cannot be encoded, binary items,
 * and plain commands called as streams.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { lines, tempFile } from './helpers/pool.js';
import { RawWorker, RUNTIME_FIXTURES, type Msg } from './helpers/raw-worker.js';

const HANDLERS = `${RUNTIME_FIXTURES}handlers.py`;

const items = (w: RawWorker, id: number): unknown[] => w.of(id).filter((m) => m.t === 'item').map((m) => m.v);
/**
 * Nothing announces that nothing more is coming, but a cancel's answer comes after every item the
 * generator sent: from the same thread that sent them, or once that thread returned. Cancels
 * stream `id` and resolves with its answer and the items that came before it.
 */
async function cancelled(w: RawWorker, id: number): Promise<{ answer: Msg; items: unknown[] }> {
  w.cancel(id, false);
  const answer = await w.answer(id);
  return { answer, items: items(w, id) };
}

describe('runtime: streams', () => {
  let w: RawWorker;
  before(async () => {
    w = await RawWorker.start({ module: HANDLERS, env: { PYFLEET_CONCURRENCY: '2' } });
  });
  after(async () => {
    assert.deepEqual(w.invalid, []);
    w.kill();
    await w.exited;
  });

  for (const cmd of ['count', 'acount', 'tcount']) {
    it(`${cmd}: sends no item beyond the credit; credit frames add to it; ends with end and the count`, async () => {
      const held = w.send(cmd, { n: 10 }, { cr: 3 });
      await w.next((m) => m.id === held && items(w, held).length === 3);
      w.credit(held, 2);
      await w.next((m) => m.id === held && items(w, held).length === 5);
      const stop = await cancelled(w, held);
      assert.equal(stop.answer.k, 'cancelled', JSON.stringify(stop.answer));
      assert.equal(stop.items.length, 5, 'no item beyond the credit (3, then 2 more) before the cancel was answered');

      const id = w.send(cmd, { n: 10 }, { cr: 3 });
      await w.next((m) => m.id === id && items(w, id).length === 3);
      w.credit(id, 100);
      const end = await w.answer(id);
      assert.deepEqual(end, { t: 'end', id, n: 10 });
      const got = items(w, id).map((v) => (typeof v === 'object' ? (v as { i: number }).i : v));
      assert.deepEqual(got, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      assert.equal(w.of(id).at(-1)!.t, 'end', 'end comes after every item');
      if (cmd === 'tcount') assert.match((items(w, id)[0] as { thread: string }).thread, /^pyfleet-call_/, 'iterated on a worker thread');
    });
  }

  it('a generator that used its last credit ends only when more credit lets it find out', async () => {
    const held = w.send('count', { n: 2 }, { cr: 2 });
    await w.next((m) => m.id === held && items(w, held).length === 2);
    await cancelled(w, held);
    assert.deepEqual(
      w.of(held).map((m) => m.t),
      ['item', 'item', 'err'],
      'no end before the cancel was answered: without credit the generator did not find out it had ended',
    );
    const id = w.send('count', { n: 2 }, { cr: 2 });
    await w.next((m) => m.id === id && items(w, id).length === 2);
    w.credit(id, 1);
    assert.deepEqual(await w.answer(id), { t: 'end', id, n: 2 });
  });

  it('starts with no credit: nothing until a credit frame', async () => {
    const held = w.send('count', { n: 2 }, { cr: 0 });
    const stop = await cancelled(w, held);
    assert.deepEqual([stop.items.length, stop.answer.k], [0, 'cancelled'], 'nothing before the cancel was answered');
    const id = w.send('count', { n: 2 }, { cr: 0 });
    w.credit(id, 5);
    assert.deepEqual(await w.answer(id), { t: 'end', id, n: 2 });
  });

  it('an exception in the generator ends the stream with its traceback, after the items sent', async () => {
    for (const [cmd, want, text] of [
      ['gen_fail', [1, 2], 'gen-boom'],
      ['agen_fail', ['a'], 'agen-boom'],
    ] as const) {
      const id = w.send(cmd, {}, { cr: 10 });
      const m = await w.answer(id);
      assert.deepEqual(items(w, id), want);
      assert.equal(m.k, 'python');
      assert.equal(m.e!.type, 'ValueError');
      assert.match(m.e!.traceback, new RegExp(`in ${cmd}[\\s\\S]*${text}`));
    }
  });

  it('an item that cannot be encoded ends the stream with an error naming it; the generator is closed; the worker serves on', async () => {
    const path = tempFile('bad-item');
    const id = w.send('gen_bad_item', { path }, { cr: 10 });
    const m = await w.answer(id);
    assert.deepEqual(items(w, id), [{ ok: 1 }]);
    assert.equal(m.k, 'python');
    assert.match(m.e!.message, /^item 1 of gen_bad_item cannot be sent as JSON: \$\.when is \{1, 2\} \(set\)/);
    assert.deepEqual(lines(path), ['bad-item-finally']);
    assert.equal(await w.value('add', { a: 1, b: 1 }), 2);
  });

  it('items may carry binary parts', async () => {
    const id = w.send('gen_bytes', { n: 3, size: 100_000 }, { cr: 4 });
    await w.answer(id);
    const got = items(w, id) as Array<{ i: number; data: Buffer }>;
    assert.deepEqual(
      got.map((x) => [x.i, Buffer.isBuffer(x.data), x.data.length, x.data[99_999]]),
      [
        [0, true, 100_000, 0],
        [1, true, 100_000, 1],
        [2, true, 100_000, 2],
      ],
    );
  });

  it('a command that is not a generator, called as a stream, yields its value once', async () => {
    for (const [cmd, args] of [
      ['add', { a: 2, b: 3 }],
      ['aadd', { a: 2, b: 3 }],
      ['tname', {}],
    ] as const) {
      const id = w.send(cmd, args, { cr: 1 });
      const end = await w.answer(id);
      assert.deepEqual(end, { t: 'end', id, n: 1 }, cmd);
      const got = items(w, id);
      assert.equal(got.length, 1, cmd);
      if (cmd !== 'tname') assert.equal(got[0], 5);
    }
  });

  it('a call that arrives while a plain generator waits for credit is queued, and answered after the stream', async () => {
    const id = w.send('count', { n: 3 }, { cr: 1 });
    await w.next((m) => m.id === id && m.t === 'item');
    const call = w.send('add', { a: 1, b: 2 });
    w.credit(id, 5);
    await w.answer(call);
    const order = w.messages.filter((m: Msg) => m.id === id || m.id === call).map((m) => `${m.id === call ? 'call' : 'stream'}:${m.t}`);
    // The whole order: a call answered while the generator waited would come before some of its items.
    assert.deepEqual(order, ['stream:item', 'stream:item', 'stream:item', 'stream:end', 'call:ok']);
  });

  it('a plain generator streams on the event loop while async calls are in flight', async () => {
    const slow = w.send('asleep', { ms: 300, ret: 'late' });
    const id = w.send('count', { n: 4 }, { cr: 10 });
    assert.deepEqual(await w.answer(id), { t: 'end', id, n: 4 });
    assert.equal(w.of(slow).length, 0, 'the stream finished while the async call slept');
    assert.equal((await w.answer(slow)).v, 'late');
  });
});
