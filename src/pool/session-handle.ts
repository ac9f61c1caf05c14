import type { ExecuteOptions } from './admission.js';
import type { Pool } from './pool.js';

/** `pool.session(id)`: the same calls with `sessionId` set. */
export class PoolSession {
  constructor(
    readonly pool: Pool,
    readonly id: string,
  ) {}

  execute<T = unknown>(command: string, args?: unknown, options: Omit<ExecuteOptions, 'sessionId' | 'detailed'> = {}): Promise<T> {
    return this.pool.execute<T>(command, args, { ...options, sessionId: this.id, detailed: false });
  }

  /** Drops the session's state in its worker (after the calls already made in it). */
  close(): Promise<void> {
    return this.pool.closeSession(this.id);
  }
}
