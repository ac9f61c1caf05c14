import { InvalidArgumentError, type Command } from 'commander';
import { createPool, isPoolError, type Pool } from '../../index.js';
import { toHttpJson } from '../../server/http-json.js';
import { intArg, logLevelArg, type LogLevel } from '../args.js';
import { printError } from '../errors.js';
import { cliLogger } from '../log.js';

interface CallOptions {
  module: string;
  python?: string;
  timeout?: number;
  session?: string;
  logLevel: LogLevel;
  pretty?: boolean;
  stream?: boolean;
}

function parseArgs(json: string | undefined): unknown {
  if (json === undefined) return {};
  try {
    return JSON.parse(json) as unknown;
  } catch (e) {
    throw new InvalidArgumentError(`[json] must be JSON (e.g. '{"a": 1}'): ${(e as Error).message}`);
  }
}

/** A value as one JSON text; binary values (Buffers, typed arrays) as base64 strings, as `pyfleet serve` sends them. */
function json(value: unknown, pretty: boolean): string {
  return JSON.stringify(toHttpJson(value), null, pretty ? 2 : undefined) ?? 'null';
}

/** Resolves when `out` drained, closed or failed (a failure is handled by its 'error' listener). */
function writable(out: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      out.off('drain', done);
      out.off('close', done);
      out.off('error', done);
      resolve();
    };
    out.on('drain', done);
    out.on('close', done);
    out.on('error', done);
  });
}

/**
 * Prints each item of the stream as one JSON line as soon as it arrives. The first SIGINT (or a
 * reader that closed stdout, as `| head -1` does) stops the stream: the generator is closed in
 * Python (its `finally` runs) before the pool closes; a second SIGINT exits at once.
 */
async function printStream(pool: Pool, command: string, args: unknown, options: { timeoutMs?: number; sessionId?: string }): Promise<void> {
  const it = pool.stream(command, args, options);
  let items = 0;
  let stoppedBy: 'SIGINT' | 'EPIPE' | null = null;
  const stop = (by: 'SIGINT' | 'EPIPE'): void => {
    if (stoppedBy !== null) {
      if (by === 'SIGINT') process.exit(130);
      return;
    }
    stoppedBy = by;
    void it.return?.();
  };
  const onSigint = (): void => stop('SIGINT');
  const onStdoutError = (e: NodeJS.ErrnoException): void => {
    if (e.code === 'EPIPE' || e.code === 'ERR_STREAM_DESTROYED') stop('EPIPE');
  };
  process.on('SIGINT', onSigint);
  // Left on for the rest of the process: a write that fails after the last item still reports
  // its error asynchronously, and an 'error' with no listener would crash the command.
  process.stdout.on('error', onStdoutError);
  try {
    for await (const item of it) {
      if (stoppedBy !== null) break;
      const flowing = process.stdout.write(`${json(item, false)}\n`);
      items++;
      // The terminal or the pipe sets the pace: waiting here withholds credit, so the generator waits too.
      if (!flowing) await writable(process.stdout);
    }
  } finally {
    process.off('SIGINT', onSigint);
  }
  if (stoppedBy === 'SIGINT') {
    process.stderr.write(`pyfleet: interrupted after ${items} item${items === 1 ? '' : 's'}; the generator was closed\n`);
    process.exitCode = 130;
  }
}

/** `pyfleet call <command> [json] --module FILE`: one call on a one-worker pool; the result as JSON on stdout, a generator's items one JSON line each. */
export function register(program: Command): void {
  program
    .command('call')
    .description('run one command of a Python module and print its JSON result (a generator: one JSON line per item, as it comes)')
    .argument('<command>', 'the @command to call')
    .argument('[json]', 'its arguments as JSON', parseArgs)
    .requiredOption('-m, --module <file>', 'a .py file or dotted module name with @command handlers')
    .option('--python <path>', 'the Python interpreter (default: $PYFLEET_PYTHON or python3)')
    .option('-t, --timeout <ms>', 'timeout of the call in ms, of the whole stream for a generator (default: the pool default, 30000)', intArg(1))
    .option('-s, --session <id>', 'run the call in this session')
    .option('--stream', 'print the result as a stream even when the command is not a generator (one line)')
    .option('--pretty', 'indent the JSON result (not for streams: one item per line)')
    .option('--log-level <level>', 'pool log level on stderr (what handlers print is logged at info)', logLevelArg, (process.env.PYFLEET_LOG_LEVEL ?? 'warn') as LogLevel)
    .addHelpText(
      'after',
      `
Prints the result as JSON on stdout and exits 0. A generator command (def or async def
with yield) prints each item as one JSON line as soon as Python yields it; Ctrl-C stops
the stream cleanly (the generator's finally runs) and exits 130. Binary values print as
base64 strings. A failure prints its code, category and message (and the Python
traceback) on stderr and exits 1; the items before it stay on stdout.

Examples:
  pyfleet call add '{"a": 1, "b": 2}' --module examples/handlers.py
  pyfleet call tokens '{"text": "one two three", "ms": 300}' --module examples/handlers.py`,
    )
    .action(async (command: string, args: unknown, opts: CallOptions) => {
      let pool: Pool | null = null;
      try {
        pool = await createPool({
          module: opts.module,
          ...(opts.python !== undefined ? { python: opts.python } : {}),
          workers: 1,
          logger: cliLogger(opts.logLevel),
        });
        const options = {
          ...(opts.timeout !== undefined ? { timeoutMs: opts.timeout } : {}),
          ...(opts.session !== undefined ? { sessionId: opts.session } : {}),
        };
        if (opts.stream === true || pool.registeredCommands[command]?.stream === true) await printStream(pool, command, args ?? {}, options);
        else process.stdout.write(`${json(await pool.execute(command, args ?? {}, options), opts.pretty === true)}\n`);
      } catch (e) {
        printError(e);
        process.exitCode = isPoolError(e) ? 1 : 2;
      } finally {
        await pool?.close();
      }
    });
}
