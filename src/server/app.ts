import { timingSafeEqual } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { PyfleetMetrics, collectNodeMetrics } from '../telemetry/metrics.js';
import { recordHttp } from './http-metrics.js';
import { isServing, onPoolClosing, type ObservedPool } from '../telemetry/source.js';
import { DASHBOARD_CSS, DASHBOARD_HTML, DASHBOARD_JS } from './dashboard.js';
import { errorBody, fromFastify, httpError, type ErrorAnswer } from './http-errors.js';
import { checkRequest, corsHeaders, refusalMessage, type GuardOptions } from './guard.js';
import { LiveState, type LiveOptions } from './live.js';
import { openApiDocument, type OpenApiOptions } from './openapi.js';
import { hasSchemas, type CommandSchemas } from '../typing/schema.js';
import { ArgsValidator } from '../validate/args-validator.js';
import { toHttpJson } from './http-json.js';
import { requireOptional } from '../util/optional.js';
import { registerStreamRoute, type StreamingPool } from './stream-route.js';

/** What the server needs from a pool (`Pool` fits); without `stream()`, `/v1/stream` answers 501. */
export interface ServedPool extends ObservedPool, StreamingPool {
  /** The commands the workers registered; with schemas once the runtime sends them in its hello. */
  readonly registeredCommands?: Readonly<Record<string, { idempotent: boolean; stream?: boolean } & Partial<CommandSchemas>>>;
  execute(command: string, args: unknown, options: { sessionId?: string; timeoutMs?: number; idempotent?: boolean; signal?: AbortSignal; detailed: true }): Promise<{ value: unknown; via: string; attempts: number; workerId: number | null; durationMs: number }>;
}

export interface ServerOptions extends GuardOptions {
  pool: ServedPool;
  /** Metrics served at /metrics (default: a new `PyfleetMetrics` with the pool attached, plus Node's default process metrics). One passed in is served as it is (attach the pool to it yourself); the server's HTTP metrics are added to it. */
  metrics?: PyfleetMetrics;
  /** When set, required on every route but /healthz and the dashboard's static files: `Authorization: Bearer <token>` or `?token=<token>` (for the dashboard in a browser). */
  token?: string;
  /** Largest request body (default 16 MiB). */
  bodyLimit?: number;
  /** Dashboard sampling and history. */
  live?: LiveOptions;
  /** fastify's logger option (default: off; pyfleet logs through the pool's logger). */
  logger?: boolean | object;
  /**
   * Where the commands' schemas come from (default: the pool's `registeredCommands`, which
   * carry them once the runtime sends them in its hello). They type `/openapi.json` and
   * validate every request body. Called per request: return the same object while it holds.
   */
  schemas?: () => Readonly<Record<string, CommandSchemas>> | undefined;
  /** Title and version of `/openapi.json`. */
  openapi?: Omit<OpenApiOptions, 'token'>;
}

export interface PyfleetServer {
  app: FastifyInstance;
  metrics: PyfleetMetrics;
  live: LiveState;
  /** Listens and resolves with the base URL (e.g. `http://127.0.0.1:7700`). */
  listen(options: { port?: number; host?: string }): Promise<string>;
  /** Stops taking requests, ends the dashboards' streams, and waits for the requests in flight. The pool is left open. */
  close(): Promise<void>;
}

const OPEN_ROUTES = new Set(['/healthz', '/dashboard.css', '/dashboard.js']);

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost|::ffff:127\.\d+\.\d+\.\d+)$/i;

/** Is `host` reachable only from this machine? */
export function isLoopback(host: string): boolean {
  return LOOPBACK.test(host.replace(/^\[|\]$/g, ''));
}

function sameToken(given: string, expected: Buffer): boolean {
  const g = Buffer.from(given);
  return g.length === expected.length && timingSafeEqual(g, expected);
}

const openSchemas = new WeakMap<object, Record<string, CommandSchemas>>();

/** The pool's commands as schemas: those that came without any (an older runtime) are open. */
function poolSchemas(pool: ServedPool): Readonly<Record<string, CommandSchemas>> | undefined {
  const cmds = pool.registeredCommands;
  if (cmds === undefined) return undefined;
  let out = openSchemas.get(cmds);
  if (out === undefined) {
    out = {};
    for (const [name, info] of Object.entries(cmds)) out[name] = hasSchemas(info) ? info : { args: {}, result: {}, item: null, doc: null, idempotent: info.idempotent };
    openSchemas.set(cmds, out);
  }
  return out;
}

/**
 * The HTTP face of a pool (fastify): `POST /v1/call/:command`, `POST /v1/stream/:command`
 * (NDJSON, see stream-route.ts), `GET /openapi.json`,
 * `GET /v1/stats`, `GET /metrics`, `GET /healthz`, the dashboard at `/` and its live stream at
 * `/events`. Request bodies are always checked against the command's args schema (callers are
 * remote); binary values travel as base64 strings both ways.
 */
export async function createServer(options: ServerOptions): Promise<PyfleetServer> {
  const { fastify } = requireOptional<typeof import('fastify')>('fastify', 'server');
  const pool = options.pool;
  let metrics = options.metrics;
  let detachMetrics = (): void => {};
  if (metrics === undefined) {
    metrics = new PyfleetMetrics();
    detachMetrics = metrics.attach(pool);
    collectNodeMetrics(metrics.registry);
  }
  const live = new LiveState(pool, options.live);
  const token = options.token === undefined || options.token === '' ? null : Buffer.from(options.token);
  const streams = new Set<ServerResponse>();
  let draining = false;
  const stopDraining = onPoolClosing(pool, () => {
    draining = true;
    live.draining = true;
  });

  const schemas = options.schemas ?? (() => poolSchemas(pool));
  const validator = new ArgsValidator({ schemas: (c) => schemas()?.[c]?.args, mode: 'http' });
  let openapi: { from: object; doc: object } | null = null;

  const bodyLimit = options.bodyLimit ?? 16 * 1024 * 1024;
  let bound = '127.0.0.1';
  let closing = false;
  const send = (reply: FastifyReply, a: ErrorAnswer): FastifyReply => reply.code(a.status).send(a.body);
  const app = fastify({
    logger: options.logger ?? false,
    bodyLimit,
    forceCloseConnections: 'idle',
    // fastify's own answers (503 while closing, a bad URL, a malformed request) take our shape here.
    return503OnClosing: false,
    frameworkErrors: (err, _req, reply) => send(reply, httpError('PYFLEET_HTTP_ERROR', err.message, err.statusCode)),
    clientErrorHandler: (err: Error & { code?: string }, socket) => {
      if (err.code === 'ECONNRESET' || !socket.writable) return socket.destroy();
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      const body = JSON.stringify(httpError('PYFLEET_HTTP_ERROR', `The request could not be read: ${err.message}`, status).body);
      socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    },
  });

  recordHttp(app, metrics);

  // Bodies are JSON sent as JSON: a form or text/plain POST (what any web page can send without a preflight) is refused with 415.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    const text = String(body);
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch (e) {
      done(Object.assign(new Error(`The request body is not JSON: ${(e as Error).message}`), { code: 'PYFLEET_INVALID_ARGS', statusCode: 400 }), undefined);
    }
  });

  app.addHook('onRequest', async (req, reply) => {
    if (closing) return send(reply.header('connection', 'close'), httpError('PYFLEET_HTTP_ERROR', 'The server is shutting down: send the request to another instance.', 503));
    const v = checkRequest(req.headers, bound, options);
    if (!v.ok) return send(reply, httpError('PYFLEET_FORBIDDEN', refusalMessage(v)));
    if (v.cors !== null) {
      reply.headers(corsHeaders(v.cors, req.method === 'OPTIONS'));
      if (req.method === 'OPTIONS') return reply.code(204).send();
    }
    // Open without a token: the health check, and the dashboard's stylesheet and script (no data in them).
    if (token === null || OPEN_ROUTES.has(req.url.split('?', 1)[0])) return;
    const auth = req.headers.authorization;
    const fromHeader = typeof auth === 'string' && auth.startsWith('Bearer ') ? auth.slice(7).trim() : null;
    const fromQuery = (req.query as Record<string, unknown> | undefined)?.token;
    const given = fromHeader ?? (typeof fromQuery === 'string' ? fromQuery : null);
    if (given === null || !sameToken(given, token)) {
      reply.header('www-authenticate', 'Bearer realm="pyfleet"');
      return send(reply, httpError('PYFLEET_UNAUTHORIZED', 'A token is required: send "Authorization: Bearer <token>" or add ?token=<token> to the URL.'));
    }
  });

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, req, reply) => send(reply, fromFastify(err, req.headers['content-type'], bodyLimit)));
  app.setNotFoundHandler((req, reply) => send(reply, httpError('PYFLEET_NOT_FOUND', `No route ${req.method} ${req.url.split('?', 1)[0]}: calls are POST /v1/call/<command> and POST /v1/stream/<command>; /openapi.json lists them.`)));

  app.post<{ Params: { command: string } }>('/v1/call/:command', async (req, reply) => {
    const h = req.headers;
    const opts: Parameters<ServedPool['execute']>[2] = { detailed: true };
    const sid = h['x-pyfleet-session'];
    if (typeof sid === 'string' && sid !== '') opts.sessionId = sid;
    const timeout = h['x-pyfleet-timeout-ms'];
    if (typeof timeout === 'string' && timeout !== '') opts.timeoutMs = Number(timeout);
    const idem = h['x-pyfleet-idempotent'];
    if (idem === 'true' || idem === 'false') opts.idempotent = idem === 'true';
    // The client hanging up cancels the call (in the queue or in the worker).
    const ac = new AbortController();
    const onClose = (): void => {
      if (!reply.raw.writableFinished) ac.abort(new Error('the HTTP client disconnected'));
    };
    reply.raw.once('close', onClose);
    opts.signal = ac.signal;
    const holder = { args: req.body === undefined ? null : (req.body as unknown) };
    const invalid = validator.check(req.params.command, holder.args, holder);
    if (invalid !== null) {
      reply.raw.off('close', onClose);
      reply.code(400);
      return errorBody(invalid).body;
    }
    try {
      const r = await pool.execute(req.params.command, holder.args, opts);
      reply.header('x-pyfleet-via', r.via).header('x-pyfleet-attempts', String(r.attempts)).header('x-pyfleet-duration-ms', r.durationMs.toFixed(2));
      if (r.workerId !== null) reply.header('x-pyfleet-worker', String(r.workerId));
      return { result: toHttpJson(r.value) };
    } catch (e) {
      const { status, body, retryAfterS } = errorBody(e);
      if (retryAfterS !== null) reply.header('retry-after', String(retryAfterS));
      reply.code(status);
      return body;
    } finally {
      reply.raw.off('close', onClose);
    }
  });

  registerStreamRoute(app, pool, validator, () => draining);

  app.get('/openapi.json', async () => {
    const cmds = schemas() ?? {};
    if (openapi === null || openapi.from !== cmds) openapi = { from: cmds, doc: openApiDocument(cmds, { ...options.openapi, token: token !== null }) };
    return openapi.doc;
  });

  app.get('/v1/stats', async () => pool.stats());

  app.get('/healthz', async (_req, reply) => {
    const s = pool.stats();
    const serving = s.workers.filter(isServing).length;
    const circuits: Record<string, string> = {};
    for (const [k, c] of Object.entries(s.circuits)) circuits[k] = c.state;
    const status = draining || s.closed ? 'draining' : serving > 0 ? 'ok' : 'down';
    reply.code(status === 'ok' ? 200 : 503);
    return { status, workers: { total: s.workers.length, serving }, queue: s.queue.length, circuits };
  });

  const m = metrics;
  app.get('/metrics', async (_req, reply) => {
    reply.type(m.contentType);
    return m.metrics();
  });

  app.get('/', async (_req, reply) => reply.type('text/html; charset=utf-8').header('cache-control', 'no-cache').send(DASHBOARD_HTML));
  app.get('/dashboard.css', async (_req, reply) => reply.type('text/css; charset=utf-8').send(DASHBOARD_CSS));
  app.get('/dashboard.js', async (_req, reply) => reply.type('text/javascript; charset=utf-8').send(DASHBOARD_JS));

  app.get('/events', (req, reply) => {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache, no-transform', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    const send = (snap: unknown): void => {
      res.write(`event: snapshot\ndata: ${JSON.stringify(snap)}\n\n`);
    };
    res.write('retry: 1000\n\n');
    send(live.snapshot());
    const off = live.onSnapshot(send);
    streams.add(res);
    req.raw.socket.setNoDelay(true);
    res.once('close', () => {
      off();
      streams.delete(res);
    });
  });

  // While draining, answers close their connection, so keep-alive clients cannot hold the process open.
  app.addHook('onSend', async (_req, reply, payload) => {
    if (draining) reply.header('connection', 'close');
    return payload;
  });

  app.addHook('preClose', async () => {
    closing = true;
    draining = true;
    live.draining = true;
    for (const res of streams) res.end();
    streams.clear();
  });

  await app.ready();

  return {
    app,
    metrics,
    live,
    async listen({ port = 7700, host = '127.0.0.1' }) {
      if (!isLoopback(host) && token === null) {
        throw new Error(`Refusing to serve on ${host} without a token: anyone who can reach it could run your Python handlers. Pass --token (or set PYFLEET_TOKEN), or bind to 127.0.0.1.`);
      }
      await app.listen({ port, host });
      bound = host;
      const addr = app.server.address();
      const p = typeof addr === 'object' && addr !== null ? addr.port : port;
      const shown = host.includes(':') ? `[${host}]` : host;
      return `http://${shown}:${p}`;
    },
    async close() {
      await app.close();
      live.close();
      stopDraining();
      detachMetrics();
    },
  };
}
