import type { SessionStore } from './store.js';

/**
 * The default store: snapshots in the host's memory. A session survives the death of its worker
 * (not of the host). Entries expire after their TTL without use.
 */
export class MemorySessionStore implements SessionStore {
  private readonly entries = new Map<string, { data: Uint8Array; expires: number }>();

  async get(sessionId: string): Promise<Uint8Array | undefined> {
    const e = this.entries.get(sessionId);
    if (e === undefined) return undefined;
    if (e.expires <= Date.now()) {
      this.entries.delete(sessionId);
      return undefined;
    }
    return e.data;
  }

  async set(sessionId: string, snapshot: Uint8Array, ttlMs: number): Promise<void> {
    this.entries.set(sessionId, { data: snapshot, expires: Date.now() + ttlMs });
  }

  async delete(sessionId: string): Promise<void> {
    this.entries.delete(sessionId);
  }

  /** Snapshots held now (stats and tests). */
  get size(): number {
    return this.entries.size;
  }
}
