/**
 * Session affinity and order. A session is bound to a worker on its first call; its calls run one
 * at a time, in the order they were made (only the first unsettled one may run). When its worker
 * goes, a durable session (its latest state stored as a snapshot) is unbound, and its next call
 * restores it on another worker; any other is marked lost, and its calls fail until the caller
 * closes it: its state is never silently re-created empty, nor older than the caller saw. A close
 * takes its place in the same order: calls made before it still run in the session, then its
 * state is dropped (and its snapshot deleted), and calls made after it start afresh.
 */

import { SessionRecords } from '../sessions/records.js';

/** What the table needs of a call. */
export interface SessionCall {
  readonly id: number;
}

interface CloseMarker {
  readonly close: () => void;
  /** Drop the state in the worker only; the store keeps the snapshot. */
  readonly keepSnapshot: boolean;
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
  /** Version of the latest snapshot the worker sent, and of the latest the store accepted (0: none). */
  version: number;
  stored: number;
  /** Snapshots being written to the store now (a restore waits for them). */
  saving: Promise<unknown> | null;
  /** Why the latest snapshot was not stored (the store failed): the stored state is older than the worker's. */
  storeFailed: string | null;
  /** Why the state cannot be kept as a snapshot (it cannot be pickled, or is too large): it dies with its worker. */
  notDurable: string | null;
  /** Whether the state must be restored before the next call: yes, no, or maybe (a persistent store may hold it). */
  restore: 'yes' | 'no' | 'maybe';
  /** Why its snapshot was refused; its calls fail until it is closed. */
  refused: string | null;
  /** Its records as the latest manifest names them. */
  readonly records: SessionRecords;
  /** session:large was said for it. */
  warnedLarge: boolean;
}

export interface SessionHooks {
  /** Frees the session's state: in worker `workerId` if it is bound, and in the store unless `keepSnapshot`; resolves when done. */
  drop(e: SessionEntry, workerId: number | null, keepSnapshot: boolean): Promise<void> | void;
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

  /** The entry for `id`, created unbound if new; `restore`: whether a store may already hold its state. */
  open(id: string, now: number, restore: 'no' | 'maybe' = 'no'): SessionEntry {
    let e = this.entries.get(id);
    if (e === undefined) {
      e = { id, workerId: null, lastUsed: now, lost: null, ops: [], version: 0, stored: 0, saving: null, storeFailed: null, notDurable: null, restore, refused: null, records: new SessionRecords(), warnedLarge: false };
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
  close(id: string, keepSnapshot = false): Promise<void> {
    const e = this.entries.get(id);
    if (e === undefined) return Promise.resolve();
    return new Promise<void>((resolve) => {
      e.ops.push({ close: resolve, keepSnapshot });
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

  /**
   * Worker `workerId` is gone. With `durable`, a session whose latest state the store holds is
   * unbound (its next call restores it elsewhere), one that never had state starts afresh; the
   * others are lost, with the reason. Returns the lost ones.
   */
  workerGone(workerId: number, reason: string, durable: boolean): SessionEntry[] {
    const lost: SessionEntry[] = [];
    for (const e of this.entries.values()) {
      if (e.workerId !== workerId || e.lost !== null) continue;
      const why = durable ? whyNotMovable(e) : '';
      if (durable && why === null) {
        e.workerId = null;
        e.restore = e.stored > 0 ? 'yes' : 'no';
        continue;
      }
      e.lost = why ? `${reason}, and ${why}` : reason;
      lost.push(e);
    }
    this.perWorker.delete(workerId);
    return lost;
  }

  /** Sessions bound to `workerId` whose state would go with it (a worker holding one is not shrunk away). */
  pinnedOn(workerId: number, durable: boolean): number {
    if (!durable) return this.countOn(workerId);
    let n = 0;
    for (const e of this.entries.values()) if (e.workerId === workerId && whyNotMovable(e) !== null) n++;
    return n;
  }

  /** Sessions idle for `ttlMs` with nothing admitted. */
  expired(now: number, ttlMs: number): SessionEntry[] {
    const out: SessionEntry[] = [];
    for (const e of this.entries.values()) if (e.ops.length === 0 && now - e.lastUsed >= ttlMs) out.push(e);
    return out;
  }

  /** `stats().sessions`: sessions bound to a worker now, with a stored snapshot now, and restores so far. */
  stats(restored: number): { total: number; bound: number; durable: number; restored: number } {
    let bound = 0;
    let durable = 0;
    for (const e of this.entries.values()) {
      if (e.workerId !== null && e.lost === null) bound++;
      if (e.stored > 0 && e.notDurable === null && e.lost === null && e.refused === null) durable++;
    }
    return { total: this.entries.size, bound, durable, restored };
  }

  all(): IterableIterator<SessionEntry> {
    return this.entries.values();
  }

  /**
   * Runs the close at the head of the order (calls behind it wait until its state is dropped, in
   * the worker and in the store), then tells the dispatcher whoever is first now.
   */
  private advance(e: SessionEntry): void {
    const head = e.ops[0];
    if (head !== undefined && isClose(head)) {
      if (this.closing.has(head)) return;
      this.closing.add(head);
      const done = (): void => {
        this.closing.delete(head);
        e.ops.shift();
        head.close();
        this.advance(e);
      };
      const dropped = this.forget(e, head.keepSnapshot);
      if (dropped === undefined) done();
      else dropped.then(done, done);
      return;
    }
    if (e.ops.length === 0) {
      if (e.workerId === null && e.lost === null && e.stored === 0 && e.refused === null && this.entries.get(e.id) === e) this.entries.delete(e.id);
    } else this.hooks.advanced(e);
  }

  private readonly closing = new Set<CloseMarker>();

  /** Frees the state: the entry stays (later calls start afresh in it) or goes when nothing waits. */
  private forget(e: SessionEntry, keepSnapshot: boolean): Promise<void> | undefined {
    const w = e.workerId;
    const bound = w !== null && e.lost === null;
    if (bound) {
      const n = (this.perWorker.get(w) ?? 1) - 1;
      if (n > 0) this.perWorker.set(w, n);
      else this.perWorker.delete(w);
    }
    const dropped = this.hooks.drop(e, bound ? w : null, keepSnapshot);
    e.workerId = null;
    e.lost = null;
    e.version = 0;
    e.stored = 0;
    e.storeFailed = null;
    e.notDurable = null;
    // A snapshot kept in the store is the state of the session's next call (if it is still there then).
    e.restore = keepSnapshot ? 'maybe' : 'no';
    e.refused = null;
    // The pool's own memory store keeps a session's records in its table: what keepSnapshot keeps.
    if (!keepSnapshot) e.records.clear();
    e.warnedLarge = false;
    return dropped ?? undefined;
  }
}

/** Why a session's state cannot move to another worker through its snapshot, or null when it can. */
function whyNotMovable(e: SessionEntry): string | null {
  if (e.notDurable !== null) return `its state is not durable (${e.notDurable})`;
  if (e.storeFailed !== null) return `its latest snapshot could not be stored (${e.storeFailed}), so the stored state is older than what the caller saw`;
  return null;
}
