import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';

/**
 * A session snapshot as stores keep it: the session id, its version and the pickled state,
 * signed with HMAC-SHA256 (docs/protocol.md, "Session snapshots"). The MAC covers the id, the
 * version and the bytes, so a snapshot copied to another session, an older one put back, or
 * bytes changed in the store are all refused before anything is unpickled.
 *
 *   "PFS1" | u32 id length | id (UTF-8) | u64 version | 32-byte MAC | pickled state
 */
const MAGIC = Buffer.from('PFS1');
const DOMAIN = Buffer.from('pyfleet-session-v1\0');
const MAC_BYTES = 32;

export interface Snapshot {
  sessionId: string;
  version: number;
  /** HMAC-SHA256 of (id, version, data) under the signing key. */
  mac: Buffer;
  data: Uint8Array;
}

/** A key imported once: importing the raw bytes on every MAC costs more than hashing a small snapshot. */
const imported = new WeakMap<Buffer, KeyObject>();
function keyObject(key: Buffer): KeyObject {
  let k = imported.get(key);
  if (k === undefined) imported.set(key, (k = createSecretKey(key)));
  return k;
}

/** The MAC of a snapshot's contents under `key` (the worker computes the same one). */
export function snapshotMac(key: Buffer, sessionId: string, version: number, data: Uint8Array): Buffer {
  const n = Buffer.byteLength(sessionId, 'utf8');
  const head = Buffer.allocUnsafe(DOMAIN.length + 12 + n);
  let o = DOMAIN.copy(head, 0);
  o = head.writeUInt32BE(n, o);
  o += head.write(sessionId, o, 'utf8');
  head.writeBigUInt64BE(BigInt(version), o);
  return createHmac('sha256', keyObject(key)).update(head).update(data).digest();
}

/** Signs `data` as version `version` of `sessionId` with the first key, into the bytes a store keeps. */
export function seal(key: Buffer, sessionId: string, version: number, data: Uint8Array): Uint8Array {
  const sid = Buffer.from(sessionId, 'utf8');
  const mac = snapshotMac(key, sessionId, version, data);
  const head = Buffer.allocUnsafe(MAGIC.length + 4 + sid.length + 8 + MAC_BYTES);
  let o = MAGIC.copy(head, 0);
  o = head.writeUInt32BE(sid.length, o);
  o += sid.copy(head, o);
  o = head.writeBigUInt64BE(BigInt(version), o);
  mac.copy(head, o);
  return Buffer.concat([head, data]);
}

/**
 * Reads what a store returned for `sessionId` and checks it: the format, the id inside it, the
 * MAC under any of `keys` (the first signs, all verify: key rotation), and a version not older
 * than `minVersion`. Returns the snapshot, or throws an Error saying why (nothing is unpickled
 * here: the bytes are only hashed).
 */
export function open(bytes: Uint8Array, sessionId: string, keys: readonly Buffer[], minVersion: number): Snapshot {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < MAGIC.length + 4 || !b.subarray(0, MAGIC.length).equals(MAGIC)) throw new Error('the stored snapshot is not a pyfleet snapshot');
  let o = MAGIC.length;
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
  let ok = false;
  // Every key is tried, so the time taken does not say which one matched.
  for (const key of keys) ok = timingSafeEqual(snapshotMac(key, sessionId, version, data), mac) || ok;
  if (!ok) throw new Error('the stored snapshot\'s signature does not match under any session key (another key signed it, or it was changed)');
  if (version < minVersion) throw new Error(`the stored snapshot is version ${version}, older than version ${minVersion} this pool stored`);
  return { sessionId, version, mac: Buffer.from(mac), data };
}
