import { createHash } from 'node:crypto';
import { sealManifest, type Manifest } from './envelope.js';
import type { SessionWrite } from './store.js';

/**
 * Records this small travel inside the manifest while its inline records stay under
 * INLINE_TOTAL: a call that changes a small key writes one value to the store. A record placed
 * apart stays apart until it changes.
 */
const INLINE_RECORD = 16 * 1024;
const INLINE_TOTAL = 64 * 1024;
/** Smaller parts of a frame are copied out of it (a view keeps the frame's whole chunk alive). */
const COPY_BELOW = 64 * 1024;

export interface Row {
  size: number;
  /** The hex SHA-256 of a record kept apart; null: kept inline. */
  ref: string | null;
  /** An inline record's bytes; a record apart's until a store accepted it. */
  bytes: Uint8Array | undefined;
  /** Its entry in the manifest's header. */
  json: string;
}

export interface RecordsWrite extends SessionWrite {
  /** The records apart it carries (marked stored once a store accepted it). */
  readonly sent: readonly Row[];
}

const own = (b: Uint8Array): Uint8Array => (b.byteLength < COPY_BELOW ? Uint8Array.prototype.slice.call(b) : b);
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);

/** What the pool knows of one session's records: the latest manifest it made of them. */
export class SessionRecords {
  private rows = new Map<string, Row>();
  private inlineBytes = 0;

  /** Applies one snapshot (a full one replaces every record); false when nothing changed. */
  apply(names: readonly string[], datas: readonly Uint8Array[], deleted: readonly string[], full: boolean): boolean {
    if (full) this.clear();
    let changed = full;
    for (const name of deleted) {
      const r = this.rows.get(name);
      if (r === undefined) continue;
      if (r.ref === null) this.inlineBytes -= r.size;
      this.rows.delete(name);
      changed = true;
    }
    for (let i = 0; i < names.length; i++) changed = this.put(names[i], datas[i]) || changed;
    return changed;
  }

  private put(name: string, data: Uint8Array): boolean {
    const old = this.rows.get(name);
    const size = data.byteLength;
    let ref: string | null = null;
    if (old !== undefined && old.size === size) {
      if (old.ref === null ? same(old.bytes!, data) : (ref = sha256(data)) === old.ref) return false;
    }
    const room = INLINE_TOTAL - this.inlineBytes + (old?.ref === null ? old.size : 0);
    if (old?.ref === null) this.inlineBytes -= old.size;
    const inline = size <= INLINE_RECORD && size <= room;
    if (inline) {
      ref = null;
      this.inlineBytes += size;
    } else ref ??= sha256(data);
    const key = JSON.stringify(name);
    this.rows.set(name, { size, ref, bytes: own(data), json: ref === null ? `[${key},${size}]` : `[${key},${size},"${ref}"]` });
    return true;
  }

  get empty(): boolean {
    return this.rows.size === 0;
  }

  /** Forgets every record (the session's state was dropped, or cannot be kept). */
  clear(): void {
    this.rows = new Map();
    this.inlineBytes = 0;
  }

  /** The records of a restored manifest: the pool's view is the store's again. */
  load(m: Manifest): void {
    this.clear();
    let at = 0;
    for (const k of m.keys) {
      const key = JSON.stringify(k.name);
      if (k.ref === null) {
        this.rows.set(k.name, { size: k.size, ref: null, bytes: own(m.inline.subarray(at, at + k.size)), json: `[${key},${k.size}]` });
        at += k.size;
        this.inlineBytes += k.size;
      } else this.rows.set(k.name, { size: k.size, ref: k.ref, bytes: undefined, json: `[${key},${k.size},"${k.ref}"]` });
    }
  }

  /** The write of version `version`: the manifest signed with `key`, and the records apart a store may not hold yet. */
  write(key: Buffer, sessionId: string, version: number, marks: Readonly<Record<string, string>> = {}): RecordsWrite {
    const keys: string[] = [];
    const inline: Uint8Array[] = [];
    const records = new Map<string, Uint8Array>();
    const refs: string[] = [];
    const sent: Row[] = [];
    for (const r of this.rows.values()) {
      keys.push(r.json);
      if (r.ref === null) inline.push(r.bytes!);
      else {
        refs.push(r.ref);
        if (r.bytes !== undefined) {
          records.set(r.ref, r.bytes);
          sent.push(r);
        }
      }
    }
    const header = `{"sid":${JSON.stringify(sessionId)},"ver":${version},"marks":${JSON.stringify(marks)},"keys":[${keys.join(',')}]}`;
    return { manifest: sealManifest(key, header, inline, this.inlineBytes), records, refs, sent };
  }

  /** A store accepted `w`: its records apart need not be written again. */
  stored(w: RecordsWrite): void {
    for (const r of w.sent) r.bytes = undefined;
  }
}
