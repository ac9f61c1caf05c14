import { isUtf8 } from 'node:buffer';

/**
 * Framing: a 4-byte big-endian length, then that many bytes of UTF-8 JSON. The decoder
 * never allocates more than `maxFrameBytes` for a frame and never throws: bad input
 * ends the stream with one typed error, after which it ignores everything.
 */

export const HEADER_BYTES = 4;

export type FrameErrorKind = 'frame_too_large' | 'bad_json' | 'bad_message';

export class FrameError extends Error {
  constructor(
    readonly kind: FrameErrorKind,
    message: string,
  ) {
    super(message);
    this.name = 'FrameError';
  }
}

/** Encodes one message; throws a FrameError when the payload exceeds the limit. */
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

export interface FrameSink {
  onMessage(msg: unknown): void;
  onError(err: FrameError): void;
}

export class FrameDecoder {
  /** Pieces of an incomplete frame, joined once the frame is whole (no quadratic copying). */
  private chunks: Buffer[] = [];
  private held = 0;
  /** Total bytes (header included) of the frame being collected, or -1 while its header is incomplete. */
  private need = -1;
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
    return this.held;
  }

  push(chunk: Buffer): void {
    if (this.failed || chunk.length === 0) return;
    let buf = chunk;
    if (this.held > 0) {
      this.chunks.push(chunk);
      this.held += chunk.length;
      if (this.need < 0) {
        if (this.held < HEADER_BYTES) return;
        const head = Buffer.concat(this.chunks, this.held);
        this.chunks = [head];
        const len = head.readUInt32BE(0);
        if (len > this.maxFrameBytes) return this.tooLarge(len);
        this.need = HEADER_BYTES + len;
      }
      if (this.held < this.need) return;
      buf = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.held);
      this.chunks = [];
      this.held = 0;
      this.need = -1;
    }
    let off = 0;
    const end = buf.length;
    while (end - off >= HEADER_BYTES) {
      const len = buf.readUInt32BE(off);
      if (len > this.maxFrameBytes) return this.tooLarge(len);
      if (end - off - HEADER_BYTES < len) {
        this.need = HEADER_BYTES + len;
        break;
      }
      const start = off + HEADER_BYTES;
      off = start + len;
      // toString would turn bytes that are not UTF-8 into U+FFFD and hand on a changed value.
      if (!isUtf8(buf.subarray(start, off))) return this.fail('bad_json', 'worker sent a frame that is not valid UTF-8');
      let msg: unknown;
      try {
        msg = JSON.parse(buf.toString('utf8', start, off));
      } catch (e) {
        return this.fail('bad_json', `worker sent a frame that is not valid JSON (${(e as Error).message})`);
      }
      if (typeof msg !== 'object' || msg === null || typeof (msg as { t?: unknown }).t !== 'string') {
        return this.fail('bad_message', 'worker sent a frame that is not a protocol message (no "t" field)');
      }
      this.sink.onMessage(msg);
      if (this.failed) return;
    }
    if (off < end) {
      const rest = buf.subarray(off);
      this.chunks = [rest];
      this.held = rest.length;
    }
  }

  private tooLarge(len: number): void {
    this.fail('frame_too_large', `worker sent a frame header announcing ${len} bytes, over maxFrameBytes (${this.maxFrameBytes}): the protocol stream is corrupt`);
  }

  private fail(kind: FrameErrorKind, message: string): void {
    this.failed = true;
    this.chunks = [];
    this.held = 0;
    this.sink.onError(new FrameError(kind, message));
  }
}
