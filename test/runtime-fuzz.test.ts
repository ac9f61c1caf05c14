/**
 * The Python decoder fuzzed from Node through a real worker: random frames, and valid call
 * frames (plain and binary) with bytes changed, cut or extended (the length prefix always tells
 * the truth, so the stream stays in step). After each, a probe call: the worker must answer it
 * (having answered the odd frame bad_request, an error, or anything valid), or exit with code 70
 * and a reason on stderr. It must never hang, die another way, or send an invalid frame.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encodeArgs } from '../src/protocol/args.js';
import { encodeFrameParts } from '../src/protocol/frame.js';
import { NDArray } from '../src/protocol/ndarray.js';
import { RawWorker, RUNTIME_FIXTURES, type Exit, type Msg } from './helpers/raw-worker.js';

const MODULE = `${RUNTIME_FIXTURES}fuzz_handlers.py`;
const MAX = 1 << 20;
const PROBE_BASE = 2_000_000_000;

function header(n: number): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(n, 0);
  return h;
}

/** A valid call frame's payload (without its length prefix). */
const callPayload = fc
  .tuple(
    fc.integer({ min: 1, max: 1_000_000 }),
    fc.constantFrom('add', 'echo', 'aecho', 'nope'),
    fc.oneof(
      fc.jsonValue({ maxDepth: 2 }),
      fc.record({ a: fc.integer(), b: fc.integer() }),
      fc.record({ bin: fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)), f: fc.float64Array({ maxLength: 8 }) }),
      fc.float32Array({ minLength: 6, maxLength: 6 }).map((d) => ({ m: new NDArray(d, [2, 3]) })),
    ),
  )
  .map(([id, cmd, args]) => {
    const { json, parts } = encodeArgs(args);
    const frame = Buffer.concat(encodeFrameParts(`{"t":"call","id":${id},"cmd":"${cmd}","a":${json},"dl":0}`, parts, MAX));
    return frame.subarray(4);
  });

const frameCase = fc.oneof(
  // random bytes, sometimes starting like a binary frame
  fc.tuple(fc.boolean(), fc.uint8Array({ minLength: 0, maxLength: 200 })).map(([bin, b]) => Buffer.from(bin ? [1, ...b] : b)),
  // a valid call with some of its first 100 bytes changed
  fc.tuple(callPayload, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 })).map(([p, flips]) => {
    const b = Buffer.from(p);
    for (const [at, v] of flips) b[at % Math.min(100, b.length)] = v;
    return b;
  }),
  // a valid call cut short or extended
  fc.tuple(callPayload, fc.integer({ min: -40, max: 40 })).map(([p, d]) => (d < 0 ? p.subarray(0, Math.max(0, p.length + d)) : Buffer.concat([p, Buffer.alloc(d, 0x20)]))),
  // a binary call whose JSON length field lies
  fc.tuple(callPayload, fc.integer({ min: 0, max: 0xffffffff })).map(([p, j]) => {
    const b = Buffer.from(p);
    if (b[0] === 1 && b.length >= 5) b.writeUInt32BE(j, 1);
    return b;
  }),
);

describe('runtime: the worker decoder under fuzzed frames', () => {
  let w: RawWorker | null = null;
  let exits = 0;
  let answered = 0;
  after(() => w?.kill());

  it('answers or exits 70 with a reason; never hangs, never dies silently', async (t) => {
    let probe = PROBE_BASE;
    await fc.assert(
      fc.asyncProperty(frameCase, async (payload) => {
        w ??= await RawWorker.start({ module: MODULE, maxFrameBytes: MAX });
        const worker = w;
        const before = worker.messages.length;
        worker.write([header(payload.length), payload]);
        const id = probe++;
        worker.write(encodeFrameParts(`{"t":"call","id":${id},"cmd":"add","a":{"a":1,"b":2},"dl":0}`, [], MAX));
        const outcome: { answer: Msg } | { exit: Exit } | { error: Error } = await worker.answer(id, 5000).then(
          (m) => ({ answer: m }),
          // The answer's wait fails when the process exits, or after 5 s without an answer (a hang).
          async (e: Error) => (worker.exit !== null ? { exit: await worker.exited } : { error: e }),
        );
        if ('error' in outcome) assert.fail(`the worker neither answered the probe nor exited: ${outcome.error.message}; frame ${payload.toString('hex').slice(0, 200)}`);
        if ('exit' in outcome) {
          assert.equal(outcome.exit.code, 70, `exit ${JSON.stringify(outcome.exit)}; stderr ${worker.stderr}; frame ${payload.toString('hex').slice(0, 200)}`);
          assert.match(worker.stderr, /^pyfleet worker: .+; exiting$/m);
          exits++;
          w = null;
          return;
        }
        assert.deepEqual(outcome.answer.v, 3, JSON.stringify(outcome.answer));
        answered++;
        assert.deepEqual(worker.invalid, []);
        assert.equal(worker.frameError, null);
        // Whatever it said about the odd frame is a well-formed protocol message.
        for (const m of worker.messages.slice(before)) assert.ok(['ok', 'err', 'end', 'item', 'snap', 'hb'].includes(m.t), JSON.stringify(m));
      }),
      { numRuns: 200, seed: 0x5eed },
    );
    t.diagnostic(`${answered} probes answered after an odd frame, ${exits} exits with code 70`);
    assert.ok(answered > 60, `${answered} answered, ${exits} exits`);
  });
});
