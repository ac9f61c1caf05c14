/**
 * An n-dimensional array: a typed array and its shape in C order. Travels as one binary part
 * with a shape (docs/protocol.md): a numpy array in a result arrives as an NDArray, an NDArray in
 * args arrives in Python as a memoryview cast to its shape (numpy.asarray(mv) keeps it).
 */

export type DType = 'int8' | 'uint8' | 'int16' | 'uint16' | 'int32' | 'uint32' | 'int64' | 'uint64' | 'float32' | 'float64';

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

  /** Throws a TypeError unless `data` is a typed array and `shape` (at least one dimension) multiplies out to its length. */
  constructor(data: T, shape: readonly number[]) {
    const dtype = DTYPE_OF_TAG[tagOf(data) ?? ''];
    if (dtype === undefined) throw new TypeError(`NDArray takes a typed array (Float64Array, Int32Array, ...), got ${describe(data)}`);
    if (!Array.isArray(shape) || shape.length === 0) throw new TypeError('NDArray shape must be a non-empty array of dimensions, e.g. [rows, cols]');
    let count = 1;
    for (const d of shape) {
      if (!Number.isSafeInteger(d) || d < 0) throw new TypeError(`NDArray shape ${JSON.stringify(shape)} has a dimension that is not a non-negative integer`);
      count *= d;
    }
    if (count !== data.length) throw new TypeError(`NDArray shape ${JSON.stringify(shape)} holds ${count} elements, but the data has ${data.length}`);
    this.data = data;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
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
