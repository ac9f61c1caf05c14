import { randomBytes } from 'node:crypto';
import type { NatsConnection } from '@nats-io/transport-node';
import type { KV, KvEntry } from '@nats-io/kv';
import { PoolError } from '../errors/pool-error.js';
import type { SessionStore } from '../sessions/store.js';
import { connectNats, type NatsAuthOptions } from './connection.js';
import { openBucket } from './session-map.js';
import { fleetSubjects, kvKeyOf } from './subjects.js';

export interface NatsSessionStoreOptions extends Partial<NatsAuthOptions> {
  /** A connection to share (a host passes its own); otherwise `servers` (and credentials) are used and the store owns its connection. */
  nc?: NatsConnection;
  /** The fleet whose snapshot bucket to use (pyfleet_<fleet>_snapshots), or `bucket`. */
  fleet?: string;
  bucket?: string;
  /** Largest value written as one KV entry (default: the server's max_payload less 64 KiB); larger snapshots are chunked. */
  chunkBytes?: number;
  /** How often expired snapshots and stray chunks are removed (default 60 000 ms; 0: never, get() still hides expired ones). */
  sweepMs?: number;
}

/**
 * Fencing (a fleet host passes `fence`: the session map's revision of the placement it holds the
 * session under; later placements have higher ones). A snapshot carries the fence it was written
 * or last read under: a write or delete under a lower fence than the stored one is refused (a host
 * that was taken for dead and came back must not overwrite the state of the host that took the
 * session over), and a read under a higher fence raises the stored one first (claims it), so a
 * stale host's write that comes after the new host's restore is refused too.
 */
export interface NatsSessionStore extends SessionStore {
  get(sessionId: string, fence?: number): Promise<Uint8Array | undefined>;
  set(sessionId: string, snapshot: Uint8Array, ttlMs: number, fence?: number): Promise<void>;
  delete(sessionId: string, fence?: number): Promise<void>;
  readonly bucket: string;
  readonly chunkBytes: number;
  /** Removes expired snapshots and chunks no snapshot refers to; resolves with how many keys it removed. */
  sweep(): Promise<number>;
  close(): Promise<void>;
}

/** Entry kinds: 1 and 2 (no fence; still read), 3 and 4 (with a fence). */
const INLINE = 1;
const CHUNKED = 2;
const FENCED = 2;
const HEAD_V1 = 9; // kind (1 byte) + expiresAt (float64 BE)
const HEAD = 17; // + fence (float64 BE)
/** A chunk no manifest refers to is a writer's leftover once it is this old (a writer in progress is younger). */
const STRAY_CHUNK_AGE_MS = 120_000;

interface Manifest {
  gen: string;
  n: number;
  size: number;
}

interface Head {
  kind: number;
  expiresAt: number;
  fence: number;
  revision: number;
  /** The entry's bytes after the head (the snapshot, or the manifest's JSON). */
  body: Uint8Array;
  inline?: Uint8Array;
  manifest?: Manifest;
}

function head(e: KvEntry | null): Head | null {
  if (e === null || e.operation !== 'PUT' || e.value.length < HEAD_V1) return null;
  const v = e.value;
  const dv = new DataView(v.buffer, v.byteOffset, v.byteLength);
  const fenced = v[0] > FENCED;
  if (fenced && v.length < HEAD) return null;
  const kind = fenced ? v[0] - FENCED : v[0];
  const expiresAt = dv.getFloat64(1);
  const fence = fenced ? dv.getFloat64(9) : 0;
  const body = v.subarray(fenced ? HEAD : HEAD_V1);
  if (kind === INLINE) return { kind, expiresAt, fence, revision: e.revision, body, inline: body };
  if (kind === CHUNKED) {
    try {
      const manifest = JSON.parse(Buffer.from(body).toString('utf8')) as Manifest;
      return { kind, expiresAt, fence, revision: e.revision, body, manifest };
    } catch {
      return null;
    }
  }
  return null;
}

function encodeHead(kind: number, expiresAt: number, fence: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEAD + body.length);
  out[0] = kind + FENCED;
  const dv = new DataView(out.buffer);
  dv.setFloat64(1, expiresAt);
  dv.setFloat64(9, fence);
  out.set(body, HEAD);
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

const chunkPrefix = (key: string): string => `c.${key.slice(2)}`;
const chunkKey = (key: string, gen: string, i: number): string => `${chunkPrefix(key)}.${gen}.${i}`;

/**
 * The SessionStore of durable sessions on JetStream KV, shared by every host of a fleet.
 * A snapshot up to `chunkBytes` is one entry; a larger one is written as chunks under a fresh
 * generation first, then switched to by a compare-and-set of its manifest, then the old
 * generation's chunks are removed: a reader sees the old snapshot or the new one, never a mix,
 * and concurrent writers leave exactly one (the last) and no stray chunks. Writes, reads and
 * deletes may be fenced (see NatsSessionStore). Per-key TTL needs
 * nats-server 2.11; on 2.9 each entry carries its expiry: get() hides an expired snapshot and a
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

  async get(sessionId: string, fence?: number): Promise<Uint8Array | undefined> {
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
          await this.kv.update(key, encodeHead(h.kind, h.expiresAt, fence, h.body), h.revision);
        } catch (e) {
          if (/wrong last sequence/i.test((e as Error).message)) continue;
          throw e;
        }
      }
      if (h.kind === INLINE) return Uint8Array.from(h.inline!);
      const m = h.manifest!;
      const parts = await Promise.all(Array.from({ length: m.n }, (_, i) => this.kv.get(chunkKey(key, m.gen, i))));
      if (parts.every((p) => p !== null && p.operation === 'PUT')) {
        const out = new Uint8Array(m.size);
        let at = 0;
        for (const p of parts) {
          out.set(p!.value, at);
          at += p!.value.length;
        }
        if (at === m.size) return out;
      }
      // A writer replaced this generation between our reads: read the new manifest.
    }
    throw new PoolError({ code: 'PYFLEET_SESSION_LOST', sessionId, message: `The snapshot of session ${JSON.stringify(sessionId)} in bucket ${this.bucket} kept changing or is incomplete; it could not be read.` });
  }

  async set(sessionId: string, snapshot: Uint8Array, ttlMs: number, fence?: number): Promise<void> {
    if (!(ttlMs > 0)) throw new PoolError({ code: 'PYFLEET_INVALID_ARGS', message: `natsSessionStore.set: ttlMs must be > 0, got ${String(ttlMs)}.` });
    const key = kvKeyOf(sessionId);
    const expiresAt = Date.now() + ttlMs;
    let kind: number;
    let body: Uint8Array;
    let gen: string | null = null;
    if (snapshot.length + HEAD <= this.chunkBytes) {
      kind = INLINE;
      body = snapshot;
    } else {
      gen = randomBytes(6).toString('hex');
      const n = Math.ceil(snapshot.length / this.chunkBytes);
      // Chunks first: the manifest that points at them is written only once they all are.
      for (let i = 0; i < n; i += 4) {
        await Promise.all(Array.from({ length: Math.min(4, n - i) }, (_, k) => this.kv.put(chunkKey(key, gen!, i + k), snapshot.subarray((i + k) * this.chunkBytes, Math.min(snapshot.length, (i + k + 1) * this.chunkBytes)))));
      }
      kind = CHUNKED;
      body = Buffer.from(JSON.stringify({ gen, n, size: snapshot.length } satisfies Manifest));
    }
    for (;;) {
      const cur = await this.kv.get(key);
      const prev = head(cur);
      if (fence !== undefined && prev !== null && prev.fence > fence) {
        if (gen !== null) await this.deleteChunks(key, gen);
        throw fencedOut(sessionId, this.bucket, fence, prev.fence);
      }
      const value = encodeHead(kind, expiresAt, fence ?? prev?.fence ?? 0, body);
      try {
        if (cur === null || cur.operation !== 'PUT') await this.kv.create(key, value);
        else await this.kv.update(key, value, cur.revision);
      } catch (e) {
        if (/wrong last sequence|exists/i.test((e as Error).message)) continue; // another writer won this round: go again over its value
        if (gen !== null) await this.deleteChunks(key, gen);
        throw e;
      }
      if (prev?.manifest !== undefined && prev.manifest.gen !== gen) await this.deleteChunks(key, prev.manifest.gen);
      return;
    }
  }

  async delete(sessionId: string, fence?: number): Promise<void> {
    const key = kvKeyOf(sessionId);
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
      if (h?.manifest !== undefined) await this.deleteChunks(key, h.manifest.gen);
      return;
    }
  }

  async sweep(): Promise<number> {
    let removed = 0;
    const now = Date.now();
    const live = new Map<string, string>(); // chunk prefix -> generation in use
    const keys: string[] = [];
    for await (const k of await this.kv.keys()) keys.push(k);
    for (const k of keys) {
      if (!k.startsWith('s.')) continue;
      const h = head(await this.kv.get(k));
      if (h === null) continue;
      if (h.expiresAt <= now) {
        if (await this.removeIf(k, h)) removed++;
      } else if (h.manifest !== undefined) live.set(chunkPrefix(k), h.manifest.gen);
    }
    for (const k of keys) {
      if (!k.startsWith('c.')) continue;
      const parts = k.split('.');
      const prefix = `${parts[0]}.${parts[1]}`;
      if (live.get(prefix) === parts[2]) continue;
      const e = await this.kv.get(k);
      if (e !== null && e.operation === 'PUT' && now - e.created.getTime() > STRAY_CHUNK_AGE_MS) {
        await this.kv.delete(k).catch(() => {});
        removed++;
      }
    }
    return removed;
  }

  /** Deletes an expired entry unless it was rewritten meanwhile. */
  private async removeIf(key: string, h: Head): Promise<boolean> {
    try {
      await this.kv.delete(key, { previousSeq: h.revision });
    } catch {
      return false;
    }
    if (h.manifest !== undefined) await this.deleteChunks(key, h.manifest.gen);
    return true;
  }

  private async deleteChunks(key: string, gen: string): Promise<void> {
    const prefix = `${chunkPrefix(key)}.${gen}.`;
    const doomed: string[] = [];
    for await (const k of await this.kv.keys(`${prefix}>`)) doomed.push(k);
    await Promise.all(doomed.map((k) => this.kv.purge(k).catch(() => {})));
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.owned && !this.nc.isClosed()) await this.nc.drain().catch(() => this.nc.close());
  }
}
