/**
 * Call arguments to the wire, checked at the call site (docs/protocol.md, "Values").
 *
 * As JSON.stringify does: NaN and +-Infinity become null (or an ArgsError naming the path with
 * `nonFinite: 'error'`), `undefined` properties are dropped (`undefined` in an array becomes
 * null), an object with `toJSON` (a Date) is sent as what toJSON returns. Unlike JSON.stringify,
 * a number beyond +-2^53 is written as a float (1e+20, not 100000000000000000000): Python would
 * read the digits as an int, which a result refuses beyond 2^53 (docs/values.md). Typed arrays, Buffers,
 * DataViews, ArrayBuffers and NDArrays become binary parts: a Buffer / Uint8Array / DataView /
 * ArrayBuffer arrives in Python as bytes-like, a typed array as a memoryview of its format, an
 * NDArray as a memoryview of its shape. Refused with an ArgsError that names the path and says
 * what to do: Map, Set, functions, symbols, BigInt (outside a BigInt64Array), class instances
 * without toJSON, and cycles.
 *
 * Ordinary args cost little more than JSON.stringify: one walk that allocates nothing while it
 * finds nothing to change, then JSON.stringify of the very same object.
 */
import { KIND_OF_DTYPE, KIND_OF_TAG, type BinaryPart, type PathStep } from './binary.js';
import { NDArray } from './ndarray.js';

/** Args that cannot be sent: `path` says where (e.g. `$.user.tags`), the message what and what to do. */
export class ArgsError extends Error {
  override name = 'ArgsError';
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(message);
  }
}

export interface EncodeArgsOptions {
  /** What NaN and +-Infinity become: null (the default, as JSON.stringify) or an ArgsError. */
  nonFinite?: 'null' | 'error';
}

export interface EncodedArgs {
  /** The JSON text of the args, with null where each binary part goes. */
  json: string;
  /** The binary parts, paths relative to the args (empty when there are none). */
  parts: BinaryPart[];
}

const NO_PARTS: BinaryPart[] = [];
const CYCLE_CHECK_DEPTH = 32;
/** 2^53: beyond it a number is written as a float; JSON.stringify writes digits only below 1e21. */
const MAX_EXACT = 2 ** 53;
Object.freeze(NO_PARTS);

export function formatPath(path: readonly PathStep[]): string {
  let out = '$';
  for (const step of path) {
    if (typeof step === 'number') out += `[${step}]`;
    else if (/^[A-Za-z_$][\w$]*$/.test(step)) out += `.${step}`;
    else out += `[${JSON.stringify(step)}]`;
  }
  return out;
}

class Walk {
  parts: BinaryPart[] | null = null;
  readonly path: PathStep[] = [];
  /** The objects being walked, outermost first (a cycle is one of them met again). */
  readonly stack: object[] = [];

  nonFiniteError = false;
  /** A number beyond +-2^53 was seen: JSON.stringify would write it as the digits of an int. */
  bigNumbers = false;
  /** Walking now (a toJSON that sends a call itself gets a walk of its own). */
  busy = false;

  reset(nonFiniteError: boolean): this {
    this.parts = null;
    this.path.length = 0;
    this.stack.length = 0;
    this.nonFiniteError = nonFiniteError;
    this.bigNumbers = false;
    this.busy = true;
    return this;
  }

  fail(what: string, todo: string): never {
    const at = formatPath(this.path);
    throw new ArgsError(at, `${at} ${what}: ${todo}`);
  }

  number(x: number): number {
    if (this.nonFiniteError && !Number.isFinite(x)) this.fail(`is ${x}, which is not a JSON number`, "pass a finite number or null (the pool runs with nonFinite: 'error')");
    if (x > MAX_EXACT || x < -MAX_EXACT) this.bigNumbers = true;
    return x;
  }

  /** Returns `v` itself when nothing in it changes, else a copy with the changes. */
  value(v: unknown, key: string): unknown {
    switch (typeof v) {
      case 'number':
        return this.number(v);
      case 'string':
      case 'boolean':
      case 'undefined':
        return v;
      case 'bigint':
        return this.fail('is a BigInt', 'JSON has no integers that large; pass a Number, a string, or a BigInt64Array');
      case 'function':
        return this.fail('is a function', 'functions cannot be sent to Python; pass data');
      case 'symbol':
        return this.fail('is a symbol', 'symbols cannot be sent to Python; pass a string');
    }
    if (v === null) return v;
    const o = v as object;
    if (Array.isArray(o)) return this.array(o);
    // Plain objects first: they are most of what args hold.
    const proto: unknown = Object.getPrototypeOf(o);
    const toJSON = (o as { toJSON?: unknown }).toJSON;
    if ((proto === Object.prototype || proto === null) && typeof toJSON !== 'function') return this.object(o as Record<string, unknown>);
    if (ArrayBuffer.isView(o)) return this.part(o, undefined);
    if (o instanceof NDArray) return this.part(o.data, o);
    if (typeof toJSON === 'function') return this.value((toJSON as (k: string) => unknown).call(o, key), key);
    if (o instanceof Map) return this.fail('is a Map', 'convert it to an object (Object.fromEntries(map)) or to an array of [key, value] pairs');
    if (o instanceof Set) return this.fail('is a Set', 'convert it to an array ([...set])');
    if (o instanceof ArrayBuffer || (typeof SharedArrayBuffer !== 'undefined' && o instanceof SharedArrayBuffer)) return this.part(new Uint8Array(o as ArrayBuffer), undefined);
    if (o instanceof Number || o instanceof String || o instanceof Boolean) return o.valueOf();
    const name = (o as { constructor?: { name?: string } }).constructor?.name || 'an object with a prototype';
    return this.fail(`is an instance of ${name} without toJSON`, 'pass a plain object (e.g. { ...value }), or give the class a toJSON() method');
  }

  /**
   * A cycle makes the walk go deeper forever, so ordinary (shallow) args are not searched for one:
   * past CYCLE_CHECK_DEPTH levels each new object is looked for among its ancestors, and the
   * error names the place where the cycle first closes.
   */
  enter(o: object): void {
    const stack = this.stack;
    stack.push(o);
    if (stack.length > CYCLE_CHECK_DEPTH && stack.indexOf(o) < stack.length - 1) {
      for (let k = 1; k < stack.length; k++) {
        if (stack.indexOf(stack[k]) < k) {
          this.path.length = k;
          break;
        }
      }
      this.fail('refers to an object that contains it (a cycle)', 'JSON cannot carry cycles; send a tree');
    }
  }

  object(o: Record<string, unknown>): unknown {
    this.enter(o);
    let out: Record<string, unknown> | null = null;
    // for...in over a plain object (its prototype is Object.prototype or null, checked by the
    // caller) sees its own enumerable keys, as JSON.stringify does, without allocating a key list.
    for (const k in o) {
      const x = o[k];
      let y: unknown = x;
      const t = typeof x;
      if (t === 'object' ? x !== null : t !== 'string' && t !== 'boolean' && t !== 'undefined') {
        if (t === 'number') {
          if (this.nonFiniteError && !Number.isFinite(x as number)) {
            this.path.push(k);
            this.number(x as number);
          } else if ((x as number) > MAX_EXACT || (x as number) < -MAX_EXACT) this.bigNumbers = true;
        } else {
          this.path.push(k);
          y = this.value(x, k);
          this.path.pop();
        }
      }
      if (out === null) {
        if (y === x) continue;
        out = {};
        for (const before in o) {
          if (before === k) break;
          out[before] = o[before];
        }
      }
      out[k] = y;
    }
    this.stack.pop();
    return out ?? o;
  }

  array(a: unknown[]): unknown {
    this.enter(a);
    let out: unknown[] | null = null;
    const n = a.length;
    for (let i = 0; i < n; i++) {
      const x = a[i];
      let y: unknown = x;
      const t = typeof x;
      if (t === 'object' ? x !== null : t !== 'string' && t !== 'boolean' && t !== 'undefined') {
        if (t === 'number') {
          if (this.nonFiniteError && !Number.isFinite(x as number)) {
            this.path.push(i);
            this.number(x as number);
          } else if ((x as number) > MAX_EXACT || (x as number) < -MAX_EXACT) this.bigNumbers = true;
        } else {
          this.path.push(i);
          y = this.value(x, String(i));
          this.path.pop();
        }
      }
      if (out === null) {
        if (y === x) continue;
        out = a.slice(0, i);
      }
      out.push(y);
    }
    this.stack.pop();
    return out ?? a;
  }

  part(view: ArrayBufferView, nd: NDArray | undefined): null {
    const tag = (view as unknown as Record<symbol, unknown>)[Symbol.toStringTag] as string | undefined;
    const kind = nd !== undefined ? KIND_OF_DTYPE[nd.dtype] : KIND_OF_TAG[tag ?? 'DataView'];
    if (kind === undefined) this.fail(`is a ${tag ?? 'typed array'}`, 'the protocol carries Int8..BigUint64 and Float32/Float64 arrays; convert it');
    const part: BinaryPart = { path: [...this.path], kind, data: view };
    if (nd !== undefined) part.shape = nd.shape;
    if (kind === '?') this.bools(view as Uint8Array);
    (this.parts ??= []).push(part);
    return null;
  }

  /** A 'bool' NDArray holds 0 and 1 only: numpy would read any other byte as a bool that is neither. */
  bools(data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) {
      if (data[i] > 1) this.fail(`is a 'bool' NDArray holding ${data[i]} at index ${i}`, 'a bool array holds 0 (false) and 1 (true) only');
    }
  }
}

/**
 * Checks and encodes call arguments. Throws an ArgsError naming the path of the first value that
 * cannot be sent. The parts' memory is not copied: leave it unchanged until the call is written.
 */
export function encodeArgs(args: unknown, options?: EncodeArgsOptions): EncodedArgs {
  // One walk is reused on the hot path: a call's args are walked before the next call's.
  const w = (shared.busy ? new Walk() : shared).reset(options?.nonFinite === 'error');
  let value: unknown;
  try {
    value = w.value(args, '');
  } catch (e) {
    if (e instanceof RangeError && !(e instanceof ArgsError)) {
      // The call stack ran out: nesting this deep is refused before JSON.stringify overflows too.
      throw new ArgsError(`${formatPath(w.path.slice(0, 20))}...`, `the arguments are nested too deeply (more than ${w.path.length} levels) to be sent`);
    }
    throw e;
  } finally {
    w.busy = false;
  }
  const json = value === undefined ? 'null' : w.bigNumbers ? (stringifyBig(value) ?? 'null') : JSON.stringify(value);
  return { json, parts: w.parts ?? NO_PARTS };
}

const shared = new Walk();

/**
 * JSON.stringify of what a walk returned (plain objects, arrays and primitives only), except
 * that a number beyond +-2^53 is written in exponent form, which Python reads as a float.
 */
function stringifyBig(v: unknown): string | undefined {
  switch (typeof v) {
    case 'number':
      if (!Number.isFinite(v)) return 'null';
      return v > MAX_EXACT || v < -MAX_EXACT ? v.toExponential() : String(v);
    case 'string':
      return JSON.stringify(v);
    case 'boolean':
      return v ? 'true' : 'false';
    case 'object':
      break;
    default:
      return undefined;
  }
  if (v === null) return 'null';
  if (Array.isArray(v)) {
    let out = '[';
    for (let i = 0; i < v.length; i++) out += `${i ? ',' : ''}${stringifyBig(v[i]) ?? 'null'}`;
    return `${out}]`;
  }
  let out = '';
  const o = v as Record<string, unknown>;
  for (const k in o) {
    const x = stringifyBig(o[k]);
    if (x !== undefined) out += `${out ? ',' : ''}${JSON.stringify(k)}:${x}`;
  }
  return `{${out}}`;
}
