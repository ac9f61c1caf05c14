import { pino } from 'pino';
import type { Logger } from '../index.js';
import type { LogLevel } from './args.js';

/** The pool's logger for a CLI command: pino to stderr at `level` (stdout is the command's output). */
export function cliLogger(level: LogLevel): Logger {
  return pino({ name: 'pyfleet', level }, pino.destination({ dest: 2, sync: true }));
}
