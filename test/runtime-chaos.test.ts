/**
 * Chaos faults (PYFLEET_CHAOS=1, the call's "x") applied to async and threaded calls as they are
 * to sync ones: a hang is cancellable where the handler would be, hang_uncancellable is not, the
 * other faults act the same.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RawWorker, RUNTIME_FIXTURES } from './helpers/raw-worker.js';

const HANDLERS = `${RUNTIME_FIXTURES}handlers.py`;
const chaos = (extra: Record<string, string> = {}) => RawWorker.start({ module: HANDLERS, env: { PYFLEET_CHAOS: '1', PYFLEET_CONCURRENCY: '2', ...extra } });

describe('runtime: chaos faults in async and threaded calls', () => {
  it('hang: cancelling the call ends it (sync by signal, async by task cancel, threaded by ctx.cancelled)', async () => {
    const w = await chaos();
    try {
      for (const cmd of ['add', 'aadd', 'tname']) {
        const id = w.send(cmd, { a: 1, b: 2 }, { x: { kind: 'hang' } });
        // Nothing announces that the fault is hanging: the call simply does not answer.
        await new Promise((r) => setTimeout(r, 100));
        assert.equal(w.of(id).length, 0, cmd);
        w.cancel(id);
        const m = await w.answer(id, 3000);
        assert.deepEqual([m.t, m.k], ['err', 'cancelled'], cmd);
      }
      assert.equal(await w.value('aadd', { a: 1, b: 2 }), 3);
    } finally {
      w.kill();
    }
  });

  it('exception, sleep and garbage act in async and threaded calls; without PYFLEET_CHAOS "x" is ignored', async () => {
    const w = await chaos();
    try {
      for (const cmd of ['aadd', 'tname']) {
        const e = await w.call(cmd, { a: 1, b: 2 }, { x: { kind: 'exception' } });
        assert.match(e.e!.message, /chaos: injected exception/, cmd);
        const t0 = performance.now();
        assert.equal((await w.call(cmd, { a: 1, b: 2 }, { x: { kind: 'sleep', ms: 120 } })).t, 'ok');
        assert.ok(performance.now() - t0 >= 110, cmd);
      }
      // Garbage on fd 4: the host's decoder breaks (the pool then kills the worker).
      const g = w.send('aadd', { a: 1, b: 2 }, { x: { kind: 'garbage' } });
      await assert.rejects(w.answer(g, 3000), /worker sent a bad frame/);
      assert.match(w.frameError!.message, /not valid JSON|frame header announcing/);
    } finally {
      w.kill();
    }
    const plain = await RawWorker.start({ module: HANDLERS });
    try {
      assert.equal(await plain.value('aadd', { a: 1, b: 2 }, { x: { kind: 'kill' } }), 3);
    } finally {
      plain.kill();
    }
  });

  it('kill ends the worker from an async and from a threaded call', async () => {
    for (const cmd of ['aadd', 'tname']) {
      const w = await chaos();
      w.send(cmd, { a: 1, b: 2 }, { x: { kind: 'kill' } });
      assert.equal((await w.exited).signal, 'SIGKILL', cmd);
    }
  });

  it('hang_uncancellable in an async call does not acknowledge a cancel (the host must kill it)', async () => {
    const w = await chaos({ PYFLEET_HEARTBEAT_MS: '50' });
    try {
      const id = w.send('aadd', { a: 1, b: 2 }, { x: { kind: 'hang_uncancellable' } });
      await new Promise((r) => setTimeout(r, 100));
      w.cancel(id);
      await assert.rejects(w.answer(id, 400), /no matching message/);
      await w.next((m) => m.t === 'hb', 1000);
    } finally {
      w.kill();
    }
  });
});
