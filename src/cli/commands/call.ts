import { InvalidArgumentError, type Command } from 'commander';
import { createPool, isPoolError, type Pool } from '../../index.js';
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
}

function parseArgs(json: string | undefined): unknown {
  if (json === undefined) return {};
  try {
    return JSON.parse(json) as unknown;
  } catch (e) {
    throw new InvalidArgumentError(`[json] must be JSON (e.g. '{"a": 1}'): ${(e as Error).message}`);
  }
}

/** `pyfleet call <command> [json] --module FILE`: one call on a one-worker pool; the result as JSON on stdout. */
export function register(program: Command): void {
  program
    .command('call')
    .description('run one command of a Python module and print its JSON result')
    .argument('<command>', 'the @command to call')
    .argument('[json]', 'its arguments as JSON', parseArgs)
    .requiredOption('-m, --module <file>', 'a .py file or dotted module name with @command handlers')
    .option('--python <path>', 'the Python interpreter (default: $PYFLEET_PYTHON or python3)')
    .option('-t, --timeout <ms>', 'timeout of the call in ms (default: the pool default, 30000)', intArg(1))
    .option('-s, --session <id>', 'run the call in this session')
    .option('--pretty', 'indent the JSON result')
    .option('--log-level <level>', 'pool log level on stderr (what handlers print is logged at info)', logLevelArg, (process.env.PYFLEET_LOG_LEVEL ?? 'warn') as LogLevel)
    .addHelpText(
      'after',
      `
Prints the result as JSON on stdout and exits 0. A failure prints its code, category
and message (and the Python traceback) on stderr and exits 1.

Example:
  pyfleet call add '{"a": 1, "b": 2}' --module examples/handlers.py`,
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
        const value = await pool.execute(command, args ?? {}, {
          ...(opts.timeout !== undefined ? { timeoutMs: opts.timeout } : {}),
          ...(opts.session !== undefined ? { sessionId: opts.session } : {}),
        });
        process.stdout.write(`${JSON.stringify(value, null, opts.pretty === true ? 2 : undefined) ?? 'null'}\n`);
      } catch (e) {
        printError(e);
        process.exitCode = isPoolError(e) ? 1 : 2;
      } finally {
        await pool?.close();
      }
    });
}
