import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash, createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { MemorySessionStore, createPool, fileSessionStore, type Pool, type PoolOptions, type SessionStore, type SessionWrite, type StoredSession } from '../src/index.js';
import { ROOT } from './helpers/cli.js';
import { FIXTURES, memoryLogger, rejection, tempFile, until } from './helpers/pool.js';

const SESSIONS = path.join(FIXTURES, 'sessions.py');

async function pool(options: Partial<PoolOptions> = {}): Promise<Pool & { logs: ReturnType<typeof memoryLogger>['entries'] }> {
  const logger = memoryLogger();
  const p = await createPool({ module: SESSIONS, workers: 2, logger, ...options });
  return Object.assign(p, { logs: logger.entries });
}

/** Where fileSessionStore keeps session `id` in `dir`, and the refs its manifest file names. */
function sessionDir(dir: string, id: string): string {
  return path.join(dir, createHash('sha256').update(id).digest('hex').slice(0, 40));
}
function namedRefs(d: string): string[] {
  const m = readFileSync(path.join(d, 'manifest'));
  return JSON.parse(m.toString('utf8', 4, 4 + m.readUInt32BE(0))) as string[];
}

function tempDir(): string {
  return mkdtempSync(path.join(tmpdir(), 'pyfleet-sessions-'));
}

/** A store that lets a test see and change what is stored, as an attacker with access to it could. */
class TamperStore implements SessionStore {
  readonly inner = new MemorySessionStore();
  /** What get returns instead of what is stored, until the next set. */
  readonly raw = new Map<string, StoredSession>();
  async get(id: string) {
    return this.raw.get(id) ?? (await this.inner.get(id));
  }
  async set(id: string, w: SessionWrite, ttl: number) {
    this.raw.delete(id);
    await this.inner.set(id, w, ttl);
  }
  async delete(id: string) {
    this.raw.delete(id);
    await this.inner.delete(id);
  }
}

/** A store whose set() fails ('disk full') while `failing` is on. */
class FlakyStore implements SessionStore {
  failing = false;
  private readonly inner = new TamperStore();
  get(id: string) {
    return this.inner.get(id);
  }
  set(id: string, w: SessionWrite, ttl: number) {
    return this.failing ? Promise.reject(new Error('disk full')) : this.inner.set(id, w, ttl);
  }
  delete(id: string) {
    return this.inner.delete(id);
  }
}

async function killWorkerOf(p: Pool, pid: number): Promise<void> {
  process.kill(pid, 'SIGKILL');
  await until(() => !p.pids().includes(pid));
}

describe('durable sessions: state survives the worker', () => {
  it('SIGKILL of the worker between two calls: the next call finds the state on another worker', async () => {
    const p = await pool();
    try {
      const s = p.session('u1');
      const pid = await s.execute<number>('put', { k: 'a', v: 1 });
      await s.execute('put', { k: 'b', v: [2, 'two'] });
      await killWorkerOf(p, pid);
      assert.deepEqual(await s.execute('items', {}), [['a', 1], ['b', [2, 'two']]]);
      assert.notEqual(await s.execute('pid', {}), pid);
      const st = p.stats().sessions;
      assert.equal(st.restored, 1);
      assert.equal(st.durable, 1);
    } finally {
      await p.close();
    }
  });

  it('recycling by maxRequests moves the session instead of dropping it', async () => {
    const p = await pool({ workers: 1, recycle: { maxRequests: 3 } });
    try {
      const s = p.session('r');
      const first = await s.execute<number>('put', { k: 'n', v: 1 });
      for (let i = 2; i <= 6; i++) {
        const prev = (await s.execute<number | null>('get', { k: 'n' })) ?? 0;
        await s.execute('put', { k: 'n', v: prev + 1 });
      }
      assert.equal(await s.execute('get', { k: 'n' }), 6);
      assert.ok(p.stats().restarts.byReason.recycle! >= 2);
      assert.notEqual(await s.execute('pid', {}), first);
    } finally {
      await p.close();
    }
  });

  it('a hung non-idempotent call forces a replacement; the neighbour session is intact', async () => {
    const p = await pool({ workers: 1, cancelGraceMs: 200 });
    try {
      const n = p.session('neighbour');
      await n.execute('put', { k: 'x', v: 'kept' });
      const err = await rejection(p.execute('hang', { ms: 5_000 }, { timeoutMs: 100 }));
      assert.equal(err.code, 'PYFLEET_TIMEOUT');
      await until(() => p.stats().restarts.byReason.cancel_timeout === 1);
      assert.equal(await n.execute('get', { k: 'x' }), 'kept');
    } finally {
      await p.close();
    }
  });

  it('two calls of one session under concurrency > 1 run one after the other', async () => {
    const p = await pool({ workers: 1, concurrency: 8 });
    try {
      const s = p.session('c');
      const [a, b] = await Promise.all([s.execute<string[]>('aslow_append', { x: 1, ms: 100 }), s.execute<string[]>('aslow_append', { x: 2, ms: 10 })]);
      assert.deepEqual(a, ['start 1', 'end 1']);
      assert.deepEqual(b, ['start 1', 'end 1', 'start 2', 'end 2']);
    } finally {
      await p.close();
    }
  });

  it('a session that cannot be pickled is not durable: one event and one log line, the call itself never fails, and it is lost with its worker', async () => {
    const p = await pool({ workers: 1 });
    const events: unknown[] = [];
    const off = p.on('session:not_durable', (e) => events.push(e));
    try {
      const s = p.session('locked');
      const pid = await s.execute<number>('put', { k: 'a', v: 1 });
      assert.equal(await s.execute('put_lock', {}), 'locked');
      await s.execute('put', { k: 'b', v: 2 });
      await s.execute('put', { k: 'c', v: 3 });
      assert.equal(events.length, 1, 'said once, not on every call');
      assert.match(JSON.stringify(events[0]), /locked.*cannot be pickled/);
      assert.equal(p.logs.filter((l) => /is not durable/.test(l.msg)).length, 1);
      await killWorkerOf(p, pid);
      const e = await rejection(s.execute('get', { k: 'a' }));
      assert.equal(e.code, 'PYFLEET_SESSION_LOST');
      assert.match(e.message, /not durable/);
    } finally {
      off();
      await p.close();
    }
  });

  it('a session over maxSessionBytes is not durable either', async () => {
    const p = await pool({ workers: 1, maxSessionBytes: 10_000 });
    try {
      const s = p.session('big');
      const pid = await s.execute<number>('put', { k: 'a', v: 1 });
      await s.execute('put_big', { n: 20_000 });
      await killWorkerOf(p, pid);
      const e = await rejection(s.execute('get', { k: 'a' }));
      assert.equal(e.code, 'PYFLEET_SESSION_LOST');
      assert.match(e.message, /over the limit/);
    } finally {
      await p.close();
    }
  });

  it('a snapshot the store failed to keep: the session fails loudly after the death rather than restore older state', async () => {
    const flaky = new FlakyStore();
    const p = await pool({ workers: 1, sessionStore: flaky, sessionKey: 'k' });
    try {
      const s = p.session('f');
      const pid = await s.execute<number>('put', { k: 'a', v: 1 });
      flaky.failing = true;
      assert.equal(await s.execute<number>('put', { k: 'a', v: 2 }), pid, 'the call itself succeeds');
      await killWorkerOf(p, pid);
      const e = await rejection(s.execute('get', { k: 'a' }));
      assert.equal(e.code, 'PYFLEET_SESSION_LOST');
      assert.match(e.message, /could not be stored \(disk full\).*older than what the caller saw/);
    } finally {
      await p.close();
    }
  });

  it('a restore that kills its worker is quarantined with its session', async () => {
    const p = await pool({ workers: 1, poison: { maxDeaths: 2 }, policy: { connection_error: { delays: [10] } } });
    try {
      const s = p.session('k');
      const pid = await s.execute<number>('put_killer', {}).then(() => s.execute<number>('pid', {}));
      await killWorkerOf(p, pid);
      const e1 = await rejection(s.execute('get', { k: 'a' }));
      assert.ok(['PYFLEET_WORKER_CRASHED', 'PYFLEET_SESSION_REFUSED'].includes(e1.code), e1.message);
      let last = e1;
      for (let i = 0; i < 3 && last.code !== 'PYFLEET_SESSION_REFUSED'; i++) last = await rejection(s.execute('get', { k: 'a' }));
      assert.equal(last.code, 'PYFLEET_SESSION_REFUSED');
      assert.match(last.message, /killed 2 workers/);
      await s.close();
      assert.equal(await s.execute('get', { k: 'a' }), null, 'closed, it starts afresh');
    } finally {
      await p.close();
    }
  });

  it('sessionStore: false keeps the old semantics: the state dies with its worker', async () => {
    const p = await pool({ workers: 1, sessionStore: false });
    try {
      const s = p.session('old');
      const pid = await s.execute<number>('put', { k: 'a', v: 1 });
      await killWorkerOf(p, pid);
      assert.equal((await rejection(s.execute('get', { k: 'a' }))).code, 'PYFLEET_SESSION_LOST');
      assert.equal(p.stats().sessions.durable, 0);
    } finally {
      await p.close();
    }
  });

  it("snapshotFailure: 'fail': a call whose snapshot the store refused fails (it ran); the next stored call saves its effect", async () => {
    const flaky = new FlakyStore();
    const p = await pool({ workers: 1, sessionStore: flaky, sessionKey: 'k', snapshotFailure: 'fail' });
    try {
      const s = p.session('f');
      const pid = await s.execute<number>('put', { k: 'a', v: 1 });
      flaky.failing = true;
      const e = await rejection(s.execute('put', { k: 'b', v: 2 }));
      assert.equal(e.code, 'PYFLEET_SESSION_NOT_SAVED');
      assert.equal(e.category, 'session_error');
      assert.equal(e.taken, true, 'it ran');
      assert.match(e.message, /did not take the session's snapshot \(disk full\)/);
      assert.deepEqual([p.stats().calls.succeeded, p.stats().calls.failed], [1, 1], 'settled once, as a failure');
      flaky.failing = false;
      assert.equal(await s.execute<number>('put', { k: 'c', v: 3 }), pid);
      await killWorkerOf(p, pid);
      assert.deepEqual(await s.execute('items'), [['a', 1], ['b', 2], ['c', 3]], 'the refused call\'s effect was stored with the next one');
    } finally {
      await p.close();
    }
  });

  it('closeSession(id, { keepSnapshot: true }) drops the worker\'s copy only: the next call restores it from the store', async () => {
    const store = new TamperStore();
    const p = await pool({ workers: 1, sessionStore: store, sessionKey: 'k' });
    try {
      const s = p.session('k1');
      await s.execute('put', { k: 'a', v: 1 });
      await p.closeSession('k1', { keepSnapshot: true });
      assert.notEqual(await store.get('k1'), undefined, 'the snapshot stays');
      assert.equal(p.stats().sessions.bound, 0, 'no worker holds it');
      assert.deepEqual(await s.execute('items'), [['a', 1]]);
      assert.equal(p.stats().sessions.restored, 1);
      await p.closeSession('k1');
      assert.equal(await store.get('k1'), undefined);
    } finally {
      await p.close();
    }
  });

  it('closeSession deletes the snapshot; sessionTtlMs drops idle sessions in the store too', async () => {
    const store = new TamperStore();
    const p = await pool({ sessionStore: store, sessionKey: 'k', sessionTtlMs: 300, healthCheck: { intervalMs: 50, maxMissed: 20 } });
    try {
      await p.session('a').execute('put', { k: 'x', v: 1 });
      await p.session('b').execute('put', { k: 'x', v: 1 });
      assert.equal(store.inner.size, 2);
      await p.closeSession('a');
      assert.equal(await store.get('a'), undefined);
      await until(() => store.inner.size === 0);
    } finally {
      await p.close();
    }
  });

  it('a store other than memory requires sessionKey', async () => {
    const e = await rejection(createPool({ module: SESSIONS, sessionStore: new MemorySessionStore(), logger: memoryLogger() }));
    assert.equal(e.code, 'PYFLEET_INVALID_OPTIONS');
    assert.match(e.message, /sessionKey is required/);
  });
});

describe('durable sessions: snapshots by key', () => {
  it('SIGKILL between calls that change different keys: every key intact on another worker, and each call stored only what it changed', async () => {
    const p = await pool();
    const stored: number[] = [];
    const off = p.on('session:snapshot', (e) => stored.push(e.bytes));
    try {
      const s = p.session('keys');
      await s.execute('put_blob', { k: 'blob', n: 300_000 });
      const digest = await s.execute<string>('digest', { k: 'blob' });
      await s.execute('put', { k: 'a', v: 1 });
      await s.execute('put', { k: 'b', v: [2, 'two'] });
      const pid = await s.execute<number>('put', { k: 'a', v: 2 });
      assert.ok(stored[0] > 300_000, `the blob was stored once (${stored[0]} bytes)`);
      assert.ok(stored.slice(1).every((n) => n < 1_000), `the calls after it stored only their small keys: ${stored.join(', ')}`);
      await killWorkerOf(p, pid);
      assert.equal(await s.execute('digest', { k: 'blob' }), digest);
      assert.equal(await s.execute('get', { k: 'a' }), 2);
      assert.deepEqual(await s.execute('get', { k: 'b' }), [2, 'two']);
      assert.notEqual(await s.execute('pid', {}), pid);
      assert.equal(p.stats().sessions.restored, 1);
    } finally {
      off();
      await p.close();
    }
  });

  it('a key deleted stays deleted after a restore, kept inline or apart', async () => {
    const p = await pool();
    try {
      const s = p.session('del');
      await s.execute('put_blob', { k: 'blob', n: 100_000 });
      await s.execute('put', { k: 'x', v: 1 });
      await s.execute('put', { k: 'y', v: 2 });
      await s.execute('delete', { k: 'x' });
      const pid = await s.execute<number>('put_blob', { k: 'gone', n: 50_000 });
      assert.deepEqual(await s.execute('delete', { k: 'blob' }), ['gone', 'y']);
      await killWorkerOf(p, pid);
      assert.deepEqual(await s.execute('items', {}).then((xs) => (xs as Array<[string, unknown]>).map(([k]) => k)), ['gone', 'y']);
      assert.equal(await s.execute('get', { k: 'x' }), null);
    } finally {
      await p.close();
    }
  });

  it('an in-place mutation (ctx.session["items"].append) survives a restore', async () => {
    const p = await pool();
    try {
      const s = p.session('inplace');
      await s.execute('put', { k: 'items', v: [] });
      await s.execute('push', { k: 'items', v: 1 });
      const pid = await s.execute<number>('push', { k: 'items', v: 2 }).then(() => s.execute<number>('pid', {}));
      await killWorkerOf(p, pid);
      assert.deepEqual(await s.execute('get', { k: 'items' }), [1, 2]);
    } finally {
      await p.close();
    }
  });

  it('ctx.session.peek reads a value without storing it again', async () => {
    const p = await pool({ workers: 1 });
    const stored: number[] = [];
    const off = p.on('session:snapshot', (e) => stored.push(e.bytes));
    try {
      const s = p.session('peek');
      await s.execute('put_blob', { k: 'blob', n: 200_000 });
      assert.equal(await s.execute('note_with_peek', { k: 'blob' }), 200_000);
      assert.equal(await s.execute('note_with_peek', { k: 'blob' }), 400_000);
      assert.equal(stored.length, 3);
      assert.ok(stored.slice(1).every((n) => n < 1_000), `only the small key: ${stored.join(', ')}`);
    } finally {
      off();
      await p.close();
    }
  });

  it('session:large: said once per session, naming the keys that cost the most and what to do', async () => {
    const p = await pool({ workers: 1 });
    const events: Array<{ sessionId: string; bytes: number; keys: Array<{ key: string; bytes: number }>; advice: string }> = [];
    const off = p.on('session:large', (e) => events.push(e));
    try {
      const s = p.session('large');
      await s.execute('put', { k: 'small', v: 1 });
      assert.equal(events.length, 0, 'a small call says nothing');
      await s.execute('put_blob', { k: 'blob', n: 2 * 1024 * 1024 });
      assert.equal(events.length, 1);
      assert.equal(events[0].sessionId, 'large');
      assert.deepEqual(events[0].keys.map((k) => k.key), ['blob']);
      assert.ok(events[0].keys[0].bytes > 2 * 1024 * 1024 && events[0].bytes >= events[0].keys[0].bytes);
      assert.match(events[0].advice, /session="read".*peek.*its own key.*@on_start/);
      await s.execute('put_blob', { k: 'blob', n: 2 * 1024 * 1024 });
      assert.equal(events.length, 1, 'once per session: the second large call (settled, its snapshot handled) said nothing');
      assert.equal(p.logs.filter((l) => /one call stored \d+ bytes of records/.test(l.msg)).length, 1);
      await p.session('other').execute('put_blob', { k: 'blob', n: 2 * 1024 * 1024 });
      assert.equal(events.length, 2, 'another session is told too');
    } finally {
      off();
      await p.close();
    }
  });

  it('not durable is not for ever: once the big key is gone, a full snapshot makes the session durable again', async () => {
    const p = await pool({ workers: 1, maxSessionBytes: 10_000 });
    const said: string[] = [];
    const off = p.on('session:not_durable', (e) => said.push(e.reason));
    try {
      const s = p.session('sticky');
      await s.execute('put', { k: 'a', v: 1 });
      await s.execute('put_big', { n: 20_000 });
      await s.execute('put', { k: 'b', v: 2 });
      assert.equal(said.length, 1);
      assert.match(said[0], /over the limit of 10000/);
      assert.equal(p.stats().sessions.durable, 0);
      const pid = await s.execute<number>('delete', { k: 'big' }).then(() => s.execute<number>('pid', {}));
      assert.equal(p.stats().sessions.durable, 1, 'durable again');
      await killWorkerOf(p, pid);
      assert.deepEqual(await s.execute('items', {}), [['a', 1], ['b', 2]], 'every key, b included (changed while not durable)');
    } finally {
      off();
      await p.close();
    }
  });

  it('the not-durable mark is kept by the store: another pool on the same store finds the session lost, not older', async () => {
    const dir = tempDir();
    const options = { workers: 1, sessionStore: fileSessionStore(dir), sessionKey: 'k', maxSessionBytes: 10_000 };
    const a = await pool(options);
    try {
      await a.session('nd').execute('put', { k: 'a', v: 1 });
      await a.session('nd').execute('put_big', { n: 20_000 });
    } finally {
      await a.close();
    }
    const b = await pool(options);
    try {
      const e = await rejection(b.session('nd').execute('get', { k: 'a' }));
      assert.equal(e.code, 'PYFLEET_SESSION_LOST');
      assert.match(e.message, /not durable when its worker went \(the session's records are \d+ bytes, over the limit of 10000/);
      await b.closeSession('nd');
      assert.equal(await b.session('nd').execute('get', { k: 'a' }), null, 'closed, it starts afresh');
    } finally {
      await b.close();
    }
  });
});

describe('durable sessions: integrity (nothing refused is ever unpickled)', () => {
  it('a snapshot signed with another key, one copied from another session, and an older one are refused without being unpickled', async () => {
    const store = new TamperStore();
    const marker = tempFile('unpickled.txt');
    const p = await pool({ workers: 1, sessionStore: store, sessionKey: 'right key' });
    try {
      // Another key signed this one.
      const other = await pool({ workers: 1, sessionStore: store, sessionKey: 'wrong key' });
      try {
        await other.session('s1').execute('put_trap', { path: marker });
      } finally {
        await other.close();
      }
      const e1 = await rejection(p.session('s1').execute('get', { k: 'x' }));
      assert.equal(e1.code, 'PYFLEET_SESSION_REFUSED');
      assert.match(e1.message, /signature does not match/);
      assert.equal(existsSync(marker), false);
      assert.equal((await rejection(p.session('s1').execute('get', { k: 'x' }))).code, 'PYFLEET_SESSION_REFUSED', 'until it is closed');

      // Copied from another session.
      await p.session('s2').execute('put_trap', { path: marker });
      assert.equal(existsSync(marker), false, 'a trap set, not yet unpickled');
      store.raw.set('s3', (await store.inner.get('s2'))!);
      const e2 = await rejection(p.session('s3').execute('get', { k: 'x' }));
      assert.equal(e2.code, 'PYFLEET_SESSION_REFUSED');
      assert.match(e2.message, /belongs to another session/);

      // An older one put back after the worker died.
      const s4 = p.session('s4');
      await s4.execute('put_trap', { path: marker });
      const old = (await store.inner.get('s4'))!;
      const pid = await s4.execute<number>('put', { k: 'v', v: 2 });
      store.raw.set('s4', old);
      await killWorkerOf(p, pid);
      const e3 = await rejection(s4.execute('get', { k: 'v' }));
      assert.equal(e3.code, 'PYFLEET_SESSION_REFUSED');
      assert.match(e3.message, /older than version/);
      assert.equal(existsSync(marker), false, 'no refused snapshot was unpickled');
    } finally {
      await p.close();
    }
  });

  it('a record swapped from another session, or an older record of the same key, is refused without being unpickled', async () => {
    const store = new TamperStore();
    const marker = tempFile('unpickled-record.txt');
    const p = await pool({ workers: 1, sessionStore: store, sessionKey: 'k' });
    try {
      // Records this large are kept apart from the manifest, under their digests.
      const pad = 40_000;
      const only = (x: StoredSession | undefined): Uint8Array => [...x!.records.values()][0];
      await p.session('other').execute('put_trap', { k: 'v', path: marker, pad });
      const theirs = only(await store.inner.get('other'));
      const mine = p.session('mine');
      await mine.execute('put_trap', { k: 'v', path: marker, pad });
      const older = only(await store.inner.get('mine'));
      await mine.execute('put', { k: 'v', v: 'x'.repeat(pad) });
      const now = (await store.inner.get('mine'))!;
      const ref = [...now.records.keys()][0];
      for (const [what, bytes] of [
        ['a record of another session', theirs],
        ['an older record of the same key', older],
      ] as const) {
        await p.closeSession('mine', { keepSnapshot: true });
        store.raw.set('mine', { manifest: now.manifest, records: new Map([[ref, bytes]]) });
        const e = await rejection(mine.execute('get', { k: 'v' }));
        assert.equal(e.code, 'PYFLEET_SESSION_REFUSED', what);
        assert.match(e.message, /record of key "v" does not match the digest its manifest names/, what);
      }
      assert.equal(existsSync(marker), false, 'no refused record was unpickled');
      // The control: the record the manifest names restores.
      store.raw.delete('mine');
      await p.closeSession('mine', { keepSnapshot: true });
      assert.equal(await mine.execute('get', { k: 'v' }), 'x'.repeat(pad));
      assert.equal(existsSync(marker), false);
    } finally {
      await p.close();
    }
  });

  it('a single-blob snapshot of an older pyfleet (format 1) in a file store is restored, and stored by key from its next call', async () => {
    const dir = tempDir();
    const data = execFileSync('python3', ['-c', 'import pickle, sys; sys.stdout.buffer.write(pickle.dumps({"x": "old", "n": [1]}, protocol=5))']);
    const key = Buffer.from('legacy key');
    const sid = Buffer.from('v1');
    const head = Buffer.alloc(12);
    head.writeUInt32BE(sid.length, 0);
    head.writeBigUInt64BE(7n, 4);
    const meta = Buffer.concat([head.subarray(0, 4), sid, head.subarray(4)]);
    const mac = createHmac('sha256', key).update('pyfleet-session-v1\0').update(meta).update(data).digest();
    const blob = `${sessionDir(dir, 'v1')}.snap`;
    writeFileSync(blob, Buffer.concat([Buffer.from('PFS1'), meta, mac, data]));
    const later = new Date(Date.now() + 60_000);
    utimesSync(blob, later, later);
    const a = await pool({ workers: 1, sessionStore: fileSessionStore(dir), sessionKey: 'legacy key' });
    try {
      const s = a.session('v1');
      assert.equal(await s.execute('get', { k: 'x' }), 'old');
      await s.execute('push', { k: 'n', v: 2 });
      assert.equal(existsSync(blob), false, 'the single blob is replaced by the session\'s manifest');
    } finally {
      await a.close();
    }
    const b = await pool({ workers: 1, sessionStore: fileSessionStore(dir), sessionKey: 'legacy key' });
    try {
      assert.deepEqual(await b.session('v1').execute('items', {}), [['n', [1, 2]], ['x', 'old']], 'every key, the ones not changed since included');
    } finally {
      await b.close();
    }
  });

  it('key rotation: a new first key signs, the old one still verifies', async () => {
    const dir = tempDir();
    const a = await pool({ workers: 1, sessionStore: fileSessionStore(dir), sessionKey: 'old' });
    try {
      await a.session('rot').execute('put', { k: 'x', v: 'before rotation' });
    } finally {
      await a.close();
    }
    const b = await pool({ workers: 1, sessionStore: fileSessionStore(dir), sessionKey: ['new', 'old'] });
    try {
      const s = b.session('rot');
      assert.equal(await s.execute('get', { k: 'x' }), 'before rotation');
      await s.execute('put', { k: 'x', v: 'after rotation' });
    } finally {
      await b.close();
    }
    const c = await pool({ workers: 1, sessionStore: fileSessionStore(dir), sessionKey: 'new' });
    try {
      assert.equal(await c.session('rot').execute('get', { k: 'x' }), 'after rotation', 'now signed with the new key');
    } finally {
      await c.close();
    }
  });
});

describe('durable sessions: fileSessionStore', () => {
  it('carries a session into a new pool with the same key', async () => {
    const dir = tempDir();
    const a = await pool({ sessionStore: fileSessionStore(dir), sessionKey: 'shared' });
    try {
      await a.session('carry').execute('put', { k: 'x', v: { deep: [1, 2] } });
    } finally {
      await a.close();
    }
    assert.deepEqual(readdirSync(dir).map((d) => readdirSync(path.join(dir, d))), [['manifest']], 'close() kept the session: its manifest, which holds its one small record');
    const b = await pool({ sessionStore: fileSessionStore(dir, { fsync: true }), sessionKey: 'shared' });
    try {
      assert.deepEqual(await b.session('carry').execute('get', { k: 'x' }), { deep: [1, 2] });
      assert.equal(b.stats().sessions.restored, 1);
    } finally {
      await b.close();
    }
  });

  it('a host SIGKILLed while writing snapshots leaves the previous one readable', async () => {
    const dir = tempDir();
    const script = path.join(FIXTURES, 'write-snapshots-forever.ts');
    const child = spawn(process.execPath, ['--import', 'tsx', script, dir], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, PYFLEET_LOG_LEVEL: 'silent' } });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    await until(() => (out.match(/stored \d+/g) ?? []).length >= 20, 20_000);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const stored = Number(/stored (\d+)/g.exec(out.split('\n').filter(Boolean).at(-1) ?? '')?.[1] ?? '0');
    assert.ok(stored >= 20);
    const p = await pool({ workers: 1, sessionStore: fileSessionStore(dir), sessionKey: 'crash' });
    try {
      const s = p.session('w');
      const n = await s.execute<number>('get', { k: 'n' });
      // The last version whose manifest was renamed in (the call that wrote it had resolved) or a later one, whole.
      assert.ok(typeof n === 'number' && n >= stored, `restored ${n}, the script had stored ${stored}`);
      const big = (await s.execute<string>('get', { k: 'big' })).length - 200_000;
      assert.ok(big === n || big === n + 1, `the big key of version ${big}, next to n ${n}`);
      // The next set collects what the killed writer left (records no manifest names, temporary files).
      await s.execute('put', { k: 'n', v: -1 });
      const d = sessionDir(dir, 'w');
      assert.deepEqual(readdirSync(d).sort(), ['manifest', ...namedRefs(d)].sort());
    } finally {
      await p.close();
    }
  });

  it('a host killed between writing the records and the manifest restores the previous version whole', async () => {
    const dir = tempDir();
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(FIXTURES, 'file-store-crash.ts'), dir], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, PYFLEET_LOG_LEVEL: 'silent' } });
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    try {
      await until(() => /stored 1 (\d+) ([0-9a-f]{64})\n/.test(out), 20_000);
      const pid = /stored 1 (\d+)/.exec(out)![1];
      const d = sessionDir(dir, 'c');
      const v1 = readdirSync(d).sort();
      // The store writes its manifest to manifest.<pid>.tmp: a FIFO there blocks that open until the kill.
      execFileSync('mkfifo', [path.join(d, `manifest.${pid}.tmp`)]);
      child.stdin!.write('go\n');
      // Version 2's record of the blob is in place (renamed, not temporary): the writer is on to the manifest.
      await until(() => readdirSync(d).some((f) => !v1.includes(f) && /^[0-9a-f]{64}$/.test(f)), 20_000);
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
    } finally {
      child.kill('SIGKILL');
    }
    const p = await pool({ workers: 1, sessionStore: fileSessionStore(dir), sessionKey: 'crash' });
    try {
      const s = p.session('c');
      const digest = /stored 1 \d+ ([0-9a-f]{64})/.exec(out)![1];
      assert.equal(await s.execute('digest', { k: 'blob' }), digest, 'the blob of version 1');
      assert.equal(await s.execute('get', { k: 'a' }), 1, 'and the small key of version 1, not 2');
      await s.execute('put', { k: 'a', v: 3 });
      const d = sessionDir(dir, 'c');
      assert.deepEqual(readdirSync(d).sort(), ['manifest', ...namedRefs(d)].sort(), 'version 2\'s record and the FIFO were collected');
    } finally {
      await p.close();
    }
  });
});
