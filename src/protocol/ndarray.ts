/**
 * An n-dimensional array: a typed array and its shape in C order. Travels as one binary part
 * with a shape (docs/protocol.md): a numpy array in a result arrives as an NDArray, an NDArray in
 * args arrives in Python as a memoryview cast to its shape (numpy.asarray(mv) keeps it, a zero
 * dimension too). A bool array is a Uint8Array of 0 and 1 with dtype 'bool' (docs/values.md).
 */

export type DType = 'bool' | 'int8' | 'uint8' | 'int16' | 'uint16' | 'int32' | 'uint32' | 'int64' | 'uint64' | 'float32' | 'float64';

export type NDArrayData =
  | Int8Array
  | Uint8Array
  | Uint8ClampedArray
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array
  | Float32Array
  | Float64Array;

/** dtype of each typed array, by its Symbol.toStringTag (a Buffer says Uint8Array). */
export const DTYPE_OF_TAG: Readonly<Record<string, DType>> = Object.freeze({
  Int8Array: 'int8',
  Uint8Array: 'uint8',
  Uint8ClampedArray: 'uint8',
  Int16Array: 'int16',
  Uint16Array: 'uint16',
  Int32Array: 'int32',
  Uint32Array: 'uint32',
  BigInt64Array: 'int64',
  BigUint64Array: 'uint64',
  Float32Array: 'float32',
  Float64Array: 'float64',
});

const tagOf = (data: unknown): string | undefined =>
  ArrayBuffer.isView(data) ? ((data as unknown as Record<symbol, unknown>)[Symbol.toStringTag] as string | undefined) : undefined;

export class NDArray<T extends NDArrayData = NDArrayData> {
  readonly data: T;
  readonly shape: readonly number[];
  readonly dtype: DType;

  /**
   * Throws a TypeError unless `data` is a typed array and `shape` (at least one dimension)
   * multiplies out to its length. `dtype` is the typed array's own (the default), or 'bool' for
   * a Uint8Array of 0 (false) and 1 (true), which numpy receives as a bool array.
   */
  constructor(data: T, shape: readonly number[], dtype?: DType) {
    const own = DTYPE_OF_TAG[tagOf(data) ?? ''];
    if (own === undefined) throw new TypeError(`NDArray takes a typed array (Float64Array, Int32Array, ...), got ${describe(data)}`);
    if (dtype !== undefined && dtype !== own && !(dtype === 'bool' && tagOf(data) === 'Uint8Array')) {
      throw new TypeError(`NDArray dtype ${JSON.stringify(dtype)} does not fit a ${tagOf(data)}: give no dtype (it is ${own}), or 'bool' with a Uint8Array of 0 and 1`);
    }
    if (!Array.isArray(shape) || shape.length === 0) throw new TypeError('NDArray shape must be a non-empty array of dimensions, e.g. [rows, cols]');
    let count = 1;
    for (const d of shape) {
      if (!Number.isSafeInteger(d) || d < 0) throw new TypeError(`NDArray shape ${JSON.stringify(shape)} has a dimension that is not a non-negative integer`);
      count *= d;
    }
    if (count !== data.length) throw new TypeError(`NDArray shape ${JSON.stringify(shape)} holds ${count} elements, but the data has ${data.length}`);
    this.data = data;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype ?? own;
  }

  get ndim(): number {
    return this.shape.length;
  }

  get size(): number {
    return this.data.length;
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v !== 'object') return typeof v;
  return (v as object).constructor?.name ?? 'an object';
}
