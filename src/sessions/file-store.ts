import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { mkdir, open as openFile, readFile, readdir, rename, rm, stat, unlink, utimes } from 'node:fs/promises';
import path from 'node:path';
import type { SessionStore, StoredSession } from './store.js';

export interface FileSessionStoreOptions {
  /** fsync each record and manifest, and the directory, before a set counts as stored (survives a power loss, costs disk flushes per call). Default false. */
  fsync?: boolean;
}

const MANIFEST = 'manifest';
const isMissing = (e: unknown): boolean => (e as NodeJS.ErrnoException)?.code === 'ENOENT';

/**
 * Sessions as files in `dir`, one directory per session (named by a hash of its id): the
 * records under their refs and a file `manifest` (the refs it names, then the manifest itself).
 * They survive a host restart, so a pool started again on the same directory and key resumes its
 * sessions. Each file is written to a temporary one then renamed; the records first, the
 * manifest last, the records it no longer names removed after: a host killed at any point leaves
 * the previous manifest and all its records readable. A session unused for its TTL (the
 * manifest's modification time, set in the future) is treated as gone and removed whole.
 * A single-blob snapshot of an older pyfleet (`<hash>.snap` beside the directories) is still read.
 */
export function fileSessionStore(dir: string, options: FileSessionStoreOptions = {}): SessionStore {
  mkdirSync(dir, { recursive: true });
  const fsync = options.fsync === true;
  const hashOf = (id: string) => path.join(dir, createHash('sha256').update(id).digest('hex').slice(0, 40));
  /** The refs this store last wrote for a session (what to collect at its next set); none yet: look at the directory. */
  const written = new Map<string, Set<string>>();
  let seq = 0;

  const syncDir = async (d: string): Promise<void> => {
    const fh = await openFile(d, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  };
  const put = async (file: string, tmp: string, data: Uint8Array, expires?: Date): Promise<void> => {
    const fh = await openFile(tmp, 'w');
    try {
      await fh.writeFile(data);
      if (fsync) await fh.sync();
    } finally {
      await fh.close();
    }
    if (expires !== undefined) await utimes(tmp, expires, expires);
    await rename(tmp, file);
  };
  /** Reads `file` if it has not expired; an expired session is removed. */
  const live = async (file: string, remove: () => Promise<void>): Promise<Buffer | undefined> => {
    try {
      // The TTL travels as the file's modification time in the future: no index to keep.
      if ((await stat(file)).mtimeMs <= Date.now()) {
        await remove();
        return undefined;
      }
      return await readFile(file);
    } catch (e) {
      if (isMissing(e)) return undefined;
      throw e;
    }
  };

  const store: SessionStore = {
    async get(sessionId) {
      const d = hashOf(sessionId);
      const m = await live(path.join(d, MANIFEST), () => store.delete(sessionId));
      if (m === undefined) {
        const legacy = await live(`${d}.snap`, () => unlink(`${d}.snap`).catch(() => {}));
        return legacy === undefined ? undefined : { manifest: legacy, records: new Map() };
      }
      const n = m.readUInt32BE(0);
      const refs = JSON.parse(m.toString('utf8', 4, 4 + n)) as string[];
      const records = new Map<string, Uint8Array>();
      await Promise.all(
        refs.map((ref) =>
          readFile(path.join(d, ref)).then(
            (b) => void records.set(ref, b),
            (e) => {
              // A record missing is for the pool to judge (it names what it needs).
              if (!isMissing(e)) throw e;
            },
          ),
        ),
      );
      return { manifest: m.subarray(4 + n), records } satisfies StoredSession;
    },

    async set(sessionId, write, ttlMs) {
      const d = hashOf(sessionId);
      let before = written.get(sessionId);
      if (before === undefined) await mkdir(d, { recursive: true });
      await Promise.all([...write.records].map(([ref, bytes]) => put(path.join(d, ref), path.join(d, `${ref}.${process.pid}.${++seq}.tmp`), bytes)));
      if (fsync && write.records.size > 0) await syncDir(d);
      const refs = JSON.stringify(write.refs);
      const head = Buffer.allocUnsafe(4);
      head.writeUInt32BE(Buffer.byteLength(refs), 0);
      await put(path.join(d, MANIFEST), path.join(d, `${MANIFEST}.${process.pid}.tmp`), Buffer.concat([head, Buffer.from(refs), write.manifest]), new Date(Date.now() + ttlMs));
      if (fsync) await syncDir(d);
      const keep = new Set(write.refs);
      if (before === undefined) {
        // First set here: whatever an earlier process left (records no longer named, temporary files of a crash, a single-blob snapshot) goes.
        before = new Set((await readdir(d)).filter((f) => f !== MANIFEST));
        await unlink(`${d}.snap`).catch(() => {});
      }
      await Promise.all([...before].filter((f) => !keep.has(f)).map((f) => unlink(path.join(d, f)).catch(() => {})));
      written.set(sessionId, keep);
    },

    async delete(sessionId) {
      const d = hashOf(sessionId);
      written.delete(sessionId);
      await rm(d, { recursive: true, force: true });
      await unlink(`${d}.snap`).catch((e: unknown) => {
        if (!isMissing(e)) throw e;
      });
    },
  };
  return store;
}
