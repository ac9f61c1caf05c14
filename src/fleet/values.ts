/**
 * Values on the fleet's wire: args, results and stream items. A value without binary parts is
 * its JSON text, as before. A value with binary parts (Buffers, typed arrays, NDArrays) is the
 * worker protocol's 0x01 payload (docs/protocol.md, "With binary parts") without the frame's
 * length prefix: 0x01, u32 J, J bytes of a message's JSON with its "b" part descriptors, then
 * the parts, 8-aligned. The message is {"t":"call","a":<args>} or {"t":"ok","v":<value>}, so
 * the protocol's own codec lays it out and checks it. JSON text never starts with byte 0x01,
 * so the first byte tells the two forms apart; nothing is base64.
 */
import { encodeArgs, type EncodedArgs } from '../protocol/args.js';
import { BINARY_MARK, decodeBinaryPayload } from '../protocol/binary.js';
import { encodeFrameParts, HEADER_BYTES } from '../protocol/frame.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

function toPayload(field: 'a' | 'v', e: EncodedArgs): Uint8Array {
  if (e.parts.length === 0) return enc.encode(e.json);
  const bufs = encodeFrameParts(`{"t":"${field === 'a' ? 'call' : 'ok'}","${field}":${e.json}}`, e.parts, Number.MAX_SAFE_INTEGER);
  // One copy into the message (the NATS client copies a payload anyway); the frame's own length prefix is not sent.
  return Buffer.concat(bufs).subarray(HEADER_BYTES);
}

/** Call arguments (encoded at the call site by the call core) as one payload. */
export function argsPayload(e: EncodedArgs): Uint8Array {
  return toPayload('a', e);
}

/**
 * A result or stream item as a payload. The pool hands a host bytes as Buffers and a 'B' buffer
 * as a plain Uint8Array; args encoding would send both as bytes, so a plain Uint8Array is kept
 * as kind 'B' here and arrives as the Uint8Array it was.
 */
export function encodeValuePayload(value: unknown): Uint8Array {
  const e = encodeArgs(value === undefined ? null : value);
  for (const p of e.parts) if (p.kind === 'bytes' && p.data instanceof Uint8Array && !Buffer.isBuffer(p.data)) p.kind = 'B';
  return toPayload('v', e);
}

/** The value of a payload (either form); throws a SyntaxError or Error on bytes that are neither. */
export function decodePayload(data: Uint8Array, field: 'a' | 'v'): unknown {
  if (data.length === 0) return null;
  if (data[0] !== BINARY_MARK) return JSON.parse(dec.decode(data));
  const msg = decodeBinaryPayload(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  if (!Object.prototype.hasOwnProperty.call(msg, field)) throw new Error(`binary payload without "${field}"`);
  return msg[field];
}
