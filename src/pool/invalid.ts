import { PoolError } from '../errors/pool-error.js';

/** The error every option check throws: says which option, what it must be, and what it got. */
export function invalidOption(what: string): PoolError {
  return new PoolError({ code: 'PYFLEET_INVALID_OPTIONS', message: `Invalid pool options: ${what}.` });
}
