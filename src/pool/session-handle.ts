import type { ExecuteOptions, StreamOptions } from './admission.js';
import type { DetailedResult, Pool } from './pool.js';

type SessionOptions = Omit<ExecuteOptions, 'sessionId'>;

/** `pool.session(id)`: the same calls with `sessionId` set. */
export class PoolSession {
  constructor(
    readonly pool: Pool,
    readonly id: string,
  ) {}

  execute<T = unknown>(command: string, args?: unknown, options?: SessionOptions & { detailed?: false }): Promise<T>;
  execute<T = unknown>(command: string, args: unknown, options: SessionOptions & { detailed: true }): Promise<DetailedResult<T>>;
  execute<T = unknown>(command: string, args?: unknown, options: SessionOptions = {}): Promise<T | DetailedResult<T>> {
    const o = { ...options, sessionId: this.id };
    return o.detailed === true ? this.pool.execute<T>(command, args, { ...o, detailed: true }) : this.pool.execute<T>(command, args, { ...o, detailed: false });
  }

  stream<T = unknown>(command: string, args?: unknown, options: Omit<StreamOptions, 'sessionId'> = {}): AsyncIterableIterator<T> {
    return this.pool.stream<T>(command, args, { ...options, sessionId: this.id });
  }

  /** Drops the session's state in its worker (after the calls already made in it). */
  close(): Promise<void> {
    return this.pool.closeSession(this.id);
  }
}
