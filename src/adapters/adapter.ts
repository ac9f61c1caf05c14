/**
 * Anything that can run a command: the pool itself, a single Python process, or a user
 * function. Failover sends a call to one of these when the pool cannot answer it.
 */
export interface AdapterCallOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

export interface Adapter {
  /** Shown in logs and in `{ via }` metadata. */
  readonly name: string;
  execute(command: string, args: unknown, options?: AdapterCallOptions): Promise<unknown>;
  close?(): Promise<void>;
}
