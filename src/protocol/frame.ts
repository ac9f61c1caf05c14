/**
 * Framing (docs/protocol.md): a 4-byte big-endian length, then that many bytes of payload,
 * either UTF-8 JSON (first byte `{`) or the binary form (first byte 0x01: JSON plus binary
 * parts). The decoder never allocates more than `maxFrameBytes` for a frame and never throws:
 * bad input ends the stream with one typed error, after which it ignores everything.
 *
 * A large frame (64 KiB or more) that does not arrive in one chunk gets a receive buffer of its
 * own size, allocated once (8-aligned), and each chunk is copied into it as it arrives; the
 * binary parts of the message are then views of that buffer, placed at their paths in the
 * message's value (`a` of a call, `v` of anything else): a Buffer for `bytes`, the typed array
 * of the kind, an NDArray for a part with a shape.
 */
import { isUtf8 } from 'node:buffer';
import { BinaryProblem, BINARY_MARK, NotAMessage, decodeBinaryPayload, layoutFrame, type BinaryPart } from './binary.js';

export const HEADER_BYTES = 4;
/** A frame this large that is not whole gets a receive buffer of its own. */
const BIG_FRAME = 64 * 1024;

export type FrameErrorKind = 'frame_too_large' | 'bad_json' | 'bad_message' | 'bad_binary';

export class FrameError extends Error {
  constructor(
    readonly kind: FrameErrorKind,
    message: string,
  ) {
    super(message);
    this.name = 'FrameError';
  }
}

/** Encodes one plain message; throws a FrameError when the payload exceeds the limit. */
export function encodeFrame(json: string, maxFrameBytes: number): Buffer {
  const len = Buffer.byteLength(json);
  if (len > maxFrameBytes) {
    throw new FrameError('frame_too_large', `frame of ${len} bytes exceeds maxFrameBytes (${maxFrameBytes})`);
  }
  const buf = Buffer.allocUnsafe(HEADER_BYTES + len);
  buf.writeUInt32BE(len, 0);
  buf.write(json, HEADER_BYTES, 'utf8');
  return buf;
}

/**
 * Encodes one message with binary parts. `json` is the whole message without a "b" field (it
 * is added), with null where each part goes. Returns the buffers to write, in order: the first
 * holds the length, the JSON and its padding; then each part's own memory (not copied: leave it
 * unchanged until written) and padding. With no parts, one plain frame. Throws a FrameError when
 * the frame exceeds the limit.
 */
export function encodeFrameParts(json: string, parts: readonly BinaryPart[], maxFrameBytes: number): Buffer[] {
  if (parts.length === 0) return [encodeFrame(json, maxFrameBytes)];
  const { length, buffers } = layoutFrame(json, parts);
  if (length > maxFrameBytes) {
    throw new FrameError('frame_too_large', `frame of ${length} bytes exceeds maxFrameBytes (${maxFrameBytes})`);
  }
  return buffers;
}

export interface FrameSink {
  /** A decoded message; binary parts are already placed in its value. */
  onMessage(msg: unknown): void;
  onError(err: FrameError): void;
}

export class FrameDecoder {
  /** Pieces of an incomplete small frame (or header), joined once whole (no quadratic copying). */
  private chunks: Buffer[] = [];
  private held = 0;
  /** Total bytes (header included) of the small frame being collected, or -1 while its header is incomplete. */
  private need = -1;
  /** The receive buffer of a large frame being collected (its payload only), and how much has arrived. */
  private big: Buffer | null = null;
  private bigPos = 0;
  private failed = false;

  constructor(
    private readonly maxFrameBytes: number,
    private readonly sink: FrameSink,
  ) {}

  get broken(): boolean {
    return this.failed;
  }

  /** Bytes held for an incomplete frame: never more than maxFrameBytes + 4 plus one chunk. */
  get buffered(): number {
    return this.big === null ? this.held : this.bigPos;
  }

  push(chunk: Buffer): void {
    if (this.failed || chunk.length === 0) return;
    if (this.big !== null) {
      const big = this.big;
      const take = Math.min(big.length - this.bigPos, chunk.length);
      chunk.copy(big, this.bigPos, 0, take);
      this.bigPos += take;
      if (this.bigPos < big.length) return;
      this.big = null;
      this.bigPos = 0;
      this.deliver(big, 0, big.length);
      if (this.failed || take === chunk.length) return;
      return this.scan(chunk, take);
    }
    if (this.held > 0) {
      this.chunks.push(chunk);
      this.held += chunk.length;
      if (this.need < 0) {
        if (this.held < HEADER_BYTES) return;
      } else if (this.held < this.need) {
        return;
      }
      const joined = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.held);
      this.chunks = [];
      this.held = 0;
      this.need = -1;
      return this.scan(joined, 0);
    }
    this.scan(chunk, 0);
  }

  private scan(buf: Buffer, start: number): void {
    let off = start;
    const end = buf.length;
    while (end - off >= HEADER_BYTES) {
      const len = buf.readUInt32BE(off);
      if (len > this.maxFrameBytes) return this.tooLarge(len);
      const have = end - off - HEADER_BYTES;
      if (have < len) {
        if (len >= BIG_FRAME) {
          // One allocation of the frame's size, 8-aligned (its own ArrayBuffer): parts are views of it.
          const big = Buffer.allocUnsafeSlow(len);
          buf.copy(big, 0, off + HEADER_BYTES, end);
          this.big = big;
          this.bigPos = have;
          return;
        }
        this.need = HEADER_BYTES + len;
        break;
      }
      const from = off + HEADER_BYTES;
      off = from + len;
      this.deliver(buf, from, off);
      if (this.failed) return;
    }
    if (off < end) {
      const rest = buf.subarray(off);
      this.chunks = [rest];
      this.held = rest.length;
    }
  }

  private deliver(buf: Buffer, from: number, to: number): void {
    let msg: unknown;
    if (to > from && buf[from] === BINARY_MARK) {
      let payload = buf;
      if (from !== 0 || to !== buf.length || (buf.byteOffset & 7) !== 0) {
        // A small binary frame shares its chunk: copied once into memory of its own, so its
        // parts (views) do not keep the chunk alive and typed arrays get an aligned offset.
        payload = Buffer.allocUnsafeSlow(to - from);
        buf.copy(payload, 0, from, to);
      }
      try {
        msg = decodeBinaryPayload(payload);
      } catch (e) {
        if (e instanceof BinaryProblem) return this.fail('bad_binary', `worker sent a malformed binary frame: ${e.message}`);
        if (e instanceof NotAMessage) return this.fail('bad_message', `worker sent a frame that is not a protocol message: ${e.message}`);
        return this.fail('bad_json', `worker sent a binary frame whose JSON is not valid (${(e as Error).message})`);
      }
      this.sink.onMessage(msg);
      return;
    }
    // toString turns bytes that are not UTF-8 into U+FFFD, and would hand on a changed value: only
    // a text holding U+FFFD (rare: decoded, or sent as such) needs the bytes checked.
    const text = buf.toString('utf8', from, to);
    if (text.includes('\uFFFD') && !isUtf8(buf.subarray(from, to))) return this.fail('bad_json', 'worker sent a frame that is not valid UTF-8');
    try {
      msg = JSON.parse(text);
    } catch (e) {
      return this.fail('bad_json', `worker sent a frame that is not valid JSON (${(e as Error).message})`);
    }
    if (typeof msg !== 'object' || msg === null || typeof (msg as { t?: unknown }).t !== 'string') {
      return this.fail('bad_message', 'worker sent a frame that is not a protocol message (no "t" field)');
    }
    this.sink.onMessage(msg);
  }

  private tooLarge(len: number): void {
    this.fail('frame_too_large', `worker sent a frame header announcing ${len} bytes, over maxFrameBytes (${this.maxFrameBytes}): the protocol stream is corrupt`);
  }

  private fail(kind: FrameErrorKind, message: string): void {
    this.failed = true;
    this.chunks = [];
    this.held = 0;
    this.big = null;
    this.bigPos = 0;
    this.sink.onError(new FrameError(kind, message));
  }
}
