/**
 * pyfleet:* diagnostics_channel events fire with their documented payloads for real failures
 * of real Python workers: an exception, a worker SIGKILLed while idle and while busy, a timeout.
 */
import assert from 'node:assert/strict';
import diagnostics_channel from 'node:diagnostics_channel';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createPool, type Pool } from '../src/pool/pool.js';
import { EVENT_NAMES, channels, subscribe, type EventName, type EventPayloads } from '../src/telemetry/channels.js';
import { onPoolClosing } from '../src/telemetry/source.js';
import { alive, quiet, until } from './helpers/pool.js';

const EXAMPLES = fileURLToPath(new URL('../examples/handlers.py', import.meta.url));
const FAST = { connection_error: { delays: [10, 20, 40] }, communication_error: { delays: [0, 10, 20] } };

type Seen = { [K in EventName]: Array<EventPayloads[K]> };

/** Records every event of `pool` (through the typed helper) until the returned stop is called. */
function record(pool: Pool): { seen: Seen; stop: () => void } {
  const seen = Object.fromEntries(EVENT_NAMES.map((n) => [n, []])) as unknown as Seen;
  const offs = EVENT_NAMES.map((n) => pool.on(n, (p) => (seen[n] as unknown[]).push(p)));
  return { seen, stop: () => offs.forEach((o) => o()) };
}

const pools: Pool[] = [];
async function pool(opts: Partial<Parameters<typeof createPool>[0]> = {}): Promise<Pool> {
  const p = await createPool({ module: EXAMPLES, workers: 2, logger: quiet, policy: FAST, cancelGraceMs: 300, ...opts });
  pools.push(p);
  return p;
}
after(async () => {
  const pids = pools.flatMap((p) => p.pids());
  await Promise.all(pools.map((p) => p.close()));
  await until(() => pids.every((pid) => !alive(pid)));
});

describe('telemetry events', () => {
  it('declares one pyfleet:<event> channel per event, published only when someone listens', () => {
    for (const n of EVENT_NAMES) {
      assert.equal(channels[n], diagnostics_channel.channel(`pyfleet:${n}`), n);
    }
    for (const n of ['pool:error', 'circuit:opened', 'circuit:half_open', 'circuit:closed', 'retry:attempt', 'retry:exhausted', 'recovery:complete', 'worker:transition', 'worker:exit', 'call:start', 'call:end'] as const) {
      assert.ok((EVENT_NAMES as readonly string[]).includes(n), `${n} is an event`);
    }
  });

  it('a Python exception: call:start, pool:error (python_error) and call:end with the documented fields', async () => {
    const p = await pool();
    const { seen, stop } = record(p);
    const t0 = performance.now();
    await assert.rejects(p.execute('fail', { message: 'nope' }, { sessionId: 's1' }), { code: 'PYFLEET_PYTHON_ERROR' });
    const elapsed = performance.now() - t0;
    stop();
    assert.equal(seen['call:start'].length, 1);
    const start = seen['call:start'][0];
    assert.deepEqual(Object.keys(start).sort(), ['callId', 'command', 'poolId', 'sessionId', 'stream']);
    assert.equal(start.stream, false);
    assert.equal(start.poolId, p.id);
    assert.equal(start.command, 'fail');
    assert.equal(start.sessionId, 's1');
    assert.equal(typeof start.callId, 'number');

    assert.equal(seen['pool:error'].length, 1);
    const e = seen['pool:error'][0];
    assert.equal(e.poolId, p.id);
    assert.equal(e.code, 'PYFLEET_PYTHON_ERROR');
    assert.equal(e.category, 'python_error');
    assert.equal(e.severity, 'major');
    assert.equal(e.strategy, 'abandon', 'no fallback: the pool did not fail over');
    assert.equal(e.command, 'fail');
    assert.equal(e.sessionId, 's1');
    assert.equal(e.attempt, 1);
    assert.ok(typeof e.workerId === 'number' && p.stats().workers.some((w) => w.id === e.workerId));
    // The attempt took some time, and no more than the caller waited.
    assert.ok(e.durationMs > 0 && e.durationMs <= elapsed, `attempt ${e.durationMs} ms, call ${elapsed} ms`);
    assert.match(e.message, /ValueError: nope/);

    assert.equal(seen['call:end'].length, 1);
    const end = seen['call:end'][0];
    assert.equal(end.poolId, p.id);
    assert.equal(end.callId, start.callId);
    assert.equal(end.ok, false);
    assert.equal(end.code, 'PYFLEET_PYTHON_ERROR');
    assert.equal(end.command, 'fail');
    assert.equal(end.sessionId, 's1');
    assert.equal(end.attempts, 1);
    assert.equal(end.via, 'pool');
    assert.deepEqual([end.stream, end.items], [false, 0]);
    assert.ok(end.durationMs >= e.durationMs && end.durationMs <= elapsed, `call:end ${end.durationMs} ms, attempt ${e.durationMs} ms, caller ${elapsed} ms`);
    // No worker died for a Python exception.
    assert.equal(seen['worker:exit'].length, 0);
  });

  it('a worker SIGKILLed while idle: transition to terminated, worker:exit with the signal, a new worker ready (the supervisor\'s doing, not a recovery)', async () => {
    const created = performance.now();
    const p = await pool();
    const ready = performance.now();
    const { seen, stop } = record(p);
    const stamps: Array<{ to: string; at: number }> = [];
    const offStamps = p.on('worker:transition', (t) => stamps.push({ to: t.to, at: performance.now() }));
    const victim = p.stats().workers[0];
    const killedAt = performance.now();
    process.kill(victim.pid!, 'SIGKILL');
    await until(() => seen['worker:exit'].length > 0 && p.stats().workers.filter((w) => w.state === 'ready').length === 2);
    stop();
    offStamps();
    const exit = seen['worker:exit'].find((x) => x.workerId === victim.id);
    assert.deepEqual(exit, { poolId: p.id, workerId: victim.id, pid: victim.pid, exitCode: null, signal: 'SIGKILL', reason: 'killed by SIGKILL' });
    const toTerminated = seen['worker:transition'].find((t) => t.workerId === victim.id && t.to === 'terminated');
    assert.ok(toTerminated, 'a transition to terminated');
    assert.equal(toTerminated.poolId, p.id);
    assert.equal(toTerminated.pid, victim.pid);
    assert.equal(toTerminated.reason, 'killed by SIGKILL');
    // durationMs is the time spent in `from`: in ready, since its hello (while createPool ran) until
    // after the kill; in terminating, no longer than from the kill to the event.
    const toTerminating = seen['worker:transition'].find((t) => t.workerId === victim.id && t.to === 'terminating')!;
    const terminatedAt = stamps.find((x) => x.to === 'terminated')!.at;
    assert.ok(toTerminating.durationMs >= killedAt - ready && toTerminating.durationMs <= terminatedAt - created, `in ready ${toTerminating.durationMs} ms`);
    assert.ok(toTerminated.durationMs <= terminatedAt - killedAt, `in terminating ${toTerminated.durationMs} ms, killed ${terminatedAt - killedAt} ms before`);
    const path = seen['worker:transition'].filter((t) => t.workerId === victim.id).map((t) => `${t.from}->${t.to}`);
    assert.deepEqual(path, ['ready->terminating', 'terminating->terminated']);
    assert.equal(seen['recovery:complete'].length, 0, 'one owner replaces dead workers: the supervisor');
    assert.equal(p.stats().restarts.byReason.crash, 1);
    const born = seen['worker:transition'].find((t) => t.from === 'initializing' && t.to === 'ready');
    assert.ok(born && born.workerId !== victim.id && born.reason === 'hello', 'the replacement said hello');
    // An idle worker's death is not a call's error.
    assert.equal(seen['pool:error'].length, 0);
  });

  it('a worker SIGKILLed while busy with an idempotent call: pool:error connection_error, retry:attempt, the call succeeds on attempt 2', async () => {
    const p = await pool();
    const { seen, stop } = record(p);
    const call = p.execute('sleep', { ms: 400 }, { detailed: true });
    await until(() => p.stats().workers.some((w) => w.state === 'busy'));
    const busy = p.stats().workers.find((w) => w.state === 'busy')!;
    process.kill(busy.pid!, 'SIGKILL');
    const r = await call;
    stop();
    assert.equal(r.attempts, 2);
    assert.notEqual(r.workerId, busy.id);
    const err = seen['pool:error'].find((e) => e.code === 'PYFLEET_WORKER_CRASHED');
    assert.ok(err, 'pool:error for the crash');
    assert.equal(err.category, 'connection_error');
    assert.equal(err.severity, 'major');
    assert.equal(err.strategy, 'backoff_retry');
    assert.equal(err.workerId, busy.id);
    assert.equal(err.command, 'sleep');
    assert.equal(err.attempt, 1);
    // The first re-send after a death goes at once to the other, free worker.
    assert.deepEqual(seen['retry:attempt'], [{ command: 'sleep', attempt: 1, delayMs: 0, category: 'connection_error', code: 'PYFLEET_WORKER_CRASHED', poolId: p.id }]);
    assert.equal(seen['retry:exhausted'].length, 0);
    const exit = seen['worker:exit'].find((x) => x.workerId === busy.id);
    assert.equal(exit?.signal, 'SIGKILL');
    assert.ok(seen['worker:transition'].some((t) => t.workerId === busy.id && t.from === 'busy' && t.to === 'terminating'));
    const end = seen['call:end'].at(-1)!;
    assert.equal(end.ok, true);
    assert.equal(end.attempts, 2);
    assert.equal(end.code, null);
  });

  it('a timeout: pool:error timeout_error, retry:exhausted, degraded then ready, and a retry_with_backoff recovery that succeeds', async () => {
    const p = await pool({
      recovery: { strategies: { timeout_error: { major: { type: 'retry_with_backoff', maxAttempts: 2, backoff: 'none' } } } },
    });
    const { seen, stop } = record(p);
    // 100 ms is too short for 250 ms of work; the recovery re-sends with 200 ms, then 400 ms.
    const r = await p.execute('sleep', { ms: 250 }, { timeoutMs: 100, detailed: true });
    stop();
    assert.equal(r.via, 'recovery');
    const err = seen['pool:error'].find((e) => e.code === 'PYFLEET_TIMEOUT');
    assert.ok(err);
    assert.equal(err.category, 'timeout_error');
    assert.equal(err.severity, 'major');
    assert.equal(err.strategy, 'backoff_retry');
    assert.equal(err.command, 'sleep');
    assert.ok(err.durationMs >= 100);
    assert.deepEqual(seen['retry:exhausted'].map((x) => ({ ...x })), [{ command: 'sleep', attempts: 1, category: 'timeout_error', code: 'PYFLEET_TIMEOUT', reason: 'strategy', poolId: p.id }]);
    assert.ok(seen['worker:transition'].some((t) => t.from === 'busy' && t.to === 'degraded' && t.reason === 'timeout'));
    assert.ok(seen['worker:transition'].some((t) => t.from === 'degraded' && t.to === 'ready'));
    const rec = seen['recovery:complete'].find((x) => x.category === 'timeout_error');
    assert.ok(rec);
    assert.equal(rec.strategy, 'retry_with_backoff');
    assert.equal(rec.action, 'retryWithLargerTimeout');
    assert.equal(rec.result, 'ok');
  });

  it('pool.on only delivers the events of its own pool', async () => {
    const a = await pool({ workers: 1 });
    const b = await pool({ workers: 1 });
    const ra = record(a);
    const rawEnds: Array<EventPayloads['call:end']> = [];
    const off = subscribe('call:end', (e) => rawEnds.push(e));
    await a.execute('add', { a: 1, b: 2 });
    await b.execute('add', { a: 1, b: 2 });
    await b.execute('add', { a: 1, b: 2 });
    off();
    ra.stop();
    assert.equal(ra.seen['call:end'].length, 1);
    assert.equal(ra.seen['call:end'][0].poolId, a.id);
    assert.deepEqual(rawEnds.map((e) => e.poolId).sort(), [a.id, b.id, b.id].sort());
  });

  it('unsubscribing leaves no subscriber behind (the hot path is back to one property read)', async () => {
    const p = await pool({ workers: 1 });
    const before = channels['call:end'].hasSubscribers;
    const off = p.on('call:end', () => {});
    assert.equal(channels['call:end'].hasSubscribers, true);
    off();
    assert.equal(channels['call:end'].hasSubscribers, before);
  });

  it('onPoolClosing fires once when close() starts, before the workers go down', async () => {
    const p = await pool({ workers: 1 });
    const order: string[] = [];
    onPoolClosing(p, () => order.push('closing'));
    const off = p.on('worker:exit', () => order.push('exit'));
    await p.close();
    await p.close();
    off();
    assert.deepEqual(order, ['closing', 'exit']);
  });
});
