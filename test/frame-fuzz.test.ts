/**
 * Property-based tests of the protocol decoder (FrameDecoder) and the message validator
 * (validateWorkerMessage) on random byte streams cut at random points:
 *
 * - push() never throws, whatever the bytes and however they are cut;
 * - it never holds more than maxFrameBytes + 4 bytes (plus the chunk being pushed) for an
 *   incomplete frame, so an absurd length prefix cannot make it allocate;
 * - a stream ends with messages only, or with exactly one typed FrameError
 *   (frame_too_large | bad_json | bad_message) after which nothing is delivered;
 * - the result does not depend on how the stream was cut: it equals a one-shot reference
 *   parse of the whole stream, and valid frames cut anywhere decode to the same messages;
 * - validateWorkerMessage never throws, accepts every well-formed protocol message, and
 *   names the problem of a malformed one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FrameDecoder, FrameError, encodeFrame, type FrameErrorKind } from '../src/protocol/frame.js';
import { PROTOCOL_VERSION, validateWorkerMessage } from '../src/protocol/messages.js';

const KINDS: readonly FrameErrorKind[] = ['frame_too_large', 'bad_json', 'bad_message'];
const MAX_U32 = 0xffff_ffff;

interface Outcome {
  messages: unknown[];
  error: FrameErrorKind | null;
}

function header(len: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(len, 0);
  return b;
}

/** What the whole stream must decode to, parsed in one go, the obvious way. */
function reference(stream: Buffer, maxFrameBytes: number): Outcome {
  const messages: unknown[] = [];
  let off = 0;
  while (stream.length - off >= 4) {
    const len = stream.readUInt32BE(off);
    if (len > maxFrameBytes) return { messages, error: 'frame_too_large' };
    if (stream.length - off - 4 < len) break;
    let msg: unknown;
    try {
      msg = JSON.parse(stream.toString('utf8', off + 4, off + 4 + len));
    } catch {
      return { messages, error: 'bad_json' };
    }
    if (typeof msg !== 'object' || msg === null || typeof (msg as { t?: unknown }).t !== 'string') return { messages, error: 'bad_message' };
    messages.push(msg);
    off += 4 + len;
  }
  return { messages, error: null };
}

/** Cuts `stream` at `cuts` (positions taken modulo its length, empty chunks included). */
function cut(stream: Buffer, cuts: number[]): Buffer[] {
  if (stream.length === 0) return [stream];
  const at = cuts.map((c) => c % (stream.length + 1)).sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let prev = 0;
  for (const c of at) {
    chunks.push(stream.subarray(prev, c));
    prev = c;
  }
  chunks.push(stream.subarray(prev));
  return chunks;
}

/** Feeds the chunks one by one (each a fresh buffer, as a stream delivers them), checking the invariants after every push. */
function decode(chunks: Buffer[], maxFrameBytes: number): Outcome {
  const messages: unknown[] = [];
  const errors: FrameError[] = [];
  let afterError = 0;
  const d = new FrameDecoder(maxFrameBytes, {
    onMessage: (m) => {
      if (errors.length > 0) afterError++;
      messages.push(m);
    },
    onError: (e) => {
      if (errors.length > 0) afterError++;
      errors.push(e);
    },
  });
  for (const chunk of chunks) {
    assert.doesNotThrow(() => d.push(Buffer.from(chunk)));
    assert.ok(d.buffered <= maxFrameBytes + 4 + chunk.length, `buffered ${d.buffered} > maxFrameBytes + 4 + chunk (${maxFrameBytes} + 4 + ${chunk.length})`);
    assert.ok(d.buffered < maxFrameBytes + 4, `buffered ${d.buffered} bytes for one incomplete frame, limit ${maxFrameBytes} + 4`);
    if (errors.length > 0) {
      assert.equal(d.broken, true);
      assert.equal(d.buffered, 0, 'a broken decoder holds nothing');
    }
  }
  assert.equal(afterError, 0, 'nothing is delivered after the error');
  assert.ok(errors.length <= 1, `${errors.length} errors: a stream ends with at most one`);
  const err = errors[0];
  if (err !== undefined) {
    assert.ok(err instanceof FrameError);
    assert.ok(KINDS.includes(err.kind), `unknown kind ${err.kind}`);
    assert.equal(typeof err.message, 'string');
    // Once broken, it stays silent whatever follows.
    const delivered = messages.length + errors.length;
    d.push(encodeFrame('{"t":"hb"}', maxFrameBytes));
    assert.equal(messages.length + errors.length, delivered);
  }
  for (const m of messages) {
    assert.equal(typeof m, 'object');
    assert.equal(typeof (m as { t?: unknown }).t, 'string');
    // Whatever the decoder lets through, the validator judges without throwing.
    const verdict = validateWorkerMessage(m as { t: string } & Record<string, unknown>);
    assert.ok(verdict === null || typeof verdict === 'string');
  }
  return { messages, error: err?.kind ?? null };
}

// ---- generators -------------------------------------------------------------

const exception = fc.record({ type: fc.string({ maxLength: 12 }), message: fc.string({ maxLength: 30 }), traceback: fc.string({ maxLength: 60 }) });
const requestId = fc.integer({ min: 0, max: 2 ** 31 });

/** Every message a worker may send, well-formed. */
const validMessage = fc.oneof(
  fc.record({ t: fc.constant('ok'), id: requestId, v: fc.jsonValue({ maxDepth: 3 }) }),
  fc.record({ t: fc.constant('err'), id: requestId, k: fc.constantFrom('python', 'cancelled', 'unknown_command', 'bad_request'), e: exception }),
  fc.constant({ t: 'hb' }),
  fc.record({
    t: fc.constant('hello'),
    protocol: fc.constant(PROTOCOL_VERSION),
    pid: fc.integer({ min: 1, max: 4_194_304 }),
    python: fc.constantFrom('3.11.7', '3.12.1', '3.8.18'),
    commands: fc.dictionary(fc.string({ minLength: 1, maxLength: 10 }), fc.record({ idempotent: fc.boolean() }), { maxKeys: 5 }),
  }),
  fc.record({ t: fc.constant('init_error'), e: exception }),
);

/** One piece of a stream: good frames, bad frames, and bytes that are not frames at all. */
const segment = (maxFrameBytes: number): fc.Arbitrary<Buffer> =>
  fc.oneof(
    { weight: 5, arbitrary: validMessage.map((m) => Buffer.concat([header(Buffer.byteLength(JSON.stringify(m))), Buffer.from(JSON.stringify(m))])) },
    // a frame whose body is not JSON (random bytes, often invalid UTF-8)
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 40 }).map((b) => Buffer.concat([header(b.length), Buffer.from(b)])) },
    // a frame whose body is JSON but not a protocol message (a number, an array, an object without "t", "t" not a string)
    {
      weight: 1,
      arbitrary: fc
        .oneof(fc.jsonValue({ maxDepth: 2 }), fc.record({ t: fc.oneof(fc.integer(), fc.constant(null), fc.boolean()) }), fc.record({ id: requestId }))
        .map((v) => Buffer.from(JSON.stringify(v) ?? 'null'))
        .map((b) => Buffer.concat([header(b.length), b])),
    },
    // a JSON object with a string "t" that is not one of ours, or one of ours with missing fields
    {
      weight: 1,
      arbitrary: fc
        .record({ t: fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom('ok', 'err', 'hello', 'init_error')), id: fc.oneof(requestId, fc.double(), fc.string()) }, { requiredKeys: ['t'] })
        .map((v) => Buffer.from(JSON.stringify(v)))
        .map((b) => Buffer.concat([header(b.length), b])),
    },
    // a length prefix over the limit, up to the largest a u32 can say
    { weight: 1, arbitrary: fc.integer({ min: maxFrameBytes + 1, max: MAX_U32 }).map(header) },
    // a length prefix whose body never fully arrives (only meaningful last: in the middle it swallows what follows)
    { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 1, max: maxFrameBytes }), fc.nat({ max: 20 })).map(([len, have]) => Buffer.concat([header(len), Buffer.alloc(Math.min(have, len - 1), 0x20)])) },
    // bytes that are not frames
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 16 }).map((b) => Buffer.from(b)) },
  );

const maxFrame = fc.integer({ min: 16, max: 512 });
const cuts = fc.array(fc.nat(), { maxLength: 24 });

// ---- properties -------------------------------------------------------------

test('random bytes cut anywhere: no throw, bounded buffer, at most one typed error, same result as a one-shot parse', () => {
  fc.assert(
    fc.property(maxFrame, fc.uint8Array({ maxLength: 600 }), cuts, (max, bytes, at) => {
      const stream = Buffer.from(bytes);
      assert.deepEqual(decode(cut(stream, at), max), reference(stream, max));
    }),
    { numRuns: 400 },
  );
});

test('streams of good and bad frames cut anywhere decode exactly as the whole stream does', () => {
  fc.assert(
    fc.property(
      maxFrame.chain((max) => fc.tuple(fc.constant(max), fc.array(segment(max), { maxLength: 12 }), cuts)),
      ([max, segments, at]) => {
        const stream = Buffer.concat(segments);
        const want = reference(stream, max);
        assert.deepEqual(decode(cut(stream, at), max), want);
        // and exactly as when it comes in one piece, or one byte at a time
        assert.deepEqual(decode([stream], max), want);
        if (stream.length <= 400) assert.deepEqual(decode(cut(stream, Array.from({ length: stream.length }, (_, i) => i)), max), want);
      },
    ),
    { numRuns: 500 },
  );
});

test('every error kind is reachable and typed', () => {
  const max = 64;
  const cases: Array<[Buffer, FrameErrorKind]> = [
    [header(max + 1), 'frame_too_large'],
    [header(MAX_U32), 'frame_too_large'],
    [Buffer.concat([header(3), Buffer.from('{x}')]), 'bad_json'],
    [Buffer.concat([header(2), Buffer.from([0xff, 0xfe])]), 'bad_json'],
    [Buffer.concat([header(2), Buffer.from('42')]), 'bad_message'],
    [Buffer.concat([header(8), Buffer.from('{"t":12}')]), 'bad_message'],
    [Buffer.concat([header(4), Buffer.from('null')]), 'bad_message'],
  ];
  for (const [stream, kind] of cases) {
    for (let split = 0; split <= stream.length; split++) {
      assert.deepEqual(decode([stream.subarray(0, split), stream.subarray(split)], max), { messages: [], error: kind });
    }
  }
  assert.throws(() => encodeFrame('x'.repeat(max + 1), max), (e: unknown) => e instanceof FrameError && e.kind === 'frame_too_large');
});

test('valid frames cut anywhere decode to the same messages, each accepted by the validator', () => {
  fc.assert(
    fc.property(fc.array(validMessage, { minLength: 1, maxLength: 20 }), cuts, (msgs, at) => {
      const max = 1 << 20;
      const stream = Buffer.concat(msgs.map((m) => encodeFrame(JSON.stringify(m), max)));
      const got = decode(cut(stream, at), max);
      assert.equal(got.error, null);
      assert.deepEqual(got.messages, msgs.map((m) => JSON.parse(JSON.stringify(m)) as unknown));
      for (const m of got.messages) assert.equal(validateWorkerMessage(m as { t: string } & Record<string, unknown>), null, JSON.stringify(m));
    }),
    { numRuns: 400 },
  );
});

test('a frame of exactly maxFrameBytes is accepted, one byte more is refused before its body arrives', () => {
  fc.assert(
    fc.property(fc.integer({ min: 24, max: 4096 }), cuts, (max, at) => {
      const body = `{"t":"ok","id":1,"v":"${'a'.repeat(max - 24)}"}`;
      assert.equal(Buffer.byteLength(body), max);
      const ok = decode(cut(encodeFrame(body, max), at), max);
      assert.deepEqual(ok, { messages: [JSON.parse(body)], error: null });
      // Only the header of the oversized frame is sent: the decoder must refuse it without waiting for (or holding) the body.
      assert.deepEqual(decode(cut(header(max + 1), at), max), { messages: [], error: 'frame_too_large' });
    }),
    { numRuns: 200 },
  );
});

test('validateWorkerMessage never throws and names what is wrong', () => {
  fc.assert(
    fc.property(
      fc.oneof(fc.string({ maxLength: 10 }), fc.constantFrom('ok', 'err', 'hb', 'hello', 'init_error')),
      fc.dictionary(fc.constantFrom('id', 'k', 'e', 'v', 'pid', 'python', 'protocol', 'commands', 'x'), fc.anything({ maxDepth: 2 }), { maxKeys: 6 }),
      (t, fields) => {
        const m = { ...fields, t } as { t: string } & Record<string, unknown>;
        let verdict: string | null = 'not run';
        assert.doesNotThrow(() => {
          verdict = validateWorkerMessage(m);
        });
        assert.ok(verdict === null || (typeof verdict === 'string' && verdict.length > 0));
      },
    ),
    { numRuns: 1000 },
  );

  // Well-formed messages with one field broken are refused, with a reason.
  const broken = fc.oneof(
    fc.record({ t: fc.constant('ok'), id: fc.oneof(fc.double({ noInteger: true }), fc.string(), fc.constant(null)) }),
    fc.record({ t: fc.constant('err'), id: requestId, k: fc.string().filter((k) => !['python', 'cancelled', 'unknown_command', 'bad_request'].includes(k)), e: exception }),
    fc.record({ t: fc.constant('err'), id: requestId, k: fc.constant('python'), e: fc.oneof(fc.constant(null), fc.record({ type: fc.string() })) }),
    fc.record({ t: fc.constant('hello'), protocol: fc.integer().filter((p) => p !== PROTOCOL_VERSION), pid: fc.nat(), python: fc.constant('3.11.7'), commands: fc.constant({}) }),
    fc.record({ t: fc.constant('hello'), protocol: fc.constant(PROTOCOL_VERSION), pid: fc.nat(), python: fc.constant('3.11.7'), commands: fc.oneof(fc.constant(null), fc.array(fc.nat()), fc.constant({ add: { idempotent: 'yes' } })) }),
    fc.record({ t: fc.constant('init_error'), e: fc.oneof(fc.constant(undefined), fc.string()) }),
    fc.string({ minLength: 1, maxLength: 10 }).filter((t) => !['ok', 'err', 'hb', 'hello', 'init_error'].includes(t)).map((t) => ({ t })),
  );
  fc.assert(
    fc.property(broken, (m) => {
      const verdict = validateWorkerMessage(m as { t: string } & Record<string, unknown>);
      assert.equal(typeof verdict, 'string', JSON.stringify(m));
    }),
    { numRuns: 500 },
  );
});
