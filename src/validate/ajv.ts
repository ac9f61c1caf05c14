import type { Ajv2020, ValidateFunction } from 'ajv/dist/2020.js';
import type { DataValidationCxt } from 'ajv/dist/types/index.js';
import { BINARY_KEYWORD } from '../typing/schema.js';
import { requireOptional } from '../util/optional.js';

/**
 * Where args come from decides what a binary value is: in the pool, a Buffer / typed array
 * that travels as a binary part; over HTTP, a base64 string, decoded to a Buffer once valid.
 */
export type ValidationMode = 'pool' | 'http';

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function isBinary(kind: unknown, data: unknown): boolean {
  // bytes (Python bytes / bytearray): a byte string; buffer (memoryview): any view, a DataView too.
  return kind === 'buffer' ? ArrayBuffer.isView(data) : data instanceof Uint8Array;
}

function decodeBase64(_kind: unknown, data: unknown, _parent?: unknown, cxt?: DataValidationCxt): boolean {
  if (typeof data !== 'string' || !BASE64.test(data)) return false;
  // The handler is hinted bytes: give it bytes, not the base64 text.
  if (cxt?.parentData !== undefined) cxt.parentData[cxt.parentDataProperty] = Buffer.from(data, 'base64');
  return true;
}

/**
 * An Ajv instance for pyfleet's schemas (JSON Schema 2020-12, `x-pyfleet-binary`).
 * Not strict: a newer runtime may send keywords this version does not know, and a schema must
 * never stop a call; `strictNumbers` refuses NaN and ±Infinity where a number is expected
 * (they would reach Python as None).
 */
export function createAjv(mode: ValidationMode): Ajv2020 {
  const { Ajv2020 } = requireOptional<typeof import('ajv/dist/2020.js')>('ajv/dist/2020.js', 'validation');
  const ajv = new Ajv2020({ strict: false, strictNumbers: true, allErrors: false, verbose: true, validateFormats: false });
  ajv.addKeyword(
    mode === 'pool'
      ? { keyword: BINARY_KEYWORD, schemaType: 'string', errors: false, validate: isBinary }
      : { keyword: BINARY_KEYWORD, schemaType: 'string', errors: false, modifying: true, validate: decodeBase64 },
  );
  return ajv;
}

export type { ValidateFunction };
