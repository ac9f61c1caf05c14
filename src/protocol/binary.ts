import { isUtf8 } from 'node:buffer';
/**
 * Binary parts of a frame (docs/protocol.md, "With binary parts"): the 0x01 payload form,
 * its part descriptors, how a part is viewed in Node, and how a message's parts are checked
 * and placed. Everything is checked before any part is viewed; nothing outside the frame is
 * read.
 */
import { NDArray, type DType, type NDArrayData } from './ndarray.js';

export const BINARY_MARK = 0x01;

export type PartKind = 'bytes' | '?' | 'b' | 'B' | 'h' | 'H' | 'i' | 'I' | 'q' | 'Q' | 'f' | 'd';
export type PathStep = string | number;

/** A part as it is described in the frame's "b" array. */
export interface PartDescriptor {
  p: PathStep[];
  k: PartKind;
  n: number;
  s?: number[];
}

/** A part to send: where it goes (relative to the message's value), its kind, its bytes. */
export interface BinaryPart {
  path: PathStep[];
  kind: PartKind;
  /** The bytes, sent as they are (not copied): do not change them until the frame is written. */
  data: ArrayBufferView;
  shape?: readonly number[];
}

export const ITEM_SIZE: Readonly<Record<PartKind, number>> = Object.freeze({ bytes: 1, '?': 1, b: 1, B: 1, h: 2, H: 2, i: 4, I: 4, q: 8, Q: 8, f: 4, d: 8 });

export const KIND_OF_DTYPE: Readonly<Record<DType, PartKind>> = Object.freeze({
  bool: '?',
  int8: 'b',
  uint8: 'B',
  int16: 'h',
  uint16: 'H',
  int32: 'i',
  uint32: 'I',
  int64: 'q',
  uint64: 'Q',
  float32: 'f',
  float64: 'd',
});

/** The part kind of a typed array (by Symbol.toStringTag): Buffer/Uint8Array and DataView are bytes. */
export const KIND_OF_TAG: Readonly<Record<string, PartKind>> = Object.freeze({
  Uint8Array: 'bytes',
  DataView: 'bytes',
  Int8Array: 'b',
  Uint8ClampedArray: 'B',
  Int16Array: 'h',
  Uint16Array: 'H',
  Int32Array: 'i',
  Uint32Array: 'I',
  BigInt64Array: 'q',
  BigUint64Array: 'Q',
  Float32Array: 'f',
  Float64Array: 'd',
});

export const align8 = (n: number): number => (n + 7) & ~7;

const MAX_NDIM = 64;

/** A problem with a binary frame; the decoder turns it into a FrameError. */
export class BinaryProblem extends Error {}

function validPath(p: unknown): p is PathStep[] {
  if (!Array.isArray(p)) return false;
  for (const step of p) {
    if (typeof step === 'string') continue;
    if (!Number.isSafeInteger(step) || (step as number) < 0) return false;
  }
  return true;
}

interface Slot {
  d: PartDescriptor;
  start: number;
}

/** Checks the descriptors against a payload of `length` bytes whose JSON ends at `jsonEnd`; returns where each part starts. */
export function layout(descriptors: unknown, jsonEnd: number, length: number): Slot[] {
  if (!Array.isArray(descriptors) || descriptors.length === 0) throw new BinaryProblem('binary frame without part descriptors ("b")');
  const slots: Slot[] = [];
  let off = align8(jsonEnd);
  let end = off;
  for (const raw of descriptors) {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new BinaryProblem('part descriptor is not an object');
    const d = raw as Record<string, unknown>;
    const k = d.k;
    const size = typeof k === 'string' && Object.prototype.hasOwnProperty.call(ITEM_SIZE, k) ? ITEM_SIZE[k as PartKind] : undefined;
    if (size === undefined) throw new BinaryProblem(`part descriptor with unknown kind ${JSON.stringify(k)?.slice(0, 40)}`);
    if (!validPath(d.p)) throw new BinaryProblem(`part descriptor with a bad path ${JSON.stringify(d.p)?.slice(0, 80)}`);
    const n = d.n;
    if (!Number.isSafeInteger(n) || (n as number) < 0 || (n as number) % size !== 0) throw new BinaryProblem(`part descriptor with a bad length ${JSON.stringify(n)?.slice(0, 20)} for kind ${k as string}`);
    if (d.s !== undefined) {
      const s = d.s;
      if (k === 'bytes' || !Array.isArray(s) || s.length === 0 || s.length > MAX_NDIM || !s.every((x) => Number.isSafeInteger(x) && x >= 0)) {
        throw new BinaryProblem(`part descriptor with a bad shape ${JSON.stringify(s)?.slice(0, 80)}`);
      }
      let count = 1;
      for (const x of s as number[]) count *= x;
      if (count * size !== n) throw new BinaryProblem(`part shape ${JSON.stringify(s).slice(0, 80)} does not match its ${n as number} bytes`);
    }
    const start = off;
    end = start + (n as number);
    if (end > length) throw new BinaryProblem(`parts run past the end of the frame (${end} > ${length})`);
    slots.push({ d: d as unknown as PartDescriptor, start });
    off = align8(end);
  }
  if (end !== length) throw new BinaryProblem(`parts end at byte ${end} of a frame of ${length} bytes`);
  return slots;
}

/** A view of `n` bytes of `buf` at `start` as the kind says; `buf`'s byteOffset + start must be 8-aligned. */
export function viewPart(buf: Buffer, start: number, d: PartDescriptor): Buffer | NDArrayData | NDArray {
  const ab = buf.buffer;
  const at = buf.byteOffset + start;
  const n = d.n;
  let v: Buffer | NDArrayData;
  switch (d.k) {
    case 'bytes':
      v = Buffer.from(ab, at, n);
      break;
    case '?':
      // A bool array is an NDArray whatever its number of dimensions: its dtype says bool.
      return new NDArray(new Uint8Array(ab, at, n), d.s ?? [n], 'bool');
    case 'b':
      v = new Int8Array(ab, at, n);
      break;
    case 'B':
      v = new Uint8Array(ab, at, n);
      break;
    case 'h':
      v = new Int16Array(ab, at, n / 2);
      break;
    case 'H':
      v = new Uint16Array(ab, at, n / 2);
      break;
    case 'i':
      v = new Int32Array(ab, at, n / 4);
      break;
    case 'I':
      v = new Uint32Array(ab, at, n / 4);
      break;
    case 'q':
      v = new BigInt64Array(ab, at, n / 8);
      break;
    case 'Q':
      v = new BigUint64Array(ab, at, n / 8);
      break;
    case 'f':
      v = new Float32Array(ab, at, n / 4);
      break;
    case 'd':
      v = new Float64Array(ab, at, n / 8);
      break;
  }
  return d.s === undefined ? v : new NDArray(v as NDArrayData, d.s);
}

const isJsonObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === Object.prototype;

/** Puts `value` at `path` under msg[field]; the place must hold null. */
export function place(msg: Record<string, unknown>, field: string, path: PathStep[], value: unknown): void {
  if (path.length === 0) {
    if (!Object.prototype.hasOwnProperty.call(msg, field) || msg[field] !== null) throw new BinaryProblem(`part at [] but the message's "${field}" is not null`);
    msg[field] = value;
    return;
  }
  let cur: unknown = msg[field];
  const last = path.length - 1;
  for (let i = 0; i <= last; i++) {
    const step = path[i];
    let holder: Record<string, unknown> | unknown[];
    if (typeof step === 'string') {
      if (!isJsonObject(cur) || !Object.prototype.hasOwnProperty.call(cur, step)) throw new BinaryProblem(`part path ${JSON.stringify(path).slice(0, 80)} does not lead to a value of the message`);
      holder = cur;
    } else {
      if (!Array.isArray(cur) || step >= cur.length) throw new BinaryProblem(`part path ${JSON.stringify(path).slice(0, 80)} does not lead to a value of the message`);
      holder = cur;
    }
    const next = (holder as Record<string | number, unknown>)[step];
    if (i === last) {
      if (next !== null) throw new BinaryProblem(`part path ${JSON.stringify(path).slice(0, 80)} leads to a value that is not null`);
      (holder as Record<string | number, unknown>)[step] = value;
      return;
    }
    cur = next;
  }
}

/**
 * Decodes a 0x01 payload (`p` holds exactly the payload). Returns the message with its parts
 * placed as views of `p` (Buffer for bytes, the typed array of the kind, NDArray with a shape),
 * or throws BinaryProblem / SyntaxError (its JSON).
 */
export function decodeBinaryPayload(p: Buffer): Record<string, unknown> {
  const length = p.length;
  if (length < 5) throw new BinaryProblem(`binary frame of ${length} bytes, shorter than its 5-byte header`);
  const jlen = p.readUInt32BE(1);
  if (jlen > length - 5) throw new BinaryProblem(`binary frame announces ${jlen} bytes of JSON in a frame of ${length} bytes`);
  if (!isUtf8(p.subarray(5, 5 + jlen))) throw new BinaryProblem('binary frame whose JSON is not valid UTF-8');
  const msg: unknown = JSON.parse(p.toString('utf8', 5, 5 + jlen));
  if (typeof msg !== 'object' || msg === null || Array.isArray(msg) || typeof (msg as { t?: unknown }).t !== 'string') {
    throw new NotAMessage('binary frame whose JSON is not a protocol message (no "t" field)');
  }
  const m = msg as Record<string, unknown>;
  const slots = layout(m.b, 5 + jlen, length);
  let buf = p;
  if ((buf.byteOffset & 7) !== 0 && slots.some((x) => ITEM_SIZE[x.d.k] > 1)) {
    // Typed arrays of wider items need aligned offsets; a payload that does not start on 8 bytes is copied once.
    buf = Buffer.allocUnsafeSlow(length);
    p.copy(buf);
  }
  const field = m.t === 'call' ? 'a' : 'v';
  for (const { d, start } of slots) place(m, field, d.p, viewPart(buf, start, d));
  return m;
}

export class NotAMessage extends Error {}

const ZEROS = Buffer.alloc(8);

/** The descriptors of `parts`, as the "b" array. */
export function descriptorsOf(parts: readonly BinaryPart[]): PartDescriptor[] {
  return parts.map((x) => (x.shape === undefined ? { p: x.path, k: x.kind, n: x.data.byteLength } : { p: x.path, k: x.kind, n: x.data.byteLength, s: [...x.shape] }));
}

/**
 * Lays out a 0x01 frame. `json` is the complete message without "b" (it must end with "}");
 * the descriptors are added to it. Returns the total payload length and the buffers to write in
 * order: the length prefix, 0x01, J, the JSON and its padding in one buffer, then each part (a
 * view of the caller's memory, not a copy) and the padding before the next.
 */
export function layoutFrame(json: string, parts: readonly BinaryPart[]): { length: number; buffers: Buffer[] } {
  const close = json.lastIndexOf('}');
  if (close < 0 || json.slice(close + 1).trim() !== '') throw new TypeError('a message with binary parts must be a JSON object');
  const before = json.slice(0, close).trimEnd();
  const text = `${before}${before.endsWith('{') ? '' : ','}"b":${JSON.stringify(descriptorsOf(parts))}}`;
  const jlen = Buffer.byteLength(text);
  const headLen = align8(5 + jlen);
  let length = headLen;
  const buffers: Buffer[] = [];
  const last = parts.length - 1;
  const tail: Buffer[] = [];
  for (let i = 0; i <= last; i++) {
    const d = parts[i].data;
    tail.push(Buffer.isBuffer(d) ? d : Buffer.from(d.buffer, d.byteOffset, d.byteLength));
    length += d.byteLength;
    if (i !== last) {
      const pad = align8(length) - length;
      if (pad > 0) {
        tail.push(ZEROS.subarray(0, pad));
        length += pad;
      }
    }
  }
  const head = Buffer.alloc(4 + headLen);
  head.writeUInt32BE(length, 0);
  head[4] = BINARY_MARK;
  head.writeUInt32BE(jlen, 5);
  head.write(text, 9, 'utf8');
  buffers.push(head, ...tail);
  return { length, buffers };
}
