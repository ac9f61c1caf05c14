import { BINARY_KEYWORD, refName, type JsonSchema, type JsonSchemaObject } from './schema.js';

/** Which side of a call a type is for: binary values are typed differently going in and coming out. */
export type Role = 'args' | 'result' | 'item';

export interface TypeContext {
  role: Role;
  /** The TypeScript name of a local `$defs` entry. */
  refName: (local: string) => string;
}

export const FLOAT_NOTE = 'float: NaN and ±Infinity travel as null.';

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

export function propertyKey(name: string): string {
  return IDENTIFIER.test(name) ? name : JSON.stringify(name);
}

/** A TSDoc block for `text` at `indent`, or '' when there is no text. */
export function tsdoc(lines: Array<string | null | undefined>, indent: string): string {
  const text = lines.filter((l): l is string => typeof l === 'string' && l.trim() !== '').join('\n\n');
  if (text === '') return '';
  const body = text.replace(/\*\//g, '*\\/').split('\n');
  if (body.length === 1) return `${indent}/** ${body[0]} */\n`;
  return `${indent}/**\n${body.map((l) => (l === '' ? `${indent} *` : `${indent} * ${l}`)).join('\n')}\n${indent} */\n`;
}

/** Does the schema (not following `$ref`s) admit a JSON number that came from a Python float? */
export function mentionsFloat(schema: JsonSchema | null | undefined): boolean {
  if (typeof schema !== 'object' || schema === null) return false;
  const t = schema.type;
  if (t === 'number' || (Array.isArray(t) && t.includes('number'))) return true;
  const subs: JsonSchema[] = [...(schema.anyOf ?? []), ...(schema.oneOf ?? []), ...(schema.prefixItems ?? [])];
  if (schema.items !== undefined) subs.push(schema.items);
  if (typeof schema.additionalProperties === 'object') subs.push(schema.additionalProperties);
  return subs.some(mentionsFloat);
}

function binaryType(kind: unknown, role: Role): string {
  // A Buffer is a Uint8Array: callers may pass either; what comes back from Python is a Buffer.
  if (kind === 'buffer') return 'ArrayBufferView';
  return role === 'args' ? 'Uint8Array' : 'Buffer';
}

function literal(v: unknown): string {
  if (v === null || typeof v === 'number' || typeof v === 'boolean' || typeof v === 'string') return JSON.stringify(v);
  return 'unknown';
}

function union(parts: string[]): string {
  const seen: string[] = [];
  for (const p of parts) if (!seen.includes(p)) seen.push(p);
  if (seen.includes('unknown')) return 'unknown';
  if (seen.length === 0) return 'never';
  return seen.join(' | ');
}

/** Wraps a type that would bind wrongly before `[]`. */
function operand(t: string): string {
  return /^[A-Za-z0-9_$.<>"']+$/.test(t) || /^\[.*\]$/s.test(t) || /^\{.*\}$/s.test(t) ? t : `(${t})`;
}

/** The TypeScript type expression for `schema`; `indent` is the indentation of the line it starts on. */
export function typeOf(schema: JsonSchema | null | undefined, ctx: TypeContext, indent = ''): string {
  if (schema === undefined || schema === null || schema === true) return 'unknown';
  if (schema === false) return 'never';
  const s: JsonSchemaObject = schema;
  if (typeof s.$ref === 'string') return ctx.refName(refName(s.$ref));
  if (s[BINARY_KEYWORD] !== undefined) return binaryType(s[BINARY_KEYWORD], ctx.role);
  if ('const' in s) return literal(s.const);
  if (Array.isArray(s.enum)) return union(s.enum.map(literal));
  const alternatives = s.anyOf ?? s.oneOf;
  if (Array.isArray(alternatives)) return union(alternatives.map((a) => typeOf(a, ctx, indent)));
  if (Array.isArray(s.type)) return union(s.type.map((t) => typeOf({ ...s, type: t }, ctx, indent)));
  switch (s.type) {
    case 'null':
      return 'null';
    case 'boolean':
      return 'boolean';
    case 'integer':
    case 'number':
      return 'number';
    case 'string':
      return 'string';
    case 'array':
      return arrayType(s, ctx, indent);
    case 'object':
      return objectType(s, ctx, indent);
    default:
      return s.properties !== undefined ? objectType(s, ctx, indent) : 'unknown';
  }
}

function arrayType(s: JsonSchemaObject, ctx: TypeContext, indent: string): string {
  if (Array.isArray(s.prefixItems)) {
    const fixed = s.prefixItems.map((p) => typeOf(p, ctx, indent));
    if (s.items === false) return `[${fixed.join(', ')}]`;
    return `[${[...fixed, `...${operand(typeOf(s.items, ctx, indent))}[]`].join(', ')}]`;
  }
  if (s.maxItems === 0) return '[]';
  return `${operand(typeOf(s.items, ctx, indent))}[]`;
}

function objectType(s: JsonSchemaObject, ctx: TypeContext, indent: string): string {
  const props = s.properties;
  const extra = s.additionalProperties;
  if (props === undefined || Object.keys(props).length === 0) {
    if (extra === false) return 'Record<string, never>';
    return `Record<string, ${typeOf(typeof extra === 'object' ? extra : undefined, ctx, indent)}>`;
  }
  return `{\n${members(s, ctx, `${indent}  `)}${indent}}`;
}

/** The member lines of an object schema (for an interface body or an inline object type). */
export function members(s: JsonSchemaObject, ctx: TypeContext, indent: string): string {
  const required = new Set(s.required ?? []);
  let out = '';
  for (const [key, sub] of Object.entries(s.properties ?? {})) {
    const desc = typeof sub === 'object' ? sub.description : undefined;
    out += tsdoc([desc, mentionsFloat(sub) ? FLOAT_NOTE : null], indent);
    out += `${indent}${propertyKey(key)}${required.has(key) ? '' : '?'}: ${typeOf(sub, ctx, indent)};\n`;
  }
  const extra = s.additionalProperties;
  // Python never emits both; an index signature must admit every declared member, hence unknown.
  if (extra !== undefined && extra !== false) out += `${indent}[key: string]: unknown;\n`;
  return out;
}

/** `export interface Name {...}` for an object schema with properties, `export type Name = ...` otherwise. */
export function namedType(name: string, schema: JsonSchema, ctx: TypeContext): string {
  const doc = typeof schema === 'object' ? schema.description : undefined;
  const head = tsdoc([doc], '');
  if (typeof schema === 'object' && schema.properties !== undefined && Object.keys(schema.properties).length > 0 && schema.$ref === undefined && schema.anyOf === undefined) {
    return `${head}export interface ${name} {\n${members(schema, ctx, '  ')}}\n`;
  }
  return `${head}export type ${name} = ${typeOf(schema, ctx, '')};\n`;
}
