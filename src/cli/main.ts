#!/usr/bin/env node
/**
 * The pyfleet command line. Each subcommand lives in its own file under ./commands/ and
 * exports `register(program)`.
 */
import { Command } from 'commander';
import { packageVersion } from './paths.js';
import { register as registerCall } from './commands/call.js';
import { register as registerDemo } from './commands/demo.js';
import { register as registerChaos } from './commands/chaos.js';
import { register as registerServe } from './commands/serve.js';
import { register as registerTypes } from './commands/types.js';
import { register as registerHost } from './commands/host.js';
import { PYTHON_PACKAGE_DIR } from '../worker/env.js';
// A new subcommand: import its register function above and add it to SUBCOMMANDS below. Its
// action must resolve only when the command is done (a server: after it has shut down).

const SUBCOMMANDS: ReadonlyArray<(program: Command) => void> = [
  registerCall,
  registerDemo,
  registerChaos,
  registerServe,
  registerTypes,
  registerHost,
];

function buildProgram(): Command {
  const program = new Command('pyfleet')
    .description('Run Python code from Node.js in a pool of long-lived worker processes that keeps answering when workers fail.')
    .version(packageVersion(), '-V, --version', 'print the pyfleet version')
    .showHelpAfterError('(run with --help for usage)')
    // Usage errors exit 2 (1 is for a failed call or a broken invariant); --help and --version exit 0.
    // Set before the subcommands are added, which inherit it.
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));
  for (const register of SUBCOMMANDS) register(program);
  program
    .command('python-path')
    .description("print the directory to put on PYTHONPATH so that pytest, an IDE or mypy can import pyfleet (and pyfleet.testing)")
    .addHelpText('after', '\nExample:\n  PYTHONPATH="$(npx pyfleet python-path)" python3 -m pytest')
    .action(() => {
      process.stdout.write(`${PYTHON_PACKAGE_DIR}\n`);
    });
  return program;
}

async function main(): Promise<void> {
  await buildProgram().parseAsync(process.argv);
  // The command is done (its action resolved): if something still holds the event loop (a stray
  // timer or handle), leave anyway after a moment rather than hang a script or CI job; this
  // timer does not itself hold the loop.
  setTimeout(() => {
    process.stderr.write('pyfleet: the command finished but something still holds the event loop; exiting\n');
    process.exit(process.exitCode ?? 0);
  }, 5_000).unref();
}

main().catch((e: unknown) => {
  process.stderr.write(`pyfleet: ${(e as Error)?.stack ?? String(e)}\n`);
  process.exitCode = 2;
});
