import { PoolError } from '../errors/pool-error.js';
import { encodeFrameParts } from '../protocol/frame.js';
import { open, seal, type Snapshot } from '../sessions/envelope.js';
import type { SessionStore } from '../sessions/store.js';
import { publish } from '../telemetry/channels.js';
import type { Logger } from '../util/logger.js';
import type { Attempt as WorkerAttempt } from '../worker/attempt.js';
import type { PoolCall as Call } from './call.js';
import { PoisonTracker } from '../call/poison.js';
import type { SessionEntry } from './sessions.js';

export interface DurabilityOptions {
  poolId: number;
  store: SessionStore;
  /** The first signs, all verify (rotation). */
  keys: readonly Buffer[];
  /** The store outlives the pool (a file, NATS): a session new to this pool may have a snapshot there. */
  persistent: boolean;
  ttlMs: number;
  requestTimeoutMs: number;
  maxFrameBytes: number;
  logger: Logger;
  poison: PoisonTracker;
  maxDeaths: number;
  /** snapshotFailure: 'fail': a call whose snapshot was not stored fails. */
  failUnsaved: boolean;
}

/**
 * Durable sessions (DESIGN.md): after a call that touched its session, the worker's snapshot is
 * signed and stored before the call resolves; when the session's worker is gone, its next call
 * first fetches the snapshot, checks it (signature, session id, version) and has the new worker
 * restore it. Nothing unsigned, foreign or older than what this pool stored is ever sent to be
 * unpickled.
 */
export class Durability {
  /** Sessions restored on a new worker since the pool started. */
  restored = 0;

  constructor(private readonly o: DurabilityOptions) {}

  /** The worker sent the session's state after a call (or why it cannot be kept). Never rejects. */
  snapshot(call: Call, data: Uint8Array | undefined, err: string | undefined): void {
    const e = call.session;
    if (e === null) return;
    if (err !== undefined) return this.notDurable(e, err);
    const saved = this.save(e, data!);
    call.saving = saved.then((failed) => (failed === null || !this.o.failUnsaved ? null : notSavedError(e, call, failed)));
  }

  /** Stores the next version of `e`'s state, after any earlier one; resolves to why it failed, or null. Never rejects. */
  private save(e: SessionEntry, data: Uint8Array): Promise<string | null> {
    const version = ++e.version;
    const { store, keys, ttlMs, poolId, logger } = this.o;
    const write = async (): Promise<string | null> => {
      const t0 = performance.now();
      try {
        await store.set(e.id, seal(keys[0], e.id, version, data), ttlMs);
        if (version > e.stored) e.stored = version;
        if (version === e.version) e.storeFailed = null;
        publish('session:snapshot', { poolId, sessionId: e.id, version, bytes: data.byteLength, durationMs: performance.now() - t0, ok: true, error: null });
        return null;
      } catch (err) {
        e.storeFailed = (err as Error)?.message ?? String(err);
        logger.warn({ poolId, sessionId: e.id, version }, `session ${JSON.stringify(e.id)}: its snapshot (version ${version}) could not be stored: ${e.storeFailed}; if its worker goes, the session is lost rather than restored older`);
        publish('session:snapshot', { poolId, sessionId: e.id, version, bytes: data.byteLength, durationMs: performance.now() - t0, ok: false, error: e.storeFailed });
        return e.storeFailed;
      }
    };
    const p = (e.saving ?? Promise.resolve()).then(write);
    e.saving = p;
    void p.then(() => {
      if (e.saving === p) e.saving = null;
    });
    return p;
  }

  /** Said once per session: its state cannot be kept, so it dies with its worker. */
  private notDurable(e: SessionEntry, reason: string): void {
    if (e.notDurable !== null) return;
    e.notDurable = reason;
    const { poolId, logger } = this.o;
    logger.warn({ poolId, sessionId: e.id }, `session ${JSON.stringify(e.id)} is not durable: ${reason}; it is lost if its worker goes`);
    publish('session:not_durable', { poolId, sessionId: e.id, reason });
  }

  /**
   * Whether `call`, first in its session, must fetch the session's snapshot before it is sent:
   * the session is on no worker and its state may be in the store, and the call holds no snapshot
   * as recent as the one stored last.
   */
  needsSnapshot(call: Call): boolean {
    const e = call.session;
    if (e === null || e.workerId !== null || (e.restore === 'no' && e.saving === null)) return false;
    return call.restore === null || call.restore.version < e.stored || e.saving !== null;
  }

  /**
   * Before a session call runs on no worker: waits for the session's snapshots being stored,
   * fetches the latest and checks it, and attaches it to the call (the dispatcher has the worker
   * restore it first). Rejects with a session_error when the snapshot is refused or gone.
   */
  async prepare(call: Call): Promise<void> {
    const e = call.session!;
    while (e.saving !== null) await e.saving;
    if (e.refused !== null) throw refusedError(e, call);
    if (e.workerId !== null) return;
    // A snapshot stored after the worker went (it was being written then) is state to restore.
    if (e.restore === 'no' && e.stored > 0) e.restore = 'yes';
    if (e.restore === 'no') return;
    let bytes: Uint8Array | undefined;
    const t0 = performance.now();
    // A restore that fails before any worker sees the snapshot is a failed restore all the same.
    const failed = (error: string, version: number, size: number): void =>
      publish('session:restore', { poolId: this.o.poolId, sessionId: e.id, version, bytes: size, durationMs: performance.now() - t0, ok: false, error });
    try {
      bytes = await this.o.store.get(e.id);
    } catch (err) {
      failed(`the store failed: ${(err as Error)?.message ?? String(err)}`, e.stored, 0);
      throw new PoolError({ code: 'PYFLEET_SESSION_LOST', command: call.command, sessionId: e.id, callId: call.id, cause: err, message: `Session ${JSON.stringify(e.id)} could not be restored: its store failed (${(err as Error)?.message ?? String(err)}). The call was not run; try again when the store is back.` });
    }
    if (bytes === undefined) {
      if (e.restore === 'yes') {
        e.lost = `its snapshot (version ${e.stored}) is no longer in the store (expired or deleted)`;
        failed(e.lost, e.stored, 0);
        throw new PoolError({ code: 'PYFLEET_SESSION_LOST', command: call.command, sessionId: e.id, callId: call.id, message: `Session ${JSON.stringify(e.id)} lost its state: ${e.lost}. Close it and start it again.` });
      }
      e.restore = 'no';
      return;
    }
    let snap: Snapshot;
    try {
      snap = open(bytes, e.id, this.o.keys, e.stored);
    } catch (err) {
      e.refused = (err as Error).message;
      failed(e.refused, e.stored, bytes.byteLength);
      throw refusedError(e, call);
    }
    e.version = Math.max(e.version, snap.version);
    e.stored = Math.max(e.stored, snap.version);
    e.restore = 'yes';
    call.restore = snap;
  }

  /**
   * The restore of `call.restore` on worker `workerId`, as an attempt the worker answers before
   * the call (wire id `id`): refused by the worker, or killing it `maxDeaths` times, it refuses
   * the session.
   */
  restoreAttempt(id: number, call: Call, workerId: number): WorkerAttempt {
    const e = call.session!;
    const snap = call.restore!;
    const frame = encodeFrameParts(
      `{"t":"restore","id":${id},"sid":${JSON.stringify(e.id)},"ver":${snap.version},"min":${e.stored},"sig":"${snap.mac.toString('hex')}","v":null}`,
      [{ path: [], kind: 'bytes', data: snap.data }],
      this.o.maxFrameBytes,
    );
    const t0 = performance.now();
    const { poolId, poison, maxDeaths } = this.o;
    const done = (ok: boolean, error: string | null): void =>
      publish('session:restore', { poolId, sessionId: e.id, version: snap.version, bytes: snap.data.byteLength, durationMs: performance.now() - t0, ok, error });
    return {
      id,
      callId: call.id,
      command: call.command,
      sessionId: e.id,
      idempotent: true,
      kind: 'sync',
      maxConcurrency: null,
      timeoutMs: this.o.requestTimeoutMs,
      frame,
      deadline: Infinity,
      items: 0,
      resolve: () => {
        this.restored++;
        done(true, null);
      },
      reject: (err) => {
        if (err.code === 'PYFLEET_SESSION_REFUSED') e.refused ??= err.python?.message ?? err.message;
        else if (err.code === 'PYFLEET_WORKER_CRASHED' && err.details?.byPool !== true) {
          // A snapshot whose restore keeps killing workers is quarantined with its session.
          if (poison.recordDeath(`restore:${e.id}:${snap.version}`, workerId)) e.refused ??= `restoring its snapshot (version ${snap.version}) killed ${maxDeaths} workers`;
        }
        done(false, err.message);
      },
    };
  }

  /** The session was closed or expired: its snapshot goes too. */
  /** Resolves when the session's snapshots being stored are (or failed to be). */
  async settledSaves(e: SessionEntry): Promise<void> {
    while (e.saving !== null) await e.saving;
  }

  async forget(e: SessionEntry): Promise<void> {
    await this.settledSaves(e);
    try {
      await this.o.store.delete(e.id);
    } catch (err) {
      this.o.logger.warn({ poolId: this.o.poolId, sessionId: e.id }, `session ${JSON.stringify(e.id)}: its snapshot could not be deleted from the store: ${(err as Error)?.message ?? String(err)}`);
    }
  }
}

function notSavedError(e: SessionEntry, call: Call, why: string): PoolError {
  return new PoolError({
    code: 'PYFLEET_SESSION_NOT_SAVED',
    command: call.command,
    sessionId: e.id,
    callId: call.id,
    taken: true,
    message: `${call.command} ran in session ${JSON.stringify(e.id)}, but the store did not take the session's snapshot (${why}): its effect is on the worker, not in the store, and would be undone if the session moved. The next call that is stored saves it; retry only if the command is idempotent.`,
  });
}

export function refusedError(e: SessionEntry, call: Call | null): PoolError {
  return new PoolError({
    code: 'PYFLEET_SESSION_REFUSED',
    command: call?.command ?? null,
    sessionId: e.id,
    callId: call?.id ?? null,
    message: `Session ${JSON.stringify(e.id)} cannot be restored: ${e.refused}. Nothing of the snapshot was unpickled; its calls fail until you close the session (session.close() or pool.closeSession(id)).`,
  });
}
