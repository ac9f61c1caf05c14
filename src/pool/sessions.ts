/**
 * Session affinity and order. A session is bound to a worker on its first call; its calls run one
 * at a time, in the order they were made (only the first unsettled one may run). When its worker
 * dies the session is marked lost, and its calls fail until the caller closes it: its state is
 * never silently re-created empty. A close takes its place in the same order: calls made before
 * it still run in the session, then its state is dropped, and calls made after it start afresh.
 */

/** What the table needs of a call. */
export interface SessionCall {
  readonly id: number;
}

interface CloseMarker {
  readonly close: () => void;
}

type Op = SessionCall | CloseMarker;

const isClose = (op: Op): op is CloseMarker => (op as CloseMarker).close !== undefined;

export interface SessionEntry {
  readonly id: string;
  workerId: number | null;
  lastUsed: number;
  /** Why the state is gone, once it is. */
  lost: string | null;
  /** Calls and closes in the order they were made. */
  readonly ops: Op[];
}

export interface SessionHooks {
  /** Free the session's state in worker `workerId`. */
  drop(id: string, workerId: number): void;
  /** The session's first op changed: its next call may be able to run now. */
  advanced(e: SessionEntry): void;
}

export class SessionTable {
  private readonly entries = new Map<string, SessionEntry>();
  private readonly perWorker = new Map<number, number>();

  constructor(private readonly hooks: SessionHooks) {}

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
      e = { id, workerId: null, lastUsed: now, lost: null, ops: [] };
      this.entries.set(id, e);
    }
    return e;
  }

  /** A call of `e` was admitted: it runs after every op already there. */
  enqueue(e: SessionEntry, call: SessionCall): void {
    e.ops.push(call);
  }

  /** True when `call` is its session's first op: the one that may run now. */
  isTurn(e: SessionEntry, call: SessionCall): boolean {
    return e.ops[0] === call;
  }

  /** A call of `e` settled: it leaves the order (wherever it was), and whatever comes next goes on. */
  settled(e: SessionEntry, call: SessionCall, now: number): void {
    e.lastUsed = now;
    const i = e.ops.indexOf(call);
    if (i < 0) return;
    e.ops.splice(i, 1);
    if (i === 0) this.advance(e);
  }

  /** Drops the session's state once the calls made before now have settled; resolves then. */
  close(id: string): Promise<void> {
    const e = this.entries.get(id);
    if (e === undefined) return Promise.resolve();
    return new Promise<void>((resolve) => {
      e.ops.push({ close: resolve });
      if (e.ops.length === 1) this.advance(e);
    });
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

  /** Marks every session of a dead worker as lost; returns them. */
  markLost(workerId: number, reason: string): SessionEntry[] {
    const lost: SessionEntry[] = [];
    for (const e of this.entries.values()) {
      if (e.workerId === workerId && e.lost === null) {
        e.lost = reason;
        lost.push(e);
      }
    }
    this.perWorker.delete(workerId);
    return lost;
  }

  /** Sessions idle for `ttlMs` with nothing admitted. */
  expired(now: number, ttlMs: number): SessionEntry[] {
    const out: SessionEntry[] = [];
    for (const e of this.entries.values()) if (e.ops.length === 0 && now - e.lastUsed >= ttlMs) out.push(e);
    return out;
  }

  all(): IterableIterator<SessionEntry> {
    return this.entries.values();
  }

  /** Runs the closes at the head of the order, then tells the dispatcher whoever is first now. */
  private advance(e: SessionEntry): void {
    while (e.ops.length > 0 && isClose(e.ops[0])) {
      const marker = e.ops.shift() as CloseMarker;
      this.forget(e);
      marker.close();
    }
    if (e.ops.length === 0) {
      if (e.workerId === null && e.lost === null && this.entries.get(e.id) === e) this.entries.delete(e.id);
    } else this.hooks.advanced(e);
  }

  /** Frees the state: the entry stays (later calls start afresh in it) or goes when nothing waits. */
  private forget(e: SessionEntry): void {
    const w = e.workerId;
    if (w !== null && e.lost === null) {
      const n = (this.perWorker.get(w) ?? 1) - 1;
      if (n > 0) this.perWorker.set(w, n);
      else this.perWorker.delete(w);
      this.hooks.drop(e.id, w);
    }
    e.workerId = null;
    e.lost = null;
  }
}
