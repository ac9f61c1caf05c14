import type { Caller, DetailedResult, SessionExecuteOptions, SessionStreamOptions } from './types.js';

/** `pool.session(id)` and `fleet.session(id)`: the same calls with `sessionId` set. */
export class PoolSession {
  constructor(
    readonly caller: Caller,
    readonly id: string,
  ) {}

  execute<T = unknown>(command: string, args?: unknown, options?: SessionExecuteOptions & { detailed?: false }): Promise<T>;
  execute<T = unknown>(command: string, args: unknown, options: SessionExecuteOptions & { detailed: true }): Promise<DetailedResult<T>>;
  execute<T = unknown>(command: string, args?: unknown, options: SessionExecuteOptions = {}): Promise<T | DetailedResult<T>> {
    const o = { ...options, sessionId: this.id };
    return o.detailed === true ? this.caller.execute<T>(command, args, { ...o, detailed: true }) : this.caller.execute<T>(command, args, { ...o, detailed: false });
  }

  stream<T = unknown>(command: string, args?: unknown, options: SessionStreamOptions = {}): AsyncIterableIterator<T> {
    return this.caller.stream<T>(command, args, { ...options, sessionId: this.id });
  }

  /** Drops the session's state (after the calls already made in it). */
  close(): Promise<void> {
    return this.caller.closeSession(this.id);
  }
}
