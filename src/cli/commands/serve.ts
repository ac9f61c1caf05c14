import type { Command } from 'commander';
import { randomBytes } from 'node:crypto';
import { serve, type Serving } from '../../server/serve.js';
import { intArg, logLevelArg, workersArg, type LogLevel } from '../args.js';
import { printError } from '../errors.js';
import { cliLogger } from '../log.js';

interface ServeCliOptions {
  module: string;
  port: number;
  host: string;
  /** false: --no-token. */
  token?: string | false;
  allowOrigin: string[];
  allowHost: string[];
  workers?: { min: number; max: number };
  python?: string;
  timeout?: number;
  alertWebhook?: string;
  alertInterval?: number;
  logLevel: LogLevel;
}

const collect = (v: string, all: string[]): string[] => [...all, v];

/** `pyfleet serve --module FILE`: the pool over HTTP, with /metrics, /healthz and a live dashboard at /. */
export function register(program: Command): void {
  program
    .command('serve')
    .description('serve a Python module over HTTP, with Prometheus metrics and a live dashboard')
    .requiredOption('-m, --module <file>', 'a .py file or dotted module name with @command handlers')
    .option('-p, --port <n>', 'port to listen on (0: any free port)', intArg(0, 65535), 7700)
    .option('-H, --host <address>', 'address to bind; anything but loopback requires a token', '127.0.0.1')
    .option('--token <token>', 'require "Authorization: Bearer <token>" (or ?token=) on every route but /healthz (default: $PYFLEET_TOKEN, else a random one, printed)')
    .option('--no-token', 'no token (loopback only): any local process may call the handlers')
    .option('--allow-origin <origin>', 'a web origin (https://app.example) whose pages may call the server, with CORS; repeat for more, * for any', collect, [])
    .option('--allow-host <name>', 'a Host name to answer besides IP addresses, localhost and --host (behind a proxy); repeat for more, * for any', collect, [])
    .option('-w, --workers <n|min-max>', 'worker count, or a range the pool grows and shrinks in', workersArg)
    .option('--python <path>', 'the Python interpreter (default: $PYFLEET_PYTHON or python3)')
    .option('-t, --timeout <ms>', 'time for one attempt of a call (requestTimeoutMs, default 30000)', intArg(1))
    .option('--alert-webhook <url>', 'POST a JSON alert here when a circuit opens, no worker is healthy, or recoveries keep failing')
    .option('--alert-interval <ms>', 'at most one alert of each kind per this many ms', intArg(0), 60_000)
    .option('--log-level <level>', 'log level on stderr', logLevelArg, (process.env.PYFLEET_LOG_LEVEL ?? 'info') as LogLevel)
    .addHelpText(
      'after',
      `
Routes:
  POST /v1/call/<command>   body: the arguments as JSON; answers {"result": ...} or
                            {"error": {code, category, message, ...}} with a 4xx/5xx status.
                            Headers: x-pyfleet-session, x-pyfleet-timeout-ms, x-pyfleet-idempotent
                            Bodies are checked against the handler's type hints (400 naming
                            the field); binary values are base64 strings both ways.
  POST /v1/stream/<command> a generator's items as NDJSON, one line each as it is yielded:
                            {"item": ...} ... then {"end": {"items": n}}, or {"error": {...}}.
                            A failure before the first item gets /v1/call's status; a client
                            that hangs up closes the generator. Extra headers:
                            x-pyfleet-chunk-timeout-ms, x-pyfleet-high-water-mark
  GET  /openapi.json        OpenAPI 3.1 document of the commands, from their type hints
  GET  /                    live dashboard (workers, circuits, errors, recoveries, queue)
  GET  /metrics             Prometheus metrics
  GET  /healthz             200 when a worker can serve, 503 otherwise (no token needed)
  GET  /v1/stats            pool.stats() as JSON

SIGTERM or SIGINT: stop taking requests, finish those in flight, stop every worker, exit 0.

Only JSON bodies (Content-Type: application/json, else 415). A request from a web page of
another origin (--allow-origin) or with a Host that is not an IP address, localhost or an
allowed name (--allow-host) is refused with 403.

Example:
  PYFLEET_TOKEN=s3cret pyfleet serve --module examples/handlers.py --workers 2
  curl -s --json '{"a": 1, "b": 2}' -H 'authorization: Bearer s3cret' localhost:7700/v1/call/add
  curl -sN --json '{"text": "one two three"}' -H 'authorization: Bearer s3cret' localhost:7700/v1/stream/tokens`,
    )
    .action(async (opts: ServeCliOptions) => {
      const logger = cliLogger(opts.logLevel);
      // A random token by default, as Jupyter does: loopback is shared by every local user and process.
      const token = opts.token === false ? undefined : (opts.token ?? (process.env.PYFLEET_TOKEN || randomBytes(18).toString('base64url')));
      let serving: Serving;
      try {
        serving = await serve({
          pool: {
            module: opts.module,
            logger,
            ...(opts.python !== undefined ? { python: opts.python } : {}),
            ...(opts.workers !== undefined ? { workers: opts.workers } : {}),
            ...(opts.timeout !== undefined ? { requestTimeoutMs: opts.timeout } : {}),
          },
          port: opts.port,
          host: opts.host,
          ...(token !== undefined ? { token } : {}),
          allowedOrigins: opts.allowOrigin,
          allowedHosts: opts.allowHost,
          ...(opts.alertWebhook !== undefined ? { alerts: { webhookUrl: opts.alertWebhook, minIntervalMs: opts.alertInterval } } : {}),
        });
      } catch (e) {
        printError(e);
        process.exitCode = 1;
        return;
      }
      const u = serving.url;
      const q = token === undefined ? '' : `?token=${encodeURIComponent(token)}`;
      const auth = token === undefined ? '' : ` -H 'authorization: Bearer ${token}'`;
      const why = opts.token === undefined && !process.env.PYFLEET_TOKEN ? ' (random; --token T or $PYFLEET_TOKEN to choose it)' : '';
      process.stdout.write(
        `pyfleet: serving ${opts.module} at ${u}\n  dashboard: ${u}/${q}\n  metrics:   ${u}/metrics${q}\n  calls:     curl --json '{...}'${auth} ${u}/v1/call/<command>\n` +
          (token === undefined ? '  no token: any local process may call the handlers\n' : `  token:     ${token}${why}\n`),
      );

      await new Promise<void>((resolve) => {
        let stopping = false;
        const onSignal = (signal: NodeJS.Signals): void => {
          if (stopping) {
            // A second signal: stop waiting for calls to finish.
            logger.warn({ signal }, `${signal} again: killing the workers now`);
            serving.pool.killAll();
            process.exit(1);
          }
          stopping = true;
          logger.info({ signal }, `${signal}: draining (no new requests; calls in flight finish), then stopping the workers`);
          serving.close().then(
            () => {
              logger.info({}, 'stopped cleanly');
              process.off('SIGTERM', onSignal);
              process.off('SIGINT', onSignal);
              process.stdout.write('pyfleet: stopped\n');
              resolve();
            },
            (e: unknown) => {
              printError(e);
              process.exitCode = 1;
              resolve();
            },
          );
        };
        process.on('SIGTERM', onSignal);
        process.on('SIGINT', onSignal);
      });
    });
}
