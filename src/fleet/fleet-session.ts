import type { ExecuteOptions } from '../pool/pool.js';
import type { Fleet } from './client.js';
import type { FleetStreamOptions } from './client-options.js';

/** `fleet.session(id)`: the same calls with `sessionId` set. */
export class FleetSession {
  constructor(
    readonly fleet: Fleet,
    readonly id: string,
  ) {}

  execute<T = unknown>(command: string, args?: unknown, options: Omit<ExecuteOptions, 'sessionId' | 'detailed'> = {}): Promise<T> {
    return this.fleet.execute<T>(command, args, { ...options, sessionId: this.id, detailed: false });
  }

  stream<T = unknown>(command: string, args?: unknown, options: Omit<FleetStreamOptions, 'sessionId'> = {}): AsyncIterableIterator<T> {
    return this.fleet.stream<T>(command, args, { ...options, sessionId: this.id });
  }

  close(): Promise<void> {
    return this.fleet.closeSession(this.id);
  }
}
