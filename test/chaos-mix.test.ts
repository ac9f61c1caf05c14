/**
 * The chaos workload's checks, against a fake target that lies in one way at a time: each lie
 * must be caught by the counter made for it, and an honest target must trip none. (The chaos
 * run itself, against a real pool, is in chaos.test.ts; this proves its checks can fail.)
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { ChaosMix, type ChaosTarget, type NewerKind } from '../src/cli/chaos/mix.js';
import { PoolError } from '../src/errors/pool-error.js';
import { seededRandom } from '../src/pool/chaos.js';

type Lie =
  | 'none'
  | 'acompute-value'
  | 'tcompute-not-thread'
  | 'blob-byte'
  | 'blob-floats'
  | 'stream-skip'
  | 'stream-short'
  | 'stream-crash-after-items'
  | 'stream-broken-miscount'
  | 'session-empty'
  | 'session-older'
  | 'session-foreign';

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const sumSq = (n: number): number => ((n - 1) * n * (2 * n - 1)) / 6;
function pattern(salt: number, n: number): Buffer {
  const seed = createHash('sha256').update(String(salt)).digest();
  return Buffer.concat(Array.from({ length: Math.floor(n / 32) + 1 }, () => seed)).subarray(0, n);
}

/** chaos_handlers.py, played in Node, lying once in the way `lie` says (and honest otherwise). */
function fakeTarget(lie: Lie): ChaosTarget & { lied: number } {
  const state = new Map<string, number[]>();
  const t = {
    lied: 0,
    once(kind: Lie): boolean {
      if (lie !== kind || t.lied > 0) return false;
      t.lied++;
      return true;
    },
    async execute(command: string, a: any, options?: { sessionId?: string }): Promise<unknown> {
      switch (command) {
        case 'compute':
          return { n: a.n, salt: a.salt, value: sumSq(a.n) };
        case 'acompute':
          return { n: a.n, salt: a.salt, value: sumSq(a.n) + (t.once('acompute-value') ? 1 : 0), task: true };
        case 'tcompute':
          return { n: a.n, salt: a.salt, value: sumSq(a.n), thread: !t.once('tcompute-not-thread') };
        case 'record':
          return a.token;
        case 'blob': {
          const values = a.values as Float64Array;
          const out = pattern(a.salt, a.n);
          const data = Buffer.from(a.data as Buffer);
          if (data.length > 0 && t.once('blob-byte')) data[0] ^= 1;
          const reversed = Float64Array.from(values).reverse();
          if (reversed.length > 1 && t.once('blob-floats')) reversed[0] = reversed[1];
          return { sha_in: sha(data), sha_values: sha(new Uint8Array(values.buffer, values.byteOffset, values.byteLength)), out, sha_out: sha(out), reversed };
        }
        case 'session_put': {
          const h = state.get(options!.sessionId!) ?? [];
          h.push(a.v);
          state.set(options!.sessionId!, h);
          return a.v;
        }
        case 'session_get': {
          const sid = options!.sessionId!;
          const h = state.get(sid) ?? [];
          if (h.length >= 1 && t.once('session-empty')) return null;
          if (h.length >= 2 && t.once('session-older')) return h[h.length - 2];
          const other = [...state.entries()].find(([id, hh]) => id !== sid && hh.length > 0);
          if (other !== undefined && t.once('session-foreign')) return other[1][other[1].length - 1];
          return h.length === 0 ? null : h[h.length - 1];
        }
      }
      throw new Error(`fake target: no command ${command}`);
    },
    async *stream(command: string, a: any): AsyncGenerator<unknown> {
      assert.equal(command, 'count_stream');
      const n = a.n as number;
      const skip = n >= 3 && t.once('stream-skip');
      const short = n >= 2 && t.once('stream-short');
      const crash = n >= 2 && t.once('stream-crash-after-items');
      const miscount = n >= 2 && t.once('stream-broken-miscount');
      for (let i = 0; i < n; i++) {
        if (skip && i === 1) continue;
        if (short && i === n - 1) return;
        if (crash && i === 1) throw new PoolError({ code: 'PYFLEET_WORKER_CRASHED', message: 'the worker died (and the stream was re-sent or mislabelled)' });
        if (miscount && i === 1) throw new PoolError({ code: 'PYFLEET_STREAM_BROKEN', message: 'broke', details: { items: 5 } });
        yield { i, salt: a.salt };
      }
    },
    async closeSession(id: string): Promise<void> {
      state.delete(id);
    },
  };
  return t;
}

/** Sends `n` calls of the mix one after the other, as the workload would. */
async function drive(mix: ChaosMix, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const c = mix.next();
    if (c === null) continue;
    try {
      c.done?.({ ok: true, value: await c.start(), ms: 0 });
    } catch (e) {
      c.done?.({ ok: false, error: e, ms: 0 });
    }
  }
}

function mixOf(target: ChaosTarget, kinds: Partial<Record<NewerKind, number>>, sessions = 0): ChaosMix {
  return new ChaosMix({ target, runId: 't', sessions, sessionShare: sessions > 0 ? 1 : 0, idempotentShare: 0.5, rnd: seededRandom(7), kinds });
}

describe('chaos mix checks', () => {
  it('an honest target trips nothing; every kind is sent and counted', async () => {
    const t = fakeTarget('none');
    const mix = mixOf(t, { acompute: 0.2, tcompute: 0.2, stream: 0.2, blob: 0.2 });
    await drive(mix, 400);
    const sessions = mixOf(t, {}, 3);
    await drive(sessions, 200);
    for (const m of [mix, sessions]) {
      assert.equal(m.wrongAnswers, 0, JSON.stringify(m.wrongAnswersByKind));
      assert.equal(m.sessionStateErrors, 0);
      assert.equal(m.streamBrokenMislabelled, 0);
      assert.equal(m.nonPoolErrors, 0);
    }
    for (const k of ['acompute', 'tcompute', 'stream', 'blob'] as const) {
      assert.ok(mix.kinds[k].calls > 40, `${k}: ${mix.kinds[k].calls} calls`);
      assert.equal(mix.kinds[k].succeeded, mix.kinds[k].calls);
    }
    assert.equal(mix.streamStats.complete, mix.kinds.stream.calls);
    assert.ok(sessions.sess.succeeded > 150);
  });

  for (const [lie, kinds, expect] of [
    ['acompute-value', { acompute: 1 }, 'acompute'],
    ['tcompute-not-thread', { tcompute: 1 }, 'tcompute'],
    ['blob-byte', { blob: 1 }, 'blob'],
    ['blob-floats', { blob: 1 }, 'blob'],
    ['stream-skip', { stream: 1 }, 'stream'],
    ['stream-short', { stream: 1 }, 'stream'],
  ] as const) {
    it(`a wrong answer is caught: ${lie}`, async () => {
      const t = fakeTarget(lie);
      const mix = mixOf(t, kinds);
      await drive(mix, 50);
      assert.equal(t.lied, 1, 'the target lied once');
      assert.equal(mix.wrongAnswers, 1);
      assert.deepEqual(mix.wrongAnswersByKind, { [expect]: 1 });
    });
  }

  for (const lie of ['stream-crash-after-items', 'stream-broken-miscount'] as const) {
    it(`a broken stream reported as something else is caught: ${lie}`, async () => {
      const t = fakeTarget(lie);
      const mix = mixOf(t, { stream: 1 });
      await drive(mix, 50);
      assert.equal(t.lied, 1);
      assert.equal(mix.streamBrokenMislabelled, 1);
      assert.equal(mix.streamStats.failedAfterItems, 1);
      assert.equal(mix.wrongAnswers, 0, 'the items that did arrive were right');
    });
  }

  for (const [lie, kind] of [
    ['session-empty', 'empty'],
    ['session-older', 'older'],
    ['session-foreign', 'foreign'],
  ] as const) {
    it(`a session whose state came back ${kind} is caught`, async () => {
      const t = fakeTarget(lie);
      const mix = mixOf(t, {}, 3);
      await drive(mix, 200);
      assert.equal(t.lied, 1);
      assert.equal(mix.sessionStateErrors, 1);
      assert.deepEqual(mix.sessionStateErrorsByKind, { empty: 0, older: 0, foreign: 0, unknown: 0, [kind]: 1 });
    });
  }

  it('refuses shares over 1, and streams without a stream() on the target', () => {
    const t = fakeTarget('none');
    assert.throws(() => mixOf(t, { acompute: 0.6, blob: 0.6 }), /add up to 1\.2, over 1/);
    const { stream: _s, ...noStream } = t;
    assert.throws(() => mixOf(noStream as ChaosTarget, { stream: 0.1 }), /no stream\(\)/);
  });
});
