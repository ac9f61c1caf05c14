import { collectDefaultMetrics } from 'prom-client';
import { createPool, type Pool } from '../pool/pool.js';
import type { PoolOptions } from '../pool/options.js';
import type { AlertOptions } from '../telemetry/alerts.js';
import { PyfleetMetrics } from '../telemetry/metrics.js';
import { ErrorReporter } from '../telemetry/reporter.js';
import { createServer, isLoopback, type PyfleetServer } from './app.js';
import type { LiveOptions } from './live.js';
import { describeModule } from '../typing/introspect.js';
import { hasSchemas, type CommandSchemas } from '../typing/schema.js';

export interface ServeOptions {
  /** Pool options (`module` required). */
  pool: PoolOptions;
  port?: number;
  /** Default 127.0.0.1; any other address needs `token`. */
  host?: string;
  token?: string;
  alerts?: AlertOptions;
  live?: LiveOptions;
}

export interface Serving {
  url: string;
  pool: Pool;
  server: PyfleetServer;
  reporter: ErrorReporter;
  /**
   * Drains and stops: the server stops taking requests and waits for those in flight, then
   * the pool drains its calls and stops every worker. Idempotent.
   */
  close(): Promise<void>;
}

/** `pyfleet serve` as a function: a pool, its reporter (metrics, alerts, spans) and the HTTP server. */
export async function serve(options: ServeOptions): Promise<Serving> {
  const host = options.host ?? '127.0.0.1';
  if (!isLoopback(host) && !options.token) {
    throw new Error(`Refusing to serve on ${host} without a token: anyone who can reach it could run your Python handlers. Pass --token (or set PYFLEET_TOKEN), or bind to 127.0.0.1.`);
  }
  const pool = await createPool(options.pool);
  let server: PyfleetServer | undefined;
  let reporter: ErrorReporter | undefined;
  try {
    const metrics = new PyfleetMetrics();
    reporter = new ErrorReporter(pool, { metrics, alerts: options.alerts, logger: options.pool.logger });
    const schemas = await schemasFor(pool, options.pool);
    server = await createServer({ pool, metrics, token: options.token, live: options.live, openapi: { title: `pyfleet: ${options.pool.module}` }, ...(schemas !== undefined ? { schemas } : {}) });
    collectDefaultMetrics({ register: metrics.registry });
    const url = await server.listen({ port: options.port, host });
    let closing: Promise<void> | null = null;
    const srv = server;
    const rep = reporter;
    return {
      url,
      pool,
      server: srv,
      reporter: rep,
      close() {
        closing ??= (async () => {
          try {
            await srv.close();
          } finally {
            await pool.close();
            await rep.alerter?.flush();
            rep.close();
          }
        })();
        return closing;
      },
    };
  } catch (e) {
    await server?.close().catch(() => undefined);
    reporter?.close();
    await pool.close();
    throw e;
  }
}

/**
 * Until the runtime sends schemas in its hello, `pyfleet serve` reads them itself, once, with
 * `python -m pyfleet._schema` (which imports the module one more time). When the workers'
 * commands carry schemas, those are used and this does nothing. If it fails, the server runs
 * with open schemas (no validation) and says so in the log.
 */
async function schemasFor(pool: Pool, options: PoolOptions): Promise<(() => Readonly<Record<string, CommandSchemas>>) | undefined> {
  if (Object.values(pool.registeredCommands).some(hasSchemas)) return undefined;
  try {
    const mod = await describeModule(options.module, { python: pool.python, ...(options.cwd !== undefined ? { cwd: options.cwd } : {}), ...(options.env !== undefined ? { env: options.env } : {}) });
    for (const w of mod.warnings) options.logger?.warn({ module: options.module }, w);
    return () => mod.commands;
  } catch (e) {
    options.logger?.warn({ module: options.module, err: (e as Error).message }, 'cannot read the command schemas: /openapi.json has open schemas and request bodies are not validated');
    return undefined;
  }
}
