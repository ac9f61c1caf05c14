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
import { lines, until } from './helpers/pool.js';
import { DURABLE, killAllHosts, linesOf, nextEvent, orphansOf, startHostProc, type HostProc } from './helpers/fleet.js';
import { startNats, type NatsServer } from './helpers/nats.js';

const ledgerDir = mkdtempSync(path.join(tmpdir(), 'pyfleet-fleet-ledger-'));
const LEDGER = path.join(ledgerDir, 'ledger.txt');
const env = { FLEET_LEDGER: LEDGER };

type Settled = { ok: true; value: unknown; hostId: string; attempts: number; at: number } | { ok: false; error: PoolError; at: number };
function settle(p: Promise<{ value: unknown; hostId: string; attempts: number }>): Promise<Settled> {
  return p.then(
    (r) => ({ ok: true as const, value: r.value, hostId: r.hostId, attempts: r.attempts, at: performance.now() }),
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
    const started = path.join(ledgerDir, `started-${Date.now()}.txt`);
    // On the host to kill they run 10 s: still running at the kill, however loaded the machine.
    const slow = { started, slow_on: a.pid, slow_ms: 10_000 };
    const rec = tokens.map((token) => settle(fleet.execute('record', { token, ms: 2_000, ...slow }, { detailed: true })));
    const idem = Array.from({ length: 4 }, (_, i) => settle(fleet.execute('sleep', { ms: 300, tag: i, ...slow }, { detailed: true })));
    // Each call notes its host's pid as a worker starts it: kill once all six run.
    const running = await linesOf(started, 6);
    const onKilled = running.filter((l) => l.endsWith(` ${a.pid}`)).map((l) => l.split(' ')[0]);
    assert.ok(onKilled.some((n) => n.startsWith('sleep-')), `an idempotent call runs on the host to kill: ${running.join(', ')}`);
    const dead = nextEvent(fleet, 'host:dead', (p) => p.hostId === a.id);
    const killedAt = performance.now();
    a.kill('SIGKILL');

    const rs = await Promise.all(idem);
    for (const [i, r] of rs.entries()) {
      assert.ok(r.ok, `idempotent call answered: ${r.ok ? '' : r.error.message}`);
      assert.equal(r.hostId, b.id);
      // The calls that were running on the killed host were re-sent: a second attempt answered them.
      assert.equal(r.attempts, onKilled.includes(`sleep-${i}`) ? 2 : 1, `sleep ${i} ran on ${running.join(', ')}`);
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
    // Three workers each: the four calls below all run at once, wherever the pick puts them.
    const [a, b] = await Promise.all([start(3), start(3)]);
    await fleet.ready({ hosts: 2 });
    const suspected = nextEvent(fleet, 'host:suspected', (p) => p.hostId === a.id);
    const dead = nextEvent(fleet, 'host:dead', (p) => p.hostId === a.id);
    // Each call notes its host as it starts; on the host to stop it runs long enough to be caught there.
    const started = path.join(ledgerDir, `started-stop-${Date.now()}.txt`);
    const inflight = Array.from({ length: 4 }, (_, i) => settle(fleet.execute('sleep', { ms: 300, tag: i, started, slow_on: a.pid, slow_ms: 3_000 }, { detailed: true })));
    const running = await linesOf(started, 4);
    const onStopped = running.filter((l) => l.endsWith(` ${a.pid}`)).map((l) => l.split(' ')[0]);
    assert.ok(onStopped.length > 0, `a call runs on the host to stop: ${running.join(', ')}`);
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
    for (const [i, r] of rs.entries()) {
      assert.ok(r.ok, `idempotent calls re-sent elsewhere: ${r.ok ? '' : r.error.message}`);
      // Those the stopped host held were answered by the other one, on a second attempt.
      if (onStopped.includes(`sleep-${i}`)) assert.deepEqual([r.hostId, r.attempts], [b.id, 2], `sleep ${i}`);
    }
    const rejoined = nextEvent(fleet, 'host:joined', (p) => p.hostId === a.id);
    a.kill('SIGCONT');
    await rejoined;
    await fleet.ready({ hosts: 2 });
    a.kill('SIGTERM');
    b.kill('SIGTERM');
    await Promise.all([a.exited, b.exited]);
  });

  it('a NATS server restarted under load: calls in flight are re-sent and none runs twice, every call settles with its own answer; during a long outage calls fail with connection_error after queueTimeoutMs', async () => {
    const [a, b] = await Promise.all([start(), start()]);
    await fleet.ready({ hosts: 2 });
    const run = `nats-${Date.now()}`;
    let stop = false;
    type Sent = { kind: 'sleep' | 'record'; id: string; r: Settled };
    const results: Sent[] = [];
    // Half the loops send idempotent sleeps, half non-idempotent records (each appends its token to the ledger once).
    const loop = async (k: number): Promise<void> => {
      const kind = k % 2 === 0 ? 'sleep' : 'record';
      for (let i = 0; !stop; i++) {
        const id = `${run}-${k}-${i}`;
        const call = kind === 'sleep' ? fleet.execute('sleep', { ms: 20, tag: id }, { detailed: true }) : fleet.execute('record', { token: id, ms: 20 }, { detailed: true });
        results.push({ kind, id, r: await settle(call) });
      }
    };
    const settledAtLeast = (n: number): Promise<void> => until(() => results.length >= n, 30_000);
    const loops = Array.from({ length: 8 }, (_, k) => loop(k));
    await settledAtLeast(40);

    // A short restart: the calls in flight wait for the reconnect, then are re-sent to their host,
    // which answers a call id it knows from its reply cache instead of running it again.
    const resentBefore = fleet.stats().calls.resent;
    await srv.restart();
    await settledAtLeast(results.length + 40);
    assert.ok(fleet.stats().calls.resent > resentBefore, 'calls in flight across the restart were re-sent');

    // A long outage: a call made now waits queueTimeoutMs (4 s), then fails as not sent.
    await srv.stop();
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
    await settledAtLeast(results.length + 20);
    stop = true;
    // The guard's timer is cleared: left running it would keep this test file's process alive for 20 s.
    let guard: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(loops), new Promise((_, rej) => (guard = setTimeout(() => rej(new Error('calls hang after the restart')), 20_000)))]).finally(() => clearTimeout(guard));

    for (const { r } of results) if (!r.ok) assert.equal(r.error.category, 'connection_error', r.error.message);
    const ok = results.filter((x) => x.r.ok);
    assert.ok(ok.length > 50);
    // Each answer is its own call's: a reply delivered to another call would show another id.
    for (const { kind, id, r } of ok) assert.equal(kind === 'sleep' ? ((r as { value: { tag: string } }).value.tag) : (r as { value: string }).value, id);
    // No call ran twice: the re-sent records appear once each in the ledger, and every one that succeeded is there.
    const ledger = lines(LEDGER).filter((l) => l.startsWith(`${run}-`));
    assert.equal(new Set(ledger).size, ledger.length, `a record ran twice: ${ledger.filter((l, i) => ledger.indexOf(l) !== i).join(', ')}`);
    for (const { kind, id } of ok) if (kind === 'record') assert.ok(ledger.includes(id), `${id} succeeded without its side effect`);
    for (const { kind, id, r } of results) if (kind === 'record' && !r.ok && !r.error.taken) assert.ok(!ledger.includes(id), `${id} said "not sent" but ran`);
    a.kill('SIGTERM');
    b.kill('SIGTERM');
    await Promise.all([a.exited, b.exited]);
  });
});
