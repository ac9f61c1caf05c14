import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { open as openFile, readFile, rename, stat, unlink, utimes } from 'node:fs/promises';
import path from 'node:path';
import type { SessionStore } from './store.js';

export interface FileSessionStoreOptions {
  /** fsync each snapshot and its directory before it counts as stored (survives a power loss, costs a disk flush per call). Default false. */
  fsync?: boolean;
}

/**
 * Snapshots as files in `dir` (one per session, named by a hash of its id): they survive a host
 * restart, so a pool started again on the same directory and key resumes its sessions. Writes go
 * to a temporary file that is then renamed over the old one: a host killed mid-write leaves the
 * previous snapshot readable. A snapshot unused for its TTL is treated as gone (and removed).
 */
export function fileSessionStore(dir: string, options: FileSessionStoreOptions = {}): SessionStore {
  mkdirSync(dir, { recursive: true });
  const fsync = options.fsync === true;
  const file = (id: string) => path.join(dir, `${createHash('sha256').update(id).digest('hex').slice(0, 40)}.snap`);
  let seq = 0;
  return {
    async get(sessionId) {
      const f = file(sessionId);
      try {
        const st = await stat(f);
        // The TTL travels as the file's modification time in the future: no index to keep.
        if (st.mtimeMs <= Date.now()) {
          await unlink(f).catch(() => {});
          return undefined;
        }
        return await readFile(f);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw e;
      }
    },
    async set(sessionId, snapshot, ttlMs) {
      const f = file(sessionId);
      const tmp = `${f}.${process.pid}.${++seq}.tmp`;
      const fh = await openFile(tmp, 'w');
      try {
        await fh.writeFile(snapshot);
        if (fsync) await fh.sync();
      } finally {
        await fh.close();
      }
      const expires = new Date(Date.now() + ttlMs);
      await utimes(tmp, expires, expires);
      await rename(tmp, f);
      if (fsync) {
        const d = await openFile(dir, 'r');
        try {
          await d.sync();
        } finally {
          await d.close();
        }
      }
    },
    async delete(sessionId) {
      await unlink(file(sessionId)).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e;
      });
    },
  };
}
