import { CircuitBreaker, type CircuitBreakerOptions, type CircuitListener, type CircuitSnapshot } from './circuit-breaker.js';

/**
 * The seed's named circuits: `pool_operations` around the workers themselves (deaths, failed
 * starts, corrupt protocol), and `worker_commands` around commands, one circuit per command
 * (`worker_commands:<command>`), so one command's timeouts never refuse another command.
 */
export const POOL_OPERATIONS = 'pool_operations';
export const WORKER_COMMANDS = 'worker_commands';

/** The name of `command`'s own circuit. */
export function commandCircuitName(command: string): string {
  return `${WORKER_COMMANDS}:${command}`;
}

export type CircuitDefaults = Omit<CircuitBreakerOptions, 'name'>;

/**
 * Named circuits, created on first use with shared defaults (the seed's CircuitBreaker server
 * kept a map of circuits by name; here each circuit is its own object and no call goes through
 * a shared process).
 */
export class CircuitRegistry {
  private readonly circuits = new Map<string, CircuitBreaker>();
  private readonly listeners: CircuitListener[] = [];

  constructor(private readonly defaults: CircuitDefaults = {}) {}

  /** The circuit called `name`, created with the defaults (and `overrides`, used only on creation) if new. */
  get(name: string, overrides?: CircuitDefaults): CircuitBreaker {
    let c = this.circuits.get(name);
    if (c === undefined) {
      c = new CircuitBreaker({ ...this.defaults, ...overrides, name });
      for (const l of this.listeners) c.onStateChange(l);
      this.circuits.set(name, c);
    }
    return c;
  }

  has(name: string): boolean {
    return this.circuits.has(name);
  }

  names(): string[] {
    return [...this.circuits.keys()];
  }

  /** name -> snapshot of every circuit created so far. */
  snapshot(): Record<string, CircuitSnapshot> {
    const out: Record<string, CircuitSnapshot> = {};
    for (const [name, c] of this.circuits) out[name] = c.snapshot();
    return out;
  }

  /** Resets one circuit (if it exists), or all of them. */
  reset(name?: string): void {
    if (name === undefined) for (const c of this.circuits.values()) c.reset();
    else this.circuits.get(name)?.reset();
  }

  /** Listens to the transitions of every circuit, present and future; returns the unsubscribe function. */
  onStateChange(fn: CircuitListener): () => void {
    this.listeners.push(fn);
    for (const c of this.circuits.values()) c.onStateChange(fn);
    return () => {
      const i = this.listeners.indexOf(fn);
      if (i >= 0) this.listeners.splice(i, 1);
      for (const c of this.circuits.values()) c.offStateChange(fn);
    };
  }
}
