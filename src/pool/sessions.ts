/**
 * Session affinity: which worker holds each session's state. A session is bound to a worker on
 * its first call. When that worker dies the session is marked lost, and its calls fail until the
 * caller closes it: its state is never silently re-created empty.
 */
export interface SessionEntry {
  id: string;
  workerId: number | null;
  lastUsed: number;
  inflight: number;
  /** Why the state is gone, once it is. */
  lost: string | null;
}

export class SessionTable {
  private readonly entries = new Map<string, SessionEntry>();
  private readonly perWorker = new Map<number, number>();

  get size(): number {
    return this.entries.size;
  }

  get(id: string): SessionEntry | undefined {
    return this.entries.get(id);
  }

  /** The entry for `id`, created unbound if new. */
  open(id: string, now: number): SessionEntry {
    let e = this.entries.get(id);
    if (e === undefined) {
      e = { id, workerId: null, lastUsed: now, inflight: 0, lost: null };
      this.entries.set(id, e);
    }
    return e;
  }

  bind(e: SessionEntry, workerId: number): void {
    if (e.workerId === workerId) return;
    e.workerId = workerId;
    this.perWorker.set(workerId, (this.perWorker.get(workerId) ?? 0) + 1);
  }

  /** Sessions bound to `workerId`. */
  countOn(workerId: number): number {
    return this.perWorker.get(workerId) ?? 0;
  }

  /** Marks every session of a dead worker as lost; returns their ids. */
  markLost(workerId: number, reason: string): string[] {
    const ids: string[] = [];
    for (const e of this.entries.values()) {
      if (e.workerId === workerId && e.lost === null) {
        e.lost = reason;
        ids.push(e.id);
      }
    }
    this.perWorker.delete(workerId);
    return ids;
  }

  /** Forgets a session; returns the worker that held its state (to free it there), if any. */
  delete(id: string): number | null {
    const e = this.entries.get(id);
    if (e === undefined) return null;
    this.entries.delete(id);
    if (e.workerId !== null && e.lost === null) {
      const n = (this.perWorker.get(e.workerId) ?? 1) - 1;
      if (n > 0) this.perWorker.set(e.workerId, n);
      else this.perWorker.delete(e.workerId);
      return e.workerId;
    }
    return null;
  }

  /** Sessions idle for `ttlMs` with nothing in flight (lost ones included: their callers had time to notice). */
  expired(now: number, ttlMs: number): SessionEntry[] {
    const out: SessionEntry[] = [];
    for (const e of this.entries.values()) if (e.inflight === 0 && now - e.lastUsed >= ttlMs) out.push(e);
    return out;
  }

  all(): IterableIterator<SessionEntry> {
    return this.entries.values();
  }
}
