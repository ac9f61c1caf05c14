/**
 * Property-based tests of the protocol decoder (FrameDecoder) and the message validator
 * (validateWorkerMessage) on random byte streams cut at random points:
 *
 * - push() never throws, whatever the bytes and however they are cut;
 * - it never holds more than maxFrameBytes + 4 bytes (plus the chunk being pushed) for an
 *   incomplete frame, so an absurd length prefix cannot make it allocate;
 * - a stream ends with messages only, or with exactly one typed FrameError
 *   (frame_too_large | bad_json | bad_message | bad_binary) after which nothing is delivered;
 * - the result does not depend on how the stream was cut: it equals a one-shot reference
 *   parse of the whole stream, and valid frames cut anywhere decode to the same messages;
 * - validateWorkerMessage never throws, accepts every well-formed protocol message, and
 *   names the problem of a malformed one;
 * - binary frames (first byte 0x01): what encodeFrameParts lays out decodes back to the same
 *   message with the same parts at the same paths, however the stream is cut; a large frame's
 *   parts are views of one 8-aligned receive buffer; every malformed layout is a bad_binary
 *   (never an out-of-bounds read, never a throw).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BinaryProblem, NotAMessage, decodeBinaryPayload, type BinaryPart, type PartKind } from '../src/protocol/binary.js';
import { encodeArgs } from '../src/protocol/args.js';
import { FrameDecoder, FrameError, encodeFrame, encodeFrameParts, type FrameErrorKind } from '../src/protocol/frame.js';
import { PROTOCOL_VERSION, validateWorkerMessage } from '../src/protocol/messages.js';
import { NDArray } from '../src/protocol/ndarray.js';

const KINDS: readonly FrameErrorKind[] = ['frame_too_large', 'bad_json', 'bad_message', 'bad_binary'];
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
    if (len > 0 && stream[off + 4] === 0x01) {
      // The binary form, decoded in one go from a copy of the whole payload.
      try {
        msg = decodeBinaryPayload(Buffer.from(stream.subarray(off + 4, off + 4 + len)));
      } catch (e) {
        return { messages, error: e instanceof BinaryProblem ? 'bad_binary' : e instanceof NotAMessage ? 'bad_message' : 'bad_json' };
      }
      messages.push(msg);
      off += 4 + len;
      continue;
    }
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

const commandInfo = fc.record({
  idempotent: fc.boolean(),
  kind: fc.constantFrom('sync', 'async', 'thread'),
  stream: fc.boolean(),
  timeout: fc.oneof(fc.constant(null), fc.double({ min: 0.001, max: 1e6, noNaN: true })),
  maxConcurrency: fc.oneof(fc.constant(null), fc.integer({ min: 1, max: 1000 })),
  session: fc.constantFrom('rw', 'read'),
});

/** Every message a worker may send, well-formed. */
const validMessage = fc.oneof(
  fc.record({ t: fc.constant('ok'), id: requestId, v: fc.jsonValue({ maxDepth: 3 }) }),
  fc.record({ t: fc.constant('err'), id: requestId, k: fc.constantFrom('python', 'cancelled', 'unknown_command', 'bad_request', 'session'), e: exception }),
  fc.constant({ t: 'hb' }),
  fc.record({
    t: fc.constant('hello'),
    protocol: fc.constant(PROTOCOL_VERSION),
    pid: fc.integer({ min: 1, max: 4_194_304 }),
    python: fc.constantFrom('3.11.7', '3.12.1', '3.8.18'),
    commands: fc.dictionary(fc.string({ minLength: 1, maxLength: 10 }), commandInfo, { maxKeys: 5 }),
  }),
  fc.record({ t: fc.constant('init_error'), e: exception }),
  fc.record({ t: fc.constant('item'), id: requestId, v: fc.jsonValue({ maxDepth: 3 }) }),
  fc.record({ t: fc.constant('end'), id: requestId, n: fc.nat() }),
  fc.record({ t: fc.constant('snap'), id: requestId, sid: fc.string({ maxLength: 10 }), err: fc.string({ maxLength: 30 }) }),
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
    // a well-formed binary frame (only when it fits the limit: otherwise it is a frame_too_large, also fine)
    { weight: 2, arbitrary: binaryMessage.map(([msg, parts]) => Buffer.concat(encodeFrameParts(msg, parts, 1 << 30))) },
    // a binary frame with bytes changed in its header, JSON or descriptors (length prefix kept true)
    { weight: 2, arbitrary: mutatedBinary },
  );

// ---- binary frames -----------------------------------------------------------

/** Values a worker may send as binary parts, each of the type it decodes to (a Buffer for bytes). */
const partValue: fc.Arbitrary<Buffer | ArrayBufferView | NDArray> = fc.oneof(
  fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)),
  fc.int8Array({ maxLength: 20 }),
  fc.int16Array({ maxLength: 20 }),
  fc.int32Array({ maxLength: 10 }),
  fc.float32Array({ maxLength: 10 }),
  fc.float64Array({ maxLength: 10 }),
  fc.bigInt64Array({ maxLength: 5 }),
  fc.bigUint64Array({ maxLength: 5 }),
  fc.tuple(fc.integer({ min: 0, max: 4 }), fc.integer({ min: 0, max: 4 })).chain(([r, c]) =>
    fc.float64Array({ minLength: r * c, maxLength: r * c }).map((d) => new NDArray(d, [r, c])),
  ),
);

/** A value tree with parts somewhere in it. */
const withParts = fc.letrec<{ tree: unknown }>((tie) => ({
  tree: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    partValue,
    fc.jsonValue({ maxDepth: 1 }),
    fc.array(tie('tree'), { maxLength: 4 }),
    fc.dictionary(fc.string({ maxLength: 6 }), tie('tree'), { maxKeys: 4 }),
  ),
})).tree;

/** [message JSON without "b", its parts]: an ok or item whose value holds at least one part. */
const binaryMessage: fc.Arbitrary<[string, BinaryPart[]]> = fc
  .tuple(fc.constantFrom('ok', 'item'), requestId, fc.tuple(partValue, withParts))
  .map(([t, id, [first, rest]]) => {
    const { json, parts } = encodeArgs({ first, rest });
    return [`{"t":"${t}","id":${id},"v":${json}}`, parts] as [string, BinaryPart[]];
  });

const mutatedBinary: fc.Arbitrary<Buffer> = fc
  .tuple(binaryMessage, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), fc.integer({ min: -16, max: 16 }))
  .map(([[msg, parts], flips, resize]) => {
    const frame = Buffer.concat(encodeFrameParts(msg, parts, 1 << 30));
    // Bytes changed within the first 80 bytes of the payload (header, JSON, descriptors)...
    for (const [at, byte] of flips) frame[4 + (at % Math.min(80, frame.length - 4))] = byte;
    // ...and sometimes the payload cut short or padded, with its length prefix telling the truth.
    const body = resize < 0 ? frame.subarray(4, Math.max(4, frame.length + resize)) : Buffer.concat([frame.subarray(4), Buffer.alloc(resize)]);
    return Buffer.concat([header(body.length), body]);
  });

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
      fc.oneof(fc.string({ maxLength: 10 }), fc.constantFrom('ok', 'err', 'hb', 'hello', 'init_error', 'item', 'end', 'snap')),
      fc.dictionary(fc.constantFrom('id', 'k', 'e', 'v', 'pid', 'python', 'protocol', 'commands', 'x', 'n', 'sid', 'err'), fc.anything({ maxDepth: 2 }), { maxKeys: 6 }),
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
    fc.record({ t: fc.constant('err'), id: requestId, k: fc.string().filter((k) => !['python', 'cancelled', 'unknown_command', 'bad_request', 'session'].includes(k)), e: exception }),
    fc.record({ t: fc.constant('err'), id: requestId, k: fc.constant('python'), e: fc.oneof(fc.constant(null), fc.record({ type: fc.string() })) }),
    fc.record({ t: fc.constant('hello'), protocol: fc.integer().filter((p) => p !== PROTOCOL_VERSION), pid: fc.nat(), python: fc.constant('3.11.7'), commands: fc.constant({}) }),
    fc.record({
      t: fc.constant('hello'),
      protocol: fc.constant(PROTOCOL_VERSION),
      pid: fc.nat(),
      python: fc.constant('3.11.7'),
      commands: fc.oneof(
        fc.constant(null),
        fc.array(fc.nat()),
        fc.constant({ add: { idempotent: 'yes' } }),
        // a v1 entry, without the v2 fields
        fc.constant({ add: { idempotent: true } }),
        commandInfo.chain((info) =>
          fc
            .constantFrom<[string, unknown]>(['kind', 'fiber'], ['stream', 1], ['timeout', 0], ['timeout', -1], ['maxConcurrency', 0], ['maxConcurrency', 1.5], ['session', 'write'], ['idempotent', null])
            .map(([k, v]) => ({ add: { ...info, [k]: v } })),
        ),
      ),
    }),
    fc.record({ t: fc.constant('item'), id: fc.oneof(fc.double({ noInteger: true }), fc.string(), fc.constant(null)) }),
    fc.record({ t: fc.constant('end'), id: requestId, n: fc.oneof(fc.constant(-1), fc.double({ noInteger: true }), fc.string(), fc.constant(null)) }),
    fc.record({ t: fc.constant('snap'), id: requestId, sid: fc.string(), v: fc.oneof(fc.constant(null), fc.string(), fc.constant([1, 2])) }),
    fc.record({ t: fc.constant('snap'), id: requestId, sid: fc.oneof(fc.constant(null), fc.nat()), err: fc.string() }),
    fc.record({ t: fc.constant('snap'), id: requestId, sid: fc.string(), err: fc.nat() }),
    fc.record({ t: fc.constant('init_error'), e: fc.oneof(fc.constant(undefined), fc.string()) }),
    fc.string({ minLength: 1, maxLength: 10 }).filter((t) => !['ok', 'err', 'hb', 'hello', 'init_error', 'item', 'end', 'snap'].includes(t)).map((t) => ({ t })),
  );
  fc.assert(
    fc.property(broken, (m) => {
      const verdict = validateWorkerMessage(m as { t: string } & Record<string, unknown>);
      assert.equal(typeof verdict, 'string', JSON.stringify(m));
    }),
    { numRuns: 500 },
  );
});

// ---- binary frames ----------------------------------------------------------

/** A binary payload laid out by hand (not by encodeFrameParts), so the decoder is checked against the contract's text. */
function handBinary(json: string, parts: Buffer[], opts: { padAfterLast?: number; misalignBy?: number } = {}): Buffer {
  const text = Buffer.from(json);
  const pieces: Buffer[] = [Buffer.from([0x01]), header(text.length), text];
  let len = 5 + text.length;
  parts.forEach((p, i) => {
    const pad = ((8 - (len % 8)) % 8) + (i === 0 ? (opts.misalignBy ?? 0) : 0);
    pieces.push(Buffer.alloc(pad), p);
    len += pad + p.length;
  });
  if (opts.padAfterLast) pieces.push(Buffer.alloc(opts.padAfterLast));
  const body = Buffer.concat(pieces);
  return Buffer.concat([header(body.length), body]);
}

test('binary frames laid out as the contract says decode to their message, parts placed as views of the right type', () => {
  const f64 = Buffer.from(new Float64Array([1.5, -2, NaN]).buffer);
  const i32 = Buffer.from(new Int32Array([1, 2, 3, 4, 5, 6]).buffer);
  const frame = handBinary(
    '{"t":"ok","id":7,"v":{"raw":null,"list":[1,null],"m":null},"b":[{"p":["raw"],"k":"bytes","n":3},{"p":["list",1],"k":"d","n":24},{"p":["m"],"k":"i","n":24,"s":[2,3]}]}',
    [Buffer.from('abc'), f64, i32],
  );
  for (let split = 0; split <= frame.length; split++) {
    const got = decode([frame.subarray(0, split), frame.subarray(split)], 1024);
    assert.equal(got.error, null);
    const v = (got.messages[0] as { v: { raw: Buffer; list: [number, Float64Array]; m: NDArray } }).v;
    assert.ok(Buffer.isBuffer(v.raw));
    assert.equal(v.raw.toString(), 'abc');
    assert.ok(v.list[1] instanceof Float64Array);
    assert.deepEqual([...v.list[1]], [1.5, -2, NaN]);
    assert.ok(v.m instanceof NDArray);
    assert.deepEqual(v.m.shape, [2, 3]);
    assert.equal(v.m.dtype, 'int32');
    assert.deepEqual([...v.m.data], [1, 2, 3, 4, 5, 6]);
    assert.equal(validateWorkerMessage(got.messages[0] as { t: string } & Record<string, unknown>), null);
  }
  // A snapshot: one bytes part per record, in the list v.
  const snap = handBinary('{"t":"snap","id":1,"sid":"s","k":["a","b"],"d":[],"full":false,"ms":0.1,"v":[null,null],"b":[{"p":[0],"k":"bytes","n":4},{"p":[1],"k":"bytes","n":1}]}', [Buffer.from('pkl5'), Buffer.from('b')]);
  const got = decode([snap], 1024);
  assert.deepEqual((got.messages[0] as { v: Buffer[] }).v, [Buffer.from('pkl5'), Buffer.from('b')]);
  assert.equal(validateWorkerMessage(got.messages[0] as { t: string } & Record<string, unknown>), null);
});

test('every malformed binary layout is a typed error, never a throw or a read outside the frame', () => {
  const j = (b: string, v = '{"x":null}') => `{"t":"ok","id":1,"v":${v},"b":${b}}`;
  const x4 = [Buffer.from('abcd')];
  const cases: Array<[string, Buffer, FrameErrorKind]> = [
    ['shorter than its header', Buffer.concat([header(3), Buffer.from([1, 0, 0])]), 'bad_binary'],
    ['J past the end', Buffer.concat([header(9), Buffer.from([1, 0, 0, 1, 0, 0x7b, 0x7d, 0, 0])]), 'bad_binary'],
    ['JSON that does not parse', handBinary('{"t":', []), 'bad_json'],
    ['JSON that is not a message', handBinary('[1,2]', []), 'bad_message'],
    ['no descriptors', handBinary('{"t":"ok","id":1,"v":null}', []), 'bad_binary'],
    ['empty descriptors', handBinary(j('[]'), []), 'bad_binary'],
    ['a descriptor that is not an object', handBinary(j('[1]'), x4), 'bad_binary'],
    ['unknown kind', handBinary(j('[{"p":["x"],"k":"e","n":4}]'), x4), 'bad_binary'],
    ['kind __proto__', handBinary(j('[{"p":["x"],"k":"__proto__","n":4}]'), x4), 'bad_binary'],
    ['length not a multiple of the element', handBinary(j('[{"p":["x"],"k":"d","n":4}]'), x4), 'bad_binary'],
    ['negative length', handBinary(j('[{"p":["x"],"k":"bytes","n":-4}]'), x4), 'bad_binary'],
    ['fractional length', handBinary(j('[{"p":["x"],"k":"bytes","n":3.5}]'), x4), 'bad_binary'],
    ['shape that does not match', handBinary(j('[{"p":["x"],"k":"B","n":4,"s":[3]}]'), x4), 'bad_binary'],
    ['shape on bytes', handBinary(j('[{"p":["x"],"k":"bytes","n":4,"s":[4]}]'), x4), 'bad_binary'],
    ['empty shape', handBinary(j('[{"p":["x"],"k":"B","n":4,"s":[]}]'), x4), 'bad_binary'],
    ['parts that end before the frame does', handBinary(j('[{"p":["x"],"k":"bytes","n":4}]'), x4, { padAfterLast: 8 }), 'bad_binary'],
    ['a part that runs past the frame', handBinary(j('[{"p":["x"],"k":"bytes","n":400}]'), x4), 'bad_binary'],
    ['a part not on its 8-byte boundary', handBinary(j('[{"p":["x"],"k":"bytes","n":4}]'), x4, { misalignBy: 1 }), 'bad_binary'],
    ['a path to nothing', handBinary(j('[{"p":["y"],"k":"bytes","n":4}]'), x4), 'bad_binary'],
    ['a path to a value that is not null', handBinary(j('[{"p":["x"],"k":"bytes","n":4}]', '{"x":1}'), x4), 'bad_binary'],
    ['an index past the array', handBinary(j('[{"p":[1],"k":"bytes","n":4}]', '[null]'), x4), 'bad_binary'],
    ['an index into an object', handBinary(j('[{"p":[0],"k":"bytes","n":4}]', '{"0":null}'), x4), 'bad_binary'],
    ['a key into an array', handBinary(j('[{"p":["0"],"k":"bytes","n":4}]', '[null]'), x4), 'bad_binary'],
    ['a path that is not a list', handBinary(j('[{"p":"x","k":"bytes","n":4}]'), x4), 'bad_binary'],
    ['a negative index', handBinary(j('[{"p":[-1],"k":"bytes","n":4}]', '[null]'), x4), 'bad_binary'],
    ['two parts at one place', handBinary(j('[{"p":["x"],"k":"bytes","n":4},{"p":["x"],"k":"bytes","n":4}]'), [x4[0], x4[0]]), 'bad_binary'],
    ['a path through a part', handBinary(j('[{"p":["x"],"k":"bytes","n":4},{"p":["x","0"],"k":"bytes","n":4}]'), [x4[0], x4[0]]), 'bad_binary'],
    ['a part at [] while v is not null', handBinary(j('[{"p":[],"k":"bytes","n":4}]'), x4), 'bad_binary'],
    ['a part at [] without v', handBinary('{"t":"ok","id":1,"b":[{"p":[],"k":"bytes","n":4}]}', x4), 'bad_binary'],
    ['a path through the prototype', handBinary(j('[{"p":["__proto__"],"k":"bytes","n":4}]', '{}'), x4), 'bad_binary'],
  ];
  for (const [name, stream, kind] of cases) {
    for (let split = 0; split <= stream.length; split += Math.max(1, Math.floor(stream.length / 7))) {
      assert.deepEqual(decode([stream.subarray(0, split), stream.subarray(split)], 4096), { messages: [], error: kind }, name);
    }
  }
});

test('binary messages encoded by encodeFrameParts decode to the same values, however the stream is cut', () => {
  fc.assert(
    fc.property(fc.array(binaryMessage, { minLength: 1, maxLength: 5 }), cuts, (msgs, at) => {
      const max = 1 << 20;
      const stream = Buffer.concat(msgs.flatMap(([json, parts]) => encodeFrameParts(json, parts, max)));
      const got = decode(cut(stream, at), max);
      assert.equal(got.error, null);
      assert.equal(got.messages.length, msgs.length);
      got.messages.forEach((m, i) => {
        const [json, parts] = msgs[i];
        const sent = JSON.parse(json) as { t: string; id: number; v: Record<string, unknown> };
        for (const part of parts) {
          let holder = sent.v as Record<string | number, unknown>;
          for (const step of part.path.slice(0, -1)) holder = holder[step] as Record<string | number, unknown>;
          const d = part.data;
          const last = part.path[part.path.length - 1];
          holder[last] = part.shape ? new NDArray(d as Float64Array, part.shape) : part.kind === 'bytes' ? Buffer.from(d.buffer, d.byteOffset, d.byteLength) : d;
        }
        const { b, ...rest } = m as Record<string, unknown>;
        assert.ok(Array.isArray(b));
        assert.deepStrictEqual(rest, sent);
        assert.equal(validateWorkerMessage(m as { t: string } & Record<string, unknown>), null);
      });
    }),
    { numRuns: 300 },
  );
});

test("a large binary frame is received into one 8-aligned buffer of its size: every part is a view of it", () => {
  fc.assert(
    fc.property(fc.integer({ min: 70_000, max: 300_000 }), fc.array(fc.nat(), { minLength: 1, maxLength: 40 }), (n, at) => {
      const big = new Float64Array(Math.floor(n / 8)).map((_, i) => i * 0.25);
      const small = Buffer.from('tail');
      const ints = new Int16Array([1, -2, 3]);
      const { json, parts } = encodeArgs({ big, small, nested: [ints] });
      const stream = Buffer.concat([...encodeFrameParts(`{"t":"ok","id":1,"v":${json}}`, parts, 1 << 22), encodeFrame('{"t":"hb"}', 1 << 22)]);
      const got = decode(cut(stream, at), 1 << 22);
      assert.equal(got.error, null);
      assert.equal(got.messages.length, 2);
      const v = (got.messages[0] as { v: { big: Float64Array; small: Buffer; nested: [Int16Array] } }).v;
      assert.deepEqual(v.big, big);
      assert.equal(v.small.toString(), 'tail');
      assert.deepEqual(v.nested[0], ints);
      assert.equal(v.big.buffer, v.small.buffer);
      assert.equal(v.big.buffer, v.nested[0].buffer);
      assert.equal(v.big.byteOffset % 8, 0);
      assert.equal(v.big.buffer.byteLength, stream.length - 4 - 14, 'the receive buffer is the payload, no more');
    }),
    { numRuns: 60 },
  );
});

test('encodeFrameParts refuses a frame over the limit, counting the parts, and does not copy the parts', () => {
  const data = new Float64Array(16);
  const bufs = encodeFrameParts('{"t":"call","id":1,"a":{"x":null}}', [{ path: ['x'], kind: 'd', data }], 1 << 20);
  assert.equal(bufs[1].buffer, data.buffer, 'the part is sent from the caller memory');
  const total = bufs.reduce((n, b) => n + b.length, 0) - 4;
  assert.equal(bufs[0].readUInt32BE(0), total);
  assert.throws(() => encodeFrameParts('{"t":"call","id":1,"a":{"x":null}}', [{ path: ['x'], kind: 'd', data }], total - 1), (e: unknown) => e instanceof FrameError && e.kind === 'frame_too_large');
  const kinds: PartKind[] = ['bytes', 'b', 'B', 'h', 'H', 'i', 'I', 'q', 'Q', 'f', 'd'];
  assert.equal(kinds.length, 11);
});

test('a U+FFFD the worker really sent is a value; the same bytes made invalid are a bad_json error', () => {
  const good = encodeFrame('{"t":"ok","id":1,"v":"a\uFFFDb"}', 1024);
  const ok = decode([good], 1024);
  assert.deepEqual(ok.messages, [{ t: 'ok', id: 1, v: 'a\uFFFDb' }]);
  const bad = Buffer.from(good);
  bad[bad.indexOf(0xef)] = 0xff; // the first byte of U+FFFD's encoding, now no UTF-8 at all
  const err = decode([bad], 1024);
  assert.deepEqual(err.messages, []);
  assert.equal(err.error, 'bad_json');
});
