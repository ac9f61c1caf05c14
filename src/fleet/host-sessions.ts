/**
 * The sessions a host holds, and under which placement (src/fleet/session-map.ts: every place or
 * move of a session gets a new `gen`, and a fence that only grows). A host holds a session from
 * its first call under a placement until the session moves away or is closed. What this guards:
 *
 * - Calls of one session run here one at a time, in the order they arrived.
 * - A host that was taken for dead and came back (SIGSTOP, a partition) holds a stale copy of
 *   sessions that moved on meanwhile: a call routed by an older placement is refused as not taken
 *   (the client looks again and goes to the new holder), and the stale copy is dropped from the
 *   pool, without deleting the snapshot, before the session runs here again. The pool then
 *   restores the new holder's snapshot, so the state is never older than the last completed call.
 * - Snapshot reads and writes are fenced (natsSessionStore): a stale host cannot overwrite the
 *   new holder's snapshot.
 */
import { PoolError } from '../errors/pool-error.js';
import type { Pool } from '../pool/pool.js';
import type { SessionStore } from '../sessions/store.js';
import type { StoreGuard } from './host-pool-options.js';
import type { SessionMap, SessionPlace } from './session-map.js';
import type { CallMeta } from './wire.js';

interface Holding {
  epoch: number;
  gen: string;
  fence: number;
  /** This session's calls here, chained: the next starts when the last settled. */
  tail: Promise<unknown>;
  lastUsed: number;
  /** The session moved away: its copy is being (or was) dropped. */
  released: boolean;
}

/** Kept a minute past the pool's own session expiry, so that the pool's expiry still deletes under the right fence. */
const KEEP_AFTER_TTL_MS = 60_000;

export class HostSessions implements StoreGuard {
  private readonly held = new Map<string, Holding>();
  /** The host's watch of the session map (durable sessions only): how it learns a session moved away. */
  map: SessionMap | null = null;

  constructor(
    private readonly hostId: string,
    private readonly pool: Pool,
    private readonly durable: boolean,
    private readonly store: SessionStore | null,
  ) {}

  get size(): number {
    let n = 0;
    for (const h of this.held.values()) if (!h.released) n++;
    return n;
  }

  fence(sid: string): number | undefined {
    const h = this.held.get(sid);
    return h === undefined || h.fence === 0 ? undefined : h.fence;
  }

  /** Why a session call is not taken here, or null. */
  refuse(meta: CallMeta, hostId: string): PoolError | null {
    const sid = meta.sessionId!;
    const h = this.held.get(sid);
    const cur = this.map?.cached(sid);
    const later = (gen: string, fence: number): boolean => gen !== '' && gen !== meta.sessionGen && fence > meta.sessionFence;
    if (meta.sessionGen !== '' && ((cur !== undefined && later(cur.gen, cur.revision)) || (h !== undefined && later(h.gen, h.fence)))) {
      return new PoolError({
        code: 'PYFLEET_HOST_LOST',
        command: meta.command,
        sessionId: sid,
        taken: false,
        message: `Session ${JSON.stringify(sid)} has moved from host ${hostId} to ${cur?.host ?? 'another host'}; the call was not run here.`,
        details: { sessionMoved: true, to: cur?.host ?? null },
      });
    }
    const fresh = h === undefined || h.released || (meta.sessionGen !== '' && h.gen !== meta.sessionGen);
    if (fresh && meta.sessionEpoch > 0 && !this.durable) {
      return new PoolError({
        code: 'PYFLEET_SESSION_LOST',
        command: meta.command,
        sessionId: sid,
        taken: false,
        message: `Session ${JSON.stringify(sid)} moved to host ${hostId} because the host that held it died or left, and its state cannot be restored without durable sessions (run the hosts with --session-store nats and one --session-key). Close the session and start it again.`,
      });
    }
    return null;
  }

  /** Runs `fn` as the session's next call here; first drops a stale copy when the session was elsewhere meanwhile. */
  run<T>(meta: CallMeta, fn: () => Promise<T>): Promise<T> {
    const sid = meta.sessionId!;
    let h = this.held.get(sid);
    const now = performance.now();
    if (h === undefined || h.released || (meta.sessionGen !== '' && h.gen !== meta.sessionGen)) {
      let tail: Promise<unknown> = h?.tail ?? Promise.resolve();
      if (h !== undefined && !h.released) tail = tail.then(() => this.drop(sid));
      h = { epoch: meta.sessionEpoch, gen: meta.sessionGen, fence: meta.sessionFence, tail, lastUsed: now, released: false };
      this.held.set(sid, h);
    } else if (meta.sessionFence > h.fence) h.fence = meta.sessionFence;
    h.lastUsed = now;
    const run = h.tail.then(fn, fn);
    h.tail = run.catch(() => {});
    return run;
  }

  /** The session map changed (the host's watch): a session held here that went elsewhere is dropped here once its calls here settled. */
  placed(sid: string, place: SessionPlace | null): void {
    const h = this.held.get(sid);
    if (h === undefined || h.released || place === null || place.host === this.hostId || place.gen === h.gen) return;
    h.released = true;
    h.tail = h.tail.then(() => this.drop(sid));
  }

  /** A client closed the session: after the calls that reached here before, its state and snapshot go. */
  close(sid: string, fence: number): Promise<void> {
    const h = this.held.get(sid);
    const prior = h?.tail ?? Promise.resolve();
    const done = prior.then(async () => {
      const holding = h !== undefined && !h.released;
      await this.pool.closeSession(sid);
      // Not held here (its holder died): the snapshot is deleted all the same, under the closed placement's fence.
      if (!holding && this.store !== null) await (this.store as SessionStore & { delete(id: string, fence?: number): Promise<void> }).delete(sid, fence > 0 ? fence : undefined).catch(() => {});
      if (this.held.get(sid) === h) this.held.delete(sid);
    });
    if (h !== undefined) h.tail = done.catch(() => {});
    return done;
  }

  expire(now: number): void {
    const keep = this.pool.options.sessionTtlMs + KEEP_AFTER_TTL_MS;
    for (const [sid, h] of this.held) if (now - h.lastUsed > keep) this.held.delete(sid);
  }

  /** Drops the pool's copy of the session; the snapshot stays (it is the new holder's). */
  private drop(sid: string): Promise<void> {
    return this.pool.closeSession(sid, { keepSnapshot: true });
  }
}
