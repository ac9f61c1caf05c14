/**
 * Fleet protocol 2 (docs/fleet.md): a host and a client of another version are refused with a
 * clear error, never half-served. The other side is played by hand on a real nats-server: a
 * heartbeat of protocol 1 (an older host), a request without Pf-V (an older client) to a real host.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { connectFleet, type Fleet } from '../src/fleet/index.js';
import { fleetSubjects } from '../src/fleet/subjects.js';
import { FLEET_PROTOCOL } from '../src/fleet/version.js';
import { decodeError, H } from '../src/fleet/wire.js';
import { killAllHosts, orphansOf, startHostProc, type HostProc } from './helpers/fleet.js';
import { startNats, type NatsServer } from './helpers/nats.js';
import { quiet, rejection } from './helpers/pool.js';

describe('fleet protocol versions', () => {
  let srv: NatsServer;
  let nc: NatsConnection;
  let host: HostProc | null = null;

  before(async () => {
    srv = await startNats();
    nc = await connect({ servers: srv.url });
  });
  after(async () => {
    await nc?.close();
    host?.kill('SIGTERM');
    if (host !== null) await host.exited;
    await killAllHosts();
    if (host !== null) assert.deepEqual(await orphansOf([host.pid]), []);
    await srv?.dispose();
  });

  it('a client never routes to a host of another protocol, and says why no host could take the call', async () => {
    const fleet: Fleet = await connectFleet({ servers: srv.url, fleet: 'old', queueTimeoutMs: 600, logger: quiet });
    try {
      const s = fleetSubjects('old');
      // What a pyfleet 0.1 host announces: no protocol field, commands with their idempotency only.
      const old = { t: 'hb', id: 'old-host', fleet: 'old', seq: 1, state: 'up', intervalMs: 250, version: '0.1.0', moduleVersion: 'x', module: 'm.py', commands: { add: { idempotent: true } }, load: { inFlight: 0, queued: 0, capacity: 1 }, sessions: 0, durableSessions: false, pid: 1, hostname: 'h', startedAt: 0, pool: {} };
      const beat = setInterval(() => nc.publish(s.hosts, JSON.stringify(old)), 100);
      try {
        await new Promise((r) => setTimeout(r, 300));
        const e = await rejection(fleet.execute('add', { a: 1, b: 2 }));
        assert.equal(e.code, 'PYFLEET_NO_HOSTS');
        assert.match(e.message, new RegExp(`old-host \\(refused: it speaks fleet protocol 1, pyfleet 0\\.1\\.0; this client speaks ${FLEET_PROTOCOL}\\)`));
        assert.equal(fleet.stats().hosts.length, 0, 'the old host is not one of the fleet\'s');
      } finally {
        clearInterval(beat);
      }
    } finally {
      await fleet.close();
    }
  });

  it('a host refuses a request of another protocol as not taken, naming both versions', async () => {
    host = await startHostProc(srv.url, 'new');
    const h = headers();
    // What a pyfleet 0.1 client sends: no Pf-V.
    h.set(H.id, 'old-client.1');
    h.set(H.cmd, 'add');
    h.set(H.attempt, '1');
    h.set(H.timeout, '5000');
    const reply = await nc.request(fleetSubjects('new').call(host.id), JSON.stringify({ a: 1, b: 2 }), { headers: h, timeout: 5_000 });
    assert.equal(reply.headers?.get(H.status), 'err');
    const e = decodeError(reply.data, host.id);
    assert.equal(e.code, 'PYFLEET_PROTOCOL_ERROR');
    assert.equal(e.taken, false);
    assert.equal(e.retryable, false);
    assert.match(e.message, new RegExp(`speaks fleet protocol 1 and this side ${FLEET_PROTOCOL}`));
    // A client of this version is served by the same host.
    const fleet = await connectFleet({ servers: srv.url, fleet: 'new', logger: quiet });
    try {
      await fleet.ready({ hosts: 1, timeoutMs: 10_000 });
      assert.equal(await fleet.execute('add', { a: 1, b: 2 }), 3);
    } finally {
      await fleet.close();
    }
  });
});
