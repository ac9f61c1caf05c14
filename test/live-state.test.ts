/**
 * The dashboard's model (LiveState) against a real pool, without a browser: the capacity each
 * worker's calls in flight are drawn against, the sessions panel (stats().sessions and the
 * snapshot and restore events), the streams panel, and the feed lines for a restore and a broken
 * stream. (dashboard.test.ts draws the same in Chromium.)
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { createPool } from '../src/pool/pool.js';
import { CommandStats } from '../src/server/command-stats.js';
import { LiveState } from '../src/server/live.js';
import { FIXTURES, quiet, rejection, until } from './helpers/pool.js';

describe('LiveState: sessions, streams, concurrency', () => {
  it('reports what the pool and its events say', async () => {
    const pool = await createPool({ module: path.join(FIXTURES, 'workloads.py'), workers: 2, logger: quiet, concurrency: 3, pipelineDepth: 5 });
    const live = new LiveState(pool, { sampleMs: 60_000 });
    try {
      let snap = live.snapshot();
      assert.equal(snap.capacity, 5, 'the larger of concurrency and pipelineDepth');
      assert.deepEqual(snap.sessions, { total: 0, bound: 0, durable: 0, restored: 0, snapshots: { ok: 0, failed: 0, bytes: 0, maxBytes: 0, ms: 0 }, restores: { ok: 0, failed: 0, ms: 0 }, notDurable: 0 });
      assert.deepEqual(snap.streams, { open: 0, ok: 0, broken: 0, error: 0, items: 0 });
      assert.deepEqual(snap.binary, { toPython: 0, fromPython: 0 });

      const pid = await pool.execute<number>('remember', { x: 7 }, { sessionId: 'a' });
      const it = pool.stream('gen_slow', { ms: 200 });
      await it.next();
      snap = live.snapshot();
      assert.equal(snap.streams.open, 1);
      assert.equal(snap.sessions?.durable, 1);
      assert.equal(snap.sessions?.snapshots.ok, 1);
      assert.ok(snap.sessions!.snapshots.bytes > 0 && snap.sessions!.snapshots.maxBytes === snap.sessions!.snapshots.bytes);
      for await (const _ of it);
      process.kill(pid, 'SIGKILL');
      await until(() => !pool.pids().includes(pid));
      assert.equal(await pool.execute('recall', {}, { sessionId: 'a' }), 7);
      await rejection((async () => {
        for await (const _ of pool.stream('gen_die', {}));
      })());

      snap = live.snapshot();
      assert.deepEqual(snap.streams, { open: 0, ok: 1, broken: 1, error: 0, items: snap.streams.items });
      assert.ok(snap.streams.items >= 1, 'the slow stream\'s items and the broken one\'s first');
      assert.equal(snap.sessions?.restored, 1);
      assert.equal(snap.sessions?.restores.ok, 1);
      const feed = snap.feed.map((f) => `${f.kind}: ${f.text}`).join('\n');
      assert.match(feed, /session: session a restored \(\d+ bytes, version 1\)/);
      assert.match(feed, /stream: stream gen_die broken after/);
    } finally {
      live.close();
      await pool.close();
    }
  });
});

describe('CommandStats (the dashboard rows)', () => {
  it('p50 and p99 over the recent calls, errors and totals per command', () => {
    const c = new CommandStats(1000);
    for (let i = 1; i <= 100; i++) c.ended('add', true, i);
    c.ended('fail', false, 3);
    assert.deepEqual(c.rows(), [
      { command: 'add', perSecond: 0, p50Ms: 50, p99Ms: 99, calls: 100, errors: 0 },
      { command: 'fail', perSecond: 0, p50Ms: 3, p99Ms: 3, calls: 1, errors: 1 },
    ]);
    // The ring keeps the last `keep` calls: older ones leave the percentiles, not the totals.
    const small = new CommandStats(10);
    for (let i = 1; i <= 100; i++) small.ended('x', true, i);
    assert.deepEqual(small.rows()[0], { command: 'x', perSecond: 0, p50Ms: 95, p99Ms: 100, calls: 100, errors: 0 });
  });
});
