import { DefNamer } from '../typing/def-names.js';
import { BINARY_KEYWORD, refName, type CommandSchemas, type JsonSchema } from '../typing/schema.js';

export interface OpenApiOptions {
  title?: string;
  /** The document's `info.version` (default: pyfleet's version, when given, or "1"). */
  version?: string;
  /** Document the bearer token the server requires. */
  token?: boolean;
}

type Json = Record<string, unknown>;
type Side = 'request' | 'response';

const FLOAT_NULL = 'A Python float: NaN and ±Infinity arrive as null.';

/**
 * A pyfleet schema as an OpenAPI 3.1 schema object: references into `components/schemas`,
 * binary values as base64 strings (as the server takes and gives them), and in responses a
 * float as `number | null` (JSON has no NaN: Python's NaN and ±Infinity arrive as null).
 */
function convert(schema: JsonSchema | null | undefined, side: Side, names: Map<string, string>): JsonSchema {
  if (schema === undefined || schema === null) return {};
  if (typeof schema === 'boolean') return schema;
  const out: Json = {};
  for (const [k, v] of Object.entries(schema)) {
    if (k === '$defs') continue;
    if (k === '$ref') out.$ref = `#/components/schemas/${names.get(refName(v as string)) ?? 'unknown'}`;
    else if (k === 'items' || k === 'additionalProperties') out[k] = typeof v === 'object' ? convert(v as JsonSchema, side, names) : v;
    else if (k === 'properties') out[k] = Object.fromEntries(Object.entries(v as Record<string, JsonSchema>).map(([p, s]) => [p, convert(s, side, names)]));
    else if (k === 'anyOf' || k === 'oneOf' || k === 'prefixItems') out[k] = (v as JsonSchema[]).map((s) => convert(s, side, names));
    else out[k] = v;
  }
  if (schema[BINARY_KEYWORD] !== undefined) {
    out.type = 'string';
    out.contentEncoding = 'base64';
    out.description ??= 'Binary data, base64-encoded (Python bytes).';
  }
  if (side === 'response' && out.type === 'number') {
    out.type = ['number', 'null'];
    out.description ??= FLOAT_NULL;
  }
  return out as JsonSchema;
}

const ERROR_SCHEMA: JsonSchema = {
  type: 'object',
  description: 'A failed call, or a request the server refused: what went wrong and what the pool did about it.',
  properties: {
    error: {
      type: 'object',
      properties: {
        code: { type: 'string', description: 'e.g. PYFLEET_INVALID_ARGS, PYFLEET_TIMEOUT, PYFLEET_PYTHON_ERROR, PYFLEET_FORBIDDEN' },
        category: { type: 'string', description: 'One of the nine error categories (communication_error for refused requests).' },
        message: { type: 'string', description: 'What happened, and what to do.' },
        retryable: { type: 'boolean' },
        severity: { type: 'string' },
        strategy: { type: 'string' },
        attempt: { type: 'integer' },
        command: { type: ['string', 'null'] },
        workerId: { type: ['integer', 'null'] },
        sessionId: { type: ['string', 'null'] },
        details: { type: 'object', description: 'For PYFLEET_INVALID_ARGS: field, expected, keyword.' },
        python: { type: 'object', properties: { type: { type: 'string' }, message: { type: 'string' }, traceback: { type: 'string' } } },
      },
      required: ['code', 'category', 'message'],
    },
  },
  required: ['error'],
};

const HEADERS = [
  { name: 'x-pyfleet-session', in: 'header', required: false, description: 'Run the call in this session (its state lives in one worker).', schema: { type: 'string' } },
  { name: 'x-pyfleet-timeout-ms', in: 'header', required: false, description: 'Time for one attempt, in milliseconds.', schema: { type: 'integer', minimum: 1 } },
  { name: 'x-pyfleet-idempotent', in: 'header', required: false, description: 'May the call be sent again after a worker took it?', schema: { type: 'string', enum: ['true', 'false'] } },
];

const STREAM_HEADERS = [
  HEADERS[0],
  { name: 'x-pyfleet-timeout-ms', in: 'header', required: false, description: 'Time for the whole stream, in milliseconds.', schema: { type: 'integer', minimum: 1 } },
  HEADERS[2],
  { name: 'x-pyfleet-chunk-timeout-ms', in: 'header', required: false, description: 'The longest wait for the next item from Python, in milliseconds.', schema: { type: 'integer', minimum: 1 } },
  { name: 'x-pyfleet-high-water-mark', in: 'header', required: false, description: 'Items Python may send ahead of the reader (default 16); a slow reader makes the generator wait.', schema: { type: 'integer', minimum: 1 } },
];

const STREAM_LINE_DOC =
  'NDJSON: one JSON object per line, sent as the generator yields: {"item": ...} per item, then {"end": {"items": n}}, or {"error": {...}} (the last line) when the stream fails after its first item. ' +
  'A failure before the first item is answered with its own status and one {"error": ...} line instead. A reader that hangs up closes the generator in Python.';

function errorResponse(description: string): Json {
  return { description, content: { 'application/json': { schema: { $ref: '#/components/schemas/PyfleetError' } } } };
}

/** What every call's route may answer before the command runs. */
function refusals(options: OpenApiOptions): Json {
  return {
    ...(options.token ? { '401': errorResponse('A token is required (PYFLEET_UNAUTHORIZED).') } : {}),
    '403': errorResponse('A page of another origin, or a Host that is not this server (PYFLEET_FORBIDDEN).'),
    '404': errorResponse('No such command (PYFLEET_UNKNOWN_COMMAND).'),
    '413': errorResponse('The body is over the server\'s bodyLimit, or the arguments over maxFrameBytes (PYFLEET_FRAME_TOO_LARGE).'),
    '415': errorResponse('The body is not sent as application/json (PYFLEET_UNSUPPORTED_MEDIA_TYPE).'),
  };
}

function operationId(name: string): string {
  const id = name.replace(/[^A-Za-z0-9_]/g, '_');
  return /^[A-Za-z_]/.test(id) ? id : `call_${id}`;
}

/** A generator: its calls stream (the hello says so; a schema without a result but with an item does too). */
function isGenerator(info: CommandSchemas & { stream?: boolean }): boolean {
  return info.stream === true || ((info.result === null || info.result === undefined) && info.item !== null && info.item !== undefined);
}

/** Does a call with no body (null) fit? Only an args schema that admits null does. */
function bodyRequired(args: JsonSchema | null | undefined): boolean {
  if (args === undefined || args === null || args === true) return false;
  if (args === false) return true;
  return Object.keys(args).some((k) => k !== 'description' && k !== '$defs');
}

/**
 * The OpenAPI 3.1 document of `pyfleet serve`: one `POST /v1/call/<command>` per command (its
 * body is the args schema, its 200 answer `{ "result": <result schema> }`), the named Python
 * types under `components/schemas`. A generator gets `POST /v1/stream/<command>` instead: its 200
 * answer is NDJSON, each line an item (`{"item": <item schema>}`), the end or an error.
 */
export function openApiDocument(commands: Readonly<Record<string, CommandSchemas>>, options: OpenApiOptions = {}): Json {
  const namer = new DefNamer();
  namer.reserve('PyfleetError');
  namer.reserve('PyfleetStreamEnd');
  const components: Record<string, JsonSchema> = { PyfleetError: ERROR_SCHEMA };
  const paths: Record<string, Json> = {};

  const place = (schema: JsonSchema | null | undefined, side: Side, suffix: string): JsonSchema => {
    const defs = (typeof schema === 'object' && schema !== null ? schema.$defs : undefined) ?? {};
    // Floats differ by side (nullable in responses), so a type with one is named per side.
    const { names, fresh } = namer.assign(defs, suffix, (text) => (side === 'response' && text.includes('"number"') ? 'response:' : ''));
    for (const d of fresh) components[names.get(d) as string] = convert(defs[d], side, names);
    return convert(schema, side, names);
  };

  for (const name of Object.keys(commands).sort()) {
    const info = commands[name];
    if (isGenerator(info)) {
      paths[`/v1/stream/${encodeURIComponent(name)}`] = streamPath(name, info, place(info.args, 'request', 'Args'), place(info.item, 'response', 'Item'), options);
      continue;
    }
    const args = place(info.args, 'request', 'Args');
    const result = place(info.result, 'response', 'Result');
    const doc = info.doc ?? undefined;
    paths[`/v1/call/${encodeURIComponent(name)}`] = {
      post: {
        operationId: operationId(name),
        summary: doc?.split('\n', 1)[0] ?? `Call ${name}`,
        ...(doc !== undefined ? { description: doc } : {}),
        ...(info.idempotent !== undefined ? { 'x-pyfleet-idempotent': info.idempotent } : {}),
        parameters: HEADERS,
        requestBody: { required: bodyRequired(info.args), description: 'The arguments, as JSON.', content: { 'application/json': { schema: args } } },
        responses: {
          '200': { description: "The handler's result.", content: { 'application/json': { schema: { type: 'object', properties: { result: result }, required: ['result'] } } } },
          '400': errorResponse('The body is not JSON, or the arguments do not fit the schema (PYFLEET_INVALID_ARGS names the field).'),
          ...refusals(options),
          '500': errorResponse('The Python handler raised (PYFLEET_PYTHON_ERROR, with the traceback).'),
          default: errorResponse('The pool could not answer (worker crashed, timeout, open circuit, ...).'),
        },
      },
    };
  }

  if (Object.keys(paths).some((p) => p.startsWith('/v1/stream/'))) components.PyfleetStreamEnd = STREAM_END_SCHEMA;
  const doc: Json = {
    openapi: '3.1.0',
    info: { title: options.title ?? 'pyfleet', version: options.version ?? '1', description: 'Python commands served by pyfleet. Binary values are base64 strings.' },
    // Relative: the server at whatever URL (host, proxy, TLS) the document was fetched from.
    servers: [{ url: '/', description: 'This server.' }],
    paths,
    components: { schemas: components },
    // Without a token, no scheme: an empty requirement says the calls need none.
    security: [options.token ? { bearer: [] } : {}],
  };
  if (options.token) (doc.components as Json).securitySchemes = { bearer: { type: 'http', scheme: 'bearer', description: 'The token pyfleet serve printed (or --token, $PYFLEET_TOKEN).' } };
  return doc;
}

const STREAM_END_SCHEMA: JsonSchema = {
  type: 'object',
  description: 'The last line of a stream that ended: how many items it sent.',
  properties: { end: { type: 'object', properties: { items: { type: 'integer', minimum: 0 } }, required: ['items'] } },
  required: ['end'],
};

/** `POST /v1/stream/<command>` of a generator: its body is the args, its 200 answer NDJSON lines. */
function streamPath(name: string, info: CommandSchemas, args: JsonSchema, item: JsonSchema, options: OpenApiOptions): Json {
  const doc = info.doc ?? undefined;
  const line = {
    oneOf: [
      { type: 'object', description: 'One item the generator yielded.', properties: { item }, required: ['item'] },
      { $ref: '#/components/schemas/PyfleetStreamEnd' },
      { $ref: '#/components/schemas/PyfleetError' },
    ],
  };
  return {
    post: {
      operationId: `stream_${operationId(name)}`,
      summary: doc?.split('\n', 1)[0] ?? `Stream ${name}`,
      ...(doc !== undefined ? { description: doc } : {}),
      ...(info.idempotent !== undefined ? { 'x-pyfleet-idempotent': info.idempotent } : {}),
      parameters: STREAM_HEADERS,
      requestBody: { required: bodyRequired(info.args), description: 'The arguments, as JSON.', content: { 'application/json': { schema: args } } },
      responses: {
        '200': { description: STREAM_LINE_DOC, content: { 'application/x-ndjson': { schema: line } } },
        '400': errorResponse('The body is not JSON, the arguments do not fit the schema, or a header is invalid (PYFLEET_INVALID_ARGS).'),
        ...refusals(options),
        '500': errorResponse('The generator raised before its first item (PYFLEET_PYTHON_ERROR, with the traceback).'),
        default: errorResponse('The pool could not start the stream (worker crashed, timeout, open circuit, ...).'),
      },
    },
  };
}
