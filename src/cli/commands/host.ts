import { InvalidArgumentError, type Command } from 'commander';
import { intArg, logLevelArg, workersArg, type LogLevel } from '../args.js';
import { printError } from '../errors.js';
import { cliLogger } from '../log.js';
import type { PoolOptions } from '../../pool/options.js';
import type { HostSessionOptions } from '../../fleet/host-pool-options.js';

interface HostCliOptions {
  module: string;
  nats: string;
  fleet: string;
  token?: string;
  user?: string;
  password?: string;
  hostId?: string;
  workers?: { min: number; max: number };
  python?: string;
  timeout?: number;
  queueTimeout?: number;
  maxQueue?: number;
  pipelineDepth?: number;
  heartbeat: number;
  moduleVersion?: string;
  sessionStore?: 'memory' | 'nats' | 'none';
  sessionKey?: string;
  logLevel: LogLevel;
}

function sessionStoreArg(value: string): HostCliOptions['sessionStore'] {
  if (value !== 'memory' && value !== 'nats' && value !== 'none') throw new InvalidArgumentError(`expected memory, nats or none, got ${JSON.stringify(value)}`);
  return value;
}

/** `pyfleet host`: a Node process with a local pool, serving a fleet's calls over NATS. */
export function register(program: Command): void {
  program
    .command('host')
    .description('serve a Python module to a fleet over NATS: a local pool, heartbeats, drain on SIGTERM')
    .requiredOption('-m, --module <file>', 'a .py file or dotted module name with @command handlers')
    .option('--nats <urls>', 'NATS server URL(s), comma-separated (default: $PYFLEET_NATS or nats://127.0.0.1:4222)')
    .requiredOption('--fleet <name>', 'the fleet to serve (clients connect with the same name)')
    .option('--token <token>', 'NATS token (default: $PYFLEET_NATS_TOKEN)')
    .option('--user <user>', 'NATS user (default: $PYFLEET_NATS_USER)')
    .option('--password <password>', 'NATS password (default: $PYFLEET_NATS_PASSWORD)')
    .option('--host-id <id>', 'this host\'s id in the fleet (default: hostname-pid-random)')
    .option('-w, --workers <n|min-max>', 'worker count, or a range', workersArg)
    .option('--python <path>', 'the Python interpreter (default: $PYFLEET_PYTHON or python3)')
    .option('-t, --timeout <ms>', 'requestTimeoutMs of the pool (default 30000)', intArg(1))
    .option('--queue-timeout <ms>', 'queueTimeoutMs of the pool (default 5000)', intArg(1))
    .option('--max-queue <n>', 'maxQueue of the pool (default 1000)', intArg(1))
    .option('--pipeline-depth <n>', 'pipelineDepth of the pool: idempotent calls sent ahead to a busy worker (default 1)', intArg(1, 1024))
    .option('--heartbeat <ms>', 'heartbeat period; clients suspect a host after 2 silent periods, take it for dead after 4', intArg(50, 60_000), 500)
    .option('--module-version <v>', 'version announced with the commands (default: a hash of the module file)')
    .option('--session-store <kind>', 'nats (durable: a session of a host that dies is restored on another from its snapshot in JetStream KV; needs a session key), memory (sessions die with the host) or none (sessions die with their worker) (default: nats when a session key is given, else memory)', sessionStoreArg)
    .option('--session-key <key>', 'key that signs session snapshots, the same on every host (default: $PYFLEET_SESSION_KEY)')
    .option('--log-level <level>', 'log level on stderr', logLevelArg, (process.env.PYFLEET_LOG_LEVEL ?? 'info') as LogLevel)
    .addHelpText(
      'after',
      `
The host prints one line "pyfleet host <id> ready: ..." on stdout once it serves.
SIGTERM or SIGINT: stop taking calls, finish those in flight, announce leaving, exit 0.
SIGKILL: clients notice within about 2 heartbeats; the pool's workers die with the host; with
durable sessions (--session-store nats) its sessions are restored on the other hosts.

Example:
  nats-server -js -p 4222 &
  export PYFLEET_SESSION_KEY=$(openssl rand -hex 32)   # the same on every host
  pyfleet host --module examples/handlers.py --nats nats://127.0.0.1:4222 --fleet demo --workers 2`,
    )
    .action(async (opts: HostCliOptions) => {
      const logger = cliLogger(opts.logLevel);
      // Loaded here, so that the other subcommands never load the NATS client.
      const { startHost } = await import('../../fleet/host.js');
      const { natsSessionStore } = await import('../../fleet/nats-session-store.js');
      const servers = opts.nats ?? process.env.PYFLEET_NATS ?? 'nats://127.0.0.1:4222';
      const token = opts.token ?? (process.env.PYFLEET_NATS_TOKEN || undefined);
      const user = opts.user ?? (process.env.PYFLEET_NATS_USER || undefined);
      const pass = opts.password ?? (process.env.PYFLEET_NATS_PASSWORD || undefined);
      const auth = { ...(token !== undefined ? { token } : {}), ...(user !== undefined ? { user } : {}), ...(pass !== undefined ? { pass } : {}) };
      const pool: PoolOptions = {
        module: opts.module,
        logger,
        ...(opts.python !== undefined ? { python: opts.python } : {}),
        ...(opts.workers !== undefined ? { workers: opts.workers } : {}),
        ...(opts.timeout !== undefined ? { requestTimeoutMs: opts.timeout } : {}),
        ...(opts.queueTimeout !== undefined ? { queueTimeoutMs: opts.queueTimeout } : {}),
        ...(opts.maxQueue !== undefined ? { maxQueue: opts.maxQueue } : {}),
        ...(opts.pipelineDepth !== undefined ? { pipelineDepth: opts.pipelineDepth } : {}),
      };
      let sessions: HostSessionOptions = {};
      let host;
      const key = opts.sessionKey ?? (process.env.PYFLEET_SESSION_KEY || undefined);
      // Durable by default where it can be: a shared store needs a key every host shares, which no host can make up.
      const kind = opts.sessionStore ?? (key !== undefined ? 'nats' : 'memory');
      try {
        if (kind === 'nats') {
          if (key === undefined) throw new InvalidArgumentError('--session-store nats needs a session key (--session-key or $PYFLEET_SESSION_KEY), the same on every host: it signs the snapshots the hosts restore from one another.');
          sessions = { sessionStore: await natsSessionStore({ servers, ...auth, fleet: opts.fleet }), sessionKey: key };
        } else if (kind === 'none') sessions = { sessionStore: false };
        host = await startHost({
          servers,
          ...auth,
          fleet: opts.fleet,
          pool,
          logger,
          heartbeatMs: opts.heartbeat,
          ...(opts.hostId !== undefined ? { hostId: opts.hostId } : {}),
          ...(opts.moduleVersion !== undefined ? { moduleVersion: opts.moduleVersion } : {}),
          ...sessions,
        });
      } catch (e) {
        await (sessions.sessionStore as { close?: () => Promise<void> } | undefined)?.close?.();
        printError(e, 'pyfleet host');
        process.exitCode = 1;
        return;
      }
      const said = kind === 'nats' ? 'durable sessions (nats)' : kind === 'memory' ? 'sessions in memory (lost with this host; give a session key for durable ones)' : 'sessions lost with their worker';
      process.stdout.write(`pyfleet host ${host.id} ready: fleet ${opts.fleet}, module ${opts.module} (${host.moduleVersion}), ${host.pool.options.max} workers, ${said}, pid ${process.pid}, NATS ${servers}\n`);
      const h = host;
      await new Promise<void>((resolve) => {
        let stopping = false;
        const onSignal = (signal: NodeJS.Signals): void => {
          if (stopping) {
            logger.warn({ signal }, `${signal} again: killing the workers now`);
            h.pool.killAll();
            process.exit(1);
          }
          stopping = true;
          logger.info({ signal, hostId: h.id }, `${signal}: draining (no new calls; calls in flight finish), then leaving the fleet`);
          h.drain(signal).then(
            async () => {
              await (sessions.sessionStore as { close?: () => Promise<void> } | undefined)?.close?.();
              process.off('SIGTERM', onSignal);
              process.off('SIGINT', onSignal);
              process.stdout.write(`pyfleet host ${h.id} left the fleet\n`);
              resolve();
            },
            (e: unknown) => {
              printError(e, 'pyfleet host');
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
