import { NDArray } from '../protocol/ndarray.js';

/**
 * A result as the HTTP answer carries it: binary values (Buffer, typed arrays) become base64
 * strings of their bytes, as `/openapi.json` describes them; JSON.stringify would turn a Buffer
 * into {"type":"Buffer","data":[...]} and a Float64Array into an object of indices. Copies only
 * the containers on the way to a binary value; anything else is returned as it is.
 */
export function toHttpJson(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value;
  if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64');
  if (Array.isArray(value)) {
    let out: unknown[] | null = null;
    for (let i = 0; i < value.length; i++) {
      const v = toHttpJson(value[i]);
      if (v !== value[i]) (out ??= value.slice())[i] = v;
    }
    return out ?? value;
  }
  // An array of numbers with a shape: its data as base64, like any typed array, beside shape and dtype.
  if (value instanceof NDArray) return { data: toHttpJson(value.data), shape: value.shape, dtype: value.dtype };
  if (Object.getPrototypeOf(value) !== Object.prototype) return value;
  let out: Record<string, unknown> | null = null;
  for (const [k, v] of Object.entries(value)) {
    const c = toHttpJson(v);
    if (c !== v) (out ??= { ...(value as Record<string, unknown>) })[k] = c;
  }
  return out ?? value;
}
