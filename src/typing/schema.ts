/**
 * The JSON Schemas the Python runtime derives from a command's type hints
 * (python/pyfleet/_schema.py): JSON Schema 2020-12, named types in `$defs` referenced as
 * `#/$defs/Name`, binary values marked with the `x-pyfleet-binary` keyword.
 */

/** A JSON Schema (2020-12) as pyfleet produces it: an object, or `true`/`false`. */
export type JsonSchema = boolean | JsonSchemaObject;

export interface JsonSchemaObject {
  $ref?: string;
  $defs?: Record<string, JsonSchema>;
  type?: JsonType | JsonType[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: JsonSchema;
  items?: JsonSchema;
  prefixItems?: JsonSchema[];
  minItems?: number;
  maxItems?: number;
  enum?: unknown[];
  const?: unknown;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  description?: string;
  [BINARY_KEYWORD]?: BinaryKind;
  [keyword: string]: unknown;
}

export type JsonType = 'null' | 'boolean' | 'integer' | 'number' | 'string' | 'array' | 'object';

/**
 * Marks a binary value. `bytes` (Python bytes, bytearray): a `Buffer` / `Uint8Array` in Node.
 * `buffer` (Python memoryview): any buffer, so possibly a typed array. The schema has no JSON
 * type for them: in Node they are not JSON at all, and over HTTP they are base64 strings.
 */
export const BINARY_KEYWORD = 'x-pyfleet-binary';
export type BinaryKind = 'bytes' | 'buffer';

/** One command's schemas, as `python -m pyfleet._schema` prints them (and the hello will carry them). */
export interface CommandSchemas {
  /** The first parameter's hint; `{}` when it has none. */
  args: JsonSchema;
  /** The return hint; null for a generator (it has no single result). */
  result?: JsonSchema | null;
  /** A generator's item (from `Iterator[T]`, `AsyncIterator[T]`, ...); null otherwise. */
  item?: JsonSchema | null;
  /** The handler's docstring. */
  doc?: string | null;
  idempotent?: boolean;
}

export interface ModuleSchemas {
  commands: Record<string, CommandSchemas>;
  /** Hints that became open schemas, each naming its command, place and hint. */
  warnings: string[];
}

/** Does this command carry schemas (the hello of an older runtime does not)? */
export function hasSchemas(info: unknown): info is CommandSchemas {
  return typeof info === 'object' && info !== null && 'args' in info;
}

export function isOpen(schema: JsonSchema | null | undefined): boolean {
  if (schema === undefined || schema === null || schema === true) return true;
  if (schema === false) return false;
  return Object.keys(schema).every((k) => k === 'description' || k === '$defs');
}

/** The local name a `#/$defs/Name` reference points to. */
export function refName(ref: string): string {
  if (!ref.startsWith('#/$defs/')) throw new Error(`unsupported $ref ${JSON.stringify(ref)}: pyfleet schemas only refer to their own $defs`);
  return ref.slice('#/$defs/'.length);
}
