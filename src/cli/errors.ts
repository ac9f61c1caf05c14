import { isPoolError } from '../index.js';

/** Writes a failure to stderr: code, category and message of a PoolError, and the Python traceback when there is one. */
export function printError(e: unknown, prefix = 'pyfleet'): void {
  if (isPoolError(e)) {
    const lines = [`${prefix}: ${e.code} (${e.category}): ${e.message}`];
    if (e.python !== undefined) {
      lines.push(`Python ${e.python.type}: ${e.python.message}`);
      if (e.python.traceback) lines.push(e.python.traceback.trimEnd());
    }
    process.stderr.write(`${lines.join('\n')}\n`);
  } else {
    process.stderr.write(`${prefix}: ${(e as Error)?.stack ?? String(e)}\n`);
  }
}
