/**
 * Random nested results through real workers (issue 19, item 1): at least 10,000 values per run
 * (PYFLEET_FUZZ_VALUES), nested up to 20 levels, every numpy dtype (object, structured and
 * zero-size ones included), from a plain `def`, an `async def`, a threaded `def` and a generator
 * in turn, under nonFinite 'null' and 'error'. The values are made in Python from a printed seed
 * (PYFLEET_FUZZ_SEED repeats a run); an oracle in the same fixture says what each must become
 * under the table of conversions (docs/values.md). Each value must arrive as the oracle says, or
 * fail with a python error naming the oracle's path; a worker that dies or stops answering fails
 * the run, naming the seed, the value's index and its repr. Batches of values are pipelined to
 * one worker, so the run takes seconds. Needs numpy (Debian's python3-numpy); skips without it.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { KIND_OF_DTYPE, KIND_OF_TAG } from '../src/protocol/binary.js';
import { NDArray } from '../src/protocol/ndarray.js';
import { numpyPython, RawWorker, RUNTIME_FIXTURES, type Msg, type RawWorkerOptions } from './helpers/raw-worker.js';

const MODULE = `${RUNTIME_FIXTURES}values_fuzz.py`;
const PY = numpyPython();
const COUNT = Number(process.env.PYFLEET_FUZZ_VALUES ?? 10_000);
const SEED = process.env.PYFLEET_FUZZ_SEED ?? String(Math.floor(Math.random() * 2 ** 31));
const BATCH = 500;
/** Longest wait for one answer: far above the few ms a value takes, so only a hang reaches it. */
const ANSWER_MS = 15_000;
const COMMANDS = ['fuzz_def', 'fuzz_async', 'fuzz_thread', 'fuzz_gen'];

interface Expectation {
  ok?: unknown;
  err?: string;
  repr: string;
}

/** JSON of what arrived, for a failure's message (BigInts as strings). */
const show = (v: unknown) => JSON.stringify(v, (_, x: unknown) => (typeof x === 'bigint' ? String(x) : x))?.slice(0, 500);
const hex = (v: ArrayBufferView) => Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex');
const byKey = (a: [string, unknown], b: [string, unknown]) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);

/** What arrived, in the oracle's terms (object keys sorted: JavaScript puts integer-like keys first). */
function canon(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map(canon);
  if (v instanceof NDArray) return { $: 'nd', k: KIND_OF_DTYPE[v.dtype], shape: [...v.shape], hex: hex(v.data) };
  if (Buffer.isBuffer(v)) return { $: 'bytes', hex: v.toString('hex') };
  if (ArrayBuffer.isView(v)) {
    const tag = (v as unknown as Record<symbol, string>)[Symbol.toStringTag];
    return { $: 'typed', k: tag === 'Uint8Array' ? 'B' : KIND_OF_TAG[tag], hex: hex(v) };
  }
  return { $: 'obj', items: Object.entries(v).map(([k, x]): [string, unknown] => [k, canon(x)]).sort(byKey) };
}

/** The oracle's description with its object keys sorted as canon() sorts them. */
function sorted(d: unknown): unknown {
  if (d === null || typeof d !== 'object') return d;
  if (Array.isArray(d)) return d.map(sorted);
  const o = d as Record<string, unknown>;
  if (o.$ === 'obj') return { $: 'obj', items: (o.items as Array<[string, unknown]>).map(([k, x]): [string, unknown] => [k, sorted(x)]).sort(byKey) };
  return o;
}

/** Sends values start..start+count-1 to `w` (started with `opts`) and checks each answer against the oracle. */
async function runBatch(w: RawWorker, opts: RawWorkerOptions, nonfinite: boolean, start: number, count: number, answerMs = ANSWER_MS): Promise<Record<string, number>> {
  const tally: Record<string, number> = { ok: 0, err: 0 };
  const where = (i: number, cmd: string, e: Expectation | undefined) =>
    `seed ${SEED} (PYFLEET_FUZZ_SEED=${SEED}), value ${i} via ${cmd}, nonFinite ${nonfinite ? "'error'" : "'null'"}: ${e?.repr ?? '(repr unknown)'}`;
  const expected = await w.value<Expectation[]>('fuzz_expect', { seed: SEED, start, count, nonfinite });
  w.messages.length = 0;
  const sent: Array<{ i: number; cmd: string; id: number }> = [];
  for (let i = start; i < start + count; i++) {
    const cmd = COMMANDS[i % COMMANDS.length];
    sent.push({ i, cmd, id: w.send(cmd, { seed: SEED, i }, cmd === 'fuzz_gen' ? { cr: 4 } : {}) });
  }
  for (const [n, { i, cmd, id }] of sent.entries()) {
    const e = expected[i - start];
    let last: Msg;
    try {
      last = await w.answer(id, answerMs);
    } catch (err) {
      // Calls run out of order (threads, tasks): the culprit is one of those not answered.
      const open = sent.slice(n).filter((s) => !w.of(s.id).some((m) => m.t !== 'item'));
      const culprit = await findCulprit(opts, open, answerMs);
      const c = culprit ?? { i, cmd, id, how: w.exit ? `the worker died (${JSON.stringify(w.exit)})` : `no answer within ${answerMs} ms (the worker hangs)` };
      throw new Error(`${c.how} on ${where(c.i, c.cmd, expected[c.i - start])}\n(${open.length} calls were open; ${culprit ? 'this one alone does it again' : 'none of them alone does it again'})\n${(err as Error).message}\nstderr: ${w.stderr.slice(-3000)}`);
    }
    const got = w.of(id);
    let value: unknown;
    if (cmd === 'fuzz_gen') {
      if (got[0]?.t !== 'item' || got[0].v !== 'first') assert.fail(`the stream did not start with its first item: ${show(got)}: ${where(i, cmd, e)}`);
      if (last.t === 'end') value = got[1].v;
    } else if (last.t === 'ok') {
      value = last.v;
    }
    // Messages are made only on a failure: most of a run's time would go into them.
    if (e.err !== undefined) {
      if (last.t !== 'err' || last.k !== 'python') assert.fail(`expected a refusal at ${e.err}, got ${show(last)}: ${where(i, cmd, e)}`);
      if (!last.e!.message.includes(` cannot be sent as JSON: ${e.err} `)) assert.fail(`expected the path ${e.err} in ${show(last.e!.message)}: ${where(i, cmd, e)}`);
      tally.err++;
    } else {
      if (last.t !== 'ok' && last.t !== 'end') assert.fail(`expected a value, got ${show(last)}: ${where(i, cmd, e)}`);
      const arrived = canon(value);
      const want = sorted(e.ok);
      try {
        assert.deepStrictEqual(arrived, want);
      } catch {
        assert.fail(`arrived ${show(arrived)}, the table says ${show(want)}: ${where(i, cmd, e)}`);
      }
      tally.ok++;
    }
  }
  assert.deepEqual(w.invalid, [], `invalid frames: ${where(start, 'any', undefined)}`);
  return tally;
}

/** The first of `open` that kills or hangs a worker of its own, run alone; null when none does. */
async function findCulprit(opts: RawWorkerOptions, open: Array<{ i: number; cmd: string }>, answerMs: number): Promise<{ i: number; cmd: string; how: string } | null> {
  for (const { i, cmd } of open) {
    const w = await RawWorker.start(opts);
    try {
      await w.call(cmd, { seed: SEED, i }, cmd === 'fuzz_gen' ? { cr: 4 } : {}, answerMs);
    } catch {
      return { i, cmd, how: w.exit ? `the worker died (${JSON.stringify(w.exit)})` : `no answer within ${answerMs} ms (the worker hangs)` };
    } finally {
      w.kill();
    }
  }
  return null;
}

describe('runtime: random nested results never kill or hang a worker', () => {
  const workers: RawWorker[] = [];
  after(() => {
    for (const w of workers) w.kill();
  });

  it(`${COUNT} values, depth up to 20, every numpy dtype, four kinds of handler`, { skip: PY === null ? 'numpy is not importable by /usr/bin/python3 or python3 (apt-get install python3-numpy)' : false }, async (t) => {
    t.diagnostic(`seed ${SEED} (set PYFLEET_FUZZ_SEED=${SEED} to repeat this run), ${COUNT} values, under ${PY}`);
    const t0 = performance.now();
    // Two workers, one per nonFinite mode, taking batches in turn: one batch at a time, so that
    // the run leaves a core to the test files running beside it (some of them are timing tests).
    const modes = [false, true];
    const opts = modes.map((nonfinite): RawWorkerOptions => ({ module: MODULE, python: PY!, env: nonfinite ? { PYFLEET_NON_FINITE: 'error' } : {} }));
    for (const o of opts) workers.push(await RawWorker.start(o));
    const totals = { ok: 0, err: 0 };
    for (let start = 0, lane = 0; start < COUNT; start += BATCH, lane = 1 - lane) {
      const got = await runBatch(workers[lane], opts[lane], modes[lane], start, Math.min(BATCH, COUNT - start));
      totals.ok += got.ok;
      totals.err += got.err;
    }
    assert.equal(totals.ok + totals.err, COUNT);
    for (const w of workers) assert.equal(w.exit, null, 'the workers are alive');
    t.diagnostic(`${totals.ok} values arrived as the table says, ${totals.err} were refused at the oracle's path, in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  });

  it('the harness itself reports a worker that dies or hangs on a value, with the seed and the value', { skip: PY === null ? 'numpy is not importable' : false }, async () => {
    for (const [fault, how] of [
      ['die:5', /^the worker died \(\{"code":9,"signal":null\}\) on seed \S+ \(PYFLEET_FUZZ_SEED=\S+\), value 5 via fuzz_async, nonFinite 'null': .*\n\(\d+ calls were open; this one alone does it again\)/s],
      ['hang:6', /^no answer within 1000 ms \(the worker hangs\) on seed \S+ \(PYFLEET_FUZZ_SEED=\S+\), value 6 via fuzz_thread, nonFinite 'null': .*\n\(\d+ calls were open; this one alone does it again\)/s],
    ] as const) {
      const opts: RawWorkerOptions = { module: MODULE, python: PY!, env: { PYFLEET_FUZZ_FAULT: fault } };
      const w = await RawWorker.start(opts);
      workers.push(w);
      await assert.rejects(runBatch(w, opts, false, 0, 10, 1000), (e: Error) => {
        assert.match(e.message, how);
        return true;
      });
      w.kill();
    }
  });
});
