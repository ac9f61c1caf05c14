/**
 * Where durable sessions keep their snapshots (see docs/protocol.md, "Session snapshots").
 * A snapshot is an opaque, signed envelope made by the pool: a store only keeps bytes under a
 * session id, for at most `ttlMs`. All methods are async; a store may be shared by several pools
 * and hosts (the fleet's NATS store is).
 */
export interface SessionStore {
  /** The snapshot stored for `sessionId`, or undefined when there is none (or it expired). */
  get(sessionId: string): Promise<Uint8Array | undefined>;
  /** Replaces the snapshot of `sessionId`; it may be dropped after `ttlMs` without use. */
  set(sessionId: string, snapshot: Uint8Array, ttlMs: number): Promise<void>;
  /** Forgets the snapshot of `sessionId` (no error when there is none). */
  delete(sessionId: string): Promise<void>;
  /** Releases what the store holds (connections, timers); the pool calls it on close when it owns the store. */
  close?(): Promise<void>;
}
