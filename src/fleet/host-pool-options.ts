/**
 * The pool options a fleet host runs with: the one place where `pyfleet host` and `startHost`
 * turn their own options into `createPool` options. Durable sessions (a session restored on
 * another host from its snapshot) are the pool's job; this function passes the store and key
 * through when the pool accepts them, and says whether it does.
 */
import type { PoolOptions } from '../pool/options.js';
import { resolveOptions } from '../pool/options.js';
import type { SessionStore } from '../sessions/store.js';

export interface HostSessionOptions {
  /** 'memory' or false: sessions live on the host (lost with it); a SessionStore: durable. */
  sessionStore?: 'memory' | false | SessionStore;
  /** Signs snapshots (required with a SessionStore). */
  sessionKey?: string | string[];
}

/** Does this build's pool take `sessionStore` / `sessionKey` (durable sessions)? */
export function poolHasDurableSessions(): boolean {
  try {
    resolveOptions({ module: 'probe', sessionStore: 'memory' } as PoolOptions);
    return true;
  } catch {
    return false;
  }
}

export interface HostPoolOptions {
  options: PoolOptions;
  /** True when a session moved here from a dead host can be restored from its snapshot. */
  durableSessions: boolean;
}

export function hostPoolOptions(base: PoolOptions, sessions: HostSessionOptions = {}): HostPoolOptions {
  const store = sessions.sessionStore;
  if (store === undefined || store === 'memory' || store === false) return { options: base, durableSessions: false };
  if (!poolHasDurableSessions()) {
    throw new TypeError('This pyfleet pool has no durable sessions (createPool({ sessionStore, sessionKey })), so a session store cannot be used yet; run the host without --session-store.');
  }
  if (sessions.sessionKey === undefined) throw new TypeError('A session store needs a sessionKey (--session-key or $PYFLEET_SESSION_KEY) to sign snapshots.');
  const options = { ...base, sessionStore: store, sessionKey: sessions.sessionKey } as PoolOptions;
  return { options, durableSessions: true };
}
