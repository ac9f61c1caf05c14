/** natsSessionStore and the session-to-host map, against a real nats-server with JetStream. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { natsSessionStore, type NatsSessionStore } from '../src/fleet/nats-session-store.js';
import type { SessionWrite, StoredSession } from '../src/sessions/store.js';
import { SessionMap } from '../src/fleet/session-map.js';
import { startNats, type NatsServer } from './helpers/nats.js';

let srv: NatsServer;
let nc: NatsConnection;

before(async () => {
  srv = await startNats();
  nc = await connect({ servers: srv.url });
});
after(async () => {
  await nc?.close();
  await srv?.dispose();
});

async function keys(bucket: string, filter = '>'): Promise<string[]> {
  const kv = await new Kvm(nc).open(bucket);
  const out: string[] = [];
  for await (const k of await kv.keys(filter)) out.push(k);
  return out;
}

/** A session write of `manifest` (text) with `records` (by ref) added, naming `refs` (default: those added). */
const write = (manifest: string, records: Record<string, Uint8Array> = {}, refs: string[] = Object.keys(records)): SessionWrite => ({ manifest: Buffer.from(manifest), records: new Map(Object.entries(records)), refs });
const text = (x: StoredSession | undefined): string | undefined => (x === undefined ? undefined : Buffer.from(x.manifest).toString());
const lastSeq = async (bucket: string): Promise<number> => (await (await new Kvm(nc).open(bucket)).status()).streamInfo.state.last_seq;

describe('natsSessionStore', () => {
  let store: NatsSessionStore;
  before(async () => {
    store = await natsSessionStore({ nc, fleet: 'store', sweepMs: 0 });
  });
  after(async () => store?.close());

  it('gets what was set, replaces it, deletes it, and says undefined for what is not there', async () => {
    assert.equal(await store.get('nobody'), undefined);
    await store.set('s1', write('first'), 60_000);
    assert.equal(text(await store.get('s1')), 'first');
    await store.set('s1', write('second'), 60_000);
    assert.equal(text(await store.get('s1')), 'second');
    await store.delete('s1');
    assert.equal(await store.get('s1'), undefined);
    await store.delete('s1'); // no error when there is none
    await store.set('ünï/cödé id with spaces', { manifest: Buffer.from([0, 1, 2, 255]), records: new Map(), refs: [] }, 60_000);
    assert.deepEqual([...(await store.get('ünï/cödé id with spaces'))!.manifest], [0, 1, 2, 255]);
  });

  it('a set that adds no record is one KV write (the head, compare-and-set against the revision it last saw)', async () => {
    await store.set('one-write', write('v1'), 60_000);
    const before = await lastSeq(store.bucket);
    for (let i = 2; i <= 6; i++) await store.set('one-write', write(`v${i}`), 60_000);
    assert.equal((await lastSeq(store.bucket)) - before, 5, 'five sets, five writes');
    assert.equal(text(await store.get('one-write')), 'v6');
  });

  it('keeps a record apart while a manifest names it, carries one over max_payload (1 MiB) in chunks byte for byte, and frees it when no longer named', async () => {
    assert.equal(store.chunkBytes, 1_048_576 - 65_536);
    const big = randomBytes(3 * 1024 * 1024 + 17);
    const small = randomBytes(100);
    await store.set('big', write('m1', { r1: big, r2: small }), 60_000);
    const chunks = async () => (await keys(store.bucket)).filter((k) => k.startsWith('c.')).sort();
    assert.equal((await chunks()).length, 5, '4 chunks of the big record, 1 of the small one');
    const before = await lastSeq(store.bucket);
    await store.set('big', write('m2', {}, ['r1', 'r2']), 60_000);
    assert.equal((await lastSeq(store.bucket)) - before, 1, 'records already held are not written again');
    const got = (await store.get('big'))!;
    assert.equal(Buffer.from(got.manifest).toString(), 'm2');
    assert.ok(Buffer.from(got.records.get('r1')!).equals(big));
    assert.ok(Buffer.from(got.records.get('r2')!).equals(small));
    await store.set('big', write('m3', { r3: Buffer.from('small now') }, ['r2', 'r3']), 60_000);
    assert.deepEqual([...(await store.get('big'))!.records.keys()].sort(), ['r2', 'r3']);
    assert.equal((await chunks()).length, 2, 'the big record, no longer named, is gone');
    await store.delete('big');
    assert.deepEqual(await chunks(), [], 'a delete takes every record');
  });

  it('refuses a set naming a record it neither carries nor holds (another writer replaced the session)', async () => {
    await store.set('named', write('m', { a: Buffer.from('a') }), 60_000);
    await assert.rejects(store.set('named', write('m2', {}, ['a', 'b']), 60_000), /record b .* is neither in this write nor in/);
    assert.equal(text(await store.get('named')), 'm', 'the session as it was');
    await store.delete('named');
  });

  it('hides an expired session (a 2.9 server has no per-key TTL) and the sweeper removes it with its records', async () => {
    await store.set('short', write('x'), 150);
    await store.set('long', write('y'), 60_000);
    assert.ok(await store.get('short'));
    await new Promise((r) => setTimeout(r, 250)); // the TTL itself is what is tested
    assert.equal(await store.get('short'), undefined);
    await store.set('short2', write('z', { big: Buffer.from('z'.repeat(3 * 1024 * 1024)) }), 150);
    await new Promise((r) => setTimeout(r, 250));
    const removed = await store.sweep();
    assert.ok(removed >= 1, `sweep removed ${removed}`);
    const left = await keys(store.bucket);
    assert.ok(!left.some((k) => k.startsWith('c.')), `records of the expired session are gone: ${left.join(', ')}`);
    assert.equal(text(await store.get('long')), 'y');
  });

  it('concurrent writers of one session leave one whole session (the last) and no stray records; a second connection reads it', async () => {
    const writes = Array.from({ length: 6 }, (_, i) => write(`writer ${i}`, { [`r${i}`]: randomBytes(2 * 1024 * 1024) }));
    const other = await natsSessionStore({ servers: srv.url, fleet: 'store', sweepMs: 0 });
    try {
      await Promise.all(writes.map((w, i) => (i % 2 === 0 ? store : other).set('contended', w, 60_000)));
      const got = (await other.get('contended'))!;
      const winner = writes.find((w) => text(got) === Buffer.from(w.manifest).toString())!;
      assert.ok(winner !== undefined, 'the manifest read is exactly one of those written');
      const [ref, bytes] = [...winner.records][0];
      assert.ok(Buffer.from(got.records.get(ref)!).equals(bytes), 'with its own record');
      const chunks = (await keys(store.bucket)).filter((k) => k.startsWith('c.'));
      assert.equal(chunks.length, 3, `only the winner's record remains: ${chunks.length}`);
      await store.delete('contended');
      assert.equal(await other.get('contended'), undefined);
    } finally {
      await other.close();
    }
  });

  it('reads a single-blob snapshot of an older pyfleet (format 1), inline or chunked; the next set replaces it and its chunks', async () => {
    const kv = await new Kvm(nc).open(store.bucket);
    const head = (kind: number, body: Uint8Array): Uint8Array => {
      const out = new Uint8Array(17 + body.length);
      out[0] = kind;
      new DataView(out.buffer).setFloat64(1, Date.now() + 60_000);
      out.set(body, 17);
      return out;
    };
    const inline = Buffer.from('PFS1 an old inline snapshot');
    await kv.put('s.b2xkLWlubGluZQ', head(3, inline)); // kvKeyOf('old-inline'), fenced inline
    assert.equal(text(await store.get('old-inline')), inline.toString());
    const blob = randomBytes(2 * 1024 * 1024);
    const n = Math.ceil(blob.length / store.chunkBytes);
    for (let i = 0; i < n; i++) await kv.put(`c.b2xkLWNodW5rZWQ.g1.${i}`, blob.subarray(i * store.chunkBytes, (i + 1) * store.chunkBytes));
    await kv.put('s.b2xkLWNodW5rZWQ', head(4, Buffer.from(JSON.stringify({ gen: 'g1', n, size: blob.length })))); // kvKeyOf('old-chunked')
    assert.ok(Buffer.from((await store.get('old-chunked'))!.manifest).equals(blob));
    await store.set('old-chunked', write('new'), 60_000);
    assert.equal(text(await store.get('old-chunked')), 'new');
    assert.deepEqual((await keys(store.bucket)).filter((k) => k.startsWith('c.b2xkLWNodW5rZWQ')), [], 'the old chunks went with it');
    await store.delete('old-inline');
    await store.delete('old-chunked');
  });
});

describe('natsSessionStore fencing (a host that was taken for dead must not overwrite the new holder)', () => {
  let store: NatsSessionStore;
  before(async () => {
    store = await natsSessionStore({ nc, fleet: 'fence', sweepMs: 0 });
  });
  after(async () => store?.close());

  for (const size of [100, 2 * 1024 * 1024]) {
    it(`refuses writes and reads under an older fence; a read under a newer one claims the session (a record of ${size} bytes)`, async () => {
      const sid = `fenced-${size}`;
      const v1 = write('v1', { a: randomBytes(size) });
      const manifestOf = (x: StoredSession | undefined) => Buffer.from(x!.manifest).toString();
      await store.set(sid, v1, 60_000, 5);
      const stale = await store.set(sid, write('stale', { b: randomBytes(size) }), 60_000, 3).then(
        () => assert.fail('a write under an older fence must be refused'),
        (e: Error & { code?: string }) => e,
      );
      assert.equal(stale.code, 'PYFLEET_SESSION_LOST');
      assert.match(stale.message, /moved to another host/);
      await assert.rejects(store.get(sid, 4), /moved to another host/);
      // The new holder reads under 9: it gets the session, and from now on 5 is stale too.
      const got = await store.get(sid, 9);
      assert.equal(manifestOf(got), 'v1');
      assert.ok(Buffer.from(got!.records.get('a')!).equals(v1.records.get('a')!));
      await assert.rejects(store.set(sid, write('stale again', { c: randomBytes(size) }), 60_000, 5), /moved to another host/);
      await store.delete(sid, 5); // not the stale holder's to drop
      assert.equal(manifestOf(await store.get(sid)), 'v1', 'unfenced reads still work');
      await store.set(sid, write('v2', { d: randomBytes(size) }), 60_000, 9);
      assert.equal(manifestOf(await store.get(sid, 9)), 'v2');
      await store.delete(sid, 9);
      assert.equal(await store.get(sid), undefined);
      assert.deepEqual((await keys(store.bucket)).filter((k) => k.startsWith('c.')), [], 'no record left behind, refused writes included');
    });
  }
});

describe('session map (JetStream KV)', () => {
  it('two replicas that place one session at once agree on its host; a move is compare-and-set', async () => {
    const a = await SessionMap.open(nc, 'pyfleet_map_sessions', 60_000);
    const nc2 = await connect({ servers: srv.url });
    const b = await SessionMap.open(nc2, 'pyfleet_map_sessions', 60_000);
    try {
      const [pa, pb] = await Promise.all([a.place('s', 'host-a'), b.place('s', 'host-b')]);
      assert.equal(pa.host, pb.host);
      assert.equal(pa.epoch, 0);
      assert.equal(pa.gen, pb.gen, 'one placement');
      // Both see the host dead and move the session: one move wins, both end up at the same place.
      const [ma, mb] = await Promise.all([a.move('s', pa, 'host-c'), b.move('s', pb, 'host-d')]);
      assert.equal(ma.host, mb.host);
      assert.equal(ma.epoch, 1);
      assert.equal(ma.gen, mb.gen);
      assert.notEqual(ma.gen, pa.gen, 'a move is a new placement');
      assert.ok(ma.revision > pa.revision, 'with a higher fence');
      // The watch brings the other replica's move into the cache.
      const deadline = Date.now() + 2_000;
      while (a.cached('s')?.revision !== b.cached('s')?.revision && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      assert.equal(a.cached('s')?.host, ma.host);
      await a.remove('s');
      assert.equal(await b.lookup('s'), null);
    } finally {
      a.close();
      b.close();
      await nc2.close();
    }
  });
});
