import { createHash } from 'node:crypto';
import { DEFAULTS } from '../defaults.js';
import { PoolError } from '../errors/pool-error.js';
import { encodeFrameParts } from '../protocol/frame.js';
import type { SnapMessage } from '../protocol/messages.js';
import { isFormat1, open, openManifest } from '../sessions/envelope.js';
import type { RecordsWrite } from '../sessions/records.js';
import type { SessionStore, StoredSession } from '../sessions/store.js';
import { channels, publish } from '../telemetry/channels.js';
import type { Logger } from '../util/logger.js';
import type { Attempt as WorkerAttempt } from '../worker/attempt.js';
import type { PoolCall as Call, Restore } from './call.js';
import { sessionLostError } from '../call/errors.js';
import { PoisonTracker } from '../call/poison.js';
import type { SessionEntry } from './sessions.js';

export interface DurabilityOptions {
  poolId: number;
  /** null: the default memory store, the pool itself (its records table is what a restore sends; nothing is written per call). */
  store: SessionStore | null;
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

const ADVICE =
  'declare the commands that only read it @command(session="read"), read a big value with ctx.session.peek(key) in commands that change other keys, keep each big value under its own key (a call stores only the keys it may have changed), or load what every session shares in @on_start';
/** A record's name as the user knows the key (names of keys that are not plain strings carry their repr). */
const shown = (name: string): string => (name.startsWith('\0') ? name.split('\0')[1] : name);

/**
 * Durable sessions (DESIGN.md): after a call that may have changed its session, the records of
 * the keys it changed and a new signed manifest are stored before the call resolves; when the
 * session's worker is gone, its next call first fetches the manifest and its records, checks them
 * (signature, session id, version, every record's digest) and has the new worker restore them.
 * Nothing unsigned, foreign or older than what this pool stored is ever sent to be unpickled.
 */
export class Durability {
  /** Sessions restored on a new worker since the pool started. */
  restored = 0;

  constructor(private readonly o: DurabilityOptions) {}

  /** The worker sent the records a call changed (or why the session cannot be kept). Never rejects. */
  snapshot(call: Call, m: SnapMessage): void {
    const e = call.session;
    if (e === null) return;
    if (m.err !== undefined) {
      if (e.notDurable !== null) return;
      const marks = this.notDurable(e, m.err);
      if (this.o.store !== null) this.store(call, e, marks, 0);
      return;
    }
    // A session not durable is durable again with its next full snapshot (the worker sends one as soon as it fits).
    if (e.notDurable !== null && !m.full) return;
    if (!e.records.apply(m.k, m.v, m.d, m.full)) return;
    e.notDurable = null;
    let bytes = 0;
    for (const v of m.v) bytes += v.byteLength;
    this.large(e, m, bytes);
    if (this.o.store !== null) return this.store(call, e, {}, bytes);
    e.stored = ++e.version;
    if (channels['session:snapshot'].hasSubscribers) publish('session:snapshot', { poolId: this.o.poolId, sessionId: e.id, version: e.version, bytes, durationMs: 0, ok: true, error: null });
  }

  /** Stores the next version of `e`'s records; the call resolves after it (or fails: snapshotFailure 'fail'). */
  private store(call: Call, e: SessionEntry, marks: Record<string, string>, bytes: number): void {
    const version = ++e.version;
    const saved = this.save(e, version, e.records.write(this.o.keys[0], e.id, version, marks), bytes);
    call.saving = saved.then((failed) => (failed === null || !this.o.failUnsaved ? null : notSavedError(e, call, failed)));
  }

  /** Writes `w` after any earlier write of the session; resolves to why it failed, or null. Never rejects. */
  private save(e: SessionEntry, version: number, w: RecordsWrite, bytes: number): Promise<string | null> {
    const { ttlMs, poolId, logger } = this.o;
    const store = this.o.store!;
    const write = async (): Promise<string | null> => {
      const t0 = performance.now();
      try {
        await store.set(e.id, w, ttlMs);
        e.records.stored(w);
        if (version > e.stored) e.stored = version;
        if (version === e.version) e.storeFailed = null;
        publish('session:snapshot', { poolId, sessionId: e.id, version, bytes, durationMs: performance.now() - t0, ok: true, error: null });
        return null;
      } catch (err) {
        e.storeFailed = (err as Error)?.message ?? String(err);
        logger.warn({ poolId, sessionId: e.id, version }, `session ${JSON.stringify(e.id)}: its snapshot (version ${version}) could not be stored: ${e.storeFailed}; if its worker goes, the session is lost rather than restored older`);
        publish('session:snapshot', { poolId, sessionId: e.id, version, bytes, durationMs: performance.now() - t0, ok: false, error: e.storeFailed });
        return e.storeFailed;
      }
    };
    const p = e.saving === null ? write() : e.saving.then(write);
    e.saving = p;
    void p.then(() => {
      if (e.saving === p) e.saving = null;
    });
    return p;
  }

  /** Said as a session becomes not durable; the manifest stored next carries the mark, so no pool restores an older state. */
  private notDurable(e: SessionEntry, reason: string): Record<string, string> {
    e.notDurable = reason;
    e.records.clear();
    const { poolId, logger } = this.o;
    logger.warn({ poolId, sessionId: e.id }, `session ${JSON.stringify(e.id)} is not durable: ${reason}; it is lost if its worker goes, until its next call that fits stores it whole`);
    publish('session:not_durable', { poolId, sessionId: e.id, reason });
    return { notDurable: reason };
  }

  /** Said once per session: one call's records were large or slow to pickle. */
  private large(e: SessionEntry, m: SnapMessage & { err?: undefined }, bytes: number): void {
    if (e.warnedLarge) return;
    const limit = DEFAULTS.sessionLarge;
    if (bytes < limit.bytes && m.ms < limit.pickleMs) return;
    e.warnedLarge = true;
    const keys = m.k.map((name, i) => ({ key: shown(name), bytes: m.v[i].byteLength })).sort((a, b) => b.bytes - a.bytes).slice(0, 3);
    const costliest = keys.map((k) => `${JSON.stringify(k.key)} (${k.bytes} bytes)`).join(', ');
    const { poolId, logger } = this.o;
    logger.warn({ poolId, sessionId: e.id }, `session ${JSON.stringify(e.id)}: one call stored ${bytes} bytes of records (pickling took ${m.ms.toFixed(1)} ms), the most for ${costliest}; to make its calls cheaper, ${ADVICE}`);
    publish('session:large', { poolId, sessionId: e.id, version: e.version + 1, bytes, pickleMs: m.ms, keys, advice: ADVICE });
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
   * Before a session call runs on no worker: waits for the session's writes, fetches its manifest
   * and records and checks them, and attaches them to the call (the dispatcher has the worker
   * restore them first). Rejects with a session_error when they are refused or gone.
   */
  async prepare(call: Call): Promise<void> {
    const e = call.session!;
    while (e.saving !== null) await e.saving;
    if (e.refused !== null) throw refusedError(e, call);
    if (e.workerId !== null) return;
    // A snapshot stored after the worker went (it was being written then) is state to restore.
    if (e.restore === 'no' && e.stored > 0) e.restore = 'yes';
    if (e.restore === 'no') return;
    if (this.o.store === null) {
      // The pool's own memory: its table is the latest state, signed now for the worker to check.
      if (e.records.empty) e.restore = 'no';
      else {
        const w = e.records.write(this.o.keys[0], e.id, e.version);
        const parts = [w.manifest, ...w.records.values()];
        call.restore = { version: e.version, bytes: parts.reduce((n, p) => n + p.byteLength, 0), parts, legacy: null };
        e.restore = 'yes';
      }
      return;
    }
    let got: StoredSession | undefined;
    const t0 = performance.now();
    // A restore that fails before any worker sees the snapshot is a failed restore all the same.
    const failed = (error: string, size: number): void =>
      publish('session:restore', { poolId: this.o.poolId, sessionId: e.id, version: e.stored, bytes: size, durationMs: performance.now() - t0, ok: false, error });
    try {
      got = await this.o.store.get(e.id);
    } catch (err) {
      failed(`the store failed: ${(err as Error)?.message ?? String(err)}`, 0);
      throw new PoolError({ code: 'PYFLEET_SESSION_LOST', command: call.command, sessionId: e.id, callId: call.id, cause: err, message: `Session ${JSON.stringify(e.id)} could not be restored: its store failed (${(err as Error)?.message ?? String(err)}). The call was not run; try again when the store is back.` });
    }
    if (got === undefined) {
      if (e.restore === 'yes') return this.lost(e, call, `its snapshot (version ${e.stored}) is no longer in the store (expired or deleted)`, 0, failed);
      e.restore = 'no';
      return;
    }
    let r: Restore | string;
    try {
      r = this.opened(e, got);
    } catch (err) {
      e.refused = (err as Error).message;
      failed(e.refused, got.manifest.byteLength);
      throw refusedError(e, call);
    }
    if (typeof r === 'string') return this.lost(e, call, r, got.manifest.byteLength, failed);
    e.version = Math.max(e.version, r.version);
    e.stored = Math.max(e.stored, r.version);
    e.restore = 'yes';
    call.restore = r;
  }

  private lost(e: SessionEntry, call: Call, why: string, size: number, failed: (error: string, size: number) => void): never {
    e.lost = why;
    failed(why, size);
    throw sessionLostError(e, call.command, call);
  }

  /** What `got` restores, or why the session's state is gone (a string); throws an Error when it is refused. */
  private opened(e: SessionEntry, got: StoredSession): Restore | string {
    const { keys, maxFrameBytes } = this.o;
    if (isFormat1(got.manifest)) {
      const legacy = open(got.manifest, e.id, keys, e.stored);
      // The worker sends every key with its next snapshot, the first manifest of this session.
      e.records.clear();
      return { version: legacy.version, bytes: legacy.data.byteLength, parts: null, legacy };
    }
    const m = openManifest(got.manifest, e.id, keys, e.stored);
    const marks = Object.entries(m.marks);
    if (marks.length > 0) {
      if (m.marks.notDurable !== undefined) return `it was not durable when its worker went (${m.marks.notDurable})`;
      return `its stored state is marked ${marks.map(([k, v]) => `${k} (${v})`).join(', ')}`;
    }
    const parts = [got.manifest];
    let bytes = m.inline.byteLength;
    for (const k of m.keys) {
      if (k.ref === null) continue;
      const r = got.records.get(k.ref);
      if (r === undefined) return `the record of its key ${JSON.stringify(shown(k.name))} is no longer in the store`;
      if (r.byteLength !== k.size || createHash('sha256').update(r).digest('hex') !== k.ref) {
        throw new Error(`its stored record of key ${JSON.stringify(shown(k.name))} does not match the digest its manifest names (a record of another session or version, or changed in the store)`);
      }
      parts.push(r);
      bytes += r.byteLength;
    }
    // The parts, their padding and descriptors, and the message must fit in one frame.
    if (got.manifest.byteLength + bytes + 64 * parts.length + 1024 > maxFrameBytes) return `its ${bytes} bytes of records do not fit in one frame (maxFrameBytes ${maxFrameBytes})`;
    e.records.load(m);
    return { version: m.version, bytes, parts, legacy: null };
  }

  /**
   * The restore of `call.restore` on worker `workerId`, as an attempt the worker answers before
   * the call (wire id `id`): refused by the worker, or killing it `maxDeaths` times, it refuses
   * the session.
   */
  restoreAttempt(id: number, call: Call, workerId: number): WorkerAttempt {
    const e = call.session!;
    const r = call.restore!;
    const sid = JSON.stringify(e.id);
    const frame =
      r.legacy !== null
        ? encodeFrameParts(`{"t":"restore","id":${id},"sid":${sid},"ver":${r.version},"min":${e.stored},"sig":"${r.legacy.mac.toString('hex')}","v":null}`, [{ path: [], kind: 'bytes', data: r.legacy.data }], this.o.maxFrameBytes)
        : encodeFrameParts(
            `{"t":"restore","id":${id},"sid":${sid},"min":${e.stored},"v":[${r.parts!.map(() => 'null').join(',')}]}`,
            r.parts!.map((data, i) => ({ path: [i], kind: 'bytes' as const, data })),
            this.o.maxFrameBytes,
          );
    const t0 = performance.now();
    const { poolId, poison, maxDeaths } = this.o;
    const done = (ok: boolean, error: string | null): void => publish('session:restore', { poolId, sessionId: e.id, version: r.version, bytes: r.bytes, durationMs: performance.now() - t0, ok, error });
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
          if (poison.recordDeath(`restore:${e.id}:${r.version}`, workerId)) e.refused ??= `restoring its snapshot (version ${r.version}) killed ${maxDeaths} workers`;
        }
        done(false, err.message);
      },
    };
  }

  /** Resolves when the session's writes are done (or failed). */
  async settledSaves(e: SessionEntry): Promise<void> {
    while (e.saving !== null) await e.saving;
  }

  /** The session was closed or expired: its manifest and records go too. */
  async forget(e: SessionEntry): Promise<void> {
    await this.settledSaves(e);
    try {
      await this.o.store?.delete(e.id);
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
