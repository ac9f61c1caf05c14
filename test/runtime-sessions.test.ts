/**
 * Sessions and their snapshots through a real worker (docs/protocol.md, "Session snapshots"):
 * when a snap is sent and when not, sessions that cannot be durable, restores verified before
 * anything is unpickled, and the refused state until drop_session.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { tempFile } from './helpers/pool.js';
import { RawWorker, RUNTIME_FIXTURES, type Msg } from './helpers/raw-worker.js';

const HANDLERS = `${RUNTIME_FIXTURES}handlers.py`;
const KEY = randomBytes(32);
const OLD_KEY = randomBytes(32);
const KEYS = `${KEY.toString('hex')},${OLD_KEY.toString('hex')}`;

/** The host's signature of a snapshot (docs/protocol.md). */
function sign(key: Buffer, sid: string, ver: number, data: Buffer): string {
  const s = Buffer.from(sid, 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(s.length, 0);
  const v = Buffer.alloc(8);
  v.writeBigUInt64BE(BigInt(ver), 0);
  return createHmac('sha256', key).update(Buffer.concat([Buffer.from('pyfleet-session-v1\0'), len, s, v, data])).digest('hex');
}

function restore(w: RawWorker, sid: string, data: Buffer, opts: { ver?: number; min?: number; key?: Buffer; signFor?: string; sig?: string } = {}): Promise<Msg> {
  const id = w.newId();
  const ver = opts.ver ?? 1;
  const sig = opts.sig ?? sign(opts.key ?? KEY, opts.signFor ?? sid, ver, data);
  w.post({ t: 'restore', id, sid, ver, min: opts.min ?? 0, sig, v: null }, [{ path: [], kind: 'bytes', data }]);
  return w.answer(id);
}

/** A pickle (protocol 0) whose loading opens `path` for writing: creating it proves it was unpickled. */
const evilPickle = (path: string): Buffer => Buffer.from(`cbuiltins\nopen\n(V${path}\nVw\ntR.`, 'latin1');

const snapOf = (w: RawWorker, id: number): Msg | undefined => w.of(id).find((m) => m.t === 'snap');

describe('runtime: session snapshots', () => {
  it('a call that touched its session sends a snap (a pickle) just before its answer; others send none', async () => {
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
      assert.ok(Buffer.isBuffer(snap.v));
      assert.equal((snap.v as Buffer)[0], 0x80, 'a pickle');
      assert.equal((snap.v as Buffer)[1], 5, 'protocol 5');
      for (const [cmd, extra] of [
        ['sess_untouched', { sid: 's1' }],
        ['sess_read', { sid: 's1' }],
        ['sess_set', {}],
      ] as const) {
        const id = w.send(cmd, { k: 'x', v: 1 }, extra);
        await w.answer(id);
        assert.equal(snapOf(w, id), undefined, `${cmd} ${JSON.stringify(extra)}`);
      }
      // A handler that raised after touching its session: snap, then the error.
      const r = w.send('sess_raise', {}, { sid: 's1' });
      await w.answer(r);
      assert.deepEqual(
        w.of(r).map((m) => m.t + (m.k ? `:${m.k}` : '')),
        ['snap', 'err:python'],
      );
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

      // The snapshot restores in another worker, which then has the state.
      const b = await RawWorker.start({ module: HANDLERS, env: { PYFLEET_SESSION_KEYS: KEYS } });
      try {
        const ok = await restore(b, 's1', snapOf(w, a)!.v as Buffer, { ver: 4, min: 4 });
        assert.deepEqual(ok, { t: 'ok', id: ok.id, v: null });
        assert.deepEqual(await b.value('sess_get', { k: 'x' }, { sid: 's1' }), [1, 2]);
        // Signed with the second (older) key: verified too.
        const old = await restore(b, 's9', snapOf(w, a)!.v as Buffer, { key: OLD_KEY });
        assert.equal(old.t, 'ok');
      } finally {
        b.kill();
      }
      assert.equal(await w.value('env_get', { name: 'PYFLEET_SESSION_KEYS' }), null, 'the keys are not in the environment of handlers');
    } finally {
      w.kill();
    }
  });

  it('a session that cannot be pickled, or is too large, gets one snap with err and no retries until it is dropped', async () => {
    const w = await RawWorker.start({ module: HANDLERS, env: { PYFLEET_MAX_SESSION_BYTES: '2000' } });
    try {
      const a = w.send('sess_lock', {}, { sid: 'L' });
      assert.equal((await w.answer(a)).v, 'locked', 'the call itself succeeds');
      assert.match(snapOf(w, a)!.err as string, /cannot be pickled: TypeError/);
      assert.equal(snapOf(w, a)!.v, undefined);
      const again = w.send('sess_set', { k: 'y', v: 1 }, { sid: 'L' });
      await w.answer(again);
      assert.equal(snapOf(w, again), undefined, 'no second attempt');
      w.post({ t: 'drop_session', sid: 'L' });
      const fresh = w.send('sess_set', { k: 'y', v: 1 }, { sid: 'L' });
      assert.equal((await w.answer(fresh)).v, 1, 'a dropped session starts empty');
      assert.ok(Buffer.isBuffer(snapOf(w, fresh)!.v));

      const big = w.send('sess_big', { n: 5000 }, { sid: 'B' });
      await w.answer(big);
      assert.match(snapOf(w, big)!.err as string, /over the limit of 2000 \(PYFLEET_MAX_SESSION_BYTES\)/);
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
  it('refuses a snapshot signed with another key without unpickling it, then fails the session until it is dropped', async () => {
    const w = await RawWorker.start({ module: HANDLERS, env: { PYFLEET_SESSION_KEYS: KEYS } });
    try {
      const path = tempFile('unpickled');
      const m = await restore(w, 'evil', evilPickle(path), { key: randomBytes(32) });
      assert.deepEqual([m.t, m.k], ['err', 'session']);
      assert.match(m.e!.message, /signature does not match/);
      assert.equal(existsSync(path), false, 'nothing of the refused snapshot was unpickled');
      const call = await w.call('sess_set', { k: 'x', v: 1 }, { sid: 'evil' });
      assert.deepEqual([call.t, call.k], ['err', 'session']);
      assert.match(call.e!.message, /refused earlier/);
      w.post({ t: 'drop_session', sid: 'evil' });
      assert.equal(await w.value('sess_set', { k: 'x', v: 1 }, { sid: 'evil' }), 1);

      // The control: the same pickle, signed with our key, is unpickled (and then refused: not a dict).
      const control = await restore(w, 'control', evilPickle(path));
      assert.match(control.e!.message, /holds a TextIOWrapper, not a session dict/);
      assert.equal(existsSync(path), true, 'a verified snapshot is unpickled');
    } finally {
      w.kill();
    }
  });

  it('refuses a snapshot of another session, one older than the minimum, one for a session that has state, and any without keys', async () => {
    const w = await RawWorker.start({ module: HANDLERS, env: { PYFLEET_SESSION_KEYS: KEYS } });
    const noKeys = await RawWorker.start({ module: HANDLERS });
    try {
      const source = await RawWorker.start({ module: HANDLERS });
      const id = source.send('sess_set', { k: 'x', v: 'data' }, { sid: 'src' });
      await source.answer(id);
      const data = snapOf(source, id)!.v as Buffer;
      source.kill();
      const path = tempFile('never');
      const cases: Array<[string, Promise<Msg>, RegExp]> = [
        ['another session', restore(w, 'mine', data, { signFor: 'theirs' }), /signature does not match/],
        ['another version', restore(w, 'ver', data, { ver: 3, sig: sign(KEY, 'ver', 2, data) }), /signature does not match/],
        ['older than min', restore(w, 'old', data, { ver: 2, min: 3 }), /version 2, older than the minimum 3/],
        ['not hex', restore(w, 'hex', data, { sig: 'zz' }), /not 64 hex digits/],
        ['no keys', restore(noKeys, 'nokeys', evilPickle(path)), /no session keys/],
      ];
      for (const [name, p, why] of cases) {
        const m = await p;
        assert.deepEqual([m.t, m.k], ['err', 'session'], name);
        assert.match(m.e!.message, why, name);
      }
      assert.equal(existsSync(path), false);
      await w.value('sess_set', { k: 'x', v: 1 }, { sid: 'has-state' });
      const busy = await restore(w, 'has-state', data);
      assert.match(busy.e!.message, /already has state/);
      const call = await w.call('sess_get', { k: 'x' }, { sid: 'has-state' });
      assert.equal(call.k, 'session', 'a session whose restore was refused fails, even with state');
      const ok = await restore(w, 'good', data, { ver: 7, min: 7 });
      assert.equal(ok.t, 'ok');
      assert.equal(await w.value('sess_get', { k: 'x' }, { sid: 'good' }), 'data');
      const garbage = await restore(w, 'garbage', Buffer.from('not a pickle'));
      assert.match(garbage.e!.message, /does not unpickle/);
      const malformed = w.newId();
      w.post({ t: 'restore', id: malformed, sid: 'm', ver: 'one', min: 0, sig: 'ab', v: null }, [{ path: [], kind: 'bytes', data }]);
      assert.equal((await w.answer(malformed)).k, 'bad_request');
    } finally {
      w.kill();
      noKeys.kill();
    }
  });
});
