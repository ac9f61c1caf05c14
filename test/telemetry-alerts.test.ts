/**
 * Alerts: a local HTTP server receives exactly the expected webhook posts for real failures;
 * the rate limit holds; a dead webhook neither slows nor breaks calls.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createPool, type Pool } from '../src/pool/pool.js';
import { Alerter, type Alert } from '../src/telemetry/alerts.js';
import { publish, subscribe, type EventName, type EventPayloads } from '../src/telemetry/channels.js';
import { ErrorReporter } from '../src/telemetry/reporter.js';
import type { ObservedPool, ObservedStats } from '../src/telemetry/source.js';
import { alive, quiet, until } from './helpers/pool.js';

const EXAMPLES = fileURLToPath(new URL('../examples/handlers.py', import.meta.url));
const GOOD_MODULE = 'from pyfleet import command\n\n@command(idempotent=True)\ndef add(args, ctx):\n    return args["a"] + args["b"]\n';
const BROKEN_MODULE = 'raise ImportError("broken on purpose by the test")\n';

interface LogLine {
  level: string;
  obj: Record<string, unknown>;
  msg: string;
}
function memoryLogger(): { entries: LogLine[]; info(o: object, m?: string): void; warn(o: object, m?: string): void; error(o: object, m?: string): void; debug(o: object, m?: string): void } {
  const entries: LogLine[] = [];
  const at = (level: string) => (obj: object, msg?: string) => entries.push({ level, obj: obj as Record<string, unknown>, msg: msg ?? '' });
  return { entries, info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A webhook receiver: records every JSON body; `mode` 'ok' answers 204, 'fail' 500, 'hang' never answers. */
async function webhook(mode: 'ok' | 'fail' | 'hang' = 'ok'): Promise<{ url: string; alerts: Alert[]; close(): Promise<void> }> {
  const alerts: Alert[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      assert.equal(req.method, 'POST');
      assert.equal(req.headers['content-type'], 'application/json');
      alerts.push(JSON.parse(body) as Alert);
      if (mode === 'ok') res.writeHead(204).end();
      else if (mode === 'fail') res.writeHead(500).end('no');
      // 'hang': keep the request open forever
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${addr.port}/hook`,
    alerts,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

const pools: Pool[] = [];
const cleanups: Array<() => unknown> = [];
after(async () => {
  for (const c of cleanups) await c();
  const pids = pools.flatMap((p) => p.pids());
  await Promise.all(pools.map((p) => p.close()));
  await until(() => pids.every((pid) => !alive(pid)));
});

function tempModule(): string {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'pyfleet-alerts-')), 'mod.py');
  writeFileSync(file, GOOD_MODULE);
  return file;
}

/** A stand-in pool for the rate-limit test: its stats are whatever the test sets; its events are real channel events. */
function fakePool(id: number): ObservedPool & { state: ObservedStats } {
  const state: ObservedStats = {
    poolId: id,
    module: 'fake.py',
    closed: false,
    workers: [{ id: 1, pid: 1, state: 'ready', health: 'healthy', requests: 0, restarts: 0, inflight: 0, rssMb: null }],
    queue: { length: 0, max: 10 },
    calls: { total: 0, succeeded: 0, failed: 0, inFlight: 0, retries: 0, viaRecovery: 0, viaFallback: 0 },
    errorsByCategory: {},
    restarts: { total: 0, byReason: {} },
    circuits: { pool_operations: { state: 'closed', failures: 0, retryAfterMs: 0, rejected: 0, opened: 0 } },
    recoveries: { initiated: 0, succeeded: 0, failed: 0, active: 0, timedOut: 0, byStrategy: {} },
    sessions: { total: 0, bound: 0, durable: 0, restored: 0 },
    binary: { toPython: 0, fromPython: 0 },
  };
  return {
    id,
    state,
    stats: () => state,
    on<K extends EventName>(name: K, fn: (p: EventPayloads[K]) => void) {
      return subscribe(name, (p) => {
        if ((p as { poolId?: number }).poolId === id) fn(p);
      });
    },
    close: async () => {},
  };
}

describe('alerts', () => {
  it('a broken module and a dead worker: exactly one circuit_open and one no_healthy_workers, none on recovery or close', async () => {
    const hook = await webhook('ok');
    cleanups.push(hook.close);
    const mod = tempModule();
    const pool = await createPool({ module: mod, workers: 1, logger: quiet, restart: { baseDelayMs: 100, maxDelayMs: 200 } });
    pools.push(pool);
    const alerter = new Alerter(pool, { webhookUrl: hook.url, minIntervalMs: 60_000, noHealthyWorkersMs: 500 });
    cleanups.push(() => alerter.close());
    // The module breaks, then its only worker dies: every new worker fails to import it.
    writeFileSync(mod, BROKEN_MODULE);
    process.kill(pool.stats().workers[0].pid!, 'SIGKILL');
    await until(() => hook.alerts.length >= 2, 5_000);
    // Keep failing a while longer (three more failed starts, each a chance to alert again): the rate limit holds every repeat back.
    const failedStarts = pool.stats().errorsByCategory.initialization_error;
    await until(() => pool.stats().errorsByCategory.initialization_error >= failedStarts + 3, 10_000);
    writeFileSync(mod, GOOD_MODULE);
    // Recovery: a worker starts, the circuit half-opens, successThreshold (3) trial calls close it.
    const closed = new Promise<void>((resolve) => {
      const off = pool.on('circuit:closed', () => {
        off();
        resolve();
      });
    });
    await until(() => pool.stats().workers.some((w) => w.state === 'ready'), 10_000);
    for (let i = 0; i < 3; i++) assert.equal(await pool.execute('add', { a: 1, b: 2 }), 3);
    await closed;
    await pool.close();
    // The only alert a timer raises is no_healthy_workers, its timer noHealthyWorkersMs (500) long, checked
    // every 500 ms: a timer of ours set later for longer fires after any of the alerter's, however loaded the machine.
    await sleep(600);
    await alerter.flush();

    assert.deepEqual(hook.alerts.map((a) => a.type).sort(), ['circuit_open', 'no_healthy_workers']);
    const circuit = hook.alerts.find((a) => a.type === 'circuit_open')!;
    assert.equal(circuit.severity, 'critical');
    assert.equal(circuit.poolId, pool.id);
    assert.equal(circuit.module, mod);
    assert.equal(circuit.details.circuit, 'pool_operations');
    assert.equal(circuit.suppressed, 0);
    assert.match(circuit.text, /circuit pool_operations opened/);
    assert.ok(!Number.isNaN(Date.parse(circuit.at)));
    const down = hook.alerts.find((a) => a.type === 'no_healthy_workers')!;
    assert.equal(down.severity, 'critical');
    assert.ok((down.details.sinceMs as number) >= 500);
    assert.match(down.text, /no worker has been able to serve/);
    assert.equal(alerter.counts.delivered, 2);
    assert.equal(alerter.counts.failed, 0);
  });

  it('recoveries that keep failing: exactly one recovery_failing after three failures in a row', async () => {
    const hook = await webhook('ok');
    cleanups.push(hook.close);
    const mod = tempModule();
    const pool = await createPool({
      module: mod,
      workers: 1,
      logger: quiet,
      restart: { baseDelayMs: 50, maxDelayMs: 100 },
      // Starts that keep failing are given up on instead of opening the circuit (neither the
      // recovery's circuit_break nor the count of failed starts on pool_operations).
      recovery: { strategies: { initialization_error: { critical: { type: 'abandon' } } } },
      circuitBreaker: { failureThreshold: 1_000 },
    });
    pools.push(pool);
    const logger = memoryLogger();
    const reporter = new ErrorReporter(pool, { alerts: { webhookUrl: hook.url, minIntervalMs: 60_000, noHealthyWorkersMs: 60_000, recoveryFailures: 3 }, logger, tracing: false });
    cleanups.push(() => reporter.close());
    writeFileSync(mod, BROKEN_MODULE);
    process.kill(pool.stats().workers[0].pid!, 'SIGKILL');
    await until(() => pool.stats().recoveries.failed >= 6, 10_000);
    writeFileSync(mod, GOOD_MODULE);
    await until(() => pool.stats().workers.some((w) => w.state === 'ready'), 10_000);
    await reporter.alerter!.flush();
    assert.deepEqual(hook.alerts.map((a) => a.type), ['recovery_failing']);
    const a = hook.alerts[0];
    assert.equal(a.severity, 'major');
    assert.equal(a.details.failedInARow, 3);
    assert.equal((a.details.recent as unknown[]).length, 3);
    assert.equal(a.suppressed, 0);
    assert.ok(reporter.alerter!.counts.suppressed >= 1, 'the second run of three failures was held back by minIntervalMs');
    // The reporter logged the recoveries and the delivery.
    assert.ok(logger.entries.some((e) => e.level === 'warn' && /^Recovery failed/.test(e.msg)));
    assert.ok(logger.entries.some((e) => e.level === 'info' && e.msg === 'alert recovery_failing delivered'));
  });

  it('rate limit: one alert per key per minIntervalMs, the next one counts what was held back', async () => {
    const hook = await webhook('ok');
    cleanups.push(hook.close);
    const pool = fakePool(9001);
    const alerter = new Alerter(pool, { webhookUrl: hook.url, minIntervalMs: 300 });
    cleanups.push(() => alerter.close());
    for (let i = 0; i < 5; i++) publish('circuit:opened', { circuit: 'pool_operations', failures: 5, retryAfterMs: 1000, poolId: 9001 });
    // Another key is limited separately.
    publish('circuit:opened', { circuit: 'worker_commands', failures: 5, retryAfterMs: 1000, poolId: 9001 });
    // Another pool's circuit, and a circuit that belongs to no pool: ignored.
    publish('circuit:opened', { circuit: 'pool_operations', failures: 5, retryAfterMs: 1000, poolId: 9002 });
    publish('circuit:opened', { circuit: 'standalone', failures: 5, retryAfterMs: 1000 });
    await alerter.flush();
    assert.deepEqual(hook.alerts.map((a) => [a.type, a.details.circuit, a.suppressed]), [
      ['circuit_open', 'pool_operations', 0],
      ['circuit_open', 'worker_commands', 0],
    ]);
    await sleep(320);
    publish('circuit:opened', { circuit: 'pool_operations', failures: 5, retryAfterMs: 1000, poolId: 9001 });
    await alerter.flush();
    assert.equal(hook.alerts.length, 3);
    assert.equal(hook.alerts[2].suppressed, 4);
    assert.equal(alerter.counts.suppressed, 4);
    alerter.close();
  });

  it('a webhook that hangs or refuses neither slows nor breaks calls; the failures are logged', async (t) => {
    const hang = await webhook('hang');
    cleanups.push(hang.close);
    const refused = await webhook('ok');
    const refusedUrl = refused.url;
    await refused.close(); // nothing listens there any more: connection refused
    const failing = await webhook('fail');
    cleanups.push(failing.close);

    const pool = await createPool({ module: EXAMPLES, workers: 2, logger: quiet });
    pools.push(pool);
    const logs = memoryLogger();
    const targets = [hang.url, refusedUrl, failing.url];
    const alerters = targets.map((u) => new Alerter(pool, { webhookUrl: u, minIntervalMs: 0, timeoutMs: 10_000, maxInFlight: 2, logger: logs }));
    cleanups.push(() => alerters.forEach((a) => a.close()));

    const timeCalls = async (n: number): Promise<number[]> => {
      const ms: number[] = [];
      for (let i = 0; i < n; i++) {
        const t = performance.now();
        assert.equal(await pool.execute('add', { a: i, b: 1 }), i + 1);
        ms.push(performance.now() - t);
      }
      return ms.sort((x, y) => x - y);
    };
    await timeCalls(50); // warm up
    const base = await timeCalls(200);
    // Alerts fire while the calls run (circuit events are published on the call path).
    const calls = timeCalls(200);
    const firing = (async () => {
      for (let i = 0; i < 20; i++) {
        publish('circuit:opened', { circuit: 'pool_operations', failures: 5, retryAfterMs: 0, poolId: pool.id });
        await sleep(2);
      }
    })();
    const during = await calls;
    await firing;

    const median = (a: number[]) => a[Math.floor(a.length / 2)];
    const p99 = (a: number[]) => a[Math.floor(a.length * 0.99)];
    t.diagnostic(`add: median ${median(base).toFixed(3)} ms without alerts, ${median(during).toFixed(3)} ms with 60 alerts to dead webhooks; p99 ${p99(base).toFixed(3)} / ${p99(during).toFixed(3)} ms`);
    assert.ok(median(during) < median(base) * 2 + 1, `median ${median(during).toFixed(3)} ms vs ${median(base).toFixed(3)} ms without alerts`);
    assert.ok(p99(during) < 200, `p99 ${p99(during).toFixed(1)} ms: nothing waited for a webhook`);
    assert.ok(during[during.length - 1] < 1_000);

    const [hanging, refusing, failing500] = alerters;
    // The hanging webhook holds at most maxInFlight requests; the rest are dropped, not queued behind it.
    await until(() => hang.alerts.length === 2);
    assert.equal(hanging.counts.sent, 2);
    assert.ok(hanging.counts.dropped >= 1);
    await refusing.flush();
    await failing500.flush();
    assert.ok(refusing.counts.failed >= 1 && refusing.counts.delivered === 0);
    assert.ok(failing500.counts.failed >= 1 && failing500.counts.delivered === 0);
    assert.ok(failing.alerts.length >= 1, 'the failing webhook was reached');
    const warned = logs.entries.filter((e) => e.level === 'warn' && /could not be delivered/.test(e.msg));
    assert.ok(warned.some((e) => /HTTP 500/.test(e.msg)), 'HTTP 500 logged');
    assert.ok(warned.some((e) => /ECONNREFUSED|fetch failed/.test(e.msg)), 'connection refused logged');
    // The webhook URL is logged without its path (Slack-style URLs carry a secret there).
    assert.ok(warned.every((e) => !String(e.obj.webhook).includes('/hook')));
    // And the pool is fine.
    assert.equal(await pool.execute('add', { a: 2, b: 2 }), 4);
  });

  it('rejects a bad webhook URL or option at once', () => {
    const pool = fakePool(9002);
    assert.throws(() => new Alerter(pool, { webhookUrl: 'not a url' }), /Invalid URL/);
    assert.throws(() => new Alerter(pool, { webhookUrl: 'ftp://x/y' }), /must be http\(s\)/);
    assert.throws(() => new Alerter(pool, { webhookUrl: 'http://x/y', minIntervalMs: -1 }), /minIntervalMs/);
  });
});
