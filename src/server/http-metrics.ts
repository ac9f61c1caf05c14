import type { FastifyInstance } from 'fastify';
import { FastCounter, FastHistogram } from '../telemetry/fast-metrics.js';
import { DEFAULT_LATENCY_BUCKETS, type PyfleetMetrics } from '../telemetry/metrics.js';

/**
 * The server's own metrics on `metrics`' registry, for every answer (refusals, streams and the
 * dashboard's event stream included): `http_requests_total{method,route,status}` and
 * `http_request_duration_seconds{method,route}`, where `route` is the route's pattern
 * (`/v1/call/:command`, so a client cannot make series at will) and `(none)` when no route matched.
 * Several servers on one registry share the two metrics.
 */
export function recordHttp(app: FastifyInstance, metrics: PyfleetMetrics): void {
  const registers = [metrics.registry];
  const name = `${metrics.prefix}http_requests_total`;
  const seconds = `${metrics.prefix}http_request_duration_seconds`;
  const requests = (metrics.registry.getSingleMetric(name) as unknown as FastCounter | undefined) ?? new FastCounter({ name, help: 'HTTP requests answered, by method, route and status.', labelNames: ['method', 'route', 'status'], registers });
  const duration =
    (metrics.registry.getSingleMetric(seconds) as unknown as FastHistogram | undefined) ??
    new FastHistogram({ name: seconds, help: "From the request to the end of its answer (a stream's whole length), by method and route.", labelNames: ['method', 'route'], buckets: DEFAULT_LATENCY_BUCKETS, registers });
  app.addHook('onRequest', async (req, reply) => {
    const t = performance.now();
    const labels = { method: req.method, route: req.routeOptions.url ?? '(none)' };
    reply.raw.once('close', () => {
      requests.inc({ ...labels, status: String(reply.raw.statusCode) });
      duration.child(labels).observe((performance.now() - t) / 1000);
    });
  });
}
