/**
 * A result or an error that cannot be sent as it is never kills or hangs a worker (issue 19,
 * item 1): from a plain `def`, an `async def`, a threaded `def` and the three kinds of generator,
 * each case is answered (a value as the table of conversions says, or an error of kind python
 * naming the path and what to do), the worker serves the next call, and a generator whose item
 * cannot be sent ends after the items already sent and is closed. The numpy cases run under an
 * interpreter with numpy (Debian's python3-numpy) and are skipped, saying so, without one.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPool } from '../src/pool/pool.js';
import { NDArray } from '../src/protocol/ndarray.js';
import { memoryLogger, rejection } from './helpers/pool.js';
import { numpyPython, RawWorker, RUNTIME_FIXTURES, withWorker, type Msg } from './helpers/raw-worker.js';

const MODULE = `${RUNTIME_FIXTURES}unsendable.py`;
const MAX_FRAME = 1 << 20;
const NUMPY = numpyPython();
const NO_NUMPY = 'numpy is not importable by python3 or /usr/bin/python3 (apt-get install python3-numpy)';

interface Case {
  args: Record<string, unknown>;
  numpy: boolean;
  /** The value as it must arrive, or the error: its Python type and a pattern of its message. */
  ok?: (v: unknown) => void;
  err?: { type: string; message: RegExp };
}

const CASES: Case[] = [
  {
    args: { case: 'empty_2d' },
    numpy: true,
    ok: (v) => {
      assert.ok(v instanceof NDArray, `an NDArray, got ${String(v)}`);
      assert.deepEqual([v.shape, v.dtype, v.data.length], [[0, 3], 'float64', 0]);
    },
  },
  { args: { case: 'datetime64' }, numpy: true, err: { type: 'TypeError', message: /cannot be sent as JSON: \$\.when is a numpy array of dtype datetime64\[D\], which JSON has no type for: return ISO strings/ } },
  { args: { case: 'timedelta64' }, numpy: true, err: { type: 'TypeError', message: /cannot be sent as JSON: \$\.took\[0\] is a numpy array of dtype timedelta64\[s\], .*astype/ } },
  { args: { case: 'datetime64_scalar' }, numpy: true, err: { type: 'TypeError', message: /cannot be sent as JSON: \$\.at is numpy\.datetime64, which JSON has no type for: return str\(v\)/ } },
  { args: { case: 'str_raises' }, numpy: false, err: { type: 'StrRaises', message: /^<the message of this StrRaises cannot be read: its __str__ raised RuntimeError: __str__ failed on purpose>$/ } },
  { args: { case: 'huge_message', n: 2 * MAX_FRAME }, numpy: false, err: { type: 'ValueError', message: /^x{65536} \[\.\.\. cut: the message was 2097152 bytes, over the 64 KiB pyfleet sends\]$/ } },
  { args: { case: 'items_raise' }, numpy: false, err: { type: 'KeyError', message: /cannot be sent as JSON: \$\.rows\[0\] could not be read: reading it raised KeyError: 'items\(\) failed on purpose'; return a JSON value/ } },
  { args: { case: 'ok' }, numpy: false, ok: (v) => assert.deepEqual(v, { fine: [1, 2.5, 'three'] }) },
];

const CALLS = ['plain', 'coro', 'threaded'];
const STREAMS = ['gen', 'agen', 'tgen'];

function checkErr(m: Msg, c: Case, what: string): void {
  assert.equal(m.t, 'err', `${what}: ${JSON.stringify(m).slice(0, 300)}`);
  assert.equal(m.k, 'python', what);
  assert.equal(m.e?.type, c.err!.type, what);
  assert.match(m.e!.message, c.err!.message, what);
}

/** Every handler kind answers case `c`; after each, the worker serves the next call. */
async function everyKind(w: RawWorker, c: Case): Promise<void> {
  for (const cmd of CALLS) {
    const m = await w.call(cmd, c.args, {}, 5000);
    if (c.ok) {
      assert.equal(m.t, 'ok', `${cmd}: ${JSON.stringify(m).slice(0, 300)}`);
      c.ok(m.v);
    } else {
      checkErr(m, c, cmd);
      if (m.e!.message.includes('cannot be sent')) assert.match(m.e!.message, new RegExp(`^the result of ${cmd} cannot be sent as JSON: `));
    }
    assert.equal(await w.value('ping'), 'pong', `${cmd}: the worker serves the next call`);
  }
  for (const cmd of STREAMS) {
    const id = w.send(cmd, c.args, { cr: 16 });
    const last = await w.answer(id, 5000);
    const got = w.of(id);
    assert.deepEqual(got[0], { t: 'item', id, v: 'first' }, `${cmd}: the item before the bad one was sent`);
    if (c.ok) {
      assert.equal(got.length, 3, cmd);
      c.ok(got[1].v);
      assert.deepEqual(last, { t: 'end', id, n: 2 }, cmd);
    } else {
      assert.equal(got.length, 2, `${cmd}: the stream ends with the error: ${JSON.stringify(got).slice(0, 400)}`);
      checkErr(last, c, cmd);
      if (last.e!.message.includes('cannot be sent')) assert.match(last.e!.message, new RegExp(`^item 1 of ${cmd} cannot be sent as JSON: `));
    }
    assert.deepEqual(await w.value('closed'), [cmd], `${cmd}: the generator was closed (its finally ran)`);
  }
  assert.equal(w.exit, null, 'the worker is alive');
  assert.deepEqual(w.invalid, []);
}

describe('runtime: results and errors that cannot be sent as they are', () => {
  // A worker per case, so that a case that kills its worker does not hide the next one.
  for (const c of CASES) {
    it(`${String(c.args.case)}: answered by every kind of handler; the worker keeps serving`, { skip: c.numpy && NUMPY === null ? NO_NUMPY : false }, async () => {
      await withWorker({ module: MODULE, python: NUMPY ?? 'python3', maxFrameBytes: MAX_FRAME }, (w) => everyKind(w, c));
    });
  }

  it('an error over a small maxFrameBytes is cut to fit, saying so, and the worker serves on', async () => {
    const small = await RawWorker.start({ module: MODULE, maxFrameBytes: 1024 });
    try {
      for (const cmd of [...CALLS, 'gen']) {
        const m = await small.call(cmd, { case: 'huge_message', n: 5000 }, cmd === 'gen' ? { cr: 4 } : {});
        assert.equal(m.t, 'err', cmd);
        assert.equal(m.e?.type, 'ValueError');
        assert.match(m.e!.message, /^x+ \[\.\.\. cut to fit maxFrameBytes\]$/);
        assert.match(m.e!.traceback, /dropped: the error did not fit in maxFrameBytes/);
        assert.equal(await small.value('ping'), 'pong');
      }
    } finally {
      small.kill();
    }
  });
});

describe('pool: a result that cannot be sent is a python_error, and no worker dies', () => {
  it('from def, async def, threaded def and a generator: PYFLEET_PYTHON_ERROR naming the path; the same worker serves on', { skip: NUMPY === null ? NO_NUMPY : false }, async () => {
    const pool = await createPool({ module: MODULE, python: NUMPY!, workers: 1, concurrency: 4, logger: memoryLogger() });
    try {
      const pid = pool.stats().workers[0].pid;
      for (const cmd of CALLS) {
        const err = await rejection(pool.execute(cmd, { case: 'datetime64' }));
        assert.equal(err.code, 'PYFLEET_PYTHON_ERROR', err.message);
        assert.equal(err.category, 'python_error');
        assert.match(err.message, new RegExp(`^${cmd} raised TypeError: the result of ${cmd} cannot be sent as JSON: \\$\\.when is a numpy array of dtype datetime64\\[D\\].*return ISO strings`));
        assert.equal(await pool.execute('ping'), 'pong');
      }
      const seen: unknown[] = [];
      const err = await rejection(
        (async () => {
          for await (const item of pool.stream('gen', { case: 'timedelta64' })) seen.push(item);
        })(),
      );
      assert.deepEqual(seen, ['first']);
      assert.equal(err.category, 'python_error');
      assert.match(err.message, /item 1 of gen cannot be sent as JSON: \$\.took\[0\]/);
      const empty = await pool.execute<NDArray>('plain', { case: 'empty_2d' });
      assert.deepEqual(empty.shape, [0, 3]);
      const s = pool.stats();
      assert.equal(s.workers.length, 1);
      assert.equal(s.workers[0].pid, pid, 'the worker that answered the errors is the one that started');
      assert.equal(s.restarts.total, 0);
    } finally {
      await pool.close();
    }
  });
});
