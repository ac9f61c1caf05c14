import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hostPoolOptions } from '../src/fleet/host-pool-options.js';
import { MemorySessionStore } from '../src/index.js';

describe('hostPoolOptions', () => {
  const base = { module: 'handlers.py' };
  it('a shared store: durable, a key required, and a call whose snapshot the store refused fails', () => {
    const store = new MemorySessionStore();
    assert.throws(() => hostPoolOptions(base, { sessionStore: store }), /needs a sessionKey/);
    const h = hostPoolOptions(base, { sessionStore: store, sessionKey: 'k' }, { fence: () => 7 });
    assert.equal(h.durableSessions, true);
    assert.equal(h.options.snapshotFailure, 'fail', 'the next host would otherwise restore older state without a word');
    assert.equal(h.options.sessionKey, 'k');
  });
  it("'memory' and false keep sessions on the host, with the pool's defaults", () => {
    assert.equal(hostPoolOptions(base, { sessionStore: 'memory' }).durableSessions, false);
    assert.equal(hostPoolOptions(base, { sessionStore: 'memory' }).options.snapshotFailure, undefined);
    assert.equal(hostPoolOptions(base, { sessionStore: false }).options.sessionStore, false);
  });
});
