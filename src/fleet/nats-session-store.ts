import type { NatsConnection } from '@nats-io/transport-node';
import type { KV, KvEntry } from '@nats-io/kv';
import { PoolError } from '../errors/pool-error.js';
import type { SessionStore, SessionWrite, StoredSession } from '../sessions/store.js';
import { connectNats, type NatsAuthOptions } from './connection.js';
import { openBucket } from './session-map.js';
import { fleetSubjects, kvKeyOf } from './subjects.js';

export interface NatsSessionStoreOptions extends Partial<NatsAuthOptions> {
  /** A connection to share (a host passes its own); otherwise `servers` (and credentials) are used and the store owns its connection. */
  nc?: NatsConnection;
  /** The fleet whose snapshot bucket to use (pyfleet_<fleet>_snapshots), or `bucket`. */
  fleet?: string;
  bucket?: string;
  /** Largest value written as one KV entry (default: the server's max_payload less 64 KiB); larger records are chunked. */
  chunkBytes?: number;
  /** How often expired sessions and stray chunks are removed (default 60 000 ms; 0: never, get() still hides expired ones). */
  sweepMs?: number;
}

/**
 * Fencing (a fleet host passes `fence`: the session map's revision of the placement it holds the
 * session under; later placements have higher ones). A session's head entry carries the fence it
 * was written or last read under: a write or delete under a lower fence than the stored one is
 * refused (a host that was taken for dead and came back must not overwrite the state of the host
 * that took the session over), and a read under a higher fence raises the stored one first
 * (claims it), so a stale host's write that comes after the new host's restore is refused too.
 */
export interface NatsSessionStore extends SessionStore {
  get(sessionId: string, fence?: number): Promise<StoredSession | undefined>;
  set(sessionId: string, write: SessionWrite, ttlMs: number, fence?: number): Promise<void>;
  delete(sessionId: string, fence?: number): Promise<void>;
  readonly bucket: string;
  readonly chunkBytes: number;
  /** Removes expired sessions and chunks no session names; resolves with how many keys it removed. */
  sweep(): Promise<number>;
  close(): Promise<void>;
}

/** Head kinds: 1 and 2, 3 and 4 fenced (a single-blob snapshot of an older pyfleet, inline or chunked: still read); 5 a manifest. */
const INLINE = 1;
const CHUNKED = 2;
const FENCED = 2;
const MANIFEST = 5;
const HEAD_V1 = 9; // kind (1 byte) + expiresAt (float64 BE)
const HEAD = 17; // + fence (float64 BE)
/** A chunk no session names is a writer's leftover once it is this old (a writer in progress is younger). */
const STRAY_CHUNK_AGE_MS = 120_000;

/** Chunked objects a head names, by generation (a record's ref, or an old snapshot's generation): [bytes, chunks]. */
type Objects = Map<string, [number, number]>;

interface Head {
  kind: number;
  expiresAt: number;
  fence: number;
  revision: number;
  /** The entry's bytes after the head. */
  body: Uint8Array;
  objects: Objects;
  /** A manifest, or an old inline snapshot; undefined for an old chunked one (its only object). */
  value?: Uint8Array;
}

/** What this store last wrote or read of a session: a write starts from it without reading first. */
type Known = Pick<Head, 'revision' | 'fence' | 'objects' | 'expiresAt'>;

function head(e: KvEntry | null): Head | null {
  if (e === null || e.operation !== 'PUT' || e.value.length < HEAD_V1) return null;
  const v = e.value;
  const dv = new DataView(v.buffer, v.byteOffset, v.byteLength);
  const fenced = v[0] > FENCED;
  if (fenced && v.length < HEAD) return null;
  const kind = v[0] === MANIFEST ? MANIFEST : fenced ? v[0] - FENCED : v[0];
  const at = fenced ? HEAD : HEAD_V1;
  const h: Head = { kind, expiresAt: dv.getFloat64(1), fence: fenced ? dv.getFloat64(9) : 0, revision: e.revision, body: v.subarray(at), objects: new Map() };
  try {
    if (kind === INLINE) h.value = h.body;
    else if (kind === CHUNKED) {
      const m = JSON.parse(Buffer.from(h.body).toString('utf8')) as { gen: string; n: number; size: number };
      h.objects.set(m.gen, [m.size, m.n]);
    } else if (kind === MANIFEST) {
      const n = dv.getUint32(at);
      for (const [ref, size, chunks] of JSON.parse(Buffer.from(v.subarray(at + 4, at + 4 + n)).toString('utf8')) as Array<[string, number, number]>) h.objects.set(ref, [size, chunks]);
      h.value = v.subarray(at + 4 + n);
    } else return null;
  } catch {
    return null;
  }
  return h;
}

function encodeHead(expiresAt: number, fence: number, body: Uint8Array, kind = MANIFEST): Uint8Array {
  const out = new Uint8Array(HEAD + body.length);
  out[0] = kind === MANIFEST ? MANIFEST : kind + FENCED;
  const dv = new DataView(out.buffer);
  dv.setFloat64(1, expiresAt);
  dv.setFloat64(9, fence);
  out.set(body, HEAD);
  return out;
}

function manifestBody(objects: Objects, manifest: Uint8Array): Uint8Array {
  const index = Buffer.from(JSON.stringify([...objects].map(([ref, [size, n]]) => [ref, size, n])));
  const out = Buffer.allocUnsafe(4 + index.length + manifest.length);
  out.writeUInt32BE(index.length, 0);
  index.copy(out, 4);
  out.set(manifest, 4 + index.length);
  return out;
}

/** A fenced write or read of a session that a later placement (another host) holds now. */
function fencedOut(sessionId: string, bucket: string, mine: number, stored: number): PoolError {
  return new PoolError({
    code: 'PYFLEET_SESSION_LOST',
    sessionId,
    message: `Session ${JSON.stringify(sessionId)} has moved to another host (its snapshot in ${bucket} is fenced at ${stored}, this host holds it at ${mine}); this host's copy of its state is stale and was not stored.`,
    details: { fence: mine, storedFence: stored },
  });
}

const conflict = (e: unknown): boolean => /wrong last sequence|exists/i.test((e as Error).message);
const chunkPrefix = (key: string): string => `c.${key.slice(2)}`;
const chunkKey = (key: string, gen: string, i: number): string => `${chunkPrefix(key)}.${gen}.${i}`;

/**
 * The SessionStore of durable sessions on JetStream KV, shared by every host of a fleet. A
 * session is one head entry (`s.<id>`: its expiry, fence, the records apart it names and the
 * manifest, which carries the small records itself) and, for each record apart, chunks of at
 * most `chunkBytes` under its ref. A write puts its new records first, then the head by a
 * compare-and-set against the revision it last saw (one KV write for a call that changed small
 * keys), then removes the records no longer named: a reader sees the old session or the new one,
 * never a mix. Writes, reads and deletes may be fenced (see NatsSessionStore). Per-key TTL needs
 * nats-server 2.11; on 2.9 each head carries its expiry: get() hides an expired session and a
 * sweeper removes it.
 */
export async function natsSessionStore(o: NatsSessionStoreOptions): Promise<NatsSessionStore> {
  const bucket = o.bucket ?? (o.fleet !== undefined ? fleetSubjects(o.fleet).snapshotBucket : undefined);
  if (bucket === undefined) throw new PoolError({ code: 'PYFLEET_INVALID_OPTIONS', message: 'Invalid natsSessionStore options: give fleet or bucket.' });
  let nc = o.nc;
  let owned = false;
  if (nc === undefined) {
    if (o.servers === undefined) throw new PoolError({ code: 'PYFLEET_INVALID_OPTIONS', message: 'Invalid natsSessionStore options: give nc (a connection) or servers.' });
    nc = await connectNats({ ...o, servers: o.servers, name: `pyfleet-session-store:${bucket}` });
    owned = true;
  }
  try {
    const kv = await openBucket(nc, bucket, { history: 1 });
    const max = nc.info?.max_payload ?? 1_048_576;
    const chunkBytes = o.chunkBytes ?? Math.max(1024, max - 64 * 1024);
    return new KvSessionStore(kv, bucket, chunkBytes, nc, owned, o.sweepMs ?? 60_000);
  } catch (e) {
    if (owned) await nc.close().catch(() => {});
    throw new PoolError({ code: 'PYFLEET_NATS_UNAVAILABLE', cause: e, message: `The session store bucket ${bucket} cannot be opened: ${(e as Error).message}. It needs JetStream: start nats-server with -js.` });
  }
}

class KvSessionStore implements NatsSessionStore {
  private timer: NodeJS.Timeout | null = null;
  private readonly known = new Map<string, Known>();

  constructor(
    private readonly kv: KV,
    readonly bucket: string,
    readonly chunkBytes: number,
    private readonly nc: NatsConnection,
    private readonly owned: boolean,
    sweepMs: number,
  ) {
    if (sweepMs > 0) {
      this.timer = setInterval(() => void this.sweep().catch(() => {}), sweepMs);
      this.timer.unref();
    }
  }

  async get(sessionId: string, fence?: number): Promise<StoredSession | undefined> {
    const key = kvKeyOf(sessionId);
    for (let tries = 0; tries < 5; tries++) {
      const h = head(await this.kv.get(key));
      if (h === null) return undefined;
      if (h.expiresAt <= Date.now()) {
        void this.removeIf(key, h).catch(() => {});
        return undefined;
      }
      if (fence !== undefined && h.fence !== fence) {
        if (h.fence > fence) throw fencedOut(sessionId, this.bucket, fence, h.fence);
        // The claim: from now on a host holding the session under an older placement cannot write it.
        try {
          h.revision = await this.kv.update(key, encodeHead(h.expiresAt, fence, h.body, h.kind), h.revision);
          h.fence = fence;
        } catch (e) {
          if (conflict(e)) continue;
          throw e;
        }
      }
      const objects = await Promise.all([...h.objects].map(([gen, [size, n]]) => this.readChunks(key, gen, size, n)));
      // A writer replaced these objects between our reads: read the new head.
      if (objects.some((b) => b === null)) continue;
      this.known.set(key, h);
      if (h.kind !== MANIFEST) return { manifest: Uint8Array.from(h.value ?? objects[0]!), records: new Map() };
      return { manifest: Uint8Array.from(h.value!), records: new Map([...h.objects.keys()].map((ref, i) => [ref, objects[i]!])) };
    }
    throw new PoolError({ code: 'PYFLEET_SESSION_LOST', sessionId, message: `The snapshot of session ${JSON.stringify(sessionId)} in bucket ${this.bucket} kept changing or is incomplete; it could not be read.` });
  }

  async set(sessionId: string, write: SessionWrite, ttlMs: number, fence?: number): Promise<void> {
    if (!(ttlMs > 0)) throw new PoolError({ code: 'PYFLEET_INVALID_ARGS', message: `natsSessionStore.set: ttlMs must be > 0, got ${String(ttlMs)}.` });
    const key = kvKeyOf(sessionId);
    const expiresAt = Date.now() + ttlMs;
    // Records first: the head that names them is written only once they all are.
    const mine: Objects = new Map();
    for (const [ref, bytes] of write.records) {
      const n = Math.max(1, Math.ceil(bytes.length / this.chunkBytes));
      for (let i = 0; i < n; i += 4) {
        await Promise.all(Array.from({ length: Math.min(4, n - i) }, (_, k) => this.kv.put(chunkKey(key, ref, i + k), bytes.subarray((i + k) * this.chunkBytes, (i + k + 1) * this.chunkBytes))));
      }
      mine.set(ref, [bytes.length, n]);
    }
    const dropMine = (keep: Objects): Promise<void> => this.dropObjects(key, mine, keep);
    let prev = this.known.get(key);
    for (;;) {
      if (prev === undefined) {
        const h = head(await this.kv.get(key));
        prev = h ?? { revision: 0, fence: 0, objects: new Map(), expiresAt: 0 };
      }
      if (fence !== undefined && prev.fence > fence) {
        await dropMine(prev.objects);
        throw fencedOut(sessionId, this.bucket, fence, prev.fence);
      }
      const objects: Objects = new Map();
      for (const ref of write.refs) {
        const o = mine.get(ref) ?? prev.objects.get(ref);
        if (o === undefined) {
          await dropMine(prev.objects);
          throw new Error(`record ${ref} of session ${JSON.stringify(sessionId)} is neither in this write nor in ${this.bucket} (another writer replaced the session)`);
        }
        objects.set(ref, o);
      }
      const f = fence ?? prev.fence;
      let revision: number;
      try {
        const value = encodeHead(expiresAt, f, manifestBody(objects, write.manifest));
        revision = prev.revision === 0 ? await this.kv.create(key, value) : await this.kv.update(key, value, prev.revision);
      } catch (e) {
        this.known.delete(key);
        if (conflict(e)) {
          prev = undefined; // another writer won this round: go again over its value
          continue;
        }
        await dropMine(prev.objects);
        throw e;
      }
      this.known.set(key, { revision, fence: f, objects, expiresAt });
      await this.dropObjects(key, prev.objects, objects);
      return;
    }
  }

  async delete(sessionId: string, fence?: number): Promise<void> {
    const key = kvKeyOf(sessionId);
    this.known.delete(key);
    for (;;) {
      const cur = await this.kv.get(key);
      if (cur === null || cur.operation !== 'PUT') return;
      const h = head(cur);
      // Another host holds the session under a later placement: its snapshot is not ours to drop.
      if (fence !== undefined && h !== null && h.fence > fence) return;
      try {
        await this.kv.delete(key, { previousSeq: cur.revision });
      } catch (e) {
        if (/wrong last sequence/i.test((e as Error).message)) continue;
        throw e;
      }
      if (h !== null) await this.dropObjects(key, h.objects, new Map());
      return;
    }
  }

  async sweep(): Promise<number> {
    let removed = 0;
    const now = Date.now();
    const live = new Map<string, Objects>(); // chunk prefix -> the objects its head names
    const keys: string[] = [];
    for await (const k of await this.kv.keys()) keys.push(k);
    for (const k of keys) {
      if (!k.startsWith('s.')) continue;
      const h = head(await this.kv.get(k));
      if (h === null) continue;
      if (h.expiresAt <= now) {
        if (await this.removeIf(k, h)) removed++;
      } else live.set(chunkPrefix(k), h.objects);
    }
    for (const [k, known] of this.known) if (known.expiresAt <= now) this.known.delete(k);
    for (const k of keys) {
      if (!k.startsWith('c.')) continue;
      const parts = k.split('.');
      if (live.get(`${parts[0]}.${parts[1]}`)?.has(parts[2])) continue;
      const e = await this.kv.get(k);
      if (e !== null && e.operation === 'PUT' && now - e.created.getTime() > STRAY_CHUNK_AGE_MS) {
        await this.kv.delete(k).catch(() => {});
        removed++;
      }
    }
    return removed;
  }

  /** An object's bytes, or null when a chunk is missing (a writer replaced it meanwhile). */
  private async readChunks(key: string, gen: string, size: number, n: number): Promise<Uint8Array | null> {
    const parts = await Promise.all(Array.from({ length: n }, (_, i) => this.kv.get(chunkKey(key, gen, i))));
    if (!parts.every((p) => p !== null && p.operation === 'PUT')) return null;
    const out = new Uint8Array(size);
    let at = 0;
    for (const p of parts) {
      if (at + p!.value.length > size) return null;
      out.set(p!.value, at);
      at += p!.value.length;
    }
    return at === size ? out : null;
  }

  /** Deletes an expired session unless it was rewritten meanwhile. */
  private async removeIf(key: string, h: Head): Promise<boolean> {
    try {
      await this.kv.delete(key, { previousSeq: h.revision });
    } catch {
      return false;
    }
    this.known.delete(key);
    await this.dropObjects(key, h.objects, new Map());
    return true;
  }

  /** Purges the chunks of the objects of `from` that `keep` does not name. */
  private async dropObjects(key: string, from: Objects, keep: Objects): Promise<void> {
    const doomed: string[] = [];
    for (const [gen, [, n]] of from) if (!keep.has(gen)) for (let i = 0; i < n; i++) doomed.push(chunkKey(key, gen, i));
    await Promise.all(doomed.map((k) => this.kv.purge(k).catch(() => {})));
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.owned && !this.nc.isClosed()) await this.nc.drain().catch(() => this.nc.close());
  }
}
