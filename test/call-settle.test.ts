import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PoolCall } from '../src/pool/call.js';
import { CallPolicy, type CallPolicyDeps } from '../src/call/policy.js';
import { Counters } from '../src/call/counters.js';
import { SessionTable } from '../src/pool/sessions.js';
import { subscribe } from '../src/telemetry/channels.js';
import { memoryLogger } from './helpers/pool.js';

describe('a call settles once', () => {
  it('a second settlement is counted (the chaos report\'s answeredTwice) and not delivered', () => {
    const counters = new Counters();
    const logger = memoryLogger();
    const sessions = new SessionTable({ drop() {}, advanced() {} });
    // Only what settle() touches; the rest of the pool is not involved in settling.
    const deps = { ownerId: 4242, counters, logger, settled: (c: PoolCall) => sessions.settled(c.session!, c, 0) } as unknown as CallPolicyDeps<PoolCall>;
    const policy = new CallPolicy(deps);
    const session = sessions.open('s', 0);
    const call = new PoolCall({ id: 7, command: 'add', info: { idempotent: true, kind: 'sync', stream: false, timeout: null, maxConcurrency: null, session: 'rw' }, args: {}, argsJson: '{}', sessionId: 's', idempotent: true, timeoutMs: 1000, signal: undefined, detailed: false }, session);
    sessions.enqueue(session, call);
    counters.started();
    const ends: unknown[] = [];
    const off = subscribe('call:end', (e) => {
      if (e.poolId === 4242) ends.push(e);
    });
    try {
      policy.settle(call, true, 'pool', null);
      assert.equal(counters.calls.settledTwice, 0);
      policy.settle(call, false, 'pool', null);
      assert.equal(counters.calls.settledTwice, 1);
      assert.equal(counters.calls.succeeded, 1);
      assert.equal(counters.calls.failed, 0, 'the second settlement was not applied');
      assert.equal(counters.calls.inFlight, 0);
      assert.equal(ends.length, 1);
      assert.ok(logger.entries.some((e) => e.level === 'error' && /settled twice/.test(e.msg)));
    } finally {
      off();
    }
  });
});
