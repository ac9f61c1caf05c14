/**
 * Faults across hosts, injected for real: SIGKILL of a host with calls in flight, SIGSTOP (a
 * host that hangs without dying), and a NATS server restarted under load.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connectFleet, type Fleet } from '../src/fleet/index.js';
import { PoolError, isPoolError } from '../src/errors/pool-error.js';
import { lines } from './helpers/pool.js';
import { DURABLE, killAllHosts, nextEvent, orphansOf, startHostProc, type HostProc } from './helpers/fleet.js';
import { startNats, type NatsServer } from './helpers/nats.js';

const ledgerDir = mkdtempSync(path.join(tmpdir(), 'pyfleet-fleet-ledger-'));
const LEDGER = path.join(ledgerDir, 'ledger.txt');
const env = { FLEET_LEDGER: LEDGER };

type Settled = { ok: true; value: unknown; hostId: string; at: number } | { ok: false; error: PoolError; at: number };
function settle(p: Promise<{ value: unknown; hostId: string }>): Promise<Settled> {
  return p.then(
    (r) => ({ ok: true as const, value: r.value, hostId: r.hostId, at: performance.now() }),
    (e: unknown) => {
      assert.ok(isPoolError(e), `a PoolError, got ${String(e)}`);
      return { ok: false as const, error: e, at: performance.now() };
    },
  );
}

describe('faults across hosts', () => {
  let srv: NatsServer;
  let fleet: Fleet;
  const pids: number[] = [];
  const start = async (workers = 2, fleetName = 'faults', args: string[] = DURABLE): Promise<HostProc> => {
    const h = await startHostProc(srv.url, fleetName, { workers, env, args });
    pids.push(h.pid);
    return h;
  };

  before(async () => {
    srv = await startNats();
    fleet = await connectFleet({ servers: srv.url, fleet: 'faults', requestTimeoutMs: 10_000, queueTimeoutMs: 4_000 });
  });
  after(async () => {
    await fleet?.close();
    await killAllHosts();
    assert.deepEqual(await orphansOf(pids), [], 'no host or worker process outlives the suite');
    await srv?.dispose();
  });

  it('a host SIGKILLed with calls in flight: idempotent ones answered by another host within 2 s, non-idempotent ones fail saying they may have run, its sessions are restored elsewhere', async () => {
    // Four workers each, so the surviving host has free workers for the calls that move to it.
    const [a, b] = await Promise.all([start(4), start(4)]);
    await fleet.ready({ hosts: 2 });
    // A session on each host, so one of them lives on the host we kill.
    const sids = Array.from({ length: 6 }, (_, i) => `kill-${i}`);
    for (const sid of sids) await fleet.execute('append', { x: 1 }, { sessionId: sid });
    const places = await Promise.all(sids.map((s) => fleet.sessionPlace(s)));
    const onA = sids.filter((_, i) => places[i]?.host === a.id);
    assert.ok(onA.length > 0, 'some session lives on the host to kill');

    // The least-loaded pick puts one record call on each host, then spreads the sleeps.
    const tokens = Array.from({ length: 2 }, (_, i) => `tok-${i}-${Date.now()}`);
    const rec = tokens.map((token) => settle(fleet.execute('record', { token, ms: 2_000 }, { detailed: true })));
    const idem = Array.from({ length: 4 }, (_, i) => settle(fleet.execute('sleep', { ms: 300, tag: i }, { detailed: true })));
    await new Promise((r) => setTimeout(r, 150)); // let the hosts' workers take them
    const dead = nextEvent(fleet, 'host:dead', (p) => p.hostId === a.id);
    const killedAt = performance.now();
    a.kill('SIGKILL');

    const rs = await Promise.all(idem);
    for (const r of rs) {
      assert.ok(r.ok, `idempotent call answered: ${r.ok ? '' : r.error.message}`);
      assert.equal(r.hostId, b.id);
    }
    const slowest = Math.max(...rs.map((r) => r.at - killedAt));
    assert.ok(slowest < 2_000, `answered by the other host ${Math.round(slowest)} ms after the kill`);
    const ev = await dead;
    assert.ok(ev.at - killedAt < 1_500, `host:dead after ${Math.round(ev.at - killedAt)} ms`);

    const records = await Promise.all(rec);
    const failed = records.filter((r): r is Extract<Settled, { ok: false }> => !r.ok);
    assert.equal(failed.length, 1, 'the record call on the killed host failed, the other succeeded');
    for (const f of failed) {
      assert.equal(f.error.code, 'PYFLEET_HOST_LOST');
      assert.equal(f.error.category, 'connection_error');
      assert.equal(f.error.taken, true);
      assert.match(f.error.message, /may have run/);
    }
    const ledger = lines(LEDGER);
    assert.equal(new Set(ledger).size, ledger.length, 'no record call ran twice');
    for (const r of records) if (r.ok) assert.ok(ledger.includes(r.value as string));

    // A session whose host died is moved to a live host and restored there from its snapshot.
    for (const sid of onA) assert.deepEqual(await fleet.execute('items', {}, { sessionId: sid }), [1], `${sid} restored`);
    const place = await fleet.sessionPlace(onA[0]);
    assert.equal(place?.host, b.id);
    assert.equal(place?.epoch, 1);
    assert.deepEqual(await fleet.execute('append', { x: 7 }, { sessionId: onA[0] }), [1, 7]);
    // Sessions on the live host kept their state.
    const kept = sids.find((s) => !onA.includes(s))!;
    assert.deepEqual(await fleet.execute('items', {}, { sessionId: kept }), [1]);
    for (const sid of sids) await fleet.closeSession(sid);
    assert.deepEqual(await orphansOf([a.pid]), [], 'the killed host left no worker behind');
    assert.equal((await a.exited).signal, 'SIGKILL');
    b.kill('SIGTERM');
    await b.exited;
  });

  it('without a session store (--session-store memory) a session whose host was SIGKILLed fails with PYFLEET_SESSION_LOST, never silently empty', async () => {
    const [a, b] = await Promise.all([start(1, 'faults-mem', ['--session-store', 'memory']), start(1, 'faults-mem', ['--session-store', 'memory'])]);
    const f = await connectFleet({ servers: srv.url, fleet: 'faults-mem', queueTimeoutMs: 4_000 });
    try {
      await f.ready({ hosts: 2 });
      let sid = '';
      for (let i = 0; ; i++) {
        sid = `mem-${Date.now()}-${i}`;
        await f.execute('append', { x: 1 }, { sessionId: sid });
        if ((await f.sessionPlace(sid))?.host === a.id) break;
        await f.closeSession(sid);
      }
      const dead = nextEvent(f, 'host:dead', (p) => p.hostId === a.id);
      a.kill('SIGKILL');
      await dead;
      const lost = await f.execute('items', {}, { sessionId: sid }).then(
        () => assert.fail('a moved session must not be silently empty'),
        (e: PoolError) => e,
      );
      assert.equal(lost.code, 'PYFLEET_SESSION_LOST');
      assert.equal(lost.taken, false);
      assert.match(lost.message, /--session-store nats/);
      await f.closeSession(sid);
      assert.deepEqual(await f.execute('append', { x: 7 }, { sessionId: sid }), [7]);
      await f.closeSession(sid);
    } finally {
      await f.close();
      b.kill('SIGTERM');
      await b.exited;
    }
  });

  it('a host that hangs (SIGSTOP) is suspected, then dead; calls go elsewhere; it rejoins after SIGCONT', async () => {
    const [a, b] = await Promise.all([start(), start()]);
    await fleet.ready({ hosts: 2 });
    const suspected = nextEvent(fleet, 'host:suspected', (p) => p.hostId === a.id);
    const dead = nextEvent(fleet, 'host:dead', (p) => p.hostId === a.id);
    const inflight = Array.from({ length: 6 }, (_, i) => settle(fleet.execute('sleep', { ms: 300, tag: i }, { detailed: true })));
    await new Promise((r) => setTimeout(r, 100));
    const stoppedAt = performance.now();
    a.kill('SIGSTOP');
    const s = await suspected;
    assert.ok(s.at - stoppedAt < 1_500, `suspected after ${Math.round(s.at - stoppedAt)} ms`);
    // Suspected: new calls avoid it at once.
    const during = await Promise.all(Array.from({ length: 6 }, () => fleet.execute('add', { a: 1, b: 2 }, { detailed: true })));
    assert.ok(during.every((r) => r.hostId === b.id));
    const d = await dead;
    assert.ok(d.at - stoppedAt < 3_000, `dead after ${Math.round(d.at - stoppedAt)} ms`);
    const rs = await Promise.all(inflight);
    for (const r of rs) assert.ok(r.ok, `idempotent calls re-sent elsewhere: ${r.ok ? '' : r.error.message}`);
    const rejoined = nextEvent(fleet, 'host:joined', (p) => p.hostId === a.id);
    a.kill('SIGCONT');
    await rejoined;
    await fleet.ready({ hosts: 2 });
    a.kill('SIGTERM');
    b.kill('SIGTERM');
    await Promise.all([a.exited, b.exited]);
  });

  it('a NATS server restarted under load: the client reconnects, every call settles, none hangs; during a long outage calls fail with connection_error after queueTimeoutMs', async () => {
    const [a, b] = await Promise.all([start(), start()]);
    await fleet.ready({ hosts: 2 });
    let stop = false;
    const results: Settled[] = [];
    const worker = async (k: number): Promise<void> => {
      for (let i = 0; !stop; i++) results.push(await settle(fleet.execute('sleep', { ms: 20, tag: k * 10_000 + i }, { detailed: true })));
    };
    const loops = Array.from({ length: 8 }, (_, k) => worker(k));
    await new Promise((r) => setTimeout(r, 500));
    await srv.stop();
    // A long outage: a call made now waits queueTimeoutMs (4 s), then fails as not sent.
    const t0 = performance.now();
    const e = await fleet.execute('add', { a: 1, b: 1 }).then(
      () => assert.fail('no NATS: the call cannot succeed'),
      (err: PoolError) => err,
    );
    const waited = performance.now() - t0;
    assert.equal(e.code, 'PYFLEET_NATS_UNAVAILABLE');
    assert.equal(e.category, 'connection_error');
    assert.ok(waited >= 3_500 && waited < 5_500, `failed after ${Math.round(waited)} ms`);
    await srv.restart();
    const okAfter = await fleet.execute('add', { a: 2, b: 2 });
    assert.equal(okAfter, 4);
    await new Promise((r) => setTimeout(r, 500));
    stop = true;
    // The guard's timer is cleared: left running it would keep this test file's process alive for 20 s.
    let guard: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(loops), new Promise((_, rej) => (guard = setTimeout(() => rej(new Error('calls hang after the restart')), 20_000)))]).finally(() => clearTimeout(guard));
    const failures = results.filter((r): r is Extract<Settled, { ok: false }> => !r.ok);
    for (const f of failures) assert.equal(f.error.category, 'connection_error', f.error.message);
    assert.ok(results.filter((r) => r.ok).length > 50);
    const tags = results.filter((r) => r.ok).map((r) => ((r as { value: { tag: number } }).value.tag));
    assert.equal(new Set(tags).size, tags.length, 'no call answered twice');
    a.kill('SIGTERM');
    b.kill('SIGTERM');
    await Promise.all([a.exited, b.exited]);
  });
});
