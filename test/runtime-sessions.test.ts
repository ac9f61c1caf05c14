/**
 * Sessions and their snapshots through a real worker (docs/protocol.md, "Session snapshots"):
 * which keys a call's snap carries and when none is sent, sessions that cannot be durable and
 * become durable again, restores verified before anything is unpickled (manifests, records kept
 * apart, single-blob snapshots of format 1), and the refused state until drop_session.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { tempFile } from './helpers/pool.js';
import { RawWorker, RUNTIME_FIXTURES, type Msg } from './helpers/raw-worker.js';

const HANDLERS = `${RUNTIME_FIXTURES}handlers.py`;
const KEY = randomBytes(32);
const OLD_KEY = randomBytes(32);
const KEYS = `${KEY.toString('hex')},${OLD_KEY.toString('hex')}`;

interface Rec {
  name: string;
  data: Buffer;
  /** Kept apart (its own part, named by its digest) rather than inside the manifest. */
  apart?: boolean;
}

/** A manifest as the host makes it (docs/protocol.md, format 2), made here from the spec. */
function manifest(key: Buffer, sid: string, ver: number, recs: Rec[], marks: Record<string, string> = {}): Buffer {
  const keys = recs.map((r) => (r.apart ? [r.name, r.data.length, createHash('sha256').update(r.data).digest('hex')] : [r.name, r.data.length]));
  const header = Buffer.from(JSON.stringify({ sid, ver, marks, keys }));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(header.length, 0);
  const body = Buffer.concat([len, header, ...recs.filter((r) => !r.apart).map((r) => r.data)]);
  const mac = createHmac('sha256', key).update('pyfleet-session-v2\0').update(body).digest();
  return Buffer.concat([Buffer.from('PFS2'), mac, body]);
}

interface RestoreOptions {
  ver?: number;
  min?: number;
  key?: Buffer;
  signFor?: string;
  marks?: Record<string, string>;
  /** The records apart as sent, when not the ones the manifest names. */
  apart?: Buffer[];
}

function restore(w: RawWorker, sid: string, recs: Rec[], o: RestoreOptions = {}): Promise<Msg> {
  const id = w.newId();
  const parts = [manifest(o.key ?? KEY, o.signFor ?? sid, o.ver ?? 1, recs, o.marks), ...(o.apart ?? recs.filter((r) => r.apart).map((r) => r.data))];
  w.post({ t: 'restore', id, sid, min: o.min ?? 0, v: parts.map(() => null) }, parts.map((data, i) => ({ path: [i], kind: 'bytes', data })));
  return w.answer(id);
}

/** A single-blob snapshot's signature (format 1, written by an older pyfleet). */
function sign1(key: Buffer, sid: string, ver: number, data: Buffer): string {
  const s = Buffer.from(sid, 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(s.length, 0);
  const v = Buffer.alloc(8);
  v.writeBigUInt64BE(BigInt(ver), 0);
  return createHmac('sha256', key).update(Buffer.concat([Buffer.from('pyfleet-session-v1\0'), len, s, v, data])).digest('hex');
}

/** A pickle (protocol 0) whose loading opens `path` for writing: creating it proves it was unpickled. */
const evilPickle = (path: string): Buffer => Buffer.from(`cbuiltins\nopen\n(V${path}\nVw\ntR.`, 'latin1');

const snapOf = (w: RawWorker, id: number): Msg | undefined => w.of(id).find((m) => m.t === 'snap');
const recordsOf = (snap: Msg): Rec[] => (snap.k as unknown as string[]).map((name, i) => ({ name, data: (snap.v as Buffer[])[i] }));
const shape = (snap: Msg | undefined) => snap && { k: snap.k, d: snap.d, full: snap.full };

describe('runtime: session snapshots by key', () => {
  it('a snap carries the records of the keys a call may have changed, just before its answer; a call that changed nothing sends none', async () => {
    const w = await RawWorker.start({ module: HANDLERS, env: { PYFLEET_SESSION_KEYS: KEYS } });
    try {
      const a = w.send('sess_set', { k: 'x', v: [1, 2] }, { sid: 's1' });
      await w.answer(a);
      assert.deepEqual(
        w.of(a).map((m) => m.t),
        ['snap', 'ok'],
      );
      const snap = snapOf(w, a)!;
      assert.equal(snap.sid, 's1');
      assert.deepEqual(shape(snap), { k: ['x'], d: [], full: false });
      assert.equal(typeof snap.ms, 'number');
      const pickle = (snap.v as Buffer[])[0];
      assert.deepEqual([pickle[0], pickle[1]], [0x80, 5], 'a pickle, protocol 5');
      const latest = new Map(recordsOf(snap).map((r) => [r.name, r]));
      const step = async (cmd: string, args: unknown): Promise<Msg | undefined> => {
        const id = w.send(cmd, args, { sid: 's1' });
        await w.answer(id);
        const s = snapOf(w, id);
        if (s !== undefined) for (const r of recordsOf(s)) latest.set(r.name, r);
        for (const name of (s?.d as string[] | undefined) ?? []) latest.delete(name);
        return s;
      };
      assert.deepEqual(shape(await step('sess_set', { k: 'y', v: 7 })), { k: ['y'], d: [], full: false }, 'only the key assigned');
      assert.deepEqual(shape(await step('sess_get', { k: 'x' })), { k: ['x'], d: [], full: false }, 'a mutable value fetched may have changed');
      assert.equal(await step('sess_get', { k: 'y' }), undefined, 'an immutable value only read never is');
      assert.equal(await step('sess_peek', { k: 'x' }), undefined, 'peek reads without marking');
      assert.deepEqual(shape(await step('sess_append', { k: 'x', v: 3 })), { k: ['x'], d: [], full: false }, 'an in-place change');
      await step('sess_set', { k: 'gone', v: 'soon' });
      const del = await step('sess_del', { k: 'gone' });
      assert.deepEqual(shape(del), { k: [], d: ['gone'], full: false }, 'a deletion carries no record');
      for (const [cmd, extra] of [
        ['sess_untouched', { sid: 's1' }],
        ['sess_read', { sid: 's1' }],
        ['sess_set', {}],
      ] as const) {
        const id = w.send(cmd, { k: 'x', v: 1 }, extra);
        await w.answer(id);
        assert.equal(snapOf(w, id), undefined, `${cmd} ${JSON.stringify(extra)}`);
      }
      // A handler that raised after changing its session: snap, then the error.
      const r = w.send('sess_raise', {}, { sid: 's1' });
      await w.answer(r);
      assert.deepEqual(
        w.of(r).map((m) => m.t + (m.k && !Array.isArray(m.k) ? `:${m.k}` : '')),
        ['snap', 'err:python'],
      );
      for (const rec of recordsOf(snapOf(w, r)!)) latest.set(rec.name, rec);
      // Async calls and streams too (a stream's snap comes before its end).
      const as = w.send('asess', { v: 'av' }, { sid: 's2' });
      await w.answer(as);
      assert.deepEqual(
        w.of(as).map((m) => m.t),
        ['snap', 'ok'],
      );
      const st = w.send('gen_session', {}, { sid: 's2', cr: 5 });
      await w.answer(st);
      assert.deepEqual(
        w.of(st).map((m) => m.t),
        ['item', 'snap', 'end'],
      );
      const want = await w.value('sess_dict', {}, { sid: 's1' });

      // The latest record of each key restores in another worker, inline or apart, which then has the state.
      const b = await RawWorker.start({ module: HANDLERS, env: { PYFLEET_SESSION_KEYS: KEYS } });
      try {
        const recs = [...latest.values()].map((rec, i) => ({ ...rec, apart: i % 2 === 0 }));
        const ok = await restore(b, 's1', recs, { ver: 4, min: 4 });
        assert.deepEqual(ok, { t: 'ok', id: ok.id, v: null });
        assert.deepEqual(await b.value('sess_dict', {}, { sid: 's1' }), want);
        assert.deepEqual(await b.value('sess_dict', {}, { sid: 's1' }), { x: [1, 2, 3], y: 7, before_raise: true });
        // Signed with the second (older) key: verified too.
        assert.equal((await restore(b, 's9', recs, { key: OLD_KEY })).t, 'ok');
        // A restored session stores only what changes next.
        const id = b.send('sess_set', { k: 'y', v: 8 }, { sid: 's1' });
        await b.answer(id);
        assert.deepEqual(shape(snapOf(b, id)), { k: ['y'], d: [], full: false });
      } finally {
        b.kill();
      }
      assert.equal(await w.value('env_get', { name: 'PYFLEET_SESSION_KEYS' }), null, 'the keys are not in the environment of handlers');
    } finally {
      w.kill();
    }
  });

  it('a session that cannot be pickled, or is too large, gets one snap with err, none while it stays so, then a full snap once it fits', async () => {
    const w = await RawWorker.start({ module: HANDLERS, env: { PYFLEET_MAX_SESSION_BYTES: '2000' } });
    try {
      await w.value('sess_set', { k: 'y', v: 1 }, { sid: 'L' });
      const a = w.send('sess_lock', {}, { sid: 'L' });
      assert.equal((await w.answer(a)).v, 'locked', 'the call itself succeeds');
      assert.match(snapOf(w, a)!.err as string, /key 'lock' cannot be pickled: TypeError/);
      assert.equal(snapOf(w, a)!.v, undefined);
      const again = w.send('sess_set', { k: 'z', v: 2 }, { sid: 'L' });
      await w.answer(again);
      assert.equal(snapOf(w, again), undefined, 'said once');
      const fits = w.send('sess_del', { k: 'lock' }, { sid: 'L' });
      await w.answer(fits);
      assert.deepEqual(shape(snapOf(w, fits)), { k: ['y', 'z'], d: [], full: true }, 'the lock gone, every key is stored');

      const big = w.send('sess_big', { n: 5000 }, { sid: 'B' });
      await w.answer(big);
      assert.match(snapOf(w, big)!.err as string, /records are \d+ bytes, over the limit of 2000 \(PYFLEET_MAX_SESSION_BYTES\)/);
      const still = w.send('sess_set', { k: 'small', v: 1 }, { sid: 'B' });
      await w.answer(still);
      assert.equal(snapOf(w, still), undefined);
      const smaller = w.send('sess_big', { n: 10 }, { sid: 'B' });
      await w.answer(smaller);
      assert.deepEqual(shape(snapOf(w, smaller)), { k: ['big', 'small'], d: [], full: true }, 'not sticky: it fits again');
      w.post({ t: 'drop_session', sid: 'L' });
      const fresh = w.send('sess_set', { k: 'y', v: 1 }, { sid: 'L' });
      assert.equal((await w.answer(fresh)).v, 1, 'a dropped session starts empty');
      assert.deepEqual(shape(snapOf(w, fresh)), { k: ['y'], d: [], full: false });
    } finally {
      w.kill();
    }
  });

  it('a session dropped while a call of it runs is not re-created by that call', async () => {
    const w = await RawWorker.start({ module: HANDLERS });
    try {
      await w.value('sess_set', { k: 'before', v: 1 }, { sid: 'D' });
      const late = w.send('asess', { v: 'late', ms: 150 }, { sid: 'D' });
      w.post({ t: 'drop_session', sid: 'D' });
      const m = await w.answer(late);
      assert.deepEqual(m.v, { before: 1, async: 'late' }, 'it ran on the state it started with');
      assert.equal(snapOf(w, late), undefined, 'no snapshot of a dropped session');
      assert.deepEqual(await w.value('sess_dict', {}, { sid: 'D' }), {}, 'the dropped session was not stored again');
    } finally {
      w.kill();
    }
  });
});

describe('runtime: session restore', () => {
  it('refuses a manifest signed with another key, or a record apart that its manifest does not name, without unpickling it; then fails the session until it is dropped', async () => {
    const w = await RawWorker.start({ module: HANDLERS, env: { PYFLEET_SESSION_KEYS: KEYS } });
    try {
      const path = tempFile('unpickled');
      const evil = { name: 'trap', data: evilPickle(path) };
      const m = await restore(w, 'evil', [evil], { key: randomBytes(32) });
      assert.deepEqual([m.t, m.k], ['err', 'session']);
      assert.match(m.e!.message, /signature does not match/);
      const call = await w.call('sess_set', { k: 'x', v: 1 }, { sid: 'evil' });
      assert.deepEqual([call.t, call.k], ['err', 'session']);
      assert.match(call.e!.message, /refused earlier/);
      w.post({ t: 'drop_session', sid: 'evil' });
      assert.equal(await w.value('sess_set', { k: 'x', v: 1 }, { sid: 'evil' }), 1);

      // A record swapped in the store (another session's, an older one): its digest is not the one signed.
      // Of the same size: only its digest tells it from the one the manifest names.
      const honest = { name: 'x', data: Buffer.alloc(evil.data.length, 'h'), apart: true };
      const swapped = await restore(w, 'swap', [honest], { apart: [evil.data] });
      assert.match(swapped.e!.message, /record 'x' does not match the digest its manifest names/);
      assert.equal(existsSync(path), false, 'nothing refused was unpickled');

      // The control: the same pickle, signed with our key, is unpickled (and then refused: not a pair).
      const control = await restore(w, 'control', [{ ...evil, apart: true }]);
      assert.match(control.e!.message, /holds a TextIOWrapper, not a \(key, value\) pair/);
      assert.equal(existsSync(path), true, 'a verified record is unpickled');
    } finally {
      w.kill();
    }
  });

  it('refuses a manifest of another session, one older than the minimum, a marked one, one for a session that has state, and any without keys', async () => {
    const w = await RawWorker.start({ module: HANDLERS, env: { PYFLEET_SESSION_KEYS: KEYS } });
    const noKeys = await RawWorker.start({ module: HANDLERS });
    try {
      const id = w.send('sess_set', { k: 'x', v: 'data' }, { sid: 'src' });
      await w.answer(id);
      const recs = recordsOf(snapOf(w, id)!);
      const path = tempFile('never');
      const cases: Array<[string, Promise<Msg>, RegExp]> = [
        ['another session', restore(w, 'mine', recs, { signFor: 'theirs' }), /belongs to another session \('theirs'\)/],
        ['older than min', restore(w, 'old', recs, { ver: 2, min: 3 }), /version 2, older than the minimum 3/],
        ['marked', restore(w, 'marked', recs, { marks: { notDurable: 'a lock' } }), /marked notDurable/],
        ['a record missing', restore(w, 'missing', [{ ...recs[0], apart: true }], { apart: [] }), /record 'x' does not match/],
        ['a record too many', restore(w, 'extra', recs, { apart: [recs[0].data] }), /records its manifest does not name/],
        ['no keys', restore(noKeys, 'nokeys', [{ name: 'trap', data: evilPickle(path) }]), /no session keys/],
      ];
      for (const [name, p, why] of cases) {
        const m = await p;
        assert.deepEqual([m.t, m.k], ['err', 'session'], name);
        assert.match(m.e!.message, why, name);
      }
      assert.equal(existsSync(path), false);
      await w.value('sess_set', { k: 'x', v: 1 }, { sid: 'has-state' });
      const busy = await restore(w, 'has-state', recs);
      assert.match(busy.e!.message, /already has state/);
      const call = await w.call('sess_get', { k: 'x' }, { sid: 'has-state' });
      assert.equal(call.k, 'session', 'a session whose restore was refused fails, even with state');
      const ok = await restore(w, 'good', recs, { ver: 7, min: 7 });
      assert.equal(ok.t, 'ok');
      assert.equal(await w.value('sess_get', { k: 'x' }, { sid: 'good' }), 'data');
      const garbage = await restore(w, 'garbage', [{ name: 'x', data: Buffer.from('not a pickle') }]);
      assert.match(garbage.e!.message, /record 'x' does not unpickle/);
      const malformed = w.newId();
      w.post({ t: 'restore', id: malformed, sid: 'm', min: 'zero', v: [null] }, [{ path: [0], kind: 'bytes', data: recs[0].data }]);
      assert.equal((await w.answer(malformed)).k, 'bad_request');
    } finally {
      w.kill();
      noKeys.kill();
    }
  });

  it('still restores a single-blob snapshot (format 1), verified the same way, and stores every key with the next snap', async () => {
    const w = await RawWorker.start({ module: HANDLERS, env: { PYFLEET_SESSION_KEYS: KEYS } });
    try {
      const blob = Buffer.from(await w.value<string>('pickle_dict_hex', { a: 1, b: [2] }), 'hex');
      const post = (sid: string, sig: string, ver = 3, min = 0): Promise<Msg> => {
        const id = w.newId();
        w.post({ t: 'restore', id, sid, ver, min, sig, v: null }, [{ path: [], kind: 'bytes', data: blob }]);
        return w.answer(id);
      };
      assert.match((await post('v1', sign1(KEY, 'other', 3, blob))).e!.message, /signature does not match/);
      assert.match((await post('v1-old', sign1(KEY, 'v1-old', 3, blob), 3, 4)).e!.message, /version 3, older than the minimum 4/);
      assert.equal((await post('v1-ok', sign1(OLD_KEY, 'v1-ok', 3, blob))).t, 'ok');
      const first = w.send('sess_dict', {}, { sid: 'v1-ok' });
      assert.deepEqual((await w.answer(first)).v, { a: 1, b: [2] });
      assert.deepEqual(shape(snapOf(w, first)), { k: ['b', 'a'], d: [], full: true }, 'the first snap after it holds every key');
      const id = w.send('sess_set', { k: 'c', v: 3 }, { sid: 'v1-ok' });
      await w.answer(id);
      assert.deepEqual(shape(snapOf(w, id)), { k: ['c'], d: [], full: false });
    } finally {
      w.kill();
    }
  });
});
