import { randomBytes } from 'node:crypto';
import type { NatsConnection } from '@nats-io/transport-node';
import type { KV } from '@nats-io/kv';
import { natsKv } from './nats.js';
import { kvKeyOf } from './subjects.js';

/** Where a session lives: its host, and how many times it moved (a host died or left). */
export interface SessionPlace {
  host: string;
  epoch: number;
  /**
   * This placement's id, new on every place and move (a touch keeps it): a host that sees another
   * one for a session it holds knows the session was elsewhere meanwhile.
   */
  gen: string;
  /** The KV revision of this entry: a move is a compare-and-set against it; hosts fence snapshot writes with it. */
  revision: number;
}

const newGen = (): string => randomBytes(6).toString('base64url');

/** Opens (or creates) a KV bucket; the same config twice is not an error. */
export async function openBucket(nc: NatsConnection, bucket: string, opts: { history?: number; ttlMs?: number; maxValueBytes?: number } = {}): Promise<KV> {
  const kvm = new (natsKv().Kvm)(nc);
  // create() is idempotent for the same config; a bucket made with another config (another
  // version, or by hand) is used as it is.
  try {
    return await kvm.create(bucket, {
      history: opts.history ?? 1,
      ...(opts.ttlMs !== undefined && opts.ttlMs > 0 ? { ttl: opts.ttlMs } : {}),
      ...(opts.maxValueBytes !== undefined ? { maxValueSize: opts.maxValueBytes } : {}),
    });
  } catch (e) {
    if (!/already in use|exists/i.test((e as Error).message)) throw e;
    return kvm.open(bucket);
  }
}

const enc = new TextEncoder();
const dec = new TextDecoder();

function parse(value: Uint8Array, revision: number): SessionPlace | null {
  try {
    const j = JSON.parse(dec.decode(value)) as { host?: unknown; epoch?: unknown; gen?: unknown };
    if (typeof j.host !== 'string') return null;
    return { host: j.host, epoch: typeof j.epoch === 'number' ? j.epoch : 0, gen: typeof j.gen === 'string' ? j.gen : '', revision };
  } catch {
    return null;
  }
}

/**
 * The session-to-host map, in JetStream KV so that every client replica agrees: a session is
 * placed with create-if-absent and moved with compare-and-set on the entry's revision, so two
 * replicas that race to place or move one session end up sending it to the same host. Each
 * client keeps a cache fed by a watch on the bucket, so a call in a known session costs no
 * KV round trip, and a move made by another replica reaches this one in about a millisecond.
 */
export class SessionMap {
  private readonly cache = new Map<string, SessionPlace>();
  private watchStop: (() => void) | null = null;

  private constructor(
    readonly kv: KV,
    private readonly onChange: ((sid: string, place: SessionPlace | null) => void) | undefined,
  ) {}

  /** `onChange` hears every place, move and removal made after the watch started (a host uses it to learn that a session left it). */
  static async open(nc: NatsConnection, bucket: string, ttlMs: number, onChange?: (sid: string, place: SessionPlace | null) => void): Promise<SessionMap> {
    const kv = await openBucket(nc, bucket, { ttlMs });
    const m = new SessionMap(kv, onChange);
    await m.startWatch();
    return m;
  }

  private async startWatch(): Promise<void> {
    const w = await this.kv.watch({ key: 's.>', include: natsKv().KvWatchInclude.UpdatesOnly });
    this.watchStop = () => w.stop();
    void (async () => {
      for await (const e of w) {
        const sid = Buffer.from(e.key.slice(2), 'base64url').toString('utf8');
        if (e.operation !== 'PUT') {
          this.cache.delete(sid);
          this.onChange?.(sid, null);
          continue;
        }
        const p = parse(e.value, e.revision);
        const old = this.cache.get(sid);
        if (p !== null && (old === undefined || old.revision < p.revision)) this.cache.set(sid, p);
        if (p !== null) this.onChange?.(sid, p);
      }
    })().catch(() => {});
  }

  get size(): number {
    return this.cache.size;
  }

  cached(sid: string): SessionPlace | undefined {
    return this.cache.get(sid);
  }

  /** The place from KV (the cache may lag or miss it). */
  async lookup(sid: string): Promise<SessionPlace | null> {
    const e = await this.kv.get(kvKeyOf(sid));
    if (e === null || e.operation !== 'PUT' || e.length === 0) {
      this.cache.delete(sid);
      return null;
    }
    const p = parse(e.value, e.revision);
    if (p === null) return null;
    this.cache.set(sid, p);
    return p;
  }

  /** Places a new session on `host`; if another replica placed it first, returns that place. */
  async place(sid: string, host: string): Promise<SessionPlace> {
    const key = kvKeyOf(sid);
    try {
      const gen = newGen();
      const revision = await this.kv.create(key, enc.encode(JSON.stringify({ host, epoch: 0, gen })));
      const p = { host, epoch: 0, gen, revision };
      this.cache.set(sid, p);
      return p;
    } catch (e) {
      const p = await this.lookup(sid);
      if (p !== null) return p;
      throw e;
    }
  }

  /** Moves a session from the place `from` to `host`; if someone moved it first, returns where it went. */
  async move(sid: string, from: SessionPlace, host: string): Promise<SessionPlace> {
    const key = kvKeyOf(sid);
    try {
      const next = { host, epoch: from.epoch + 1, gen: newGen() };
      const revision = await this.kv.update(key, enc.encode(JSON.stringify(next)), from.revision);
      const p = { ...next, revision };
      this.cache.set(sid, p);
      return p;
    } catch (e) {
      const p = await this.lookup(sid);
      if (p !== null) return p;
      // Deleted meanwhile (closed): place it afresh.
      return this.place(sid, host).catch(() => {
        throw e;
      });
    }
  }

  /** Re-writes an entry unchanged so the bucket's TTL does not drop a session still in use (compare-and-set: a move wins). */
  async touch(sid: string, place: SessionPlace): Promise<void> {
    try {
      const revision = await this.kv.update(kvKeyOf(sid), enc.encode(JSON.stringify({ host: place.host, epoch: place.epoch, gen: place.gen })), place.revision);
      place.revision = revision;
    } catch {
      // moved or closed meanwhile
    }
  }

  async remove(sid: string, onlyIf?: SessionPlace): Promise<void> {
    this.cache.delete(sid);
    try {
      await this.kv.delete(kvKeyOf(sid), onlyIf !== undefined ? { previousSeq: onlyIf.revision } : undefined);
    } catch {
      // moved meanwhile, or gone
    }
  }

  close(): void {
    this.watchStop?.();
    this.watchStop = null;
  }
}
