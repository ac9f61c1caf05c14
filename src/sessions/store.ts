/**
 * Where durable sessions keep their state (docs/durable-sessions.md, "Your own store"). A session
 * is stored as records (one per top-level key, pickled by the worker) and a manifest signed by
 * the pool that names them; small records travel inside the manifest, the others apart, each
 * under its ref (the hex SHA-256 of its bytes: the same ref, the same bytes). All of it is opaque
 * to a store, which only keeps bytes for a while. All methods are async; a store may be shared by
 * several pools and hosts (the fleet's NATS store is).
 */
export interface StoredSession {
  /** The manifest of the latest set (or, from a store written by an older pyfleet, its single-blob snapshot). */
  manifest: Uint8Array;
  /** Records by ref: at least every ref the latest set named. */
  records: ReadonlyMap<string, Uint8Array>;
}

export interface SessionWrite {
  manifest: Uint8Array;
  /** Records to add, by ref: the ones the manifest names that the store does not hold yet (or may not). */
  records: ReadonlyMap<string, Uint8Array>;
  /** Every ref the manifest names: the store keeps these and may drop the session's other records. */
  refs: readonly string[];
}

export interface SessionStore {
  /** The session's manifest and records, or undefined when there is none (or it expired). */
  get(sessionId: string): Promise<StoredSession | undefined>;
  /**
   * Adds `write.records`, then replaces the manifest: a get sees the previous manifest with its
   * records or the new one with its records, never a mix. The session (manifest and every record
   * it names, however old) may be dropped after `ttlMs` without a set.
   */
  set(sessionId: string, write: SessionWrite, ttlMs: number): Promise<void>;
  /** Forgets the session: its manifest and all its records (no error when there is none). */
  delete(sessionId: string): Promise<void>;
  /** Releases what the store holds (connections, timers); the pool calls it on close when it owns the store. */
  close?(): Promise<void>;
}
