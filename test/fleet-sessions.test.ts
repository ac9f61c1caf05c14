/**
 * Durable sessions across hosts: `pyfleet host --session-store nats --session-key K` processes
 * share natsSessionStore; a host SIGKILLed or hung has its sessions restored on another host
 * from their snapshots, never older than the last completed call, never another session's.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connectFleet, type Fleet } from '../src/fleet/index.js';
import { PoolError, isPoolError } from '../src/errors/pool-error.js';
import { DURABLE, killAllHosts, linesOf, nextEvent, orphansOf, startHostProc, type HostProc } from './helpers/fleet.js';
import { tempFile } from './helpers/pool.js';
import { startNats, type NatsServer } from './helpers/nats.js';

type Settled<T> = { ok: true; value: T } | { ok: false; error: PoolError };
const settle = <T>(p: Promise<T>): Promise<Settled<T>> =>
  p.then(
    (value) => ({ ok: true as const, value }),
    (e: unknown) => {
      assert.ok(isPoolError(e), `a PoolError, got ${String(e)}`);
      return { ok: false as const, error: e };
    },
  );

describe('durable sessions across hosts', () => {
  let srv: NatsServer;
  let fleet: Fleet;
  const pids: number[] = [];
  const start = async (fleetName = 'durable', workers = 2): Promise<HostProc> => {
    const h = await startHostProc(srv.url, fleetName, { workers, args: DURABLE });
    pids.push(h.pid);
    return h;
  };

  before(async () => {
    srv = await startNats();
    fleet = await connectFleet({ servers: srv.url, fleet: 'durable', requestTimeoutMs: 10_000, queueTimeoutMs: 5_000 });
  });
  after(async () => {
    await fleet?.close();
    await killAllHosts();
    assert.deepEqual(await orphansOf(pids), [], 'no host or worker process outlives the suite');
    await srv?.dispose();
  });

  it('pyfleet host --session-store nats without a session key refuses to start, saying what to give', async () => {
    const e = await startHostProc(srv.url, 'nokey', { args: ['--session-store', 'nats'] }).then(
      () => assert.fail('a durable host without a key must not start'),
      (err: Error & { stderr?: string; code?: number }) => err,
    );
    assert.match(e.stderr ?? '', /needs a session key \(--session-key or \$PYFLEET_SESSION_KEY\)/);
  });

  it('a host SIGKILLed: its sessions are restored on another host, never older than the last completed call; the map says where they went', async () => {
    const [a, b] = await Promise.all([start(), start()]);
    await fleet.ready({ hosts: 2 });
    const sids = Array.from({ length: 6 }, (_, i) => `kill-${Date.now()}-${i}`);
    for (const sid of sids) {
      await fleet.execute('append', { x: `${sid}:1` }, { sessionId: sid });
      await fleet.execute('append', { x: `${sid}:2` }, { sessionId: sid });
    }
    const places = await Promise.all(sids.map((s) => fleet.sessionPlace(s)));
    const onA = sids.filter((_, i) => places[i]?.host === a.id);
    const onB = sids.filter((_, i) => places[i]?.host === b.id);
    assert.ok(onA.length > 0 && onB.length > 0, `sessions on both hosts: ${onA.length}/${onB.length}`);
    // A non-idempotent session call in flight on the host that dies: it may or may not have run.
    const started = tempFile('started.txt');
    const inflight = settle(fleet.execute<string[]>('append', { x: `${onA[0]}:3`, ms: 3_000, started }, { sessionId: onA[0] }));
    // It reached a worker of the host about to die (it notes its host as it starts; 3 s of work left).
    assert.deepEqual(await linesOf(started, 1), [`append-${onA[0]}:3 ${a.pid}`]);
    const dead = nextEvent(fleet, 'host:dead', (p) => p.hostId === a.id);
    a.kill('SIGKILL');
    await dead;
    const r = await inflight;
    assert.ok(!r.ok, 'the call in flight on the killed host did not complete');
    assert.equal(r.error.code, 'PYFLEET_HOST_LOST');
    assert.match(r.error.message, /may have run/);

    for (const sid of sids) {
      const items = await fleet.execute<string[]>('items', {}, { sessionId: sid });
      assert.deepEqual(items, [`${sid}:1`, `${sid}:2`], `${sid}: restored with every completed call, nothing of another session`);
    }
    for (const sid of onA) {
      const p = await fleet.sessionPlace(sid);
      assert.equal(p?.host, b.id, 'moved in the session map');
      assert.equal(p?.epoch, 1);
    }
    // Restored sessions go on from their state.
    assert.deepEqual(await fleet.execute('append', { x: `${onA[0]}:4` }, { sessionId: onA[0] }), [`${onA[0]}:1`, `${onA[0]}:2`, `${onA[0]}:4`]);
    const hb = fleet.stats().hosts.find((h) => h.id === b.id)!;
    assert.equal(hb.durableSessions, true);
    for (const sid of sids) await fleet.closeSession(sid);
    assert.deepEqual(await fleet.execute('items', {}, { sessionId: sids[0] }), [], 'a closed session starts empty');
    await fleet.closeSession(sids[0]);
    assert.deepEqual(await orphansOf([a.pid]), []);
    b.kill('SIGTERM');
    await b.exited;
  });

  it('a closed session whose host died starts empty when placed again (its snapshot is deleted by a live host)', async () => {
    const [a, b] = await Promise.all([start(), start()]);
    await fleet.ready({ hosts: 2 });
    let sid = '';
    let holder: HostProc | undefined;
    for (let i = 0; holder === undefined; i++) {
      sid = `closed-${Date.now()}-${i}`;
      await fleet.execute('append', { x: 1 }, { sessionId: sid });
      const p = await fleet.sessionPlace(sid);
      holder = p?.host === a.id ? a : undefined;
      if (holder === undefined) await fleet.closeSession(sid);
    }
    const dead = nextEvent(fleet, 'host:dead', (p) => p.hostId === a.id);
    a.kill('SIGKILL');
    await dead;
    await fleet.closeSession(sid);
    assert.deepEqual(await fleet.execute('items', {}, { sessionId: sid }), []);
    await fleet.closeSession(sid);
    b.kill('SIGTERM');
    await b.exited;
  });

  it('two client replicas using one session, across the SIGKILL of its host: one at a time, each in its order, nothing lost', async () => {
    const [a, b] = await Promise.all([start(), start()]);
    const other = await connectFleet({ servers: srv.url, fleet: 'durable', requestTimeoutMs: 10_000 });
    try {
      await Promise.all([fleet.ready({ hosts: 2 }), other.ready({ hosts: 2 })]);
      const sid = `shared-${Date.now()}`;
      const run = async (f: Fleet, base: number): Promise<number[]> => {
        const done: number[] = [];
        for (let i = 0; i < 8; i++) {
          const r = await settle(f.execute<number[]>('append', { x: base + i, ms: 40 }, { sessionId: sid }));
          if (r.ok) done.push(base + i);
          else assert.equal(r.error.code, 'PYFLEET_HOST_LOST', r.error.message);
        }
        return done;
      };
      const runs = Promise.all([run(fleet, 100), run(other, 200)]);
      // Kill the session's holder while both replicas are using it.
      let place = await fleet.sessionPlace(sid);
      while (place === null) place = await fleet.sessionPlace(sid);
      await new Promise((r) => setTimeout(r, 150));
      const victim = place.host === a.id ? a : b;
      victim.kill('SIGKILL');
      const [doneA, doneB] = await runs;
      const final = await fleet.execute<number[]>('items', {}, { sessionId: sid });
      // Completed calls are all there, in each replica's order; a failed one ("may have run") may be too.
      for (const x of [...doneA, ...doneB]) assert.ok(final.includes(x), `completed ${x} is in ${final.join(',')}`);
      const mine = final.filter((x) => x < 200);
      const theirs = final.filter((x) => x >= 200);
      assert.deepEqual(mine, [...mine].sort((x, y) => x - y));
      assert.deepEqual(theirs, [...theirs].sort((x, y) => x - y));
      assert.equal(new Set(final).size, final.length, 'no call ran twice');
      const after = await other.sessionPlace(sid);
      assert.notEqual(after?.host, victim.id);
      await other.closeSession(sid);
    } finally {
      await other.close();
      for (const h of [a, b]) h.kill('SIGTERM');
      await Promise.all([a.exited, b.exited]);
    }
  });

  it('a host that hung (SIGSTOP) and came back holds a stale copy: when the session returns to it, the newer state is restored', async () => {
    const [a, b] = await Promise.all([start(), start()]);
    await fleet.ready({ hosts: 2 });
    let sid = '';
    for (let i = 0; ; i++) {
      sid = `stale-${Date.now()}-${i}`;
      await fleet.execute('append', { x: 1 }, { sessionId: sid });
      if ((await fleet.sessionPlace(sid))?.host === a.id) break;
      await fleet.closeSession(sid);
    }
    const dead = nextEvent(fleet, 'host:dead', (p) => p.hostId === a.id);
    a.kill('SIGSTOP');
    await dead;
    // Moved to b, restored there from a's snapshot, then changed there.
    assert.deepEqual(await fleet.execute('append', { x: 2 }, { sessionId: sid }), [1, 2]);
    assert.equal((await fleet.sessionPlace(sid))?.host, b.id);
    const back = nextEvent(fleet, 'host:joined', (p) => p.hostId === a.id);
    a.kill('SIGCONT');
    await back;
    // Now b dies: the session goes back to a, which still has [1] in its worker.
    const bDead = nextEvent(fleet, 'host:dead', (p) => p.hostId === b.id);
    b.kill('SIGKILL');
    await bDead;
    assert.deepEqual(await fleet.execute('append', { x: 3 }, { sessionId: sid }), [1, 2, 3], 'the state b left, not a\'s stale copy');
    const p = await fleet.sessionPlace(sid);
    assert.equal(p?.host, a.id);
    assert.equal(p?.epoch, 2);
    await fleet.closeSession(sid);
    a.kill('SIGTERM');
    await a.exited;
  });
});
