import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { declarations } from '../../typing/declarations.js';
import { describeModule } from '../../typing/introspect.js';

interface TypesOptions {
  module: string;
  out?: string;
  check?: boolean;
  python?: string;
}

const isPath = (spec: string): boolean => spec.endsWith('.py') || spec.includes('/') || spec.includes(path.sep);

/**
 * The header names the module and the command relative to the output file's folder, so the
 * text (and `--check`) does not depend on where the command was run from.
 */
function headerNames(module: string, out: string | undefined): { module: string; regenerate: string } {
  const dir = out === undefined ? process.cwd() : path.dirname(path.resolve(out));
  const mod = isPath(module) ? path.relative(dir, path.resolve(module)).split(path.sep).join('/') : module;
  const outName = out === undefined ? 'FILE.d.ts' : path.basename(out);
  return { module: mod, regenerate: `npx pyfleet types --module ${mod} --out ${outName} (from this file's folder)` };
}

/** `pyfleet types --module FILE --out FILE.d.ts [--check]`: TypeScript types for every command, from its Python hints. */
export function register(program: Command): void {
  program
    .command('types')
    .description("write TypeScript types for a module's commands, derived from their Python type hints")
    .requiredOption('-m, --module <file>', 'a .py file or dotted module name with @command handlers')
    .option('-o, --out <file>', 'the .d.ts file to write (default: print to stdout)')
    .option('--check', 'write nothing; exit 1 if --out is missing or differs from what would be written (for CI)')
    .option('--python <path>', 'the Python interpreter (default: $PYFLEET_PYTHON or python3)')
    .addHelpText(
      'after',
      `
The file has an interface per command (args, result, or a generator's item) and a
\`Commands\` map for createPool<Commands>(...). Hints pyfleet does not know become
\`unknown\` and are listed as warnings (on stderr and at the top of the file).

Exit codes: 0 written (or up to date with --check), 1 out of date or the module cannot
be read, 2 usage error.

Example:
  pyfleet types --module handlers.py --out handlers.d.ts
  pyfleet types --module handlers.py --out handlers.d.ts --check`,
    )
    .action(async (opts: TypesOptions) => {
      if (opts.check === true && opts.out === undefined) {
        process.stderr.write('pyfleet types: --check needs --out (the file to compare)\n');
        process.exitCode = 2;
        return;
      }
      let text: string;
      let warnings: string[];
      try {
        const mod = await describeModule(opts.module, opts.python !== undefined ? { python: opts.python } : {});
        warnings = mod.warnings;
        text = declarations(mod, headerNames(opts.module, opts.out));
      } catch (e) {
        process.stderr.write(`pyfleet types: ${(e as Error).message}\n`);
        process.exitCode = 1;
        return;
      }
      for (const w of warnings) process.stderr.write(`pyfleet types: warning: ${w}\n`);
      if (opts.out === undefined) {
        process.stdout.write(text);
        return;
      }
      if (opts.check === true) {
        const current = existsSync(opts.out) ? readFileSync(opts.out, 'utf8') : null;
        if (current === text) {
          process.stdout.write(`pyfleet types: ${opts.out} is up to date\n`);
          return;
        }
        const why = current === null ? 'does not exist' : `is out of date (first difference at line ${firstDifference(current, text)})`;
        process.stderr.write(`pyfleet types: ${opts.out} ${why}: run pyfleet types --module ${opts.module} --out ${opts.out}\n`);
        process.exitCode = 1;
        return;
      }
      writeFileSync(opts.out, text);
      process.stdout.write(`pyfleet types: wrote ${opts.out}\n`);
    });
}

function firstDifference(a: string, b: string): number {
  const x = a.split('\n');
  const y = b.split('\n');
  let i = 0;
  while (i < x.length && i < y.length && x[i] === y[i]) i++;
  return i + 1;
}
