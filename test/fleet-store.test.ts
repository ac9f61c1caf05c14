/** natsSessionStore and the session-to-host map, against a real nats-server with JetStream. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { natsSessionStore, type NatsSessionStore } from '../src/fleet/nats-session-store.js';
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

describe('natsSessionStore', () => {
  let store: NatsSessionStore;
  before(async () => {
    store = await natsSessionStore({ nc, fleet: 'store', sweepMs: 0 });
  });
  after(async () => store?.close());

  it('gets what was set, replaces it, deletes it, and says undefined for what is not there', async () => {
    assert.equal(await store.get('nobody'), undefined);
    await store.set('s1', Buffer.from('first'), 60_000);
    assert.equal(Buffer.from((await store.get('s1'))!).toString(), 'first');
    await store.set('s1', Buffer.from('second'), 60_000);
    assert.equal(Buffer.from((await store.get('s1'))!).toString(), 'second');
    await store.delete('s1');
    assert.equal(await store.get('s1'), undefined);
    await store.delete('s1'); // no error when there is none
    await store.set('ünï/cödé id with spaces', Buffer.from([0, 1, 2, 255]), 60_000);
    assert.deepEqual([...(await store.get('ünï/cödé id with spaces'))!], [0, 1, 2, 255]);
  });

  it('hides an expired snapshot (a 2.9 server has no per-key TTL) and the sweeper removes it', async () => {
    await store.set('short', Buffer.from('x'), 150);
    await store.set('long', Buffer.from('y'), 60_000);
    assert.ok(await store.get('short'));
    await new Promise((r) => setTimeout(r, 250)); // the TTL itself is what is tested
    assert.equal(await store.get('short'), undefined);
    await store.set('short2', Buffer.from('z'.repeat(3 * 1024 * 1024)), 150);
    await new Promise((r) => setTimeout(r, 250));
    const removed = await store.sweep();
    assert.ok(removed >= 1, `sweep removed ${removed}`);
    const left = await keys(store.bucket);
    assert.ok(!left.some((k) => k.startsWith('c.')), `chunks of the expired snapshot are gone: ${left.join(', ')}`);
    assert.equal(Buffer.from((await store.get('long'))!).toString(), 'y');
  });

  it('carries a snapshot over max_payload (1 MiB) in chunks, byte for byte, and frees them when it shrinks', async () => {
    assert.equal(store.chunkBytes, 1_048_576 - 65_536);
    const big = randomBytes(3 * 1024 * 1024 + 17);
    await store.set('big', big, 60_000);
    const got = await store.get('big');
    assert.ok(got !== undefined && Buffer.from(got).equals(big));
    const chunks = (await keys(store.bucket)).filter((k) => k.startsWith('c.'));
    assert.equal(chunks.length, 4);
    await store.set('big', Buffer.from('small now'), 60_000);
    assert.equal(Buffer.from((await store.get('big'))!).toString(), 'small now');
    assert.deepEqual((await keys(store.bucket)).filter((k) => k.startsWith('c.')), []);
    await store.delete('big');
  });

  it('concurrent writers of one session leave one whole value (the last) and no stray chunks; a second connection reads it', async () => {
    const values = Array.from({ length: 6 }, (_, i) => Buffer.concat([Buffer.from(`writer ${i}:`), randomBytes(2 * 1024 * 1024)]));
    const other = await natsSessionStore({ servers: srv.url, fleet: 'store', sweepMs: 0 });
    try {
      await Promise.all(values.map((v, i) => (i % 2 === 0 ? store : other).set('contended', v, 60_000)));
      const got = Buffer.from((await other.get('contended'))!);
      assert.ok(values.some((v) => v.equals(got)), 'the value read is exactly one of the values written');
      const chunks = (await keys(store.bucket)).filter((k) => k.startsWith('c.'));
      assert.equal(chunks.length, 3, `only the winning generation's chunks remain: ${chunks.length}`);
      // Readers racing a writer see the old or the new value, never a mix.
      const reads = await Promise.all([store.get('contended'), store.set('contended', values[0], 60_000), other.get('contended')]);
      for (const r of [reads[0], reads[2]]) assert.ok(values.some((v) => v.equals(Buffer.from(r!))));
      await store.delete('contended');
      assert.equal(await other.get('contended'), undefined);
    } finally {
      await other.close();
    }
  });
});

describe('natsSessionStore fencing (a host that was taken for dead must not overwrite the new holder)', () => {
  let store: NatsSessionStore;
  before(async () => {
    store = await natsSessionStore({ nc, fleet: 'fence', sweepMs: 0 });
  });
  after(async () => store?.close());

  for (const size of [100, 2 * 1024 * 1024]) {
    it(`refuses writes and reads under an older fence; a read under a newer one claims the snapshot (${size > 1024 ? 'chunked' : 'inline'})`, async () => {
      const sid = `fenced-${size}`;
      const v1 = randomBytes(size);
      await store.set(sid, v1, 60_000, 5);
      const stale = await store.set(sid, randomBytes(size), 60_000, 3).then(
        () => assert.fail('a write under an older fence must be refused'),
        (e: Error & { code?: string }) => e,
      );
      assert.equal(stale.code, 'PYFLEET_SESSION_LOST');
      assert.match(stale.message, /moved to another host/);
      await assert.rejects(store.get(sid, 4), /moved to another host/);
      // The new holder reads under 9: it gets the snapshot, and from now on 5 is stale too.
      assert.ok(Buffer.from((await store.get(sid, 9))!).equals(v1));
      await assert.rejects(store.set(sid, randomBytes(size), 60_000, 5), /moved to another host/);
      await store.delete(sid, 5); // not the stale holder's to drop
      assert.ok(Buffer.from((await store.get(sid))!).equals(v1), 'unfenced reads still work');
      const v2 = randomBytes(size);
      await store.set(sid, v2, 60_000, 9);
      assert.ok(Buffer.from((await store.get(sid, 9))!).equals(v2));
      await store.delete(sid, 9);
      assert.equal(await store.get(sid), undefined);
      assert.deepEqual((await keys(store.bucket)).filter((k) => k.startsWith('c.')), [], 'no chunk left behind, refused writes included');
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
