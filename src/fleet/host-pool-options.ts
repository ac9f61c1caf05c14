/**
 * The pool options a fleet host runs with: the one place where `pyfleet host` and `startHost`
 * turn their own options into `createPool` options. Durable sessions (a session restored on
 * another host from its snapshot) are the pool's job; the host hands its pool the shared store
 * through a guard that fences every snapshot read and write with the session's placement.
 */
import type { PoolOptions } from '../pool/options.js';
import type { SessionStore, SessionWrite } from '../sessions/store.js';

export interface HostSessionOptions {
  /** 'memory' or false: sessions live on the host (lost with it); a SessionStore shared by the hosts (natsSessionStore): durable. */
  sessionStore?: 'memory' | false | SessionStore;
  /** Signs snapshots (required with a SessionStore; the same on every host of the fleet). */
  sessionKey?: string | string[];
}

/** What the guard asks the host about a session. */
export interface StoreGuard {
  /** The fence the host holds the session under (undefined: it does not hold it). */
  fence(sessionId: string): number | undefined;
}

export interface HostPoolOptions {
  options: PoolOptions;
  /** True when a session moved here from a dead host can be restored from its snapshot. */
  durableSessions: boolean;
  /** The shared store itself (a host deletes a closed session's snapshot through it when the pool never had the session). */
  store: SessionStore | null;
}

/**
 * The store as the host's pool sees it. Fences go as extra arguments (natsSessionStore takes
 * them; a store that does not simply ignores them).
 */
export function guardedStore(store: SessionStore, g: StoreGuard): SessionStore {
  type Fenced = {
    get(id: string, fence?: number): ReturnType<SessionStore['get']>;
    set(id: string, w: SessionWrite, ttlMs: number, fence?: number): Promise<void>;
    delete(id: string, fence?: number): Promise<void>;
  };
  const f = store as SessionStore & Fenced;
  return {
    get: (id) => f.get(id, g.fence(id)),
    set: (id, w, ttlMs) => f.set(id, w, ttlMs, g.fence(id)),
    delete: (id) => f.delete(id, g.fence(id)),
  };
}

export function hostPoolOptions(base: PoolOptions, sessions: HostSessionOptions = {}, guard?: StoreGuard): HostPoolOptions {
  const store = sessions.sessionStore;
  if (store === undefined || store === 'memory') return { options: base, durableSessions: false, store: null };
  if (store === false) return { options: { ...base, sessionStore: false }, durableSessions: false, store: null };
  if (sessions.sessionKey === undefined) throw new TypeError('A session store needs a sessionKey (--session-key or $PYFLEET_SESSION_KEY) to sign snapshots; give every host of the fleet the same one.');
  // A call whose snapshot the shared store refused fails: the host's memory of that failure dies
  // with the host, and the next host would restore the older snapshot without a word.
  const options: PoolOptions = { ...base, sessionStore: guard === undefined ? store : guardedStore(store, guard), sessionKey: sessions.sessionKey, snapshotFailure: 'fail' };
  return { options, durableSessions: true, store };
}
