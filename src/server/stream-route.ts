import type { ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { ArgsValidator } from '../validate/args-validator.js';
import { errorBody, httpError } from './http-errors.js';
import { toHttpJson } from './http-json.js';

/** What the route needs of a pool: `stream()` (a `Pool` has it). */
export interface StreamingPool {
  stream?(
    command: string,
    args: unknown,
    options: { sessionId?: string; timeoutMs?: number; idempotent?: boolean; chunkTimeoutMs?: number; highWaterMark?: number },
  ): AsyncIterableIterator<unknown>;
}

export const NDJSON = 'application/x-ndjson';

/** A header as a number for the pool to check (it refuses a bad one with PYFLEET_INVALID_ARGS). */
function numberHeader(v: string | string[] | undefined): number | undefined {
  return typeof v === 'string' && v !== '' ? Number(v) : undefined;
}

/** Resolves when `res` can take more, or is gone. */
function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.once('drain', done);
    res.once('close', done);
  });
}

/**
 * `POST /v1/stream/:command`: a generator's items as NDJSON, one line each as it arrives
 * (`{"item": ...}`), then `{"end": {"items": n}}`, or `{"error": {...}}` when it fails. NDJSON
 * rather than Server-Sent Events: the call needs a POST body (EventSource only GETs), a line of
 * JSON is all a client needs to parse, and SSE's automatic reconnection would run a generator
 * again that must not be. A failure before the first item is answered as `/v1/call` answers it
 * (its status and a JSON `{"error": ...}` line), so a bad request is still a 4xx; after it, the
 * status is 200 and the error is the last line. The socket's backpressure reaches Python: a slow
 * reader stops the credit, so the generator waits. A client that hangs up closes the generator
 * (its `finally` runs).
 */
export function registerStreamRoute(app: FastifyInstance, pool: StreamingPool, validator: ArgsValidator, draining: () => boolean): void {
  app.post<{ Params: { command: string } }>('/v1/stream/:command', async (req, reply) => {
    const command = req.params.command;
    if (pool.stream === undefined) {
      const a = httpError('PYFLEET_HTTP_ERROR', 'This server cannot stream: its pool has no stream().', 501);
      reply.code(a.status);
      return a.body;
    }
    const holder = { args: req.body === undefined ? null : (req.body as unknown) };
    const invalid = validator.check(command, holder.args, holder);
    if (invalid !== null) {
      reply.code(400);
      return errorBody(invalid).body;
    }
    const h = req.headers;
    const opts: Parameters<NonNullable<StreamingPool['stream']>>[2] = {};
    const sid = h['x-pyfleet-session'];
    if (typeof sid === 'string' && sid !== '') opts.sessionId = sid;
    const idem = h['x-pyfleet-idempotent'];
    if (idem === 'true' || idem === 'false') opts.idempotent = idem === 'true';
    const timeoutMs = numberHeader(h['x-pyfleet-timeout-ms']);
    if (timeoutMs !== undefined) opts.timeoutMs = timeoutMs;
    const chunkTimeoutMs = numberHeader(h['x-pyfleet-chunk-timeout-ms']);
    if (chunkTimeoutMs !== undefined) opts.chunkTimeoutMs = chunkTimeoutMs;
    const highWaterMark = numberHeader(h['x-pyfleet-high-water-mark']);
    if (highWaterMark !== undefined) opts.highWaterMark = highWaterMark;
    let it: AsyncIterableIterator<unknown>;
    try {
      // Bad options, an unknown command, arguments that cannot be sent: refused here, before anything is sent.
      it = pool.stream(command, holder.args, opts);
    } catch (e) {
      const { status, body } = errorBody(e);
      reply.code(status);
      return body;
    }

    reply.hijack();
    const res = reply.raw;
    req.raw.socket.setNoDelay(true);
    let gone = false;
    const hangUp = (): void => {
      if (res.writableFinished) return;
      gone = true;
      // Closes the generator in Python (or takes the call out of the queue).
      void it.return?.();
    };
    res.once('close', hangUp);
    if (req.raw.socket.destroyed) hangUp();
    let items = 0;
    const head = (status: number, type: string, extra: Record<string, string> = {}): void => {
      if (res.headersSent) return;
      res.writeHead(status, {
        'content-type': `${type}; charset=utf-8`,
        'cache-control': 'no-cache, no-transform',
        'x-accel-buffering': 'no',
        ...(draining() ? { connection: 'close' } : {}),
        ...extra,
      });
    };
    try {
      for (;;) {
        const r = await it.next();
        if (gone || r.done === true) break;
        head(200, NDJSON);
        items++;
        if (!res.write(`${JSON.stringify({ item: toHttpJson(r.value) })}\n`)) await drained(res);
      }
      if (gone) return;
      head(200, NDJSON);
      res.end(`${JSON.stringify({ end: { items } })}\n`);
    } catch (e) {
      if (gone) return;
      const { status, body, retryAfterS } = errorBody(e);
      // Nothing sent yet: the status still says whose fault it was, as on /v1/call.
      head(status, 'application/json', retryAfterS !== null ? { 'retry-after': String(retryAfterS) } : {});
      res.end(`${JSON.stringify(body)}\n`);
    } finally {
      res.off('close', hangUp);
    }
  });
}
