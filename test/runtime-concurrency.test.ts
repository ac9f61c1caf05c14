/**
 * Concurrency inside one worker: async handlers as real asyncio tasks, threaded handlers on the
 * worker's thread pool, plain calls arriving meanwhile, @on_start / @on_stop hooks.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { lines, tempFile, until } from './helpers/pool.js';
import { RawWorker, RUNTIME_FIXTURES } from './helpers/raw-worker.js';

const HANDLERS = `${RUNTIME_FIXTURES}handlers.py`;

describe('runtime: async handlers', () => {
  let w: RawWorker;
  before(async () => {
    w = await RawWorker.start({ module: HANDLERS });
  });
  after(async () => {
    assert.deepEqual(w.invalid, []);
    w.kill();
    await w.exited;
  });

  it('run as asyncio tasks: current_task(), asyncio.timeout() and contextvars work inside', async () => {
    assert.deepEqual(await w.value('atask'), { task: true, same: true });
    assert.equal(await w.value('atimeout', { ms: 20 }), 'timed out');
    // Each task has its own context: a value set in one is not seen by the other running meanwhile.
    const ids = ['red', 'green', 'blue'].map((v) => w.send('actxvar', { v, ms: 30 }));
    const got = await Promise.all(ids.map((id) => w.answer(id)));
    assert.deepEqual(
      got.map((m) => m.v),
      [
        { before: 'unset', after: 'red' },
        { before: 'unset', after: 'green' },
        { before: 'unset', after: 'blue' },
      ],
    );
  });

  it('200 calls awaiting asyncio.sleep(0.05) at once finish well under 150 ms', async () => {
    await w.value('aadd', { a: 1, b: 1 }); // the event loop exists
    const t0 = performance.now();
    const ids = Array.from({ length: 200 }, (_, i) => w.send('asleep', { ms: 50, ret: i }));
    const answers = await Promise.all(ids.map((id) => w.answer(id)));
    const took = performance.now() - t0;
    assert.deepEqual(
      answers.map((m) => m.v),
      ids.map((_, i) => i),
    );
    assert.ok(took < 130, `200 concurrent 50 ms sleeps took ${took.toFixed(1)} ms`);
  });

  it('answers an exception with its traceback from the handler down, and keeps serving', async () => {
    const m = await w.call('araise');
    assert.equal(m.k, 'python');
    assert.equal(m.e?.type, 'ValueError');
    assert.match(m.e!.traceback, /in araise/);
    assert.doesNotMatch(m.e!.traceback, /_tasks\.py/);
    assert.equal(await w.value('aadd', { a: 2, b: 3 }), 5);
  });

  it('a task a handler leaves running keeps running after the call (the loop runs while any task is pending)', async () => {
    const path = tempFile('background');
    assert.equal(await w.value('aspawn', { ms: 100, path }), 'spawned');
    assert.equal(await w.value('add', { a: 1, b: 2 }), 3, 'plain calls are answered meanwhile');
    await until(() => lines(path).length === 1, 3000);
    assert.deepEqual(lines(path), ['background-done']);
  });

  it('a plain call that arrives while tasks run is answered at once, between them', async () => {
    const slow = w.send('asleep', { ms: 300 });
    const t0 = performance.now();
    assert.equal(await w.value('add', { a: 1, b: 2 }), 3);
    assert.ok(performance.now() - t0 < 200, 'the sync call did not wait for the task');
    assert.equal((await w.answer(slow)).v, 'slept');
  });
});

describe('runtime: threaded handlers', () => {
  it('run on the worker thread pool, sized by PYFLEET_CONCURRENCY', async () => {
    const w = await RawWorker.start({ module: HANDLERS, env: { PYFLEET_CONCURRENCY: '4' } });
    try {
      assert.match(await w.value<string>('tname'), /^pyfleet-call_\d$/);
      const t0 = performance.now();
      const ids = Array.from({ length: 8 }, () => w.send('tsleep', { ms: 100 }));
      const names = (await Promise.all(ids.map((id) => w.answer(id)))).map((m) => m.v as string);
      const took = performance.now() - t0;
      assert.equal(new Set(names).size, 4, `four threads ran them: ${names}`);
      assert.ok(took >= 195 && took < 400, `8 x 100 ms on 4 threads took ${took.toFixed(0)} ms`);
      const err = await w.call('traise');
      assert.equal(err.e?.type, 'RuntimeError');
      assert.match(err.e!.traceback, /in traise/);
      assert.doesNotMatch(err.e!.traceback, /_tasks\.py/);
      // Async and threaded calls share the worker.
      const mix = [w.send('tsleep', { ms: 50 }), w.send('asleep', { ms: 50 }), w.send('aadd', { a: 1, b: 2 })];
      const got = await Promise.all(mix.map((id) => w.answer(id)));
      assert.deepEqual(
        got.map((m) => m.t),
        ['ok', 'ok', 'ok'],
      );
    } finally {
      w.kill();
    }
  });
});

describe('runtime: @on_start and @on_stop', () => {
  it('run on the worker event loop, sync and async, before hello and on a clean stop', async () => {
    const file = tempFile('hooks.txt');
    const w = await RawWorker.start({ module: `${RUNTIME_FIXTURES}hooks.py`, env: { HOOKS_FILE: file, PYFLEET_WORKER_ID: '7', PYFLEET_CONCURRENCY: '3' } });
    assert.deepEqual(readFileSync(file, 'utf8').split('\n').filter(Boolean), ['sync-start', 'async-start'], 'both ran before hello');
    assert.deepEqual(await w.value('info'), { id: 7, pid: w.pid, concurrency: 3 });
    assert.equal(await w.value('same_loop'), true, 'async handlers run on the loop the hooks ran on');
    assert.deepEqual(await w.stop(), { code: 0, signal: null });
    assert.deepEqual(readFileSync(file, 'utf8').split('\n').filter(Boolean), ['sync-start', 'async-start', 'async-stop', 'sync-stop 7']);
  });

  it('an @on_start hook that raises: init_error with its traceback, then exit', async () => {
    await assert.rejects(RawWorker.start({ module: `${RUNTIME_FIXTURES}hooks_fail.py` }), (e: Error) => {
      assert.match(e.message, /^init_error: RuntimeError: on_start failed on purpose/);
      assert.match(e.message, /in broken/);
      return true;
    });
  });
});
