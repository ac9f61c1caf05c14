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
  } else if (typeof (e as NodeJS.ErrnoException)?.code === 'string') {
    // A system error (a refused bind, a missing file) is the user's to fix: one line, no stack.
    process.stderr.write(`${prefix}: ${systemError(e as NodeJS.ErrnoException & { address?: string; port?: number })}\n`);
  } else {
    process.stderr.write(`${prefix}: ${(e as Error)?.stack ?? String(e)}\n`);
  }
}

function systemError(e: NodeJS.ErrnoException & { address?: string; port?: number }): string {
  const where = e.port === undefined ? String(e.address) : `${e.address}:${e.port}`;
  if (e.syscall === 'listen' && e.code === 'EADDRINUSE') return `cannot listen on ${where}: the port is in use (another pyfleet serve?). Stop what listens there, or pick another port with --port (0: any free port).`;
  if (e.syscall === 'listen' && e.code === 'EACCES') return `cannot listen on ${where}: permission denied (ports below 1024 need privileges). Pick another port with --port.`;
  if (e.syscall === 'listen' && e.code === 'EADDRNOTAVAIL') return `cannot listen on ${where}: it is not an address of this machine. Pass one of its addresses to --host (or 0.0.0.0 for all).`;
  return e.message;
}
