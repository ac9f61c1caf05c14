import { createPool, type Pool } from '../pool/pool.js';
import type { PoolOptions } from '../pool/options.js';
import type { AlertOptions } from '../telemetry/alerts.js';
import { PyfleetMetrics, collectNodeMetrics } from '../telemetry/metrics.js';
import { ErrorReporter } from '../telemetry/reporter.js';
import { createServer, isLoopback, type PyfleetServer } from './app.js';
import type { LiveOptions } from './live.js';
import type { GuardOptions } from './guard.js';
import { requireOptional } from '../util/optional.js';

export interface ServeOptions extends GuardOptions {
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
  requireOptional('fastify', 'server'); // before any worker starts
  const pool = await createPool(options.pool);
  let server: PyfleetServer | undefined;
  let reporter: ErrorReporter | undefined;
  try {
    const metrics = new PyfleetMetrics();
    reporter = new ErrorReporter(pool, { metrics, alerts: options.alerts, logger: options.pool.logger });
    // The workers' hello carries each command's schemas: /openapi.json and the body checks use them.
    server = await createServer({ pool, metrics, token: options.token, allowedOrigins: options.allowedOrigins, allowedHosts: options.allowedHosts, live: options.live, openapi: { title: `pyfleet: ${options.pool.module}` } });
    collectNodeMetrics(metrics.registry);
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
