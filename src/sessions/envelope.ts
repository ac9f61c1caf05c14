import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';

/**
 * The signed parts of a stored session (docs/protocol.md, "Session snapshots").
 *
 * Format 2, a manifest: "PFS2" | 32-byte MAC | u32 header length | header (JSON) | records kept
 * inline. The header is {"sid", "ver", "marks", "keys": [[name, size] (inline) or [name, size,
 * ref] (a record kept apart, ref its hex SHA-256)]}; the MAC is HMAC-SHA256 of the domain and
 * every byte after the MAC. So a manifest copied to another session, an older one put back, or
 * a record changed in the store is refused before anything is unpickled.
 *
 * Format 1, one blob (written before per-key snapshots; still restored):
 *   "PFS1" | u32 id length | id (UTF-8) | u64 version | 32-byte MAC | pickled session dict
 */
const MAGIC1 = Buffer.from('PFS1');
const MAGIC2 = Buffer.from('PFS2');
const DOMAIN1 = Buffer.from('pyfleet-session-v1\0');
const DOMAIN2 = Buffer.from('pyfleet-session-v2\0');
const MAC_BYTES = 32;
const HEAD2 = MAGIC2.length + MAC_BYTES + 4;

/** A format-1 snapshot, checked. */
export interface Snapshot {
  sessionId: string;
  version: number;
  /** HMAC-SHA256 of (id, version, data) under the signing key. */
  mac: Buffer;
  data: Uint8Array;
}

/** One key of a manifest: its record's name and size, and the ref of a record kept apart (null: inline). */
export interface ManifestKey {
  name: string;
  size: number;
  ref: string | null;
}

/** A format-2 manifest, checked. */
export interface Manifest {
  version: number;
  /** Why the session holds no state to restore (notDurable, ...); empty when it does. */
  marks: Record<string, string>;
  keys: ManifestKey[];
  /** The records kept inline, one after the other in the order of `keys`. */
  inline: Buffer;
}

/** A key imported once: importing the raw bytes on every MAC costs more than hashing a small snapshot. */
const imported = new WeakMap<Buffer, KeyObject>();
function keyObject(key: Buffer): KeyObject {
  let k = imported.get(key);
  if (k === undefined) imported.set(key, (k = createSecretKey(key)));
  return k;
}

const macOf = (key: Buffer, domain: Buffer, ...parts: Uint8Array[]): Buffer => {
  const h = createHmac('sha256', keyObject(key)).update(domain);
  for (const p of parts) h.update(p);
  return h.digest();
};

/** Every key is tried, so the time taken does not say which one matched. */
function signedByAny(keys: readonly Buffer[], mac: Uint8Array, sign: (key: Buffer) => Buffer): boolean {
  let ok = false;
  for (const key of keys) ok = timingSafeEqual(sign(key), mac) || ok;
  return ok;
}

export function isFormat1(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && Buffer.from(bytes.buffer, bytes.byteOffset, 4).equals(MAGIC1);
}

/**
 * Seals a manifest: `header` is its JSON text, `inline` the records kept in it (in the order
 * the header lists them, `inlineBytes` long in all), signed with `key`.
 */
export function sealManifest(key: Buffer, header: string, inline: readonly Uint8Array[], inlineBytes: number): Buffer {
  const hlen = Buffer.byteLength(header);
  const out = Buffer.allocUnsafe(HEAD2 + hlen + inlineBytes);
  MAGIC2.copy(out, 0);
  out.writeUInt32BE(hlen, MAGIC2.length + MAC_BYTES);
  let o = HEAD2 + out.write(header, HEAD2, 'utf8');
  for (const r of inline) {
    out.set(r, o);
    o += r.byteLength;
  }
  macOf(key, DOMAIN2, out.subarray(MAGIC2.length + MAC_BYTES)).copy(out, MAGIC2.length);
  return out;
}

/**
 * Checks a manifest a store returned for `sessionId`: the format, the MAC under any of `keys`
 * (the first signs, all verify: key rotation), the session id inside it, and a version not older
 * than `minVersion`. Throws an Error saying why (nothing is unpickled here).
 */
export function openManifest(bytes: Uint8Array, sessionId: string, keys: readonly Buffer[], minVersion: number): Manifest {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < HEAD2 || !b.subarray(0, 4).equals(MAGIC2)) throw new Error('the stored manifest is not a pyfleet manifest');
  const body = b.subarray(MAGIC2.length + MAC_BYTES);
  if (!signedByAny(keys, b.subarray(4, 4 + MAC_BYTES), (k) => macOf(k, DOMAIN2, body))) {
    throw new Error("the stored manifest's signature does not match under any session key (another key signed it, or it was changed)");
  }
  const hlen = body.readUInt32BE(0);
  let h: { sid?: unknown; ver?: unknown; marks?: Record<string, string>; keys?: Array<[string, number, string?]> };
  try {
    h = JSON.parse(body.toString('utf8', 4, 4 + hlen)) as typeof h;
  } catch {
    throw new Error('the stored manifest does not parse');
  }
  if (h.sid !== sessionId) throw new Error(`the stored manifest belongs to another session (${JSON.stringify(h.sid)})`);
  const version = Number(h.ver);
  if (version < minVersion) throw new Error(`the stored manifest is version ${version}, older than version ${minVersion} this pool stored`);
  const list = (h.keys ?? []).map(([name, size, ref]) => ({ name, size, ref: ref ?? null }));
  return { version, marks: h.marks ?? {}, keys: list, inline: body.subarray(4 + hlen) };
}

/** The MAC of a format-1 snapshot's contents under `key` (the worker computes the same one). */
export function snapshotMac(key: Buffer, sessionId: string, version: number, data: Uint8Array): Buffer {
  const n = Buffer.byteLength(sessionId, 'utf8');
  const head = Buffer.allocUnsafe(12 + n);
  let o = head.writeUInt32BE(n, 0);
  o += head.write(sessionId, o, 'utf8');
  head.writeBigUInt64BE(BigInt(version), o);
  return macOf(key, DOMAIN1, head, data);
}

/**
 * Reads a format-1 snapshot a store returned for `sessionId` and checks it as openManifest does.
 * Returns the snapshot, or throws an Error saying why (nothing is unpickled here).
 */
export function open(bytes: Uint8Array, sessionId: string, keys: readonly Buffer[], minVersion: number): Snapshot {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < MAGIC1.length + 4 || !b.subarray(0, MAGIC1.length).equals(MAGIC1)) throw new Error('the stored snapshot is not a pyfleet snapshot');
  let o = MAGIC1.length;
  const sidLen = b.readUInt32BE(o);
  o += 4;
  if (b.length < o + sidLen + 8 + MAC_BYTES) throw new Error('the stored snapshot is cut short');
  const storedId = b.toString('utf8', o, o + sidLen);
  o += sidLen;
  const version = Number(b.readBigUInt64BE(o));
  o += 8;
  const mac = b.subarray(o, o + MAC_BYTES);
  const data = b.subarray(o + MAC_BYTES);
  if (storedId !== sessionId) throw new Error(`the stored snapshot belongs to another session (${JSON.stringify(storedId)})`);
  if (!signedByAny(keys, mac, (k) => snapshotMac(k, sessionId, version, data))) {
    throw new Error("the stored snapshot's signature does not match under any session key (another key signed it, or it was changed)");
  }
  if (version < minVersion) throw new Error(`the stored snapshot is version ${version}, older than version ${minVersion} this pool stored`);
  return { sessionId, version, mac: Buffer.from(mac), data };
}
