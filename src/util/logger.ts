import { pino } from 'pino';

/** The subset of pino's interface pyfleet logs through; any pino-compatible logger fits. */
export interface Logger {
  debug?(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** pino at `info` to stderr (stdout belongs to the program using the pool). */
export function defaultLogger(): Logger {
  return pino({ name: 'pyfleet', level: process.env.PYFLEET_LOG_LEVEL ?? 'info' }, pino.destination({ dest: 2, sync: true }));
}
