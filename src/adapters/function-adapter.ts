import type { Adapter, AdapterCallOptions } from './adapter.js';

/** A user function as a fallback: `(command, args) => value` (sync or async). */
export class FunctionAdapter implements Adapter {
  constructor(
    private readonly fn: (command: string, args: unknown, options: AdapterCallOptions) => unknown,
    readonly name = fn.name ? `function ${fn.name}` : 'function',
  ) {}

  async execute(command: string, args: unknown, options: AdapterCallOptions = {}): Promise<unknown> {
    return this.fn(command, args, options);
  }
}

export function toAdapter(x: Adapter | ((command: string, args: unknown) => unknown)): Adapter {
  return typeof x === 'function' ? new FunctionAdapter(x) : x;
}
