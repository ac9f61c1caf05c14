import type { SessionStore, SessionWrite, StoredSession } from './store.js';

/**
 * The default store: sessions in the host's memory. A session survives the death of its worker
 * (not of the host). A session expires, with all its records, after its TTL without a set.
 */
export class MemorySessionStore implements SessionStore {
  private readonly entries = new Map<string, StoredSession & { expires: number }>();

  async get(sessionId: string): Promise<StoredSession | undefined> {
    const e = this.entries.get(sessionId);
    if (e === undefined) return undefined;
    if (e.expires <= Date.now()) {
      this.entries.delete(sessionId);
      return undefined;
    }
    return e;
  }

  async set(sessionId: string, write: SessionWrite, ttlMs: number): Promise<void> {
    const old = this.entries.get(sessionId)?.records;
    let records = write.records;
    if (write.refs.length > write.records.size) {
      // Records from earlier sets that the manifest still names are kept; the others go.
      const kept = new Map(write.records);
      for (const ref of write.refs) if (!kept.has(ref) && old?.has(ref)) kept.set(ref, old.get(ref)!);
      records = kept;
    }
    this.entries.set(sessionId, { manifest: write.manifest, records, expires: Date.now() + ttlMs });
  }

  async delete(sessionId: string): Promise<void> {
    this.entries.delete(sessionId);
  }

  /** Sessions held now (stats and tests). */
  get size(): number {
    return this.entries.size;
  }
}
