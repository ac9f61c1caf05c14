import type { ErrorObject } from 'ajv/dist/2020.js';
import { BINARY_KEYWORD } from '../typing/schema.js';
import type { ValidationMode } from './ajv.js';

/** What a refused call says about its args: the field, what it must be, and what it was. */
export interface ArgsProblem {
  /** `args`, `args.mode`, `args.points[2].x`. */
  field: string;
  /** The sentence, e.g. `args.mode must be one of "fast", "slow" (got "quick")`. */
  message: string;
  keyword: string;
  expected: string;
}

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** A JSON pointer (`/points/2/x`) as a field path (`args.points[2].x`). */
export function fieldPath(pointer: string, root = 'args'): string {
  if (pointer === '') return root;
  let out = root;
  for (const raw of pointer.slice(1).split('/')) {
    const part = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (/^(0|[1-9]\d*)$/.test(part)) out += `[${part}]`;
    else out += IDENT.test(part) ? `.${part}` : `[${JSON.stringify(part)}]`;
  }
  return out;
}

/** A value as the message shows it: short JSON, or what it is when JSON cannot say. */
export function shown(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'function' || typeof value === 'symbol') return `a ${typeof value}`;
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name} of ${value.byteLength} bytes`;
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = Object.prototype.toString.call(value);
  }
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

const TYPE_NAMES: Record<string, string> = {
  integer: 'an integer',
  number: 'a number',
  string: 'a string',
  boolean: 'a boolean',
  null: 'null',
  array: 'a list',
  object: 'an object',
};

function typeNames(t: unknown): string {
  const list = Array.isArray(t) ? t : String(t).split(',');
  return list.map((x) => TYPE_NAMES[String(x)] ?? String(x)).join(' or ');
}

function binaryExpected(kind: unknown, mode: ValidationMode): string {
  if (mode === 'http') return 'binary data as a base64 string';
  return kind === 'buffer' ? 'binary data (a Buffer, a typed array or a DataView)' : 'binary data (a Buffer or Uint8Array)';
}

/** Edit distance, to suggest the key a misspelt one was meant to be. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}

function suggestion(key: string, parentSchema: unknown): string {
  const props = (parentSchema as { properties?: Record<string, unknown> } | undefined)?.properties;
  if (props === undefined) return '';
  let best: string | null = null;
  let bestD = Infinity;
  for (const k of Object.keys(props)) {
    const d = distance(key.toLowerCase(), k.toLowerCase());
    if (d < bestD) {
      best = k;
      bestD = d;
    }
  }
  return best !== null && bestD <= Math.max(1, Math.floor(best.length / 3)) ? `; did you mean "${best}"?` : '';
}

/** What one failed keyword expected, as a phrase ("an integer", `one of "a", "b"`). */
function expectedOf(e: ErrorObject, mode: ValidationMode): string {
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'type':
      return typeNames(p.type);
    case 'enum':
      return `one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'const':
      return JSON.stringify(p.allowedValue);
    case BINARY_KEYWORD:
      return binaryExpected(e.schema, mode);
    case 'minItems':
      return `at least ${String(p.limit)} items`;
    case 'maxItems':
    case 'items':
      return `at most ${String(p.limit)} items`;
    case 'required':
      return `an object with the key "${String(p.missingProperty)}"`;
    case 'additionalProperties':
      return `an object without the key "${String(p.additionalProperty)}"`;
    default:
      return e.message ?? `to satisfy "${e.keyword}"`;
  }
}

function sentence(e: ErrorObject, mode: ValidationMode): ArgsProblem {
  const field = fieldPath(e.instancePath);
  const p = e.params as Record<string, unknown>;
  if (e.keyword === 'required') {
    const key = String(p.missingProperty);
    return { field: fieldPath(`${e.instancePath}/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`), keyword: 'required', expected: 'present', message: `${field} is missing required key "${key}"` };
  }
  if (e.keyword === 'additionalProperties') {
    const key = String(p.additionalProperty);
    const known = Object.keys((e.parentSchema as { properties?: object } | undefined)?.properties ?? {});
    const list = known.length > 0 ? ` (its keys: ${known.map((k) => `"${k}"`).join(', ')})` : '';
    return { field, keyword: e.keyword, expected: `no key "${key}"`, message: `${field} has an unexpected key "${key}"${suggestion(key, e.parentSchema)}${list}` };
  }
  const expected = expectedOf(e, mode);
  const verb = e.keyword === 'enum' || e.keyword === 'const' || e.keyword === 'type' || e.keyword === BINARY_KEYWORD ? 'must be' : 'must have';
  return { field, keyword: e.keyword, expected, message: `${field} ${verb} ${expected} (got ${shown(e.data)})` };
}

const isSpecific = (e: ErrorObject): boolean => e.keyword === 'required' || e.keyword === 'additionalProperties';

/**
 * The one problem to report from Ajv's errors (it stops at the first failure, but reports every
 * branch of an `anyOf`). For a union: a failure inside one alternative (a key missing from an
 * object) is the specific one; otherwise the message lists what each alternative expected.
 */
export function describeErrors(errors: ErrorObject[], mode: ValidationMode): ArgsProblem {
  const last = errors[errors.length - 1];
  if (last.keyword !== 'anyOf' && last.keyword !== 'oneOf') return sentence(last, mode);
  // A branch's errors are those at or under the union's value: through a $ref, their schemaPath is the def's, not under the anyOf's.
  const branches = errors.filter((e) => e !== last && (e.instancePath === last.instancePath || e.instancePath.startsWith(`${last.instancePath}/`)));
  const deeper = branches.filter((e) => e.instancePath.length > last.instancePath.length || isSpecific(e));
  if (deeper.length > 0) {
    deeper.sort((a, b) => b.instancePath.length - a.instancePath.length);
    return describeErrors([deeper[0]], mode);
  }
  const expected: string[] = [];
  for (const b of branches) {
    const x = expectedOf(b, mode);
    if (!expected.includes(x)) expected.push(x);
  }
  const field = fieldPath(last.instancePath);
  const exp = expected.join(' or ');
  return { field, keyword: last.keyword, expected: exp, message: `${field} must be ${exp} (got ${shown(last.data)})` };
}
