/**
 * Cancellation of every kind of call (sync, async, threaded, streams), each proving that the
 * handler's finally ran and that the worker stays in service; heartbeats while an async handler
 * blocks the event loop, and the SIGUSR1 path interrupting it.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { lines, tempFile, until } from './helpers/pool.js';
import { RawWorker, RUNTIME_FIXTURES } from './helpers/raw-worker.js';

const HANDLERS = `${RUNTIME_FIXTURES}handlers.py`;

/** Waits until the handler wrote its `count`-th line to `path` (its start mark): nothing else tells. */
const started = (path: string, count = 1): Promise<void> => until(() => lines(path).length >= count, 5000, 5);

describe('runtime: cancellation', () => {
  let w: RawWorker;
  let pid: number;
  before(async () => {
    w = await RawWorker.start({ module: HANDLERS, env: { PYFLEET_CONCURRENCY: '2' } });
    pid = w.pid;
  });
  after(async () => {
    assert.deepEqual(w.invalid, []);
    assert.equal(await w.value('pid'), pid, 'the same process served every test');
    w.kill();
    await w.exited;
  });

  it('sync: SIGUSR1 raises Cancelled in the handler, its finally runs, the worker acknowledges', async () => {
    const path = tempFile('sync');
    const id = w.send('sleep', { ms: 10_000, path });
    await started(path);
    const t0 = performance.now();
    w.cancel(id);
    const m = await w.answer(id);
    assert.deepEqual([m.t, m.k], ['err', 'cancelled']);
    assert.ok(performance.now() - t0 < 1000);
    assert.deepEqual(lines(path), ['sync-start', 'sync-finally']);
  });

  it('a call cancelled while it waits behind another is answered cancelled without running', async () => {
    const path = tempFile('queued');
    const firstPath = tempFile('first');
    const first = w.send('sleep', { ms: 200, path: firstPath });
    const second = w.send('sleep', { ms: 10_000, path });
    await started(firstPath);
    // As the pool does: the frame, then SIGUSR1. The signal handler reads the cancel while the
    // first call runs (without the signal, the worker could start the second before reading it).
    w.cancel(second);
    assert.equal((await w.answer(first)).v, 'slept', 'the call running is not the one cancelled');
    const m = await w.answer(second);
    assert.equal(m.k, 'cancelled');
    assert.match(m.e!.message, /before it started/);
    assert.deepEqual(lines(path), []);
  });

  it('async: the task is cancelled (CancelledError inside, finally runs); no signal needed', async () => {
    const path = tempFile('async');
    const id = w.send('asleep', { ms: 10_000, path });
    const other = w.send('asleep', { ms: 100, ret: 'other' });
    await started(path);
    w.cancel(id, false);
    const m = await w.answer(id);
    assert.deepEqual([m.t, m.k], ['err', 'cancelled']);
    assert.deepEqual(lines(path), ['async-start', 'async-cancelled', 'async-finally']);
    assert.equal((await w.answer(other)).v, 'other', 'cancelling one task cancels that task only');
  });

  it('threaded: ctx.cancelled becomes true; the answer is what the handler then returns, or cancelled if it raises Cancelled', async () => {
    const path = tempFile('thread');
    const a = w.send('twait', { ms: 10_000, path });
    await started(path);
    w.cancel(a);
    const ma = await w.answer(a);
    assert.deepEqual([ma.t, ma.v], ['ok', 'noticed']);
    const b = w.send('twait', { ms: 10_000, path, raise: true });
    await started(path, 3);
    w.cancel(b);
    const mb = await w.answer(b);
    assert.deepEqual([mb.t, mb.k], ['err', 'cancelled']);
    assert.deepEqual(lines(path), ['thread-start', 'thread-finally', 'thread-start', 'thread-finally']);
  });

  it('streams: a cancel closes the generator (finally runs) whether it is producing or waiting for credit', async () => {
    for (const [cmd, token] of [
      ['count', 'gen-finally'],
      ['acount', 'agen-finally'],
      ['tcount', 'tgen-finally'],
    ] as const) {
      // Producing slowly, with credit to spare.
      const p1 = tempFile(cmd);
      const s1 = w.send(cmd, { n: 1000, ms: 20, path: p1 }, { cr: 1000 });
      await w.next((m) => m.id === s1 && m.t === 'item' && m.v !== 0 && (m.v as { i?: number }).i !== 0);
      w.cancel(s1);
      const e1 = await w.answer(s1);
      assert.deepEqual([e1.t, e1.k], ['err', 'cancelled'], cmd);
      assert.deepEqual(lines(p1), [token], cmd);
      // Out of credit: suspended at a yield.
      const p2 = tempFile(`${cmd}-credit`);
      const s2 = w.send(cmd, { n: 1000, path: p2 }, { cr: 2 });
      await w.next((m) => m.id === s2 && m.t === 'item' && w.of(s2).length === 2);
      // Nothing announces that nothing more is coming: give it time to overstep, then look.
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(w.of(s2).length, 2, `${cmd}: never beyond its credit`);
      w.cancel(s2);
      const e2 = await w.answer(s2);
      assert.deepEqual([e2.t, e2.k], ['err', 'cancelled'], cmd);
      assert.deepEqual(lines(p2), [token], cmd);
    }
  });
});

describe('runtime: an async handler that blocks the event loop', () => {
  it('heartbeats keep flowing, and SIGUSR1 interrupts it: cancelled, finally run, the worker stays in service', async () => {
    const w = await RawWorker.start({ module: HANDLERS, heartbeatMs: 50 });
    try {
      const path = tempFile('block');
      const other = w.send('asleep', { ms: 100, ret: 'after' });
      const id = w.send('ablock', { ms: 10_000, path });
      await started(path);
      const t1 = performance.now();
      for (let i = 0; i < 8; i++) await w.next((m) => m.t === 'hb', 1000);
      const beatsMs = performance.now() - t1;
      assert.ok(beatsMs < 800, `8 heartbeats of 50 ms took ${beatsMs.toFixed(0)} ms while the loop was blocked`);
      assert.equal(w.of(id).length, 0, 'the handler still blocks');
      const t0 = performance.now();
      w.cancel(id);
      const m = await w.answer(id, 3000);
      assert.deepEqual([m.t, m.k], ['err', 'cancelled']);
      assert.ok(performance.now() - t0 < 500, 'acknowledged at once');
      assert.deepEqual(lines(path), ['block-start', 'block-finally']);
      assert.equal((await w.answer(other)).v, 'after', 'the other task resumes once the loop is free');
      assert.equal(await w.value('aadd', { a: 1, b: 1 }), 2);
      assert.equal(await w.value('add', { a: 1, b: 1 }), 2);
    } finally {
      w.kill();
    }
  });
});
