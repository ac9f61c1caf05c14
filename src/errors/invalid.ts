import { PoolError } from './pool-error.js';

/**
 * The one error every option check throws: says which option, what it must be, and what it got.
 * `scope` names whose options they are (pool options, fleet options, circuit breaker options...).
 */
export function invalidOption(what: string, scope = 'options'): PoolError {
  return new PoolError({ code: 'PYFLEET_INVALID_OPTIONS', message: `Invalid ${scope}: ${what}.` });
}

/** A value as an option error shows it. */
export function show(x: unknown): string {
  if (typeof x === 'string') return JSON.stringify(x);
  if (typeof x === 'object' && x !== null) return Array.isArray(x) ? 'an array' : 'an object';
  return String(x);
}

export type Check = (value: number) => boolean;
export const int =
  (min: number): Check =>
  (v) =>
    Number.isInteger(v) && v >= min;
export const ms =
  (min: number): Check =>
  (v) =>
    Number.isFinite(v) && v >= min;

/**
 * The checks shared by `createPool`'s and `connectFleet`'s options, each throwing
 * `invalidOption(..., scope)`: the same rules and messages for both.
 */
export class OptionChecks {
  constructor(private readonly scope: string) {}

  fail(what: string): never {
    throw invalidOption(what, this.scope);
  }

  num(value: unknown, fallback: number, name: string, ok: Check, rule: string): number {
    if (value === undefined) return fallback;
    if (typeof value !== 'number' || !ok(value)) this.fail(`${name} must be ${rule}, got ${show(value)}`);
    return value;
  }

  bool(value: unknown, fallback: boolean, name: string): boolean {
    if (value === undefined) return fallback;
    if (typeof value !== 'boolean') this.fail(`${name} must be true or false, got ${show(value)}`);
    return value;
  }

  obj(value: unknown, name: string): Record<string, unknown> {
    if (value === undefined) return {};
    if (typeof value !== 'object' || value === null || Array.isArray(value)) this.fail(`${name} must be an object, got ${show(value)}`);
    return value as Record<string, unknown>;
  }

  /** Refuses a key that is not an option: a misspelt option never passes silently. */
  onlyKeys(o: Record<string, unknown>, name: string | null, keys: readonly string[]): void {
    for (const k of Object.keys(o)) {
      if (!keys.includes(k)) this.fail(`${name === null ? k : `${name}.${k}`} is not an option (known: ${keys.join(', ')})`);
    }
  }
}
